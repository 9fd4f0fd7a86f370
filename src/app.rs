//! Start-up and shutdown: wires config, storage, the scheduler, the Discord
//! adapter and the HTTP server together, and takes them down in order.
//!
//! The process first waits to be the leader (see [`crate::leader`]); a
//! single instance is the leader at once. Each term as leader builds the
//! Discord side afresh; losing leadership ends the term and the instance
//! goes back to waiting as a standby.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use deadpool_postgres::Pool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::commands::{self, CommandService};
use crate::config::{Settings, Shards};
use crate::countdown::{Limits, Scheduler};
use crate::discord::handler::Handler;
use crate::discord::interactions::Interactions;
use crate::discord::refusal::Refusals;
use crate::discord::registration::Registration;
use crate::discord::sender::DiscordSink;
use crate::discord::{self};
use crate::leader::{Elector, Term};
use crate::metrics::{KnownLabels, Metrics};
use crate::resume::Resumer;
use crate::send::{Delivery, Pacer, RetryPolicy, SendError};
use crate::server::{self, Readiness};
use crate::storage::{self, Journal, PgStore, TaskStatus, TaskStore};

/// How often progress is written (one batched statement per flush).
const JOURNAL_INTERVAL: Duration = Duration::from_millis(250);
/// Shutdown budget for countdowns' in-flight sends; the whole exit stays under 5 s.
const SEND_GRACE: Duration = Duration::from_secs(3);

/// Runs the bot until `shutdown` is cancelled (or the gateway fails).
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let metrics = Metrics::new().context("cannot register metrics")?;
    metrics.seed(&known_labels());
    metrics.rate_budget.set(i64::from(settings.global_rate));
    metrics.max_active.set(settings.max_active as i64);
    metrics
        .max_active_per_guild
        .set(settings.max_active_per_guild as i64);
    let pool = storage::pool(&settings.database)?;
    let store: Arc<dyn TaskStore> = Arc::new(PgStore::new(pool.clone()));
    let readiness = Readiness::new(store.clone(), metrics.clone());

    let listener = TcpListener::bind(settings.metrics_addr)
        .await
        .with_context(|| format!("cannot listen on METRICS_ADDR {}", settings.metrics_addr))?;
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics, /healthz and /readyz");
    let server_stop = CancellationToken::new();
    let server = tokio::spawn(server::serve(
        listener,
        server::router(metrics.clone(), readiness.clone()),
        server_stop.clone(),
    ));

    let outcome = if apply_schema(&pool, &metrics, &shutdown).await {
        let elector = Elector::new(settings.database.pg_config()?, metrics.clone());
        lead_while_elected(
            &settings, &pool, &store, &metrics, &readiness, &elector, &shutdown,
        )
        .await
    } else {
        Ok(())
    };

    readiness.set_stopping();
    server_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_millis(200), server).await;
    tracing::info!("stopped");
    outcome
}

/// Campaign, lead, and campaign again after losing leadership, until shutdown.
async fn lead_while_elected(
    settings: &Settings,
    pool: &Pool,
    store: &Arc<dyn TaskStore>,
    metrics: &Metrics,
    readiness: &Readiness,
    elector: &Elector,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    // Outlives the terms: rows a term could not write go to the next one.
    let journal = Journal::new(store.clone(), metrics.clone(), None);
    let mut lost_at: Option<chrono::DateTime<chrono::Utc>> = None;
    loop {
        readiness.set_leader(false);
        let Some(term) = elector.campaign(shutdown).await else {
            return Ok(());
        };
        if let Some(at) = lost_at.take() {
            // The lost term is a failure like any other: a row (a database
            // outage shows up only here when no write failed before it).
            journal.general_error(
                "leadership",
                format!(
                    "leadership lost at {} (lock connection dropped); leading again",
                    at.to_rfc3339()
                ),
            );
        }
        readiness.set_leader(true);
        let ended = run_term(
            settings, pool, metrics, readiness, &term, &journal, shutdown,
        )
        .await;
        readiness.set_leader(false);
        match ended {
            Ok(TermEnd::Shutdown) => {
                term.step_down(true).await;
                return Ok(());
            }
            Ok(TermEnd::LostLeadership) => {
                lost_at = Some(chrono::Utc::now());
                term.step_down(false).await;
                tracing::warn!("leadership lost: countdowns stopped here; waiting as a standby");
            }
            Err(error) => {
                term.step_down(true).await;
                return Err(error);
            }
        }
    }
}

