//! otpgw's HTTP API for brands: JSON over HTTP/1.1 and HTTP/2, beside the SMPP
//! server and through the same acceptor.
//!
//! - [`server`]: the listener (TLS optional, connection limits, header timeout);
//! - [`auth`]: per-brand API keys (`Authorization: Bearer`), lockout of failing
//!   addresses, IP allow-lists;
//! - [`body`]: bodies capped, timed and parsed strictly;
//! - [`error`]: every refusal and its HTTP status and code, in one place;
//! - [`idempotency`]: `Idempotency-Key`, compared on the canonical request;
//! - [`messages`]: `POST /v1/messages`, `GET /v1/messages/{id}`;
//! - [`verifications`]: the Verify API (send a code, check it once, resend);
//! - [`webhook`]: signed, durable, retried receipt webhooks;
//! - [`url_policy`]: where webhooks may go (no internal addresses: SSRF);
//! - [`openapi`]: the OpenAPI 3 document, generated from the handlers.

pub mod auth;
pub mod body;
pub mod error;
pub mod idempotency;
pub mod messages;
pub mod openapi;
pub mod server;
pub mod url_policy;
pub mod verifications;
pub mod webhook;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;

use otpgw_accept::BrandConfig;
use otpgw_verify::Verifier;

use crate::error::ApiError;
use crate::server::Peer;

/// Settings of the HTTP API.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// TLS (the same rustls setup as the SMPP listener; ALPN is added).
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    /// Largest request body (bytes).
    pub max_body: usize,
    /// A body must arrive within this time.
    pub body_timeout: Duration,
    /// A connection's first request head must arrive within this time of its
    /// accept (TLS handshake included), each later one within this time of the
    /// request before ending.
    pub header_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// HTTP/2 streams per connection.
    pub max_streams: u32,
    /// Failed authentications from one address before it is locked, and for how
    /// long.
    pub lockout_after: u32,
    pub lockout: Duration,
    /// Load balancers whose `X-Forwarded-For` names the client ([`server`]).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub webhooks: webhook::WebhookConfig,
}

impl HttpConfig {
    /// Defaults on `listen`: 64 KiB bodies in 10 s, headers in 10 s, 10,000
    /// connections (1,000 per address), 100 streams, lock after 20 failures for 5
    /// minutes.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            tls: None,
            max_body: 64 * 1024,
            body_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            max_connections_per_ip: 1_000,
            max_streams: 100,
            lockout_after: 20,
            lockout: Duration::from_secs(300),
            trusted_proxies: Vec::new(),
            webhooks: webhook::WebhookConfig::default(),
        }
    }
}

/// The API's state.
pub struct Api {
    cfg: Arc<HttpConfig>,
    acceptor: Arc<otpgw_accept::Acceptor>,
    verifier: Option<Arc<Verifier>>,
    keys: auth::Keys,
}

impl Api {
    /// The request's body as `T` (capped, timed, strict JSON).
    async fn json_body<T: serde::de::DeserializeOwned>(
        &self,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<T, ApiError> {
        let raw = body::read(headers, body, self.cfg.max_body, self.cfg.body_timeout).await?;
        body::json(&raw)
    }

    async fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: SocketAddr,
    ) -> Result<Arc<BrandConfig>, ApiError> {
        self.keys
            .brand(headers, peer.ip(), self.acceptor.brands())
            .await
    }
}

/// Answer a handler's outcome, counting it by route and status.
fn respond(
    route: &'static str,
    started: Instant,
    r: Result<(StatusCode, serde_json::Value), ApiError>,
) -> Response {
    let resp = match r {
        Ok((st, body)) => (st, axum::Json(body)).into_response(),
        Err(e) => e.into_response(),
    };
    metrics::counter!("otpgw_http_requests_total", "route" => route, "status" => resp.status().as_str().to_string())
        .increment(1);
    metrics::histogram!("otpgw_http_request_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    resp
}

/// The API's state, as a handler takes it.
type ApiState = State<Arc<Api>>;
/// The client's address, as a handler takes it.
type PeerAddr = Extension<Peer>;

#[utoipa::path(post, path = "/v1/messages", tag = "messages",
    request_body = messages::SendMessage,
    params(("Idempotency-Key" = Option<String>, Header, pattern = r"^[!-~]{1,255}$", description = "A retried request with the same key within 24 hours answers the first time's id and sends nothing (compared on the request's canonical JSON).")),
    responses(
        (status = 202, description = "Stored durably and queued", body = messages::MessageAccepted),
        (status = 400, description = "Malformed request", body = openapi::ErrorBody),
        (status = 401, description = "No or unknown API key", body = openapi::ErrorBody),
        (status = 403, description = "Not allowed for the brand", body = openapi::ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = openapi::ErrorBody),
        (status = 422, description = "Idempotency key reused with another request, or no route", body = openapi::ErrorBody),
        (status = 429, description = "Over a limit (Retry-After)", body = openapi::ErrorBody),
        (status = 503, description = "Temporarily unable (Retry-After)", body = openapi::ErrorBody),
    ),
    security(("api_key" = [])))]
async fn send_message(
    State(api): ApiState,
    Extension(Peer(p)): PeerAddr,
    h: HeaderMap,
    b: Body,
) -> Response {
    let t = Instant::now();
    respond("send_message", t, api.send_message(p, &h, b).await)
}

#[utoipa::path(get, path = "/v1/messages/{id}", tag = "messages",
    params(("id" = String, Path, description = "otpgw's message id")),
    responses(
        (status = 200, description = "The message's status", body = messages::MessageView),
        (status = 401, description = "No or unknown API key", body = openapi::ErrorBody),
        (status = 404, description = "No such message for this brand", body = openapi::ErrorBody),
    ),
    security(("api_key" = [])))]
