//! Every refusal of the HTTP API, and the one place that maps it to an HTTP status
//! and a stable error code. The body is always JSON:
//! `{"error": {"code": "...", "message": "...", "field": "..."}}`; temporary
//! refusals carry `Retry-After`.
//!
//! | cause | status | code |
//! |---|---|---|
//! | body not JSON, or a field of the wrong type | 400 | `invalid_json` |
//! | a field the API does not know | 400 | `unknown_field` |
//! | `to` not E.164 (`+` and 7-15 digits) | 400 | `invalid_number` |
//! | `from` empty or malformed | 400 | `invalid_sender` |
//! | `text` empty | 400 | `invalid_text` |
//! | `text` over the long-message limit | 400 | `text_too_long` |
//! | `validity_secs` out of range | 400 | `invalid_validity` |
//! | `receipt_url` not an http(s) URL | 400 | `invalid_receipt_url` |
//! | `receipt_url` without a webhook secret for the brand | 400 | `webhook_not_configured` |
//! | a verification field out of range | 400 | `invalid_request` |
//! | `Idempotency-Key` malformed | 400 | `invalid_idempotency_key` |
//! | no or unknown API key | 401 | `unauthorized` |
//! | the key's brand may not call from this address | 403 | `ip_not_allowed` |
//! | sender or destination outside the brand's allow-lists | 403 | `sender_not_allowed`, `destination_not_allowed` |
//! | unknown route, message or verification (another brand's too) | 404 | `not_found` |
//! | method not allowed on the route | 405 | `method_not_allowed` |
//! | body not read within the body timeout | 408 | `body_timeout` |
//! | resend of a verification that is not pending | 409 | `verification_not_pending` |
//! | body over 64 KiB | 413 | `body_too_large` |
//! | `Content-Type` not JSON | 415 | `unsupported_media_type` |
//! | same `Idempotency-Key`, different request | 422 | `idempotency_key_reused` |
//! | no route for the destination | 422 | `no_route` |
//! | too many failed authentications from the address | 429 | `too_many_auth_failures` |
//! | brand over its `max_rate` | 429 | `rate_limited` |
//! | destination over the brand's `max_per_destination` | 429 | `destination_rate_limited` |
//! | verifications per number / per prefix per hour | 429 | `number_rate_limited`, `prefix_rate_limited` |
//! | a verification to a number not valid for its country, of a type or country the brand does not verify | 400 | `invalid_number`, `number_type_refused`, `country_refused` |
//! | refused by the fraud guard: a blocked prefix, a cap per country and day, per end-user address, /24 or device per hour | 429 | `prefix_blocked`, `country_cap`, `ip_cap`, `subnet_cap`, `device_cap` |
//! | resend too soon / no resends left | 429 | `resend_too_soon`, `resend_limit` |
//! | too many submissions waiting for the disk | 429 | `throttled` |
//! | queue full, no carrier up, store unavailable, shutting down | 503 | `queue_full`, `carrier_unavailable`, `store_unavailable`, `shutting_down` |
//! | verifications not configured | 503 | `verify_disabled` |

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use otpgw_accept::AcceptError;
use otpgw_verify::VerifyError;

/// A refusal (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<&'static str>,
    /// Seconds, for `Retry-After`.
    pub retry_after: Option<u64>,
    /// The request's body was left unread: the server closes the connection after
    /// this answer, and says so (`Connection: close`), so that a client does not
    /// send its next request on a connection that is going away.
    pub closes: bool,
}

impl ApiError {
    /// A refusal with a status, a code and a message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after: None,
            closes: false,
        }
    }
    /// 400 about one field.
    pub fn field(code: &'static str, field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: Some(field),
            ..Self::new(StatusCode::BAD_REQUEST, code, message)
        }
    }
    /// The same, to be tried again after `secs`.
    pub fn retry(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }
    /// The same, with the body left unread (see [`ApiError::closes`]).
    pub fn closing(mut self) -> Self {
        self.closes = true;
        self
    }
    /// 404.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "not found")
    }
    /// 401.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or unknown API key (Authorization: Bearer <key>)",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut e = json!({"code": self.code, "message": self.message});
        if let Some(f) = self.field {
            e["field"] = json!(f);
        }
        let mut r = (self.status, Json(json!({ "error": e }))).into_response();
        if let Some(s) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if self.closes {
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

impl From<AcceptError> for ApiError {
    /// The accept layer's HTTP answer for the refusal (`AcceptError::http`).
    fn from(e: AcceptError) -> Self {
        let r = e.http();
        Self {
            status: StatusCode::from_u16(r.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            code: r.code,
            message: e.to_string(),
            field: r.field,
            retry_after: r.retry_after,
            closes: false,
        }
    }
}

impl From<VerifyError> for ApiError {
    fn from(e: VerifyError) -> Self {
        use StatusCode as S;
        let msg = e.to_string();
        match e {
            VerifyError::Invalid { field, .. } => {
                let code = if field == "to" {
                    "invalid_number"
                } else {
                    "invalid_request"
                };
                Self::field(code, field, msg)
            }
            VerifyError::NotFound => Self::not_found(),
            VerifyError::NumberRefused(r) => Self::field(r.code(), "to", msg),
            VerifyError::Fraud { reason, retry_ms } => {
                Self::new(S::TOO_MANY_REQUESTS, reason, msg).retry(retry_ms.div_ceil(1000))
            }
            VerifyError::NumberLimit(ms) => {
                Self::new(S::TOO_MANY_REQUESTS, "number_rate_limited", msg).retry(ms.div_ceil(1000))
            }
            VerifyError::PrefixLimit(ms) => {
                Self::new(S::TOO_MANY_REQUESTS, "prefix_rate_limited", msg).retry(ms.div_ceil(1000))
            }
            VerifyError::ResendTooSoon(ms) => {
                Self::new(S::TOO_MANY_REQUESTS, "resend_too_soon", msg).retry(ms.div_ceil(1000))
            }
            VerifyError::ResendLimit => Self::new(S::TOO_MANY_REQUESTS, "resend_limit", msg),
            VerifyError::NotPending(_) => Self::new(S::CONFLICT, "verification_not_pending", msg),
            VerifyError::Refused(a) => a.into(),
            VerifyError::Store | VerifyError::Random => {
                Self::new(S::SERVICE_UNAVAILABLE, "store_unavailable", msg).retry(1)
            }
            VerifyError::Busy => Self::new(S::SERVICE_UNAVAILABLE, "busy", msg).retry(1),
        }
    }
}