enum TermEnd {
    Shutdown,
    LostLeadership,
}

/// One term as leader: the Discord side, the scheduler and the journal,
/// taken down in order when the term ends.
async fn run_term(
    settings: &Settings,
    pool: &Pool,
    metrics: &Metrics,
    readiness: &Readiness,
    term: &Term,
    journal: &Journal,
    shutdown: &CancellationToken,
) -> anyhow::Result<TermEnd> {
    // Countdowns and replies stop on shutdown and on losing leadership.
    let stop_sending = CancellationToken::new();
    let journal = journal.for_epoch(term.epoch);
    let journal_stop = CancellationToken::new();
    let journal_task = tokio::spawn(journal.clone().run(JOURNAL_INTERVAL, journal_stop.clone()));

    // The leader deletes what has aged past RETENTION; one instance is enough.
    tokio::spawn(storage::retention::run(
        pool.clone(),
        metrics.clone(),
        settings.retention,
        stop_sending.child_token(),
    ));

    let Wired {
        reqwest,
        pacer,
        scheduler,
        handler,
    } = wire(settings, metrics, readiness, term, &journal, &stop_sending)?;

    let mut client =
        discord::client::gateway_client(discord::client::http(settings, reqwest), handler)
            .await
            .context("cannot build the Discord client")?;
    let shard_manager = client.shard_manager.clone();
    // serenity asked `GET /gateway` while building the client, and asks
    // `GET /gateway/bot` before it connects with SHARDS=auto: both outside
    // the pacer.
    pacer.book_external();
    if settings.shards == Shards::Auto {
        pacer.book_external();
    }
    let mut refusals = Refusals::subscribe();
    let shards = settings.shards;
    let mut gateway =
        tokio::spawn(async move { discord::client::start(&mut client, shards).await });
    tracing::info!(
        api = settings
            .discord_api_url
            .as_deref()
            .unwrap_or("https://discord.com"),
        shards = %settings.shards,
        "connecting to Discord"
    );

    let outcome = tokio::select! {
        _ = shutdown.cancelled() => Ok(TermEnd::Shutdown),
        _ = term.lost.cancelled() => Ok(TermEnd::LostLeadership),
        ended = &mut gateway => match ended {
            Ok(Ok(())) => Err(anyhow!("the Discord gateway closed")),
            Ok(Err(e)) => Err(anyhow!(e).context("the Discord gateway failed")),
            Err(e) => Err(anyhow!(e).context("the gateway task panicked")),
        },
        // No retry fixes these, and serenity's retries would each spend one
        // of the day's session starts.
        refusal = refusals.next() => {
            let advice = refusal.advice(settings.shards);
            journal.general_error("gateway", &advice);
            Err(anyhow!(advice))
        }
    };

    wind_down(
        &stop_sending,
        readiness,
        &scheduler,
        journal_stop,
        journal_task,
        &shard_manager,
    )
    .await;
    gateway.abort();
    outcome
}

/// The services of one term, wired together.
struct Wired {
    /// The HTTP client the gateway's serenity client shares.
    reqwest: reqwest::Client,
    pacer: Arc<Pacer>,
    scheduler: Scheduler,
    handler: Handler,
}

/// Wires one term's services: the sink and the one pacer every request
/// goes through, the scheduler, the command service, the resumer and the
/// gateway's handler.
fn wire(
    settings: &Settings,
    metrics: &Metrics,
    readiness: &Readiness,
    term: &Term,
    journal: &Journal,
    stop_sending: &CancellationToken,
) -> anyhow::Result<Wired> {
    let reqwest = discord::client::reqwest_client(settings.http_timeout)
        .context("cannot build the HTTP client")?;
    let sink = Arc::new(DiscordSink::new(
        Arc::new(discord::client::http(settings, reqwest.clone())),
        reqwest.clone(),
    ));
    let pacer = Arc::new(Pacer::new(settings.global_rate));
    let delivery = |give_up_after| {
        Delivery::new(
            sink.clone(),
            pacer.clone(),
            metrics.clone(),
            RetryPolicy {
                give_up_after,
                ..RetryPolicy::default()
            },
            term.fence.clone(),
        )
    };
    let limits = Limits {
        max_active: settings.max_active,
        max_active_per_guild: settings.max_active_per_guild,
    };
    let scheduler = Scheduler::new(
        limits,
        delivery(RetryPolicy::default().give_up_after),
        journal.clone(),
        metrics.clone(),
        stop_sending.child_token(),
    );
    let commands = CommandService::new(
        scheduler.clone(),
        journal.clone(),
        metrics.clone(),
        delivery(Duration::from_secs(30)),
        limits,
        stop_sending.clone(),
    )
    .with_stop_policy(settings.stop_policy);
    let resumer = Resumer::new(
        scheduler.clone(),
        journal.clone(),
        metrics.clone(),
        settings.resume_max_age,
        settings.resume_check_after,
        stop_sending.clone(),
    );
    let handler = Handler {
        interactions: Interactions::new(commands.clone(), metrics.clone()),
        registration: Registration::new(
            settings.command_guild_id,
            pacer.clone(),
            metrics.clone(),
            journal.clone(),
        ),
        commands,
        resumer,
        readiness: readiness.clone(),
        pacer: pacer.clone(),
    };

    Ok(Wired {
        reqwest,
        pacer,
        scheduler,
        handler,
    })
}

