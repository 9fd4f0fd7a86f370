//! Countdown scheduling: which countdowns run (one per channel, within the
//! caps), one tokio task each, stopped by a user's `stop` or by shutdown.
//!
//! - [`run`]: the timing of one countdown.
//! - [`channel_check`]: what a countdown resumed past the nonce window finds
//!   in its channel.
//!
//! Every message goes out through [`crate::send`].

pub mod channel_check;
pub mod run;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::metrics::Metrics;
use crate::send::Delivery;
use crate::storage::{CommandError, Journal, TaskStatus};
pub use run::{CountdownSpec, Ended, Live};

/// Admission caps.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_active: usize,
    pub max_active_per_guild: usize,
}

/// Why a `count to` was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    BusyChannel,
    BusyGuild,
    BusyBot,
}

impl Refusal {
    pub const ALL: [Refusal; 3] = [Refusal::BusyChannel, Refusal::BusyGuild, Refusal::BusyBot];

    /// Label of `countdown_wrong_commands_total` and `command_errors.kind`.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::BusyChannel => "busy_channel",
            Refusal::BusyGuild => "busy_guild",
            Refusal::BusyBot => "busy_bot",
        }
    }
}

#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

struct Inner {
    slots: Mutex<HashMap<u64, Slot>>,
    /// Task ids of the countdowns in `slots`, so [`Scheduler::is_running`]
    /// is a lookup: resuming 10,000 rows asks it once per row, and a scan
    /// of every slot each time cost 1 s of CPU before the last countdown
    /// started.
    running: Mutex<HashSet<i64>>,
    limits: Limits,
    delivery: Delivery,
    journal: Journal,
    metrics: Metrics,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

struct Slot {
    guild_id: Option<u64>,
    live: Option<Arc<Live>>,
    /// Signalled when the countdown's task has ended.
    done: Option<tokio::sync::watch::Receiver<bool>>,
}

/// A channel held for a countdown whose row is being written. Dropping it
/// without [`Scheduler::start`] frees the channel again.
pub struct Reservation {
    inner: Arc<Inner>,
    channel_id: u64,
    armed: bool,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.armed {
            self.inner.slots().remove(&self.channel_id);
        }
    }
}

/// What a `stop` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    pub task_id: i64,
    pub last_sent: u16,
    pub target: u16,
}

/// Why [`Scheduler::request_stop`] stopped nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopRefused<E> {
    /// Nothing counts in the channel (or another stop got there first).
    NotCounting,
    /// The caller's check refused the countdown that runs there.
    Check(E),
}

/// A stop that was asked for; [`PendingStop::wait`] waits for the task.
pub struct PendingStop {
    live: Arc<Live>,
    done: tokio::sync::watch::Receiver<bool>,
}

impl PendingStop {
    pub fn task_id(&self) -> i64 {
        self.live.spec.task_id
    }

    /// Waits until the countdown's task ended (its in-flight send done).
    pub async fn wait(mut self) -> Stopped {
        let _ = self.done.wait_for(|ended| *ended).await;
        self.snapshot()
    }

    /// Where the countdown is now (it may still send the number in flight).
    pub fn snapshot(&self) -> Stopped {
        Stopped {
            task_id: self.live.spec.task_id,
            last_sent: self.live.last_sent(),
            target: self.live.spec.target,
        }
    }
}

impl Inner {
    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Slot>> {
        self.slots.lock().expect("scheduler state poisoned")
    }

    /// Taken after `slots` when both are needed, never the other way round.
    fn running(&self) -> std::sync::MutexGuard<'_, HashSet<i64>> {
        self.running.lock().expect("scheduler state poisoned")
    }
}

impl Scheduler {
    pub fn new(
        limits: Limits,
        delivery: Delivery,
        journal: Journal,
        metrics: Metrics,
        shutdown: CancellationToken,
    ) -> Self {
        Scheduler {
            inner: Arc::new(Inner {
                slots: Mutex::new(HashMap::new()),
                running: Mutex::new(HashSet::new()),
                limits,
                delivery,
                journal,
                metrics,
                shutdown,
                tracker: TaskTracker::new(),
            }),
        }
    }

