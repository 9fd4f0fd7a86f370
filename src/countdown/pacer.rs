//! The pacer: every request to Discord first takes a slot here, so the bot
//! never sends faster than `GLOBAL_RATE` per second nor faster than a
//! channel's bucket (5 messages per 5 s), and it honours what Discord says
//! (`X-RateLimit-Remaining: 0`, 429 answers) by blocking the bucket until the
//! reset.
//!
//! Slots are handed out first come, first served: a request never overtakes
//! an earlier one, so when more countdowns run than the budget allows they
//! take turns and share it fairly. Windows are sliding ("at most N in any
//! period"), the strictest reading of Discord's limits.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::{sleep_until, Instant};

/// Discord's per-channel bucket for posting messages.
pub const CHANNEL_LIMIT: usize = 5;
pub const CHANNEL_PERIOD: Duration = Duration::from_secs(5);

pub struct Pacer {
    state: Mutex<State>,
}

struct State {
    global: Window,
    channels: HashMap<u64, Window>,
    channel_limit: usize,
    channel_period: Duration,
    acquisitions: u64,
}

/// Sliding window of the last `limit` slots, plus a block set by Discord.
struct Window {
    limit: usize,
    period: Duration,
    recent: VecDeque<Instant>,
    blocked_until: Option<Instant>,
}

impl Window {
    fn new(limit: usize, period: Duration) -> Self {
        Window {
            limit,
            period,
            recent: VecDeque::with_capacity(limit.min(1024)),
            blocked_until: None,
        }
    }

    /// The earliest slot at or after `not_before` that keeps this window's
    /// promise and comes after every slot already handed out.
    fn earliest(&self, not_before: Instant) -> Instant {
        let mut t = not_before;
        if let Some(blocked) = self.blocked_until {
            t = t.max(blocked);
        }
        if let Some(&last) = self.recent.back() {
            t = t.max(last);
        }
        if self.recent.len() >= self.limit {
            t = t.max(self.recent[self.recent.len() - self.limit] + self.period);
        }
        t
    }

    fn take(&mut self, t: Instant) {
        self.recent.push_back(t);
        while self.recent.len() > self.limit {
            self.recent.pop_front();
        }
    }

    fn is_blocked_at(&self, t: Instant) -> bool {
        self.blocked_until.is_some_and(|b| b > t)
    }

    fn block_until(&mut self, until: Instant) {
        self.blocked_until = Some(self.blocked_until.map_or(until, |b| b.max(until)));
    }

    fn is_idle_at(&self, now: Instant) -> bool {
        let recent_done = self.recent.back().is_none_or(|&t| t + self.period <= now);
        recent_done && !self.is_blocked_at(now)
    }
}

impl Pacer {
    /// A pacer allowing `global_per_sec` requests per second in all and the
    /// Discord per-channel bucket in each channel.
    pub fn new(global_per_sec: u32) -> Self {
        Self::with_channel_limit(global_per_sec, CHANNEL_LIMIT, CHANNEL_PERIOD)
    }

    pub fn with_channel_limit(global_per_sec: u32, limit: usize, period: Duration) -> Self {
        Pacer {
            state: Mutex::new(State {
                global: Window::new(global_per_sec.max(1) as usize, Duration::from_secs(1)),
                channels: HashMap::new(),
                channel_limit: limit.max(1),
                channel_period: period,
                acquisitions: 0,
            }),
        }
    }

    /// Waits until a request to `channel_id` may go out. If Discord blocked
    /// the bucket while we waited, waits for the next free slot again.
    pub async fn acquire(&self, channel_id: u64) {
        loop {
            let slot = self.reserve(channel_id, Instant::now());
            sleep_until(slot).await;
            if !self.is_blocked(channel_id, slot) {
                return;
            }
        }
    }

    fn reserve(&self, channel_id: u64, now: Instant) -> Instant {
        let mut guard = self.state.lock().expect("pacer state poisoned");
        let state = &mut *guard;
        state.acquisitions += 1;
        if state.acquisitions % 4096 == 0 {
            state.channels.retain(|_, w| !w.is_idle_at(now));
        }
        let (limit, period) = (state.channel_limit, state.channel_period);
        let channel = state
            .channels
            .entry(channel_id)
            .or_insert_with(|| Window::new(limit, period));
        let slot = state.global.earliest(channel.earliest(now));
        state.global.take(slot);
        channel.take(slot);
        slot
    }

