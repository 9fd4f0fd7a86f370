//! Scenario 5, resume: 10,000 `running` rows at start, idle for 30 s and
//! then for 2 minutes; from READY until every countdown sent its next
//! number.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use fake_discord::{FakeConfig, PostedMessage};

use super::figures::{mb, ms, pct};
use super::{caps, overdue_rows, size_override, world, Ctx};
use crate::harness::{
    listen_overflows, machine_busy_seconds, ms_between, percentile, self_cpu_seconds, sorted,
    BenchDb, Bot,
};

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
    let rows = overdue_rows(&fake, count, 5, 300.0, idle_secs);
    db.insert_running(&rows).await?;
    let overflows = listen_overflows();
    let load0 = (machine_busy_seconds(), self_cpu_seconds(), Instant::now());
    let bot = Bot::start(&ctx.bin, &fake, &db.url, &caps(count * 2))?;
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
