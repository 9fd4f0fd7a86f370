//! The fake's own enforcement of Discord's rate limits.
//!
//! - Global: at most N requests per rolling second (Discord: 50/s per token),
//!   over every `/api` request.
//! - Per channel (message POSTs): a bucket of `limit` requests per
//!   `period`, in one of two shapes ([`BucketModel`]):
//!   - `Leaky` (the default): Discord's route limits since 2022 (its
//!     announcement, quoted in discord-api-docs#7680): the bucket holds
//!     `limit` and one request's room comes back every `period / limit`;
//!     `X-RateLimit-Reset-After` is when all its room is back (a moving
//!     timestamp) and a 429's `retry_after` is when one request fits.
//!   - `FixedWindow`: the older shape, which #7680 says some routes still
//!     have: a window opens at the first request after the previous one
//!     ended and lasts `period`; up to `limit` requests fit in one window.
//!
//! The per-channel bucket is always tracked, so message POSTs carry
//! `X-RateLimit-*` headers even when enforcement is off (then with Discord's
//! 5 per 5 s shape, never answering 429).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Discord's bucket for `POST /channels/{id}/messages`.
pub(crate) const DISCORD_CHANNEL_LIMIT: (u32, Duration) = (5, Duration::from_secs(5));
/// Discord's global limit per bot token.
pub(crate) const DISCORD_GLOBAL_LIMIT: u32 = 50;

/// What a bucket looks like after a request was counted (or refused).
#[derive(Clone, Copy, Debug)]
pub(crate) struct BucketState {
    pub limit: u32,
    pub remaining: u32,
    pub reset_after: Duration,
    /// When the bucket first had room for this request, if it was full
    /// before it: the end of that full window. The earliest Discord's
    /// limit let this request through (the bench measures lateness
    /// against it; with enforcement off a request may come before it).
    pub room_from: Option<Instant>,
}

/// The shape of a channel's bucket (see the module's doc).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BucketModel {
    /// Room for one request comes back every `period / limit` (Discord's
    /// route limits since 2022).
    #[default]
    Leaky,
    /// A window of `limit` requests opens at the first request after the
    /// previous one ended (Discord before 2022; still some routes).
    FixedWindow,
}

