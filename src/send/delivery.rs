//! Delivery: one message, posted through the pacer, retried with backoff
//! until it is delivered, refused for good, cancelled, or out of time.
//!
//! Each failed attempt is counted in `countdown_send_errors_total{kind}`, but
//! a run of failures is logged once when it starts and once when it ends,
//! not once per retry.
//!
//! At most [`MAX_IN_FLIGHT`] requests of a `Delivery` are under way at once
//! (waiting for their pacer slot or for the answer). The HTTP client opens a
//! connection for every request that finds no idle one, so without this
//! bound a burst (10,000 countdowns resumed at once, or every countdown of a
//! busy second while answers are slow) opened thousands of connections at
//! once: the server's accept queue overflowed, dropped SYNs came back after
//! the kernel's 1 s, 2 s, 4 s retransmission timeouts, and numbers arrived
//! seconds late.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::pacer::{Grant, Hold, Pacer};
use super::sink::{Delivered, Listed, MessageSink, Outgoing, SendError};
use crate::leader::Fence;
use crate::metrics::Metrics;

/// How long and how often a message is retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// Stop retrying after this long. Kept inside Discord's nonce window (a
    /// few minutes), so a retry of a send that did arrive is still deduplicated.
    pub give_up_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            first_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(5),
            give_up_after: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// The wait before the next retry of a failure, doubling `backoff` up
    /// to the policy's longest.
    fn next_backoff(&self, backoff: &mut Duration) -> Duration {
        let wait = *backoff;
        *backoff = (*backoff * 2).min(self.max_backoff);
        wait
    }
}

/// Waits `wait` unless `cancel` comes first.
async fn pause(wait: Duration, cancel: &CancellationToken) -> Result<(), DeliveryError> {
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(DeliveryError::Cancelled),
        _ = tokio::time::sleep(wait) => Ok(()),
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DeliveryError {
    #[error("cancelled before the message was delivered")]
    Cancelled,
    #[error("{0}")]
    Failed(SendError),
}

/// Requests of one [`Delivery`] under way at once, and so at most as many
/// connections to Discord. Plenty: at Discord's 50 requests per second it
/// keeps up with answers taking up to 5 s, and 5,000 numbers a second need
/// about 10 against a local server.
pub const MAX_IN_FLIGHT: usize = 256;

/// A message Discord accepted.
#[derive(Debug)]
pub struct Posted {
    /// The pacer's slot for the request that succeeded: when it was meant
    /// to go (its due time, unless the pacer held it back).
    pub slot: Instant,
    /// When it went out (the task wakes up a moment after its slot).
    pub sent_at: Instant,
    /// Whether the channel's bucket (Discord's window as its answers told
    /// it, and the bot's own record) held the first attempt back.
    pub channel_hold: Option<Hold>,
    /// Whether the global budget was busy then (see [`Grant::budget_busy`]).
    pub budget_busy: bool,
    pub answer: Delivered,
}

#[derive(Clone)]
pub struct Delivery {
    sink: Arc<dyn MessageSink>,
    pacer: Arc<Pacer>,
    metrics: Metrics,
    policy: RetryPolicy,
    fence: Arc<Fence>,
    in_flight: Arc<Semaphore>,
}

impl Delivery {
    pub fn new(
        sink: Arc<dyn MessageSink>,
        pacer: Arc<Pacer>,
        metrics: Metrics,
        policy: RetryPolicy,
        fence: Arc<Fence>,
    ) -> Self {
        Delivery {
            sink,
            pacer,
            metrics,
            policy,
            fence,
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        }
    }

    /// Posts `message`, due at `due`, waiting for the pacer and retrying
    /// transient failures. `cancel` is honoured while waiting, never in the
    /// middle of a request.
    pub async fn deliver(
        &self,
        channel_id: u64,
        message: &Outgoing,
        due: Instant,
        cancel: &CancellationToken,
    ) -> Result<Posted, DeliveryError> {
        let started = Instant::now();
        // Whether the channel held the first attempt back: retries are
        // not the channel's window but failures, and move no schedule.
        let mut first_grant = None;
        let mut backoff = self.policy.first_backoff;
        let mut failures = 0u32;
        // A run of failures is logged when it starts and when it ends.
        let mut warned = false;
        loop {
            // A place among the requests under way comes before the pacer
            // slot (both are fair, first-come queues), so a request never
            // goes out later than its slot for want of one.
            let in_flight = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(DeliveryError::Cancelled),
                permit = self.in_flight.acquire() => permit.expect("the semaphore is never closed"),
            };
            let grant: Grant = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(DeliveryError::Cancelled),
                grant = self.pacer.acquire_due(channel_id, first_grant.map_or(due, |_| Instant::now())) => grant,
            };
            let slot = grant.slot;
            let first = *first_grant.get_or_insert(grant);
            // Never send while the fence is closed.
            self.wait_for_fence(cancel).await?;
            let attempt = Instant::now();
            let error = match self.sink.post(channel_id, message).await {
                Ok(delivered) => {
                    if delivered.remaining == Some(0) {
                        if let Some(reset) = delivered.reset_after {
                            // Discord computed `reset_after` between our send and
                            // its answer; counting from the send keeps the
                            // answer's latency from delaying the next number.
                            self.pacer.block_channel(channel_id, attempt + reset);
                        }
                    }
                    if warned {
                        tracing::info!(failures, "delivered after {failures} failed attempts");
                    }
                    return Ok(Posted {
                        slot,
                        sent_at: attempt,
                        channel_hold: first.channel_hold,
                        budget_busy: first.budget_busy,
                        answer: delivered,
                    });
                }
                Err(error) => error,
            };
            drop(in_flight);
            self.count_failure(&error);
            failures += 1;
            let edge_race = is_edge_race(&error);
            if edge_race {
                self.metrics.edge_races.inc();
            }
            if !error.is_retryable() {
                tracing::error!(%error, "Discord refused the message; not retrying");
                return Err(DeliveryError::Failed(error));
            }
            if started.elapsed() >= self.policy.give_up_after {
                tracing::error!(%error, failures, "giving up after {:?}", started.elapsed());
                return Err(DeliveryError::Failed(error));
            }
            if edge_race && !warned {
                // Expected now and then at full pace (see `pacer`): counted,
                // not a warning.
                tracing::debug!(%error, "429 at a bucket's edge; going again");
            } else if !warned {
                warned = true;
                tracing::warn!(%error, kind = error.kind(), "send failed; retrying");
            } else {
                tracing::debug!(%error, failures, "send failed again");
            }
            let wait = match &error {
                SendError::RateLimited {
                    retry_after,
                    global,
                } => {
                    let until = Instant::now() + *retry_after;
                    // Discord did not count a request it refused with a 429:
                    // the slot goes back, so a 429 at a bucket's edge costs
                    // its few milliseconds, not a second of the bucket.
                    self.pacer.give_back(channel_id, slot);
                    if *global {
                        self.pacer.block_global(until);
                    } else {
                        self.pacer.block_channel(channel_id, until);
                    }
                    Duration::ZERO
                }
                _ => self.policy.next_backoff(&mut backoff),
            };
            pause(wait, cancel).await?;
        }
    }
}

