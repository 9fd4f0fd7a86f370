//! Start-up as an operator sees it: one clear line for a bad setting, a bot
//! that waits for its database instead of crashing, readiness that tells why.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

fn run_with(env: &[(&str, &str)]) -> (i32, String) {
    let dir = std::env::temp_dir();
    let out = Command::new(env!("CARGO_BIN_EXE_countdown"))
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), stderr)
}

#[test]
fn a_missing_or_malformed_setting_stops_the_bot_with_one_line() {
    let (code, stderr) = run_with(&[("DATABASE_URL", "postgres://x@127.0.0.1/db")]);
    assert_eq!(code, 2);
    assert_eq!(stderr.trim(), "configuration: DISCORD_TOKEN is not set");

    let (code, stderr) = run_with(&[
        ("DISCORD_TOKEN", TOKEN),
        ("DATABASE_URL", "postgres://x@127.0.0.1/db"),
        ("MAX_ACTIVE", "lots"),
    ]);
    assert_eq!(code, 2);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("MAX_ACTIVE"), "{stderr}");
    assert!(!stderr.contains(TOKEN));

    let (code, stderr) = run_with(&[("DISCORD_TOKEN", TOKEN)]);
    assert_eq!(code, 2);
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_its_database_the_bot_waits_is_not_ready_and_still_stops_cleanly() {
    let fake = fake().await;
    let db = TestDb::create().await;
    // A database that does not exist: every connection fails.
    let missing = db.url.replace(&db.name, "countdown_no_such_database");
    let mut bot = Bot::start(&fake, &db, &[("DATABASE_URL", missing.as_str())]);

    eventually(
        "/healthz 200",
        Duration::from_secs(10),
        async || bot.get("/healthz").await.ok(),
        |answer| matches!(answer, Some((200, _))),
    )
    .await;
    let (status, body) = bot.get("/readyz").await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("not ready"), "{body}");
    assert_eq!(
        fake.identify_count(),
        0,
        "no gateway before the database answers"
    );
    bot.wait_metric("countdown_db_errors_total", |v| v >= 1.0)
        .await;
    let (exit, took) = bot.signal_and_wait(Signal::SIGTERM, Duration::from_secs(5));
    assert!(exit.success(), "{exit:?}");
    assert!(took < Duration::from_secs(5));
    assert!(bot.logs().contains("cannot prepare the database"));
    bot.assert_logs_clean();
}

/// Applying the schema to a database that has it already says nothing:
/// PostgreSQL's "already exists, skipping" notices stay out of the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_start_logs_no_schema_notices() {
    let fake = fake().await;
    let db = TestDb::create().await;
    for _ in 0..2 {
        let mut bot = Bot::start_ready(&fake, &db, &[]).await;
        let (exit, _) = bot.signal_and_wait(Signal::SIGTERM, Duration::from_secs(5));
        assert!(exit.success(), "{exit:?}");
        let logs = bot.logs();
        assert!(logs.contains("database schema ready"), "{logs}");
        assert_eq!(count_lines(&logs, "already exists"), 0, "{logs}");
        assert_eq!(count_lines(&logs, "NOTICE"), 0, "{logs}");
    }
}

/// The bot as the stack runs it: its database role owns its database and
/// is no superuser, and its secrets come from files (`*_FILE`), not from
/// the environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_runs_as_a_role_that_is_no_superuser_with_secrets_from_files() {
    let fake = fake().await;
    let db = TestDb::create().await;
    let role = format!("{}_bot", db.name);
    let admin = db.client().await;
    // Names made here from the test's own database name, not input.
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD 'bot-password'; \
             ALTER DATABASE {} OWNER TO {role};",
            db.name
        ))
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!("{role}-secrets"));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let url_file = dir.join("database-url");
    let at = db.url.find('@').expect("a user in the test database URL");
    let url = format!("postgres://{role}:bot-password{}", &db.url[at..]);
    std::fs::write(&url_file, &url).unwrap();

    let env = [
        ("DISCORD_TOKEN", ""),
        ("DISCORD_TOKEN_FILE", token_file.to_str().unwrap()),
        ("DATABASE_URL", ""),
        ("DATABASE_URL_FILE", url_file.to_str().unwrap()),
    ];
    let mut bot = Bot::start_ready(&fake, &db, &env).await;
    let ch = channel(&fake, 0, 0);
    say(&fake, ch, &mention(&fake, "count to 3")).await;
    let msgs = wait_messages(&fake, ch, 3).await;
    assert_eq!(numbers(&msgs), one_to(3));
    db.wait_tasks("finished row", |t| t == [("finished".into(), 3, 3)])
        .await;
    let owner: String = admin
        .query_one(
            "SELECT tableowner::text FROM pg_tables WHERE tablename = 'tasks'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, role, "the bot created its tables as its own role");
    let (exit, _) = bot.signal_and_wait(Signal::SIGTERM, Duration::from_secs(5));
    assert!(exit.success());
    assert!(!bot.logs().contains(TOKEN));
    assert!(!bot.logs().contains("bot-password"));

    std::fs::remove_dir_all(&dir).unwrap();
    admin
        .batch_execute(&format!(
            "REASSIGN OWNED BY {role} TO CURRENT_USER; DROP OWNED BY {role};"
        ))
        .await
        .unwrap();
    drop(admin);
    let (cluster, conn) = tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    cluster
        .batch_execute(&format!("DROP ROLE {role}"))
        .await
        .unwrap();
}
