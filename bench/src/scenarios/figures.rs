//! The figures the scenarios share: lateness against the schedule and the
//! physical limit, the bot's own lateness histogram, the machine's noise,
//! the global limit read two ways, and how values are printed.

use std::time::{Duration, Instant};

use fake_discord::PostedMessage;

use super::Ctx;
use crate::harness::{ms_between, percentile, sorted, HistogramDelta, Metrics, Noise, StallProbe};

pub(super) const LATENESS: &str = "countdown_tick_lateness_seconds";

/// The numbers of a `count to n` in channel `ch` as its users saw them:
/// 1..=n in order (replies left out), or an error naming what the channel
/// shows instead.
pub(super) fn counted(
    ch: u64,
    messages: &[PostedMessage],
    n: usize,
) -> anyhow::Result<Vec<&PostedMessage>> {
    let numbers: Vec<&PostedMessage> = messages
        .iter()
        .filter(|m| m.message_reference.is_none())
        .collect();
    let contents: Vec<&str> = numbers.iter().map(|m| m.content.as_str()).collect();
    let expected: Vec<String> = (1..=n).map(|k| k.to_string()).collect();
    if contents != expected {
        anyhow::bail!("channel {ch} shows {contents:?}, not 1..={n}");
    }
    Ok(numbers)
}

/// Lateness rows: against the schedule alone, and against the physical
/// limit (the later of the due time and the moment the channel's bucket
/// had room, `PostedMessage::room_from`), which the goal is judged on.
/// At one number a second a channel is exactly at Discord's 5 per 5 s:
/// a window opens when its first request *arrives*, so a window's first
/// number can never come before the previous window's first plus 5 s, and
/// any lateness of one window's first number is inherited by the first
/// number of every later window of that channel. Counted against the
/// schedule alone, that one lateness is counted again every 5 s.
pub(super) fn lateness_rows(ctx: &mut Ctx, scenario: &str, l: &Lateness, goal_ms: f64) {
    let schedule = sorted(l.schedule.clone());
    let limit = sorted(l.limit.clone());
    ctx.info(
        scenario,
        "fake: p99 / max arrival − due (the schedule alone)",
        format!(
            "{} / {}",
            ms(percentile(&schedule, 99.0)),
            ms(*schedule.last().unwrap_or(&f64::NAN))
        ),
    );
    let p99 = percentile(&limit, 99.0);
    ctx.row(
        scenario,
        "fake: p99 arrival − max(due, channel bucket's room)",
        ms(p99),
        &format!("≤ {goal_ms} ms"),
        Some(p99 <= goal_ms),
    );
    ctx.info(
        scenario,
        "fake: p50 / max arrival − max(due, channel bucket's room)",
        format!(
            "{} / {}",
            ms(percentile(&limit, 50.0)),
            ms(*limit.last().unwrap_or(&f64::NAN))
        ),
    );
}

/// Each number's lateness (ms) against its schedule and against the limit
/// (see [`lateness_rows`]).
#[derive(Default)]
pub(super) struct Lateness {
    pub(super) schedule: Vec<f64>,
    pub(super) limit: Vec<f64>,
}

impl Lateness {
    /// Adds `m`, due at `due`; returns its lateness against the schedule
    /// and against the limit.
    pub(super) fn add(&mut self, m: &PostedMessage, due: Instant) -> (f64, f64) {
        let schedule = ms_between(m.at, due);
        let limit = ms_between(m.at, m.room_from.map_or(due, |room| room.max(due)));
        self.schedule.push(schedule);
        self.limit.push(limit);
        (schedule, limit)
    }
}

