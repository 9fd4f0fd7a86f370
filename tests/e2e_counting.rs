//! Counting as a user sees it: values, order, timing, nonces, no pings,
//! busy channels, many channels at once, stop; rows and metrics after each.

mod common;

use std::time::Duration;

use common::*;
use fake_discord::BucketModel;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_to_5_posts_each_number_once_per_second() {
    let fake = fake().await;
    let db = TestDb::create().await;
    let bot = Bot::start_ready(&fake, &db, &[]).await;
    let ch = channel(&fake, 0, 0);

    say(&fake, ch, &mention(&fake, "count to 5")).await;
    let msgs = wait_messages(&fake, ch, 5).await;

    assert_eq!(contents(&msgs), ["1", "2", "3", "4", "5"]);
    for pair in msgs.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(
            gap > Duration::from_millis(900) && gap < Duration::from_millis(1100),
            "gap {gap:?} between {} and {}",
            pair[0].content,
            pair[1].content
        );
    }
    let task_id = msgs[0]
        .nonce
        .as_deref()
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .to_owned();
    for (k, m) in msgs.iter().enumerate() {
        assert_eq!(
            m.nonce.as_deref(),
            Some(format!("{task_id}:{}", k + 1).as_str())
        );
        assert!(m.enforce_nonce);
        let allowed = m.allowed_mentions.as_ref().expect("allowed_mentions set");
        assert_eq!(allowed["parse"], serde_json::json!([]));
        assert!(m.message_reference.is_none());
    }

    db.wait_tasks("finished row", |t| t == [("finished".into(), 5, 5)])
        .await;
    assert_eq!(
        bot.metric("countdown_commands_total{command=\"count\"}")
            .await,
        1.0
    );
    assert_eq!(bot.metric("countdown_messages_sent_total").await, 5.0);
    assert_eq!(bot.metric("countdown_count_target_count").await, 1.0);
    assert_eq!(bot.metric("countdown_active").await, 0.0);
    assert_eq!(
        bot.metric("countdown_tick_lateness_seconds_count").await,
        5.0
    );
    assert_eq!(fake.stats().rate_limited, 0);
    bot.assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_of_150ms_does_not_accumulate_into_drift() {
    let fake = fake().await;
    fake.set_latency(Duration::from_millis(150));
    let db = TestDb::create().await;
    let _bot = Bot::start_ready(&fake, &db, &[]).await;
    let ch = channel(&fake, 0, 1);

    say(&fake, ch, &mention(&fake, "count to 6")).await;
    let msgs = wait_messages(&fake, ch, 6).await;

    assert_eq!(contents(&msgs), ["1", "2", "3", "4", "5", "6"]);
    assert_on_schedule(&msgs, "150 ms latency");
}

/// Number k arrived within 60 ms of number 1's arrival + (k − 1) s.
fn assert_on_schedule(msgs: &[fake_discord::PostedMessage], what: &str) {
    let first = msgs[0].at;
    for (k, m) in msgs.iter().enumerate() {
        let offset = m.at.duration_since(first).as_millis() as i64;
        let due = k as i64 * 1000;
        assert!(
            (offset - due).abs() < 60,
            "{what}: number {} arrived at +{offset} ms, due +{due} ms",
            k + 1
        );
    }
}

