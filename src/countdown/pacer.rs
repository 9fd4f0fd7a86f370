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

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::{sleep_until, Instant};

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
// schedule is what users see. The global budget keeps its margin below,
// where it costs no one's schedule.
/// Added to a global slot the budget held back, past the moment the slot
/// that fills the window leaves it. Discord counts a request when it
/// *arrives*; a request sent exactly one period after another can arrive
/// less than a period after it (the other left a few ms after its slot, or
/// queued behind the 49 sent with it). Without this, 200 countdowns sharing
/// the 50/s budget got 160–300 global 429s in 40 s, each retry lost its
/// turn, and the budget was 64 % used. It costs 2 % of the budget, and only
/// when the budget is exhausted: a request that fits goes at once.
pub const GLOBAL_MARGIN: Duration = Duration::from_millis(20);

/// A slot the budget holds back by more than this, or while slots are
/// booked more than this ahead (a backlog), is spaced from the one booked
/// before it (see [`Budget::earliest`]); one held back less with no
/// backlog is a transient overlap and goes as soon as the window allows.
/// 40 countdowns in lock-step, whose window openers come 20–40 ms late
/// together (arrival jitter), put a late number and its on-time successor
/// into one rolling second for many channels at once; spacing those
/// held-back numbers 20 ms apart delayed the last ones by 200–460 ms, and
/// the delay fed itself a second later. A backlog (the budget exhausted) is
/// held back by far more than this, so it is still paced evenly.
pub const SPACE_HELD_AFTER: Duration = Duration::from_millis(100);

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
    /// The global budget's last second was at least [`BUSY_SHARE`] full
    /// when the slot was booked.
    pub budget_busy: bool,
}

