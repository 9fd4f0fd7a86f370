//! Scenario 2, normal load: 40 countdowns started at once with the bot's
//! default caps; lateness at the fake and in the bot's histogram, the
//! global limit read two ways, the machine's noise.

use std::time::{Duration, Instant};

use fake_discord::{Author, FakeConfig};

use super::figures::{
    bot_lateness, busiest_second, counted, lateness_rows, leaky_bucket_low, ms, noise_rows, pct,
    Lateness,
};
use super::{channels, mention, Ctx};
use crate::harness::{
    ms_between, percentile, self_cpu_seconds, sorted, BenchDb, Bot, StallProbe, USER,
};

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
        let numbers = counted(*ch, &messages, n)?;
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
