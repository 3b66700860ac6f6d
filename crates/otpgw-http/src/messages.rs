//! `POST /v1/messages` and `GET /v1/messages/{id}`: a brand's text, through the same
//! acceptor as a `submit_sm` (validation, brand limits, durable store, queue), with
//! an optional signed receipt webhook and an `Idempotency-Key`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use otpgw_accept::acceptor::{once_key, parse_once_value};
use otpgw_accept::validate::e164;
use otpgw_accept::{Submission, compose};
use otpgw_core::Class;
use otpgw_core::message::Extra;
use otpgw_core::public_id::IdCipher;
use otpgw_core::status::MessageStatus;
use otpgw_proto::time::rfc3339;

use crate::Api;
use crate::error::ApiError;
use crate::idempotency;

/// Priority class of a message.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ClassName {
    /// One-time passwords: ahead of bulk, earliest expiry first.
    Otp,
    Bulk,
}

/// A message to send.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    /// Destination, E.164 (`+` and 7 to 15 digits, the first not 0).
    #[schema(example = "+447400900123", pattern = r"^\+[1-9][0-9]{6,14}$")]
    pub to: String,
    /// Sender id: up to 11 printable ASCII characters, or a number of up to 15
    /// digits.
    #[schema(example = "MyBank", pattern = r"^(\+?[0-9]{1,15}|[ -~]{1,11})$")]
    pub from: String,
    /// The text: 1 to 500 characters of Unicode (sent in the GSM alphabet when it
    /// fits, else UCS-2; long texts go as concatenated parts).
    #[schema(
        example = "Your login code is 123456",
        min_length = 1,
        max_length = 500
    )]
    pub text: String,
    /// `otp` (default for brands whose default class is OTP) or `bulk`.
    pub class: Option<ClassName>,
    /// Seconds the message may wait to be sent (default: the brand's lifetime of
    /// its class); never sent after.
    #[schema(minimum = 1, maximum = 604800)]
    #[serde(default, deserialize_with = "crate::body::whole")]
    pub validity_secs: Option<u64>,
    /// Where the final status goes as a signed webhook (`Otpgw-Signature`): an
    /// http(s) URL whose host is a name (an address literal is refused when it is
    /// internal; a name resolving to an internal address is never posted to).
    #[schema(
        max_length = 2048,
        pattern = r"^https?://([A-Za-z0-9-]+\.)*[A-Za-z][A-Za-z0-9-]*(:[1-9][0-9]{0,3})?(/[!-~]*)?$",
        example = "https://bank.example/otpgw/receipts"
    )]
    pub receipt_url: Option<String>,
}

/// A message taken.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageAccepted {
    /// otpgw's message id (16 hex digits).
    pub id: String,
    /// Always `queued`.
    pub status: &'static str,
}

/// Where a message stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageView {
    pub id: String,
    /// `queued`, `sent`, `delivered`, `undeliverable`, `expired`, `rejected`,
    /// `deleted`, `unknown`.
    pub status: &'static str,
    /// The carrier that took it, once one did.
    pub carrier: Option<String>,
    pub created_at: String,
    pub sent_at: Option<String>,
    pub done_at: Option<String>,
    /// After this instant it is never sent.
    pub expires_at: String,
    /// The carrier's error code of a final state other than delivered.
    pub error_code: Option<String>,
}

impl MessageView {
    fn of(s: &MessageStatus, ids: &IdCipher) -> Self {
        let at = |ms: u64| (ms > 0).then(|| rfc3339(ms));
        Self {
            id: ids.hide(s.id).to_string(),
            status: s.stage.name(),
            carrier: s.carrier.clone(),
            created_at: rfc3339(s.accepted_ms),
            sent_at: at(s.sent_ms),
            done_at: at(s.done_ms),
            expires_at: rfc3339(s.deadline_ms),
            error_code: Some(s.err.clone()).filter(|e| !e.is_empty() && e != "000"),
        }
    }
}

/// Longest text, in characters: any 500 characters fit the accept layer's
/// 2,000 octets (UCS-2 takes at most 4 octets a character).
const MAX_TEXT_CHARS: usize = 500;

fn check_url(policy: &crate::url_policy::UrlPolicy, u: &str) -> Result<(), ApiError> {
    policy.check(u).map(drop).map_err(|e| {
        ApiError::field(
            "invalid_receipt_url",
            "receipt_url",
            format!("receipt_url {e}"),
        )
    })
}

