//! Retention: ended countdowns and error rows older than `RETENTION` are
//! deleted by the leader, at the start of its term and every hour after, in
//! small batches so that no delete holds locks or the journal's connection
//! for long. A `running` task is never deleted, whatever its age (resume
//! expires it first). `RETENTION=0` keeps everything.

use std::time::Duration;

use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;

use super::StorageError;
use crate::metrics::Metrics;

/// Rows deleted per statement.
pub const BATCH: i64 = 1000;
/// How often the leader deletes what has aged past `RETENTION`.
pub const EVERY: Duration = Duration::from_secs(3600);
/// A pause between batches, so a large first clean-up leaves the database
/// to the journal in between.
const PAUSE: Duration = Duration::from_millis(50);

/// The tables it deletes from (the `table` label of
/// `countdown_retention_deleted_total`).
pub const TABLES: [&str; 3] = ["tasks", "command_errors", "general_errors"];

// One statement per table, each deleting at most `$2` rows older than `$1`
// seconds. Command rows keep no task alive: their `task_id` is set to NULL
// when their task goes (the foreign key's `ON DELETE SET NULL`).
const DELETE_TASKS: &str = "DELETE FROM tasks WHERE id IN (SELECT id FROM tasks \
     WHERE status <> 'running' AND finished_at < now() - make_interval(secs => $1) \
     ORDER BY id LIMIT $2)";
const DELETE_COMMAND_ERRORS: &str = "DELETE FROM command_errors WHERE id IN \
     (SELECT id FROM command_errors \
     WHERE created_at < now() - make_interval(secs => $1) ORDER BY id LIMIT $2)";
const DELETE_GENERAL_ERRORS: &str = "DELETE FROM general_errors WHERE id IN \
     (SELECT id FROM general_errors \
     WHERE created_at < now() - make_interval(secs => $1) ORDER BY id LIMIT $2)";

/// Deletes every row older than `keep`, in batches; returns the rows
/// deleted per table.
pub async fn delete_old(
    pool: &Pool,
    metrics: &Metrics,
    keep: Duration,
    stop: &CancellationToken,
) -> Result<[u64; 3], StorageError> {
    let mut deleted = [0u64; 3];
    let secs = keep.as_secs_f64();
    for (i, table) in TABLES.iter().enumerate() {
        loop {
            if stop.is_cancelled() {
                return Ok(deleted);
            }
            let n = {
                let client = pool.get().await?;
                let statement = match *table {
                    "tasks" => client.prepare_cached(DELETE_TASKS).await?,
                    "command_errors" => client.prepare_cached(DELETE_COMMAND_ERRORS).await?,
                    _ => client.prepare_cached(DELETE_GENERAL_ERRORS).await?,
                };
                client.execute(&statement, &[&secs, &BATCH]).await?
            };
            deleted[i] += n;
            metrics
                .retention_deleted
                .with_label_values(&[table])
                .inc_by(n);
            if n < BATCH as u64 {
                break;
            }
            tokio::time::sleep(PAUSE).await;
        }
    }
    Ok(deleted)
}

/// Deletes what is older than `keep` now and every [`EVERY`] until `stop`.
/// A failure (the database down) is logged and tried again at the next
/// round; nothing here is urgent.
pub async fn run(pool: Pool, metrics: Metrics, keep: Duration, stop: CancellationToken) {
    if keep.is_zero() {
        tracing::info!("RETENTION is 0: every row is kept");
        return;
    }
    let mut ticker = tokio::time::interval(EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        match delete_old(&pool, &metrics, keep, &stop).await {
            Ok([tasks, command_errors, general_errors]) => {
                if tasks + command_errors + general_errors > 0 {
                    tracing::info!(
                        tasks,
                        command_errors,
                        general_errors,
                        retention = %humantime::format_duration(keep),
                        "deleted rows older than RETENTION"
                    );
                }
            }
            Err(error) => {
                metrics.db_errors.inc();
                tracing::warn!(%error, "could not delete old rows; trying again in an hour");
            }
        }
    }
}
