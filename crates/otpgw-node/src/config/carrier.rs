//! `[[carrier]]` and `[routes]`: where messages go, checked here and turned into the
//! carrier crate's [`CarrierConfig`] and the dispatch crate's [`Routes`].

use std::collections::HashSet;
use std::time::Duration;

use serde::Deserialize;

use otpgw_carrier::{BindMode, CarrierConfig, IdConvention, IdMode};
use otpgw_dispatch::{Routes, Select};

use super::Config;
use super::sections::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindModeCfg {
    Transceiver,
    TransmitterReceiver,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Carrier {
    pub name: String,
    pub address: String,
    pub system_id: String,
    /// The bind password, or `password_env` / `password_file` (config::secret).
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default)]
    pub password_file: Option<std::path::PathBuf>,
    #[serde(default)]
    pub system_type: String,
    /// TLS on the binds (rustls, TLS 1.2 and 1.3).
    #[serde(default)]
    pub tls: bool,
    /// PEM roots the carrier's certificate must chain to (absent: the web's roots).
    #[serde(default)]
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// The name the carrier's certificate must carry (absent: the host of `address`).
    #[serde(default)]
    pub tls_server_name: Option<String>,
    /// otpgw's certificate and key for mutual TLS.
    #[serde(default)]
    pub tls_client_cert_file: Option<std::path::PathBuf>,
    #[serde(default)]
    pub tls_client_key_file: Option<std::path::PathBuf>,
    /// Built from the `tls_*` files when the file is parsed (or why not).
    #[serde(skip)]
    pub(super) tls_client: Option<Result<otpgw_carrier::CarrierTls, String>>,
    #[serde(default = "d_bind_mode")]
    pub bind_mode: BindModeCfg,
    #[serde(default = "d_1")]
    pub binds: usize,
    #[serde(default = "d_100")]
    pub window: usize,
    #[serde(default = "d_10000")]
    pub response_timeout_ms: u64,
    #[serde(default = "d_30")]
    pub enquire_link_secs: u64,
    #[serde(default = "d_200")]
    pub reconnect_min_ms: u64,
    #[serde(default = "d_10000")]
    pub reconnect_max_ms: u64,
    #[serde(default = "d_200")]
    pub retry_delay_ms: u64,
    /// How receipt ids relate to response ids: learned ("auto") or fixed.
    #[serde(default = "d_receipt_ids")]
    pub receipt_ids: ReceiptIds,
    /// Messages per second for all binds together; absent: no cap until throttled.
    #[serde(default)]
    pub rate_limit: Option<u32>,
    /// Binds the carrier allows for all nodes together (Redis backend): each node
    /// opens `binds`, but only as many as hold one of these slots connect.
    #[serde(default)]
    pub max_binds_total: Option<usize>,
    /// With no bind up (or paused) this long, queued messages move to the next
    /// carrier of their route.
    #[serde(default = "d_failover")]
    pub failover_after_ms: u64,
    /// First retry delay after ESME_RTHROTTLED / ESME_RMSGQFUL (doubles per attempt
    /// up to 25 times this).
    #[serde(default = "d_throttle_retry")]
    pub throttle_retry_ms: u64,
    /// Longest delay between retries after temporary errors and unanswered submits
    /// (they start at `retry_delay_ms` and double).
    #[serde(default = "d_10000")]
    pub retry_max_ms: u64,
    /// A submit whose response never came: "resend" (at least once, counted as a
    /// possible duplicate) or "fail" (at most once: finished as UNKNOWN).
    #[serde(default = "d_unanswered")]
    pub unanswered: UnansweredCfg,
    /// Failed sends of one message here (throttling aside) before it moves to the
    /// next carrier of its route; 0: never.
    #[serde(default = "d_failover_attempts")]
    pub failover_attempts: u32,
    /// Failed sends in a row (throttling aside), with no success for
    /// `failover_after_ms`, before the whole carrier counts as failing; 0: never.
    #[serde(default = "d_failing_errors")]
    pub failing_errors: u32,
    /// An OTP this carrier confirmed owes its final receipt within this time, or it
    /// goes out again through the next carrier of its route (absent: not watched,
    /// unless its brand sets `receipt_timeout_ms`).
    #[serde(default)]
    pub receipt_timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnansweredCfg {
    Resend,
    Fail,
}

