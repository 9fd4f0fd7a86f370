//! Leadership: several instances may share one database; exactly one (the
//! leader) connects to the gateway and sends.
//!
//! The leader holds a session-level advisory lock on a dedicated connection.
//! PostgreSQL releases it the moment that connection ends (a crash closes the
//! socket), so a standby blocked in `pg_advisory_lock` takes over at once,
//! with no lease to wait out. Each new leader bumps `leader_state.epoch`
//! (its fencing token).
//!
//! Fencing: the leader pings its lock connection every 250 ms; each answer
//! extends a local [`Fence`] to one second after the ping was sent. Every
//! send checks the fence first (no I/O), so a leader that lost its lock
//! connection stops sending within a second. A new leader whose predecessor
//! did not step down cleanly waits out that second before it starts, so the
//! two never send at once; progress writes carry the epoch, so a deposed
//! leader's late writes change nothing. Nonces cover a send in flight.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_postgres::{Client, NoTls};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// How long one successful ping keeps the fence open.
pub const LEASE: Duration = Duration::from_secs(1);
const PING_EVERY: Duration = Duration::from_millis(250);
const PING_TIMEOUT: Duration = Duration::from_millis(500);
/// What a new leader waits when its predecessor did not step down cleanly.
pub const TAKEOVER_GRACE: Duration = Duration::from_millis(1100);
/// Advisory lock key for leadership ("cntdwnld").
const LEADER_LOCK_KEY: i64 = 0x636e_7464_776e_6c64;

/// Local permission to send: valid until a moment, extended by each ping.
#[derive(Debug)]
pub struct Fence {
    /// Nanoseconds after [`base`] until which sending is allowed.
    until: AtomicU64,
}

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn nanos(t: Instant) -> u64 {
    t.saturating_duration_since(base()).as_nanos() as u64
}

impl Fence {
    /// A fence that never closes (tests, tools).
    pub fn open() -> Arc<Fence> {
        Arc::new(Fence {
            until: AtomicU64::new(u64::MAX),
        })
    }

    fn closed() -> Arc<Fence> {
        let _ = base();
        Arc::new(Fence {
            until: AtomicU64::new(0),
        })
    }

    pub fn is_open(&self) -> bool {
        nanos(Instant::now()) < self.until.load(Ordering::SeqCst)
    }

    fn extend_to(&self, until: Instant) {
        self.until.fetch_max(nanos(until), Ordering::SeqCst);
    }

    fn close(&self) {
        self.until.store(0, Ordering::SeqCst);
    }
}

/// Campaigns for leadership.
pub struct Elector {
    pg: tokio_postgres::Config,
    instance: String,
    metrics: Metrics,
}

/// One term as leader.
pub struct Term {
    pub epoch: i64,
    pub fence: Arc<Fence>,
    /// Cancelled when leadership is lost.
    pub lost: CancellationToken,
    client: Arc<Client>,
    pinger: JoinHandle<()>,
    metrics: Metrics,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("lock connection did not answer in time")]
    Timeout,
}