/// The most requests arriving in any rolling second (Discord's global
/// limit is 50, counted at arrival).
pub(super) fn busiest_second(mut ats: Vec<Instant>) -> usize {
    ats.sort();
    (0..ats.len())
        .map(|i| {
            ats[i..]
                .iter()
                .take_while(|t| **t < ats[i] + Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// The lowest level of a leaky bucket of 50 refilling 50 a second (the
/// other reading of Discord's global limit: Discord's route limits have
/// been sliding windows since 2022; the global one is not documented), as
/// the requests arriving at `ats` drain it. Below zero a request would
/// have been refused.
pub(super) fn leaky_bucket_low(mut ats: Vec<Instant>) -> f64 {
    const SIZE: f64 = 50.0;
    ats.sort();
    let mut level = SIZE;
    let mut low = SIZE;
    let mut last: Option<Instant> = None;
    for at in ats {
        if let Some(prev) = last {
            level = (level + (at - prev).as_secs_f64() * SIZE).min(SIZE);
        }
        level -= 1.0;
        low = low.min(level);
        last = Some(at);
    }
    low
}

/// The machine's own noise during a scenario (see [`StallProbe`]), and how
/// many of `events` (each a span of time, named `what`) overlapped one of
/// its stalls.
pub(super) fn noise_rows(
    ctx: &mut Ctx,
    scenario: &str,
    noise: &Noise,
    what: &str,
    events: &[(Instant, Instant)],
) {
    ctx.info(
        scenario,
        "machine: a thread waking every 1 ms, oversleep p99 / max",
        format!(
            "{} / {}",
            ms(percentile(&noise.oversleep, 99.0)),
            ms(*noise.oversleep.last().unwrap_or(&f64::NAN))
        ),
    );
    let total = noise.stalls.iter().fold(0.0, |sum, (_, ms)| sum + ms);
    ctx.info(
        scenario,
        &format!(
            "machine: its stalls ≥ {} ms (count, total)",
            StallProbe::STALL_MS
        ),
        format!("{}, {}", noise.stalls.len(), ms(total)),
    );
    let during = events
        .iter()
        .filter(|(from, to)| noise.stalled_during(*from, *to))
        .count();
    ctx.info(
        scenario,
        &format!("{what} during such a stall"),
        format!("{during} of {}", events.len()),
    );
}

/// The simple queries, Syncs and statements prepared between two
/// snapshots of the wire counts (`WireCounts::snapshot`), each put by `per`.
pub(super) fn wire_split(
    before: (u64, u64, u64),
    after: (u64, u64, u64),
    per: impl Fn(u64) -> String,
) -> String {
    format!(
        "{} / {} / {}",
        per(after.0 - before.0),
        per(after.1 - before.1),
        per(after.2 - before.2)
    )
}

pub(super) fn ms(v: f64) -> String {
    if v.is_nan() {
        "n/a".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0} ms")
    } else {
        format!("{v:.1} ms")
    }
}

pub(super) fn bound(v: Option<f64>) -> String {
    match v {
        None => "no samples".into(),
        Some(s) if s.is_infinite() => "> 10 s".into(),
        Some(s) => format!("≤ {} ms", s * 1000.0),
    }
}

pub(super) fn pct(cpu_seconds: f64, wall: Duration) -> String {
    format!(
        "{:.0} % of a core",
        100.0 * cpu_seconds / wall.as_secs_f64()
    )
}

pub(super) fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_048_576.0)
}

/// Lateness quantiles from the bot's own histogram between two scrapes.
pub(super) fn bot_lateness(
    ctx: &mut Ctx,
    scenario: &str,
    before: &Metrics,
    after: &Metrics,
    goal_p99: f64,
) {
    let h = HistogramDelta::between(before, after, LATENESS);
    ctx.info(
        scenario,
        "bot histogram: numbers observed",
        format!("{}", h.count()),
    );
    ctx.info(
        scenario,
        "bot histogram: p50 lateness (bucket bound)",
        bound(h.quantile_bound(0.50)),
    );
    let p99 = h.quantile_bound(0.99);
    ctx.row(
        scenario,
        "bot histogram: p99 lateness (bucket bound)",
        bound(p99),
        &format!("≤ {goal_p99} ms"),
        p99.map(|v| v * 1000.0 <= goal_p99),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, ms: &[u64]) -> Vec<Instant> {
        ms.iter()
            .map(|m| start + Duration::from_millis(*m))
            .collect()
    }

    #[test]
    fn the_busiest_second_is_rolling() {
        let t0 = Instant::now();
        // 3 near the end of one second and 3 at the start of the next: a
        // fixed window would see 3 and 3, a rolling second sees 6.
        let ats = at(t0, &[0, 990, 995, 999, 1001, 1005, 1010, 2500]);
        assert_eq!(busiest_second(ats), 6);
        // exactly a second apart: no longer in the same second
        assert_eq!(busiest_second(at(t0, &[0, 1000, 2000])), 1);
    }

    #[test]
    fn a_leaky_bucket_refills_between_bursts() {
        let t0 = Instant::now();
        // 40 at once, a second later 40 again: the bucket (50, 50/s) is
        // full again by then, so it never goes below 10.
        let mut ats = at(t0, &[0; 40]);
        ats.extend(at(t0, &[1000; 40]));
        assert_eq!(leaky_bucket_low(ats), 10.0);
        // 60 at once empty it: below zero, the last ten refused
        assert_eq!(leaky_bucket_low(at(t0, &[0; 60])), -10.0);
    }
}
