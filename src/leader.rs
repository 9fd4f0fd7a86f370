//! Leadership: several instances may share one database; exactly one (the
//! leader) connects to the gateway and sends.
//!
//! The leader holds a session-level advisory lock on a dedicated connection.
//! PostgreSQL releases it the moment that connection ends (a crash closes the
//! socket), so a standby blocked in `pg_advisory_lock` takes over at once,
//! with no lease to wait out. Each new leader bumps `leader_state.epoch`
//! (its fencing token).
//!
//! Fencing: the leader pings its lock connection every 250 ms; the ping
//! also counts the standbys waiting for the lock. While one waits, each
//! answer extends a local [`Fence`] to one second after the ping was sent.
//! Every send checks the fence first (no I/O), so a leader that lost its
//! lock connection stops sending within a second. A new leader whose
//! predecessor did not step down cleanly waits out that second before it
//! starts, so the two never send at once; progress writes carry the epoch,
//! so a deposed leader's late writes change nothing. Nonces cover a send in
//! flight.
//!
//! Alone (no standby waiting at the last answer), the fence stays open when
//! the lock connection fails: a database outage must not stop the counting,
//! and nobody is there to take over. The leader then takes the
//! lock again as soon as the database answers and carries on if
//! `leader_state.epoch` is still its own; if another instance led
//! meanwhile, it steps down. The one case this does not fence is a standby
//! *started* while the leader alone is cut off from a database the standby
//! can reach: both send for a while, and Discord's nonce check (same nonce
//! `<task>:<n>` for the same number) keeps each number single.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_postgres::{Client, NoTls, Statement};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// How long one successful ping keeps the fence open.
pub const LEASE: Duration = Duration::from_secs(1);
const PING_EVERY: Duration = Duration::from_millis(250);
const PING_TIMEOUT: Duration = Duration::from_millis(500);
/// Between attempts to take the lock again after the connection failed.
const RELOCK_EVERY: Duration = Duration::from_millis(500);
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

    /// Only the pinger moves the fence once a term runs, one answer at a
    /// time, so a plain store is enough (and lets a lease replace "open").
    fn set_until(&self, until: Instant) {
        self.until.store(nanos(until), Ordering::SeqCst);
    }

    fn open_until_closed(&self) {
        self.until.store(u64::MAX, Ordering::SeqCst);
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
    /// The lock connection; replaced when the lock is taken again.
    client: LockClient,
    pinger: JoinHandle<()>,
    metrics: Metrics,
}

type LockClient = Arc<std::sync::Mutex<Arc<LockConn>>>;

/// The lock connection, with the ping prepared once: one round trip a ping.
struct LockConn {
    client: Client,
    standbys: Statement,
}

impl std::ops::Deref for LockConn {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("lock connection did not answer in time")]
    Timeout,
}

/// What a ping learnt.
struct Answer {
    standbys: i64,
}

/// Standbys blocked in `pg_advisory_lock` on the leader key, in this database.
const STANDBYS_SQL: &str = "SELECT count(*) FROM pg_locks \
     WHERE locktype = 'advisory' AND NOT granted AND objsubid = 1 \
       AND classid = ($1::bigint >> 32)::oid AND objid = ($1::bigint & 4294967295)::oid \
       AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";

async fn ask(conn: &LockConn) -> Result<Answer, LeaderError> {
    let row = tokio::time::timeout(
        PING_TIMEOUT,
        conn.client.query_one(&conn.standbys, &[&LEADER_LOCK_KEY]),
    )
    .await
    .map_err(|_| LeaderError::Timeout)??;
    Ok(Answer {
        standbys: row.get(0),
    })
}

/// Opens `fence` as far as `answer` allows: a lease while a standby could
/// take over, until further notice while none waits.
fn apply(fence: &Fence, answer: &Answer, sent: Instant) {
    if answer.standbys > 0 {
        fence.set_until(sent + LEASE);
    } else {
        fence.open_until_closed();
    }
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
        let (client, conn_task) = lock_connection(&self.pg).await?;
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
        let first = ask(&client).await?;
        apply(&fence, &first, sent);
        self.metrics.leader_standbys.set(first.standbys);
        let lost = CancellationToken::new();
        let client: LockClient = Arc::new(std::sync::Mutex::new(client));
        let pinger = tokio::spawn(
            Pinger {
                pg: self.pg.clone(),
                client: client.clone(),
                fence: fence.clone(),
                epoch,
                alone: first.standbys == 0,
                metrics: self.metrics.clone(),
            }
            .run(lost.clone()),
        );
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

/// A connection for the lock, set so the server notices a dead peer within
/// seconds (a partition) and frees the lock for a standby.
async fn lock_connection(
    pg: &tokio_postgres::Config,
) -> Result<(Arc<LockConn>, JoinHandle<()>), LeaderError> {
    let (client, connection) = pg.connect(NoTls).await?;
    let conn_task = tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "leader lock connection ended");
        }
    });
    client
        .batch_execute(
            "SET tcp_keepalives_idle = 2; SET tcp_keepalives_interval = 1; \
             SET tcp_keepalives_count = 2; SET tcp_user_timeout = 3000",
        )
        .await?;
    let standbys = client.prepare(STANDBYS_SQL).await?;
    Ok((Arc::new(LockConn { client, standbys }), conn_task))
}

