//! `POST /v1/verifications` (send a code), `GET /v1/verifications/{id}`,
//! `POST /v1/verifications/{id}/check` and `.../resend`: the HTTP face of
//! [`otpgw_verify::Verifier`].

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use otpgw_proto::time::rfc3339;
use otpgw_verify::{CreateRequest, Outcome, Transaction, Verifier, View};

use crate::Api;
use crate::error::ApiError;
use crate::idempotency;
use otpgw_accept::BrandConfig;

/// A verification to start.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartVerification {
    /// The number to verify, E.164.
    #[schema(example = "+447400900123", pattern = r"^\+[1-9][0-9]{6,14}$")]
    pub to: String,
    /// Text of the code: must contain `{code}`; `{minutes}` is the lifetime.
    #[schema(pattern = r"\{code\}", max_length = 480)]
    pub template: Option<String>,
    /// Digits of the code (4 to 10, default 6).
    #[schema(minimum = 4, maximum = 10)]
    #[serde(default, deserialize_with = "crate::body::whole")]
    pub code_length: Option<u8>,
    /// Lifetime of the code in seconds (1 to 900, default 300).
    #[schema(minimum = 1, maximum = 900)]
    #[serde(default, deserialize_with = "crate::body::whole")]
    pub ttl_secs: Option<u64>,
    /// Only `sms`.
    #[schema(pattern = "^sms$")]
    pub channel: Option<String>,
    /// The payment the code authorises (PSD2 dynamic linking): the template can
    /// show `{amount}`, `{currency}` and `{payee}`, and a check must carry the same.
    pub transaction: Option<TransactionBody>,
    /// The end user's IP address as the brand saw it (IPv4 or IPv6), for the
    /// brand's caps per address and per /24 (IPv6: /64).
    #[schema(example = "203.0.113.7")]
    pub ip: Option<String>,
    /// The end user's device as the brand identifies it (1 to 128 characters),
    /// for the brand's cap per device.
    #[schema(min_length = 1, max_length = 128)]
    pub device_id: Option<String>,
}

impl StartVerification {
    /// The end-user signals, checked.
    fn signals(&self) -> Result<otpgw_verify::Signals, ApiError> {
        let ip = match &self.ip {
            None => None,
            Some(s) => Some(s.parse().map_err(|_| {
                ApiError::field(
                    "invalid_request",
                    "ip",
                    "ip: must be an IPv4 or IPv6 address",
                )
            })?),
        };
        if let Some(d) = &self.device_id
            && !(1..=128).contains(&d.chars().count())
        {
            return Err(ApiError::field(
                "invalid_request",
                "device_id",
                "device_id: must be 1 to 128 characters",
            ));
        }
        Ok(otpgw_verify::Signals {
            ip,
            device_id: self.device_id.clone(),
        })
    }
}

/// A transaction a code is bound to.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransactionBody {
    /// A decimal amount: up to 15 digits, optionally `.` and up to 4 more.
    #[schema(example = "25.00", pattern = r"^[0-9]{1,15}(\.[0-9]{1,4})?$")]
    pub amount: String,
    /// ISO 4217.
    #[schema(example = "EUR", pattern = "^[A-Za-z]{3}$")]
    pub currency: String,
    /// Who is paid, as the user is shown: 1 to 70 characters, no control
    /// characters, not only spaces (runs of spaces count as one).
    #[schema(
        example = "ACME Ltd",
        min_length = 1,
        max_length = 70,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub payee: String,
}

impl TransactionBody {
    fn checked(this: Option<&Self>) -> Result<Option<Transaction>, ApiError> {
        this.map(|t| {
            Transaction::new(&t.amount, &t.currency, &t.payee).map_err(|(field, reason)| {
                ApiError::from(otpgw_verify::VerifyError::Invalid { field, reason })
            })
        })
        .transpose()
    }
}

/// A code to check.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckCode {
    /// The digits the user typed (surrounding spaces are ignored; anything else
    /// than the code's digits is simply a wrong code).
    #[schema(example = "123456")]
    pub code: String,
    /// The transaction the verification was started with, when it was.
    pub transaction: Option<TransactionBody>,
}

/// A verification.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerificationView {
    /// 32 hex digits (128 random bits).
    pub id: String,
    pub to: String,
    /// `pending`, `approved`, `expired`, `max_attempts` or `superseded`.
    pub status: &'static str,
    pub created_at: String,
    pub expires_at: String,
    /// Checks made.
    pub checks: u8,
    /// Codes sent (1 + resends).
    pub sends: u8,
    /// The message carrying the current code.
    pub message_id: String,
}

impl VerificationView {
    fn of(v: &View, ids: &otpgw_core::public_id::IdCipher) -> Self {
        Self {
            id: v.id.clone(),
            to: v.to.clone(),
            status: v.status,
            created_at: rfc3339(v.created_ms),
            expires_at: rfc3339(v.expires_ms),
            checks: v.checks,
            sends: v.sends,
            message_id: ids.hide(v.message).to_string(),
        }
    }
}

/// The answer to a check.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckResult {
    pub id: String,
    /// `approved` (once), `denied`, `expired` or `max_attempts`.
    pub status: &'static str,
    /// Why, when it is not the status itself (`superseded`: a newer verification
    /// for the number replaced this one; `transaction_mismatch`: the check carried
    /// another transaction than the verification's, or none).
    pub reason: Option<&'static str>,
    /// Checks left before the verification locks.
    pub checks_left: u8,
}

