//! Scenario 1, drift: one long countdown with 150 ms added to every REST
//! answer; each number's arrival against number 1's + (k − 1) s.

use std::time::{Duration, Instant};

use anyhow::bail;
use fake_discord::{Author, FakeConfig};

use super::figures::{bound, ms, LATENESS};
use super::{mention, Ctx};
use crate::harness::{ms_between, BenchDb, Bot, HistogramDelta, USER};

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