/// Ends a term in order: stop taking commands, let in-flight sends finish,
/// record progress, close the gateway.
async fn wind_down(
    stop_sending: &CancellationToken,
    readiness: &Readiness,
    scheduler: &Scheduler,
    journal_stop: CancellationToken,
    journal_task: tokio::task::JoinHandle<()>,
    shard_manager: &serenity::gateway::ShardManager,
) {
    stop_sending.cancel();
    readiness.gateway_closed();
    if !scheduler.shutdown(SEND_GRACE).await {
        tracing::warn!("some sends did not finish in time; they resume at the next start");
    }
    journal_stop.cancel();
    if tokio::time::timeout(Duration::from_secs(1), journal_task)
        .await
        .is_err()
    {
        tracing::warn!(
            "last progress write timed out; resume will re-send (nonces prevent duplicates)"
        );
    }
    if tokio::time::timeout(Duration::from_millis(500), shard_manager.shutdown_all())
        .await
        .is_err()
    {
        tracing::warn!("gateway did not close in time");
    }
}

/// Applies the schema, retrying while the database is down. False if
/// shutdown came first.
async fn apply_schema(pool: &Pool, metrics: &Metrics, shutdown: &CancellationToken) -> bool {
    let mut backoff = Duration::from_millis(250);
    let mut logged = false;
    loop {
        match storage::migrate(pool).await {
            Ok(()) => {
                tracing::info!("database schema ready");
                return true;
            }
            Err(error) => {
                metrics.db_errors.inc();
                if !logged {
                    tracing::error!(%error, "cannot prepare the database; retrying until it answers");
                    logged = true;
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Every value of the metrics' bounded labels, from the enums that own them.
fn known_labels() -> KnownLabels {
    let mut known = KnownLabels {
        send_error_kinds: SendError::KINDS.to_vec(),
        end_statuses: TaskStatus::FINAL.map(TaskStatus::as_str).to_vec(),
        retention_tables: storage::retention::TABLES.to_vec(),
        interaction_outcomes: discord::interactions::AnswerOutcome::ALL
            .map(discord::interactions::AnswerOutcome::label)
            .to_vec(),
        ..KnownLabels::default()
    };
    commands::known_labels(&mut known);
    known
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_value_of_the_bot_is_a_series_from_the_start() {
        let metrics = Metrics::new().unwrap();
        metrics.seed(&known_labels());
        let text = metrics.render().unwrap();
        for series in [
            "countdown_commands_total{command=\"help\"} 0",
            "countdown_commands_by_source_total{command=\"help\",source=\"dm\"} 0",
            "countdown_commands_by_source_total{command=\"stop\",source=\"button\"} 0",
            "countdown_invalid_commands_total{reason=\"not_a_number\"} 0",
            "countdown_wrong_commands_total{reason=\"busy_bot\"} 0",
            "countdown_wrong_commands_total{reason=\"not_allowed\"} 0",
            "countdown_send_errors_total{kind=\"invalid_response\"} 0",
            "countdown_countdowns_ended_total{status=\"expired\"} 0",
            "countdown_retention_deleted_total{table=\"general_errors\"} 0",
            "countdown_interaction_answers_total{outcome=\"failed\"} 0",
        ] {
            assert!(text.contains(series), "missing {series}");
        }
        // Pairs that cannot happen are not drawn as series.
        assert!(!text.contains("command=\"help\",source=\"button\""));
        assert!(!text.contains("command=\"help\",source=\"slash\""));
    }
}