impl Api {
    fn verifier(&self) -> Result<&Arc<Verifier>, ApiError> {
        self.verifier.as_ref().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "verify_disabled",
                "verifications are not configured on this gateway ([verify])",
            )
        })
    }

    /// `POST /v1/verifications`.
    pub(crate) async fn start_verification(
        self: &Arc<Self>,
        peer: SocketAddr,
        headers: &HeaderMap,
        body: axum::body::Body,
    ) -> Result<(StatusCode, serde_json::Value), ApiError> {
        let brand = self.authenticate(headers, peer).await?;
        let v = self.verifier()?;
        let once = idempotency::key(headers)?;
        let raw =
            crate::body::read(headers, body, self.cfg.max_body, self.cfg.body_timeout).await?;
        let req: StartVerification = crate::body::json(&raw)?;
        let now = otpgw_core::clock::now_ms();
        let view = match once {
            None => self.start(&brand, v, req, now).await?,
            Some(once) => self.start_once(&brand, v, req, &once, &raw, now).await?,
        };
        Ok((
            StatusCode::CREATED,
            serde_json::json!(VerificationView::of(&view, self.acceptor.ids())),
        ))
    }

    /// A start with an `Idempotency-Key`: a retry with the same key gets the
    /// verification its first request started (as it stands now), and nothing is
    /// sent again.
    async fn start_once(
        &self,
        brand: &Arc<BrandConfig>,
        v: &Arc<Verifier>,
        req: StartVerification,
        once: &str,
        raw: &[u8],
        now: u64,
    ) -> Result<View, ApiError> {
        let (store, fp) = (self.acceptor.store(), idempotency::fingerprint(raw));
        let key = idempotency::verification_key(&brand.system_id, once);
        match idempotency::claim(&**store, &key, &fp, now).await? {
            idempotency::Claim::Done(id) => {
                metrics::counter!("otpgw_http_idempotent_replays_total").increment(1);
                Ok(v.get(brand, &id, now).await?)
            }
            idempotency::Claim::Mine(version) => {
                let r = self.start(brand, v, req, now).await;
                match &r {
                    Ok(view) => {
                        idempotency::finish(&**store, &key, version, &fp, &view.id, now).await
                    }
                    Err(_) => idempotency::release(&**store, &key, version, now).await,
                }
                r
            }
        }
    }

    /// Start a verification (no idempotency key, or one just claimed).
    async fn start(
        &self,
        brand: &Arc<BrandConfig>,
        v: &Arc<Verifier>,
        req: StartVerification,
        now: u64,
    ) -> Result<View, ApiError> {
        let view = v
            .create(
                brand,
                CreateRequest {
                    transaction: TransactionBody::checked(req.transaction.as_ref())?,
                    signals: req.signals()?,
                    to: req.to,
                    template: req.template,
                    code_length: req.code_length,
                    ttl_secs: req.ttl_secs,
                    channel: req.channel,
                },
                now,
            )
            .await?;
        brand.count_accepted();
        Ok(view)
    }

    /// `GET /v1/verifications/{id}`.
    pub(crate) async fn get_verification(
        self: &Arc<Self>,
        peer: SocketAddr,
        headers: &HeaderMap,
        id: &str,
    ) -> Result<(StatusCode, serde_json::Value), ApiError> {
        let brand = self.authenticate(headers, peer).await?;
        let view = self
            .verifier()?
            .get(&brand, id, otpgw_core::clock::now_ms())
            .await?;
        Ok((
            StatusCode::OK,
            serde_json::json!(VerificationView::of(&view, self.acceptor.ids())),
        ))
    }

    /// `POST /v1/verifications/{id}/check`.
    pub(crate) async fn check_verification(
        self: &Arc<Self>,
        peer: SocketAddr,
        headers: &HeaderMap,
        id: &str,
        body: axum::body::Body,
    ) -> Result<(StatusCode, serde_json::Value), ApiError> {
        let brand = self.authenticate(headers, peer).await?;
        let v = self.verifier()?;
        let req: CheckCode = self.json_body(headers, body).await?;
        let tx = TransactionBody::checked(req.transaction.as_ref())?;
        let (outcome, view, mismatch) = v
            .check_for(
                &brand,
                id,
                &req.code,
                tx.as_ref(),
                otpgw_core::clock::now_ms(),
            )
            .await?;
        let (status, reason) = match outcome {
            Outcome::Superseded => ("expired", Some("superseded")),
            o if mismatch => (o.label(), Some("transaction_mismatch")),
            o => (o.label(), None),
        };
        let left = v.rules().max_checks.saturating_sub(view.checks);
        Ok((
            StatusCode::OK,
            serde_json::json!(CheckResult {
                id: view.id,
                status,
                reason,
                // Checks are left only while the code can still be approved
                // (a verification already approved, locked or expired has none).
                checks_left: if view.status == "pending" { left } else { 0 },
            }),
        ))
    }

    /// `POST /v1/verifications/{id}/resend`.
    pub(crate) async fn resend_verification(
        self: &Arc<Self>,
        peer: SocketAddr,
        headers: &HeaderMap,
        id: &str,
    ) -> Result<(StatusCode, serde_json::Value), ApiError> {
        let brand = self.authenticate(headers, peer).await?;
        let view = self
            .verifier()?
            .resend(&brand, id, otpgw_core::clock::now_ms())
            .await?;
        brand.count_accepted();
        Ok((
            StatusCode::OK,
            serde_json::json!(VerificationView::of(&view, self.acceptor.ids())),
        ))
    }
}
