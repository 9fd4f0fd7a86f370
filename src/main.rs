//! The `countdown` binary: reads `config.env` and the environment, starts
//! the bot, exits 0 after a clean shutdown.

use std::process::ExitCode;

use secrecy::ExposeSecret;

use countdown::config::Settings;

/// glibc `malloc` was a fifth of the bot's CPU per number under load
/// (many small, short-lived allocations per request); see BENCHMARKS.md.
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
