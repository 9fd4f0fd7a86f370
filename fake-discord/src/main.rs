//! `fake-discord --addr 127.0.0.1:PORT [--public-url URL] [--discord-limits] [--fixed-windows]
//! [--nonce-window SECS] [--demo-traffic [--demo-every SECS]]`: runs the fake until
//! SIGINT/SIGTERM. Prints the base URL as the first line of stdout; logs
//! (tracing, `RUST_LOG`, default `info`) go to stderr. Drive it with the
//! `/_test` control API, or let `--demo-traffic` talk to the bot that
//! connects (`fake_discord::demo`), printing what the channels show.

use std::io::Write as _;
use std::net::SocketAddr;

use anyhow::Context as _;
use fake_discord::demo::{self, DemoTraffic};
use fake_discord::{BucketModel, FakeConfig, FakeDiscord};

const USAGE: &str = "usage: fake-discord [--addr HOST:PORT] [--public-url URL] [--discord-limits] [--fixed-windows]\n\
                    [--nonce-window SECS] [--demo-traffic [--demo-every SECS]]\n\
  --addr HOST:PORT    where to listen (default 127.0.0.1:0, an ephemeral port)\n\
  --public-url URL    the URL the bot reaches the fake at (e.g. http://fake-discord:3000),\n\
                      announced as the gateway's; default http:// + the bound address\n\
  --discord-limits    enforce 50 requests/s globally and 5 messages per 5 s per channel\n\
  --fixed-windows     channel buckets as fixed windows opening at their first request\n\
                      (Discord before 2022) instead of leaky buckets (Discord now)\n\
  --nonce-window SECS how long an enforced nonce deduplicates (default 300)\n\
  --demo-traffic      once a bot connects, ask it for a countdown every 15 s in the first\n\
                      channel of 3 guilds, with a `status`, a lost permission (the\n\
                      countdown fails), a `stop`, Discord's 502s and refused commands;\n\
                      print what the channels show, and the alerts posted to the demo's\n\
                      webhook (/api/webhooks/900000000000000100/demo-alerts)\n\
  --demo-every SECS   time between two rounds of --demo-traffic (default 15)";

struct Args {
    config: FakeConfig,
    demo: bool,
    demo_every: Option<std::time::Duration>,
}

fn seconds(flag: &str, v: &str) -> anyhow::Result<std::time::Duration> {
    v.parse()
        .ok()
        .filter(|s: &f64| s.is_finite() && *s >= 0.0)
        .map(std::time::Duration::from_secs_f64)
        .with_context(|| format!("{flag}: not a number of seconds: {v}"))
}

fn parse_args() -> anyhow::Result<Args> {
    let mut config = FakeConfig::default();
    let mut demo = false;
    let mut demo_every = None;
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
            "--public-url" => {
                let v = args.next().context("--public-url needs a value")?;
                if !(v.starts_with("http://") || v.starts_with("https://")) {
                    anyhow::bail!("--public-url: not an http:// or https:// URL: {v}");
                }
                config.public_url = Some(v);
            }
            "--demo-traffic" => demo = true,
            "--demo-every" => {
                let v = args.next().context("--demo-every needs a value")?;
                demo_every = Some(seconds("--demo-every", &v)?);
            }
            "--discord-limits" => config = config.with_discord_limits(),
            "--fixed-windows" => config.channel_model = BucketModel::FixedWindow,
            "--nonce-window" => {
                let v = args.next().context("--nonce-window needs a value")?;
                config.nonce_ttl = seconds("--nonce-window", &v)?;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    if demo_every.is_some() && !demo {
        anyhow::bail!("--demo-every needs --demo-traffic\n{USAGE}");
    }
    Ok(Args {
        config,
        demo,
        demo_every,
    })
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
    let args = parse_args()?;
    let fake = FakeDiscord::start(args.config).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", fake.base_url())?;
        out.flush()?;
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let traffic = async {
        if !args.demo {
            return std::future::pending().await;
        }
        let mut traffic = DemoTraffic::new(&fake);
        if let Some(every) = args.demo_every {
            traffic.every = every;
        }
        demo::run(&fake, &traffic, |line| println!("{line}")).await;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = traffic => {}
    }
    tracing::info!("fake-discord shutting down");
    drop(fake);
    Ok(())
}
