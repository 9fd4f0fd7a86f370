//! The pacer: every request to Discord first takes a slot here, so the bot
//! never sends faster than `GLOBAL_RATE` per second nor faster than a
//! channel's bucket (5 messages per 5 s), and it honours what Discord says
//! (`X-RateLimit-Remaining: 0`, 429 answers) by blocking the bucket until the
//! reset.
//!
//! Slots are handed out first come, first served: a request never overtakes
//! an earlier one of its channel, and requests that are free to go take the
//! global budget in turn, so when more countdowns run than the budget allows
//! they take turns and share it fairly. A request that waits for its
//! channel's bucket does not hold up other channels: it books the first free
//! global slot at or after its channel slot, and leaves the slots before it
//! to others (see [`Budget`]). Windows are sliding ("at most N in any
//! period"), the strictest reading of Discord's limits.
//!
//! The parts: [`super::window`] (a channel's bucket), [`super::budget`]
//! (the global budget) and [`super::wake`] (leaving at the exact instant).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::{sleep_until, Instant};

use super::budget::{Budget, GLOBAL_MARGIN};
use super::wake::sleep_precisely_until;
use super::window::{Window, CHANNEL_LIMIT, CHANNEL_PERIOD};

/// How far before `now` a slot may be booked: a countdown's number is
/// booked at its due time, not at the moment its task woke up for it (up to
/// a millisecond later: the timer's tick, the thread's wake-up). Booked at
/// the wake-up, the channel's record moved by that much now and then, and
/// the number five later was "held" by it: a countdown following its
/// channel (see `run`) drifted by it.
pub const BACKDATE: Duration = Duration::from_millis(5);

pub struct Pacer {
    state: Mutex<State>,
}

/// A request's place: when it may go, and whether its channel's bucket held
/// it back (the rest of the wait, if any, is the global budget's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub slot: Instant,
    pub channel_hold: Option<Hold>,
    /// The global budget's last second was at least [`BUSY_SHARE`](super::budget::BUSY_SHARE) full
    /// when the slot was booked.
    pub budget_busy: bool,
}

/// The channel's bucket made a request wait past the moment it asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    /// When the bucket let it go.
    pub until: Instant,
    /// How long past the moment it asked.
    pub length: Duration,
    /// Discord's own word held it (`Remaining: 0` or a 429 blocked the
    /// bucket), not the bot's record of its requests.
    pub by_discord: bool,
}

struct State {
    global: Budget,
    channels: HashMap<u64, Window>,
    channel_limit: usize,
    channel_period: Duration,
    acquisitions: u64,
}

impl Pacer {
    /// A pacer allowing `global_per_sec` requests per second in all and the
    /// Discord per-channel bucket in each channel.
    pub fn new(global_per_sec: u32) -> Self {
        Self::with_limits(global_per_sec, GLOBAL_MARGIN, CHANNEL_LIMIT, CHANNEL_PERIOD)
    }

    /// Exact limits: no [`GLOBAL_MARGIN`] and no pacing of held-back slots
    /// (every slot is the earliest that keeps the promises).
    pub fn with_channel_limit(global_per_sec: u32, limit: usize, period: Duration) -> Self {
        Self::with_limits(global_per_sec, Duration::ZERO, limit, period)
    }

    fn with_limits(
        global_per_sec: u32,
        global_margin: Duration,
        limit: usize,
        period: Duration,
    ) -> Self {
        Pacer {
            state: Mutex::new(State {
                global: Budget::new(
                    global_per_sec.max(1) as usize,
                    Duration::from_secs(1),
                    global_margin,
                ),
                channels: HashMap::new(),
                channel_limit: limit.max(1),
                channel_period: period,
                acquisitions: 0,
            }),
        }
    }

    /// Waits until a request to `channel_id` may go out, and returns its
    /// slot. If Discord blocked the bucket while we waited, waits for the
    /// next free slot again.
    pub async fn acquire(&self, channel_id: u64) -> Grant {
        self.acquire_due(channel_id, Instant::now()).await
    }

    /// Like [`Pacer::acquire`], for a request due at `due` (a countdown's
    /// number, whose task woke up for it a moment after `due`).
    pub async fn acquire_due(&self, channel_id: u64, due: Instant) -> Grant {
        let mut due = due;
        loop {
            let grant = self.reserve(channel_id, Instant::now(), due);
            if grant.channel_hold.is_some() {
                sleep_precisely_until(grant.slot).await;
            } else {
                sleep_until(grant.slot).await;
            }
            if !self.is_blocked(channel_id, grant.slot) {
                return grant;
            }
            // Discord blocked the bucket while this request slept (a 429
            // of another request): the slot was never used, so it goes
            // back. Kept, it counted as this channel's request in the
            // channel's window, and the retry waited for that window, a
            // second after the number was due (with the global limit
            // enforced: numbers a second late after a global 429 of other
            // channels).
            self.give_back(channel_id, grant.slot);
            due = Instant::now();
        }
    }

