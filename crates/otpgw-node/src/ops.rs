//! The operator's HTTP listener (loopback by default): `/metrics` (Prometheus text
//! format), `/healthz` (the process is alive), `/readyz` (the store is healthy and
//! every route has at least one carrier bound), and the admin API under `/admin`
//! (JSON; every call needs `Authorization: Bearer <token>`, the scheme in any case).
//!
//! Admin tokens are named, each with a role (`[[ops.admin]]`): `read` may only GET,
//! `operate` may also change (pause, resume). An unknown token answers 401, a read
//! token on a change 403. The deprecated single `ops.admin_token` is an `operate`
//! token named `admin`. Without any token the admin API answers 404. Every call is
//! logged with the caller's address and the token's name, allowed or not (never the
//! token); with `[audit]`, every change and every refused call is also appended to
//! the hash-chained audit log (crate `audit`) before the answer. An address that
//! fails [`ADMIN_LOCK_AFTER`] times within a minute is refused (429, `Retry-After`
//! the time left) for 60 s, then twice as long at each further lock.
//! - `GET /admin/carriers`: binds up and configured, window, paused, submits in the
//!   last second, queue per class;
//! - `POST /admin/carriers/{name}/pause` and `.../resume`: stop or restart taking
//!   messages (binds stay up);
//! - `GET /admin/brands`: bound sessions per brand;
//! - `GET /admin/queue`: queued, in flight and receipts waiting;
//! - `GET /admin/quality`: carrier quality per destination prefix over the window
//!   (on-time and delivered ratios, failures, receipts that never came, receipt
//!   latency p50/p90);
//! - `GET /admin/audit`: the audit log's line count and head hash.
//! - `GET /admin/fraud/blocks`: the prefixes the fraud guard blocks;
//!   `DELETE /admin/fraud/blocks/{brand}/{prefix}` lifts one (audited).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::Json;
use axum::Router;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
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
    /// Set the gauges read at scrape time (counts held elsewhere, the process's
    /// memory and files), just before `/metrics` renders.
    fn refresh_gauges(&self) {}
}

/// What the admin API reads and changes.
pub trait Admin: Send + Sync + 'static {
    fn carriers(&self) -> Value;
    /// `None` when no carrier has that name.
    fn set_paused(&self, carrier: &str, paused: bool) -> Option<Value>;
    fn brands(&self) -> Value;
    fn queue(&self) -> Value;
    fn quality(&self) -> Value;
    /// The prefixes the fraud guard blocks (`GET /admin/fraud/blocks`); `Err`:
    /// the store failed.
    fn fraud_blocks(&self) -> AdminFuture<'_, Value>;
    /// Lift a block (`DELETE /admin/fraud/blocks/{brand}/{prefix}`); whether there
    /// was one.
    fn lift_block<'a>(&'a self, brand: &'a str, prefix: &'a str) -> AdminFuture<'a, bool>;
    /// Erase what is kept for a number (`DELETE /admin/numbers/{e164}`): `Err`
    /// says why not (a bad number: 400).
    fn erase_number<'a>(
        &'a self,
        e164: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Value, Erase>> + Send + 'a>>;
}

/// An admin call that waits for the store: its answer, or why it failed.
pub type AdminFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, String>> + Send + 'a>>;

/// Why an erasure was refused.
#[derive(Debug, thiserror::Error)]
pub enum Erase {
    #[error("not an E.164 number (+ and 7 to 15 digits)")]
    BadNumber,
    #[error("the store failed: {0}")]
    Store(String),
}

/// A number as logs and the audit show it: its first digits, the rest masked
/// (`+4474009*****`).
pub fn masked_number(e164: &str) -> String {
    let keep = e164.len().min(8);
    format!("{}{}", &e164[..keep], "*".repeat(e164.len() - keep))
}

/// An admin token as the listener knows it: its name, role and SHA-256.
#[derive(Clone)]
pub struct AdminKey {
    pub name: String,
    pub role: crate::config::AdminRole,
    pub digest: [u8; 32],
}

/// The admin API: what it reads and changes, and who may call it.
pub struct AdminApi {
    pub admin: Arc<dyn Admin>,
    pub keys: Vec<AdminKey>,
    /// Where changes and refused calls are recorded (`[audit]`).
    pub audit: Option<Arc<crate::audit::Audit>>,
}

struct Ctx {
    prom: Option<PrometheusHandle>,
    readiness: Arc<dyn Readiness>,
    admin: Option<AdminApi>,
    lockout: parking_lot::Mutex<otpgw_accept::auth::Lockout>,
}