/// Keeps the fence in step with the lock connection for one term.
struct Pinger {
    pg: tokio_postgres::Config,
    client: LockClient,
    fence: Arc<Fence>,
    epoch: i64,
    /// No standby was waiting at the last answer.
    alone: bool,
    metrics: Metrics,
}

enum Relock {
    /// The lock is ours again and nobody led in between.
    Ours(Arc<LockConn>),
    /// Another instance holds the lock, or led meanwhile.
    Superseded,
}

impl Pinger {
    async fn run(mut self, lost: CancellationToken) {
        let mut ticker = tokio::time::interval(PING_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let sent = Instant::now();
            let client = self.current();
            let error = match ask(&client).await {
                Ok(answer) => {
                    apply(&self.fence, &answer, sent);
                    self.alone = answer.standbys == 0;
                    self.metrics.leader_standbys.set(answer.standbys);
                    continue;
                }
                Err(error) => error,
            };
            if !self.alone {
                tracing::error!(%error, "lost the leader lock connection; stepping down");
                break;
            }
            tracing::warn!(
                %error,
                "lost the leader lock connection; no standby is waiting, so counting goes on \
                 and the lock is taken again when the database answers"
            );
            match self.relock().await {
                Relock::Ours(client) => {
                    *self.client.lock().unwrap_or_else(|p| p.into_inner()) = client;
                    tracing::info!(
                        epoch = self.epoch,
                        "leader lock taken again; still the leader"
                    );
                }
                Relock::Superseded => {
                    tracing::error!(
                        epoch = self.epoch,
                        "another instance led while the database was away; stepping down"
                    );
                    break;
                }
            }
        }
        self.fence.close();
        lost.cancel();
    }

    fn current(&self) -> Arc<LockConn> {
        self.client
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn relock(&self) -> Relock {
        loop {
            match self.try_relock().await {
                Ok(Some(client)) => return Relock::Ours(client),
                Ok(None) => return Relock::Superseded,
                Err(error) => tracing::debug!(%error, "cannot take the leader lock again yet"),
            }
            tokio::time::sleep(RELOCK_EVERY).await;
        }
    }

    async fn try_relock(&self) -> Result<Option<Arc<LockConn>>, LeaderError> {
        let (client, _conn_task) = lock_connection(&self.pg).await?;
        let got: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK_KEY])
            .await?
            .get(0);
        if !got {
            return Ok(None);
        }
        let epoch: i64 = client
            .query_one("SELECT epoch FROM leader_state WHERE id", &[])
            .await?
            .get(0);
        // A different epoch: someone led meanwhile. Dropping the client
        // frees the lock we just took.
        Ok((epoch == self.epoch).then_some(client))
    }
}

impl Term {
    /// Ends the term. `clean` (this instance stopped sending first) lets the
    /// next leader start without waiting out the fence.
    pub async fn step_down(self, clean: bool) {
        self.pinger.abort();
        self.fence.close();
        self.metrics.leader.set(0);
        self.metrics.leader_standbys.set(0);
        if clean && !self.lost.is_cancelled() {
            let client = self
                .client
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let marked = tokio::time::timeout(
                Duration::from_millis(500),
                client.execute(
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
                client.execute("SELECT pg_advisory_unlock($1)", &[&LEADER_LOCK_KEY]),
            )
            .await;
        }
        tracing::info!(epoch = self.epoch, "stepped down");
        // Dropping the client closes the connection, which frees the lock in any case.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_waiting_standby_makes_the_fence_a_one_second_lease() {
        let fence = Fence::closed();
        let sent = Instant::now();
        apply(&fence, &Answer { standbys: 1 }, sent);
        assert!(fence.is_open());
        tokio::time::advance(LEASE - Duration::from_millis(1)).await;
        assert!(fence.is_open());
        tokio::time::advance(Duration::from_millis(2)).await;
        assert!(!fence.is_open(), "closed a second after the ping");
    }

    #[tokio::test(start_paused = true)]
    async fn alone_the_fence_stays_open_without_answers_until_a_standby_shows_up() {
        let fence = Fence::closed();
        apply(&fence, &Answer { standbys: 0 }, Instant::now());
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(
            fence.is_open(),
            "an outage alone does not stop the counting"
        );
        // A standby appears: from now on the lease rules, even though the
        // earlier answer opened the fence for good.
        let sent = Instant::now();
        apply(&fence, &Answer { standbys: 2 }, sent);
        tokio::time::advance(LEASE + Duration::from_millis(1)).await;
        assert!(!fence.is_open());
        apply(&fence, &Answer { standbys: 0 }, Instant::now());
        assert!(fence.is_open());
        fence.close();
        assert!(!fence.is_open(), "stepping down closes it");
    }
}
