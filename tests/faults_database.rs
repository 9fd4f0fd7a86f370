//! Fault suite: the database goes away mid-countdown.
//!
//! The test runs a PostgreSQL cluster of its own (`initdb` + `pg_ctl`, on a
//! free port in a temp dir) so it can stop it: `pg_ctl stop -m fast` cuts
//! the bot's connections and refuses new ones, as a database host going
//! down would. While it is down, counting goes on, on time; a new
//! `count to` gets a "try again" reply; `stop` and invalid commands are
//! still answered; `/readyz` says not ready; errors are counted and the
//! outage is logged once. When it is back, the progress and the queued rows
//! are written, `general_errors` holds one `database` row for the outage,
//! and a kill -9 right after the recovery still resumes exactly once.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// How long the database stays down: 30 s (longer than every
/// timeout and backoff of the bot: connections 2 s, journal retry 250 ms,
/// readiness 2 s). `FAULT_DB_OUTAGE_SECS` shortens it for local runs.
fn outage() -> Duration {
    let secs = std::env::var("FAULT_DB_OUTAGE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    Duration::from_secs(secs)
}

async fn general_errors(db: &TestDb) -> Vec<(String, String)> {
    db.client()
        .await
        .query("SELECT context, error FROM general_errors ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// `general_errors` once it has a row of `context`, checking it has one only.
async fn db_rows_eventually(db: &TestDb, context: &str) -> Vec<(String, String)> {
    let rows = eventually(
        &format!("a `{context}` row in general_errors"),
        Duration::from_secs(10),
        async || general_errors(db).await,
        |rows| rows.iter().any(|g| g.0 == context),
    )
    .await;
    let n = rows.iter().filter(|g| g.0 == context).count();
    assert_eq!(n, 1, "want one {context} row: {rows:?}");
    rows
}

/// The contract for an instance alone (no standby waiting): the bot
/// keeps counting through the outage, on time, and stays the leader; it
/// takes its lock again when the database is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_loses_nothing_and_delays_nothing() {
    let outage = outage();
    let target = outage.as_secs() as usize + 16;
    let pg = PrivatePg::start();
    let db = pg.create_db().await;
    let fake = fake().await;
    let mut bot = Bot::start_ready(&fake, &db, &[]).await;

    let long = channel(&fake, 0, 0); // runs through the outage and after
    let short = channel(&fake, 0, 1); // ends during the outage
    let stopped = channel(&fake, 0, 2); // stopped by a user during the outage
    let refused = channel(&fake, 1, 0); // `count to` while the database is down
    let invalid = channel(&fake, 1, 1); // an invalid command while it is down
    say(&fake, long, &mention(&fake, &format!("count to {target}"))).await;
    say(&fake, short, &mention(&fake, "count to 6")).await;
    say(&fake, stopped, &mention(&fake, "count to 40")).await;
    wait_messages(&fake, long, 3).await;
    db.wait_tasks("three rows with progress", |t| {
        t.len() == 3 && t.iter().all(|r| r.1 >= 2)
    })
    .await;

    // ---- the database goes down
    let down_at = Instant::now();
    pg.stop();
    let body = bot.wait_readyz_is(503).await;
    assert!(body.contains("database"), "{body}");

    let ask = say(&fake, refused, &mention(&fake, "count to 5")).await;
    let reply = wait_messages(&fake, refused, 1).await;
    assert!(
        reply[0].content.contains("try again"),
        "{}",
        reply[0].content
    );
    assert_eq!(
        reply[0].message_reference.as_ref().unwrap()["message_id"],
        ask.to_string()
    );
    say(&fake, invalid, &mention(&fake, "count to many")).await;
    let reply = wait_messages(&fake, invalid, 1).await;
    assert!(
        reply[0].content.contains("count to N"),
        "{}",
        reply[0].content
    );
    let stopped_at = stop_and_wait(&fake, stopped).await;

    assert!(bot.metric("countdown_db_errors_total").await >= 2.0);
    assert_eq!(
        bot.metric("countdown_leader").await,
        1.0,
        "still the leader"
    );
    let remaining = outage.saturating_sub(down_at.elapsed());
    tokio::time::sleep(remaining).await;
    // Still not ready at the end of the outage; the short countdown ended
    // meanwhile, the long one kept counting.
    let (status, _) = bot.get("/readyz").await.unwrap();
    assert_eq!(status, 503);
    assert_eq!(numbers(&fake.messages(short)), one_to(6));
    assert!(fake.messages(refused).len() == 1, "no number where refused");

    // ---- the database is back
    let during = fake.messages(long).len();
    pg.start_again();
    bot.wait_readyz_is(200).await;
    // Rows by target (their ids follow the order the commands were handled in).
    let tasks = db
        .wait_tasks("progress and ends written", |t| {
            t.len() == 3
                && t.iter()
                    .any(|r| r.2 == target as i32 && r.0 == "running" && r.1 as usize >= during)
                && t.contains(&("finished".to_owned(), 6, 6))
                && t.contains(&("stopped".to_owned(), stopped_at as i32, 40))
        })
        .await;
    assert!(
        tasks.iter().any(|r| r.2 == target as i32 && r.1 > 3),
        "progress made during the outage: {tasks:?}"
    );
    let general = db_rows_eventually(&db, "database").await;
    let outages: Vec<_> = general.iter().filter(|g| g.0 == "database").collect();
    assert_eq!(outages.len(), 1, "one row for the outage: {general:?}");
    assert!(
        outages[0].1.starts_with("database unavailable from"),
        "{general:?}"
    );
    let kinds = db.wait_command_errors(2).await;
    assert!(
        kinds.contains(&"db_unavailable".to_owned()) && kinds.contains(&"invalid".to_owned()),
        "{kinds:?}"
    );
    let logs = bot.logs();
    assert_eq!(
        count_lines(&logs, "cannot write to the database"),
        1,
        "the outage is logged once when it starts:\n{logs}"
    );
    assert_eq!(count_lines(&logs, "database is back"), 1, "{logs}");
    assert!(count_lines(&logs, "cannot admit a countdown") == 1);
    assert_eq!(count_lines(&logs, "no standby is waiting"), 1, "{logs}");
    bot.wait_metric("countdown_leader", |v| v == 1.0).await;
    eventually(
        "the lock taken again, once",
        Duration::from_secs(10),
        async || bot.log_count("leader lock taken again; still the leader"),
        |n| *n == 1,
    )
    .await;

    // Counting went on, on time, through the whole outage.
    let msgs = fake.messages(long);
    for (i, gap) in gaps_ms(&msgs).into_iter().enumerate() {
        assert!(
            (800..=1250).contains(&gap),
            "gap {gap} ms before number {}",
            i + 2
        );
    }

    // ---- kill -9 right after the recovery
    bot.kill9();
    let killed_at = fake.messages(long).len();
    assert!(killed_at < target, "still counting when killed");
    let bot = Bot::start_ready(&fake, &db, &[]).await;
    let msgs = wait_messages(&fake, long, target).await;
    assert_eq!(numbers(&msgs), one_to(target as u32), "exactly once");
    db.wait_tasks("all ended", |t| {
        t.contains(&("finished".to_owned(), target as i32, target as i32))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.messages(long).len(), target);
    assert_eq!(bot.metric("countdown_resumed_total").await, 1.0);
    bot.assert_logs_clean();
    assert_no_pings(&fake);
}

/// What a database outage does when a standby waits (the fencing):
/// the leader cannot tell an outage from a partition that lets the standby
/// take over, so it stops sending within a second, closes the gateway and
/// campaigns again; `/readyz` says why; the failures are counted and logged
/// once. When the database is back one of the two leads and every
/// countdown carries on from its progress: nothing lost, nothing doubled, a
/// stop sent just before the outage still holds, the rows the outage held
/// up are written (the lost term as a `general_errors` row), and a kill -9
/// of the leader right after the recovery hands over exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_standby_an_outage_fences_the_leader_and_it_carries_on_after() {
    let outage = outage();
    let pg = PrivatePg::start();
    let db = pg.create_db().await;
    let fake = fake().await;
    let bot = Bot::start_ready(&fake, &db, &[]).await;
    let standby = Bot::start(&fake, &db, &[]);
    standby.wait_standby().await;
    bot.wait_metric("countdown_leader_standbys", |v| v == 1.0)
        .await;
    let long = channel(&fake, 0, 0);
    let stopped = channel(&fake, 0, 1);
    let target = 20;
    say(&fake, long, &mention(&fake, &format!("count to {target}"))).await;
    say(&fake, stopped, &mention(&fake, "count to 40")).await;
    wait_messages(&fake, long, 3).await;
    wait_messages(&fake, stopped, 3).await;

    // A stop, and at once the database goes away: the stop's row may not be
    // written yet.
    let stopped_at = stop_and_wait(&fake, stopped).await;
    let down_at = std::time::Instant::now();
    pg.stop();

    let body = bot.wait_readyz_is(503).await;
    assert!(body.starts_with("not ready"), "{body}");
    // Fenced: nothing is sent a second after the lock connection is gone
    // (the pinger notices a closed connection at once; allow for noise).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before_outage = fake.messages(long);
    assert!(
        before_outage
            .iter()
            .all(|m| m.at.duration_since(down_at) < Duration::from_millis(1500)),
        "a deposed leader kept sending"
    );
    assert!(bot.metric("countdown_db_errors_total").await >= 1.0);
    assert_eq!(bot.metric("countdown_leader").await, 0.0);
    let remaining = outage.saturating_sub(down_at.elapsed());
    tokio::time::sleep(remaining).await;
    assert_eq!(
        fake.messages(long).len(),
        before_outage.len(),
        "silent while down"
    );
    let (status, _) = bot.get("/readyz").await.unwrap();
    assert_eq!(status, 503);

    // ---- back: whichever instance takes the lock first leads.
    pg.start_again();
    let mut bots = [bot, standby];
    let leader = wait_for_a_leader(&bots).await;
    let msgs = wait_messages(&fake, long, before_outage.len() + 2).await;
    assert_eq!(
        numbers(&msgs),
        one_to(msgs.len() as u32),
        "carries on where it stopped"
    );
    // Rows by target: 20 is the long one, 40 the stopped one.
    db.wait_tasks("the stop and the progress written", |t| {
        t.len() == 2
            && t.iter().any(|r| {
                r.2 == target as i32 && r.0 == "running" && r.1 as usize >= before_outage.len()
            })
            && t.contains(&("stopped".to_owned(), stopped_at as i32, 40))
    })
    .await;
    assert_eq!(
        numbers(&fake.messages(stopped)),
        one_to(stopped_at),
        "the stopped countdown did not come back"
    );
    // The lost term is a row when the old leader leads again; a `database`
    // row too if a write failed before the leader noticed.
    if leader == 0 {
        db_rows_eventually(&db, "leadership").await;
    }
    let general = general_errors(&db).await;
    assert!(
        general.iter().filter(|g| g.0 == "database").count() <= 1,
        "{general:?}"
    );
    for bot in &bots {
        // Logged once per instance, not once per retry.
        assert!(bot.log_count("cannot campaign for leadership") <= 1);
    }
    let logs = bots[0].logs();
    assert_eq!(
        count_lines(&logs, "lost the leader lock connection; stepping down"),
        1,
        "{logs}"
    );

    // ---- kill -9 of the leader right after the recovery: the other takes over
    bots[leader].kill9();
    assert!(
        fake.messages(long).len() < target,
        "still counting when killed"
    );
    let bot = &bots[1 - leader];
    bot.wait_metric("countdown_leader", |v| v == 1.0).await;
    let msgs = wait_messages(&fake, long, target).await;
    assert_eq!(numbers(&msgs), one_to(target as u32), "exactly once");
    db.wait_tasks("finished", |t| {
        t.contains(&("finished".to_owned(), target as i32, target as i32))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.messages(long).len(), target);
    assert_eq!(numbers(&fake.messages(stopped)), one_to(stopped_at));
    bot.assert_logs_clean();
    assert_no_pings(&fake);
}

/// Index of the instance that leads once the database is back, when its
/// `/readyz` says ready.
async fn wait_for_a_leader(bots: &[Bot; 2]) -> usize {
    let leader = eventually(
        "an instance whose /readyz is 200",
        Duration::from_secs(30),
        async || {
            for (i, bot) in bots.iter().enumerate() {
                if let Ok((200, _)) = bot.get("/readyz").await {
                    return Some(i);
                }
            }
            None
        },
        Option::is_some,
    )
    .await;
    leader.unwrap_or_default()
}

/// The outage's `general_errors` row survives a kill -9 right after the
/// database is back: it is written with the first progress written after
/// the outage, not by a later flush.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outage_row_survives_a_kill_9_right_after_the_database_is_back() {
    let pg = PrivatePg::start();
    let db = pg.create_db().await;
    let fake = fake().await;
    let mut bot = Bot::start_ready(&fake, &db, &[]).await;
    let ch = channel(&fake, 0, 0);
    say(&fake, ch, &mention(&fake, "count to 40")).await;
    wait_messages(&fake, ch, 2).await;
    db.wait_tasks("progress", |t| t.len() == 1 && t[0].1 >= 1)
        .await;

    pg.stop();
    bot.wait_log("cannot write to the database").await;
    let during = fake.messages(ch).len() as i32;
    wait_messages(&fake, ch, during as usize + 2).await;
    pg.start_again();
    // Kill the moment the progress sent during the outage is in the database.
    let client = db.client().await;
    eventually(
        &format!("last_sent {during} in the database"),
        Duration::from_secs(20),
        async || {
            let row = client
                .query_one("SELECT last_sent FROM tasks", &[])
                .await
                .unwrap();
            row.get::<_, i32>(0)
        },
        |last_sent| *last_sent >= during,
    )
    .await;
    bot.kill9();
    let rows = general_errors(&db).await;
    let outage: Vec<_> = rows.iter().filter(|g| g.0 == "database").collect();
    assert_eq!(outage.len(), 1, "{rows:?}");
    assert!(
        outage[0].1.starts_with("database unavailable from"),
        "{rows:?}"
    );
}