    fn is_blocked(&self, channel_id: u64, at: Instant) -> bool {
        let state = self.state.lock().expect("pacer state poisoned");
        state.global.is_blocked_at(at)
            || state
                .channels
                .get(&channel_id)
                .is_some_and(|w| w.is_blocked_at(at))
    }

    /// Discord said this channel's bucket is empty until `until` (429, or `Remaining: 0`).
    pub fn block_channel(&self, channel_id: u64, until: Instant) {
        let mut state = self.state.lock().expect("pacer state poisoned");
        let (limit, period) = (state.channel_limit, state.channel_period);
        state
            .channels
            .entry(channel_id)
            .or_insert_with(|| Window::new(limit, period))
            .block_until(until);
    }

    /// Discord said the bot hit its global limit, until `until`.
    pub fn block_global(&self, until: Instant) {
        self.state
            .lock()
            .expect("pacer state poisoned")
            .global
            .block_until(until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Takes `n` slots on `channel(i)` concurrently; returns when each was granted.
    async fn grant_times(
        pacer: Arc<Pacer>,
        n: usize,
        channel: impl Fn(usize) -> u64,
    ) -> Vec<(u64, Duration)> {
        let start = Instant::now();
        let mut handles = Vec::new();
        for i in 0..n {
            let pacer = pacer.clone();
            let ch = channel(i);
            handles.push(tokio::spawn(async move {
                pacer.acquire(ch).await;
                (ch, start.elapsed())
            }));
            tokio::task::yield_now().await;
        }
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap());
        }
        out
    }

    fn max_in_window(times: &[Duration], window: Duration) -> usize {
        let mut sorted = times.to_vec();
        sorted.sort();
        (0..sorted.len())
            .map(|i| {
                sorted[i..]
                    .iter()
                    .take_while(|t| **t < sorted[i] + window)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_than_the_global_rate_in_any_second() {
        let pacer = Arc::new(Pacer::new(50));
        let granted = grant_times(pacer, 130, |i| i as u64).await;
        let times: Vec<_> = granted.iter().map(|g| g.1).collect();
        assert_eq!(max_in_window(&times, Duration::from_secs(1)), 50);
        // The budget is used, not wasted: 130 requests take just over 2 s.
        assert_eq!(times.iter().max().unwrap().as_secs(), 2);
        assert_eq!(times.iter().filter(|t| t.is_zero()).count(), 50);
    }

    #[tokio::test(start_paused = true)]
    async fn a_channel_gets_five_per_five_seconds() {
        let pacer = Arc::new(Pacer::new(50));
        let granted = grant_times(pacer, 11, |_| 7).await;
        let secs: Vec<_> = granted.iter().map(|g| g.1.as_secs()).collect();
        assert_eq!(secs, vec![0, 0, 0, 0, 0, 5, 5, 5, 5, 5, 10]);
    }

    #[tokio::test(start_paused = true)]
    async fn one_per_second_in_a_channel_is_never_delayed() {
        let pacer = Pacer::new(50);
        let start = Instant::now();
        for k in 0..12u64 {
            tokio::time::sleep_until(start + Duration::from_secs(k)).await;
            pacer.acquire(1).await;
            assert_eq!(start.elapsed(), Duration::from_secs(k));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn slots_are_first_come_first_served() {
        let pacer = Arc::new(Pacer::new(2));
        let granted = grant_times(pacer, 8, |i| i as u64).await;
        let order: Vec<_> = granted.iter().map(|g| g.1).collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted, "a later request overtook an earlier one");
    }

    #[tokio::test(start_paused = true)]
    async fn blocks_from_discord_are_honoured() {
        let pacer = Pacer::new(50);
        let start = Instant::now();
        pacer.block_channel(3, start + Duration::from_millis(700));
        pacer.acquire(4).await;
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "other channels are not blocked"
        );
        pacer.acquire(3).await;
        assert_eq!(start.elapsed(), Duration::from_millis(700));
        pacer.block_global(Instant::now() + Duration::from_secs(2));
        pacer.acquire(4).await;
        assert_eq!(start.elapsed(), Duration::from_millis(2700));
    }

    #[tokio::test(start_paused = true)]
    async fn a_block_arriving_while_waiting_delays_the_waiter() {
        let pacer = Arc::new(Pacer::new(1));
        let start = Instant::now();
        pacer.acquire(1).await; // the next global slot is now at 1 s
        let waiter = tokio::spawn({
            let pacer = pacer.clone();
            async move {
                pacer.acquire(2).await;
                start.elapsed()
            }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        pacer.block_global(Instant::now() + Duration::from_secs(3));
        assert!(waiter.await.unwrap() >= Duration::from_millis(3500));
    }
}