impl Delivery {
    /// One failed attempt, in `countdown_send_errors_total{kind}`.
    fn count_failure(&self, error: &SendError) {
        self.metrics
            .send_errors
            .with_label_values(&[error.kind()])
            .inc();
    }

    /// Waits while the fence is closed: another instance may be the leader.
    /// A late ping only closes it for a moment; a lost leadership cancels
    /// `cancel` and ends the wait.
    async fn wait_for_fence(&self, cancel: &CancellationToken) -> Result<(), DeliveryError> {
        while !self.fence.is_open() {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(DeliveryError::Cancelled),
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
        Ok(())
    }

    /// Lists the messages of `channel_id` right after message `after`
    /// (oldest first), paced by the global budget (reading is another route
    /// than posting, with a bucket of its own) and retried like a post: a
    /// channel the bot may no longer read (403, 404) fails at once.
    pub async fn list_after(
        &self,
        channel_id: u64,
        after: u64,
        cancel: &CancellationToken,
    ) -> Result<Vec<Listed>, DeliveryError> {
        let started = Instant::now();
        let mut backoff = self.policy.first_backoff;
        loop {
            let in_flight = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(DeliveryError::Cancelled),
                permit = self.in_flight.acquire() => permit.expect("the semaphore is never closed"),
            };
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(DeliveryError::Cancelled),
                _ = self.pacer.acquire_global() => {}
            }
            self.wait_for_fence(cancel).await?;
            let error = match self.sink.list_after(channel_id, after).await {
                Ok(page) => return Ok(page),
                Err(error) => error,
            };
            drop(in_flight);
            self.count_failure(&error);
            if !error.is_retryable() || started.elapsed() >= self.policy.give_up_after {
                return Err(DeliveryError::Failed(error));
            }
            tracing::debug!(%error, "listing the channel failed; retrying");
            let wait = match error {
                SendError::RateLimited {
                    retry_after,
                    global,
                } => {
                    if global {
                        self.pacer.block_global(Instant::now() + retry_after);
                    }
                    retry_after
                }
                _ => self.policy.next_backoff(&mut backoff),
            };
            pause(wait, cancel).await?;
        }
    }
}

/// A channel 429 asking to wait at most this long is a race with the
/// window's edge: a number sent exactly when its channel's window ends
/// arrived a few ms early (see `pacer`). Anything longer is a real limit.
pub const EDGE_RACE: Duration = Duration::from_millis(100);

fn is_edge_race(error: &SendError) -> bool {
    matches!(error, SendError::RateLimited { retry_after, global: false } if *retry_after <= EDGE_RACE)
}
