//! Resume: after READY, every `running` row carries on from `last_sent + 1`
//! (its nonce makes a number that did arrive harmless), on its original
//! schedule if that is still ahead, at once otherwise. Rows idle for longer
//! than `RESUME_MAX_AGE` become `expired` instead.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::countdown::{CountdownSpec, Scheduler};
use crate::metrics::Metrics;
use crate::storage::tasks::{self, TaskRow, TaskStatus};
use crate::storage::{Journal, StorageError};

#[derive(Clone)]
pub struct Resumer {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    scheduler: Scheduler,
    journal: Journal,
    metrics: Metrics,
    max_age: Duration,
    shutdown: CancellationToken,
    /// One resume at a time.
    running: tokio::sync::Mutex<()>,
}

impl Resumer {
    pub fn new(
        pool: Pool,
        scheduler: Scheduler,
        journal: Journal,
        metrics: Metrics,
        max_age: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        Resumer {
            inner: Arc::new(Inner {
                pool,
                scheduler,
                journal,
                metrics,
                max_age,
                shutdown,
                running: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Resumes every running countdown, retrying while the database is down.
    pub async fn resume_all(&self) {
        let _one_at_a_time = self.inner.running.lock().await;
        let mut backoff = Duration::from_millis(500);
        let mut logged = false;
        loop {
            match self.resume_once().await {
                Ok(()) => return,
                Err(error) => {
                    self.inner.metrics.db_errors.inc();
                    if !logged {
                        tracing::error!(%error, "cannot resume countdowns yet; retrying");
                        self.inner.journal.general_error("resume", &error);
                        logged = true;
                    }
                }
            }
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    async fn resume_once(&self) -> Result<(), StorageError> {
        let inner = &self.inner;
        // Ends not written yet first (a stop during an outage, or carried
        // over from the previous leader term): a countdown a user stopped
        // must not read as `running` and come back.
        inner.journal.flush().await?;
        let mut expired = 0usize;
        for row in tasks::expire_idle(&inner.pool, inner.max_age).await? {
            expired += 1;
            tracing::warn!(
                task_id = row.id,
                channel_id = row.channel_id,
                last_sent = row.last_sent,
                "countdown idle longer than RESUME_MAX_AGE: marked expired"
            );
            inner
                .metrics
                .finished
                .with_label_values(&[TaskStatus::Expired.as_str()])
                .inc();
        }
        let rows = tasks::running(&inner.pool).await?;
        let mut resumed = 0usize;
        for row in rows {
            if inner.shutdown.is_cancelled() {
                break;
            }
            if inner.scheduler.is_running(row.id) {
                continue;
            }
            if self.resume_row(row) {
                resumed += 1;
            }
        }
        if resumed > 0 {
            tracing::info!(resumed, expired, "countdowns resumed");
        }
        Ok(())
    }

    fn resume_row(&self, row: TaskRow) -> bool {
        let inner = &self.inner;
        if row.last_sent >= row.target {
            // Crashed between the last number and writing `finished`.
            inner.journal.end(row.id, TaskStatus::Finished, row.target);
            return false;
        }
        let reservation = match inner
            .scheduler
            .reserve_for_resume(row.channel_id, row.guild_id)
        {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!(
                    task_id = row.id,
                    channel_id = row.channel_id,
                    "another countdown holds this channel; not resuming"
                );
                return false;
            }
        };
        let next = row.last_sent + 1;
        let first_due = due_instant(&row, next);
        // Debug: after an outage there may be thousands; the summary line
        // below is the one to read.
        tracing::debug!(
            task_id = row.id,
            channel_id = row.channel_id,
            next,
            target = row.target,
            "resuming countdown"
        );
        inner.metrics.resumed.inc();
        inner.scheduler.start(
            reservation,
            CountdownSpec {
                task_id: row.id,
                channel_id: row.channel_id,
                guild_id: row.guild_id,
                user_id: row.user_id,
                target: row.target,
                next,
                first_due,
            },
        );
        true
    }
}

/// When number `k` is due on the row's original schedule (number 1 at
/// `created_at`), or now if that moment has passed.
fn due_instant(row: &TaskRow, k: u16) -> Instant {
    let due = row.created_at + chrono::Duration::seconds(i64::from(k) - 1);
    let ahead = (due - chrono::Utc::now()).to_std().unwrap_or_default();
    Instant::now() + ahead
}
