//! Fault suite: abuse. One user starting countdowns in 50
//! channels, a server at its cap, stop-spam, 100 commands a second in one
//! channel. With the fake enforcing Discord's limits (50 requests/s, 5
//! messages per 5 s per channel): the caps hold, the bot never exceeds a
//! limit (the only 429 it may see is a countdown's number racing its
//! channel window's edge by a few ms, see `pacer`),
//! replies are bounded (a channel gets at most 3 refusals or usage answers
//! in 10 s, the bot no more a second than the countdowns leave of its
//! rate budget; the rest are counted and journalled, not answered), and the
//! countdowns of other servers stay on time.

mod common;

use std::time::Duration;

use common::*;
use fake_discord::{BucketModel, FakeDiscord};

/// Discord's limits, enforced by the fake, with channel buckets in their
/// older, stricter shape: a fixed window opening at its first request
/// (Discord's leaky buckets, the fake's default, never refuse a countdown
/// at one number a second; this shape can, and the bot must stay within
/// either).
fn enforce_discord_limits(fake: &FakeDiscord) {
    fake.set_global_limit(Some(50));
    fake.set_channel_limit(Some((5, Duration::from_secs(5))));
    fake.set_channel_model(BucketModel::FixedWindow);
}

/// The bot stayed inside Discord's limits: no global 429, at most 50
/// requests in any second, and no channel 429 but the edge race: a
/// countdown uses its channel's whole bucket, so its 6th number, sent
/// exactly 5 s after the 1st, may arrive a few ms before the window ends
/// (arrival jitter). Such a 429 is retried after its few ms. A request the
/// bot should have held back would arrive a second or more early.
fn assert_within_discord_limits(fake: &FakeDiscord) {
    let stats = fake.stats();
    assert_eq!(
        stats.rate_limited, stats.rate_limited_channel,
        "the bot hit a global 429: {stats:?}"
    );
    assert!(
        stats.channel_429_max_early_ms <= 100,
        "a channel 429 that is no edge race: {stats:?}"
    );
    // Measured: 8 races in 222 posts (~44 windows), at most 4 ms early,
    // with 100 commands a second loading the machine. A bot that lost
    // track of its buckets would be refused at most windows, and early by
    // up to seconds.
    assert!(
        stats.rate_limited_channel * 10 <= stats.message_posts,
        "edge races at more than half the windows: {stats:?}"
    );
    if stats.rate_limited_channel > 0 {
        eprintln!("edge races: {stats:?}");
    }
    let requests = fake.requests();
    let times: Vec<u64> = requests.iter().map(|r| r.at_ms).collect();
    let busiest = max_in_window(&times, 1000);
    assert!(busiest <= 50, "{busiest} requests in one second");
    // (The fake enforces the 5-per-5-s channel bucket as Discord does, from
    // each window's first request: no 429 above means none was exceeded.)
}

