//! The HTTP server on `METRICS_ADDR`: `/metrics` (Prometheus text),
//! `/healthz` (the process is up) and `/readyz` (the gateway is ready and
//! the database answers).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
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
    gateway: Arc<AtomicBool>,
    leader: Arc<AtomicBool>,
    stopping: Arc<AtomicBool>,
    store: Arc<dyn TaskStore>,
    metrics: Metrics,
}

impl Readiness {
    pub fn new(store: Arc<dyn TaskStore>, metrics: Metrics) -> Self {
        Readiness {
            gateway: Arc::new(AtomicBool::new(false)),
            leader: Arc::new(AtomicBool::new(false)),
            stopping: Arc::new(AtomicBool::new(false)),
            store,
            metrics,
        }
    }

    pub fn set_gateway(&self, ready: bool) {
        self.gateway.store(ready, Ordering::SeqCst);
        self.metrics.gateway_ready.set(i64::from(ready));
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
        if !self.gateway.load(Ordering::SeqCst) {
            return Err("gateway not ready".into());
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
