//! The HTTP server on `METRICS_ADDR`: `/metrics` (Prometheus text),
//! `/healthz` (the process is up) and `/readyz` (every gateway shard is
//! ready and the database answers).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::storage::TaskStore;

/// What `/readyz` looks at.
#[derive(Clone)]
pub struct Readiness {
    gateway: Arc<Mutex<Shards>>,
    leader: Arc<AtomicBool>,
    stopping: Arc<AtomicBool>,
    store: Arc<dyn TaskStore>,
    metrics: Metrics,
}

/// The gateway shards of this process: the gateway is ready only when
/// every one of them is, since each receives the commands of its own
/// servers (and shard 0 the DMs).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Shards {
    /// How many shards run, as their READY says; 0 before the first READY.
    total: u32,
    /// The shards with a ready session.
    ready: BTreeSet<u32>,
}

impl Shards {
    /// Shard `shard` of `total` got READY. A READY with another total is a
    /// new layout: the shards counted ready before are forgotten.
    fn on_ready(&mut self, shard: u32, total: u32) {
        if self.total != total {
            *self = Shards {
                total,
                ..Shards::default()
            };
        }
        self.ready.insert(shard);
    }

    /// Shard `shard` resumed its session (of the layout READY told).
    fn on_resumed(&mut self, shard: u32) {
        if shard < self.total {
            self.ready.insert(shard);
        }
    }

    fn on_down(&mut self, shard: u32) {
        self.ready.remove(&shard);
    }

    fn all_ready(&self) -> bool {
        self.total > 0 && self.ready.len() == self.total as usize
    }

    /// Why the gateway is not ready, if it is not.
    fn not_ready(&self) -> Option<String> {
        match self.total {
            _ if self.all_ready() => None,
            0 | 1 => Some("gateway not ready".into()),
            total => Some(format!(
                "gateway not ready: {} of {total} shards ready",
                self.ready.len()
            )),
        }
    }
}

impl Readiness {
    pub fn new(store: Arc<dyn TaskStore>, metrics: Metrics) -> Self {
        Readiness {
            gateway: Arc::new(Mutex::new(Shards::default())),
            leader: Arc::new(AtomicBool::new(false)),
            stopping: Arc::new(AtomicBool::new(false)),
            store,
            metrics,
        }
    }

    /// Shard `shard` of `total` got READY.
    pub fn shard_ready(&self, shard: u32, total: u32) {
        self.update(|s| s.on_ready(shard, total));
    }

    /// Shard `shard` resumed its session.
    pub fn shard_resumed(&self, shard: u32) {
        self.update(|s| s.on_resumed(shard));
    }

    /// Shard `shard` lost its session or connection (it reconnects).
    pub fn shard_down(&self, shard: u32) {
        self.update(|s| s.on_down(shard));
    }

    /// The gateway is closed: no shard runs.
    pub fn gateway_closed(&self) {
        self.update(|s| *s = Shards::default());
    }

    fn update(&self, change: impl FnOnce(&mut Shards)) {
        let mut shards = self.gateway.lock().unwrap_or_else(|p| p.into_inner());
        change(&mut shards);
        self.metrics
            .gateway_ready
            .set(i64::from(shards.all_ready()));
        self.metrics.shards.set(i64::from(shards.total));
        self.metrics.shards_ready.set(shards.ready.len() as i64);
    }

    /// Standbys are alive but not ready: they neither connect nor send.
    pub fn set_leader(&self, leader: bool) {
        self.leader.store(leader, Ordering::SeqCst);
    }

    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// `Ok` when ready, else why not.
    pub async fn check(&self) -> Result<(), String> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err("shutting down".into());
        }
        if !self.leader.load(Ordering::SeqCst) {
            return Err(
                "standby: another instance is the leader (or the election is pending)".into(),
            );
        }
        let gateway = self
            .gateway
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .not_ready();
        if let Some(why) = gateway {
            return Err(why);
        }
        match tokio::time::timeout(Duration::from_secs(2), self.store.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("database did not answer within 2 s".into()),
        }
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Metrics,
    readiness: Readiness,
}

pub fn router(metrics: Metrics, readiness: Readiness) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, readiness })
}

async fn metrics_handler(State(state): State<AppState>) -> impl IntoResponse {
    match state.metrics.render() {
        Ok(text) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.readiness.check().await {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

/// Serves until `shutdown`.
pub async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken) {
    let result = axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(error) = result {
        tracing::error!(%error, "metrics server failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_is_ready_only_while_every_shard_is() {
        let mut s = Shards::default();
        assert_eq!(s.not_ready().as_deref(), Some("gateway not ready"));
        s.on_ready(0, 2);
        assert_eq!(
            s.not_ready().as_deref(),
            Some("gateway not ready: 1 of 2 shards ready")
        );
        s.on_ready(1, 2);
        assert_eq!(s.not_ready(), None);
        // One shard reconnecting is enough to be not ready.
        s.on_down(1);
        assert_eq!(
            s.not_ready().as_deref(),
            Some("gateway not ready: 1 of 2 shards ready")
        );
        s.on_resumed(1);
        assert_eq!(s.not_ready(), None);
        // A second READY of a shard (a fresh session) changes nothing.
        s.on_ready(0, 2);
        assert!(s.all_ready());
    }

    #[test]
    fn one_shard_reads_as_before() {
        let mut s = Shards::default();
        s.on_ready(0, 1);
        assert_eq!(s.not_ready(), None);
        s.on_down(0);
        assert_eq!(s.not_ready().as_deref(), Some("gateway not ready"));
    }

    #[test]
    fn a_resumed_before_any_ready_counts_for_nothing() {
        let mut s = Shards::default();
        s.on_resumed(0);
        assert!(!s.all_ready());
        assert!(s.ready.is_empty());
    }

    #[test]
    fn a_ready_with_another_shard_count_starts_over() {
        let mut s = Shards::default();
        s.on_ready(0, 1);
        s.on_ready(0, 2);
        assert_eq!((s.total, s.ready.len()), (2, 1));
        assert!(!s.all_ready());
    }
}
