//! The schema: versioned migrations (`migrations/V<n>__<what>.sql`),
//! embedded in the binary and applied by refinery at every start; refinery
//! records what it applied in `refinery_schema_history`.
//!
//! A change to the schema is a new file with the next version, never an
//! edit of an applied one (refinery refuses to start on a database whose
//! applied migration differs from its file). It must apply cleanly over the
//! schema it leads to, written with `IF NOT EXISTS` and the like: the
//! compose stack's database is created from `init.sql` with no history, so
//! every migration runs over the full schema there, as the first ones do
//! over a database made before migrations were versioned. `init.sql` gets
//! the same change; `tests/storage_postgres.rs` proves the two agree.

use deadpool_postgres::Pool;

use super::StorageError;

mod embedded {
    refinery::embed_migrations!("src/storage/migrations");
}

/// Advisory lock key for schema changes ("countdwn" in ASCII).
const SCHEMA_LOCK_KEY: i64 = 0x636f_756e_7464_776e;

/// Applies the migrations this database lacks. Several instances may start
/// at once: each waits for the schema lock, on the connection refinery
/// runs on, and the first one migrates.
pub async fn migrate(pool: &Pool) -> Result<(), StorageError> {
    // A connection of its own, closed at the end: the lock and the setting
    // below are the session's, and end with it whatever happens here.
    let mut client = deadpool_postgres::Object::take(pool.get().await?);
    client
        .execute("SELECT pg_advisory_lock($1)", &[&SCHEMA_LOCK_KEY])
        .await?;
    // `IF NOT EXISTS` answers every existing object with a NOTICE, which the
    // client logs: a dozen lines of noise at every start.
    client
        .batch_execute("SET client_min_messages = warning")
        .await?;
    // refinery logs each migration it applies.
    embedded::migrations::runner()
        // A database an instance of a later version migrated further stays
        // usable by this one while both run (a rolling upgrade): refinery
        // logs the versions it does not know instead of refusing.
        .set_abort_missing(false)
        .run_async(&mut *client)
        .await?;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&SCHEMA_LOCK_KEY])
        .await?;
    Ok(())
}
