//! `[[brand]]`: who may bind or call the HTTP API, with what credentials, limits
//! and defaults; checked here and turned into the ingest crate's [`BrandConfig`].

use std::collections::HashSet;
use std::time::Duration;

use serde::Deserialize;

use otpgw_accept::BrandConfig;
use otpgw_core::Class;

use super::sections::*;
use super::{Config, parse_net};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClassCfg {
    Otp,
    Bulk,
}

/// Where a brand's SMPP receipts go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceiptsTo {
    /// The session that submitted the message (a transmitter's: a receiver bound
    /// from the same address), while it is bound; else any receiver.
    Submitter,
    /// Any receiver or transceiver session of the brand.
    Any,
}

fn d_receipts_to() -> ReceiptsTo {
    ReceiptsTo::Submitter
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Brand {
    pub system_id: String,
    /// Refused: passwords are configured only as hashes (kept so the error says so).
    #[serde(default)]
    pub password: Option<String>,
    /// argon2id PHC string from `otpgw hash-password`.
    #[serde(default)]
    pub password_hash: String,
    /// Simultaneous binds allowed.
    #[serde(default = "d_max_binds")]
    pub max_binds: usize,
    /// Networks (CIDR) the brand may bind from; empty: anywhere.
    #[serde(default)]
    pub allowed_ips: Vec<String>,
    /// Messages per second for all its sessions (over it: ESME_RTHROTTLED); absent: no limit.
    #[serde(default)]
    pub max_rate: Option<u32>,
    /// Sender ids it may use; empty: any.
    #[serde(default)]
    pub allowed_sources: Vec<String>,
    /// Destination prefixes (country codes, ranges) it may send to; empty: any.
    #[serde(default)]
    pub allowed_prefixes: Vec<String>,
    /// Messages per destination number per `destination_window_secs` (SMS pumping
    /// defence); absent: no limit.
    #[serde(default)]
    pub max_per_destination: Option<u32>,
    #[serde(default = "d_dest_window")]
    pub destination_window_secs: u64,
    #[serde(default = "d_class")]
    pub default_class: ClassCfg,
    /// Where its SMPP receipts go: `submitter` (default) or `any`.
    #[serde(default = "d_receipts_to")]
    pub receipts_to: ReceiptsTo,
    #[serde(default = "d_600")]
    pub otp_lifetime_secs: u64,
    #[serde(default = "d_86400")]
    pub bulk_lifetime_secs: u64,
    /// The HTTP API key's hash: `sha256:<hex>` from `otpgw new-api-key`, or an
    /// argon2id string; absent: no HTTP access.
    #[serde(default)]
    pub api_key_hash: Option<String>,
    /// The key receipt webhooks are signed with (at least 16 characters), or the
    /// environment variable holding it.
    #[serde(default)]
    pub webhook_secret: Option<String>,
    #[serde(default)]
    pub webhook_secret_env: Option<String>,
    #[serde(default)]
    pub webhook_secret_file: Option<std::path::PathBuf>,
    /// Sender id of this brand's verification codes (else `[verify] sender`).
    #[serde(default)]
    pub verify_sender: Option<String>,
    /// Receipt timeout of this brand's OTPs, overriding the carriers' (ms).
    #[serde(default)]
    pub receipt_timeout_ms: Option<u64>,
    /// Sends of an OTP beyond the first, each through a carrier not tried yet
    /// (default 1 when a receipt timeout applies).
    #[serde(default)]
    pub fallback_max: Option<u8>,
    /// Where a signed event goes when every SMS attempt of an OTP failed with time
    /// left (for a voice or push fallback); needs `webhook_secret`.
    #[serde(default)]
    pub fallback_url: Option<String>,
    /// How long this brand's finished records are kept (message statuses and
    /// verifications), when shorter than the store's `finished_retention_secs`
    /// and the verifications' `keep_after`.
    #[serde(default)]
    pub retention_secs: Option<u64>,
    /// The fraud guard of its verifications: "block" (default), "shadow" (decide,
    /// log and count; refuse nothing) or "off".
    #[serde(default = "super::fraud::d_mode")]
    pub fraud_mode: String,
    /// Number types it verifies (default mobile and fixed_line_or_mobile).
    #[serde(default = "super::fraud::d_types")]
    pub allowed_number_types: Vec<String>,
    /// ISO country codes it verifies; empty: all.
    #[serde(default)]
    pub allowed_countries: Vec<String>,
    /// Verifications per country (ISO code) per day, e.g. `{ GB = 50000 }`.
    #[serde(default)]
    pub max_per_country_per_day: std::collections::HashMap<String, u32>,
    /// Verifications per end-user address (`ip`) per hour.
    #[serde(default = "super::fraud::d_per_ip")]
    pub max_per_ip_per_hour: u32,
    /// Per end-user /24 (IPv6 /64) per hour.
    #[serde(default = "super::fraud::d_per_subnet")]
    pub max_per_subnet_per_hour: u32,
    /// Per end-user device (`device_id`) per hour.
    #[serde(default = "super::fraud::d_per_device")]
    pub max_per_device_per_hour: u32,
}

fn d_class() -> ClassCfg {
    ClassCfg::Otp
}

impl Brand {
    /// The webhook secret, from the file or the environment.
    pub fn webhook_secret(&self) -> Result<Option<String>, String> {
        super::secret::source(
            "webhook_secret",
            &self.webhook_secret,
            &self.webhook_secret_env,
            &self.webhook_secret_file,
        )
        .resolve()
    }
}

impl std::fmt::Debug for Brand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Brand")
            .field("system_id", &self.system_id)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Problems of the brands; returns their system_ids.
    pub(super) fn brand_problems(&self, p: &mut Vec<String>) -> HashSet<String> {
        let mut seen = HashSet::new();
        for (i, b) in self.brands.iter().enumerate() {
            if b.system_id.is_empty() || b.system_id.len() > 15 || !b.system_id.is_ascii() {
                p.push(format!(
                    "brand[{i}].system_id: must be 1 to 15 ASCII characters"
                ));
            }
            super::fraud::brand_problems(i, b, p);
            if b.retention_secs == Some(0) {
                p.push(format!("brand[{i}].retention_secs: must be at least 1"));
            }
            if b.password.is_some() {
                p.push(format!(
                    "brand[{i}].password: plain passwords are not accepted; set password_hash to the output of `otpgw hash-password`"
                ));
            } else if let Err(e) = otpgw_accept::auth::check_hash(&b.password_hash) {
                p.push(format!("brand[{i}].password_hash: {e}"));
            }
            if b.max_binds == 0 {
                p.push(format!("brand[{i}].max_binds: must be at least 1"));
            }
            if b.max_rate == Some(0) || b.max_per_destination == Some(0) {
                p.push(format!(
                    "brand[{i}]: max_rate and max_per_destination must be at least 1 (leave them out for no limit)"
                ));
            }
            if b.destination_window_secs == 0 {
                p.push(format!(
                    "brand[{i}].destination_window_secs: must be at least 1"
                ));
            }
            if let Some(bad) = b
                .allowed_prefixes
                .iter()
                .find(|p| p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()))
            {
                p.push(format!(
                    "brand[{i}].allowed_prefixes: {bad:?} must be digits (no + or spaces)"
                ));
            }
            for n in &b.allowed_ips {
                if parse_net(n).is_none() {
                    p.push(format!(
                        "brand[{i}].allowed_ips: {n:?} is not an address or a CIDR network"
                    ));
                }
            }
            if !seen.insert(b.system_id.clone()) {
                p.push(format!(
                    "brand[{i}].system_id = {:?}: duplicate",
                    b.system_id
                ));
            }
            if b.receipt_timeout_ms
                .is_some_and(|t| !(100..=3_600_000).contains(&t))
            {
                p.push(format!(
                    "brand[{i}].receipt_timeout_ms: must be 100 to 3600000 (or absent)"
                ));
            }
            if b.fallback_max.is_some_and(|n| n > 5) {
                p.push(format!("brand[{i}].fallback_max: at most 5"));
            }
            if let Some(u) = &b.fallback_url {
                if let Err(e) = self.url_policy().check(u) {
                    p.push(format!("brand[{i}].fallback_url: {e}"));
                }
                if !matches!(b.webhook_secret(), Ok(Some(_))) {
                    p.push(format!(
                        "brand[{i}].fallback_url: needs webhook_secret (events are signed)"
                    ));
                }
            }
            if b.otp_lifetime_secs == 0 || b.bulk_lifetime_secs == 0 {
                p.push(format!("brand[{i}]: lifetimes must be at least 1 second"));
            }
        }
        seen
    }

    /// The brands' delivery assurance policies.
    pub fn assurance_policies(
        &self,
    ) -> std::collections::HashMap<std::sync::Arc<str>, otpgw_core::assure::Policy> {
        self.brands
            .iter()
            .map(|b| {
                let p = otpgw_core::assure::Policy {
                    receipt_timeout_ms: b.receipt_timeout_ms,
                    fallback_max: b
                        .fallback_max
                        .unwrap_or(otpgw_core::assure::DEFAULT_FALLBACK_MAX),
                    fallback_url: b.fallback_url.as_deref().map(std::sync::Arc::from),
                };
                (std::sync::Arc::from(b.system_id.as_str()), p)
            })
            .collect()
    }

    /// The brands.
    pub fn brand_configs(&self) -> Vec<BrandConfig> {
        self.brands
            .iter()
            .map(|b| {
                let mut c = BrandConfig::new(&b.system_id, &b.password_hash);
                c.max_binds = b.max_binds;
                c.allowed_nets = b.allowed_ips.iter().filter_map(|n| parse_net(n)).collect();
                let mut limits =
                    otpgw_accept::limits::BrandLimits::new(b.max_rate, otpgw_core::clock::now_ms());
                limits.allowed_sources = b.allowed_sources.clone();
                limits.allowed_prefixes = b.allowed_prefixes.clone();
                c.limits = std::sync::Arc::new(limits);
                c.per_destination = b
                    .max_per_destination
                    .map(|m| (m, Duration::from_secs(b.destination_window_secs)));
                c.default_class = match b.default_class {
                    ClassCfg::Otp => Class::Otp,
                    ClassCfg::Bulk => Class::Bulk,
                };
                c.otp_lifetime = Duration::from_secs(b.otp_lifetime_secs);
                c.bulk_lifetime = Duration::from_secs(b.bulk_lifetime_secs);
                c.api_key_hash = b.api_key_hash.clone();
                c.webhook_secret = b.webhook_secret().ok().flatten();
                c.verify_sender = b.verify_sender.clone();
                c.receipts_to_submitter = b.receipts_to == ReceiptsTo::Submitter;
                c.retention = b.retention_secs.map(Duration::from_secs);
                c.fraud = std::sync::Arc::new(super::fraud::brand_fraud(b));
                c
            })
            .collect()
    }

    /// Per brand with a `retention_secs` shorter than the store's
    /// `finished_retention_secs`: how much sooner (ms) its statuses are purged.
    pub fn status_retention(&self) -> std::collections::HashMap<std::sync::Arc<str>, u64> {
        let all = self.store.finished_retention_secs;
        self.brands
            .iter()
            .filter_map(|b| {
                let r = b.retention_secs?;
                (r < all).then(|| (b.system_id.as_str().into(), (all - r) * 1000))
            })
            .collect()
    }
}