/// `count to 11` with Discord's limits enforced: its channel's bucket is
/// exactly full at one number a second (numbers 6 and 11 open new fixed
/// windows), so every number must come on time and none be refused but
/// as the bucket's shape allows.
async fn count_at_the_channel_limit(model: BucketModel) -> Fake {
    let fake = fake().await;
    fake.set_global_limit(Some(50));
    fake.set_channel_limit(Some((5, Duration::from_secs(5))));
    fake.set_channel_model(model);
    let db = TestDb::create().await;
    let bot = Bot::start_ready(&fake, &db, &[]).await;
    let ch = channel(&fake, 0, 1);

    say(&fake, ch, &mention(&fake, "count to 11")).await;
    let msgs = wait_messages(&fake, ch, 11).await;

    let expected: Vec<String> = (1..=11).map(|k| k.to_string()).collect();
    assert_eq!(contents(&msgs), expected);
    assert_on_schedule(&msgs, &format!("{model:?}"));
    bot.assert_logs_clean();
    fake
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_countdown_fills_a_leaky_bucket_without_a_single_429() {
    // Discord's buckets since 2022: room for one comes back every second,
    // so one number a second always has room, whatever the jitter.
    let fake = count_at_the_channel_limit(BucketModel::Leaky).await;
    assert_eq!(fake.stats().rate_limited, 0, "{:?}", fake.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_countdown_fills_fixed_windows_with_at_most_edge_races() {
    // A fixed window opens when its first request arrives: the 6th and
    // 11th numbers, sent exactly 5 s after the 1st and 6th, may arrive a
    // few ms inside it (a 429 asking for those ms, retried), never more.
    let fake = count_at_the_channel_limit(BucketModel::FixedWindow).await;
    let stats = fake.stats();
    assert_eq!(stats.rate_limited, stats.rate_limited_channel, "{stats:?}");
    assert!(stats.rate_limited_channel <= 2, "{stats:?}");
    assert!(stats.channel_429_max_early_ms <= 100, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_channel_refuses_a_second_countdown() {
    let fake = fake().await;
    let db = TestDb::create().await;
    let bot = Bot::start_ready(&fake, &db, &[]).await;
    let ch = channel(&fake, 0, 2);

    say(&fake, ch, &mention(&fake, "count to 4")).await;
    wait_messages(&fake, ch, 1).await;
    let second = say(&fake, ch, &mention(&fake, "count to 3")).await;
    let msgs = wait_messages(&fake, ch, 5).await;

    let reply = msgs
        .iter()
        .find(|m| m.message_reference.is_some())
        .expect("a reply");
    assert_eq!(
        reply.message_reference.as_ref().unwrap()["message_id"],
        second.to_string()
    );
    assert!(
        reply.content.contains("already counting"),
        "{}",
        reply.content
    );
    assert_eq!(numbers(&msgs), one_to(4));
    assert_eq!(
        bot.metric("countdown_wrong_commands_total{reason=\"busy_channel\"}")
            .await,
        1.0
    );
    db.wait_tasks("one finished row", |t| t == [("finished".into(), 4, 4)])
        .await;
    assert_eq!(db.wait_command_errors(1).await, ["busy_channel"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_channels_count_at_once() {
    let fake = fake().await;
    let db = TestDb::create().await;
    let bot = Bot::start_ready(&fake, &db, &[]).await;
    // MAX_ACTIVE_PER_GUILD is 5: four guilds of five channels.
    let channels: Vec<u64> = (0..4)
        .flat_map(|g| (0..5).map(move |i| (g, i)))
        .map(|(g, i)| channel(&fake, g, i))
        .collect();
    for &ch in &channels {
        say(&fake, ch, &mention(&fake, "count to 3")).await;
    }
    for &ch in &channels {
        let msgs = wait_messages(&fake, ch, 3).await;
        assert_eq!(contents(&msgs), ["1", "2", "3"], "channel {ch}");
    }
    db.wait_tasks("20 finished rows", |t| {
        t.len() == 20 && t.iter().all(|r| r == &("finished".to_owned(), 3, 3))
    })
    .await;
    assert_eq!(bot.metric("countdown_messages_sent_total").await, 60.0);
    assert_eq!(fake.stats().rate_limited, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caps_refuse_with_a_reply() {
    let fake = fake().await;
    let db = TestDb::create().await;
    let bot = Bot::start_ready(
        &fake,
        &db,
        &[("MAX_ACTIVE", "3"), ("MAX_ACTIVE_PER_GUILD", "2")],
    )
    .await;
    let (a, b, c) = (
        channel(&fake, 0, 0),
        channel(&fake, 0, 1),
        channel(&fake, 0, 2),
    );
    let (d, e) = (channel(&fake, 1, 0), channel(&fake, 2, 0));
    for ch in [a, b] {
        say(&fake, ch, &mention(&fake, "count to 30")).await;
        wait_messages(&fake, ch, 1).await;
    }
    say(&fake, c, &mention(&fake, "count to 30")).await;
    let guild_full = wait_messages(&fake, c, 1).await;
    assert!(
        guild_full[0].content.contains("This server already has 2"),
        "{}",
        guild_full[0].content
    );
    say(&fake, d, &mention(&fake, "count to 30")).await;
    wait_messages(&fake, d, 1).await;
    say(&fake, e, &mention(&fake, "count to 30")).await;
    let bot_full = wait_messages(&fake, e, 1).await;
    assert!(
        bot_full[0].content.contains("busy with 3"),
        "{}",
        bot_full[0].content
    );

    assert_eq!(
        bot.metric("countdown_wrong_commands_total{reason=\"busy_guild\"}")
            .await,
        1.0
    );
    assert_eq!(
        bot.metric("countdown_wrong_commands_total{reason=\"busy_bot\"}")
            .await,
        1.0
    );
    assert_eq!(bot.metric("countdown_active").await, 3.0);
    let kinds = db.wait_command_errors(2).await;
    assert_eq!(kinds, ["busy_guild", "busy_bot"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_cancels_and_stop_when_idle_says_so() {
    let fake = fake().await;
    let db = TestDb::create().await;
    let bot = Bot::start_ready(&fake, &db, &[]).await;
    let ch = channel(&fake, 1, 3);

    say(&fake, ch, &mention(&fake, "count to 50")).await;
    wait_messages(&fake, ch, 2).await;
    say(&fake, ch, &mention(&fake, "stop")).await;
    let msgs = fake
        .wait_for_messages_matching(ch, Duration::from_secs(10), |m| {
            m.content.starts_with("Stopped")
        })
        .await
        .unwrap();
    let stop_reply = msgs.last().unwrap();
    let counted = numbers(&msgs);
    let last = *counted.last().unwrap();
    assert_eq!(counted, one_to(last));
    assert_eq!(stop_reply.content, format!("Stopped at {last} of 50."));
    db.wait_tasks("stopped row", |t| {
        t == [("stopped".into(), last as i32, 50)]
    })
    .await;

    // Stop again: nothing is counting, and no number came after the stop.
    say(&fake, ch, &mention(&fake, "stop")).await;
    let msgs = wait_messages(&fake, ch, msgs.len() + 1).await;
    assert_eq!(msgs.last().unwrap().content, "Nothing is counting here.");
    assert_eq!(numbers(&msgs), one_to(last));

    assert_eq!(bot.metric("countdown_cancelled_total").await, 1.0);
    assert_eq!(
        bot.metric("countdown_commands_total{command=\"stop\"}")
            .await,
        2.0
    );
    assert_eq!(
        bot.metric("countdown_wrong_commands_total{reason=\"not_counting\"}")
            .await,
        1.0
    );
    assert_eq!(db.wait_command_errors(1).await, ["not_counting"]);
}
