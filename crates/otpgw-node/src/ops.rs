//! The operator's HTTP listener (loopback by default): `/metrics` (Prometheus text
//! format), `/healthz` (the process is alive), `/readyz` (the store is healthy and
//! every route has at least one carrier bound), and the admin API under `/admin`
//! (JSON; every call needs `Authorization: Bearer <ops.admin_token>`; without a
//! configured token the admin API answers 404):
//! - `GET /admin/carriers`: binds up and configured, window, paused, submits in the
//!   last second, queue per class;
//! - `POST /admin/carriers/{name}/pause` and `.../resume`: stop or restart taking
//!   messages (binds stay up);
//! - `GET /admin/brands`: bound sessions per brand;
//! - `GET /admin/queue`: queued, in flight and receipts waiting;
//! - `GET /admin/quality`: carrier quality per destination prefix over the window
//!   (on-time and delivered ratios, failures, receipts that never came, receipt
//!   latency p50/p90).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde_json::{Value, json};
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
    recorder_for_node(None)
}

/// Like [`recorder`]; with `Some(node)` every series carries the label
/// `node="<node id>"` (nodes sharing a Redis tell themselves apart by it). The
/// first call in a process decides.
pub fn recorder_for_node(node: Option<&str>) -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let mut b = PrometheusBuilder::new();
            if let Some(n) = node {
                b = b.add_global_label("node", n);
            }
            let b = b
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

/// Why the node is not ready (what `/readyz` answers).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    #[error("store failing")]
    Store,
    #[error("no carrier bound for route {0:?}")]
    NoCarrier(Vec<String>),
}

/// What `/readyz` asks.
pub trait Readiness: Send + Sync + 'static {
    /// `Ok` when ready, or the reason it is not.
    fn ready(&self) -> Result<(), NotReady>;
}

/// What the admin API reads and changes.
pub trait Admin: Send + Sync + 'static {
    fn carriers(&self) -> Value;
    /// `None` when no carrier has that name.
    fn set_paused(&self, carrier: &str, paused: bool) -> Option<Value>;
    fn brands(&self) -> Value;
    fn queue(&self) -> Value;
    fn quality(&self) -> Value;
}

struct Ctx {
    prom: Option<PrometheusHandle>,
    readiness: Arc<dyn Readiness>,
    admin: Option<(Arc<dyn Admin>, String)>,
}

/// Bind the listener and serve until `shutdown`. Returns the bound address.
pub async fn serve(
    listen: SocketAddr,
    readiness: Arc<dyn Readiness>,
    admin: Option<(Arc<dyn Admin>, String)>,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let ctx = Arc::new(Ctx {
        prom: recorder(),
        readiness,
        admin,
    });
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/admin/carriers", get(admin_carriers))
        .route("/admin/carriers/{name}/pause", post(admin_pause))
        .route("/admin/carriers/{name}/resume", post(admin_resume))
        .route("/admin/brands", get(admin_brands))
        .route("/admin/queue", get(admin_queue))
        .route("/admin/quality", get(admin_quality))
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

/// The admin API if the request carries the right token, or the response to send.
#[allow(clippy::result_large_err)]
fn authorized<'a>(ctx: &'a Ctx, headers: &HeaderMap) -> Result<&'a dyn Admin, Response> {
    let Some((admin, token)) = &ctx.admin else {
        return Err((
            StatusCode::NOT_FOUND,
            Json(json!({"error": "admin API disabled"})),
        )
            .into_response());
    };
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !otpgw_accept::brands::constant_time_eq(given.as_bytes(), token.as_bytes()) {
        metrics::counter!("otpgw_admin_unauthorized_total").increment(1);
        return Err((
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "unauthorized"})),
        )
            .into_response());
    }
    Ok(admin.as_ref())
}

async fn admin_carriers(State(ctx): State<Arc<Ctx>>, h: HeaderMap) -> Response {
    match authorized(&ctx, &h) {
        Ok(a) => Json(a.carriers()).into_response(),
        Err(r) => r,
    }
}

async fn admin_brands(State(ctx): State<Arc<Ctx>>, h: HeaderMap) -> Response {
    match authorized(&ctx, &h) {
        Ok(a) => Json(a.brands()).into_response(),
        Err(r) => r,
    }
}

async fn admin_queue(State(ctx): State<Arc<Ctx>>, h: HeaderMap) -> Response {
    match authorized(&ctx, &h) {
        Ok(a) => Json(a.queue()).into_response(),
        Err(r) => r,
    }
}

async fn admin_quality(State(ctx): State<Arc<Ctx>>, h: HeaderMap) -> Response {
    match authorized(&ctx, &h) {
        Ok(a) => Json(a.quality()).into_response(),
        Err(r) => r,
    }
}

async fn pause(ctx: &Ctx, h: &HeaderMap, name: &str, on: bool) -> Response {
    match authorized(ctx, h) {
        Ok(a) => match a.set_paused(name, on) {
            Some(v) => Json(v).into_response(),
            None => (
                StatusCode::NOT_FOUND,
                Json(json!({"error": "no such carrier"})),
            )
                .into_response(),
        },
        Err(r) => r,
    }
}

async fn admin_pause(
    State(ctx): State<Arc<Ctx>>,
    h: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    pause(&ctx, &h, &name, true).await
}

async fn admin_resume(
    State(ctx): State<Arc<Ctx>>,
    h: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    pause(&ctx, &h, &name, false).await
}
