//! Precise waking: a task that must leave at an exact instant (the first
//! request of a channel's window) sleeps on the timer until a tick before,
//! then yields to the runtime until the instant.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::{sleep_until, Instant};

/// The lead of [`sleep_precisely_until`]: tokio's timer fires on the first
/// millisecond tick at or after a deadline.
const TIMER_TICK: Duration = Duration::from_millis(1);

/// At most this many tasks yield-wait in [`sleep_precisely_until`] at once;
/// more sleep on the timer alone. At 5,000 countdowns a window opens
/// somewhere every millisecond, and yield-waiting for all of them kept both
/// cores' workers spinning (bot CPU 42 % → 61 % of a core, numbers up to
/// 100 ms late).
const MAX_YIELD_WAITING: usize = 2;

static YIELD_WAITING: AtomicUsize = AtomicUsize::new(0);

/// Sleeps until `at`, without the timer's lateness: the timer wakes the task
/// up to a tick early, and it yields to the runtime until `at`.
///
/// For a request its channel held back (the first of a window): Discord's
/// window opens when that request *arrives*, and the next window can open
/// only 5 s after, so whatever this request is late by, the first request of
/// every later window is late by too. The timer's lateness (half a tick on
/// average, plus the thread's wake-up: 1.2 ms median at 40 countdowns)
/// added about 1 ms to a countdown at its channel's limit every 5 numbers.
/// The cost is under a millisecond of yielding, once every 5 s per counting
/// channel, and never more than [`MAX_YIELD_WAITING`] tasks at once.
pub(super) async fn sleep_precisely_until(at: Instant) {
    struct Waiting;
    impl Drop for Waiting {
        fn drop(&mut self) {
            YIELD_WAITING.fetch_sub(1, Ordering::Relaxed);
        }
    }
    if let Some(early) = at.checked_sub(TIMER_TICK) {
        sleep_until(early).await;
    }
    if YIELD_WAITING.fetch_add(1, Ordering::Relaxed) >= MAX_YIELD_WAITING {
        YIELD_WAITING.fetch_sub(1, Ordering::Relaxed);
        sleep_until(at).await;
        return;
    }
    let _waiting = Waiting;
    let mut last = None;
    loop {
        let now = Instant::now();
        if now >= at {
            return;
        }
        if last == Some(now) {
            // The clock stands still (tokio's paused test clock moves
            // only when every task sleeps): let the timer move it.
            sleep_until(at).await;
            return;
        }
        last = Some(now);
        tokio::task::yield_now().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Under the paused test clock the yielding part cannot see time move;
    /// it hands over to the timer instead of spinning forever.
    #[tokio::test(start_paused = true)]
    async fn a_precise_sleep_ends_exactly_at_its_deadline() {
        let at = Instant::now() + Duration::from_millis(1500);
        sleep_precisely_until(at).await;
        assert_eq!(Instant::now(), at);
    }

    /// On the real clock it never wakes early (early, a window's first
    /// request would arrive before the window ended: a 429).
    #[tokio::test]
    async fn a_precise_sleep_never_ends_early() {
        for micros in [0, 300, 1_000, 2_500] {
            let at = Instant::now() + Duration::from_micros(micros);
            sleep_precisely_until(at).await;
            assert!(Instant::now() >= at);
        }
    }
}
