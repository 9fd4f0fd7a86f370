//! One countdown's life: number k is due one second after number k − 1 was
//! due, sleeps until then, sends through [`Delivery`], notes its progress
//! in the journal and goes on. Deadlines are absolute, so send latency never
//! adds up. The schedule counts from number 1's slot, and moves only when
//! what users see moved: a message that went out more than a second late
//! (re-anchored instead of a burst to catch up), a number the channel's
//! window held back, or a resent number Discord already had.

use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use super::channel_check::{self, ResumeCheck, Scan};
use crate::metrics::Metrics;
use crate::send::{Delivery, DeliveryError, Hold, Outgoing, Posted, SendError};
use crate::storage::Journal;

/// A stall longer than this re-anchors the schedule.
pub const REANCHOR_AFTER: Duration = Duration::from_secs(1);
/// A number its channel's window held back this long or longer moves the
/// schedule (see `run`, only while the global budget is busy). Less is the
/// jitter of a window's edge (a request arrives a millisecond later or
/// earlier than the one that opened the window): followed, every
/// millisecond of it would move every later number, a ratchet that only
/// adds up.
pub const FOLLOW_AT: Duration = Duration::from_millis(5);
/// A number Discord's window (its `Remaining: 0`, not the bot's own record)
/// held back this long or longer moves the schedule even with room in the
/// global budget: that window is out of step with the schedule (opened by
/// requests this process does not know of, such as the previous process's
/// before a restart), and it would hold every fifth number back by as much
/// again, the next one bunched after it. Followed once, the windows open on
/// the schedule. Shorter holds are arrival jitter at a window's edge (see
/// [`FOLLOW_AT`]); a hold of the bot's own record comes from its own late
/// request (a stall of the machine), and following it would make every
/// later number as late.
pub const FOLLOW_ALONE: Duration = Duration::from_millis(50);
pub const TICK: Duration = Duration::from_secs(1);
/// An answer older than this is the earlier message of a repeated nonce
/// (a new one is milliseconds old; clocks agree far better than this).
const DUPLICATE_AGE: Duration = Duration::from_millis(500);

/// What a countdown needs to run (or resume).
#[derive(Debug, Clone)]
pub struct CountdownSpec {
    pub task_id: i64,
    pub channel_id: u64,
    pub guild_id: Option<u64>,
    pub user_id: u64,
    pub target: u16,
    /// The first number to send (1, or `last_sent + 1` on resume).
    pub next: u16,
    /// When `next` is due.
    pub first_due: Instant,
    /// A resume past the nonce window: read the channel first and skip the
    /// numbers already there (see [`super::channel_check`]).
    pub check: Option<ResumeCheck>,
    /// When the user asked, for a fresh countdown (`None` on resume): the
    /// wait from then to number 1 is `countdown_admission_seconds`.
    pub asked_at: Option<DateTime<Utc>>,
}

/// A running countdown as others see it: its progress, and how to stop it.
#[derive(Debug)]
pub struct Live {
    pub spec: CountdownSpec,
    pub last_sent: AtomicU16,
    pub cancel: CancellationToken,
    stop_requested: AtomicBool,
}

impl Live {
    pub fn new(spec: CountdownSpec, cancel: CancellationToken) -> Self {
        let last_sent = AtomicU16::new(spec.next.saturating_sub(1));
        Live {
            spec,
            last_sent,
            cancel,
            stop_requested: AtomicBool::new(false),
        }
    }

    /// A user's `stop`, as opposed to a shutdown. True for the first
    /// request only, so concurrent stops report the stop once.
    pub fn request_stop(&self) -> bool {
        let first = !self.stop_requested.swap(true, Ordering::SeqCst);
        self.cancel.cancel();
        first
    }

    pub fn last_sent(&self) -> u16 {
        self.last_sent.load(Ordering::SeqCst)
    }
}

/// How a countdown's task ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ended {
    Finished,
    /// A user stopped it.
    Stopped,
    /// The bot is shutting down; the row stays `running` and resumes later.
    Interrupted,
    Failed(SendError),
    /// A resume could not read its channel to see what was posted already.
    Unreadable(SendError),
}

