//! The six scenarios (BENCHMARKS.md, "The six scenarios"). Each starts its
//! own fake Discord, database and bot, measures, and adds rows to the
//! report. The fake's channel buckets are Discord's leaky ones unless
//! `--fixed-windows` asks for the older shape (BENCHMARKS.md, "Discord's
//! limits as the fake models them").

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use fake_discord::{Author, BucketModel, FakeConfig, FakeDiscord, GuildSpec, PostedMessage};

use crate::harness::{
    cpu_of, listen_overflows, machine_busy_seconds, ms_between, percentile, self_cpu_seconds,
    sorted, BenchDb, Bot, Clock, HistogramDelta, Metrics, Noise, PgProxy, RunningRow, StallProbe,
    USER,
};
use crate::report::Report;

const LATENESS: &str = "countdown_tick_lateness_seconds";

pub struct Ctx {
    pub bin: PathBuf,
    pub quick: bool,
    pub report: Report,
    /// The fake's channel buckets (`--fixed-windows`: Discord before 2022).
    pub channel_model: BucketModel,
    /// Scenario 2's fake refuses the 51st request of any rolling second
    /// (`--strict-global`).
    pub strict_global: bool,
}

impl Ctx {
    /// Starts the fake with `config`, in the channel-bucket shape chosen.
    async fn fake(&self, config: FakeConfig) -> anyhow::Result<FakeDiscord> {
        FakeDiscord::start(FakeConfig {
            channel_model: self.channel_model,
            ..config
        })
        .await
    }

    fn row(&mut self, scenario: &str, figure: &str, value: String, goal: &str, met: Option<bool>) {
        let met = if self.quick { None } else { met };
        self.report.push(scenario, figure, value, goal, met);
    }

    fn info(&mut self, scenario: &str, figure: &str, value: String) {
        self.report.push(scenario, figure, value, "", None);
    }
}

/// `guilds` guilds of `per_guild` channels, ids as in the fake's default
/// world: guild `g*1000`, channels `g*1000+1 ..`.
fn world(guilds: u64, per_guild: u64) -> FakeConfig {
    assert!(per_guild < 1000);
    FakeConfig {
        guilds: (1..=guilds)
            .map(|g| GuildSpec {
                id: g * 1000,
                channels: (1..=per_guild).map(|c| g * 1000 + c).collect(),
            })
            .collect(),
        ..FakeConfig::default()
    }
}

/// The first `n` channels of a world, round-robin over its guilds, with
/// their guild.
fn channels(fake: &FakeDiscord, n: usize) -> Vec<(u64, u64)> {
    let guilds = fake.guilds();
    let per = guilds.iter().map(|g| g.channels.len()).max().unwrap_or(0);
    let mut out = Vec::with_capacity(n);
    for c in 0..per {
        for g in &guilds {
            if out.len() == n {
                return out;
            }
            if let Some(ch) = g.channels.get(c) {
                out.push((*ch, g.id));
            }
        }
    }
    assert!(out.len() == n, "the world has fewer than {n} channels");
    out
}

/// A size set in the environment, for experiments (the goals are for the
/// default sizes).
fn size_override(var: &str) -> Option<u64> {
    std::env::var(var).ok()?.parse().ok()
}

fn mention(fake: &FakeDiscord, text: &str) -> String {
    format!("<@{}> {text}", fake.bot_user_id())
}

