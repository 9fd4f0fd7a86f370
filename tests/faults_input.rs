//! Fault suite (end to end): hostile and odd input. Messages of
//! 4,000 characters, unicode digits, zero-width and right-to-left
//! characters, NUL and other control characters, mentions of other users
//! and roles, `@everyone`, empty content (what the bot sees of a message
//! with only an embed or an attachment). Never a panic, never a number, at
//! most one reply, which pings nobody; the journal keeps writing.
//!
//! The parser itself is fuzzed with a million cases in
//! `tests/faults_parser.rs`.

mod common;

use std::time::Duration;

use common::*;
use fake_discord::Author;

/// Between two test messages: well under the bot's reply budget
/// (`commands::throttle`: half of `GLOBAL_RATE` with no countdown running,
/// 25 answers a second), so every message gets its answer. 40 ms was the
/// budget itself: 26 commands reached the bot within one second now and
/// then (its processing jitter), and the 26th went unanswered (CI).
const PACE: Duration = Duration::from_millis(60);

/// How the bot should react.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// One reply with the usage (invalid or help), no number.
    Usage,
    /// Nothing at all (a guild message that does not mention the bot).
    Ignored,
}

fn cases(bot: u64) -> Vec<(String, Expect)> {
    use Expect::*;
    let m = format!("<@{bot}>");
    let long_digits = format!("{m} count to {}", "9".repeat(4000 - m.len() - 10));
    let long_text: String = format!(
        "{m} {}",
        "count to 5 ٥ ⑤ 𝟓 \u{200b}\u{202e}"
            .chars()
            .cycle()
            .take(3990 - m.len())
            .collect::<String>()
    );
    let long_mentions = format!("{m} {}", format!("{m} ").repeat(100));
    let zalgo = format!("{m} c\u{0337}\u{0336}o\u{0338}unt to 5\u{0335}");
    vec![
        (long_digits, Usage),
        (long_text, Usage),
        (format!("{long_mentions}count to"), Usage),
        (format!("{m} count to ５"), Usage),
        (format!("{m} count to ٥"), Usage),
        (format!("{m} count to ۵"), Usage),
        (format!("{m} count to 𝟓"), Usage),
        (format!("{m} count to ⑤"), Usage),
        (format!("{m} count to ⁵"), Usage),
        (format!("{m} count to 5\u{200b}"), Usage),
        (format!("{m} count\u{200b} to 5"), Usage),
        (format!("{m} count to \u{200d}5"), Usage),
        (format!("{m} \u{feff}count to 5"), Usage),
        (format!("{m} \u{202e}count to 5"), Usage),
        (format!("{m} count to \u{200f}5"), Usage),
        (format!("{m} count to 5\u{202c}"), Usage),
        (format!("{m} count to \u{2066}5\u{2069}"), Usage),
        (format!("{m} count to 5\u{0}"), Usage),
        (format!("{m} count\u{0}to 5"), Usage),
        (format!("{m} count to \u{1b}[31m5"), Usage),
        (format!("{m} count to 5\u{7f}"), Usage),
        (zalgo, Usage),
        (format!("{m} <@123456789012345678> count to 5"), Usage),
        (format!("{m} count to 5 <@!123456789012345678>"), Usage),
        (format!("{m} <@&1000> count to 5"), Usage),
        (format!("{m} count to <#1001>"), Usage),
        (format!("{m} @everyone count to 5"), Usage),
        (format!("{m} count to 5 @here"), Usage),
        (format!("{m} count to @everyone"), Usage),
        (format!("{m} <@{}> count to 5", bot + 1), Usage),
        (format!("{m} count to 5'); DROP TABLE tasks; --"), Usage),
        (m.clone(), Usage),
        (format!("<@{}> count to 5", bot + 1), Ignored),
        (format!("<@&{bot}> count to 5"), Ignored),
        ("@countdown count to 5".to_owned(), Ignored),
        ("@everyone count to 5".to_owned(), Ignored),
        (String::new(), Ignored),
        ("count to 5".to_owned(), Ignored),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_gets_at_most_one_reply_and_never_a_number() {
    let fake = fake().await;
    let db = TestDb::create().await;
    let bot = Bot::start_ready(&fake, &db, &[]).await;
    let cases = cases(fake.bot_user_id());
    let mut channels = Vec::new();
    for (i, (text, _)) in cases.iter().enumerate() {
        // Guilds 5..8, one channel per case.
        let ch = channel(&fake, 4 + i / 30, i % 30);
        let id = say(&fake, ch, text).await;
        channels.push((ch, id));
        tokio::time::sleep(PACE).await;
    }
    // DMs need no mention: empty content (an embed or an attachment only),
    // blank content and a control character get the usage once; unicode
    // digits get the usage.
    let dm_cases = ["", "   \u{200b} ", "\u{0}", "count to ５", "count to ٣"];
    let mut dms = Vec::new();
    for (i, text) in dm_cases.iter().enumerate() {
        let user = USER + 1 + i as u64;
        let dm = fake.open_dm(user).await;
        let id = fake
            .inject_message(dm, Author::user(user), text)
            .await
            .unwrap();
        dms.push((dm, id));
        tokio::time::sleep(PACE).await;
    }

    let expected_replies = cases.iter().filter(|c| c.1 == Expect::Usage).count() + dm_cases.len();
    eventually(
        &format!("{expected_replies} replies"),
        Duration::from_secs(30),
        async || fake.all_messages().len(),
        |replies| *replies >= expected_replies,
    )
    .await;
    // Anything extra would have arrived by now.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(fake.all_messages().len(), expected_replies);

    for ((text, expect), (ch, id)) in cases.iter().zip(&channels) {
        let msgs = fake.messages(*ch);
        let short: String = text.chars().take(60).collect();
        match expect {
            Expect::Ignored => assert!(msgs.is_empty(), "{short:?} was answered"),
            Expect::Usage => {
                assert_eq!(msgs.len(), 1, "{short:?}: {:?}", contents(&msgs));
                assert_eq!(
                    msgs[0].message_reference.as_ref().unwrap()["message_id"],
                    id.to_string(),
                    "{short:?}"
                );
                assert!(msgs[0].content.contains("count to N"), "{short:?}");
                assert!(msgs[0].content.chars().count() <= 2000);
            }
        }
    }
    for (dm, id) in &dms {
        let msgs = fake.messages(*dm);
        assert_eq!(msgs.len(), 1, "{:?}", contents(&msgs));
        assert_eq!(
            msgs[0].message_reference.as_ref().unwrap()["message_id"],
            id.to_string()
        );
    }
    assert_eq!(bot.metric("countdown_messages_sent_total").await, 0.0);
    assert_eq!(bot.metric("countdown_active").await, 0.0);
    assert!(db.tasks().await.is_empty(), "no countdown admitted");

    // Every invalid command is a row, NUL bytes and all: the journal was
    // not poisoned by a row PostgreSQL refuses.
    let invalid = cases.iter().filter(|c| c.1 == Expect::Usage).count() - 1 // the bare mention is help
        + dm_cases.len()
        - 1; // the empty DM is help
    let kinds = db.wait_command_errors(invalid).await;
    assert_eq!(kinds, vec!["invalid"; invalid]);
    assert_eq!(bot.metric("countdown_db_errors_total").await, 0.0);
    let longest: i32 = db
        .client()
        .await
        .query_one("SELECT max(char_length(content)) FROM command_errors", &[])
        .await
        .unwrap()
        .get(0);
    assert!(longest <= 200, "content is cut to 200 characters");

    // And the bot still counts, its progress still written.
    let ch = channel(&fake, 7, 29);
    say(&fake, ch, &mention(&fake, "count to 2")).await;
    assert_eq!(numbers(&wait_messages(&fake, ch, 2).await), one_to(2));
    db.wait_tasks("the row finished", |t| t == [("finished".into(), 2, 2)])
        .await;

    let logs = bot.logs();
    assert!(!logs.contains("panicked"), "{logs}");
    bot.assert_logs_clean();
    assert_no_pings(&fake);
    for m in fake.all_messages() {
        assert!(
            !m.content.contains("@everyone") && !m.content.contains("<@"),
            "replies never echo the user's text: {:?}",
            m.content
        );
    }
}

/// An error row the database refuses for its content (here a constraint
/// the test adds; in the wild a NUL byte or a deleted task) is dropped with
/// one error line: it does not stall the journal in a fake "outage" where
/// nothing else gets written either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_the_database_refuses_does_not_stall_the_journal() {
    let fake = fake().await;
    let db = TestDb::create().await;
    let bot = Bot::start_ready(&fake, &db, &[]).await;
    db.client()
        .await
        .batch_execute(
            "ALTER TABLE command_errors ADD CONSTRAINT no_poison \
             CHECK (content NOT LIKE '%poison%')",
        )
        .await
        .unwrap();
    let (a, b, c) = (
        channel(&fake, 0, 0),
        channel(&fake, 0, 1),
        channel(&fake, 0, 2),
    );
    say(&fake, a, &mention(&fake, "count to poison")).await;
    wait_messages(&fake, a, 1).await;
    bot.wait_log("the database refused these rows").await;
    say(&fake, b, &mention(&fake, "count to 2")).await;
    assert_eq!(numbers(&wait_messages(&fake, b, 2).await), one_to(2));
    say(&fake, c, &mention(&fake, "count to nothing")).await;
    assert_eq!(db.wait_command_errors(1).await, ["invalid"]);
    db.wait_tasks("progress written", |t| t == [("finished".into(), 2, 2)])
        .await;
    let logs = bot.logs();
    assert_eq!(count_lines(&logs, "the database refused these rows"), 1);
    assert_eq!(
        count_lines(&logs, "cannot write to the database"),
        0,
        "{logs}"
    );
    assert_eq!(bot.metric("countdown_db_errors_total").await, 1.0);
}
