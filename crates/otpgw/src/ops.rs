//! The operator's HTTP listener (loopback by default): `/metrics` (Prometheus text
//! format), `/healthz` (the process is alive) and `/readyz` (the store is open and
//! every route has at least one carrier bound).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

/// Latency buckets (seconds) for every `*_seconds` histogram.
const SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0, 300.0,
];
/// Buckets for the store's writes per commit.
const BATCH: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Install the process-wide Prometheus recorder (once; later calls return the same
/// handle). `None` if another recorder was installed first.
pub fn recorder() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let b = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_ops".into()), BATCH));
            match b.and_then(|b| b.install_recorder()) {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    None
                }
            }
        })
        .clone()
}

/// What `/readyz` asks.
pub trait Readiness: Send + Sync + 'static {
    /// `Ok` when ready, or the reason it is not.
    fn ready(&self) -> Result<(), String>;
}

struct Ctx {
    prom: Option<PrometheusHandle>,
    readiness: Arc<dyn Readiness>,
}

/// Bind the listener and serve until `shutdown`. Returns the bound address.
pub async fn serve(
    listen: SocketAddr,
    readiness: Arc<dyn Readiness>,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let ctx = Arc::new(Ctx {
        prom: recorder(),
        readiness,
    });
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(ctx);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let r = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "ops listener failed");
        }
    });
    tracing::info!(%addr, "ops listener (/metrics /healthz /readyz)");
    Ok(addr)
}

async fn metrics(State(ctx): State<Arc<Ctx>>) -> impl IntoResponse {
    match &ctx.prom {
        Some(h) => (
            StatusCode::OK,
            [("content-type", "text/plain; version=0.0.4")],
            h.render(),
        ),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            [("content-type", "text/plain")],
            "no recorder\n".into(),
        ),
    }
}

async fn ready(State(ctx): State<Arc<Ctx>>) -> impl IntoResponse {
    match ctx.readiness.ready() {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}