/// The two tests run one after the other: each is a load test of its own,
/// and timing (other servers on time, no 429 beyond the edge race) is what
/// they check.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn replies(fake: &FakeDiscord, ch: u64) -> Vec<fake_discord::PostedMessage> {
    fake.messages(ch)
        .into_iter()
        .filter(|m| m.message_reference.is_some())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_in_50_channels_cannot_pass_the_caps() {
    let _one = ONE_AT_A_TIME.lock().await;
    let fake = fake().await;
    enforce_discord_limits(&fake);
    let db = TestDb::create().await;
    let bot = Bot::start_ready(
        &fake,
        &db,
        &[("MAX_ACTIVE", "12"), ("MAX_ACTIVE_PER_GUILD", "4")],
    )
    .await;
    // Five servers, ten channels each, one user, as fast as the gateway goes.
    let chans: Vec<u64> = (0..5)
        .flat_map(|g| (0..10).map(move |i| (g, i)))
        .map(|(g, i)| channel(&fake, g, i))
        .collect();
    for &ch in &chans {
        say(&fake, ch, &mention(&fake, "count to 5")).await;
    }
    let busy_guild = "countdown_wrong_commands_total{reason=\"busy_guild\"}";
    let busy_bot = "countdown_wrong_commands_total{reason=\"busy_bot\"}";
    let handled = bot
        .wait_metric("countdown_commands_total{command=\"count\"}", |v| v >= 50.0)
        .await;
    assert_eq!(handled, 50.0);
    // Admissions finish their insert after being counted: wait for them.
    bot.wait_metric("countdown_active", |v| v >= 12.0).await;
    assert_eq!(
        bot.metric("countdown_active").await,
        12.0,
        "MAX_ACTIVE holds"
    );
    let rows = db.wait_tasks("12 rows", |t| t.len() >= 12).await;
    assert_eq!(rows.len(), 12, "exactly 12 countdowns admitted");
    let admitted: Vec<u64> = db
        .client()
        .await
        .query("SELECT channel_id FROM tasks", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, i64>(0) as u64)
        .collect();
    assert_eq!(admitted.len(), 12, "12 channels count");
    for g in 0..5 {
        let in_guild = admitted
            .iter()
            .filter(|&&ch| fake.guild_of(ch) == fake.guild_of(channel(&fake, g, 0)))
            .count();
        assert!(
            in_guild <= 4,
            "MAX_ACTIVE_PER_GUILD holds: {in_guild} in guild {g}"
        );
    }
    let refusals = eventually(
        "38 refusals counted",
        Duration::from_secs(5),
        async || bot.metric(busy_guild).await + bot.metric(busy_bot).await,
        |refusals| *refusals >= 38.0,
    )
    .await;
    assert_eq!(refusals, 38.0);

    for &ch in &admitted {
        let msgs = wait_messages(&fake, ch, 5).await;
        assert_eq!(numbers(&msgs), one_to(5), "channel {ch}");
    }
    db.wait_tasks("12 finished rows", |t| {
        t.len() == 12 && t.iter().all(|r| r.0 == "finished")
    })
    .await;
    // Each refused channel got at most its one answer; the bot did not
    // answer faster than its reply budget; the other refusals are counted.
    let answered: usize = chans.iter().map(|&ch| replies(&fake, ch).len()).sum();
    for &ch in &chans {
        assert!(replies(&fake, ch).len() <= 1);
    }
    let suppressed = bot.metric("countdown_replies_suppressed_total").await;
    assert_eq!(answered as f64 + suppressed, 38.0);
    let reply_times: Vec<u64> = chans
        .iter()
        .flat_map(|&ch| replies(&fake, ch))
        .map(|m| m.at_ms)
        .collect();
    // At most half of what the countdowns leave of the 50 requests a second
    // (25 while they are still being admitted, 19 once all 12 run).
    assert!(max_in_window(&reply_times, 1000) <= 25, "{reply_times:?}");
    assert_eq!(
        db.wait_command_errors(38).await.len(),
        38,
        "every refusal journalled"
    );
    assert_within_discord_limits(&fake);
    assert_no_pings(&fake);
    bot.assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spam_in_one_server_keeps_other_servers_on_time() {
    let _one = ONE_AT_A_TIME.lock().await;
    let fake = fake().await;
    enforce_discord_limits(&fake);
    let db = TestDb::create().await;
    let bot = Bot::start_ready(&fake, &db, &[]).await;
    let target = 20u32;

    // Servers 2..4 count, each in two channels: these must stay on time.
    let others: Vec<u64> = (1..4)
        .flat_map(|g| (0..2).map(move |i| (g, i)))
        .map(|(g, i)| channel(&fake, g, i))
        .collect();
    // Server 1 is at its cap (5 countdowns).
    let crowded: Vec<u64> = (0..5).map(|i| channel(&fake, 0, i)).collect();
    for &ch in crowded.iter().chain(&others) {
        say(&fake, ch, &mention(&fake, &format!("count to {target}"))).await;
    }
    for &ch in crowded.iter().chain(&others) {
        wait_messages(&fake, ch, 2).await;
    }

    // A sixth countdown in the full server is refused.
    let sixth = channel(&fake, 0, 5);
    say(&fake, sixth, &mention(&fake, "count to 3")).await;
    let msgs = wait_messages(&fake, sixth, 1).await;
    assert!(
        msgs[0].content.contains("This server already has 5"),
        "{}",
        msgs[0].content
    );

    // 100 commands in one second in a counting channel of the full server:
    // busy, invalid, help, and count in other (full) channels of the server.
    let spammed = crowded[0];
    let texts = ["count to 5", "count to 0", "help", "dance", "count to ５"];
    for i in 0..100 {
        say(&fake, spammed, &mention(&fake, texts[i % texts.len()])).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Stop-spam: 30 stops at once where something counts, 30 where nothing does.
    let stopped = crowded[1];
    let idle = channel(&fake, 0, 6);
    for _ in 0..30 {
        say(&fake, stopped, &mention(&fake, "stop")).await;
        say(&fake, idle, &mention(&fake, "stop")).await;
    }

    for &ch in &others {
        let msgs = wait_messages(&fake, ch, target as usize).await;
        assert_eq!(numbers(&msgs), one_to(target), "channel {ch}");
        for (k, gap) in gaps_ms(&msgs).into_iter().enumerate() {
            assert!(
                (800..=1250).contains(&gap),
                "other server's channel {ch}: {gap} ms before number {}",
                k + 2
            );
        }
    }
    let msgs = fake
        .wait_for_messages_matching(spammed, Duration::from_secs(60), |m| {
            m.message_reference.is_none() && m.content == target.to_string()
        })
        .await
        .unwrap();
    assert_eq!(numbers(&msgs), one_to(target), "the spammed countdown");

    // Exactly one "Stopped", however many stops raced.
    let stop_replies: Vec<String> = contents(&replies(&fake, stopped));
    assert_eq!(
        stop_replies
            .iter()
            .filter(|c| c.starts_with("Stopped"))
            .count(),
        1,
        "{stop_replies:?}"
    );
    assert_eq!(bot.metric("countdown_cancelled_total").await, 1.0);

    // Replies are bounded per channel: at most 3 refusals or usage
    // answers in any 10 s (a stop confirmation is not one of them).
    for ch in [spammed, stopped, idle, sixth] {
        let answers: Vec<_> = replies(&fake, ch)
            .into_iter()
            .filter(|m| !m.content.starts_with("Stopped"))
            .collect();
        let times: Vec<u64> = answers.iter().map(|m| m.at_ms).collect();
        assert!(
            max_in_window(&times, 10_000) <= 3,
            "channel {ch} got {} answers: {:?}",
            times.len(),
            contents(&answers)
        );
    }
    // Every command was counted and journalled, answered or not: 11
    // countdowns, the sixth, 100 spam, 60 stops.
    let mut handled = 0.0;
    for sample in [
        "countdown_commands_total{command=\"count\"}",
        "countdown_commands_total{command=\"help\"}",
        "countdown_commands_total{command=\"stop\"}",
        "countdown_invalid_commands_total{reason=\"unknown_command\"}",
        "countdown_invalid_commands_total{reason=\"not_a_number\"}",
        "countdown_invalid_commands_total{reason=\"out_of_range\"}",
    ] {
        handled += bot.metric(sample).await;
    }
    assert_eq!(handled, 172.0);
    // Rows: busy_guild 1, spam 80 (all but help), stops 29 + 30.
    let kinds = db.wait_command_errors(140).await;
    assert_eq!(kinds.len(), 140, "{kinds:?}");
    assert!(bot.metric("countdown_replies_suppressed_total").await >= 100.0);
    assert_within_discord_limits(&fake);
    assert_no_pings(&fake);
    bot.assert_logs_clean();
}
