//! Admission in a burst: commands that arrive together are written to the
//! database together, and each still gets its own answer under every rule —
//! the caps, one countdown per channel (the scheduler's and the database's),
//! and a database that is down.

mod common;

use common::*;

/// What a channel shows for one `count to` of a burst: the countdown's
/// first number, or the bot's one reply.
async fn first_message(fake: &fake_discord::FakeDiscord, channel: u64) -> String {
    wait_messages(fake, channel, 1).await[0].content.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_keeps_every_admission_rule_per_command() {
    let fake = fake().await;
    let db = TestDb::create().await;
    let bot = Bot::start_ready(
        &fake,
        &db,
        &[("MAX_ACTIVE", "5"), ("MAX_ACTIVE_PER_GUILD", "3")],
    )
    .await;
    // A countdown `running` in the database that this bot does not run (its
    // end not written yet, or another instance's): only the database's
    // unique index knows the channel is busy.
    let held = channel(&fake, 1, 1);
    db.client()
        .await
        .execute(
            "INSERT INTO tasks (channel_id, guild_id, user_id, target) VALUES ($1, $2, 1, 50)",
            &[&(held as i64), &(fake.guild_of(held).unwrap() as i64)],
        )
        .await
        .unwrap();

    // ---- one burst: five in server 0 (cap 3 a server), two in one channel
    // of server 1, one in the channel the database holds.
    let server0: Vec<u64> = (0..5).map(|i| channel(&fake, 0, i)).collect();
    let twice = channel(&fake, 1, 0);
    let count = mention(&fake, "count to 3");
    for &ch in server0.iter().chain([twice, twice, held].iter()) {
        say(&fake, ch, &count).await;
    }

    let mut started = 0;
    let mut guild_full = 0;
    for &ch in &server0 {
        let first = first_message(&fake, ch).await;
        match first.as_str() {
            "1" => started += 1,
            text if text.contains("This server already has 3") => guild_full += 1,
            other => panic!("channel {ch}: {other:?}"),
        }
    }
    assert_eq!((started, guild_full), (3, 2), "server 0's cap");
    // The channel asked twice: one countdown, one "already counting".
    let both = wait_messages(&fake, twice, 2).await;
    let contents = contents(&both);
    assert!(contents.contains(&"1".to_owned()), "{contents:?}");
    assert!(
        contents.iter().any(|c| c.contains("already counting here")),
        "{contents:?}"
    );
    let refused = first_message(&fake, held).await;
    assert!(refused.contains("already counting here"), "{refused:?}");

    // Each countdown of the burst runs to its end, once.
    for &ch in server0.iter().chain([twice].iter()) {
        let shown = fake.messages(ch);
        if shown[0].content == "1" {
            let all = wait_messages(&fake, ch, 3).await;
            assert_eq!(numbers(&all), one_to(3), "channel {ch}");
        }
    }
    let kinds = db.wait_command_errors(4).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "busy_guild").count(),
        2,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| *k == "busy_channel").count(),
        2,
        "{kinds:?}"
    );

    // ---- a second burst against the bot's cap of 5 (two in each of three
    // servers: no server's cap is reached).
    db.wait_tasks("the first burst's countdowns ended", |t| {
        t.iter().filter(|r| r.0 == "finished").count() == 4
    })
    .await;
    let burst: Vec<u64> = (0..3)
        .flat_map(|g| [channel(&fake, g, 5), channel(&fake, g, 6)])
        .collect();
    for &ch in &burst {
        say(&fake, ch, &count).await;
    }
    let mut firsts = Vec::new();
    for &ch in &burst {
        firsts.push(first_message(&fake, ch).await);
    }
    // The held channel's row still runs, so the bot runs at most 5 itself.
    assert_eq!(firsts.iter().filter(|c| *c == "1").count(), 5, "{firsts:?}");
    assert_eq!(
        firsts.iter().filter(|c| c.contains("busy with 5")).count(),
        1,
        "{firsts:?}"
    );
    assert_eq!(
        bot.metric("countdown_wrong_commands_total{reason=\"busy_bot\"}")
            .await,
        1.0
    );
    assert!(bot.metric("countdown_admission_seconds_count").await >= 9.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_while_the_database_is_down_answers_each_command() {
    let pg = PrivatePg::start();
    let db = pg.create_db().await;
    let fake = fake().await;
    let bot = Bot::start_ready(&fake, &db, &[]).await;

    pg.stop();
    bot.wait_readyz_is(503).await;
    let burst: Vec<u64> = (0..4).map(|i| channel(&fake, i % 2, i / 2)).collect();
    let count = mention(&fake, "count to 3");
    for &ch in &burst {
        say(&fake, ch, &count).await;
    }
    for &ch in &burst {
        let reply = first_message(&fake, ch).await;
        assert!(reply.contains("can't reach my database"), "{reply:?}");
    }
    assert!(bot.metric("countdown_db_errors_total").await >= 4.0);

    // Back up: a command counts again, and nothing of the burst was started
    // meanwhile.
    pg.start_again();
    bot.wait_readyz_is(200).await;
    let again = channel(&fake, 2, 0);
    say(&fake, again, &count).await;
    assert_eq!(numbers(&wait_messages(&fake, again, 3).await), one_to(3));
    for &ch in &burst {
        assert_eq!(fake.messages(ch).len(), 1, "only the reply in {ch}");
    }
}