/// Bind the listener and serve until `shutdown`. Returns the bound address.
pub async fn serve(
    listen: SocketAddr,
    readiness: Arc<dyn Readiness>,
    admin: Option<AdminApi>,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let ctx = Arc::new(Ctx {
        prom: recorder(),
        readiness,
        admin,
        lockout: parking_lot::Mutex::new(otpgw_accept::auth::Lockout::new(
            0,
            ADMIN_LOCK_AFTER,
            ADMIN_LOCK,
        )),
    });
    metrics::counter!("otpgw_auth_lockouts_total", "door" => "admin").increment(0);
    let admin = Router::new()
        .route("/admin/carriers", get(admin_carriers))
        .route("/admin/carriers/{name}/pause", post(admin_pause))
        .route("/admin/carriers/{name}/resume", post(admin_resume))
        .route("/admin/brands", get(admin_brands))
        .route("/admin/queue", get(admin_queue))
        .route("/admin/quality", get(admin_quality))
        .route("/admin/audit", get(admin_audit))
        .route("/admin/numbers/{e164}", axum::routing::delete(admin_erase))
        .route("/admin/fraud/blocks", get(admin_fraud_blocks))
        .route(
            "/admin/fraud/blocks/{brand}/{prefix}",
            axum::routing::delete(admin_lift_block),
        )
        .route_layer(axum::middleware::from_fn_with_state(ctx.clone(), guard));
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .merge(admin)
        .with_state(ctx);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let r = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
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
    ctx.readiness.refresh_gauges();
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

/// Failed admin tokens from one address before it is locked, and the first lock.
const ADMIN_LOCK_AFTER: u32 = 10;
const ADMIN_LOCK: std::time::Duration = std::time::Duration::from_secs(60);

fn refusal(status: StatusCode, error: &str, retry_secs: Option<u64>) -> Response {
    let mut r = (status, Json(json!({ "error": error }))).into_response();
    if let Some(s) = retry_secs {
        r.headers_mut()
            .insert(axum::http::header::RETRY_AFTER, s.max(1).into());
    }
    r
}

/// What an admin call does, for the log and the audit: (action, target).
fn describe(method: &axum::http::Method, path: &str) -> (String, String) {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["admin", "carriers", name, op] => (format!("{op}_carrier"), (*name).to_string()),
        ["admin", "numbers", n] => ("erase_number".into(), masked_number(n)),
        ["admin", "fraud", "blocks", brand, prefix] => {
            ("lift_fraud_block".into(), format!("{brand}/{prefix}"))
        }
        _ => (format!("{method} {path}"), String::new()),
    }
}

/// Every `/admin` call: the token and its role, the lockout of failing addresses,
/// the log line (who called what, allowed or not; never the token) and the audit
/// line of every change and refusal.
async fn guard(
    State(ctx): State<Arc<Ctx>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    let Some(api) = &ctx.admin else {
        return refusal(StatusCode::NOT_FOUND, "admin API disabled", None);
    };
    let (ip, now) = (peer.ip(), otpgw_core::clock::now_ms());
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let (action, target) = describe(&method, &path);
    // Never a full number in the log: an erasure's path shows it masked.
    let path = match path.strip_prefix("/admin/numbers/") {
        Some(n) => format!("/admin/numbers/{}", masked_number(n)),
        None => path,
    };
    let stranger = format!("peer {ip}");
    let audit = |actor: &str, result: &str| match &api.audit {
        Some(a) => a
            .record(crate::audit::Event {
                actor,
                action: &action,
                target: &target,
                result,
            })
            .map_err(|e| tracing::error!(error = %e, "audit log write failed")),
        None => Ok(()),
    };
    if let Some(left) = ctx.lockout.lock().locked_for(None, ip, now) {
        metrics::counter!("otpgw_admin_unauthorized_total").increment(1);
        tracing::warn!(%peer, %method, path, "admin call refused: address locked");
        let _ = audit(&stranger, "locked");
        return refusal(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed authentications from this address",
            Some(left.div_ceil(1000)),
        );
    }
    let given = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(otpgw_accept::auth::bearer_token)
        .unwrap_or("");
    let digest = otpgw_http::auth::digest(given);
    // Every key compared in constant time, whichever matches.
    let mut key = None;
    for k in &api.keys {
        if otpgw_accept::brands::constant_time_eq(&digest, &k.digest) {
            key = Some(k);
        }
    }
    let Some(key) = key.filter(|_| !given.is_empty()) else {
        metrics::counter!("otpgw_admin_unauthorized_total").increment(1);
        tracing::warn!(%peer, %method, path, "admin call refused: unknown token");
        let _ = audit(&stranger, "unauthorized");
        if let Some(ms) = ctx.lockout.lock().failure(None, ip, now) {
            metrics::counter!("otpgw_auth_lockouts_total", "door" => "admin").increment(1);
            tracing::warn!(%peer, seconds = ms.div_ceil(1000), "failed admin tokens: address locked");
            return refusal(
                StatusCode::TOO_MANY_REQUESTS,
                "too many failed authentications from this address",
                Some(ms.div_ceil(1000)),
            );
        }
        return refusal(StatusCode::UNAUTHORIZED, "unauthorized", None);
    };
    let change = method != axum::http::Method::GET && method != axum::http::Method::HEAD;
    if change && key.role == crate::config::AdminRole::Read {
        metrics::counter!("otpgw_admin_unauthorized_total").increment(1);
        tracing::warn!(%peer, token = %key.name, %method, path, "admin call refused: read-only token");
        let _ = audit(&key.name, "forbidden");
        return refusal(StatusCode::FORBIDDEN, "this token may only read", None);
    }
    tracing::info!(%peer, token = %key.name, %method, path, "admin call");
    let resp = next.run(req).await;
    if change && audit(&key.name, resp.status().as_str()).is_err() {
        // Done, but not recorded: say so rather than answer as if all were well.
        return refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "the change was made but the audit log could not record it",
            None,
        );
    }
    resp
}

