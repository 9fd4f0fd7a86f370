//! Scenario 7, burst: N `count to 20` commands, mentions in N channels,
//! dispatched by the fake's gateway in one burst, for N = 1, 40, 500 and
//! 5,000, the caps and the fake's limits off. What a user sees: how long
//! after their command number 1 arrives, and how late every number is
//! against the command + (k − 1) s; beside it, the database round trips
//! each command costs.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::bail;
use fake_discord::{Author, FakeConfig, PostedMessage};

use super::figures::{counted, mb, ms, noise_rows, pct, wire_split};
use super::{caps, channels, mention, world, Ctx};
use crate::harness::{
    ms_between, percentile, self_cpu_seconds, sorted, BenchDb, Bot, PgProxy, StallProbe, TOKEN,
    USER,
};

/// `GLOBAL_RATE`, `MAX_ACTIVE` and `MAX_ACTIVE_PER_GUILD` for every size:
/// twice the largest burst, so neither Discord's budget nor a cap is what
/// is measured (5,000 countdowns send 5,000 numbers each second).
const CAPS: u64 = 10_000;

/// The goal for command → number 1 at the 99th percentile, by burst size.
fn goal_ms(count: u64) -> Option<f64> {
    match count {
        500 => Some(20.0),
        5000 => Some(50.0),
        _ => None,
    }
}

pub async fn burst(ctx: &mut Ctx) -> anyhow::Result<()> {
    let (sizes, n): (&[u64], usize) = if ctx.quick {
        (&[1, 40], 5)
    } else {
        (&[1, 40, 500, 5000], 20)
    };
    for &count in sizes {
        burst_of(ctx, count, n).await?;
    }
    Ok(())
}