/// The share of the global budget in use above which it is "busy" (see
/// [`Grant::budget_busy`]): a countdown held back by its channel's window
/// follows it only then, since only then can two numbers of one channel in
/// one rolling second overflow the budget (40 countdowns use 40 of 50).
pub const BUSY_SHARE: (usize, usize) = (3, 4);

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
    /// promise and comes after every slot already handed out, and whether
    /// Discord's block (rather than the bot's own record) decides it.
    fn earliest_and_why(&self, not_before: Instant) -> (Instant, bool) {
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

/// The global budget: at most `limit` slots in any `period`, plus a block set
/// by Discord. Unlike a channel's [`Window`], slots are not handed out in
/// order: a request gets the earliest slot at or after the moment its
/// channel allows that keeps the promise, even if a later slot was booked
/// already.
///
/// Handing global slots out in order makes one channel's wait everyone's
/// wait (tested in `tests/faults_abuse.rs`). 100 commands in one
/// channel queue 100 replies behind its 5-per-5-s bucket, the last one
/// 100 s ahead; every other channel's next slot came after it, so every
/// countdown of the bot stopped for minutes. Even one reply in a counting
/// channel (whose numbers use its whole bucket) delayed all countdowns by up
/// to a second.
struct Budget {
    limit: usize,
    period: Duration,
    /// Slots handed out, sorted; past ones are kept for one `period`.
    slots: VecDeque<Instant>,
    blocked_until: Option<Instant>,
    /// No slot fits anywhere between now and this: the search starts here
    /// (slots are only ever added, so what was full stays full). Keeps a
    /// burst of thousands of requests from scanning the same full seconds.
    full_until: Option<Instant>,
    /// [`GLOBAL_MARGIN`], or zero for the exact budget.
    margin: Duration,
}

impl Budget {
    fn new(limit: usize, period: Duration, margin: Duration) -> Self {
        Budget {
            limit,
            period,
            slots: VecDeque::with_capacity(limit.min(1024)),
            blocked_until: None,
            full_until: None,
            margin,
        }
    }

    /// Forgets slots that no window reaching `now` or later can contain.
    fn prune(&mut self, now: Instant) {
        while let Some(&first) = self.slots.front() {
            if first + self.period <= now {
                self.slots.pop_front();
            } else {
                break;
            }
        }
    }

    /// `None` if one more slot at `t` keeps at most `limit` slots in every
    /// window of `period` (no `limit + 1` consecutive slots, `t` among them,
    /// spanning less than `period`). Otherwise the first moment after `t`
    /// that may fit: every moment before it breaks the same window.
    fn conflict(&self, t: Instant) -> Option<Instant> {
        let p = self.slots.partition_point(|&s| s <= t);
        let at = |i: usize| match i.cmp(&p) {
            std::cmp::Ordering::Less => self.slots[i],
            std::cmp::Ordering::Equal => t,
            std::cmp::Ordering::Greater => self.slots[i - 1],
        };
        let len = self.slots.len() + 1;
        (p.saturating_sub(self.limit)..=p)
            .take_while(|i| i + self.limit < len)
            .find(|&i| at(i + self.limit) - at(i) < self.period)
            // The window's first booked slot (`t`'s successor when `t` leads
            // it) must leave it before `t` fits.
            .map(|i| if i < p { at(i) } else { at(i + 1) } + self.period)
    }

    /// The earliest slot at or after `not_before` that keeps the promise.
    fn earliest(&mut self, not_before: Instant, now: Instant) -> Instant {
        let from = not_before.max(self.blocked_until.unwrap_or(not_before));
        let full = self.full_until.filter(|&f| f > now);
        let mut t = match full {
            Some(f) if f > from => f,
            _ => from,
        };
        // A backlog: slots are booked well ahead, so every request held
        // back is paced, whatever its own wait.
        let backlog = self
            .slots
            .back()
            .is_some_and(|&last| last > now + SPACE_HELD_AFTER);
        loop {
            while let Some(next) = self.conflict(t) {
                t = next + self.margin;
            }
            // Held back by the budget (or a block from Discord): slots are
            // spaced `(period + margin) / limit` apart from the one booked
            // before, so the requests queued behind a full window go out at
            // an even pace (and `limit` of them span the period plus the
            // margin) instead of all at the instant it frees up: a burst of
            // 50 arrives spread over milliseconds, and its first arrivals
            // came inside the window of the burst before.
            let held = t.saturating_duration_since(not_before);
            if !held.is_zero() && (held > SPACE_HELD_AFTER || backlog) && !self.margin.is_zero() {
                let gap = (self.period + self.margin) / self.limit as u32;
                let p = self.slots.partition_point(|&s| s <= t);
                if let Some(&prev) = p.checked_sub(1).and_then(|i| self.slots.get(i)) {
                    if t < prev + gap {
                        t = prev + gap;
                        continue;
                    }
                }
            }
            break;
        }
        // Nothing fits between where the search started and `t`; if nothing
        // unknown lies between now and that start, all of it is taken.
        if from <= now || full.is_some_and(|f| from <= f) {
            self.full_until = Some(t);
        }
        t
    }

    /// At least [`BUSY_SHARE`] of the budget was used in the second up to
    /// `now` (from one period before `from`, inclusive: a countdown's
    /// previous number is exactly one second before its next).
    fn is_busy(&self, from: Instant, now: Instant) -> bool {
        let start = from.checked_sub(self.period).unwrap_or(from);
        let in_use =
            self.slots.partition_point(|&s| s <= now) - self.slots.partition_point(|&s| s < start);
        in_use * BUSY_SHARE.1 >= self.limit * BUSY_SHARE.0
    }

    fn take(&mut self, t: Instant) {
        let p = self.slots.partition_point(|&s| s <= t);
        self.slots.insert(p, t);
    }

    fn is_blocked_at(&self, t: Instant) -> bool {
        self.blocked_until.is_some_and(|b| b > t)
    }

    fn block_until(&mut self, until: Instant) {
        self.blocked_until = Some(self.blocked_until.map_or(until, |b| b.max(until)));
    }
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
            if let Some(i) = w.recent.iter().rposition(|&t| t == slot) {
                w.recent.remove(i);
            }
        }
        let global = &mut state.global;
        if let Some(i) = global.slots.iter().rposition(|&t| t == slot) {
            global.slots.remove(i);
            // A hole may have opened in what was full.
            global.full_until = None;
        }
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
async fn sleep_precisely_until(at: Instant) {
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
