//! Storage: the PostgreSQL pool, the schema (`init.sql`, applied at start),
//! the queries ([`tasks`]), the background writer that keeps the database
//! off the send path ([`journal`]) and the deletion of old rows
//! ([`retention`]).

pub mod journal;
pub mod retention;
pub mod tasks;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};

use crate::config::{ConfigError, DatabaseSettings};

pub use journal::Journal;

/// The schema, the same file PostgreSQL's docker entrypoint runs.
pub const SCHEMA: &str = include_str!("../../init.sql");

/// How long a query may wait for a connection before the database counts as down.
const CONNECTION_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("database unavailable: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database error: {0}")]
    Query(#[from] tokio_postgres::Error),
    #[error("a countdown is already running in this channel")]
    ChannelBusy,
}

/// A pool whose connections fail fast when the database is down, so a
/// command gets its "try again" reply in seconds, not minutes.
pub fn pool(settings: &DatabaseSettings) -> Result<Pool, ConfigError> {
    let mut pg = settings.pg_config()?;
    pg.connect_timeout(CONNECTION_WAIT)
        .application_name("countdown");
    let manager = Manager::from_config(
        pg,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Verified,
        },
    );
    Pool::builder(manager)
        .max_size(8)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(CONNECTION_WAIT))
        .create_timeout(Some(CONNECTION_WAIT))
        .recycle_timeout(Some(CONNECTION_WAIT))
        .build()
        .map_err(|e| ConfigError::Invalid {
            var: "DATABASE_URL",
            reason: e.to_string(),
        })
}

/// Applies the schema. Several instances may start at once, so the
/// statements run under a transaction-scoped advisory lock.
pub async fn migrate(pool: &Pool) -> Result<(), StorageError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK_KEY])
        .await?;
    // `IF NOT EXISTS` answers every existing table with a NOTICE, which the
    // client logs: nine lines of noise at every start.
    tx.batch_execute("SET LOCAL client_min_messages = warning")
        .await?;
    tx.batch_execute(SCHEMA).await?;
    tx.commit().await?;
    Ok(())
}

/// Advisory lock key for schema changes ("countdwn" in ASCII).
const SCHEMA_LOCK_KEY: i64 = 0x636f_756e_7464_776e;

/// True when the database answers a trivial query.
pub async fn ping(pool: &Pool) -> Result<(), StorageError> {
    let client = pool.get().await?;
    client.simple_query("SELECT 1").await?;
    Ok(())
}

/// Discord ids are u64 snowflakes; they fit in BIGINT (they stay below 2^63
/// until the year 2084), which is how PostgreSQL stores them.
pub fn db_id(id: u64) -> i64 {
    id as i64
}
