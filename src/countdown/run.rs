//! One countdown's life: number k is due at `first_due + (k - next) s`,
//! sleeps until then, sends through [`Delivery`], notes its progress in the
//! journal and goes on. Deadlines are absolute, so send latency never adds
//! up; a message that went out more than a second late re-anchors the
//! schedule instead of a burst to catch up.

use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::time::Duration;

use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use super::delivery::{Delivery, DeliveryError};
use super::sink::{Outgoing, SendError};
use crate::metrics::Metrics;
use crate::storage::Journal;

/// A stall longer than this re-anchors the schedule.
pub const REANCHOR_AFTER: Duration = Duration::from_secs(1);
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
}

pub async fn run(live: &Live, delivery: &Delivery, journal: &Journal, metrics: &Metrics) -> Ended {
    let spec = &live.spec;
    let mut anchor = spec.first_due;
    let mut anchor_k = spec.next;
    for k in spec.next..=spec.target {
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
        let (sent_at, answer) = match delivery
            .deliver(spec.channel_id, &message, &live.cancel)
            .await
        {
            Ok(sent) => sent,
            Err(DeliveryError::Cancelled) => return cancelled(live),
            Err(DeliveryError::Failed(error)) => return Ended::Failed(error),
        };
        // A resumed countdown re-sends the number it was not sure of; if
        // Discord answers with the message it already had (nonce), the
        // schedule goes on from when that one was really posted.
        let earlier_post = answer
            .age
            .filter(|age| *age > DUPLICATE_AGE)
            .and_then(|age| Instant::now().checked_sub(age));
        let delivered = Instant::now();
        live.last_sent.store(k, Ordering::SeqCst);
        journal.progress(spec.task_id, k);
        metrics.messages_sent.inc();
        metrics
            .tick_lateness
            .observe(sent_at.saturating_duration_since(due).as_secs_f64());
        if let Some(posted) = earlier_post {
            tracing::debug!(k, "number was already posted; continuing from its time");
            anchor = posted + TICK;
            anchor_k = k + 1;
        } else if delivered.saturating_duration_since(due) > REANCHOR_AFTER && k < spec.target {
            tracing::info!(
                k,
                late_ms = delivered.saturating_duration_since(due).as_millis() as u64,
                "message went out late; re-anchoring the schedule"
            );
            anchor = delivered + TICK;
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
