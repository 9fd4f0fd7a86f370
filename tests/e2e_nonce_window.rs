//! Exactly once past Discord's nonce window. Discord drops a repeated
//! enforced nonce only for a few minutes; the fake's window is shortened
//! here so that a bot down longer than it can be tried in seconds. A number
//! is caught in flight by slowing the fake's answers: the message exists in
//! the channel, the bot never learns it, and is killed (kill -9).

mod common;

use std::time::Duration;

use common::*;
use fake_discord::{FakeConfig, FakeDiscord, PostedMessage};

/// The fake's nonce window in these tests.
const NONCE_WINDOW: Duration = Duration::from_secs(2);
/// How long an answer is held while a number is caught in flight.
const SLOW_ANSWER: Duration = Duration::from_millis(1500);

async fn fake_with_window(window: Duration) -> Fake {
    fake_with(FakeConfig {
        nonce_ttl: window,
        ..FakeConfig::default()
    })
    .await
}

/// Waits until the channel holds `k` messages, slowing the answers first so
/// that the `k`th is in the channel before the bot hears of it, then kills
/// the bot at once.
async fn kill_with_message_in_flight(fake: &FakeDiscord, bot: &mut Bot, ch: u64, k: usize) {
    wait_messages(fake, ch, k - 1).await;
    fake.set_latency(SLOW_ANSWER);
    wait_messages(fake, ch, k).await;
    bot.kill9();
    fake.set_latency(Duration::ZERO);
}

/// The bot's numbers in the channel, with what a person wrote left out
/// (the fake records only the bot's posts).
fn posted(fake: &FakeDiscord, ch: u64) -> Vec<u32> {
    numbers(&fake.messages(ch))
}

/// Waits until the last number of a countdown to `target` is in the channel.
async fn wait_for_number(fake: &FakeDiscord, ch: u64, target: u32) -> Vec<PostedMessage> {
    fake.wait_for_messages_matching(ch, Duration::from_secs(30), |m| {
        m.content == target.to_string()
    })
    .await
    .unwrap()
}

