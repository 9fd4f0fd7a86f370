//! The `countdown` binary: reads `config.env` and the environment, starts
//! the bot, exits 0 after a clean shutdown.

use std::process::ExitCode;

use secrecy::ExposeSecret;

use countdown::config::Settings;

/// mimalloc, not glibc's `malloc`: the bot makes many small, short-lived
/// allocations per request, and under load glibc's `malloc` takes a fifth
/// of its CPU per number (at 5,000 countdowns, 0.89 of the numbers due got
/// out per second). See docs/timing.md, "Under load".
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
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
