//! Admission of a `count to`: the caps and "one per channel" (the
//! scheduler's reservation), then the row that promises the countdown. A
//! countdown only starts once its row is written, so it can be resumed.

use tokio::time::Instant;

use super::CommandService;
use crate::commands::Origin;
use crate::countdown::{channel_check, CountdownSpec, Refusal};
use crate::storage::{NewTask, StorageError};

/// What became of a `count to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountOutcome {
    Started {
        task_id: i64,
    },
    /// A cap or a busy channel; for a busy channel, the progress of the
    /// countdown running there (last sent, target).
    Refused {
        refusal: Refusal,
        running: Option<(u16, u16)>,
    },
    /// The row could not be written, so the countdown could not be promised.
    DatabaseDown,
    /// The bot is shutting down or not connected yet.
    NotNow,
}

impl CommandService {
    /// Admits a countdown to `target` in the origin's channel if the caps
    /// allow it and its row is written: a countdown is only started once it
    /// can be resumed.
    pub async fn count(&self, origin: &Origin, target: u16) -> CountOutcome {
        if self.inner.shutdown.is_cancelled() {
            return CountOutcome::NotNow;
        }
        self.count_command(origin, "count");
        let inner = &self.inner;
        let reservation = match inner.scheduler.reserve(origin.channel_id, origin.guild_id) {
            Ok(r) => r,
            Err(refusal) => return self.refuse_count(origin, refusal),
        };
        let new = NewTask {
            channel_id: origin.channel_id,
            guild_id: origin.guild_id,
            user_id: origin.user_id,
            target,
            source: origin.source.label(),
        };
        let mut inserted = inner.admissions.admit(new.clone()).await;
        if matches!(inserted, Err(StorageError::ChannelBusy)) {
            // The countdown that just ended here may not have its final
            // status written yet: write it, then try once more.
            if inner.journal.flush().await.is_ok() {
                inserted = inner.admissions.admit(new).await;
            }
        }
        let row = match inserted {
            Ok(row) => row,
            Err(StorageError::ChannelBusy) => {
                drop(reservation);
                return self.refuse_count(origin, Refusal::BusyChannel);
            }
            Err(error) => {
                drop(reservation);
                inner.metrics.db_errors.inc();
                tracing::error!(%error, "cannot admit a countdown: database unavailable");
                self.journal_error(origin, "db_unavailable", error.to_string(), None);
                return CountOutcome::DatabaseDown;
            }
        };
        tracing::Span::current().record("task_id", row.id);
        tracing::info!(target, source = origin.source.label(), "countdown admitted");
        inner.metrics.count_target.observe(f64::from(target));
        inner.scheduler.start(
            reservation,
            CountdownSpec {
                task_id: row.id,
                channel_id: origin.channel_id,
                guild_id: origin.guild_id,
                user_id: origin.user_id,
                target,
                next: 1,
                first_due: Instant::now(),
                check: None,
                asked_at: Some(channel_check::time_of(origin.command_id)),
            },
        );
        CountOutcome::Started { task_id: row.id }
    }

    fn refuse_count(&self, origin: &Origin, refusal: Refusal) -> CountOutcome {
        // The countdown that makes the channel busy, if it runs here.
        let running = self
            .inner
            .scheduler
            .live(origin.channel_id)
            .filter(|_| refusal == Refusal::BusyChannel);
        let task_id = running.as_ref().map(|live| live.spec.task_id);
        let progress = running.map(|live| (live.last_sent(), live.spec.target));
        self.refuse(origin, refusal.label(), "refused", task_id);
        CountOutcome::Refused {
            refusal,
            running: progress,
        }
    }
}