/// kill -9 while number 7 is in flight, a restart after the nonce window:
/// with the channel check (`RESUME_CHECK_AFTER` below the downtime) the
/// channel shows 1 … 12 once each, though a person typed "7" and "8" in it;
/// with the check off it shows the 7 twice, which is what the check is for
/// (and proves the fake's window is real).
async fn restart_after_the_window(check_after: &str) -> Vec<u32> {
    let fake = fake_with_window(NONCE_WINDOW).await;
    let db = TestDb::create().await;
    let env = [("RESUME_CHECK_AFTER", check_after)];
    let mut bot = Bot::start_ready(&fake, &db, &env).await;
    let ch = channel(&fake, 0, 0);

    say(&fake, ch, &mention(&fake, "count to 12")).await;
    wait_messages(&fake, ch, 6).await;
    db.wait_tasks("6 confirmed", |t| t[0].1 >= 6).await;
    say(&fake, ch, "7").await;
    say(&fake, ch, "8").await;
    kill_with_message_in_flight(&fake, &mut bot, ch, 7).await;
    let (_, last_sent, _) = db.tasks().await[0].clone();
    assert_eq!(last_sent, 6, "the bot never heard of 7");

    // Down longer than the window: its nonces no longer protect anything.
    tokio::time::sleep(NONCE_WINDOW + Duration::from_millis(500)).await;
    let bot = Bot::start_ready(&fake, &db, &env).await;
    wait_for_number(&fake, ch, 12).await;
    db.wait_tasks("finished row", |t| t.len() == 1 && t[0].0 == "finished")
        .await;
    // A duplicate of 12 would come at once after it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(bot);
    posted(&fake, ch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_after_the_nonce_window_posts_every_number_once() {
    let shown = restart_after_the_window("1s").await;
    assert_eq!(shown, one_to(12), "each number once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_check_the_number_in_flight_comes_twice() {
    let shown = restart_after_the_window("1h").await;
    let mut want = one_to(12);
    want.insert(7, 7);
    assert_eq!(shown, want, "the fake's nonce window has expired");
}

/// An earlier countdown's numbers in the channel, and a kill with number 1
/// of the new one in flight (no message of it known yet): the earlier
/// countdown's `1` carries another Stop button and is not taken for this one's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_earlier_countdowns_numbers_are_not_taken_for_this_ones() {
    let fake = fake_with_window(NONCE_WINDOW).await;
    let db = TestDb::create().await;
    let env = [("RESUME_CHECK_AFTER", "1s")];
    let mut bot = Bot::start_ready(&fake, &db, &env).await;
    let ch = channel(&fake, 0, 1);

    say(&fake, ch, &mention(&fake, "count to 3")).await;
    wait_for_number(&fake, ch, 3).await;
    db.wait_tasks("the first one finished", |t| {
        t.len() == 1 && t[0].0 == "finished"
    })
    .await;
    fake.set_latency(SLOW_ANSWER);
    say(&fake, ch, &mention(&fake, "count to 5")).await;
    kill_with_message_in_flight(&fake, &mut bot, ch, 4).await;

    tokio::time::sleep(NONCE_WINDOW + Duration::from_millis(500)).await;
    let _bot = Bot::start_ready(&fake, &db, &env).await;
    let msgs = fake
        .wait_for_messages_matching(ch, Duration::from_secs(30), |m| m.content == "5")
        .await
        .unwrap();
    db.wait_tasks("both finished", |t| {
        t.len() == 2 && t.iter().all(|r| r.0 == "finished")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(numbers(&msgs), [1, 2, 3, 1, 2, 3, 4, 5]);
    assert_eq!(posted(&fake, ch), [1, 2, 3, 1, 2, 3, 4, 5]);
    let ones: Vec<Vec<String>> = fake
        .messages(ch)
        .iter()
        .filter(|m| m.content == "1")
        .map(button_ids)
        .collect();
    assert_eq!(ones, [vec!["stop:1".to_owned()], vec!["stop:2".to_owned()]]);
}

/// A standby taking over after the leader died with a number in flight,
/// later than the nonce window: the same check, the same result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_after_the_nonce_window_posts_every_number_once() {
    // A window shorter than any takeover (a new gateway session alone takes
    // longer), and a check for rows idle longer than it.
    let fake = fake_with_window(Duration::from_millis(300)).await;
    let db = TestDb::create().await;
    let env = [("RESUME_CHECK_AFTER", "300ms")];
    let mut a = Bot::start_ready(&fake, &db, &env).await;
    let b = Bot::start(&fake, &db, &env);
    b.wait_standby().await;
    let ch = channel(&fake, 0, 2);

    say(&fake, ch, &mention(&fake, "count to 10")).await;
    wait_messages(&fake, ch, 5).await;
    db.wait_tasks("5 confirmed", |t| t[0].1 >= 5).await;
    kill_with_message_in_flight(&fake, &mut a, ch, 6).await;

    wait_for_number(&fake, ch, 10).await;
    db.wait_tasks("finished row", |t| t.len() == 1 && t[0].0 == "finished")
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(posted(&fake, ch), one_to(10), "no gap, no duplicate");
    assert_eq!(b.metric("countdown_leader").await, 1.0);
    assert!(
        fake.stats().history_lists >= 1,
        "the standby read the channel"
    );
}

/// A channel the bot may no longer read (its Read Message History taken
/// away while it was down): the countdown ends as `failed`, with a
/// `general_errors` row that says why, and is not retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_that_cannot_be_read_fails_the_countdown_with_a_row() {
    let fake = fake_with_window(NONCE_WINDOW).await;
    let db = TestDb::create().await;
    let env = [("RESUME_CHECK_AFTER", "0s")];
    let mut bot = Bot::start_ready(&fake, &db, &env).await;
    let ch = channel(&fake, 0, 3);

    say(&fake, ch, &mention(&fake, "count to 20")).await;
    wait_messages(&fake, ch, 3).await;
    bot.kill9();
    let before = fake.messages(ch).len();
    fake.deny_history(ch, true);

    let bot = Bot::start_ready(&fake, &db, &env).await;
    db.wait_tasks("failed row", |t| t.len() == 1 && t[0].0 == "failed")
        .await;
    let rows = db
        .client()
        .await
        .query(
            "SELECT context, error FROM general_errors WHERE context = 'resume'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let error: String = rows[0].get(1);
    assert!(error.contains("cannot read the channel"), "{error}");
    assert!(error.contains("Missing Access"), "{error}");
    // Nothing more is posted, and the channel is listed once, not retried.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(fake.messages(ch).len(), before);
    assert_eq!(fake.stats().history_lists, 1);
    assert_eq!(
        bot.metric("countdown_countdowns_ended_total{status=\"failed\"}")
            .await,
        1.0
    );
}
