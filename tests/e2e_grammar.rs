//! The command grammar end to end: mentions in both forms, DMs, bots and
//! webhooks ignored, messages without a mention ignored, invalid input
//! answered once with the usage and never a number.

mod common;

use common::*;
use fake_discord::Author;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_mention_forms_and_dms_start_a_countdown() {
    let fake = fake().await;
    let db = TestDb::create().await;
    let _bot = Bot::start_ready(&fake, &db, &[]).await;
    let bot_id = fake.bot_user_id();

    let a = channel(&fake, 0, 0);
    say(&fake, a, &format!("<@!{bot_id}>   COUNT  to  +02")).await;
    let b = channel(&fake, 0, 1);
    say(&fake, b, &format!("count to 2 <@{bot_id}>")).await;
    let dm = fake.open_dm(USER).await;
    say(&fake, dm, "count to 2").await;

    for ch in [a, b, dm] {
        assert_eq!(contents(&wait_messages(&fake, ch, 2).await), ["1", "2"]);
    }
    let tasks = db
        .wait_tasks("three finished rows", |t| {
            t.len() == 3 && t.iter().all(|r| r.0 == "finished")
        })
        .await;
    assert_eq!(tasks.len(), 3);
    let dm_guild: Option<i64> = db
        .client()
        .await
        .query_one(
            "SELECT guild_id FROM tasks WHERE channel_id = $1",
            &[&(dm as i64)],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(dm_guild, None, "a DM countdown has no guild");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_webhooks_and_unmentioned_messages_are_ignored() {
    let fake = fake().await;
    let db = TestDb::create().await;
    let bot = Bot::start_ready(&fake, &db, &[]).await;
    let ch = channel(&fake, 2, 0);
    let count = mention(&fake, "count to 3");

    fake.inject_message(ch, Author::bot(777), &count)
        .await
        .unwrap();
    fake.inject_message(ch, Author::webhook(778), &count)
        .await
        .unwrap();
    say(&fake, ch, "count to 3").await; // no mention in a guild channel
    say(&fake, ch, &format!("<@{}> count to 3", USER)).await; // someone else mentioned
                                                              // A sentinel: its reply shows the messages before it were handled.
    let help = say(&fake, ch, &mention(&fake, "help")).await;

    let msgs = wait_messages(&fake, ch, 1).await;
    assert_eq!(msgs.len(), 1, "{:?}", contents(&msgs));
    assert_eq!(
        msgs[0].message_reference.as_ref().unwrap()["message_id"],
        help.to_string()
    );
    assert!(
        msgs[0].content.contains("count to N"),
        "{}",
        msgs[0].content
    );
    assert_eq!(
        bot.metric("countdown_commands_total{command=\"help\"}")
            .await,
        1.0
    );
    assert_eq!(
        bot.metric("countdown_commands_total{command=\"count\"}")
            .await,
        0.0
    );
    assert!(db.tasks().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_commands_get_one_reply_and_no_number() {
    let fake = fake().await;
    let db = TestDb::create().await;
    let bot = Bot::start_ready(&fake, &db, &[]).await;
    let cases = [
        ("count to 0", "out_of_range"),
        ("count to -3", "out_of_range"),
        ("count to 10000", "out_of_range"),
        ("count to 99999999999999999999", "out_of_range"),
        ("count to 5.5", "not_a_number"),
        ("count to abc", "not_a_number"),
        ("count to ５", "not_a_number"),
        ("count to", "missing_number"),
        ("dance for me", "unknown_command"),
        ("count to 3 @everyone", "unknown_command"),
    ];
    for (i, (text, _)) in cases.iter().enumerate() {
        let ch = channel(&fake, 3, i);
        let id = say(&fake, ch, &mention(&fake, text)).await;
        let msgs = wait_messages(&fake, ch, 1).await;
        assert_eq!(msgs.len(), 1, "{text}: {:?}", contents(&msgs));
        assert_eq!(
            msgs[0].message_reference.as_ref().unwrap()["message_id"],
            id.to_string()
        );
        assert!(
            msgs[0].content.contains("count to N"),
            "{text}: {}",
            msgs[0].content
        );
        assert_eq!(
            msgs[0].allowed_mentions.as_ref().unwrap()["parse"],
            serde_json::json!([])
        );
    }
    // Empty mention = help; the sentinel after everything else.
    let last = channel(&fake, 3, 20);
    say(&fake, last, &mention(&fake, "")).await;
    wait_messages(&fake, last, 1).await;

    for reason in [
        "out_of_range",
        "not_a_number",
        "missing_number",
        "unknown_command",
    ] {
        let expected = cases.iter().filter(|c| c.1 == reason).count() as f64;
        let sample = format!("countdown_invalid_commands_total{{reason=\"{reason}\"}}");
        assert_eq!(bot.metric(&sample).await, expected, "{reason}");
    }
    assert_eq!(bot.metric("countdown_messages_sent_total").await, 0.0);
    assert_eq!(
        db.wait_command_errors(cases.len()).await,
        vec!["invalid"; cases.len()]
    );
    assert!(db.tasks().await.is_empty());
    for i in 0..cases.len() {
        let msgs = fake.messages(channel(&fake, 3, i));
        assert_eq!(msgs.len(), 1, "exactly one reply, never a number");
    }
}
