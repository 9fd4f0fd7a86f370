//! `fake-discord --addr 127.0.0.1:PORT [--discord-limits] [--fixed-windows] [--nonce-window SECS]`: runs the fake
//! until SIGINT/SIGTERM. Prints the base URL as the first line of stdout;
//! logs (tracing, `RUST_LOG`, default `info`) go to stderr. Drive it with
//! the `/_test` control API.

use std::io::Write as _;
use std::net::SocketAddr;

use anyhow::Context as _;
use fake_discord::{BucketModel, FakeConfig, FakeDiscord};

const USAGE: &str = "usage: fake-discord [--addr HOST:PORT] [--discord-limits] [--fixed-windows] [--nonce-window SECS]\n\
  --addr HOST:PORT    where to listen (default 127.0.0.1:0, an ephemeral port)\n\
  --discord-limits    enforce 50 requests/s globally and 5 messages per 5 s per channel\n\
  --fixed-windows     channel buckets as fixed windows opening at their first request\n\
                      (Discord before 2022) instead of leaky buckets (Discord now)\n\
  --nonce-window SECS how long an enforced nonce deduplicates (default 300)";

fn parse_args() -> anyhow::Result<FakeConfig> {
    let mut config = FakeConfig::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--addr" => {
                let v = args.next().context("--addr needs a value")?;
                config.addr = v
                    .parse::<SocketAddr>()
                    .with_context(|| format!("--addr: not an address: {v}"))?;
            }
            a if a.starts_with("--addr=") => {
                let v = &a["--addr=".len()..];
                config.addr = v
                    .parse()
                    .with_context(|| format!("--addr: not an address: {v}"))?;
            }
            "--discord-limits" => config = config.with_discord_limits(),
            "--fixed-windows" => config.channel_model = BucketModel::FixedWindow,
            "--nonce-window" => {
                let v = args.next().context("--nonce-window needs a value")?;
                let secs: f64 = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s >= 0.0)
                    .with_context(|| format!("--nonce-window: not a number of seconds: {v}"))?;
                config.nonce_ttl = std::time::Duration::from_secs_f64(secs);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    Ok(config)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = parse_args()?;
    let fake = FakeDiscord::start(config).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", fake.base_url())?;
        out.flush()?;
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("fake-discord shutting down");
    drop(fake);
    Ok(())
}
