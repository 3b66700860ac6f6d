//! The service's settings, requests, views and errors.

use std::time::Duration;

use otpgw_accept::AcceptError;
use otpgw_accept::fraud::NumberRefusal;
use otpgw_core::MsgId;

use super::Signals;
use crate::code::Secret;
use crate::guard::GuardConfig;
use crate::machine::{Outcome, Rules};
use crate::transaction::Transaction;

/// Settings of the verification service.
#[derive(Debug, Clone)]
pub struct VerifyConfig {
    pub secret: Secret,
    pub rules: Rules,
    /// Sender id of the codes (a brand's `verify_sender` overrides it).
    pub sender: String,
    /// Text of the codes: `{code}` is replaced by the code, `{minutes}` by the
    /// lifetime in whole minutes.
    pub template: String,
    pub default_ttl: Duration,
    pub max_ttl: Duration,
    /// Verifications per destination number per hour, per brand.
    pub per_number_per_hour: u32,
    /// Verifications per destination prefix (the first `prefix_digits` digits) per
    /// hour, per brand: the defence against SMS pumping to a premium range.
    pub per_prefix_per_hour: u32,
    pub prefix_digits: usize,
    /// How long a record stays readable after it expired (status, "approved once").
    pub keep_after: Duration,
    /// The conversion guard's settings (its `prefix_digits` is the one above).
    pub guard: GuardConfig,
}

impl VerifyConfig {
    /// Defaults around `secret`: 5 checks, 3 resends 30 s apart, 5 minutes (at most
    /// 15), 5 per number and 10,000 per 6-digit prefix per hour (a ceiling: the
    /// conversion guard is the defence), kept a day.
    pub fn new(secret: Secret) -> Self {
        Self {
            secret,
            rules: Rules::default(),
            sender: "Verify".into(),
            template: "Your verification code is {code}. It expires in {minutes} minutes.".into(),
            default_ttl: Duration::from_secs(300),
            max_ttl: Duration::from_secs(900),
            per_number_per_hour: 5,
            per_prefix_per_hour: 10_000,
            prefix_digits: 6,
            keep_after: Duration::from_secs(86_400),
            guard: GuardConfig::default(),
        }
    }
}

/// A request to verify a number.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    /// E.164: `+` and digits.
    pub to: String,
    pub template: Option<String>,
    pub code_length: Option<u8>,
    pub ttl_secs: Option<u64>,
    /// Only "sms" (the default) for now.
    pub channel: Option<String>,
    /// The transaction the code is for (shown with `{amount}`, `{currency}`,
    /// `{payee}`; a check must carry the same).
    pub transaction: Option<Transaction>,
    /// The end user's address and device, for the brand's caps.
    pub signals: Signals,
}

/// A verification as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub id: String,
    pub to: String,
    /// "pending", "approved", "expired", "max_attempts" or "superseded".
    pub status: &'static str,
    pub created_ms: u64,
    pub expires_ms: u64,
    pub checks: u8,
    pub sends: u8,
    /// The message carrying the current code.
    pub message: MsgId,
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("{field}: {reason}")]
    Invalid {
        field: &'static str,
        reason: &'static str,
    },
    #[error("no such verification")]
    NotFound,
    /// Over the cap per number; the hour's window ends in this many ms.
    #[error("too many verifications for this number in the last hour")]
    NumberLimit(u64),
    /// Over the cap per prefix; the window ends in this many ms.
    #[error("too many verifications for numbers of this prefix in the last hour")]
    PrefixLimit(u64),
    /// The number is not one the brand verifies.
    #[error("{0}")]
    NumberRefused(NumberRefusal),
    /// Refused by the fraud guard (`reason`: `prefix_blocked`, `country_cap`,
    /// `ip_cap`, `subnet_cap`, `device_cap`); may be tried again after `retry_ms`.
    #[error("refused by the fraud guard ({reason})")]
    Fraud { reason: &'static str, retry_ms: u64 },
    #[error("a new code can be sent in {0} ms")]
    ResendTooSoon(u64),
    #[error("no more codes can be sent for this verification")]
    ResendLimit,
    #[error("the verification is {}", .0.label())]
    NotPending(Outcome),
    #[error("message refused: {0}")]
    Refused(AcceptError),
    #[error("store unavailable")]
    Store,
    #[error("too many concurrent changes; try again")]
    Busy,
    #[error("no randomness")]
    Random,
}
