//! The `countdown` binary: reads `config.env` and the environment, starts
//! the bot, exits 0 after a clean shutdown.

use std::process::ExitCode;
use std::time::Duration;

use secrecy::ExposeSecret;

use countdown::config::Settings;

/// mimalloc, not glibc's `malloc`: the bot makes many small, short-lived
/// allocations per request, and under load glibc's `malloc` takes a fifth
/// of its CPU per number (at 5,000 countdowns, 0.89 of the numbers due got
/// out per second). See docs/timing.md, "Under load".
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long the exit waits for the runtime's threads once the bot has
/// stopped. serenity 0.12's shard runner can spin without end on a
/// connection Discord closed (after a 4011, close code "sharding required"),
/// and the process must exit all the same.
const EXIT_GRACE: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run());
    runtime.shutdown_timeout(EXIT_GRACE);
    code
}

async fn run() -> ExitCode {
    match dotenvy::from_filename("config.env") {
        Ok(_) => {}
        Err(e) if e.not_found() => {}
        Err(e) => {
            eprintln!("configuration: cannot read config.env: {e}");
            return ExitCode::from(2);
        }
    }
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    countdown::telemetry::init(settings.log_format, settings.discord_token.expose_secret());
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(countdown::shutdown::on_signal(shutdown.clone()));
    match countdown::app::run(settings, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
