//! A channel's bucket as the bot keeps it: a sliding window of the last
//! requests ("at most `limit` in any `period`", the strictest reading of
//! Discord's per-route limits), plus the block Discord sets with
//! `X-RateLimit-Remaining: 0` or a 429.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// Discord's per-channel bucket for posting messages.
pub const CHANNEL_LIMIT: usize = 5;
pub const CHANNEL_PERIOD: Duration = Duration::from_secs(5);
// No margin is kept on top of `CHANNEL_PERIOD`, on purpose. A countdown
// posts one number a second, which is exactly its channel's bucket (5 per
// 5 s), so any margin is paid by every fifth number and carried by the
// next window: 30 ms makes a countdown 1.006 s a number, 0.36 s late at
// 60. Discord's buckets are leaky since 2022 (room for one comes back
// every second), and there a countdown always has 4 to spare; the window
// below is the stricter shape some routes still have. A fixed window opens
// when the first request *arrives*, and arrivals jitter, so the 6th number,
// sent exactly 5 s after the 1st, now and then arrives a millisecond inside
// the window and gets a 429. That 429 says how long to wait (milliseconds);
// the request gives its slot back and goes again (see
// `Delivery::deliver`), so it costs that number a few ms and is counted in
// `countdown_send_errors_total{kind="rate_limited"}`. On time wins: the
// schedule is what users see. The global budget keeps its margin
// ([`super::budget::GLOBAL_MARGIN`]), where it costs no one's schedule.

/// Sliding window of the last `limit` slots, plus a block set by Discord.
pub(super) struct Window {
    limit: usize,
    period: Duration,
    recent: VecDeque<Instant>,
    blocked_until: Option<Instant>,
}

impl Window {
    pub(super) fn new(limit: usize, period: Duration) -> Self {
        Window {
            limit,
            period,
            recent: VecDeque::with_capacity(limit.min(1024)),
            blocked_until: None,
        }
    }

    /// The earliest slot at or after `not_before` that keeps this window's
    /// promise and comes after every slot already handed out, and whether
    /// Discord's block (rather than the bot's own record) decides it.
    pub(super) fn earliest_and_why(&self, not_before: Instant) -> (Instant, bool) {
        let mut t = not_before;
        if let Some(&last) = self.recent.back() {
            t = t.max(last);
        }
        if self.recent.len() >= self.limit {
            t = t.max(self.recent[self.recent.len() - self.limit] + self.period);
        }
        match self.blocked_until {
            Some(blocked) if blocked > t => (blocked, true),
            _ => (t, false),
        }
    }

    pub(super) fn take(&mut self, t: Instant) {
        self.recent.push_back(t);
        while self.recent.len() > self.limit {
            self.recent.pop_front();
        }
    }

    pub(super) fn is_blocked_at(&self, t: Instant) -> bool {
        self.blocked_until.is_some_and(|b| b > t)
    }

    pub(super) fn block_until(&mut self, until: Instant) {
        self.blocked_until = Some(self.blocked_until.map_or(until, |b| b.max(until)));
    }

    pub(super) fn is_idle_at(&self, now: Instant) -> bool {
        let recent_done = self.recent.back().is_none_or(|&t| t + self.period <= now);
        recent_done && !self.is_blocked_at(now)
    }

    /// Forgets `slot`: Discord refused its request with a 429, which it
    /// counts in no bucket.
    pub(super) fn give_back(&mut self, slot: Instant) {
        if let Some(i) = self.recent.iter().rposition(|&t| t == slot) {
            self.recent.remove(i);
        }
    }
}