async fn get_message(
    State(api): ApiState,
    Extension(Peer(p)): PeerAddr,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let t = Instant::now();
    respond("get_message", t, api.get_message(p, &h, &id).await)
}

#[utoipa::path(post, path = "/v1/verifications", tag = "verifications",
    request_body = verifications::StartVerification,
    params(("Idempotency-Key" = Option<String>, Header, pattern = r"^[!-~]{1,255}$", description = "A retried request with the same key within 24 hours answers the verification the first started, as it stands, and sends no second code; 409 while the first is still being processed.")),
    responses(
        (status = 201, description = "The code was generated, its hash stored and the code sent", body = verifications::VerificationView),
        (status = 409, description = "A request with this Idempotency-Key is still being processed (Retry-After)", body = openapi::ErrorBody),
        (status = 400, description = "Malformed request, or a number the brand does not verify (invalid_number, number_type_refused, country_refused)", body = openapi::ErrorBody),
        (status = 401, description = "No or unknown API key", body = openapi::ErrorBody),
        (status = 429, description = "Per-number or per-prefix cap, a fraud guard refusal (prefix_blocked, country_cap, ip_cap, subnet_cap, device_cap) or a brand limit (Retry-After)", body = openapi::ErrorBody),
        (status = 503, description = "Temporarily unable", body = openapi::ErrorBody),
    ),
    security(("api_key" = [])))]
async fn start_verification(
    State(api): ApiState,
    Extension(Peer(p)): PeerAddr,
    h: HeaderMap,
    b: Body,
) -> Response {
    let t = Instant::now();
    respond(
        "start_verification",
        t,
        api.start_verification(p, &h, b).await,
    )
}

#[utoipa::path(get, path = "/v1/verifications/{id}", tag = "verifications",
    params(("id" = String, Path, description = "The verification's id")),
    responses(
        (status = 200, description = "The verification", body = verifications::VerificationView),
        (status = 404, description = "No such verification for this brand", body = openapi::ErrorBody),
    ),
    security(("api_key" = [])))]
async fn get_verification(
    State(api): ApiState,
    Extension(Peer(p)): PeerAddr,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let t = Instant::now();
    respond(
        "get_verification",
        t,
        api.get_verification(p, &h, &id).await,
    )
}

#[utoipa::path(post, path = "/v1/verifications/{id}/check", tag = "verifications",
    params(("id" = String, Path, description = "The verification's id")),
    request_body = verifications::CheckCode,
    responses(
        (status = 200, description = "approved (at most once), denied, expired or max_attempts", body = verifications::CheckResult),
        (status = 404, description = "No such verification for this brand", body = openapi::ErrorBody),
    ),
    security(("api_key" = [])))]
async fn check_verification(
    State(api): ApiState,
    Extension(Peer(p)): PeerAddr,
    h: HeaderMap,
    Path(id): Path<String>,
    b: Body,
) -> Response {
    let t = Instant::now();
    respond(
        "check_verification",
        t,
        api.check_verification(p, &h, &id, b).await,
    )
}

#[utoipa::path(post, path = "/v1/verifications/{id}/resend", tag = "verifications",
    params(("id" = String, Path, description = "The verification's id")),
    responses(
        (status = 200, description = "A new code was sent (the previous one no longer works)", body = verifications::VerificationView),
        (status = 404, description = "No such verification for this brand", body = openapi::ErrorBody),
        (status = 409, description = "Not pending any more", body = openapi::ErrorBody),
        (status = 429, description = "Too soon (Retry-After) or no resends left", body = openapi::ErrorBody),
    ),
    security(("api_key" = [])))]
async fn resend_verification(
    State(api): ApiState,
    Extension(Peer(p)): PeerAddr,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let t = Instant::now();
    respond(
        "resend_verification",
        t,
        api.resend_verification(p, &h, &id).await,
    )
}

/// The API's routes over `api`.
pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/v1/messages", post(send_message))
        .route("/v1/messages/{id}", get(get_message))
        .route("/v1/verifications", post(start_verification))
        .route("/v1/verifications/{id}", get(get_verification))
        .route("/v1/verifications/{id}/check", post(check_verification))
        .route("/v1/verifications/{id}/resend", post(resend_verification))
        .route(
            "/v1/openapi.json",
            get(|| async { axum::Json(openapi::document()) }),
        )
        .fallback(|| async { ApiError::not_found().into_response() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            )
            .into_response()
        })
        .with_state(api)
}

/// The running API.
#[derive(Debug, Clone, Copy)]
pub struct Running {
    pub addr: SocketAddr,
}

/// Bind the listener and serve until `stop` (webhooks are delivered by
/// [`webhook::spawn`], which runs whether the listener does or not: receipts owed
/// from a previous run still go out).
pub async fn start(
    cfg: HttpConfig,
    acceptor: Arc<otpgw_accept::Acceptor>,
    verifier: Option<Arc<Verifier>>,
    stop: CancellationToken,
) -> std::io::Result<Running> {
    let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
    let addr = listener.local_addr()?;
    let cfg = Arc::new(cfg);
    let api = Arc::new(Api {
        keys: auth::Keys::new(cfg.lockout_after, cfg.lockout),
        cfg: cfg.clone(),
        acceptor,
        verifier,
    });
    tokio::spawn(server::serve(listener, router(api), cfg, stop));
    tracing::info!(%addr, "HTTP API listening");
    Ok(Running { addr })
}