impl Elector {
    pub fn new(mut pg: tokio_postgres::Config, metrics: Metrics) -> Self {
        let instance = format!(
            "{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "countdown".into()),
            std::process::id()
        );
        pg.application_name("countdown-leader")
            .connect_timeout(Duration::from_secs(2))
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(5));
        Elector {
            pg,
            instance,
            metrics,
        }
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Waits until this instance is the leader; `None` if `shutdown` came first.
    pub async fn campaign(&self, shutdown: &CancellationToken) -> Option<Term> {
        self.metrics.leader.set(0);
        let mut logged = false;
        loop {
            let attempt = tokio::select! {
                _ = shutdown.cancelled() => return None,
                attempt = self.try_lead(shutdown) => attempt,
            };
            match attempt {
                Ok(Some(term)) => return Some(term),
                Ok(None) => {}
                Err(error) => {
                    self.metrics.db_errors.inc();
                    if !logged {
                        tracing::warn!(%error, "cannot campaign for leadership; retrying");
                        logged = true;
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }

    async fn try_lead(&self, shutdown: &CancellationToken) -> Result<Option<Term>, LeaderError> {
        let (client, connection) = self.pg.connect(NoTls).await?;
        let client = Arc::new(client);
        let conn_task = tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "leader lock connection ended");
            }
        });
        // Let the server notice a dead peer within seconds (a partition),
        // so the lock is freed for a standby.
        client
            .batch_execute(
                "SET tcp_keepalives_idle = 2; SET tcp_keepalives_interval = 1; \
                 SET tcp_keepalives_count = 2; SET tcp_user_timeout = 3000",
            )
            .await?;
        let got = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK_KEY])
            .await?
            .get::<_, bool>(0);
        if !got {
            tracing::info!(instance = %self.instance, "standby: another instance is the leader; waiting");
            // Blocks until the leader's lock is released.
            tokio::select! {
                _ = shutdown.cancelled() => { conn_task.abort(); return Ok(None) }
                r = client.query_one("SELECT pg_advisory_lock($1)", &[&LEADER_LOCK_KEY]) => { r?; }
            }
        }
        let row = client
            .query_one(
                "WITH prev AS (SELECT clean FROM leader_state WHERE id) \
                 UPDATE leader_state SET epoch = epoch + 1, holder = $1, clean = false, since = now() \
                 WHERE id RETURNING epoch, (SELECT clean FROM prev)",
                &[&self.instance],
            )
            .await?;
        let epoch: i64 = row.get(0);
        let predecessor_clean: bool = row.get(1);

        let fence = Fence::closed();
        // Open the fence before the term starts: left to the pinger's first
        // answer, it was still closed when READY came and the first numbers
        // went out on a loaded machine; their sends were refused, and those
        // countdowns ended as "interrupted" while the term went on (seen in
        // `e2e_counting` during the fault suite's runs).
        let sent = Instant::now();
        client.simple_query("SELECT 1").await?;
        fence.extend_to(sent + LEASE);
        let lost = CancellationToken::new();
        let pinger = tokio::spawn(ping(client.clone(), fence.clone(), lost.clone()));
        if !predecessor_clean {
            tracing::info!(epoch, "previous leader did not step down cleanly; waiting {TAKEOVER_GRACE:?} before sending");
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = lost.cancelled() => {}
                _ = tokio::time::sleep(TAKEOVER_GRACE) => {}
            }
        }
        let term = Term {
            epoch,
            fence,
            lost,
            client,
            pinger,
            metrics: self.metrics.clone(),
        };
        if term.lost.is_cancelled() {
            term.pinger.abort();
            return Ok(None);
        }
        tracing::info!(epoch, instance = %self.instance, "this instance is the leader");
        self.metrics.leader.set(1);
        Ok(Some(term))
    }
}

async fn ping(client: Arc<Client>, fence: Arc<Fence>, lost: CancellationToken) {
    let mut ticker = tokio::time::interval(PING_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let sent = Instant::now();
        match tokio::time::timeout(PING_TIMEOUT, client.simple_query("SELECT 1")).await {
            Ok(Ok(_)) => fence.extend_to(sent + LEASE),
            Ok(Err(error)) => {
                tracing::error!(%error, "lost the leader lock connection; stepping down");
                break;
            }
            Err(_) => {
                tracing::error!("leader lock connection stopped answering; stepping down");
                break;
            }
        }
    }
    fence.close();
    lost.cancel();
}

impl Term {
    /// Ends the term. `clean` (this instance stopped sending first) lets the
    /// next leader start without waiting out the fence.
    pub async fn step_down(self, clean: bool) {
        self.pinger.abort();
        self.fence.close();
        self.metrics.leader.set(0);
        if clean && !self.lost.is_cancelled() {
            let marked = tokio::time::timeout(
                Duration::from_millis(500),
                self.client.execute(
                    "UPDATE leader_state SET clean = true WHERE id AND epoch = $1",
                    &[&self.epoch],
                ),
            )
            .await;
            if !matches!(marked, Ok(Ok(1))) {
                tracing::warn!("could not mark a clean hand-over; the next leader waits a second");
            }
            let _ = tokio::time::timeout(
                Duration::from_millis(500),
                self.client
                    .execute("SELECT pg_advisory_unlock($1)", &[&LEADER_LOCK_KEY]),
            )
            .await;
        }
        tracing::info!(epoch = self.epoch, "stepped down");
        // Dropping the client closes the connection, which frees the lock in any case.
    }
}
