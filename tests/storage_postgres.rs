//! Storage against the real PostgreSQL, a database per test: the versioned
//! migrations (they build `init.sql`'s schema, apply cleanly over it and
//! over databases of earlier versions, once however many instances start
//! at once) and `PgStore`, the store the bot runs on.

mod common;

use std::time::Duration;

use chrono::Utc;
use common::TestDb;
use countdown::config::DatabaseSettings;
use countdown::storage::store::{Batch, End, Progress};
use countdown::storage::{
    self, CommandError, GeneralError, NewTask, PgStore, StorageError, TaskStatus, TaskStore,
};
use deadpool_postgres::Pool;

const INIT_SQL: &str = include_str!("../init.sql");
/// Databases made before migrations were versioned, by the `init.sql` of
/// their version.
const EARLIER_VERSIONS: [(&str, &str); 2] = [
    (
        "the first release",
        include_str!("fixtures/init-first-release.sql"),
    ),
    (
        "the last version before migrations",
        include_str!("fixtures/init-before-migrations.sql"),
    ),
];
/// The migrations in `src/storage/migrations`.
const MIGRATIONS: i64 = 4;

fn pool(db: &TestDb) -> Pool {
    storage::pool(&DatabaseSettings::Url(db.url.clone().into())).unwrap()
}

/// The schema as the catalogs describe it, one line per column, index,
/// constraint and sequence, plus `leader_state`'s row; refinery's history
/// table left out.
const SCHEMA_LINES: [&str; 5] = [
    "SELECT format('column %s.%s #%s %s nullable=%s default=%s identity=%s %s', \
            table_name, column_name, ordinal_position, data_type, is_nullable, \
            column_default, is_identity, identity_generation) \
       FROM information_schema.columns \
      WHERE table_schema = 'public' AND table_name <> 'refinery_schema_history' \
      ORDER BY table_name, ordinal_position",
    "SELECT 'index ' || indexdef FROM pg_indexes \
      WHERE schemaname = 'public' AND tablename <> 'refinery_schema_history' \
      ORDER BY indexname",
    "SELECT format('constraint %s.%s %s %s', conrelid::regclass, conname, contype, \
                   pg_get_constraintdef(oid)) \
       FROM pg_constraint \
      WHERE connamespace = 'public'::regnamespace \
        AND conrelid::regclass::text <> 'refinery_schema_history' \
      ORDER BY conrelid::regclass::text, conname",
    "SELECT format('sequence %s %s start=%s by=%s', sequencename, data_type, start_value, \
                   increment_by) \
       FROM pg_sequences WHERE schemaname = 'public' ORDER BY sequencename",
    "SELECT format('leader_state %s %s %s %s', id, epoch, holder, clean) FROM leader_state",
];

async fn schema(db: &TestDb) -> Vec<String> {
    let client = db.client().await;
    let mut lines = Vec::new();
    for sql in SCHEMA_LINES {
        for row in client.query(sql, &[]).await.unwrap() {
            lines.push(row.get(0));
        }
    }
    lines
}

/// Fails with the lines that differ, not two lists of fifty.
fn assert_same_schema(actual: &[String], expected: &[String], what: &str) {
    let missing: Vec<&String> = expected.iter().filter(|l| !actual.contains(l)).collect();
    let extra: Vec<&String> = actual.iter().filter(|l| !expected.contains(l)).collect();
    assert!(
        missing.is_empty() && extra.is_empty() && actual.len() == expected.len(),
        "{what}: the schema differs from the migrations'\n  missing: {missing:#?}\n  extra: {extra:#?}"
    );
}

