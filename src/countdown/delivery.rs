//! Delivery: one message, posted through the pacer, retried with backoff
//! until it is delivered, refused for good, cancelled, or out of time.
//!
//! Each failed attempt is counted in `countdown_send_errors_total{kind}`, but
//! a run of failures is logged once when it starts and once when it ends,
//! not once per retry.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::pacer::Pacer;
use super::sink::{Delivered, MessageSink, Outgoing, SendError};
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

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DeliveryError {
    #[error("cancelled before the message was delivered")]
    Cancelled,
    #[error("{0}")]
    Failed(SendError),
}

#[derive(Clone)]
pub struct Delivery {
    sink: Arc<dyn MessageSink>,
    pacer: Arc<Pacer>,
    metrics: Metrics,
    policy: RetryPolicy,
    fence: Arc<Fence>,
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
        }
    }

    /// Posts `message`, waiting for the pacer and retrying transient failures.
    /// `cancel` is honoured while waiting, never in the middle of a request.
    /// Returns when the request that succeeded went out, and Discord's answer.
    pub async fn deliver(
        &self,
        channel_id: u64,
        message: &Outgoing,
        cancel: &CancellationToken,
    ) -> Result<(Instant, Delivered), DeliveryError> {
        let started = Instant::now();
        let mut backoff = self.policy.first_backoff;
        let mut failures = 0u32;
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(DeliveryError::Cancelled),
                _ = self.pacer.acquire(channel_id) => {}
            }
            if !self.fence.is_open() {
                // Not (or no longer) the leader: another instance may be sending.
                return Err(DeliveryError::Cancelled);
            }
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
                    if failures > 0 {
                        tracing::info!(failures, "delivered after {failures} failed attempts");
                    }
                    return Ok((attempt, delivered));
                }
                Err(error) => error,
            };
            self.metrics
                .send_errors
                .with_label_values(&[error.kind()])
                .inc();
            failures += 1;
            if !error.is_retryable() {
                tracing::error!(%error, "Discord refused the message; not retrying");
                return Err(DeliveryError::Failed(error));
            }
            if started.elapsed() >= self.policy.give_up_after {
                tracing::error!(%error, failures, "giving up after {:?}", started.elapsed());
                return Err(DeliveryError::Failed(error));
            }
            if failures == 1 {
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
                    if *global {
                        self.pacer.block_global(until);
                    } else {
                        self.pacer.block_channel(channel_id, until);
                    }
                    Duration::ZERO
                }
                _ => {
                    let wait = backoff;
                    backoff = (backoff * 2).min(self.policy.max_backoff);
                    wait
                }
            };
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(DeliveryError::Cancelled),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}
