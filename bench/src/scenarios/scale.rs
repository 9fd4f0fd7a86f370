//! Scenario 4, scale: 5,000 countdowns with their phases spread over the
//! second, the caps and the fake's limits off; lateness, memory, CPU and
//! database round trips counted on the wire.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use fake_discord::FakeConfig;

use super::figures::{bot_lateness, lateness_rows, mb, ms, noise_rows, pct, wire_split, Lateness};
use super::{caps, channels, nonce_of, size_override, world, Ctx};
use crate::harness::{
    cpu_of, listen_overflows, machine_busy_seconds, percentile, self_cpu_seconds, sorted, BenchDb,
    Bot, Clock, PgProxy, RunningRow, StallProbe,
};

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
    let bot = Bot::start(&ctx.bin, &fake, &proxy.url_for(&db.url), &caps(count * 2))?;
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
        wire_split(wire0, wire1, per_s),
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