/// Versions refinery recorded as applied.
async fn history(db: &TestDb) -> Vec<i32> {
    db.client()
        .await
        .query(
            "SELECT version FROM refinery_schema_history ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// A fresh database, migrated.
async fn migrated() -> TestDb {
    let db = TestDb::create().await;
    storage::migrate(&pool(&db)).await.unwrap();
    db
}

#[tokio::test]
async fn the_migrations_build_the_schema_of_init_sql_and_apply_cleanly_over_it() {
    let from_migrations = migrated().await;
    let expected = schema(&from_migrations).await;
    assert!(
        expected.iter().any(|l| l.contains("tasks.last_message_id")),
        "{expected:#?}"
    );
    assert_eq!(history(&from_migrations).await.len() as i64, MIGRATIONS);

    // The compose stack's database: init.sql at first start, then the bot.
    let from_init = TestDb::create().await;
    from_init
        .client()
        .await
        .batch_execute(INIT_SQL)
        .await
        .unwrap();
    assert_same_schema(&schema(&from_init).await, &expected, "init.sql");
    storage::migrate(&pool(&from_init)).await.unwrap();
    assert_same_schema(&schema(&from_init).await, &expected, "init.sql, migrated");
    assert_eq!(history(&from_init).await.len() as i64, MIGRATIONS);
}

#[tokio::test]
async fn a_database_of_an_earlier_version_migrates_and_keeps_its_rows() {
    let expected = schema(&migrated().await).await;
    for (version, sql) in EARLIER_VERSIONS {
        let db = TestDb::create().await;
        let client = db.client().await;
        client.batch_execute(sql).await.unwrap();
        client
            .batch_execute(
                "INSERT INTO tasks (channel_id, guild_id, user_id, target, last_sent) \
                     VALUES (1001, 2002, 3003, 50, 7); \
                 INSERT INTO command_errors (kind, channel_id, error, task_id) \
                     VALUES ('busy_channel', 1001, 'refused', 1);",
            )
            .await
            .unwrap();

        storage::migrate(&pool(&db)).await.unwrap();

        assert_same_schema(&schema(&db).await, &expected, version);
        assert_eq!(history(&db).await.len() as i64, MIGRATIONS, "{version}");
        let row = client
            .query_one(
                "SELECT id, channel_id, guild_id, user_id, target, last_sent, status, source, \
                        last_message_id FROM tasks",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, i64>("id"), 1, "{version}");
        assert_eq!(row.get::<_, i64>("channel_id"), 1001);
        assert_eq!(row.get::<_, Option<i64>>("guild_id"), Some(2002));
        assert_eq!(row.get::<_, i64>("user_id"), 3003);
        assert_eq!(row.get::<_, i32>("target"), 50);
        assert_eq!(row.get::<_, i32>("last_sent"), 7);
        assert_eq!(row.get::<_, String>("status"), "running");
        assert_eq!(row.get::<_, String>("source"), "mention");
        assert_eq!(row.get::<_, Option<i64>>("last_message_id"), None);
        let task_id: Option<i64> = client
            .query_one("SELECT task_id FROM command_errors", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(task_id, Some(1), "{version}");
        // The resume query reads it.
        let running = PgStore::new(pool(&db)).running().await.unwrap();
        assert_eq!(running.len(), 1, "{version}");
        assert_eq!((running[0].id, running[0].last_sent), (1, 7));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_starting_at_once_migrate_once() {
    let db = TestDb::create().await;
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let pool = pool(&db);
            tokio::spawn(async move { storage::migrate(&pool).await })
        })
        .collect();
    for start in starts {
        start.await.unwrap().unwrap();
    }
    assert_eq!(history(&db).await.len() as i64, MIGRATIONS);
}

fn new_task(channel_id: u64) -> NewTask {
    NewTask {
        channel_id,
        guild_id: Some(7),
        user_id: 9,
        target: 10,
        source: "slash",
    }
}

fn progress(id: i64, last_sent: u16, message_id: Option<u64>) -> Batch {
    let mut batch = Batch::default();
    batch.progress.insert(
        id,
        Progress {
            last_sent,
            message_id,
        },
    );
    batch
}

fn end(id: i64, status: TaskStatus, last_sent: u16) -> Batch {
    let mut batch = Batch::default();
    batch.ends.insert(id, End { status, last_sent });
    batch
}

/// (status, last_sent, last_message_id, finished) of task `id`.
async fn task(db: &TestDb, id: i64) -> (String, i32, Option<i64>, bool) {
    let r = db
        .client()
        .await
        .query_one(
            "SELECT status, last_sent, last_message_id, finished_at IS NOT NULL \
               FROM tasks WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1), r.get(2), r.get(3))
}

#[tokio::test]
async fn one_running_countdown_per_channel_is_the_database_s_rule() {
    let db = migrated().await;
    let store = PgStore::new(pool(&db));
    let first = store.insert(&new_task(10)).await.unwrap();
    assert_eq!(
        (first.channel_id, first.target, first.last_sent),
        (10, 10, 0)
    );
    assert!(matches!(
        store.insert(&new_task(10)).await,
        Err(StorageError::ChannelBusy)
    ));
    assert!(store.insert(&new_task(11)).await.is_ok(), "another channel");

    store
        .write(None, &end(first.id, TaskStatus::Finished, 10))
        .await
        .unwrap();
    let next = store.insert(&new_task(10)).await.unwrap();
    assert_ne!(next.id, first.id);
    let source: String = db
        .client()
        .await
        .query_one("SELECT source FROM tasks WHERE id = $1", &[&next.id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(source, "slash");
}

#[tokio::test]
async fn progress_only_moves_forward_and_an_end_is_final() {
    let db = migrated().await;
    let store = PgStore::new(pool(&db));
    let id = store.insert(&new_task(10)).await.unwrap().id;

    store
        .write(None, &progress(id, 5, Some(500)))
        .await
        .unwrap();
    store
        .write(None, &progress(id, 3, Some(300)))
        .await
        .unwrap();
    assert_eq!(task(&db, id).await, ("running".into(), 5, Some(500), false));
    // A number whose message id Discord did not give keeps the last known.
    store.write(None, &progress(id, 6, None)).await.unwrap();
    assert_eq!(task(&db, id).await, ("running".into(), 6, Some(500), false));

    store
        .write(None, &end(id, TaskStatus::Stopped, 4))
        .await
        .unwrap();
    assert_eq!(task(&db, id).await, ("stopped".into(), 6, Some(500), true));
    store
        .write(None, &progress(id, 8, Some(800)))
        .await
        .unwrap();
    store
        .write(None, &end(id, TaskStatus::Failed, 9))
        .await
        .unwrap();
    assert_eq!(task(&db, id).await, ("stopped".into(), 6, Some(500), true));
}

#[tokio::test]
async fn a_deposed_leader_s_writes_change_nothing() {
    let db = migrated().await;
    let store = PgStore::new(pool(&db));
    let id = store.insert(&new_task(10)).await.unwrap().id;
    db.client()
        .await
        .batch_execute("UPDATE leader_state SET epoch = 2")
        .await
        .unwrap();

    store
        .write(Some(1), &progress(id, 5, Some(5)))
        .await
        .unwrap();
    store
        .write(Some(1), &end(id, TaskStatus::Finished, 10))
        .await
        .unwrap();
    assert_eq!(task(&db, id).await, ("running".into(), 0, None, false));

    store
        .write(Some(2), &progress(id, 5, Some(5)))
        .await
        .unwrap();
    assert_eq!(task(&db, id).await, ("running".into(), 5, Some(5), false));
}

#[tokio::test]
async fn resume_reads_running_rows_and_expires_idle_ones() {
    let db = migrated().await;
    let store = PgStore::new(pool(&db));
    let idle = store.insert(&new_task(10)).await.unwrap().id;
    let fresh = store.insert(&new_task(11)).await.unwrap().id;
    let ended = store.insert(&new_task(12)).await.unwrap().id;
    store
        .write(None, &end(ended, TaskStatus::Finished, 10))
        .await
        .unwrap();
    db.client()
        .await
        .execute(
            "UPDATE tasks SET updated_at = now() - interval '2 hours' WHERE id = $1",
            &[&idle],
        )
        .await
        .unwrap();

    let expired = store.expire_idle(Duration::from_secs(3600)).await.unwrap();
    assert_eq!(expired.iter().map(|r| r.id).collect::<Vec<_>>(), [idle]);
    assert_eq!(task(&db, idle).await.0, "expired");
    let running = store.running().await.unwrap();
    assert_eq!(running.iter().map(|r| r.id).collect::<Vec<_>>(), [fresh]);
    assert_eq!(running[0].channel_id, 11);
    assert_eq!(running[0].guild_id, Some(7));
}

fn command_error(task_id: Option<i64>, content: &str) -> CommandError {
    CommandError {
        kind: "invalid",
        channel_id: 10,
        guild_id: None,
        user_id: Some(9),
        content: Some(content.into()),
        error: "no_number".into(),
        task_id,
        at: Utc::now(),
    }
}

#[tokio::test]
async fn error_rows_are_written_and_those_refused_are_reported_not_retried() {
    let db = migrated().await;
    let store = PgStore::new(pool(&db));
    let mut batch = Batch::default();
    batch.general_errors.push(GeneralError {
        context: "gateway",
        error: "closed".into(),
        at: Utc::now(),
    });
    // A NUL, which PostgreSQL's text cannot hold, and a long command.
    let long = format!("count to 5\u{0}{}", "x".repeat(500));
    batch.command_errors.push(command_error(None, &long));
    let written = store.write(None, &batch).await.unwrap();
    assert!(written.refused.is_empty(), "{:?}", written.refused);
    let client = db.client().await;
    let content: String = client
        .query_one("SELECT content FROM command_errors", &[])
        .await
        .unwrap()
        .get(0);
    assert!(content.starts_with("count to 5\u{fffd}x"), "{content:?}");
    assert_eq!(content.chars().count(), storage::postgres::CONTENT_LIMIT);

    // A task an operator deleted: the foreign key refuses the row.
    let mut batch = Batch::default();
    batch.command_errors.push(command_error(Some(404), "stop"));
    batch.general_errors.push(GeneralError {
        context: "resume",
        error: "later".into(),
        at: Utc::now(),
    });
    let written = store.write(None, &batch).await.unwrap();
    assert_eq!(written.refused.len(), 1, "{:?}", written.refused);
    assert_eq!(
        (written.refused[0].table, written.refused[0].rows),
        ("command_errors", 1)
    );
    let counts = client
        .query_one(
            "SELECT (SELECT count(*) FROM command_errors), (SELECT count(*) FROM general_errors)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!((counts.get::<_, i64>(0), counts.get::<_, i64>(1)), (1, 2));
}

#[tokio::test]
async fn ping_tells_whether_the_database_answers() {
    let db = migrated().await;
    assert!(PgStore::new(pool(&db)).ping().await.is_ok());
    let missing = db.url.replace(&db.name, "countdown_no_such_database");
    let unreachable = storage::pool(&DatabaseSettings::Url(missing.into())).unwrap();
    assert!(PgStore::new(unreachable).ping().await.is_err());
}
