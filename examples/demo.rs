//! A local demo without Discord: starts the fake Discord, runs the bot
//! against it (in this process, the same code as the binary), sends a
//! scripted `count to 5` and prints what the channel shows.
//!
//! `cargo run --example demo` — uses `DATABASE_URL`, or a database
//! `countdown_demo` on the local PostgreSQL (created if missing).

use std::time::{Duration, Instant};

use anyhow::Context;
use countdown::config::Settings;
use fake_discord::{Author, FakeConfig, FakeDiscord};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let database_url = match std::env::var("DATABASE_URL") {
        Ok(url) => url,
        Err(_) => demo_database().await?,
    };
    let fake = FakeDiscord::start(FakeConfig::default()).await?;
    let settings = Settings::from_lookup(|key| match key {
        "DISCORD_TOKEN" => Some("demo-token-for-the-fake-discord".into()),
        "DATABASE_URL" => Some(database_url.clone()),
        "DISCORD_API_URL" => Some(fake.base_url()),
        "METRICS_ADDR" => Some("127.0.0.1:0".into()),
        _ => None,
    })?;
    if std::env::var_os("RUST_LOG").is_some() {
        countdown::telemetry::init(settings.log_format, "demo-token-for-the-fake-discord");
    }
    let shutdown = CancellationToken::new();
    let bot = tokio::spawn(countdown::app::run(settings, shutdown.clone()));

    fake.wait_ready(Duration::from_secs(20))
        .await
        .context("the bot did not connect to the fake Discord")?;
    let channel = fake.guilds()[0].channels[0];
    let command = format!("<@{}> count to 5", fake.bot_user_id());
    println!("#demo  user: {command}");
    fake.inject_message(channel, Author::user(42), &command)
        .await?;

    let start = Instant::now();
    let mut seen = 0;
    while seen < 5 {
        let messages = fake
            .wait_for_messages(channel, seen + 1, Duration::from_secs(10))
            .await?;
        for m in &messages[seen..] {
            println!(
                "#demo  countdown (+{:>5} ms): {}",
                start.elapsed().as_millis(),
                m.content
            );
        }
        seen = messages.len();
    }
    shutdown.cancel();
    bot.await??;
    println!("done: 5 numbers, one per second.");
    Ok(())
}

/// Creates `countdown_demo` on the local PostgreSQL if needed.
async fn demo_database() -> anyhow::Result<String> {
    let admin = "postgres://postgres@127.0.0.1:5432/postgres";
    let (client, conn) = tokio_postgres::connect(admin, tokio_postgres::NoTls)
        .await
        .context("no DATABASE_URL and no PostgreSQL on 127.0.0.1:5432")?;
    tokio::spawn(conn);
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_database WHERE datname = 'countdown_demo'",
            &[],
        )
        .await?
        .is_some();
    if !exists {
        client
            .batch_execute("CREATE DATABASE countdown_demo")
            .await?;
    }
    Ok("postgres://postgres@127.0.0.1:5432/countdown_demo".into())
}
