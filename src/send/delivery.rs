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

use tokio::sync::{Semaphore, SemaphorePermit};
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
        let mut retries = Retries::new(&self.policy, false);
        // Whether the channel held the first attempt back: retries are
        // not the channel's window but failures, and move no schedule.
        let mut first_grant = None;
        loop {
            let in_flight = self.in_flight(cancel).await?;
            let due = first_grant.map_or(due, |_| Instant::now());
            let grant: Grant = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(DeliveryError::Cancelled),
                grant = self.pacer.acquire_due(channel_id, due) => grant,
            };
            let first = *first_grant.get_or_insert(grant);
            self.wait_for_fence(cancel).await?;
            let sent_at = Instant::now();
            match self.sink.post(channel_id, message).await {
                Ok(answer) => {
                    self.heed_bucket(channel_id, sent_at, &answer);
                    retries.succeeded();
                    return Ok(Posted {
                        slot: grant.slot,
                        sent_at,
                        channel_hold: first.channel_hold,
                        budget_busy: first.budget_busy,
                        answer,
                    });
                }
                Err(error) => {
                    drop(in_flight);
                    let wait = self.failed(&mut retries, error, Some((channel_id, grant.slot)))?;
                    pause(wait, cancel).await?;
                }
            }
        }
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
        let mut retries = Retries::new(&self.policy, true);
        loop {
            let in_flight = self.in_flight(cancel).await?;
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(DeliveryError::Cancelled),
                _ = self.pacer.acquire_global() => {}
            }
            self.wait_for_fence(cancel).await?;
            match self.sink.list_after(channel_id, after).await {
                Ok(page) => {
                    retries.succeeded();
                    return Ok(page);
                }
                Err(error) => {
                    drop(in_flight);
                    let wait = self.failed(&mut retries, error, None)?;
                    pause(wait, cancel).await?;
                }
            }
        }
    }

    /// A place among the requests under way. It comes before the pacer
    /// slot (both are fair, first-come queues), so a request never goes out
    /// later than its slot for want of one.
    async fn in_flight(
        &self,
        cancel: &CancellationToken,
    ) -> Result<SemaphorePermit<'_>, DeliveryError> {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => Err(DeliveryError::Cancelled),
            permit = self.in_flight.acquire() => Ok(permit.expect("the semaphore is never closed")),
        }
    }

    /// What a delivered message's answer says about its channel's bucket:
    /// `Remaining: 0` blocks it until the reset.
    fn heed_bucket(&self, channel_id: u64, sent_at: Instant, answer: &Delivered) {
        if answer.remaining == Some(0) {
            if let Some(reset) = answer.reset_after {
                // Discord computed `reset_after` between our send and its
                // answer; counting from the send keeps the answer's latency
                // from delaying the next number.
                self.pacer.block_channel(channel_id, sent_at + reset);
            }
        }
    }

    /// A failed attempt: counted and logged; `Err` if it is not to be
    /// retried (refused for good, or out of time), else how long to wait
    /// before the next. A 429 blocks what Discord said is empty; for a post
    /// (`posted`: its channel and slot), the slot goes back to the pacer,
    /// since Discord did not count a request it refused, and the pacer's
    /// block is the wait.
    fn failed(
        &self,
        retries: &mut Retries,
        error: SendError,
        posted: Option<(u64, Instant)>,
    ) -> Result<Duration, DeliveryError> {
        self.metrics
            .send_errors
            .with_label_values(&[error.kind()])
            .inc();
        let edge_race = posted.is_some() && is_edge_race(&error);
        if edge_race {
            self.metrics.edge_races.inc();
        }
        retries.failed(&error, edge_race)?;
        let SendError::RateLimited {
            retry_after,
            global,
        } = error
        else {
            return Ok(retries.next_backoff());
        };
        let until = Instant::now() + retry_after;
        if global {
            self.pacer.block_global(until);
        }
        match posted {
            Some((channel_id, slot)) => {
                self.pacer.give_back(channel_id, slot);
                if !global {
                    self.pacer.block_channel(channel_id, until);
                }
                Ok(Duration::ZERO)
            }
            None => Ok(retry_after),
        }
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
}

/// The retries of one request: how long it has been tried, its next
/// backoff, and its run of failures, logged once when it starts and once
/// when it ends, not once per retry.
struct Retries {
    /// What is tried, for the logs: a post or a listing.
    listing: bool,
    policy: RetryPolicy,
    started: Instant,
    backoff: Duration,
    failures: u32,
    warned: bool,
}

impl Retries {
    fn new(policy: &RetryPolicy, listing: bool) -> Self {
        Retries {
            listing,
            policy: *policy,
            started: Instant::now(),
            backoff: policy.first_backoff,
            failures: 0,
            warned: false,
        }
    }

    /// Notes a failure; `Err` when it is not to be retried.
    fn failed(&mut self, error: &SendError, edge_race: bool) -> Result<(), DeliveryError> {
        self.failures += 1;
        if !error.is_retryable() {
            tracing::error!(%error, "Discord refused the message; not retrying");
            return Err(DeliveryError::Failed(error.clone()));
        }
        let elapsed = self.started.elapsed();
        if elapsed >= self.policy.give_up_after {
            tracing::error!(%error, failures = self.failures, "giving up after {elapsed:?}");
            return Err(DeliveryError::Failed(error.clone()));
        }
        if edge_race && !self.warned {
            // Expected now and then at full pace (see `window`): counted,
            // not a warning.
            tracing::debug!(%error, "429 at a bucket's edge; going again");
        } else if !self.warned && self.listing {
            self.warned = true;
            tracing::warn!(%error, kind = error.kind(), "listing the channel failed; retrying");
        } else if !self.warned {
            self.warned = true;
            tracing::warn!(%error, kind = error.kind(), "send failed; retrying");
        } else {
            tracing::debug!(%error, failures = self.failures, "send failed again");
        }
        Ok(())
    }

    fn next_backoff(&mut self) -> Duration {
        self.policy.next_backoff(&mut self.backoff)
    }

    fn succeeded(&self) {
        if self.warned {
            let failures = self.failures;
            if self.listing {
                tracing::info!(failures, "listed after {failures} failed attempts");
            } else {
                tracing::info!(failures, "delivered after {failures} failed attempts");
            }
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
