//! Resume: after READY, every `running` row carries on from `last_sent + 1`
//! (its nonce makes a number that did arrive harmless), on its original
//! schedule if that is still ahead, at once otherwise. Rows idle for longer
//! than `RESUME_MAX_AGE` become `expired` instead.
//!
//! Discord honours a nonce only for a few minutes. A row whose last
//! progress is older than `RESUME_CHECK_AFTER` (a safe share of that
//! window) may have numbers in its channel that no nonce covers any more,
//! so its countdown first reads the channel after its last known message
//! and skips its own numbers already there (see
//! [`crate::countdown::channel_check`]).
//!
//! The rows come from the journal's store ([`Journal::store`]): the ends
//! the journal writes first must land where the running rows are read.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::countdown::channel_check::{self, ResumeCheck};
use crate::countdown::{CountdownSpec, Scheduler};
use crate::metrics::Metrics;
use crate::storage::{Journal, StorageError, TaskRow, TaskStatus};

#[derive(Clone)]
pub struct Resumer {
    inner: Arc<Inner>,
}

struct Inner {
    scheduler: Scheduler,
    journal: Journal,
    metrics: Metrics,
    max_age: Duration,
    check_after: Duration,
    shutdown: CancellationToken,
    /// One resume at a time.
    running: tokio::sync::Mutex<()>,
}

impl Resumer {
    pub fn new(
        scheduler: Scheduler,
        journal: Journal,
        metrics: Metrics,
        max_age: Duration,
        check_after: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        Resumer {
            inner: Arc::new(Inner {
                scheduler,
                journal,
                metrics,
                max_age,
                check_after,
                shutdown,
                running: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Resumes every running countdown, retrying while the database is down.
    /// `bot_user_id` tells the bot's own messages from others' in a channel.
    pub async fn resume_all(&self, bot_user_id: u64) {
        let _one_at_a_time = self.inner.running.lock().await;
        let mut backoff = Duration::from_millis(500);
        let mut logged = false;
        loop {
            match self.resume_once(bot_user_id).await {
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

    async fn resume_once(&self, bot_user_id: u64) -> Result<(), StorageError> {
        let inner = &self.inner;
        // Ends not written yet first (a stop during an outage, or carried
        // over from the previous leader term): a countdown a user stopped
        // must not read as `running` and come back.
        inner.journal.flush().await?;
        let mut expired = 0usize;
        let store = inner.journal.store();
        for row in store.expire_idle(inner.max_age).await? {
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
        let rows = store.running().await?;
        let mut resumed = 0usize;
        for row in rows {
            if inner.shutdown.is_cancelled() {
                break;
            }
            if inner.scheduler.is_running(row.id) {
                continue;
            }
            if self.resume_row(row, bot_user_id) {
                resumed += 1;
            }
        }
        if resumed > 0 {
            tracing::info!(resumed, expired, "countdowns resumed");
        }
        Ok(())
    }

    fn resume_row(&self, row: TaskRow, bot_user_id: u64) -> bool {
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
                check: self.needs_check(&row).then(|| ResumeCheck {
                    after: check_anchor(&row),
                    bot_user_id,
                }),
                asked_at: None,
            },
        );
        true
    }
}

impl Resumer {
    /// Whether the row's nonces may have expired at Discord.
    fn needs_check(&self, row: &TaskRow) -> bool {
        let idle = (chrono::Utc::now() - row.updated_at)
            .to_std()
            .unwrap_or_default();
        idle >= self.inner.check_after
    }
}

/// How far before a moment a listing starts, for the clocks of the bot and
/// of Discord, which stamps the snowflakes, to disagree.
const CLOCK_MARGIN: chrono::Duration = chrono::Duration::seconds(60);

/// Where the channel check starts reading: after the row's last known
/// message; without one, before any message the countdown can have posted
/// (its `1` is recognised by its Stop button); for a row written before the
/// message id was kept, shortly before its last progress, and never before
/// the countdown existed.
fn check_anchor(row: &TaskRow) -> u64 {
    match row.last_message_id {
        Some(id) => id,
        None if row.last_sent == 0 => channel_check::snowflake_at(row.created_at - CLOCK_MARGIN),
        None => channel_check::snowflake_at((row.updated_at - CLOCK_MARGIN).max(row.created_at)),
    }
}

/// When number `k` is due on the row's original schedule (number 1 at
/// `created_at`), or now if that moment has passed.
fn due_instant(row: &TaskRow, k: u16) -> Instant {
    let due = row.created_at + chrono::Duration::seconds(i64::from(k) - 1);
    let ahead = (due - chrono::Utc::now()).to_std().unwrap_or_default();
    Instant::now() + ahead
}