fn d_unanswered() -> UnansweredCfg {
    UnansweredCfg::Resend
}
fn d_throttle_retry() -> u64 {
    20
}
fn d_failover_attempts() -> u32 {
    2
}
fn d_failing_errors() -> u32 {
    20
}

fn d_failover() -> u64 {
    2000
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptIds {
    Auto,
    Same,
    HexToDecimal,
    DecimalToHex,
}

fn d_receipt_ids() -> ReceiptIds {
    ReceiptIds::Auto
}

impl Carrier {
    /// Build the TLS client of `tls = true` from its files.
    pub(super) fn load_tls(&mut self) {
        if !self.tls {
            return;
        }
        let client = match (&self.tls_client_cert_file, &self.tls_client_key_file) {
            (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
            _ => None,
        };
        let host = self
            .address
            .rsplit_once(':')
            .map_or(self.address.as_str(), |(h, _)| h)
            .trim_matches(['[', ']'])
            .to_string();
        self.tls_client = Some(
            otpgw_accept::tls::client_config(self.tls_ca_file.as_deref(), client).map(|config| {
                otpgw_carrier::CarrierTls {
                    config,
                    server_name: self.tls_server_name.clone().unwrap_or(host),
                }
            }),
        );
    }

    /// The bind password, from the file, the environment or a file (exactly one).
    pub fn password(&self) -> Result<String, String> {
        super::secret::source(
            "password",
            &self.password,
            &self.password_env,
            &self.password_file,
        )
        .resolve()?
        .ok_or_else(|| "password: set one of password, password_env and password_file".into())
    }
}

impl std::fmt::Debug for Carrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Carrier")
            .field("name", &self.name)
            .field("address", &self.address)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutesCfg {
    /// Carriers for destinations no prefix matches.
    #[serde(default)]
    pub default: Vec<String>,
    /// How routes choose among their carriers that are up (default for every
    /// route): "ordered" (the first) or "quality" (the best measured).
    #[serde(default)]
    pub select: SelectCfg,
    #[serde(default)]
    pub prefix: Vec<PrefixRoute>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SelectCfg {
    #[default]
    Ordered,
    Quality,
}

impl SelectCfg {
    fn select(self) -> Select {
        match self {
            SelectCfg::Ordered => Select::Ordered,
            SelectCfg::Quality => Select::Quality,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixRoute {
    pub prefix: String,
    pub carriers: Vec<String>,
    /// Only for this brand (system_id), if set.
    #[serde(default)]
    pub brand: Option<String>,
    /// How this route chooses (default: `routes.select`).
    #[serde(default)]
    pub select: Option<SelectCfg>,
}

fn d_bind_mode() -> BindModeCfg {
    BindModeCfg::Transceiver
}

impl Config {
    /// Problems of the carriers; returns their names.
    pub(super) fn carrier_problems(&self, p: &mut Vec<String>) -> HashSet<String> {
        if self.carriers.is_empty() {
            p.push("carrier: at least one [[carrier]] is required".into());
        }
        let mut names = HashSet::new();
        for (i, c) in self.carriers.iter().enumerate() {
            if c.name.is_empty() {
                p.push(format!("carrier[{i}].name: must not be empty"));
            }
            if !names.insert(c.name.clone()) {
                p.push(format!("carrier[{i}].name = {:?}: duplicate", c.name));
            }
            if !c.address.contains(':') {
                p.push(format!(
                    "carrier[{i}].address = {:?}: must be host:port",
                    c.address
                ));
            }
            if c.system_id.is_empty() || c.system_id.len() > 15 {
                p.push(format!(
                    "carrier[{i}].system_id: must be 1 to 15 characters"
                ));
            }
            let tls_files = c.tls_ca_file.is_some()
                || c.tls_server_name.is_some()
                || c.tls_client_cert_file.is_some()
                || c.tls_client_key_file.is_some();
            if !c.tls && tls_files {
                p.push(format!(
                    "carrier[{i}].tls: the tls_* settings need tls = true"
                ));
            }
            if c.tls_client_cert_file.is_some() != c.tls_client_key_file.is_some() {
                p.push(format!(
                    "carrier[{i}].tls_client_cert_file: goes with tls_client_key_file"
                ));
            }
            if let Some(Err(e)) = &c.tls_client {
                p.push(format!("carrier[{i}].tls: {e}"));
            }
            match c.password() {
                Ok(pw) if pw.len() > 8 => p.push(format!(
                    "carrier[{i}].password: at most 8 characters (SMPP limit)"
                )),
                Ok(_) => {}
                Err(e) => p.push(format!("carrier[{i}].{e}")),
            }
            if c.binds == 0 || c.binds > 64 {
                p.push(format!(
                    "carrier[{i}].binds = {}: must be between 1 and 64",
                    c.binds
                ));
            }
            if c.throttle_retry_ms == 0 || c.retry_delay_ms == 0 {
                p.push(format!(
                    "carrier[{i}]: throttle_retry_ms and retry_delay_ms must be at least 1"
                ));
            }
            if c.window == 0 || c.window > 10_000 {
                p.push(format!(
                    "carrier[{i}].window = {}: must be between 1 and 10000",
                    c.window
                ));
            }
            if c.response_timeout_ms == 0 {
                p.push(format!(
                    "carrier[{i}].response_timeout_ms: must be positive"
                ));
            }
            if self.store.backend == Backend::Redis && c.receipt_ids == ReceiptIds::Auto {
                p.push(format!(
                    "carrier[{i}].receipt_ids: must be set (same, hex_to_decimal or decimal_to_hex) with backend = \"redis\": nodes sharing a Redis see each other's receipts and cannot learn the carrier's id convention from them"
                ));
            }
            if c.max_binds_total == Some(0) {
                p.push(format!(
                    "carrier[{i}].max_binds_total: must be at least 1 (or absent)"
                ));
            }
            if c.max_binds_total.is_some() && self.store.backend != Backend::Redis {
                p.push(format!(
                    "carrier[{i}].max_binds_total: only with backend = \"redis\" (nodes sharing binds); one node's binds are `binds`"
                ));
            }
            if c.receipt_timeout_ms
                .is_some_and(|t| !(100..=3_600_000).contains(&t))
            {
                p.push(format!(
                    "carrier[{i}].receipt_timeout_ms: must be 100 to 3600000 (or absent)"
                ));
            }
            if c.rate_limit == Some(0) {
                p.push(format!(
                    "carrier[{i}].rate_limit: must be at least 1 (or absent)"
                ));
            }
            if c.reconnect_min_ms == 0 || c.reconnect_max_ms < c.reconnect_min_ms {
                p.push(format!(
                    "carrier[{i}]: need 0 < reconnect_min_ms <= reconnect_max_ms"
                ));
            }
        }
        names
    }

    /// Problems of the routes.
    pub(super) fn route_problems(
        &self,
        p: &mut Vec<String>,
        names: &HashSet<String>,
        seen: &HashSet<String>,
    ) {
        let check_list = |p: &mut Vec<String>, field: String, list: &[String]| {
            if list.is_empty() {
                p.push(format!("{field}: must name at least one carrier"));
            }
            for c in list {
                if !names.contains(c) {
                    p.push(format!("{field}: unknown carrier {c:?}"));
                }
            }
        };
        if !self.routes.default.is_empty() {
            check_list(p, "routes.default".into(), &self.routes.default);
        }
        for (i, r) in self.routes.prefix.iter().enumerate() {
            check_list(p, format!("routes.prefix[{i}].carriers"), &r.carriers);
            if !r.prefix.bytes().all(|b| b.is_ascii_digit()) {
                p.push(format!(
                    "routes.prefix[{i}].prefix = {:?}: digits only",
                    r.prefix
                ));
            }
            if let Some(b) = &r.brand
                && !seen.contains(b)
            {
                p.push(format!("routes.prefix[{i}].brand: unknown brand {b:?}"));
            }
        }
        if self.routes.default.is_empty() && self.routes.prefix.is_empty() {
            p.push("routes: no route at all (set routes.default)".into());
        }
    }

    /// The carriers' connection settings.
    pub fn carrier_configs(&self) -> Vec<CarrierConfig> {
        self.carriers
            .iter()
            .map(|c| {
                let pw = c.password().unwrap_or_default();
                let mut k = CarrierConfig::new(&c.name, &c.address, &c.system_id, &pw);
                k.tls = c.tls_client.clone().and_then(Result::ok);
                k.system_type = c.system_type.clone();
                k.bind_mode = match c.bind_mode {
                    BindModeCfg::Transceiver => BindMode::Transceiver,
                    BindModeCfg::TransmitterReceiver => BindMode::TransmitterReceiver,
                };
                k.binds = c.binds;
                k.window = c.window;
                k.response_timeout = Duration::from_millis(c.response_timeout_ms);
                k.enquire_link_interval = Duration::from_secs(c.enquire_link_secs);
                k.reconnect_min = Duration::from_millis(c.reconnect_min_ms);
                k.reconnect_max = Duration::from_millis(c.reconnect_max_ms);
                k.retry_delay = Duration::from_millis(c.retry_delay_ms);
                k.rate_limit = c.rate_limit.map(f64::from);
                k.max_binds_total = c.max_binds_total;
                k.failover_after = Duration::from_millis(c.failover_after_ms);
                k.retry = otpgw_dispatch::RetryPolicy {
                    throttle_base: c.throttle_retry_ms,
                    throttle_max: c.throttle_retry_ms.saturating_mul(25),
                    base: c.retry_delay_ms,
                    max: c.retry_max_ms.max(c.retry_delay_ms),
                };
                k.on_unanswered = match c.unanswered {
                    UnansweredCfg::Resend => otpgw_carrier::Unanswered::Resend,
                    UnansweredCfg::Fail => otpgw_carrier::Unanswered::Fail,
                };
                k.failover_attempts = c.failover_attempts;
                k.failing_errors = c.failing_errors;
                k.receipt_timeout = c.receipt_timeout_ms.map(Duration::from_millis);
                k.receipt_ids = match c.receipt_ids {
                    ReceiptIds::Auto => IdMode::Auto,
                    ReceiptIds::Same => IdMode::Fixed(IdConvention::Same),
                    ReceiptIds::HexToDecimal => IdMode::Fixed(IdConvention::HexToDecimal),
                    ReceiptIds::DecimalToHex => IdMode::Fixed(IdConvention::DecimalToHex),
                };
                k
            })
            .collect()
    }

    /// Every route's carrier list (the default route first), for readiness.
    pub fn route_lists(&self) -> Vec<Vec<String>> {
        std::iter::once(self.routes.default.clone())
            .filter(|d| !d.is_empty())
            .chain(self.routes.prefix.iter().map(|p| p.carriers.clone()))
            .collect()
    }

    /// The routing table.
    pub fn routes(&self) -> Routes {
        let mut r = Routes::new(self.routes.default.clone());
        r.set_default_select(self.routes.select.select());
        for p in &self.routes.prefix {
            let sel = p.select.unwrap_or(self.routes.select).select();
            match &p.brand {
                Some(b) => r.add_brand_prefix_with(b, &p.prefix, p.carriers.clone(), sel),
                None => r.add_prefix_with(&p.prefix, p.carriers.clone(), sel),
            }
        }
        r
    }
}
