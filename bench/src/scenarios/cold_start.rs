//! Scenario 6, cold start: process start to `/readyz` 200, after clean
//! stops and once after a kill -9.

use std::time::Duration;

use anyhow::bail;
use fake_discord::FakeConfig;

use super::figures::ms;
use super::Ctx;
use crate::harness::{ms_between, percentile, sorted, BenchDb, Bot};

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