    /// Holds `channel_id` for a new countdown if the caps allow it.
    pub fn reserve(&self, channel_id: u64, guild_id: Option<u64>) -> Result<Reservation, Refusal> {
        self.reserve_inner(channel_id, guild_id, true)
    }

    /// Holds `channel_id` for a countdown admitted before (a resume): only
    /// "one per channel" applies; the caps were checked when it was admitted.
    pub fn reserve_for_resume(
        &self,
        channel_id: u64,
        guild_id: Option<u64>,
    ) -> Result<Reservation, Refusal> {
        self.reserve_inner(channel_id, guild_id, false)
    }

    fn reserve_inner(
        &self,
        channel_id: u64,
        guild_id: Option<u64>,
        check_caps: bool,
    ) -> Result<Reservation, Refusal> {
        let mut slots = self.inner.slots();
        if slots.contains_key(&channel_id) {
            return Err(Refusal::BusyChannel);
        }
        if check_caps {
            if let Some(guild) = guild_id {
                let in_guild = slots.values().filter(|s| s.guild_id == Some(guild)).count();
                if in_guild >= self.inner.limits.max_active_per_guild {
                    return Err(Refusal::BusyGuild);
                }
            }
            if slots.len() >= self.inner.limits.max_active {
                return Err(Refusal::BusyBot);
            }
        }
        slots.insert(
            channel_id,
            Slot {
                guild_id,
                live: None,
                done: None,
            },
        );
        Ok(Reservation {
            inner: self.inner.clone(),
            channel_id,
            armed: true,
        })
    }

    /// True if countdown `task_id` runs in this process.
    pub fn is_running(&self, task_id: i64) -> bool {
        self.inner.running().contains(&task_id)
    }

    /// The countdown running in `channel_id`, if any.
    pub fn live(&self, channel_id: u64) -> Option<Arc<Live>> {
        self.inner
            .slots()
            .get(&channel_id)
            .and_then(|s| s.live.clone())
    }

    pub fn active(&self) -> usize {
        self.inner
            .slots()
            .values()
            .filter(|s| s.live.is_some())
            .count()
    }

    /// Starts the countdown on its reserved channel.
    pub fn start(&self, mut reservation: Reservation, spec: CountdownSpec) {
        reservation.armed = false;
        let inner = self.inner.clone();
        let live = Arc::new(Live::new(spec, inner.shutdown.child_token()));
        let (done_tx, done_rx) = tokio::sync::watch::channel(false);
        {
            let mut slots = inner.slots();
            if let Some(slot) = slots.get_mut(&live.spec.channel_id) {
                slot.live = Some(live.clone());
                slot.done = Some(done_rx);
                inner.running().insert(live.spec.task_id);
            }
        }
        inner.metrics.active.inc();
        let span = tracing::info_span!(
            "countdown",
            task_id = live.spec.task_id,
            channel_id = live.spec.channel_id,
            target = live.spec.target
        );
        self.inner.tracker.spawn(
            async move {
                let ended = run::run(&live, &inner.delivery, &inner.journal, &inner.metrics).await;
                inner.finish(&live, ended);
                let _ = done_tx.send(true);
            }
            .instrument(span),
        );
    }

    /// Stops the countdown of `channel_id` and waits until its task ended
    /// (an in-flight send completes first). `None` if nothing counts there,
    /// or another `stop` got there first: of many stops at once (gateway
    /// events are handled concurrently) only one reports "Stopped at", and
    /// `countdown_cancelled_total` counts the countdown once (tested in
    /// `tests/faults_abuse.rs`: 30 stops at once, one "Stopped" reply).
    pub async fn stop(&self, channel_id: u64) -> Option<Stopped> {
        match self.request_stop(channel_id, |_| Ok::<(), ()>(())) {
            Ok(pending) => Some(pending.wait().await),
            Err(_) => None,
        }
    }