/// The admin API (present: [`guard`] let the call through).
fn with_admin(ctx: &Ctx, f: impl FnOnce(&dyn Admin) -> Response) -> Response {
    match &ctx.admin {
        Some(api) => f(api.admin.as_ref()),
        None => refusal(StatusCode::NOT_FOUND, "admin API disabled", None),
    }
}

async fn admin_audit(State(ctx): State<Arc<Ctx>>) -> Response {
    match ctx.admin.as_ref().and_then(|a| a.audit.as_ref()) {
        Some(a) => {
            let (lines, head) = a.head();
            Json(json!({ "lines": lines, "head": head })).into_response()
        }
        None => refusal(StatusCode::NOT_FOUND, "no audit log configured", None),
    }
}

async fn admin_erase(State(ctx): State<Arc<Ctx>>, Path(e164): Path<String>) -> Response {
    let Some(api) = &ctx.admin else {
        return refusal(StatusCode::NOT_FOUND, "admin API disabled", None);
    };
    match api.admin.erase_number(&e164).await {
        Ok(v) => Json(v).into_response(),
        Err(e @ Erase::BadNumber) => refusal(StatusCode::BAD_REQUEST, &e.to_string(), None),
        Err(e) => refusal(StatusCode::SERVICE_UNAVAILABLE, &e.to_string(), Some(1)),
    }
}

async fn admin_fraud_blocks(State(ctx): State<Arc<Ctx>>) -> Response {
    let Some(api) = &ctx.admin else {
        return refusal(StatusCode::NOT_FOUND, "admin API disabled", None);
    };
    match api.admin.fraud_blocks().await {
        Ok(v) => Json(v).into_response(),
        Err(e) => refusal(StatusCode::SERVICE_UNAVAILABLE, &e, Some(1)),
    }
}

async fn admin_lift_block(
    State(ctx): State<Arc<Ctx>>,
    Path((brand, prefix)): Path<(String, String)>,
) -> Response {
    let Some(api) = &ctx.admin else {
        return refusal(StatusCode::NOT_FOUND, "admin API disabled", None);
    };
    match api.admin.lift_block(&brand, &prefix).await {
        Ok(true) => Json(json!({ "lifted": true })).into_response(),
        Ok(false) => refusal(StatusCode::NOT_FOUND, "no such block", None),
        Err(e) => refusal(StatusCode::SERVICE_UNAVAILABLE, &e, Some(1)),
    }
}

async fn admin_carriers(State(ctx): State<Arc<Ctx>>) -> Response {
    with_admin(&ctx, |a| Json(a.carriers()).into_response())
}

async fn admin_brands(State(ctx): State<Arc<Ctx>>) -> Response {
    with_admin(&ctx, |a| Json(a.brands()).into_response())
}

async fn admin_queue(State(ctx): State<Arc<Ctx>>) -> Response {
    with_admin(&ctx, |a| Json(a.queue()).into_response())
}

async fn admin_quality(State(ctx): State<Arc<Ctx>>) -> Response {
    with_admin(&ctx, |a| Json(a.quality()).into_response())
}

fn pause(ctx: &Ctx, name: &str, on: bool) -> Response {
    with_admin(ctx, |a| match a.set_paused(name, on) {
        Some(v) => Json(v).into_response(),
        None => refusal(StatusCode::NOT_FOUND, "no such carrier", None),
    })
}

async fn admin_pause(State(ctx): State<Arc<Ctx>>, Path(name): Path<String>) -> Response {
    pause(&ctx, &name, true)
}

async fn admin_resume(State(ctx): State<Arc<Ctx>>, Path(name): Path<String>) -> Response {
    pause(&ctx, &name, false)
}