/// `count` commands `count to n` in one burst, with a bot, a database and
/// a fake of their own.
async fn burst_of(ctx: &mut Ctx, count: u64, n: usize) -> anyhow::Result<()> {
    let s = format!("7 burst {count}");
    let s = s.as_str();
    let fake = ctx
        .fake(FakeConfig {
            // Every number of the run, with room to spare (see `history_capacity`).
            history_capacity: count as usize * (n + 5),
            ..world(count.div_ceil(100), count.min(100))
        })
        .await?;
    let db = BenchDb::create("burst").await?;
    let proxy = PgProxy::start(&db.url).await?;
    let bot = Bot::start(&ctx.bin, &fake, &proxy.url_for(&db.url), &caps(CAPS))?;
    bot.wait_ready(&fake, 1).await?;
    let chans = channels(&fake, count as usize);
    let text = mention(&fake, &format!("count to {n}"));

    let before = bot.metrics().await?;
    let tx0 = db.transactions().await?;
    let wire0 = proxy.counts.snapshot();
    let rt0 = proxy.counts.round_trips();
    let probe = StallProbe::start();
    let cpu0 = (bot.cpu_seconds(), self_cpu_seconds(), Instant::now());
    // A command is dispatched when the fake has queued its MESSAGE_CREATE
    // on the bot's gateway connection: `inject_message` returns then.
    let mut dispatched = Vec::with_capacity(chans.len());
    for (ch, _) in &chans {
        fake.inject_message(*ch, Author::user(USER), &text).await?;
        dispatched.push(Instant::now());
    }
    let spread = ms_between(
        *dispatched.last().unwrap_or(&cpu0.2),
        *dispatched.first().unwrap_or(&cpu0.2),
    );

    // Until every number is there, or nothing new came for QUIET (a
    // refused command gets no number, and its reply may be dropped by the
    // bot's reply budget). Waiting must cost the fake (this process) next
    // to nothing: a counter read every 50 ms, the messages read once at the
    // end (their arrival times are the figures).
    const QUIET: Duration = Duration::from_secs(3);
    let all = count * n as u64;
    let deadline = Instant::now() + Duration::from_secs(n as u64 + 60);
    let mut last_new = (0, Instant::now());
    loop {
        let created = fake.stats().created;
        if created >= all {
            break;
        }
        if created != last_new.0 {
            last_new = (created, Instant::now());
        } else if created > 0 && last_new.1.elapsed() >= QUIET {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "{created} of {all} numbers after {} s (the bot's log: BENCH_KEEP_LOGS=1 keeps it)",
                n + 60
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let noise = probe.finish();
    let cpu1 = (bot.cpu_seconds(), self_cpu_seconds(), Instant::now());
    let after = bot.metrics().await?;
    // Every countdown ended and written: the window of the round trips.
    // These reads go to PostgreSQL directly, not through the proxy; each
    // is one transaction, taken off pg_stat_database's count below.
    let mut own_reads: i64 = 1;
    while db.tasks_with_status("running").await? > 0 {
        own_reads += 1;
        if Instant::now() > deadline + Duration::from_secs(10) {
            bail!("countdowns still `running` in the database after they ended");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rt1 = proxy.counts.round_trips();
    let wire1 = proxy.counts.snapshot();
    let window = cpu0.2.elapsed();
    let (_, hwm) = bot.memory();
    // What the bot asks of its database with nothing to do, the 3 s after;
    // pg_stat_database, which lags by a second or more, is read then.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_rate = (proxy.counts.round_trips() - rt1) as f64 / 3.0;
    let tx1 = db.transactions().await?;
    drop(bot);

    let mut by_channel: HashMap<u64, Vec<PostedMessage>> = HashMap::new();
    for m in fake.all_messages() {
        by_channel.entry(m.channel_id).or_default().push(m);
    }
    // The floor: how long the fake, on the same cores, takes to receive
    // `count` posts from a plain client with as many in flight as the bot
    // allows itself (the physical limit of "every #1 is there").
    let floor = if count >= 40 {
        Some(post_floor(&fake, &chans, count).await?)
    } else {
        None
    };
    // A refused command's number 1 never comes: infinitely late.
    let mut first = Vec::with_capacity(chans.len());
    let mut late = Vec::with_capacity(all as usize);
    let mut slow_first = Vec::new();
    let slow_ms = goal_ms(count).unwrap_or(20.0);
    for ((ch, _), at) in chans.iter().zip(&dispatched) {
        let messages = by_channel.get(ch).map(Vec::as_slice).unwrap_or_default();
        let started = messages
            .iter()
            .any(|m| m.message_reference.is_none() && m.content == "1");
        if !started {
            first.push(f64::INFINITY);
            continue;
        }
        let numbers = counted(*ch, messages, n)?;
        let to_first = ms_between(numbers[0].at, *at);
        first.push(to_first);
        if to_first > slow_ms {
            slow_first.push((*at, numbers[0].at));
        }
        for (k, m) in numbers.iter().enumerate() {
            late.push(ms_between(m.at, *at + Duration::from_secs(k as u64)));
        }
    }
    let refused = first.iter().filter(|v| v.is_infinite()).count();

    ctx.info(
        s,
        "commands",
        format!(
            "{count} × `count to {n}`, one a channel, dispatched within {}; \
             fake limits off; GLOBAL_RATE, MAX_ACTIVE, MAX_ACTIVE_PER_GUILD {CAPS}",
            ms(spread)
        ),
    );
    let db_errors = "countdown_db_errors_total";
    ctx.info(
        s,
        "commands refused (no number 1) / the bot's database errors meanwhile",
        format!(
            "{refused} of {count} / {}",
            after.get(db_errors) - before.get(db_errors)
        ),
    );
    let first = sorted(first);
    let p99 = percentile(&first, 99.0);
    let figure = "command dispatched → #1 received (refused: never): p50 / p99 / max";
    let value = p50_p99_max(&first);
    match goal_ms(count) {
        Some(goal) => ctx.row(
            s,
            figure,
            value,
            &format!("p99 ≤ {goal} ms"),
            Some(p99 <= goal),
        ),
        None => ctx.info(s, figure, value),
    }
    if let Some(floor) = floor {
        ctx.info(
            s,
            "physical limit: the fake alone receiving as many posts from a plain client (256 in flight): p50 / p99 / max",
            p50_p99_max(&floor),
        );
    }
    ctx.info(
        s,
        &format!(
            "#k received − (command + (k − 1) s), all {n} numbers of the countdowns: p50 / p99 / max"
        ),
        p50_p99_max(&sorted(late)),
    );
    let per_command = |v: u64| v as f64 / count as f64;
    let wall = window.as_secs_f64();
    ctx.info(
        s,
        "database round trips per command (wire: Q + Sync, burst until every row is written)",
        format!(
            "{:.2} ({} in {wall:.1} s); less the idle bot's {idle_rate:.1}/s: {:.2}",
            per_command(rt1 - rt0),
            rt1 - rt0,
            ((rt1 - rt0) as f64 - idle_rate * wall).max(0.0) / count as f64
        ),
    );
    ctx.info(
        s,
        "round trips per command: simple queries (Q) / Syncs / statements prepared (Parse)",
        wire_split(wire0, wire1, |v| format!("{:.2}", per_command(v))),
    );
    ctx.info(
        s,
        "database transactions per command (pg_stat_database, the window and 3 s idle after)",
        format!(
            "{:.2}",
            (tx1 - tx0 - own_reads).max(0) as f64 / count as f64
        ),
    );
    noise_rows(
        ctx,
        s,
        &noise,
        &format!("commands whose #1 took over {slow_ms} ms"),
        &slow_first,
    );
    let busy = cpu1.2 - cpu0.2;
    ctx.info(
        s,
        "bot CPU (burst to the last number)",
        pct(cpu1.0 - cpu0.0, busy),
    );
    ctx.info(
        s,
        "fake Discord + harness CPU (bench process)",
        pct(cpu1.1 - cpu0.1, busy),
    );
    ctx.info(s, "bot peak RSS", mb(hwm));
    db.drop_db().await;
    Ok(())
}

/// "p50 / p99 / max" of sorted milliseconds ("never" for infinity).
fn p50_p99_max(sorted: &[f64]) -> String {
    let put = |v: f64| {
        if v.is_infinite() {
            "never".to_owned()
        } else {
            ms(v)
        }
    };
    format!(
        "{} / {} / {}",
        put(percentile(sorted, 50.0)),
        put(percentile(sorted, 99.0)),
        put(*sorted.last().unwrap_or(&f64::NAN))
    )
}

/// Posts one message to each of the first `count` channels from a plain
/// HTTP client, at most [`IN_FLIGHT`] at once, and returns when each
/// arrived at the fake, in ms after the first was sent, sorted.
async fn post_floor(
    fake: &fake_discord::FakeDiscord,
    chans: &[(u64, u64)],
    count: u64,
) -> anyhow::Result<Vec<f64>> {
    /// The bot's own bound on requests under way (`send::delivery::MAX_IN_FLIGHT`).
    const IN_FLIGHT: usize = 256;
    let http = reqwest::Client::new();
    let base = fake.base_url();
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let start = Instant::now();
    let mut posts = tokio::task::JoinSet::new();
    for (ch, _) in chans.iter().take(count as usize) {
        let (http, gate) = (http.clone(), gate.clone());
        let url = format!("{base}/api/v10/channels/{ch}/messages");
        posts.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            http.post(url)
                .header("Authorization", format!("Bot {TOKEN}"))
                .header("Content-Type", "application/json")
                .body(r#"{"content":"floor"}"#)
                .send()
                .await?
                .error_for_status()?;
            anyhow::Ok(())
        });
    }
    while let Some(done) = posts.join_next().await {
        done??;
    }
    let arrivals = fake
        .all_messages()
        .iter()
        .filter(|m| m.content == "floor")
        .map(|m| ms_between(m.at, start))
        .collect();
    Ok(sorted(arrivals))
}
