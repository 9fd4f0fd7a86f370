//! Storage: what the bot keeps in PostgreSQL, behind one seam.
//!
//! - [`store`]: [`TaskStore`], what the service needs from its database,
//!   and the rows that cross it.
//! - [`postgres`]: [`PgStore`], the PostgreSQL store, and the pool.
//! - [`schema`]: the versioned migrations, applied at start.
//! - [`admissions`]: the rows of commands that arrive together, written
//!   in one round trip.
//! - [`journal`]: the background writer that keeps the database off the
//!   send path, writing through a [`TaskStore`].
//! - [`retention`]: the deletion of old rows (PostgreSQL's, by the leader).
//! - `memory`: an in-memory [`TaskStore`] for the unit tests.
//!
//! Leadership (`crate::leader`) has its own connection and advisory lock.

pub mod admissions;
pub mod journal;
#[cfg(test)]
pub mod memory;
pub mod postgres;
pub mod retention;
pub mod schema;
pub mod store;

pub use admissions::Admissions;
pub use journal::Journal;
#[cfg(test)]
pub use memory::MemoryStore;
pub use postgres::{pool, PgStore};
pub use schema::migrate;
pub use store::{CommandError, GeneralError, NewTask, TaskRow, TaskStatus, TaskStore};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("database unavailable: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database error: {0}")]
    Query(#[from] tokio_postgres::Error),
    #[error("cannot migrate the schema: {0}")]
    Migration(#[from] refinery::Error),
    #[error("a countdown is already running in this channel")]
    ChannelBusy,
    /// The admission this command was in failed (see [`admissions`]).
    #[error("{0}")]
    Batch(std::sync::Arc<StorageError>),
    /// The admissions' writer has stopped (the bot is shutting down).
    #[error("admissions stopped")]
    Stopped,
    /// A `MemoryStore` told to fail, as a database that is down.
    #[cfg(test)]
    #[error("database unavailable (a test's)")]
    Down,
}

/// Discord ids are u64 snowflakes; they fit in BIGINT (they stay below 2^63
/// until the year 2084), which is how PostgreSQL stores them.
pub fn db_id(id: u64) -> i64 {
    id as i64
}