/// `task_id:k` of a number's nonce.
fn nonce_of(m: &PostedMessage) -> Option<(i64, u32)> {
    let (id, k) = m.nonce.as_deref()?.split_once(':')?;
    Some((id.parse().ok()?, k.parse().ok()?))
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
fn lateness_rows(ctx: &mut Ctx, scenario: &str, l: &Lateness, goal_ms: f64) {
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
struct Lateness {
    schedule: Vec<f64>,
    limit: Vec<f64>,
}

impl Lateness {
    /// Adds `m`, due at `due`; returns its lateness against the schedule
    /// and against the limit.
    fn add(&mut self, m: &PostedMessage, due: Instant) -> (f64, f64) {
        let schedule = ms_between(m.at, due);
        let limit = ms_between(m.at, m.room_from.map_or(due, |room| room.max(due)));
        self.schedule.push(schedule);
        self.limit.push(limit);
        (schedule, limit)
    }
}

/// The most requests arriving in any rolling second (Discord's global
/// limit is 50, counted at arrival).
fn busiest_second(mut ats: Vec<Instant>) -> usize {
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
fn leaky_bucket_low(mut ats: Vec<Instant>) -> f64 {
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
fn noise_rows(
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

fn ms(v: f64) -> String {
    if v.is_nan() {
        "n/a".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0} ms")
    } else {
        format!("{v:.1} ms")
    }
}

fn bound(v: Option<f64>) -> String {
    match v {
        None => "no samples".into(),
        Some(s) if s.is_infinite() => "> 10 s".into(),
        Some(s) => format!("≤ {} ms", s * 1000.0),
    }
}

fn pct(cpu_seconds: f64, wall: Duration) -> String {
    format!(
        "{:.0} % of a core",
        100.0 * cpu_seconds / wall.as_secs_f64()
    )
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_048_576.0)
}

/// Lateness quantiles from the bot's own histogram between two scrapes.
fn bot_lateness(ctx: &mut Ctx, scenario: &str, before: &Metrics, after: &Metrics, goal_p99: f64) {
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

// ------------------------------------------------------------------ 1 drift

pub async fn drift(ctx: &mut Ctx) -> anyhow::Result<()> {
    const S: &str = "1 drift";
    let n: usize = if ctx.quick { 5 } else { 60 };
    let fake = ctx.fake(FakeConfig::default()).await?;
    let db = BenchDb::create("drift").await?;
    let bot = Bot::start(&ctx.bin, &fake, &db.url, &[])?;
    bot.wait_ready(&fake, 1).await?;
    fake.set_latency(Duration::from_millis(150));
    let before = bot.metrics().await?;
    let channel = fake.guilds()[0].channels[0];
    let injected = Instant::now();
    fake.inject_message(
        channel,
        Author::user(USER),
        &mention(&fake, &format!("count to {n}")),
    )
    .await?;
    let messages = fake
        .wait_for_messages(channel, n, Duration::from_secs(n as u64 + 30))
        .await?;
    let after = bot.metrics().await?;
    let contents: Vec<String> = messages.iter().map(|m| m.content.clone()).collect();
    let expected: Vec<String> = (1..=n).map(|k| k.to_string()).collect();
    if contents != expected {
        bail!("the channel shows {contents:?}, not 1..={n}");
    }
    let at: Vec<Instant> = messages.iter().map(|m| m.at).collect();
    // Number k is due at t0 + (k-1) s; t0 is when the bot accepted the
    // command and sent number 1 at once, so number 1's arrival stands for it.
    let drift: Vec<f64> = (0..n)
        .map(|i| ms_between(at[i], at[0] + Duration::from_secs(i as u64)))
        .collect();
    let last = drift[n - 1];
    ctx.info(S, "REST latency injected by the fake", "150 ms".into());
    ctx.row(
        S,
        &format!("#{n} arrival − due (due = #1 + {} s)", n - 1),
        ms(last),
        "within ±20 ms",
        Some(last.abs() <= 20.0),
    );
    let max_abs = drift.iter().fold(0.0f64, |a, d| a.max(d.abs()));
    ctx.info(S, "max |arrival − due| over the run", ms(max_abs));
    // Growth: least-squares slope of the drift over the run.
    let xs: Vec<f64> = (0..n).map(|i| i as f64).collect();
    let mx = xs.iter().sum::<f64>() / n as f64;
    let my = drift.iter().sum::<f64>() / n as f64;
    let sxy: f64 = xs
        .iter()
        .zip(&drift)
        .map(|(x, y)| (x - mx) * (y - my))
        .sum();
    let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    let growth = slope * (n as f64 - 1.0);
    ctx.row(
        S,
        "drift growth over the run (least-squares slope × run)",
        format!("{growth:+.2} ms ({:+.3} ms per number)", slope),
        "no growth (|Δ| ≤ 5 ms)",
        Some(growth.abs() <= 5.0),
    );
    let span = (at[n - 1] - at[0]).as_secs_f64();
    ctx.info(
        S,
        "schedule ratio: (#N − #1) / (N − 1) s",
        format!("{:.6}", span / (n as f64 - 1.0)),
    );
    ctx.info(
        S,
        "command injected → #1 arrives",
        ms(ms_between(at[0], injected)),
    );
    let h = HistogramDelta::between(&before, &after, LATENESS);
    ctx.info(
        S,
        "bot histogram: p50 / p99 lateness (bucket bounds)",
        format!(
            "{} / {}",
            bound(h.quantile_bound(0.5)),
            bound(h.quantile_bound(0.99))
        ),
    );
    drop(bot);
    db.drop_db().await;
    Ok(())
}

// --------------------------------------------------------------- 2 lateness

pub async fn lateness(ctx: &mut Ctx) -> anyhow::Result<()> {
    const S: &str = "2 normal load";
    const GOAL_MS: f64 = 10.0;
    let (count, n) = if ctx.quick { (10, 5) } else { (40, 30) };
    let fake = ctx
        .fake(FakeConfig {
            global_limit: ctx.strict_global.then_some(50),
            ..FakeConfig::default()
        })
        .await?;
    let db = BenchDb::create("lateness").await?;
    // The defaults: MAX_ACTIVE 40, MAX_ACTIVE_PER_GUILD 5, GLOBAL_RATE 50.
    let bot = Bot::start(&ctx.bin, &fake, &db.url, &[])?;
    bot.wait_ready(&fake, 1).await?;
    let before = bot.metrics().await?;
    let cpu0 = (bot.cpu_seconds(), self_cpu_seconds(), Instant::now());
    let chans = channels(&fake, count);
    let text = mention(&fake, &format!("count to {n}"));
    let mut injected = Vec::with_capacity(count);
    let probe = StallProbe::start();
    for (ch, _) in &chans {
        injected.push(Instant::now());
        fake.inject_message(*ch, Author::user(USER), &text).await?;
    }
    let mut lateness = Lateness::default();
    let mut first = Vec::new();
    let mut intervals = Vec::new();
    let mut late_by_k: std::collections::BTreeMap<usize, Vec<f64>> = Default::default();
    let mut late = Vec::new();
    for (i, (ch, _)) in chans.iter().enumerate() {
        let messages = fake
            .wait_for_messages(*ch, n, Duration::from_secs(n as u64 + 30))
            .await?;
        let numbers: Vec<&PostedMessage> = messages
            .iter()
            .filter(|m| m.message_reference.is_none())
            .collect();
        let contents: Vec<&str> = numbers.iter().map(|m| m.content.as_str()).collect();
        let expected: Vec<String> = (1..=n).map(|k| k.to_string()).collect();
        if contents != expected {
            bail!("channel {ch} shows {contents:?}, not 1..={n}");
        }
        let t1 = numbers[0].at;
        first.push(ms_between(t1, injected[i]));
        for (k, m) in numbers.iter().enumerate().skip(1) {
            let due = t1 + Duration::from_secs(k as u64);
            let (_, over) = lateness.add(m, due);
            if over > GOAL_MS {
                late_by_k.entry(k + 1).or_default().push(over);
                late.push((due, m.at));
            }
        }
        intervals.push((numbers[n - 1].at - t1).as_secs_f64() / (n as f64 - 1.0));
    }
    let noise = probe.finish();
    // Where the late ones are: which numbers, how many channels, how late.
    let where_late: Vec<String> = late_by_k
        .iter()
        .map(|(k, v)| {
            let worst = v.iter().copied().fold(0.0, f64::max);
            format!("#{k}: {} ({:.0} ms)", v.len(), worst)
        })
        .collect();
    let cpu1 = (bot.cpu_seconds(), self_cpu_seconds(), Instant::now());
    let after = bot.metrics().await?;
    ctx.info(
        S,
        "countdowns × numbers",
        format!("{count} × {n} (commands injected back to back)"),
    );
    ctx.info(S, "due", "#1's arrival + (k − 1) s".into());
    lateness_rows(ctx, S, &lateness, GOAL_MS);
    ctx.info(
        S,
        "numbers over 10 ms late (limit): channels (worst), by number",
        if where_late.is_empty() {
            "none".to_owned()
        } else {
            where_late.join(", ")
        },
    );
    ctx.info(
        S,
        "fake: min arrival − due (early)",
        ms(lateness.schedule.iter().copied().fold(f64::NAN, f64::min)),
    );
    noise_rows(ctx, S, &noise, "late numbers (over the goal)", &late);
    bot_lateness(ctx, S, &before, &after, GOAL_MS);
    let f = sorted(first);
    ctx.info(
        S,
        "command injected → #1 arrives: p50 / max",
        format!(
            "{} / {}",
            ms(percentile(&f, 50.0)),
            ms(*f.last().unwrap_or(&0.0))
        ),
    );
    let iv = sorted(intervals);
    ctx.info(
        S,
        "schedule ratio per channel: (#N − #1) / (N − 1) s, min–max",
        format!("{:.5}–{:.5}", iv[0], iv[iv.len() - 1]),
    );
    let stats = fake.stats();
    ctx.info(
        S,
        if ctx.strict_global {
            "429s served by the fake (global limit: the strict reading)"
        } else {
            "429s served by the fake (global limit not enforced)"
        },
        stats.rate_limited.to_string(),
    );
    // Whether a Discord counting 50 in any rolling second *at arrival*
    // would have refused some. Not a goal: the bot keeps that promise at
    // its own clock (the pacer), and no client decides when its requests
    // arrive. 40 countdowns in lock-step send 40 numbers each second, 10
    // below the limit; a burst that reaches Discord a few ms later than
    // the one after it puts more than 50 in one rolling second
    // (docs/timing.md, "The global limit, at the bot's clock").
    let arrivals: Vec<Instant> = fake.requests().iter().map(|r| r.at).collect();
    ctx.info(
        S,
        "busiest rolling second at the fake, by arrival (the strict reading)",
        format!("{} requests", busiest_second(arrivals.clone())),
    );
    ctx.info(
        S,
        "the same read as a leaky bucket (50, refilling 50/s): lowest level",
        format!("{:.1} of 50 (refused below 0)", leaky_bucket_low(arrivals)),
    );
    let wall = cpu1.2 - cpu0.2;
    ctx.info(S, "bot CPU", pct(cpu1.0 - cpu0.0, wall));
    ctx.info(S, "fake Discord + harness CPU", pct(cpu1.1 - cpu0.1, wall));
    drop(bot);
    db.drop_db().await;
    Ok(())
}

// -------------------------------------------------------------- 3 over budget

pub async fn over_budget(ctx: &mut Ctx) -> anyhow::Result<()> {
    const S: &str = "3 over budget";
    let (count, secs) = if ctx.quick { (100u64, 5u64) } else { (200, 40) };
    let fake = ctx
        .fake(world(count / 20, 20).with_discord_limits())
        .await?;
    let db = BenchDb::create("budget").await?;
    db.apply_schema().await?;
    let clock = Clock::now();
    let now = clock.wall_now();
    // Countdowns cut off by a 10-minute outage: all overdue at start.
    let rows: Vec<RunningRow> = channels(&fake, count as usize)
        .into_iter()
        .map(|(channel_id, guild_id)| RunningRow {
            channel_id,
            guild_id,
            target: 9999,
            last_sent: 17,
            created_at: now - 600.0,
            updated_at: now - 60.0,
        })
        .collect();
    db.insert_running(&rows).await?;
    // The defaults: GLOBAL_RATE 50, Discord's 5 per 5 s per channel.
    let bot = Bot::start(&ctx.bin, &fake, &db.url, &[])?;
    let probe = StallProbe::start();
    bot.wait_ready(&fake, 1).await?;
    let cpu0 = (bot.cpu_seconds(), self_cpu_seconds(), Instant::now());
    fake.wait_for_messages(rows[0].channel_id, 1, Duration::from_secs(30))
        .await?;
    tokio::time::sleep(Duration::from_secs(secs + 2)).await;
    let noise = probe.finish();
    let cpu1 = (bot.cpu_seconds(), self_cpu_seconds(), Instant::now());
    let after = bot.metrics().await?;
    let stats = fake.stats();
    drop(bot);
    let messages = fake.all_messages();
    let t1 = messages
        .iter()
        .map(|m| m.at)
        .min()
        .context("no message at all")?;
    let end = t1 + Duration::from_secs(secs);
    let in_window: Vec<&PostedMessage> = messages.iter().filter(|m| m.at < end).collect();
    let mut per_channel: HashMap<u64, u64> = rows.iter().map(|r| (r.channel_id, 0)).collect();
    for m in &in_window {
        *per_channel.entry(m.channel_id).or_default() += 1;
    }
    let mut ats: Vec<Instant> = in_window.iter().map(|m| m.at).collect();
    ats.sort();
    ctx.info(
        S,
        "countdowns resumed (overdue) / window",
        format!("{count} / first {secs} s from the first number"),
    );
    // Sends come in bursts when the budget frees up, so a count over a
    // window depends on where the window cuts them. The sustained rate is
    // read from the span of every 50 consecutive messages instead.
    let spans = sorted(
        (0..ats.len().saturating_sub(50))
            .map(|i| (ats[i + 50] - ats[i]).as_secs_f64())
            .collect(),
    );
    let sustained = 50.0 / percentile(&spans, 50.0);
    ctx.row(
        S,
        "sustained messages/s (50 / median span of 50 in a row) / 50",
        format!("{sustained:.2}/s = {:.3}", sustained / 50.0),
        "≥ 0.97",
        Some(sustained / 50.0 >= 0.97),
    );
    let rate = in_window.len() as f64 / secs as f64;
    ctx.info(
        S,
        "messages in the window / (50 × window)",
        format!("{rate:.2}/s = {:.3}", rate / 50.0),
    );
    // The busiest second at the fake: the budget is used, never exceeded.
    let busiest = busiest_second(ats.clone());
    ctx.info(
        S,
        "busiest rolling second at the fake",
        format!("{busiest} messages"),
    );
    // Since the bot started (the first burst goes out before `before`).
    let bot_429 = after.get("countdown_send_errors_total{kind=\"rate_limited\"}");
    ctx.row(
        S,
        "429s received (fake served: global + channel / bot counted)",
        format!(
            "{} + {} / {bot_429}",
            stats.rate_limited - stats.rate_limited_channel,
            stats.rate_limited_channel
        ),
        "0",
        Some(stats.rate_limited == 0 && bot_429 == 0.0),
    );
    let refused: Vec<Instant> = fake
        .requests()
        .iter()
        .filter(|r| r.status == 429)
        .map(|r| r.at)
        .collect();
    if !refused.is_empty() {
        let when: Vec<String> = refused
            .iter()
            .map(|&at| format!("{:.2}", ms_between(at, t1) / 1000.0))
            .collect();
        ctx.info(S, "429s at (s after the first number)", when.join(", "));
    }
    // A request counts against the rolling second before it: a stall in
    // that second can bunch arrivals the bot had spaced.
    let seconds_before: Vec<(Instant, Instant)> = refused
        .iter()
        .map(|&at| (at.checked_sub(Duration::from_secs(1)).unwrap_or(at), at))
        .collect();
    noise_rows(
        ctx,
        S,
        &noise,
        "429s with the second before them",
        &seconds_before,
    );
    // Requests that are not message posts (serenity's own at start-up)
    // count against the same global limit.
    let mut others: Vec<String> = fake
        .requests()
        .iter()
        .filter(|r| !r.path.ends_with("/messages"))
        .map(|r| {
            format!(
                "{} {} at {:+.2} s",
                r.method,
                r.path.trim_start_matches("/api/v10"),
                ms_between(r.at, t1) / 1000.0
            )
        })
        .collect();
    others.dedup();
    ctx.info(S, "other REST requests", others.join("; "));
    let max = per_channel.values().copied().max().unwrap_or(0);
    let min = per_channel.values().copied().min().unwrap_or(0);
    let fairness = if min == 0 {
        f64::INFINITY
    } else {
        max as f64 / min as f64
    };
    ctx.row(
        S,
        "fairness: max / min numbers per channel",
        format!("{max} / {min} = {fairness:.2}"),
        "≤ 1.25",
        Some(fairness <= 1.25),
    );
    let wall = cpu1.2 - cpu0.2;
    ctx.info(S, "bot CPU", pct(cpu1.0 - cpu0.0, wall));
    ctx.info(S, "fake Discord + harness CPU", pct(cpu1.1 - cpu0.1, wall));
    db.drop_db().await;
    Ok(())
}

// -------------------------------------------------------------------- 4 scale

pub async fn scale(ctx: &mut Ctx) -> anyhow::Result<()> {
    const S: &str = "4 scale";
    const GOAL_MS: f64 = 50.0;
    let (count, lead, warm, secs) = if ctx.quick {
        (300u64, 2.5, 1u64, 4u64)
    } else {
        (5000, 4.0, 5, 20)
    };
    let count = size_override("BENCH_SCALE_COUNT").unwrap_or(count);
    // Every number of the run, with room to spare (see `history_capacity`).
    let messages = count * (lead as u64 + warm + secs + 10);
    let fake = ctx
        .fake(FakeConfig {
            history_capacity: messages as usize,
            ..world(count.div_ceil(100), count.min(100))
        })
        .await?;
    let db = BenchDb::create("scale").await?;
    db.apply_schema().await?;
    let proxy = PgProxy::start(&db.url).await?;
    let clock = Clock::now();
    let start = clock.wall_now() + lead;
    // Number 1 of countdown i is due at start + i/count s: commands come in
    // at random moments, so the countdowns' phases spread over the second.
    let rows: Vec<RunningRow> = channels(&fake, count as usize)
        .into_iter()
        .enumerate()
        .map(|(i, (channel_id, guild_id))| RunningRow {
            channel_id,
            guild_id,
            target: 9999,
            last_sent: 0,
            created_at: start + i as f64 / count as f64,
            updated_at: clock.wall_now(),
        })
        .collect();
    let ids = db.insert_running(&rows).await?;
    let created: HashMap<i64, Instant> = ids
        .iter()
        .zip(&rows)
        .map(|((id, _), r)| (*id, clock.instant_of(r.created_at)))
        .collect();
    let limit = (count * 2).to_string();
    let bot = Bot::start(
        &ctx.bin,
        &fake,
        &proxy.url_for(&db.url),
        &[
            ("GLOBAL_RATE", limit.clone()),
            ("MAX_ACTIVE", limit.clone()),
            ("MAX_ACTIVE_PER_GUILD", limit),
        ],
    )?;
    let overflows = listen_overflows();
    bot.wait_ready(&fake, 1).await?;
    let first_due = clock.instant_of(start);
    if Instant::now() > first_due {
        ctx.info(
            S,
            "warning",
            "the bot was ready after the first number was due".into(),
        );
    }
    let w0 = first_due + Duration::from_secs(warm);
    tokio::time::sleep_until(w0.into()).await;
    let before = bot.metrics().await?;
    let pg_pids = db.backend_pids().await?;
    let tx0 = db.transactions().await?;
    let wire0 = proxy.counts.snapshot();
    let busy0 = machine_busy_seconds();
    let s0 = (
        bot.cpu_seconds(),
        self_cpu_seconds(),
        cpu_of(&pg_pids),
        proxy.counts.round_trips(),
        Instant::now(),
    );
    let probe = StallProbe::start();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let noise = probe.finish();
    let s1 = (
        bot.cpu_seconds(),
        self_cpu_seconds(),
        cpu_of(&pg_pids),
        proxy.counts.round_trips(),
        Instant::now(),
    );
    let wire1 = proxy.counts.snapshot();
    let busy1 = machine_busy_seconds();
    let after = bot.metrics().await?;
    let (rss, hwm) = bot.memory();
    let conns = bot.connections_to(fake.addr().port());
    // pg_stat_database lags by up to a second: read it after a pause.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let tx1 = db.transactions().await?;
    drop(bot);
    let w1 = s1.4;
    let wall = w1 - s0.4;
    let mut lateness = Lateness::default();
    let mut late = Vec::new();
    let (mut first_s, mut last_s) = (Vec::new(), Vec::new());
    for m in fake.all_messages() {
        if m.at < s0.4 || m.at >= w1 {
            continue;
        }
        if let Some((id, k)) = nonce_of(&m) {
            if let Some(t0) = created.get(&id) {
                let due = *t0 + Duration::from_secs(u64::from(k) - 1);
                let (on_schedule, over) = lateness.add(&m, due);
                if over > GOAL_MS {
                    late.push((due, m.at));
                }
                if m.at < s0.4 + Duration::from_secs(1) {
                    first_s.push(on_schedule);
                } else if m.at >= w1 - Duration::from_secs(1) {
                    last_s.push(on_schedule);
                }
            }
        }
    }
    let growth = percentile(&sorted(last_s), 50.0) - percentile(&sorted(first_s), 50.0);
    ctx.info(
        S,
        "countdowns / window",
        format!(
            "{count} (phases spread over 1 s) / {secs} s after {warm} s warm-up; fake limits off, GLOBAL_RATE {}",
            count * 2
        ),
    );
    let rate = lateness.schedule.len() as f64 / wall.as_secs_f64();
    ctx.info(
        S,
        "messages per second / schedule",
        format!("{rate:.0}/s / {count}/s = {:.3}", rate / count as f64),
    );
    lateness_rows(ctx, S, &lateness, GOAL_MS);
    ctx.info(
        S,
        "fake: median lateness, last second − first second of the window",
        ms(growth),
    );
    noise_rows(ctx, S, &noise, "late numbers (over the goal)", &late);
    bot_lateness(ctx, S, &before, &after, GOAL_MS);
    ctx.row(
        S,
        "bot memory: peak RSS (VmHWM) / RSS at the end",
        format!("{} / {}", mb(hwm), mb(rss)),
        "≤ 150 MB",
        Some(hwm <= 150 * 1_048_576),
    );
    ctx.info(S, "bot CPU", pct(s1.0 - s0.0, wall));
    ctx.info(
        S,
        "fake Discord + harness CPU (bench process)",
        pct(s1.1 - s0.1, wall),
    );
    ctx.info(
        S,
        &format!("PostgreSQL CPU ({} backends of the bot)", pg_pids.len()),
        pct(s1.2 - s0.2, wall),
    );
    let ours = (s1.0 - s0.0) + (s1.1 - s0.1) + (s1.2 - s0.2);
    ctx.info(
        S,
        "the rest of the machine (other processes) CPU",
        pct((busy1 - busy0 - ours).max(0.0), wall),
    );
    let rt = (s1.3 - s0.3) as f64 / wall.as_secs_f64();
    ctx.row(
        S,
        "database round trips per second (wire count)",
        format!("{rt:.1}/s"),
        "≤ 20",
        Some(rt <= 20.0),
    );
    let per_s = |n: u64| format!("{:.1}/s", n as f64 / wall.as_secs_f64());
    ctx.info(
        S,
        "round trips: simple queries (Q) / Syncs / statements prepared (Parse)",
        format!(
            "{} / {} / {}",
            per_s(wire1.0 - wire0.0),
            per_s(wire1.1 - wire0.1),
            per_s(wire1.2 - wire0.2)
        ),
    );
    ctx.info(
        S,
        "database transactions per second (pg_stat_database)",
        format!("{:.1}/s", (tx1 - tx0) as f64 / (wall.as_secs_f64() + 1.5)),
    );
    ctx.info(S, "HTTP connections bot → fake", conns.to_string());
    ctx.info(
        S,
        "TCP accept-queue overflows (system-wide)",
        (listen_overflows() - overflows).to_string(),
    );
    db.drop_db().await;
    Ok(())
}

// ------------------------------------------------------------------- 5 resume

/// Resumes 10,000 rows twice: last progress 30 s ago (the nonces still
/// hold, every countdown re-sends its next number at once), then 2 minutes
/// ago (past `RESUME_CHECK_AFTER`: every countdown first lists its channel,
/// one request more each).
pub async fn resume(ctx: &mut Ctx) -> anyhow::Result<()> {
    resume_rows(ctx, "5 resume", 30.0).await?;
    resume_rows(ctx, "5 resume, channel check", 120.0).await
}

async fn resume_rows(ctx: &mut Ctx, scenario: &'static str, idle_secs: f64) -> anyhow::Result<()> {
    let count: u64 = if ctx.quick { 1000 } else { 10_000 };
    let count = size_override("BENCH_RESUME_COUNT").unwrap_or(count);
    let fake = ctx
        .fake(FakeConfig {
            // A few numbers of each countdown (see `history_capacity`).
            history_capacity: count as usize * 8,
            ..world(count.div_ceil(100), count.min(100))
        })
        .await?;
    let db = BenchDb::create("resume").await?;
    db.apply_schema().await?;
    let clock = Clock::now();
    let now = clock.wall_now();
    let rows: Vec<RunningRow> = channels(&fake, count as usize)
        .into_iter()
        .map(|(channel_id, guild_id)| RunningRow {
            channel_id,
            guild_id,
            target: 9999,
            last_sent: 5,
            created_at: now - 300.0,
            updated_at: now - idle_secs,
        })
        .collect();
    db.insert_running(&rows).await?;
    let limit = (count * 2).to_string();
    let overflows = listen_overflows();
    let load0 = (machine_busy_seconds(), self_cpu_seconds(), Instant::now());
    let bot = Bot::start(
        &ctx.bin,
        &fake,
        &db.url,
        &[
            ("GLOBAL_RATE", limit.clone()),
            ("MAX_ACTIVE", limit.clone()),
            ("MAX_ACTIVE_PER_GUILD", limit),
        ],
    )?;
    fake.wait_identify_count(1, Duration::from_secs(60))
        .await
        .with_context(|| format!("the bot never identified:\n{}", bot.log_tail()))?;
    let ready = fake
        .last_ready_sent_at()
        .context("READY not recorded by the fake")?;
    // Waiting must cost the fake (same process) next to nothing: the
    // counter first, then one look at the channels once there are enough
    // messages (the figure comes from the messages' own arrival times).
    // Waiting on each channel in turn cloned thousands of messages and took
    // a fifth of this process's CPU during the burst.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if fake.stats().created >= count {
            let mut seen = std::collections::HashSet::new();
            for m in fake.all_messages() {
                seen.insert(m.channel_id);
            }
            if seen.len() >= count as usize {
                break;
            }
        }
        if Instant::now() > deadline {
            bail!(
                "not every countdown resumed within 60 s:\n{}",
                bot.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, hwm) = bot.memory();
    let conns = bot.connections_to(fake.addr().port());
    let spawned = bot.spawned_at;
    let bot_cpu = bot.cpu_seconds();
    let load1 = (machine_busy_seconds(), self_cpu_seconds(), Instant::now());
    drop(bot);
    let mut first: HashMap<u64, &PostedMessage> = HashMap::new();
    let messages = fake.all_messages();
    for m in &messages {
        first.entry(m.channel_id).or_insert(m);
    }
    if first.len() < count as usize {
        bail!("only {} channels got a number", first.len());
    }
    if let Some(bad) = first.values().find(|m| m.content != "6") {
        bail!(
            "channel {} resumed with {:?}, not 6",
            bad.channel_id,
            bad.content
        );
    }
    let times = sorted(first.values().map(|m| ms_between(m.at, ready)).collect());
    let all = *times.last().unwrap_or(&f64::NAN);
    ctx.info(
        scenario,
        "running rows at start",
        format!(
            "{count} (overdue; fake limits off, GLOBAL_RATE {})",
            count * 2
        ),
    );
    ctx.info(
        scenario,
        "bot process start → READY",
        ms(ms_between(ready, spawned)),
    );
    ctx.info(scenario, "READY → first next number", ms(times[0]));
    ctx.info(
        scenario,
        "READY → half of them",
        ms(percentile(&times, 50.0)),
    );
    ctx.row(
        scenario,
        "READY → every countdown sent its next number",
        ms(all),
        "≤ 2000 ms",
        Some(all <= 2000.0),
    );
    ctx.info(scenario, "bot peak RSS", mb(hwm));
    let wall = load1.2 - load0.2;
    ctx.info(
        scenario,
        "bot CPU (start to the last number)",
        pct(bot_cpu, wall),
    );
    ctx.info(
        scenario,
        "fake Discord + harness CPU (bench process)",
        pct(load1.1 - load0.1, wall),
    );
    ctx.info(
        scenario,
        "the rest of the machine (other processes) CPU",
        pct(
            (load1.0 - load0.0 - bot_cpu - (load1.1 - load0.1)).max(0.0),
            wall,
        ),
    );
    ctx.info(scenario, "HTTP connections bot → fake", conns.to_string());
    ctx.info(
        scenario,
        "TCP accept-queue overflows (system-wide)",
        (listen_overflows() - overflows).to_string(),
    );
    ctx.info(
        scenario,
        "channel listings (GET …/messages)",
        fake.stats().history_lists.to_string(),
    );
    db.drop_db().await;
    Ok(())
}

// --------------------------------------------------------------- 6 cold start

pub async fn cold_start(ctx: &mut Ctx) -> anyhow::Result<()> {
    const S: &str = "6 cold start";
    let runs = if ctx.quick { 2 } else { 5 };
    let fake = ctx.fake(FakeConfig::default()).await?;
    let db = BenchDb::create("cold").await?;
    let mut to_ready = Vec::new();
    let mut to_identify = Vec::new();
    // Each start after a clean stop (SIGTERM), the first on an empty
    // database; then one more after a kill -9.
    for i in 0..=runs {
        let mut bot = Bot::start(&ctx.bin, &fake, &db.url, &[])?;
        let ready = bot.wait_readyz(Duration::from_secs(30)).await?;
        let ms_ready = ms_between(ready, bot.spawned_at);
        let ms_identify = fake
            .last_ready_sent_at()
            .map(|r| ms_between(r, bot.spawned_at))
            .unwrap_or(f64::NAN);
        if i == runs {
            ctx.info(
                S,
                "start after a kill -9 of the previous one → /readyz 200",
                ms(ms_ready),
            );
            bot.kill();
            break;
        }
        to_ready.push(ms_ready);
        to_identify.push(ms_identify);
        if i + 1 == runs {
            bot.kill();
        } else if bot.terminate(Duration::from_secs(10)).await.is_none() {
            bail!(
                "the bot did not exit within 10 s of SIGTERM:\n{}",
                bot.log_tail()
            );
        }
    }
    let list = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    ctx.info(
        S,
        &format!("{runs} starts, each after a clean stop → /readyz 200 (ms)"),
        list(&to_ready),
    );
    ctx.info(
        S,
        "first start (empty database: schema created)",
        ms(to_ready[0]),
    );
    let all = sorted(to_ready.clone());
    ctx.info(
        S,
        "process start → /readyz 200: p50",
        ms(percentile(&all, 50.0)),
    );
    let worst = *all.last().unwrap_or(&f64::NAN);
    ctx.row(
        S,
        "process start → /readyz 200: worst of the clean starts",
        ms(worst),
        "≤ 1000 ms",
        Some(worst <= 1000.0),
    );
    let id = sorted(to_identify);
    ctx.info(
        S,
        "process start → READY sent (p50)",
        ms(percentile(&id, 50.0)),
    );
    db.drop_db().await;
    Ok(())
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
