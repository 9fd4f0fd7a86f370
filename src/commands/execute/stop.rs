//! Stopping a countdown: by `stop` in its channel or by its Stop button,
//! if `STOP_POLICY` lets the user.

use super::CommandService;
use crate::commands::Origin;
use crate::countdown::{PendingStop, StopRefused, Stopped};

/// What became of a stop.
pub enum StopOutcome {
    /// The countdown was asked to stop; wait for it to end for the final number.
    Stopping(PendingStop),
    /// Nothing counts here (or another stop got there first).
    NotCounting,
    /// A Stop button of a countdown that is over: another one (or none)
    /// runs in the channel now.
    AlreadyFinished,
    /// `STOP_POLICY` does not let this user stop it.
    NotAllowed,
    NotNow,
}

/// Why a stop request was refused by [`CommandService::stop`]'s check.
enum StopCheck {
    OtherTask,
    NotAllowed { starter: u64 },
}

impl CommandService {
    /// Asks the countdown of the origin's channel to stop, if `STOP_POLICY`
    /// lets the origin's user stop it and, for a Stop button (`task`), it
    /// is that button's countdown. Does not wait for the countdown's task.
    pub fn stop(&self, origin: &Origin, task: Option<i64>) -> StopOutcome {
        if self.inner.shutdown.is_cancelled() {
            return StopOutcome::NotNow;
        }
        self.count_command(origin, "stop");
        if let Some(task_id) = task {
            tracing::Span::current().record("task_id", task_id);
        }
        let policy = self.stop_policy;
        let actor = origin.actor();
        let requested = self
            .inner
            .scheduler
            .request_stop(origin.channel_id, |spec| {
                if task.is_some_and(|t| t != spec.task_id) {
                    Err(StopCheck::OtherTask)
                } else if !policy.allows(&actor, spec.user_id) {
                    Err(StopCheck::NotAllowed {
                        starter: spec.user_id,
                    })
                } else {
                    Ok(())
                }
            });
        match requested {
            Ok(pending) => {
                self.inner.metrics.cancelled.inc();
                if task.is_none() {
                    tracing::Span::current().record("task_id", pending.task_id());
                }
                tracing::info!(source = origin.source.label(), "countdown stop requested");
                StopOutcome::Stopping(pending)
            }
            // The button's task id goes into the text, not `task_id`: a
            // forged custom id may name no row (the column is a foreign key).
            Err(StopRefused::NotCounting) if task.is_some() => {
                let error = format!("the countdown of button {} is over", origin.content);
                self.refuse(origin, "not_counting", &error, None);
                StopOutcome::AlreadyFinished
            }
            Err(StopRefused::NotCounting) => {
                self.refuse(origin, "not_counting", "nothing is counting here", None);
                StopOutcome::NotCounting
            }
            Err(StopRefused::Check(StopCheck::OtherTask)) => {
                let error = format!(
                    "the countdown of button {} is over; another one runs here",
                    origin.content
                );
                self.refuse(origin, "not_counting", &error, None);
                StopOutcome::AlreadyFinished
            }
            Err(StopRefused::Check(StopCheck::NotAllowed { starter })) => {
                let error = format!(
                    "STOP_POLICY={}: user {} did not start it (user {starter} did) \
                     and lacks Manage Messages",
                    policy.as_str(),
                    origin.user_id
                );
                let running = self
                    .inner
                    .scheduler
                    .live(origin.channel_id)
                    .map(|l| l.spec.task_id);
                self.refuse(origin, "not_allowed", &error, running);
                StopOutcome::NotAllowed
            }
        }
    }

    /// Waits (at most `within`) for a requested stop to take effect: where
    /// the countdown stopped, final if it ended in time.
    pub async fn stopped_within(pending: PendingStop, within: std::time::Duration) -> Stopped {
        let now = pending.snapshot();
        tokio::time::timeout(within, pending.wait())
            .await
            .unwrap_or(now)
    }
}
