//! Sharding as a user sees it: the fake Discord recommends 2 shards and
//! spreads its two servers over them; the bot runs both shards in one
//! process, counts in a server of each shard and in a DM, answers a slash
//! command on shard 1, is ready only once both shards are, and stops with
//! one line when Discord refuses its shard count.

mod common;

use std::time::{Duration, Instant};

use common::*;
use fake_discord::{shard_of, Author, FakeConfig, GuildSpec};

/// A server on shard 0 and one on shard 1 of 2: `(id >> 22) % 2`.
const GUILD_0: u64 = (1_000_000 << 22) | 7;
const GUILD_1: u64 = (1_000_001 << 22) | 7;

/// Two servers of two channels each, on different shards; Discord
/// recommends 2 shards and refuses fewer (4011).
fn two_shards() -> FakeConfig {
    assert_eq!((shard_of(GUILD_0, 2), shard_of(GUILD_1, 2)), (0, 1));
    FakeConfig {
        guilds: [GUILD_0, GUILD_1]
            .map(|id| GuildSpec {
                id,
                channels: vec![id + 1, id + 2],
            })
            .to_vec(),
        shards: 2,
        sharding_required: true,
        ..FakeConfig::default()
    }
}

/// How many times the bot asked `GET /gateway/bot`.
fn gateway_bot_requests(fake: &fake_discord::FakeDiscord) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.path == "/api/v10/gateway/bot")
        .count()
}

/// `count to 3` by mention in a server of each shard and in a DM, at once:
/// `1`, `2`, `3` in each.
async fn count_to_3_on_both_shards_and_in_a_dm(fake: &fake_discord::FakeDiscord) {
    let dm = fake.open_dm(USER).await;
    let channels = [GUILD_0 + 1, GUILD_1 + 1, dm];
    for ch in channels {
        let text = if ch == dm {
            "count to 3".to_owned()
        } else {
            mention(fake, "count to 3")
        };
        say(fake, ch, &text).await;
    }
    for ch in channels {
        assert_eq!(
            numbers(&wait_messages(fake, ch, 3).await),
            one_to(3),
            "{ch}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_runs_both_shards_and_commands_work_on_each_and_in_a_dm() {
    let fake = fake_with(two_shards()).await;
    let db = TestDb::create().await;
    let bot = Bot::start(&fake, &db, &[("SHARDS", "auto")]);

    // Shard 0 is READY, and the bot has seen it; shard 1 follows 5 s later.
    fake.wait_ready_shards(1, Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", bot.logs()));
    bot.wait_metric("countdown_shards_ready", |v| v == 1.0)
        .await;
    let (status, body) = bot.get("/readyz").await.unwrap();
    assert!(
        !fake.ready_shards().contains(&1),
        "shard 1 was ready before the bot's /readyz could be read alone"
    );
    assert_eq!(
        (status, body.as_str()),
        (503, "not ready: gateway not ready: 1 of 2 shards ready\n")
    );
    assert_eq!(bot.metric("countdown_gateway_ready").await, 0.0);
    assert_eq!(bot.metric("countdown_shards").await, 2.0);

    bot.wait_readyz().await;
    assert_eq!(fake.ready_shards(), [0, 1]);
    assert_eq!(fake.shard_count(), 2);
    assert_eq!(bot.metric("countdown_gateway_ready").await, 1.0);
    assert_eq!(bot.metric("countdown_shards_ready").await, 2.0);
    let stats = fake.stats();
    assert_eq!((stats.identify, stats.identify_refused), (2, 0));
    assert_eq!(stats.identify_too_fast, 0, "identifies 5 s apart");
    // Asked once for both shards.
    assert_eq!(gateway_bot_requests(&fake), 1);

    count_to_3_on_both_shards_and_in_a_dm(&fake).await;

    // A slash command on shard 1.
    let ch = GUILD_1 + 2;
    let answer = slash_count(&fake, ch, Author::user(USER), 2).await;
    assert_answer(
        &answer,
        false,
        &format!("<@{USER}> started a countdown to 2."),
    );
    assert_eq!(numbers(&wait_messages(&fake, ch, 2).await), one_to(2));

    db.wait_tasks("four finished countdowns", |t| {
        t.len() == 4 && t.iter().all(|(status, _, _)| status == "finished")
    })
    .await;
    bot.assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_count_of_2_works_too() {
    let fake = fake_with(two_shards()).await;
    let db = TestDb::create().await;
    let bot = Bot::start_ready(&fake, &db, &[("SHARDS", "2")]).await;
    assert_eq!(fake.ready_shards(), [0, 1]);
    assert_eq!(fake.shard_count(), 2);
    // A fixed count needs no recommendation.
    assert_eq!(gateway_bot_requests(&fake), 0);

    count_to_3_on_both_shards_and_in_a_dm(&fake).await;
    bot.assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_few_shards_stop_the_bot_with_one_line_naming_the_fix() {
    let fake = fake_with(two_shards()).await;
    let db = TestDb::create().await;
    let started = Instant::now();
    let mut bot = Bot::start(&fake, &db, &[("SHARDS", "1")]);

    // The process ends by itself: /healthz stops answering.
    loop {
        let up = bot.get("/healthz").await.is_ok();
        if !up && bot.logs().contains("stopped") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the bot kept running:\n{}",
            bot.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // It had exited on its own with a failure: the signal finds a process
    // already ended.
    let (status, _) =
        bot.signal_and_wait(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(5));
    assert_eq!(status.code(), Some(1), "{}", bot.logs());

    let logs = bot.logs();
    let line = "Discord closed the gateway with 4011: sharding required (SHARDS=1): \
                the bot is in too many servers for 1 shard; set SHARDS=auto";
    assert_eq!(count_lines(&logs, line), 1, "{logs}");
    // One IDENTIFY refused, and no second try.
    let stats = fake.stats();
    assert_eq!((stats.identify, stats.identify_refused), (0, 1), "{logs}");
    // The refusal is a row, like every failure.
    let rows = db
        .client()
        .await
        .query("SELECT context, error FROM general_errors", &[])
        .await
        .unwrap();
    let rows: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(rows, [("gateway".to_owned(), line.to_owned())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_each_countdown_resumes_once_though_every_shard_sends_ready() {
    let fake = fake_with(two_shards()).await;
    let db = TestDb::create().await;
    let mut bot = Bot::start_ready(&fake, &db, &[]).await;
    let channels = [GUILD_0 + 1, GUILD_1 + 1];
    for ch in channels {
        say(&fake, ch, &mention(&fake, "count to 12")).await;
    }
    for ch in channels {
        wait_messages(&fake, ch, 2).await;
    }
    let (status, _) =
        bot.signal_and_wait(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(5));
    assert!(status.success(), "{status:?}\n{}", bot.logs());

    // Shard 0's READY resumes both countdowns, shard 1's (5 s later)
    // finds them running.
    let bot = Bot::start_ready(&fake, &db, &[]).await;
    for ch in channels {
        assert_eq!(
            numbers(&wait_messages(&fake, ch, 12).await),
            one_to(12),
            "{ch}"
        );
    }
    db.wait_tasks("both finished", |t| {
        t == [("finished".into(), 12, 12), ("finished".into(), 12, 12)]
    })
    .await;
    assert_eq!(bot.metric("countdown_resumed_total").await, 2.0);
    assert_eq!(bot.log_count("countdowns resumed"), 1, "{}", bot.logs());
    assert_eq!(bot.log_count("gateway ready"), 2);
    assert_eq!(fake.stats().nonce_duplicates, 0, "nothing sent twice");
}
