//! The global budget: at most `GLOBAL_RATE` requests in any second across
//! every channel, plus the block Discord sets after a global 429.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// Added to a global slot the budget held back, past the moment the slot
/// that fills the window leaves it. Discord counts a request when it
/// *arrives*; a request sent exactly one period after another can arrive
/// less than a period after it (the other left a few ms after its slot, or
/// queued behind the 49 sent with it), and a global 429 costs the retry its
/// turn. It costs 2 % of the budget, and only when the budget is exhausted:
/// a request that fits goes at once.
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

/// The share of the global budget in use above which it is "busy" (see
/// [`Grant::budget_busy`]): a countdown held back by its channel's window
/// follows it only then, since only then can two numbers of one channel in
/// one rolling second overflow the budget (40 countdowns use 40 of 50).
pub const BUSY_SHARE: (usize, usize) = (3, 4);

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
pub(super) struct Budget {
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
    pub(super) fn new(limit: usize, period: Duration, margin: Duration) -> Self {
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
    pub(super) fn prune(&mut self, now: Instant) {
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
    pub(super) fn conflict(&self, t: Instant) -> Option<Instant> {
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
    pub(super) fn earliest(&mut self, not_before: Instant, now: Instant) -> Instant {
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
    pub(super) fn is_busy(&self, from: Instant, now: Instant) -> bool {
        let start = from.checked_sub(self.period).unwrap_or(from);
        let in_use =
            self.slots.partition_point(|&s| s <= now) - self.slots.partition_point(|&s| s < start);
        in_use * BUSY_SHARE.1 >= self.limit * BUSY_SHARE.0
    }

    pub(super) fn take(&mut self, t: Instant) {
        let p = self.slots.partition_point(|&s| s <= t);
        self.slots.insert(p, t);
    }

    pub(super) fn is_blocked_at(&self, t: Instant) -> bool {
        self.blocked_until.is_some_and(|b| b > t)
    }

    pub(super) fn block_until(&mut self, until: Instant) {
        self.blocked_until = Some(self.blocked_until.map_or(until, |b| b.max(until)));
    }

    /// Forgets `slot` (see [`super::window::Window::give_back`]).
    pub(super) fn give_back(&mut self, slot: Instant) {
        if let Some(i) = self.slots.iter().rposition(|&t| t == slot) {
            self.slots.remove(i);
            // A hole may have opened in what was full.
            self.full_until = None;
        }
    }
}