impl BucketState {
    /// A refusal: no room left, retry after `retry_after` (at least 1 ms,
    /// as Discord never says 0).
    fn refused(limit: u32, retry_after: Duration, room_from: Option<Instant>) -> Self {
        BucketState {
            limit,
            remaining: 0,
            reset_after: retry_after.max(Duration::from_millis(1)),
            room_from,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Window {
    start: Instant,
    count: u32,
}

/// A leaky bucket: how full it was at `at` (in requests).
#[derive(Clone, Copy, Debug)]
struct Level {
    at: Instant,
    used: f64,
}

/// A request fits when the bucket has room for all of it; this much less
/// is rounding (the level is an `f64` of seconds times a rate).
const LEVEL_EPSILON: f64 = 1e-9;

/// Marks a bucket key as the history route's (see [`Limits::check_history`]).
const HISTORY_KEY: u64 = 1 << 63;

#[derive(Debug, Default)]
pub(crate) struct Limits {
    pub global: Option<u32>,
    pub channel: Option<(u32, Duration)>,
    pub model: BucketModel,
    global_hits: VecDeque<Instant>,
    windows: HashMap<u64, Window>,
    levels: HashMap<u64, Level>,
}

impl Limits {
    pub(crate) fn new(
        global: Option<u32>,
        channel: Option<(u32, Duration)>,
        model: BucketModel,
    ) -> Self {
        Limits {
            global,
            channel,
            model,
            ..Limits::default()
        }
    }

    /// Counts one request against the global limit; `Err(retry_after)` when over it.
    pub(crate) fn check_global(&mut self, now: Instant) -> Result<(), Duration> {
        let Some(limit) = self.global else {
            return Ok(());
        };
        let second = Duration::from_secs(1);
        while let Some(first) = self.global_hits.front() {
            if now.duration_since(*first) >= second {
                self.global_hits.pop_front();
            } else {
                break;
            }
        }
        if self.global_hits.len() >= limit as usize {
            let oldest = self.global_hits.front().copied().unwrap_or(now);
            let retry = (oldest + second).saturating_duration_since(now);
            return Err(retry.max(Duration::from_millis(1)));
        }
        self.global_hits.push_back(now);
        Ok(())
    }

    /// Counts one message POST against `channel`'s bucket. `Err` (with
    /// `reset_after` = retry after) when the enforced limit is exceeded.
    pub(crate) fn check_channel(
        &mut self,
        channel: u64,
        now: Instant,
    ) -> Result<BucketState, BucketState> {
        match self.model {
            BucketModel::Leaky => self.check_leaky(channel, now),
            BucketModel::FixedWindow => self.check_window(channel, now),
        }
    }

    /// Counts one `GET /channels/{id}/messages` against `channel`'s bucket
    /// for that route: Discord keeps it apart from posting (another method,
    /// another bucket), of the same size and shape. Its buckets share the
    /// maps with the posting ones under keys no channel id reaches
    /// (snowflakes stay below 2^63).
    pub(crate) fn check_history(
        &mut self,
        channel: u64,
        now: Instant,
    ) -> Result<BucketState, BucketState> {
        self.check_channel(channel | HISTORY_KEY, now)
    }

    fn check_leaky(&mut self, channel: u64, now: Instant) -> Result<BucketState, BucketState> {
        let (limit, period) = self.channel.unwrap_or(DISCORD_CHANNEL_LIMIT);
        let enforced = self.channel.is_some();
        let capacity = f64::from(limit);
        // Requests' worth of room coming back per second.
        let rate = capacity / period.as_secs_f64().max(1e-9);
        let l = self
            .levels
            .entry(channel)
            .or_insert(Level { at: now, used: 0.0 });
        // When the level, as of `l`, is down to `to`.
        let down_to =
            |l: &Level, to: f64| l.at + Duration::from_secs_f64(((l.used - to) / rate).max(0.0));
        // The bucket was full after the request before this one: it had
        // room for this one once a request's worth had come back.
        let room_from =
            (l.used > capacity - 1.0 + LEVEL_EPSILON).then(|| down_to(l, capacity - 1.0));
        let elapsed = now.saturating_duration_since(l.at).as_secs_f64();
        l.used = (l.used - elapsed * rate).max(0.0);
        l.at = now;
        if enforced && l.used + 1.0 > capacity + LEVEL_EPSILON {
            let retry = down_to(l, capacity - 1.0).saturating_duration_since(now);
            return Err(BucketState::refused(limit, retry, room_from));
        }
        l.used += 1.0;
        Ok(BucketState {
            limit,
            remaining: (capacity - l.used + LEVEL_EPSILON).floor().max(0.0) as u32,
            reset_after: down_to(l, 0.0).saturating_duration_since(now),
            room_from,
        })
    }

    fn check_window(&mut self, channel: u64, now: Instant) -> Result<BucketState, BucketState> {
        let (limit, period) = self.channel.unwrap_or(DISCORD_CHANNEL_LIMIT);
        let enforced = self.channel.is_some();
        let w = self.windows.entry(channel).or_insert(Window {
            start: now,
            count: 0,
        });
        let room_from = (w.count >= limit).then_some(w.start + period);
        if now >= w.start + period {
            *w = Window {
                start: now,
                count: 0,
            };
        }
        let reset_after = (w.start + period).saturating_duration_since(now);
        if enforced && w.count >= limit {
            return Err(BucketState::refused(limit, reset_after, room_from));
        }
        w.count += 1;
        Ok(BucketState {
            limit,
            remaining: limit.saturating_sub(w.count),
            reset_after,
            room_from,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_window_starts_at_first_request() {
        let mut l = Limits::new(
            None,
            Some((2, Duration::from_secs(5))),
            BucketModel::FixedWindow,
        );
        let t0 = Instant::now();
        assert_eq!(l.check_channel(1, t0).map(|b| b.remaining).ok(), Some(1));
        assert_eq!(
            l.check_channel(1, t0 + Duration::from_secs(1))
                .map(|b| b.remaining)
                .ok(),
            Some(0)
        );
        let refused = l.check_channel(1, t0 + Duration::from_secs(2)).unwrap_err();
        assert_eq!(refused.reset_after, Duration::from_secs(3));
        // another channel has its own bucket
        assert!(l.check_channel(2, t0 + Duration::from_secs(2)).is_ok());
        // the window ended: a new one opens at this request
        let t1 = t0 + Duration::from_secs(6);
        let b = l.check_channel(1, t1).unwrap();
        assert_eq!((b.remaining, b.reset_after), (1, Duration::from_secs(5)));
    }

    #[test]
    fn room_from_is_the_end_of_the_full_window_before() {
        let period = Duration::from_secs(5);
        let mut l = Limits::new(None, None, BucketModel::FixedWindow);
        let t0 = Instant::now();
        for i in 0..5u64 {
            let b = l.check_channel(1, t0 + Duration::from_secs(i)).unwrap();
            assert_eq!(b.room_from, None);
        }
        // unenforced: a request before the end of the full window is
        // counted, and told when the bucket would have had room
        let early = l
            .check_channel(1, t0 + Duration::from_millis(4990))
            .unwrap();
        assert_eq!(early.room_from, Some(t0 + period));
        // the window after it opens at its first request, after the full one
        let next = l
            .check_channel(1, t0 + Duration::from_millis(5020))
            .unwrap();
        assert_eq!(next.room_from, Some(t0 + period));
        let second = l
            .check_channel(1, t0 + Duration::from_millis(6000))
            .unwrap();
        assert_eq!(second.room_from, None);
    }

    #[test]
    fn global_is_a_rolling_second() {
        let mut l = Limits::new(Some(2), None, BucketModel::Leaky);
        let t0 = Instant::now();
        assert!(l.check_global(t0).is_ok());
        assert!(l.check_global(t0 + Duration::from_millis(500)).is_ok());
        let retry = l.check_global(t0 + Duration::from_millis(600)).unwrap_err();
        assert_eq!(retry, Duration::from_millis(400));
        assert!(l.check_global(t0 + Duration::from_millis(1000)).is_ok());
        assert!(l.check_global(t0 + Duration::from_millis(1100)).is_err());
    }

    #[test]
    fn unenforced_channel_never_refuses() {
        let mut l = Limits::new(None, None, BucketModel::FixedWindow);
        let t0 = Instant::now();
        for _ in 0..20 {
            assert!(l.check_channel(1, t0).is_ok());
        }
        assert_eq!(l.check_channel(1, t0).unwrap().remaining, 0);
    }

    #[test]
    fn leaky_one_a_second_always_fits_whatever_the_jitter() {
        let period = Duration::from_secs(5);
        let mut l = Limits::new(None, Some((5, period)), BucketModel::Leaky);
        let t0 = Instant::now();
        for k in 0..100u64 {
            // A fixed window would refuse a 6th request arriving a ms
            // before its window ends; room comes back continuously here.
            let jitter = if k % 5 == 0 { 3 } else { 0 };
            let at = t0 + Duration::from_millis(k * 1000 + jitter);
            let b = l.check_channel(1, at).unwrap();
            assert!(b.remaining >= 3, "request {k}: {b:?}");
            assert_eq!(b.room_from, None);
        }
    }

    #[test]
    fn leaky_burst_then_one_request_back_each_fifth_of_the_period() {
        let period = Duration::from_secs(5);
        let mut l = Limits::new(None, Some((5, period)), BucketModel::Leaky);
        let t0 = Instant::now();
        let close = |a: Instant, b: Instant| {
            let d = if a > b { a - b } else { b - a };
            d < Duration::from_micros(1)
        };
        for k in 0..5u32 {
            let b = l.check_channel(1, t0).unwrap();
            assert_eq!(b.remaining, 4 - k);
            // Reset-After: when it is empty again
            assert_eq!(b.reset_after, Duration::from_secs(u64::from(k) + 1));
        }
        let refused = l
            .check_channel(1, t0 + Duration::from_millis(400))
            .unwrap_err();
        // Retry-After: when one request fits
        let retry = refused.reset_after.as_secs_f64();
        assert!((retry - 0.6).abs() < 1e-6, "{retry}");
        assert!(close(
            refused.room_from.unwrap(),
            t0 + Duration::from_secs(1)
        ));
        let b = l.check_channel(1, t0 + Duration::from_secs(1)).unwrap();
        assert_eq!(b.remaining, 0);
        assert!(close(b.room_from.unwrap(), t0 + Duration::from_secs(1)));
        assert!(l
            .check_channel(1, t0 + Duration::from_millis(1990))
            .is_err());
        // emptied: a burst of 5 fits again
        for k in 0..5u32 {
            let b = l.check_channel(1, t0 + Duration::from_secs(7)).unwrap();
            assert_eq!(b.remaining, 4 - k);
        }
    }
}
