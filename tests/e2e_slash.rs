//! Slash commands, the Stop button, `status` and `STOP_POLICY`, end to end:
//! the real bot against the fake Discord, which dispatches
//! INTERACTION_CREATE and checks each answer against Discord's 3 s window.

mod common;

use std::time::Duration;

use common::*;
use fake_discord::{Author, FakeDiscord, PostedMessage};
use serde_json::json;

const STRANGER: u64 = 555_000_000_000_000_002;
const MANAGER: u64 = 555_000_000_000_000_003;

fn user() -> Author {
    Author::user(USER)
}

/// (id, source, user_id) of every task row, by id.
async fn task_rows(db: &TestDb) -> Vec<(i64, String, i64)> {
    db.client()
        .await
        .query("SELECT id, source, user_id FROM tasks ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// Waits for number 1 of the countdown in `channel_id` (the `skip` first
/// messages of the channel excluded) and returns it.
async fn first_number(fake: &FakeDiscord, channel_id: u64, skip: usize) -> PostedMessage {
    let msgs = wait_messages(fake, channel_id, skip + 1).await;
    let first = msgs[skip].clone();
    assert_eq!(first.content, "1", "{:?}", contents(&msgs));
    first
}

/// Waits for a reply to message `to` starting with `prefix`, and returns it.
async fn reply_to(fake: &FakeDiscord, channel_id: u64, to: u64, prefix: &str) -> PostedMessage {
    let is_it = |m: &PostedMessage| replies_to(m, to) && m.content.starts_with(prefix);
    let msgs = fake
        .wait_for_messages_matching(channel_id, Duration::from_secs(10), is_it)
        .await
        .unwrap();
    msgs.into_iter().find(is_it).unwrap()
}

/// Waits for the "Stopped at" reply to message `to`.
async fn stopped_reply(fake: &FakeDiscord, channel_id: u64, to: u64) -> PostedMessage {
    reply_to(fake, channel_id, to, "Stopped").await
}

/// `m` is a reply to message `id`.
fn replies_to(m: &PostedMessage, id: u64) -> bool {
    let to = m
        .message_reference
        .as_ref()
        .and_then(|r| r["message_id"].as_str().map(str::to_owned));
    to == Some(id.to_string())
}

fn sample(source: &str, command: &str) -> String {
    format!("countdown_commands_by_source_total{{command=\"{command}\",source=\"{source}\"}}")
}

fn answers(outcome: &str) -> String {
    format!("countdown_interaction_answers_total{{outcome=\"{outcome}\"}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slash_count_is_answered_in_time_then_counts_with_a_stop_button() {
    let fake = fake().await;
    let db = TestDb::create().await;
    let bot = Bot::start_ready(&fake, &db, &[]).await;

    // Registered globally at start, with Discord checking the range of n.
    let commands = fake
        .wait_registered_commands(None, Duration::from_secs(10))
        .await
        .unwrap();
    let names: Vec<&str> = commands.iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names, ["count", "stop", "status"]);
    let n = &commands[0]["options"][0];
    assert_eq!(
        (n["name"].as_str(), n["type"].as_u64()),
        (Some("n"), Some(4))
    );
    assert_eq!(
        (n["min_value"].as_u64(), n["max_value"].as_u64()),
        (Some(1), Some(9999))
    );
    assert_eq!(n["required"], true);
    let guild = fake.guilds()[0].id;
    assert!(fake.registered_commands(Some(guild)).is_empty());

    let ch = channel(&fake, 0, 0);
    let answer = slash_count(&fake, ch, user(), 3).await;
    assert_answer(
        &answer,
        false,
        &format!("<@{USER}> started a countdown to 3."),
    );

    let msgs = wait_messages(&fake, ch, 3).await;
    assert_eq!(numbers(&msgs), one_to(3));
    for gap in gaps_ms(&msgs) {
        assert!((800..=1250).contains(&gap), "gaps {:?}", gaps_ms(&msgs));
    }
    let rows = task_rows(&db).await;
    assert_eq!(rows, [(rows[0].0, "slash".to_owned(), USER as i64)]);
    assert_eq!(button_ids(&msgs[0]), [format!("stop:{}", rows[0].0)]);
    let button = &msgs[0].components.as_ref().unwrap()[0]["components"][0];
    assert_eq!(
        (button["style"].as_u64(), button["label"].as_str()),
        (Some(4), Some("Stop"))
    );
    assert!(button_ids(&msgs[1]).is_empty() && button_ids(&msgs[2]).is_empty());
    db.wait_tasks("finished", |t| t.len() == 1 && t[0].0 == "finished")
        .await;

    // A DM works the same (the payload has a user, no member).
    let dm = fake.open_dm(USER).await;
    let answer = slash_count(&fake, dm, user(), 2).await;
    assert_answer(
        &answer,
        false,
        &format!("<@{USER}> started a countdown to 2."),
    );
    assert_eq!(numbers(&wait_messages(&fake, dm, 2).await), one_to(2));

    assert_eq!(bot.metric(&sample("slash", "count")).await, 2.0);
    assert_eq!(
        bot.metric("countdown_commands_total{command=\"count\"}")
            .await,
        2.0
    );
    assert_eq!(bot.metric(&sample("mention", "count")).await, 0.0);
    assert_eq!(
        bot.metric("countdown_command_registration_failures_total")
            .await,
        0.0
    );
    assert_no_pings(&fake);
    bot.assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_ephemeral_and_status_tells_what_counts() {
    let fake = fake().await;
    let db = TestDb::create().await;
    let bot = Bot::start_ready(&fake, &db, &[]).await;
    let ch = channel(&fake, 1, 0);

    let idle = "Nothing is counting here.";
    assert_answer(
        &slash(&fake, ch, user(), "stop", json!([])).await,
        true,
        idle,
    );
    assert_answer(
        &slash(&fake, ch, user(), "status", json!([])).await,
        true,
        idle,
    );
    // Discord refuses these itself (min/max); the bot checks again.
    for n in [0, 10_000] {
        let answer = slash_count(&fake, ch, user(), n).await;
        assert!(answer.ephemeral(), "{answer:?}");
        let text = answer.content.clone().unwrap_or_default();
        assert!(text.contains("from 1 to 9999"), "{text}");
    }

    let answer = slash_count(&fake, ch, user(), 6).await;
    assert_answer(
        &answer,
        false,
        &format!("<@{USER}> started a countdown to 6."),
    );
    let first = first_number(&fake, ch, 0).await;
    let busy = slash_count(&fake, ch, Author::user(STRANGER), 3).await;
    assert!(busy.accepted() && busy.ephemeral(), "{busy:?}");
    let text = busy.content.clone().unwrap_or_default();
    assert!(text.starts_with("I'm already counting here ("), "{text}");

    // Status while counting, by slash and by mention.
    let status = slash(&fake, ch, Author::user(STRANGER), "status", json!([])).await;
    assert!(status.accepted() && status.ephemeral(), "{status:?}");
    let text = status.content.clone().unwrap_or_default();
    let prefix = format!("<@{USER}> started a countdown to 6 here: at ");
    assert!(
        text.starts_with(&prefix) && text.contains(" of 6, done <t:"),
        "{text}"
    );
    let asked = say(&fake, ch, &mention(&fake, "status")).await;
    let reply = reply_to(&fake, ch, asked, "").await;
    assert!(reply.content.starts_with(&prefix), "{}", reply.content);
    assert!(first.at < reply.at);

    db.wait_tasks("finished", |t| t.len() == 1 && t[0].0 == "finished")
        .await;
    assert_answer(
        &slash(&fake, ch, user(), "status", json!([])).await,
        true,
        idle,
    );
    let asked = say(&fake, ch, &mention(&fake, "STATUS")).await;
    assert_eq!(reply_to(&fake, ch, asked, "").await.content, idle);
    assert_eq!(numbers(&fake.messages(ch)), one_to(6));

    let kinds = db.wait_command_errors(4).await;
    assert_eq!(
        kinds,
        ["not_counting", "invalid", "invalid", "busy_channel"]
    );
    for (source, command, n) in [
        ("slash", "stop", 1.0),
        ("slash", "status", 3.0),
        ("slash", "count", 2.0),
        ("mention", "status", 2.0),
    ] {
        assert_eq!(
            bot.metric(&sample(source, command)).await,
            n,
            "{source} {command}"
        );
    }
    assert_eq!(
        bot.metric("countdown_invalid_commands_total{reason=\"out_of_range\"}")
            .await,
        2.0
    );
    // Eight slash commands, each answered once, in time.
    let answered = bot.wait_metric(&answers("answered"), |n| n >= 8.0).await;
    assert_eq!(answered, 8.0);
    for outcome in ["deferred", "failed"] {
        assert_eq!(bot.metric(&answers(outcome)).await, 0.0, "{outcome}");
    }
    assert_no_pings(&fake);
    bot.assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stop_button_stops_its_own_countdown_only() {
    let fake = fake().await;
    let db = TestDb::create().await;
    let bot = Bot::start_ready(&fake, &db, &[]).await;
    let ch = channel(&fake, 2, 0);

    assert!(slash_count(&fake, ch, user(), 30).await.accepted());
    let first = first_number(&fake, ch, 0).await;
    let old_button = button_ids(&first).remove(0);
    wait_messages(&fake, ch, 2).await;

    // Acknowledged by removing the button from number 1 (type 7).
    let answer = press(&fake, ch, Author::user(STRANGER), first.id, &old_button).await;
    assert!(answer.accepted(), "{answer:?}");
    assert_eq!(answer.kind, 7, "{answer:?}");
    assert_eq!(answer.components, Some(json!([])));
    assert!(answer.elapsed < Duration::from_secs(3));
    let stopped = stopped_reply(&fake, ch, first.id).await;
    let tasks = db
        .wait_tasks("stopped", |t| t.len() == 1 && t[0].0 == "stopped")
        .await;
    let last = tasks[0].1 as u32;
    assert_eq!(
        stopped.content,
        format!("Stopped at {last} of 30. (stopped by <@{STRANGER}>)")
    );
    let msgs = fake.messages(ch);
    assert_eq!(numbers(&msgs), one_to(last), "{:?}", contents(&msgs));
    assert!(button_ids(&msgs[0]).is_empty(), "the button is gone");

    // Pressed again (another client still showing it): already finished.
    let again = press(&fake, ch, user(), first.id, &old_button).await;
    assert_answer(&again, true, "That countdown has already finished.");

    // A newer countdown in the same channel is not stopped by the old button.
    let before = fake.messages(ch).len();
    assert!(slash_count(&fake, ch, user(), 4).await.accepted());
    let new_first = first_number(&fake, ch, before).await;
    let stale = press(&fake, ch, user(), first.id, &old_button).await;
    assert_answer(&stale, true, "That countdown has already finished.");
    assert_ne!(button_ids(&new_first), [old_button]);
    let tasks = db
        .wait_tasks("the second one finished", |t| {
            t.len() == 2 && t[1].0 == "finished"
        })
        .await;
    assert_eq!(tasks[1].1, 4);
    let after: Vec<PostedMessage> = fake.messages(ch)[before..].to_vec();
    assert_eq!(numbers(&after), one_to(4));

    // A forged custom id naming no countdown: refused, and journalled.
    let forged = press(&fake, ch, user(), first.id, "stop:999999").await;
    assert_answer(&forged, true, "That countdown has already finished.");
    let kinds = db.wait_command_errors(3).await;
    assert_eq!(kinds, ["not_counting"; 3]);
    assert_eq!(bot.metric(&sample("button", "stop")).await, 4.0);
    assert_eq!(bot.metric("countdown_cancelled_total").await, 1.0);
    assert_no_pings(&fake);
    bot.assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starter_or_manager_decides_for_slash_button_and_mention_alike() {
    let fake = fake().await;
    let db = TestDb::create().await;
    let bot = Bot::start_ready(&fake, &db, &[("STOP_POLICY", "starter_or_manager")]).await;
    let ch = channel(&fake, 3, 0);
    let manager = || Author::user(MANAGER).with_roles(&[fake.manager_role(fake.guilds()[3].id)]);
    let refused = "Only the person who started this countdown, or a member who can manage \
                   messages here, can stop it.";

    // A stranger can stop nothing: not by /stop, the button or a mention.
    assert!(slash_count(&fake, ch, user(), 60).await.accepted());
    let first = first_number(&fake, ch, 0).await;
    let button = button_ids(&first).remove(0);
    let stranger = || Author::user(STRANGER);
    assert_answer(
        &slash(&fake, ch, stranger(), "stop", json!([])).await,
        true,
        refused,
    );
    assert_answer(
        &press(&fake, ch, stranger(), first.id, &button).await,
        true,
        refused,
    );
    let asked = fake
        .inject_message(ch, stranger(), &mention(&fake, "stop"))
        .await
        .unwrap();
    assert_eq!(reply_to(&fake, ch, asked, "").await.content, refused);
    assert_eq!(db.wait_command_errors(3).await, ["not_allowed"; 3]);
    assert_eq!(db.tasks().await[0].0, "running");

    // A member with Manage Messages may, by /stop.
    let answer = slash(&fake, ch, manager(), "stop", json!([])).await;
    assert!(answer.accepted() && !answer.ephemeral(), "{answer:?}");
    let text = answer.content.clone().unwrap_or_default();
    assert!(
        text.ends_with(&format!("(stopped by <@{MANAGER}>)")),
        "{text}"
    );
    db.wait_tasks("stopped", |t| t[0].0 == "stopped").await;

    // The starter may, by the button.
    let before = fake.messages(ch).len();
    assert!(slash_count(&fake, ch, user(), 60).await.accepted());
    let first = first_number(&fake, ch, before).await;
    let answer = press(&fake, ch, user(), first.id, &button_ids(&first)[0]).await;
    assert_eq!((answer.kind, answer.status), (7, 204), "{answer:?}");
    stopped_reply(&fake, ch, first.id).await;
    db.wait_tasks("second stopped", |t| t.len() == 2 && t[1].0 == "stopped")
        .await;

    // A manager may, by a mention (permissions from the cache: roles).
    let before = fake.messages(ch).len();
    say(&fake, ch, &mention(&fake, "count to 60")).await;
    first_number(&fake, ch, before).await;
    let asked = fake
        .inject_message(ch, manager(), &mention(&fake, "stop"))
        .await
        .unwrap();
    stopped_reply(&fake, ch, asked).await;
    let tasks = db
        .wait_tasks("third stopped", |t| t.len() == 3 && t[2].0 == "stopped")
        .await;
    assert_eq!(tasks.len(), 3);
    assert_eq!(db.command_error_kinds().await, ["not_allowed"; 3]);
    assert_eq!(
        bot.metric("countdown_wrong_commands_total{reason=\"not_allowed\"}")
            .await,
        3.0
    );
    assert_no_pings(&fake);
    bot.assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_are_registered_in_one_guild_with_discord_guild_id() {
    let fake = fake().await;
    let db = TestDb::create().await;
    let guild = fake.guilds()[4].id;
    let bot = Bot::start_ready(&fake, &db, &[("DISCORD_GUILD_ID", &guild.to_string())]).await;
    let commands = fake
        .wait_registered_commands(Some(guild), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(commands.len(), 3);
    assert!(fake.registered_commands(None).is_empty());
    let puts: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT")
        .map(|r| r.path)
        .collect();
    assert_eq!(
        puts,
        [format!(
            "/api/v10/applications/{}/guilds/{guild}/commands",
            fake.bot_user_id()
        )]
    );
    bot.assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_registration_is_counted_and_mentions_still_work() {
    let fake = fake().await;
    let db = TestDb::create().await;
    fake.fail_command_registration(100);
    let bot = Bot::start_ready(&fake, &db, &[]).await;
    bot.wait_metric("countdown_command_registration_failures_total", |v| {
        v >= 3.0
    })
    .await;
    let ch = channel(&fake, 5, 0);
    say(&fake, ch, &mention(&fake, "count to 2")).await;
    assert_eq!(numbers(&wait_messages(&fake, ch, 2).await), one_to(2));
    assert!(bot.log_count("cannot register the slash commands") >= 3);
    assert!(fake.registered_commands(None).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slash_countdown_resumed_after_kill_9_keeps_a_working_button() {
    let fake = fake().await;
    let db = TestDb::create().await;
    let mut bot = Bot::start_ready(&fake, &db, &[]).await;
    let ch = channel(&fake, 6, 0);

    assert!(slash_count(&fake, ch, user(), 40).await.accepted());
    let first = first_number(&fake, ch, 0).await;
    let button = button_ids(&first).remove(0);
    wait_messages(&fake, ch, 3).await;
    bot.kill9();
    let seen = fake.messages(ch).len();
    let bot = Bot::start_ready(&fake, &db, &[]).await;
    // Counting again (nonces keep a re-sent number single).
    wait_messages(&fake, ch, seen + 2).await;

    let answer = press(&fake, ch, user(), first.id, &button).await;
    assert_eq!((answer.kind, answer.status), (7, 204), "{answer:?}");
    stopped_reply(&fake, ch, first.id).await;
    let tasks = db
        .wait_tasks("stopped", |t| t.len() == 1 && t[0].0 == "stopped")
        .await;
    assert_eq!(numbers(&fake.messages(ch)), one_to(tasks[0].1 as u32));
    assert_eq!(task_rows(&db).await[0].1, "slash");
    assert_eq!(bot.metric("countdown_resumed_total").await, 1.0);
    assert_no_pings(&fake);
    bot.assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_discord_refuses_as_late_is_logged_and_the_countdown_runs() {
    // A window of zero: every answer arrives "after 3 s".
    let fake = fake_with(fake_discord::FakeConfig {
        interaction_window: Duration::ZERO,
        ..fake_discord::FakeConfig::default()
    })
    .await;
    let db = TestDb::create().await;
    let bot = Bot::start_ready(&fake, &db, &[]).await;
    let ch = channel(&fake, 7, 0);
    let answer = slash_count(&fake, ch, user(), 2).await;
    assert_eq!(answer.status, 404, "{answer:?}");
    assert_eq!(numbers(&wait_messages(&fake, ch, 2).await), one_to(2));
    assert_eq!(bot.log_count("interaction answer refused"), 1);
    assert_eq!(bot.wait_metric(&answers("failed"), |n| n >= 1.0).await, 1.0);
    assert_eq!(bot.metric(&answers("answered")).await, 0.0);
    bot.assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_managers_mention_stop_is_allowed_when_the_cache_lacks_the_guild() {
    // No GUILD_CREATE for this guild: serenity's cache never holds it.
    let config = fake_discord::FakeConfig::default();
    let withheld = config.guilds[3].id;
    let fake = fake_with(fake_discord::FakeConfig {
        withheld_guilds: vec![withheld],
        ..config
    })
    .await;
    let db = TestDb::create().await;
    let bot = Bot::start_ready(&fake, &db, &[("STOP_POLICY", "starter_or_manager")]).await;
    let ch = channel(&fake, 3, 0);
    let refused = "Only the person who started this countdown, or a member who can manage \
                   messages here, can stop it.";

    say(&fake, ch, &mention(&fake, "count to 60")).await;
    first_number(&fake, ch, 0).await;
    let asked = fake
        .inject_message(ch, Author::user(STRANGER), &mention(&fake, "stop"))
        .await
        .unwrap();
    assert_eq!(reply_to(&fake, ch, asked, "").await.content, refused);
    assert_eq!(db.tasks().await[0].0, "running");

    // A look-up Discord fails: today's answer, logged once.
    let manager = || Author::user(MANAGER).with_roles(&[fake.manager_role(withheld)]);
    fake.fail_guild_reads(1);
    let asked = fake
        .inject_message(ch, manager(), &mention(&fake, "stop"))
        .await
        .unwrap();
    assert_eq!(reply_to(&fake, ch, asked, "").await.content, refused);
    assert_eq!(bot.log_count("permissions look-up failed"), 1);
    assert_eq!(db.tasks().await[0].0, "running");

    let asked = fake
        .inject_message(ch, manager(), &mention(&fake, "stop"))
        .await
        .unwrap();
    stopped_reply(&fake, ch, asked).await;
    db.wait_tasks("stopped", |t| t.len() == 1 && t[0].0 == "stopped")
        .await;
    // One look-up per stop (the count needed none): the guild asked once
    // each time.
    let guild_path = format!("/guilds/{withheld}");
    let lookups = fake
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with(&guild_path))
        .count();
    assert_eq!(lookups, 3);
    assert_eq!(bot.log_count("permissions look-up failed"), 1);
    assert_no_pings(&fake);
    bot.assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_before_slash_commands_gains_the_source_column_and_resumes() {
    let fake = fake().await;
    let db = TestDb::create().await;
    // The schema as it was: no `source` column; a countdown left running.
    let client = db.client().await;
    client
        .batch_execute(include_str!("../init.sql"))
        .await
        .unwrap();
    client
        .batch_execute("ALTER TABLE tasks DROP COLUMN source")
        .await
        .unwrap();
    let ch = channel(&fake, 7, 1);
    let guild = fake.guild_of(ch).unwrap();
    client
        .execute(
            "INSERT INTO tasks (channel_id, guild_id, user_id, target) VALUES ($1, $2, $3, 3)",
            &[&(ch as i64), &(guild as i64), &(USER as i64)],
        )
        .await
        .unwrap();

    let bot = Bot::start_ready(&fake, &db, &[]).await;
    let msgs = wait_messages(&fake, ch, 3).await;
    assert_eq!(numbers(&msgs), one_to(3));
    let rows = task_rows(&db).await;
    assert_eq!(rows, [(rows[0].0, "mention".to_owned(), USER as i64)]);
    assert_eq!(button_ids(&msgs[0]), [format!("stop:{}", rows[0].0)]);
    bot.assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_database_defers_the_answer_and_a_missing_one_is_an_ephemeral_try_again() {
    let fake = fake().await;
    let db = TestDb::create().await;
    let bot = Bot::start_ready(&fake, &db, &[]).await;
    let ch = channel(&fake, 7, 2);

    // Inserts fail: the table is gone from under the bot.
    let admin = db.client().await;
    admin
        .batch_execute("ALTER TABLE tasks RENAME TO tasks_away")
        .await
        .unwrap();
    let answer = slash_count(&fake, ch, user(), 2).await;
    assert!(answer.accepted() && answer.ephemeral(), "{answer:?}");
    let text = answer.content.clone().unwrap_or_default();
    assert!(text.contains("try again"), "{text}");
    admin
        .batch_execute("ALTER TABLE tasks_away RENAME TO tasks")
        .await
        .unwrap();
    assert_eq!(db.wait_command_errors(1).await, ["db_unavailable"]);

    // Inserts wait: the table is locked for longer than the window allows.
    let mut locker = db.client().await;
    let lock = locker.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let options = json!([{ "name": "n", "type": 4, "value": 2 }]);
    let sent = fake.slash_command(ch, user(), "count", options).unwrap();
    let deferred = fake
        .wait_interaction_response(sent.id, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!((deferred.kind, deferred.status), (5, 204), "{deferred:?}");
    assert!(deferred.ephemeral(), "{deferred:?}");
    assert!(
        (Duration::from_secs(2)..Duration::from_secs(3)).contains(&deferred.elapsed),
        "deferred after {:?}",
        deferred.elapsed
    );
    lock.commit().await.unwrap();
    let edit = fake
        .wait_interaction_edit(sent.id, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(edit.content, format!("<@{USER}> started a countdown to 2."));
    assert_eq!(
        edit.allowed_mentions.as_ref().map(|a| a["parse"].clone()),
        Some(json!([]))
    );
    assert_eq!(numbers(&wait_messages(&fake, ch, 2).await), one_to(2));
    assert_eq!(bot.log_count("deferring it"), 1);
    assert_eq!(
        bot.wait_metric(&answers("deferred"), |n| n >= 1.0).await,
        1.0
    );
    bot.assert_logs_clean();
}