    /// Asks the countdown of `channel_id` to stop if `check` accepts it
    /// (the stop policy, the task id of a Stop button), without waiting for
    /// its task to end: an interaction must be answered within 3 s, and an
    /// in-flight send may take longer. Only the first of concurrent stops
    /// gets a [`PendingStop`]; the others find it stopping.
    pub fn request_stop<E>(
        &self,
        channel_id: u64,
        check: impl FnOnce(&CountdownSpec) -> Result<(), E>,
    ) -> Result<PendingStop, StopRefused<E>> {
        let (live, done) = {
            let slots = self.inner.slots();
            let slot = slots.get(&channel_id).ok_or(StopRefused::NotCounting)?;
            match (slot.live.clone(), slot.done.clone()) {
                (Some(live), Some(done)) => (live, done),
                _ => return Err(StopRefused::NotCounting),
            }
        };
        check(&live.spec).map_err(StopRefused::Check)?;
        if !live.request_stop() {
            return Err(StopRefused::NotCounting);
        }
        Ok(PendingStop { live, done })
    }

    /// Cancels every countdown and waits (at most `grace`) for their tasks
    /// to end; their rows stay `running`.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.inner.shutdown.cancel();
        self.inner.tracker.close();
        tokio::time::timeout(grace, self.inner.tracker.wait())
            .await
            .is_ok()
    }

    /// Runs `future` as part of the work shutdown waits for (replies).
    pub fn track<F>(&self, future: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.inner.tracker.spawn(future);
    }
}

impl Inner {
    fn finish(&self, live: &Live, ended: Ended) {
        let spec = &live.spec;
        let last_sent = live.last_sent();
        let status = match &ended {
            Ended::Finished => Some(TaskStatus::Finished),
            Ended::Stopped => Some(TaskStatus::Stopped),
            Ended::Failed(_) | Ended::Unreadable(_) => Some(TaskStatus::Failed),
            Ended::Interrupted => None,
        };
        match &ended {
            Ended::Finished => tracing::info!(last_sent, "countdown finished"),
            Ended::Stopped => tracing::info!(last_sent, "countdown stopped by a user"),
            Ended::Interrupted => tracing::info!(
                last_sent,
                "countdown interrupted by shutdown; it resumes at the next start"
            ),
            Ended::Failed(error) => {
                tracing::error!(last_sent, %error, "countdown failed");
                self.journal.command_error(CommandError {
                    kind: "send_failed",
                    channel_id: spec.channel_id,
                    guild_id: spec.guild_id,
                    user_id: Some(spec.user_id),
                    content: None,
                    error: format!("number {} could not be sent: {error}", last_sent + 1),
                    task_id: Some(spec.task_id),
                    at: chrono::Utc::now(),
                });
            }
            Ended::Unreadable(error) => {
                tracing::error!(
                    last_sent,
                    %error,
                    "cannot read the channel to resume; countdown failed"
                );
                self.journal.general_error(
                    "resume",
                    format!(
                        "countdown {} in channel {}: cannot read the channel's messages to see \
                         what was posted while the bot was away ({error}); marked failed at {last_sent} of {}",
                        spec.task_id, spec.channel_id, spec.target
                    ),
                );
            }
        }
        if let Some(status) = status {
            self.journal.end(spec.task_id, status, last_sent);
            self.metrics
                .finished
                .with_label_values(&[status.as_str()])
                .inc();
        }
        self.metrics.active.dec();
        let mut slots = self.slots();
        let ours = slots
            .get(&spec.channel_id)
            .and_then(|s| s.live.as_ref())
            .is_some_and(|l| l.spec.task_id == spec.task_id);
        if ours {
            slots.remove(&spec.channel_id);
        }
        self.running().remove(&spec.task_id);
    }
}

#[cfg(test)]
mod tests;
