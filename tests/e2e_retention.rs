//! Retention: the leader deletes ended countdowns and error rows older than
//! `RETENTION` when its term starts (then hourly), and nothing else: not a
//! running countdown however old, not a recent row.

mod common;

use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

/// The ids left in `table`.
async fn ids(db: &TestDb, table: &str) -> Vec<i64> {
    // `table` is one of three literals below, not input.
    let sql = format!("SELECT id FROM {table} ORDER BY id");
    db.client()
        .await
        .query(&sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_rows_are_deleted_and_nothing_running_or_recent() {
    let fake = fake().await;
    let db = TestDb::create().await;
    // A first start creates the schema.
    let mut bot = Bot::start_ready(&fake, &db, &[]).await;
    let (exit, _) = bot.signal_and_wait(Signal::SIGTERM, Duration::from_secs(5));
    assert!(exit.success());

    let ch = channel(&fake, 0, 0);
    let client = db.client().await;
    let insert_task = "INSERT INTO tasks (channel_id, guild_id, user_id, target, last_sent, status, \
                        created_at, updated_at, finished_at) \
                       VALUES ($1, 1, 2, 5, $2, $3, now() - make_interval(days => $4), \
                               now() - make_interval(days => $5), \
                               CASE WHEN $3 = 'running' THEN NULL ELSE now() - make_interval(days => $5) END) \
                       RETURNING id";
    let task = |channel: i64, last: i32, status: &'static str, created: i32, ended: i32| {
        let client = &client;
        async move {
            client
                .query_one(insert_task, &[&channel, &last, &status, &created, &ended])
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    let old_finished = task(900, 5, "finished", 120, 100).await;
    let old_failed = task(901, 2, "failed", 120, 95).await;
    let recent_stopped = task(902, 3, "stopped", 10, 10).await;
    // Started long ago, still counting (its progress is fresh): kept.
    let old_running = task(ch as i64, 1, "running", 100, 0).await;
    let insert_error = "INSERT INTO command_errors (kind, channel_id, error, task_id, created_at) \
                        VALUES ('invalid', 900, 'x', $1, now() - make_interval(days => $2)) RETURNING id";
    let old_error: i64 = client
        .query_one(insert_error, &[&Some(old_finished), &100])
        .await
        .unwrap()
        .get(0);
    let recent_error: i64 = client
        .query_one(insert_error, &[&Some(old_failed), &1])
        .await
        .unwrap()
        .get(0);
    let insert_general = "INSERT INTO general_errors (context, error, created_at) \
                          VALUES ('database', 'x', now() - make_interval(days => $1)) RETURNING id";
    let old_general: i64 = client
        .query_one(insert_general, &[&91])
        .await
        .unwrap()
        .get(0);
    let recent_general: i64 = client
        .query_one(insert_general, &[&89])
        .await
        .unwrap()
        .get(0);
    let _ = (old_error, old_general);

    let bot = Bot::start_ready(&fake, &db, &[("RETENTION", "90d")]).await;
    bot.wait_metric(
        "countdown_retention_deleted_total{table=\"general_errors\"}",
        |v| v >= 1.0,
    )
    .await;
    assert_eq!(
        bot.metric("countdown_retention_deleted_total{table=\"tasks\"}")
            .await,
        2.0
    );
    assert_eq!(
        bot.metric("countdown_retention_deleted_total{table=\"command_errors\"}")
            .await,
        1.0
    );
    assert_eq!(
        bot.metric("countdown_retention_deleted_total{table=\"general_errors\"}")
            .await,
        1.0
    );
    assert_eq!(ids(&db, "tasks").await, [recent_stopped, old_running]);
    assert_eq!(ids(&db, "command_errors").await, [recent_error]);
    assert_eq!(
        ids(&db, "general_errors").await.first(),
        Some(&recent_general)
    );
    // The recent error row of a deleted task stays, its task_id cleared.
    let task_id: Option<i64> = client
        .query_one("SELECT task_id FROM command_errors", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(task_id, None);
    // The running countdown was resumed, not deleted, and counts on.
    let msgs = wait_messages(&fake, ch, 4).await;
    assert_eq!(numbers(&msgs), [2, 3, 4, 5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_0_keeps_everything() {
    let fake = fake().await;
    let db = TestDb::create().await;
    let mut bot = Bot::start_ready(&fake, &db, &[]).await;
    let (exit, _) = bot.signal_and_wait(Signal::SIGTERM, Duration::from_secs(5));
    assert!(exit.success());
    db.client()
        .await
        .execute(
            "INSERT INTO general_errors (context, error, created_at) \
             VALUES ('database', 'x', now() - make_interval(days => 1000))",
            &[],
        )
        .await
        .unwrap();
    let bot = Bot::start_ready(&fake, &db, &[("RETENTION", "0")]).await;
    // The leader's term has started; a pass would have run at its start.
    bot.wait_metric("countdown_leader", |v| v == 1.0).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while std::time::Instant::now() < deadline {
        assert_eq!(ids(&db, "general_errors").await.len(), 1);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(bot.logs().contains("RETENTION is 0"), "{}", bot.logs());
}