pub async fn run(live: &Live, delivery: &Delivery, journal: &Journal, metrics: &Metrics) -> Ended {
    let spec = &live.spec;
    let mut first = spec.next;
    let mut anchor = spec.first_due;
    if let Some(check) = spec.check {
        let scan = Scan::new(check.bot_user_id, spec.task_id, spec.next, spec.target);
        match channel_check::run(delivery, spec.channel_id, check, scan, &live.cancel).await {
            Ok(None) => {}
            Ok(Some(found)) => {
                tracing::info!(
                    found = found.k,
                    "numbers already in the channel; going on after them"
                );
                live.last_sent.store(found.k, Ordering::SeqCst);
                journal.progress(spec.task_id, found.k, Some(found.message_id));
                if found.k >= spec.target {
                    return Ended::Finished;
                }
                first = found.k + 1;
                // One second after the last one the channel shows, or now.
                let ahead = (found.posted_at() + TICK - chrono::Utc::now())
                    .to_std()
                    .unwrap_or_default();
                anchor = Instant::now() + ahead.min(TICK);
            }
            Err(DeliveryError::Cancelled) => return cancelled(live),
            Err(DeliveryError::Failed(error)) => return Ended::Unreadable(error),
        }
    }
    let mut anchor_k = first;
    for k in first..=spec.target {
        let due = anchor + TICK * u32::from(k - anchor_k);
        tokio::select! {
            biased;
            _ = live.cancel.cancelled() => return cancelled(live),
            _ = sleep_until(due) => {}
        }
        let message = Outgoing::Number {
            task_id: spec.task_id,
            k,
        };
        let Posted {
            slot,
            sent_at,
            channel_hold,
            budget_busy,
            answer,
        } = match delivery
            .deliver(spec.channel_id, &message, due, &live.cancel)
            .await
        {
            Ok(posted) => posted,
            Err(DeliveryError::Cancelled) => return cancelled(live),
            Err(DeliveryError::Failed(error)) => return Ended::Failed(error),
        };
        // A resumed countdown re-sends the number it was not sure of;
        // Discord may answer with the message it had already (nonce).
        let resent = answer.age.is_some_and(|age| age > DUPLICATE_AGE);
        live.last_sent.store(k, Ordering::SeqCst);
        journal.progress(spec.task_id, k, answer.message_id);
        metrics.messages_sent.inc();
        metrics
            .tick_lateness
            .observe(sent_at.saturating_duration_since(due).as_secs_f64());
        if let (1, Some(asked_at)) = (k, spec.asked_at) {
            let since_sent = chrono::Duration::from_std(sent_at.elapsed()).unwrap_or_default();
            let waited = (Utc::now() - since_sent - asked_at)
                .to_std()
                .unwrap_or_default();
            metrics.admission.observe(waited.as_secs_f64());
        }
        // When it left, not when the answer came: the answer's latency is
        // no part of the channel's pace.
        let late = sent_at.saturating_duration_since(due);
        let new_anchor = if k == first || resent {
            // The first number of a run goes out when its channel and the
            // budget let it (a reply may hold the channel, a resume waits
            // its turn, commands arrive in a burst): the next ones follow
            // one second after it, as the channel shows it. Its slot, not
            // the moment it left: every number leaves its slot a moment
            // late (the timer's tick, the thread's wake-up), and counted
            // from when it left, each would be late twice. A number Discord
            // had already counts the same: its request took a place in the
            // channel's bucket, and the next one a second after it keeps
            // the countdown's pace (catching up on the old schedule would
            // send two numbers at once, and the bucket would hold a later
            // one back).
            if resent {
                tracing::debug!(k, "number was already posted; going on a second after it");
            }
            Some(slot)
        } else if late > REANCHOR_AFTER {
            tracing::info!(
                k,
                late_ms = late.as_millis() as u64,
                "message went out late; re-anchoring the schedule"
            );
            Some(sent_at)
        } else {
            // The channel's window (Discord's, opened when the window's
            // first request *arrived*) held this number back, and the
            // global budget is busy: the rest follow it. Kept on `due`,
            // the next one came less than a second after it; two numbers of
            // one channel in one rolling second of the budget, in 40
            // channels started together, overflowed that second and held
            // numbers back by 20–50 ms, a second later again. With room in
            // the budget the held number alone is late: followed, every
            // later number of 5,000 countdowns came 13 ms late after 20 s.
            let follow = |hold: &Hold| {
                (budget_busy && hold.length >= FOLLOW_AT)
                    || (hold.by_discord && hold.length >= FOLLOW_ALONE)
            };
            channel_hold.filter(follow).map(|hold| {
                tracing::debug!(
                    k,
                    held_us = hold.length.as_micros() as u64,
                    "the channel's window held this number back; the rest follow it"
                );
                hold.until
            })
        };
        if let Some(at) = new_anchor {
            anchor = at + TICK;
            anchor_k = k + 1;
        }
    }
    Ended::Finished
}

fn cancelled(live: &Live) -> Ended {
    if live.stop_requested.load(Ordering::SeqCst) {
        Ended::Stopped
    } else {
        Ended::Interrupted
    }
}
