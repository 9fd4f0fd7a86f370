//! Scenario 3, over budget: 200 overdue countdowns resumed at once against
//! a fake enforcing Discord's limits; the share of the budget used, 429s,
//! fairness.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use fake_discord::PostedMessage;

use super::figures::{busiest_second, noise_rows, pct};
use super::{overdue_rows, world, Ctx};
use crate::harness::{ms_between, percentile, self_cpu_seconds, sorted, BenchDb, Bot, StallProbe};

pub async fn over_budget(ctx: &mut Ctx) -> anyhow::Result<()> {
    const S: &str = "3 over budget";
    let (count, secs) = if ctx.quick { (100u64, 5u64) } else { (200, 40) };
    let fake = ctx
        .fake(world(count / 20, 20).with_discord_limits())
        .await?;
    let db = BenchDb::create("budget").await?;
    db.apply_schema().await?;
    // Countdowns cut off by a 10-minute outage: all overdue at start.
    let rows = overdue_rows(&fake, count, 17, 600.0, 60.0);
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