    /// Books a global slot for a request the bot does not send through the
    /// pacer: serenity's own `GET /gateway/bot` when the gateway connects.
    /// Without it, that request and the burst of resumed numbers after
    /// READY made 51 in one second (one global 429).
    /// Returns the slot booked (now, unless the budget is full).
    pub fn book_external(&self) -> Instant {
        let mut state = self.state.lock().expect("pacer state poisoned");
        let now = Instant::now();
        state.global.prune(now);
        let slot = state.global.earliest(now, now);
        state.global.take(slot);
        slot
    }

    /// Waits for a global slot for a request outside any channel's bucket
    /// (the slash-command registration, sent at READY beside the burst of
    /// resumed numbers).
    pub async fn acquire_global(&self) {
        sleep_until(self.book_external()).await;
    }

    /// Returns the slot of a request Discord refused with a 429 (it counted
    /// it in no bucket), so it does not hold a place in the windows.
    pub fn give_back(&self, channel_id: u64, slot: Instant) {
        let mut state = self.state.lock().expect("pacer state poisoned");
        if let Some(w) = state.channels.get_mut(&channel_id) {
            w.give_back(slot);
        }
        state.global.give_back(slot);
    }

    /// Books the earliest slot at or after `due` (but not more than
    /// [`BACKDATE`] before `now`) that keeps every promise.
    fn reserve(&self, channel_id: u64, now: Instant, due: Instant) -> Grant {
        let from = due.min(now).max(now.checked_sub(BACKDATE).unwrap_or(now));
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
        let budget_busy = state.global.is_busy(from, now);
        state.global.prune(from);
        let (channel_ready, by_discord) = channel.earliest_and_why(from);
        let slot = state.global.earliest(channel_ready, now);
        state.global.take(slot);
        channel.take(slot);
        Grant {
            slot,
            channel_hold: (channel_ready > now).then(|| Hold {
                until: channel_ready,
                length: channel_ready - now,
                by_discord,
            }),
            budget_busy,
        }
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
    async fn one_per_second_in_a_channel_goes_exactly_on_time() {
        let pacer = Pacer::new(50);
        let start = Instant::now();
        for k in 0..12u64 {
            tokio::time::sleep_until(start + Duration::from_secs(k)).await;
            pacer.acquire(1).await;
            // A countdown uses its whole bucket, and never waits for it.
            assert_eq!(start.elapsed(), Duration::from_secs(k));
        }
    }

    /// A number is booked at its due time, not when its task woke up for
    /// it: the wake-up's lateness does not move the channel's record, so
    /// the number five later is not held back by it.
    #[tokio::test(start_paused = true)]
    async fn a_number_is_booked_at_its_due_time_not_at_the_wake_up() {
        let pacer = Pacer::new(50);
        let start = Instant::now();
        let woke_late = Duration::from_micros(700);
        for k in 0..6u64 {
            let due = start + Duration::from_secs(k);
            tokio::time::sleep_until(due + woke_late).await;
            let grant = pacer.acquire_due(1, due).await;
            assert_eq!(grant.slot, due);
            assert_eq!(grant.channel_hold, None, "number {}", k + 1);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_grant_says_when_the_channel_held_it_back() {
        let pacer = Pacer::new(50);
        let start = Instant::now();
        for _ in 0..5 {
            assert_eq!(pacer.acquire(1).await.channel_hold, None);
        }
        let sixth = pacer.acquire(1).await;
        let window_end = start + CHANNEL_PERIOD;
        assert_eq!(sixth.slot, window_end);
        let hold = Hold {
            until: window_end,
            length: CHANNEL_PERIOD,
            by_discord: false,
        };
        assert_eq!(sixth.channel_hold, Some(hold));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_booked_outside_the_pacer_takes_a_place_in_the_budget() {
        let pacer = Arc::new(Pacer::new(50));
        pacer.book_external();
        let granted = grant_times(pacer, 50, |i| i as u64).await;
        // 49 go at once; the 50th waits for the booked one to leave the
        // window (plus the margin).
        assert_eq!(granted.iter().filter(|g| g.1.is_zero()).count(), 49);
        assert_eq!(
            granted.iter().map(|g| g.1).max(),
            Some(Duration::from_secs(1) + GLOBAL_MARGIN)
        );
    }

    /// 40 channels in lock-step, each number 30 ms late at once (their
    /// window openers), then the next numbers on time: 10 fit, the other 30
    /// wait until the late ones leave the rolling second (plus the margin),
    /// all together, instead of being spaced 20 ms apart into a pile-up.
    #[tokio::test(start_paused = true)]
    async fn a_transient_overlap_waits_for_the_window_and_is_not_spaced_out() {
        let pacer = Arc::new(Pacer::new(50));
        let start = Instant::now();
        tokio::time::sleep(Duration::from_millis(30)).await;
        for ch in 0..40 {
            pacer.acquire(ch).await;
        }
        tokio::time::sleep_until(start + Duration::from_secs(1)).await;
        let granted = grant_times(pacer, 40, |i| i as u64).await;
        let at_once = granted.iter().filter(|g| g.1.is_zero()).count();
        assert_eq!(at_once, 10);
        let late = Duration::from_millis(30) + GLOBAL_MARGIN;
        assert!(
            granted.iter().all(|g| g.1.is_zero() || g.1 == late),
            "{granted:?}"
        );
        let mut times: Vec<Duration> = granted
            .iter()
            .map(|g| g.1 + Duration::from_secs(1))
            .collect();
        times.extend([Duration::from_millis(30); 40]);
        assert_eq!(max_in_window(&times, Duration::from_secs(1)), 50);
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
    async fn a_channel_waiting_for_its_bucket_holds_up_no_other_channel() {
        let pacer = Arc::new(Pacer::new(50));
        let start = Instant::now();
        for _ in 0..5 {
            pacer.acquire(7).await;
        }
        // Channel 7's bucket is full: its next request waits 5 s...
        let waiting = tokio::spawn({
            let pacer = pacer.clone();
            async move {
                pacer.acquire(7).await;
                start.elapsed()
            }
        });
        tokio::task::yield_now().await;
        // ...but other channels go at once, and keep going.
        for k in 0..3u64 {
            tokio::time::sleep_until(start + Duration::from_secs(k)).await;
            pacer.acquire(8).await;
            assert_eq!(start.elapsed(), Duration::from_secs(k));
        }
        assert_eq!(waiting.await.unwrap(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn the_global_budget_holds_around_slots_booked_ahead() {
        // The exact budget (no margin, no pacing): this is about the search.
        let pacer = Arc::new(Pacer::with_channel_limit(3, CHANNEL_LIMIT, CHANNEL_PERIOD));
        let start = Instant::now();
        for _ in 0..5 {
            pacer.acquire(1).await; // 0, 0, 0, then 1 s, 1 s (global)
        }
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        // Channel 1 is full until 5 s; its next slot is booked there.
        let booked = tokio::spawn({
            let pacer = pacer.clone();
            async move {
                pacer.acquire(1).await;
                start.elapsed()
            }
        });
        tokio::task::yield_now().await;
        let granted = grant_times(pacer.clone(), 12, |i| 100 + i as u64).await;
        // They used the free slots before channel 1's booked one: one left
        // at 1 s, three at 2, 3 and 4 s, and two beside the booked one at 5 s.
        let secs: Vec<u64> = granted.iter().map(|g| g.1.as_secs() + 1).collect();
        assert_eq!(secs, [1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5]);
        let mut times: Vec<Duration> = granted
            .iter()
            .map(|g| g.1 + Duration::from_secs(1))
            .collect();
        times.push(booked.await.unwrap());
        times.extend([Duration::ZERO; 3]);
        times.extend([Duration::from_secs(1); 2]);
        assert_eq!(max_in_window(&times, Duration::from_secs(1)), 3);
    }

    /// Whether `slots` (any order) keep at most `limit` in every window of `period`.
    fn within(slots: &[Instant], limit: usize, period: Duration) -> bool {
        let mut sorted = slots.to_vec();
        sorted.sort();
        sorted.windows(limit + 1).all(|w| w[limit] - w[0] >= period)
    }

    #[test]
    fn random_requests_get_the_earliest_slot_that_keeps_every_promise() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let pacer = Pacer::with_channel_limit(4, 3, Duration::from_millis(2000));
        let start = Instant::now();
        let mut now = start;
        let mut granted: HashMap<u64, Vec<Instant>> = HashMap::new();
        let mut all = Vec::new();
        for _ in 0..1500 {
            now += Duration::from_millis(rng.gen_range(0..120));
            let ch = rng.gen_range(0..12u64);
            let (before, channel_from) = {
                let state = pacer.state.lock().unwrap();
                let from = state
                    .channels
                    .get(&ch)
                    .map_or(now, |w| w.earliest_and_why(now).0);
                (all.clone(), from)
            };
            let slot = pacer.reserve(ch, now, now).slot;
            assert!(slot >= channel_from);
            // No earlier moment would have done: check `channel_from` and
            // every moment a booked slot leaves a window, up to `slot`.
            let second = Duration::from_secs(1);
            let fits = |t: Instant| {
                let mut near: Vec<Instant> = before
                    .iter()
                    .copied()
                    .filter(|&s| s + second > t && s < t + second)
                    .collect();
                near.push(t);
                within(&near, 4, second)
            };
            let candidates = std::iter::once(channel_from)
                .chain(before.iter().map(|&s| s + Duration::from_secs(1)))
                .filter(|&c| c >= channel_from && c < slot);
            for c in candidates {
                assert!(
                    !fits(c),
                    "{:?} was free before {:?}",
                    c - start,
                    slot - start
                );
            }
            granted.entry(ch).or_default().push(slot);
            all.push(slot);
        }
        assert!(within(&all, 4, Duration::from_secs(1)), "global budget");
        for slots in granted.values() {
            assert!(within(slots, 3, Duration::from_millis(2000)), "a channel");
            assert!(
                slots.windows(2).all(|w| w[0] <= w[1]),
                "in order per channel"
            );
        }
    }

    #[test]
    fn held_back_slots_keep_the_margin_at_an_even_pace() {
        let pacer = Pacer::new(50);
        let now = Instant::now();
        let slots: Vec<Instant> = (0..200u64)
            .map(|ch| pacer.reserve(ch, now, now).slot)
            .collect();
        // What fits goes at once...
        assert!(slots[..50].iter().all(|&s| s == now));
        // ...what the budget holds back waits for the window plus the
        // margin, and then goes one by one, never 50 at the same instant.
        let gap = (Duration::from_secs(1) + GLOBAL_MARGIN) / 50;
        assert_eq!(slots[50] - now, Duration::from_secs(1) + GLOBAL_MARGIN);
        assert!(slots[50..].windows(2).all(|w| w[1] - w[0] == gap));
        // Any 51 in a row span more than the period plus the margin.
        assert!(slots
            .windows(51)
            .all(|w| w[50] - w[0] >= Duration::from_secs(1) + GLOBAL_MARGIN));
    }

    #[test]
    fn a_burst_of_ten_thousand_requests_is_cheap() {
        let pacer = Pacer::new(50);
        let now = Instant::now();
        let took = std::time::Instant::now();
        let last = (0..10_000u64)
            .map(|ch| pacer.reserve(ch, now, now).slot)
            .max()
            .unwrap();
        // 50 at once, then (the budget held back) an even pace of 50 per
        // second plus the margin.
        let gap = (Duration::from_secs(1) + GLOBAL_MARGIN) / 50;
        assert_eq!(
            last - now,
            Duration::from_secs(1) + GLOBAL_MARGIN + gap * 9_949
        );
        assert!(
            took.elapsed() < Duration::from_secs(5),
            "{:?}",
            took.elapsed()
        );
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

    /// A countdown's sixth number waits for its channel's window (the
    /// first number leaves it at 5 s); another channel's global 429 blocks
    /// the budget until 5.004 s just then. The number goes when the block
    /// ends: the slot it did not use is not counted in its channel's
    /// window, which would have held it until 6 s.
    #[tokio::test(start_paused = true)]
    async fn a_slot_a_block_overtook_is_not_counted_in_the_channel() {
        let pacer = Arc::new(Pacer::new(50));
        let start = Instant::now();
        for k in 0..5u64 {
            tokio::time::sleep_until(start + Duration::from_secs(k)).await;
            pacer.acquire(1).await;
        }
        let sixth = start + Duration::from_secs(5);
        let waiter = tokio::spawn({
            let pacer = pacer.clone();
            async move {
                tokio::time::sleep_until(sixth - Duration::from_millis(2)).await;
                pacer.acquire(1).await;
                Instant::now()
            }
        });
        tokio::time::sleep_until(sixth - Duration::from_millis(1)).await;
        pacer.block_global(sixth + Duration::from_millis(4));
        let sent = waiter.await.unwrap();
        assert_eq!(sent - sixth, Duration::from_millis(4));
    }
}
