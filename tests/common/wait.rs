//! Waiting for state another process keeps: the bot's rows, metrics and
//! log, a Prometheus' answers. Such state has no event a test could await,
//! so it is polled; what the fake can await itself (`wait_messages`,
//! `wait_for_messages_matching`, …) is awaited there instead.
//!
//! A check that *nothing more* comes is no such wait: it sleeps for as long
//! as the thing it rules out would take to show, then looks once.

use std::fmt::Debug;
use std::ops::AsyncFnMut;
use std::time::{Duration, Instant};

/// How often [`eventually`] looks again: a test reacts within a few tens of
/// milliseconds, and a probe that opens a database connection each time
/// does not load the machine the bot under test shares.
const POLL: Duration = Duration::from_millis(20);

/// Reads `probe` until `holds` is true of what it returned, and returns
/// that. After `within` the test fails, naming `what` it waited for and the
/// last value it saw.
pub async fn eventually<T: Debug>(
    what: &str,
    within: Duration,
    mut probe: impl AsyncFnMut() -> T,
    holds: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        let seen = probe().await;
        if holds(&seen) {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}; last seen: {seen:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}
