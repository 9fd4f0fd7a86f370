//! Crashes, deploys and a flaky Discord: every number exactly once, in order.

mod common;

use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_countdown_then_restart_resumes_exactly_once() {
    let fake = fake().await;
    let db = TestDb::create().await;
    let mut bot = Bot::start_ready(&fake, &db, &[]).await;
    let ch = channel(&fake, 0, 0);

    say(&fake, ch, &mention(&fake, "count to 7")).await;
    wait_messages(&fake, ch, 3).await;
    bot.kill9();
    let before = fake.messages(ch).len();
    assert!(before < 7);
    assert_eq!(db.tasks().await[0].0, "running");

    let bot = Bot::start_ready(&fake, &db, &[]).await;
    let msgs = wait_messages(&fake, ch, 7).await;
    assert_eq!(
        numbers(&msgs),
        one_to(7),
        "each number exactly once, in order"
    );
    db.wait_tasks("finished row", |t| t == [("finished".into(), 7, 7)])
        .await;
    assert_eq!(bot.metric("countdown_resumed_total").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_0_quickly_and_the_countdown_continues_after_restart() {
    let fake = fake().await;
    let db = TestDb::create().await;
    let mut bot = Bot::start_ready(&fake, &db, &[]).await;
    let ch = channel(&fake, 0, 1);

    say(&fake, ch, &mention(&fake, "count to 8")).await;
    wait_messages(&fake, ch, 2).await;
    let (status, took) = bot.signal_and_wait(Signal::SIGTERM, Duration::from_secs(5));
    assert!(status.success(), "exit status {status:?}\n{}", bot.logs());
    assert!(took < Duration::from_secs(5));
    let sent = fake.messages(ch).len() as i32;
    let tasks = db.tasks().await;
    assert_eq!(
        tasks,
        [("running".into(), sent, 8)],
        "progress flushed at exit"
    );

    let _bot = Bot::start_ready(&fake, &db, &[]).await;
    let msgs = wait_messages(&fake, ch, 8).await;
    assert_eq!(numbers(&msgs), one_to(8));
    db.wait_tasks("finished row", |t| t == [("finished".into(), 8, 8)])
        .await;
    assert_eq!(
        fake.stats().nonce_duplicates,
        0,
        "progress was exact: nothing re-sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_and_rate_limits_from_discord_lose_nothing_and_double_nothing() {
    let fake = fake().await;
    let db = TestDb::create().await;
    let bot = Bot::start_ready(&fake, &db, &[]).await;
    let ch = channel(&fake, 1, 0);

    say(&fake, ch, &mention(&fake, "count to 6")).await;
    wait_messages(&fake, ch, 1).await;
    fake.fail_next(2, 503);
    wait_messages(&fake, ch, 3).await;
    fake.fail_next(1, 502);
    fake.rate_limit_next(2, 0.3, false);
    wait_messages(&fake, ch, 5).await;
    fake.rate_limit_next(1, 0.2, true);
    let msgs = wait_messages(&fake, ch, 6).await;

    assert_eq!(numbers(&msgs), one_to(6));
    db.wait_tasks("finished row", |t| t == [("finished".into(), 6, 6)])
        .await;
    assert_eq!(
        bot.metric("countdown_send_errors_total{kind=\"server_error\"}")
            .await,
        3.0
    );
    assert_eq!(
        bot.metric("countdown_send_errors_total{kind=\"rate_limited\"}")
            .await,
        3.0
    );
    assert_eq!(bot.metric("countdown_messages_sent_total").await, 6.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_request_times_out_and_is_retried() {
    let fake = fake().await;
    let db = TestDb::create().await;
    let bot = Bot::start_ready(&fake, &db, &[("DISCORD_HTTP_TIMEOUT", "1s")]).await;
    let ch = channel(&fake, 1, 1);

    say(&fake, ch, &mention(&fake, "count to 4")).await;
    wait_messages(&fake, ch, 1).await;
    fake.hang_next(1);
    let msgs = wait_messages(&fake, ch, 4).await;
    assert_eq!(numbers(&msgs), one_to(4));
    db.wait_tasks("finished row", |t| t == [("finished".into(), 4, 4)])
        .await;
    assert_eq!(
        bot.metric("countdown_send_errors_total{kind=\"timeout\"}")
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_send_that_did_arrive_is_not_doubled() {
    let fake = fake().await;
    let db = TestDb::create().await;
    let bot = Bot::start_ready(&fake, &db, &[("DISCORD_HTTP_TIMEOUT", "1s")]).await;
    let ch = channel(&fake, 1, 2);

    say(&fake, ch, &mention(&fake, "count to 4")).await;
    wait_messages(&fake, ch, 1).await;
    // Number 1's answer must be out before the latency is set, or it is the
    // one delayed, and all of its retries with it (a race the fault suite's
    // runs hit under load).
    let post = format!("/api/v10/channels/{ch}/messages");
    eventually(
        "number 1 answered",
        Duration::from_secs(10),
        async || fake.requests().iter().filter(|r| r.path == post).count(),
        |posts| *posts > 0,
    )
    .await;
    // Discord creates the message but answers too late: the bot times out
    // and retries the same nonce, which Discord answers with the message it has.
    fake.set_latency(Duration::from_millis(1500));
    wait_messages(&fake, ch, 2).await;
    eventually(
        "the bot to retry with the same nonce",
        Duration::from_secs(10),
        async || fake.stats().nonce_duplicates,
        |duplicates| *duplicates > 0,
    )
    .await;
    fake.set_latency(Duration::ZERO);
    let msgs = wait_messages(&fake, ch, 4).await;
    assert_eq!(numbers(&msgs), one_to(4), "number 2 appears once");
    db.wait_tasks("finished row", |t| t == [("finished".into(), 4, 4)])
        .await;
    assert!(
        bot.metric("countdown_send_errors_total{kind=\"timeout\"}")
            .await
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_gateway_does_not_stop_counting_or_commands() {
    let fake = fake().await;
    let db = TestDb::create().await;
    let bot = Bot::start_ready(&fake, &db, &[]).await;
    let ch = channel(&fake, 2, 0);

    say(&fake, ch, &mention(&fake, "count to 6")).await;
    wait_messages(&fake, ch, 2).await;
    fake.drop_gateway();
    let msgs = wait_messages(&fake, ch, 6).await;
    assert_eq!(numbers(&msgs), one_to(6));

    // The session resumed (or re-identified); new commands work.
    bot.wait_readyz().await;
    let other = channel(&fake, 2, 1);
    say(&fake, other, &mention(&fake, "count to 2")).await;
    assert_eq!(contents(&wait_messages(&fake, other, 2).await), ["1", "2"]);
    assert!(fake.resume_count() + fake.identify_count() >= 2);
    db.wait_tasks("two finished rows", |t| {
        t.len() == 2 && t.iter().all(|r| r.0 == "finished")
    })
    .await;
    assert_eq!(
        bot.metric("countdown_resumed_total").await,
        0.0,
        "nothing started twice"
    );
    bot.assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidated_session_re_identifies_without_starting_anything_twice() {
    let fake = fake().await;
    let db = TestDb::create().await;
    let bot = Bot::start_ready(&fake, &db, &[]).await;
    let ch = channel(&fake, 2, 2);

    say(&fake, ch, &mention(&fake, "count to 8")).await;
    wait_messages(&fake, ch, 2).await;
    fake.set_resume_allowed(false);
    fake.drop_gateway();
    let msgs = wait_messages(&fake, ch, 8).await;
    assert_eq!(
        numbers(&msgs),
        one_to(8),
        "a second READY did not start it twice"
    );
    assert!(fake.identify_count() >= 2);
    assert_eq!(bot.metric("countdown_resumed_total").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_is_down_gets_a_try_again_reply() {
    let fake = fake().await;
    let db = TestDb::create().await;
    let bot = Bot::start_ready(&fake, &db, &[]).await;
    let ch = channel(&fake, 3, 0);

    // Make the bot's inserts fail: revoke the table from under it.
    db.client()
        .await
        .batch_execute("ALTER TABLE tasks RENAME TO tasks_away")
        .await
        .unwrap();
    say(&fake, ch, &mention(&fake, "count to 3")).await;
    let msgs = wait_messages(&fake, ch, 1).await;
    assert!(msgs[0].content.contains("try again"), "{}", msgs[0].content);
    // At least the refused insert (a journal flush racing the rename may add one).
    assert!(bot.metric("countdown_db_errors_total").await >= 1.0);
    assert!(bot.logs().contains("cannot admit a countdown"));

    db.client()
        .await
        .batch_execute("ALTER TABLE tasks_away RENAME TO tasks")
        .await
        .unwrap();
    assert_eq!(db.wait_command_errors(1).await, ["db_unavailable"]);
    say(&fake, ch, &mention(&fake, "count to 2")).await;
    let msgs = wait_messages(&fake, ch, 3).await;
    assert_eq!(numbers(&msgs), one_to(2));
}

/// A countdown resumed after a kill -9 keeps the pace of a fresh one, with
/// Discord's limits enforced and `latency_ms` on every answer. The channel's
/// bucket at Discord still holds the requests of the process that died,
/// which the new one does not know of: in fixed windows, a window opened by
/// them is out of step with the schedule. At most one gap may be off a
/// second (the schedule moving onto the window) besides the edge races a
/// fresh countdown meets too; no number is held back every fifth second
/// with the next one bunched after it.
async fn a_resumed_countdown_keeps_its_pace(model: fake_discord::BucketModel, latency_ms: u64) {
    let fake = fake_with(fake_discord::FakeConfig {
        channel_model: model,
        ..fake_discord::FakeConfig::default().with_discord_limits()
    })
    .await;
    fake.set_latency(Duration::from_millis(latency_ms));
    let db = TestDb::create().await;
    let mut bot = Bot::start_ready(&fake, &db, &[]).await;
    let ch = channel(&fake, 0, 5);

    say(&fake, ch, &mention(&fake, "count to 24")).await;
    wait_messages(&fake, ch, 7).await;
    bot.kill9();
    let killed = std::time::Instant::now();
    let bot_after = Bot::start_ready(&fake, &db, &[]).await;
    let msgs = fake
        .wait_for_messages_matching(ch, Duration::from_secs(40), |m| m.content == "24")
        .await
        .unwrap();
    assert_eq!(numbers(&msgs), one_to(24), "each number once");
    // The gaps between the numbers sent by the new process (a request of
    // the old one may still land in the moment after the kill).
    let resumed: Vec<_> = msgs
        .iter()
        .filter(|m| m.at > killed + Duration::from_millis(500))
        .cloned()
        .collect();
    let gaps = gaps_ms(&resumed);
    eprintln!("{model:?}, {latency_ms} ms: gaps after the restart {gaps:?}");
    // A 429 at a window's edge (a number arriving a millisecond inside a
    // fixed window, as in a fresh countdown) costs that number the 429's
    // round trip, and the next one is on time again: one long and one
    // short gap each.
    let edge_races = bot_after
        .metric("countdown_rate_limit_edge_races_total")
        .await as usize;
    let irregular = gaps.iter().filter(|g| !(940..=1060).contains(*g)).count();
    assert!(
        gaps.iter().all(|g| (600..=2000).contains(g))
            && irregular <= 1 + 2 * edge_races
            && edge_races <= 1,
        "{model:?}, {latency_ms} ms: gaps after the restart {gaps:?} ({edge_races} edge races), numbers {:?}",
        resumed.iter().map(|m| (m.content.as_str(), m.at_ms)).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_countdown_keeps_its_pace_in_fixed_windows() {
    a_resumed_countdown_keeps_its_pace(fake_discord::BucketModel::FixedWindow, 300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_countdown_keeps_its_pace_in_fixed_windows_without_latency() {
    a_resumed_countdown_keeps_its_pace(fake_discord::BucketModel::FixedWindow, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_countdown_keeps_its_pace_in_leaky_buckets() {
    a_resumed_countdown_keeps_its_pace(fake_discord::BucketModel::Leaky, 300).await;
}