impl Api {
    /// `POST /v1/messages`.
    pub(crate) async fn send_message(
        self: &Arc<Self>,
        peer: SocketAddr,
        headers: &HeaderMap,
        body: axum::body::Body,
    ) -> Result<(StatusCode, serde_json::Value), ApiError> {
        let brand = self.authenticate(headers, peer).await?;
        let key = idempotency::key(headers)?;
        let raw =
            crate::body::read(headers, body, self.cfg.max_body, self.cfg.body_timeout).await?;
        // The key and the request's fingerprint (taken only with a key: it reads
        // the body once more).
        let once = key.map(|k| (k, idempotency::fingerprint(&raw)));
        let store = self.acceptor.store();
        // A retry of a request already taken answers as the first time did.
        if let Some((k, fp)) = &once
            && let Some(rec) = store
                .kv_get(&once_key(&brand.system_id, k))
                .await
                .map_err(|_| ApiError::from(otpgw_accept::AcceptError::StoreUnavailable))?
        {
            return replay(&rec.value, fp, self.acceptor.ids());
        }
        let req: SendMessage = crate::body::json(&raw)?;
        let Some(digits) = e164(&req.to) else {
            return Err(ApiError::field(
                "invalid_number",
                "to",
                "to must be an E.164 number: + and 7 to 15 digits",
            ));
        };
        if req.text.is_empty() {
            return Err(ApiError::field(
                "invalid_text",
                "text",
                "text must not be empty",
            ));
        }
        if req.text.chars().count() > MAX_TEXT_CHARS {
            return Err(ApiError::field(
                "text_too_long",
                "text",
                "text must be at most 500 characters",
            ));
        }
        if let Some(v) = req.validity_secs
            && !(1..=604_800).contains(&v)
        {
            return Err(ApiError::field(
                "invalid_validity",
                "validity_secs",
                "validity_secs must be 1 to 604800",
            ));
        }
        if let Some(u) = &req.receipt_url {
            check_url(&self.cfg.webhooks.urls, u)?;
            if brand.webhook_secret.is_none() {
                return Err(ApiError::field(
                    "webhook_not_configured",
                    "receipt_url",
                    "the brand has no webhook_secret to sign receipts with",
                ));
            }
        }
        let class = req.class.map(|c| match c {
            ClassName::Otp => Class::Otp,
            ClassName::Bulk => Class::Bulk,
        });
        let (to, body) = compose::sms(compose::Text {
            to: digits,
            from: &req.from,
            text: &req.text,
            validity_ms: req.validity_secs.map(|s| s * 1000),
            class,
        });
        let sub = Submission {
            to,
            body,
            class,
            extra: Some(Arc::new(Extra {
                receipt_url: req.receipt_url.map(Arc::from),
                verification: None,
            })),
            id: None,
            once,
            origin: 0,
            group: None,
        };
        let now = otpgw_core::clock::now_ms();
        let mine = sub.once.as_ref().map(|(_, fp)| fp.clone());
        let accepted = self.acceptor.accept_with(&brand, sub, now).await?;
        if let (Some(theirs), Some(mine)) = (accepted.duplicate, mine) {
            // The same key was taken by a concurrent request.
            return replay(
                &otpgw_accept::acceptor::once_value(accepted.id, &theirs),
                &mine,
                self.acceptor.ids(),
            );
        }
        brand.count_accepted();
        Ok((
            StatusCode::ACCEPTED,
            serde_json::json!(MessageAccepted {
                id: self.acceptor.ids().hide(accepted.id).to_string(),
                status: "queued",
            }),
        ))
    }

    /// `GET /v1/messages/{id}`.
    pub(crate) async fn get_message(
        self: &Arc<Self>,
        peer: SocketAddr,
        headers: &HeaderMap,
        id: &str,
    ) -> Result<(StatusCode, serde_json::Value), ApiError> {
        let brand = self.authenticate(headers, peer).await?;
        let id = self
            .acceptor
            .ids()
            .parse(id)
            .ok_or_else(ApiError::not_found)?;
        let status = self.acceptor.status(id).await?;
        match status {
            Some(s) if s.brand == brand.system_id => Ok((
                StatusCode::OK,
                serde_json::json!(MessageView::of(&s, self.acceptor.ids())),
            )),
            // Another brand's message does not exist for this one.
            _ => Err(ApiError::not_found()),
        }
    }
}

/// The first answer for an idempotency key, or 422 when the request differs.
fn replay(
    stored: &[u8],
    fingerprint: &[u8],
    ids: &IdCipher,
) -> Result<(StatusCode, serde_json::Value), ApiError> {
    let Some((id, fp)) = parse_once_value(stored) else {
        return Err(otpgw_accept::AcceptError::StoreUnavailable.into());
    };
    if fp != fingerprint {
        return Err(idempotency::reused());
    }
    metrics::counter!("otpgw_http_idempotent_replays_total").increment(1);
    Ok((
        StatusCode::ACCEPTED,
        serde_json::json!(MessageAccepted {
            id: ids.hide(id).to_string(),
            status: "queued",
        }),
    ))
}
