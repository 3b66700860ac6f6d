//! The configuration file: one TOML file, parsed strictly (unknown keys are errors,
//! with line and column) and then checked as a whole. A bad file is never silently
//! replaced by defaults: `otpgw check-config` and `otpgw serve` refuse it and say
//! which field is wrong.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use otpgw_carrier::{BindMode, CarrierConfig, IdConvention, IdMode};
use otpgw_core::Class;
use otpgw_dispatch::Routes;
use otpgw_ingest::{BrandConfig, ServerConfig};

/// A configuration problem, with where it is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: invalid configuration:\n{}", .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid { path: String, problems: Vec<String> },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: Server,
    #[serde(default)]
    pub store: Store,
    #[serde(default)]
    pub queue: Queue,
    #[serde(default)]
    pub receipts: Receipts,
    #[serde(default)]
    pub ops: Ops,
    #[serde(default)]
    pub log: Log,
    #[serde(rename = "brand", default)]
    pub brands: Vec<Brand>,
    #[serde(rename = "carrier", default)]
    pub carriers: Vec<Carrier>,
    pub routes: RoutesCfg,
    /// The TLS listener, loaded from `server.tls_*` when the file is parsed.
    #[serde(skip)]
    pub tls: Option<otpgw_ingest::tls::TlsListen>,
    #[serde(skip)]
    tls_error: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    pub listen: SocketAddr,
    #[serde(default = "d_max_pdu")]
    pub max_pdu_bytes: usize,
    #[serde(default = "d_30")]
    pub bind_timeout_secs: u64,
    #[serde(default = "d_60")]
    pub enquire_link_secs: u64,
    #[serde(default = "d_30")]
    pub response_timeout_secs: u64,
    #[serde(default = "d_100")]
    pub receipt_window: usize,
    #[serde(default = "d_1000")]
    pub max_connections: usize,
    /// submit_sm a session may have waiting for the store before ESME_RTHROTTLED.
    #[serde(default = "d_max_pending_submits")]
    pub max_pending_submits: usize,
    /// On SIGTERM/Ctrl-C: how long carrier windows may take to drain.
    #[serde(default = "d_grace")]
    pub shutdown_grace_secs: u64,
    /// Whether the plain-TCP listener on `listen` runs (false: TLS only).
    #[serde(default = "d_true")]
    pub plain_listener: bool,
    /// A TLS listener for brands (rustls), with its PEM certificate chain and key.
    #[serde(default)]
    pub tls_listen: Option<SocketAddr>,
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
    /// Failed binds of one account before it is locked (0: never).
    #[serde(default = "d_lockout_after")]
    pub lockout_after: u32,
    /// Failed binds from one IP address before it is locked (0: never).
    #[serde(default = "d_lockout_ip_after")]
    pub lockout_ip_after: u32,
    /// How long a lock lasts, and the window failures are counted in.
    #[serde(default = "d_lockout_secs")]
    pub lockout_secs: u64,
    /// Answer bind failures with ESME_RINVSYSID / ESME_RINVPASWD instead of
    /// ESME_RBINDFAIL for every failure.
    #[serde(default)]
    pub specific_bind_errors: bool,
    /// A PDU whose first bytes arrived must be complete within this time.
    #[serde(default = "d_10")]
    pub pdu_timeout_secs: u64,
    /// A bound session with nothing but keepalives for this long is closed.
    #[serde(default = "d_3600")]
    pub idle_timeout_secs: u64,
    /// Connections at once from one IP address.
    #[serde(default = "d_100")]
    pub max_connections_per_ip: usize,
    /// Not-yet-bound connections from one IP address.
    #[serde(default = "d_10usize")]
    pub max_unbound_per_ip: usize,
}

fn d_10() -> u64 {
    10
}
fn d_3600() -> u64 {
    3600
}
fn d_10usize() -> usize {
    10
}

fn d_lockout_after() -> u32 {
    5
}
fn d_lockout_ip_after() -> u32 {
    20
}
fn d_lockout_secs() -> u64 {
    300
}
fn d_max_binds() -> usize {
    10
}
fn d_dest_window() -> u64 {
    3600
}

fn d_max_pending_submits() -> usize {
    2000
}
fn d_grace() -> u64 {
    10
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A redb file on local disk with group commit: the default.
    Embedded,
    /// Keeps nothing across a restart; only when named, and logged loudly.
    Memory,
    /// Redis Streams (`redis_url`, `redis_prefix`, `node_id`); durable when Redis
    /// runs with `appendonly yes` and `appendfsync always`.
    Redis,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Store {
    #[serde(default = "d_backend")]
    pub backend: Backend,
    /// The embedded store's file.
    #[serde(default = "d_store_path")]
    pub path: std::path::PathBuf,
    /// Group commit: wait this long after a batch's first write for more.
    #[serde(default = "d_commit_window")]
    pub commit_window_us: u64,
    /// Group commit: most writes in one commit.
    #[serde(default = "d_batch_max")]
    pub batch_max: usize,
    /// Finished-message records are kept this long.
    #[serde(default = "d_finished_retention")]
    pub finished_retention_secs: u64,
    /// A receipt waits this long for its brand to bind, then is dropped (counted).
    #[serde(default = "d_receipt_retention")]
    pub receipt_retention_secs: u64,
    /// Redis backend: the server (`redis://host:port/db`).
    #[serde(default)]
    pub redis_url: String,
    /// Redis backend: prefix of every key, so gateways can share a Redis.
    #[serde(default = "d_redis_prefix")]
    pub redis_prefix: String,
    /// Redis backend: this node's id, the same across its restarts and different
    /// from every other node's.
    #[serde(default)]
    pub node_id: String,
    /// Redis backend: each carrier's `rate_limit` holds for all nodes on this Redis
    /// prefix together (a token bucket in Redis), not per node.
    #[serde(default = "d_true")]
    pub share_carrier_limits: bool,
    /// Redis backend: a node that has not renewed its lease for this long is dead,
    /// and the others take over its messages and owed receipts.
    #[serde(default = "d_node_lease")]
    pub node_lease_ms: u64,
}

fn d_node_lease() -> u64 {
    5000
}

impl Default for Store {
    fn default() -> Self {
        Self {
            backend: d_backend(),
            path: d_store_path(),
            commit_window_us: d_commit_window(),
            batch_max: d_batch_max(),
            finished_retention_secs: d_finished_retention(),
            receipt_retention_secs: d_receipt_retention(),
            redis_url: String::new(),
            redis_prefix: d_redis_prefix(),
            node_id: String::new(),
            share_carrier_limits: true,
            node_lease_ms: d_node_lease(),
        }
    }
}

fn d_redis_prefix() -> String {
    "otpgw".into()
}

fn d_backend() -> Backend {
    Backend::Embedded
}
fn d_store_path() -> std::path::PathBuf {
    "data/otpgw.redb".into()
}
fn d_commit_window() -> u64 {
    200
}
fn d_batch_max() -> usize {
    8192
}
fn d_finished_retention() -> u64 {
    3600
}
fn d_receipt_retention() -> u64 {
    3 * 86_400
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Queue {
    /// Messages queued per carrier before brands get ESME_RMSGQFUL.
    #[serde(default = "d_queue")]
    pub capacity: usize,
    /// When no carrier of a route has been available this long, brands get
    /// ESME_RTHROTTLED for messages to it at once (0: they queue and wait).
    #[serde(default = "d_refuse_down")]
    pub refuse_after_down_ms: u64,
}
impl Default for Queue {
    fn default() -> Self {
        Self {
            capacity: d_queue(),
            refuse_after_down_ms: d_refuse_down(),
        }
    }
}

fn d_refuse_down() -> u64 {
    10_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipts {
    /// Receipts held per brand while none of its receivers is bound.
    #[serde(default = "d_outbox")]
    pub outbox_capacity: usize,
}
impl Default for Receipts {
    fn default() -> Self {
        Self {
            outbox_capacity: d_outbox(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    /// "text" (default) or "json".
    #[serde(default)]
    pub format: crate::LogFormat,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ops {
    /// Serve /metrics, /healthz and /readyz.
    #[serde(default = "d_true")]
    pub enabled: bool,
    /// Where (loopback by default: it is not for the internet).
    #[serde(default = "d_ops_listen")]
    pub listen: SocketAddr,
    /// Bearer token for /admin; without one the admin API is off.
    #[serde(default)]
    pub admin_token: Option<String>,
}
impl Default for Ops {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: d_ops_listen(),
            admin_token: None,
        }
    }
}
fn d_true() -> bool {
    true
}
fn d_ops_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClassCfg {
    Otp,
    Bulk,
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
    #[serde(default = "d_600")]
    pub otp_lifetime_secs: u64,
    #[serde(default = "d_86400")]
    pub bulk_lifetime_secs: u64,
}

impl std::fmt::Debug for Brand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Brand")
            .field("system_id", &self.system_id)
            .finish_non_exhaustive()
    }
}

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
    pub password: String,
    #[serde(default)]
    pub system_type: String,
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

impl std::fmt::Debug for Carrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Carrier")
            .field("name", &self.name)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutesCfg {
    /// Carriers for destinations no prefix matches.
    #[serde(default)]
    pub default: Vec<String>,
    #[serde(default)]
    pub prefix: Vec<PrefixRoute>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixRoute {
    pub prefix: String,
    pub carriers: Vec<String>,
    /// Only for this brand (system_id), if set.
    #[serde(default)]
    pub brand: Option<String>,
}

fn d_max_pdu() -> usize {
    otpgw_proto::codec::DEFAULT_MAX_FRAME
}
fn d_1() -> usize {
    1
}
fn d_30() -> u64 {
    30
}
fn d_60() -> u64 {
    60
}
fn d_100() -> usize {
    100
}
fn d_200() -> u64 {
    200
}
fn d_600() -> u64 {
    600
}
fn d_1000() -> usize {
    1000
}
fn d_10000() -> u64 {
    10_000
}
fn d_86400() -> u64 {
    86_400
}
fn d_queue() -> usize {
    1_000_000
}
fn d_outbox() -> usize {
    100_000
}
fn d_class() -> ClassCfg {
    ClassCfg::Otp
}
fn d_bind_mode() -> BindModeCfg {
    BindModeCfg::Transceiver
}

impl Config {
    /// Read, parse and check a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: p.clone(),
            source,
        })?;
        Self::parse(&text, &p)
    }

    /// Parse and check TOML text; `origin` names it in messages.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        let s = &cfg.server;
        if let (Some(listen), Some(cert), Some(key)) =
            (s.tls_listen, &s.tls_cert_file, &s.tls_key_file)
        {
            match otpgw_ingest::tls::server_config(cert, key) {
                Ok(config) => cfg.tls = Some(otpgw_ingest::tls::TlsListen { listen, config }),
                Err(e) => cfg.tls_error = Some(e),
            }
        }
        let problems: Vec<String> = cfg
            .problems()
            .into_iter()
            .map(|p| match locate(text, field_of(&p)) {
                Some(line) => format!("line {line}: {p}"),
                None => p,
            })
            .collect();
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError::Invalid {
                path: origin.to_string(),
                problems,
            })
        }
    }

    /// Every semantic problem, each naming its field.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let s = &self.server;
        if s.max_pdu_bytes < 256 || s.max_pdu_bytes > 65_536 {
            p.push(format!(
                "server.max_pdu_bytes = {}: must be between 256 and 65536",
                s.max_pdu_bytes
            ));
        }
        if s.receipt_window == 0 {
            p.push("server.receipt_window: must be at least 1".into());
        }
        if s.max_connections == 0 {
            p.push("server.max_connections: must be at least 1".into());
        }
        match (&s.tls_listen, &s.tls_cert_file, &s.tls_key_file) {
            (None, None, None) if !s.plain_listener => {
                p.push("server.plain_listener = false needs tls_listen".into());
            }
            (None, None, None) => {}
            (Some(_), Some(_), Some(_)) => {
                if let Some(e) = &self.tls_error {
                    p.push(format!("server.tls_cert_file: {e}"));
                }
            }
            _ => p.push("server: tls_listen, tls_cert_file and tls_key_file go together".into()),
        }
        if s.pdu_timeout_secs == 0 || s.idle_timeout_secs == 0 {
            p.push("server: pdu_timeout_secs and idle_timeout_secs must be at least 1".into());
        }
        if s.max_connections_per_ip == 0 || s.max_unbound_per_ip == 0 {
            p.push(
                "server: max_connections_per_ip and max_unbound_per_ip must be at least 1".into(),
            );
        }
        if s.max_pending_submits == 0 {
            p.push("server.max_pending_submits: must be at least 1".into());
        }
        let st = &self.store;
        if st.backend == Backend::Embedded && st.path.as_os_str().is_empty() {
            p.push("store.path: must not be empty".into());
        }
        if st.backend == Backend::Redis {
            if !(st.redis_url.starts_with("redis://") || st.redis_url.starts_with("rediss://")) {
                p.push(
                    "store.redis_url: required with backend = \"redis\" (redis://host:port/db)"
                        .into(),
                );
            }
            if st.node_id.is_empty()
                || !st
                    .node_id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                p.push("store.node_id: required with backend = \"redis\": letters, digits, '-', '_' or '.', unique per node".into());
            }
            if !(300..=600_000).contains(&st.node_lease_ms) {
                p.push(format!(
                    "store.node_lease_ms = {}: must be 300 to 600000",
                    st.node_lease_ms
                ));
            }
            if st.redis_prefix.is_empty() || st.redis_prefix.contains(char::is_whitespace) {
                p.push("store.redis_prefix: must be a non-empty word".into());
            }
        }
        if st.commit_window_us > 100_000 {
            p.push(format!(
                "store.commit_window_us = {}: at most 100000",
                st.commit_window_us
            ));
        }
        if st.batch_max == 0 {
            p.push("store.batch_max: must be at least 1".into());
        }
        if st.receipt_retention_secs == 0 {
            p.push("store.receipt_retention_secs: must be at least 1".into());
        }
        if let Some(t) = &self.ops.admin_token
            && t.len() < 16
        {
            p.push("ops.admin_token: must be at least 16 characters".into());
        }
        if self.queue.capacity == 0 {
            p.push("queue.capacity: must be at least 1".into());
        }
        if self.receipts.outbox_capacity == 0 {
            p.push("receipts.outbox_capacity: must be at least 1".into());
        }
        if self.brands.is_empty() {
            p.push("brand: at least one [[brand]] is required".into());
        }
        let mut seen = HashSet::new();
        for (i, b) in self.brands.iter().enumerate() {
            if b.system_id.is_empty() || b.system_id.len() > 15 || !b.system_id.is_ascii() {
                p.push(format!(
                    "brand[{i}].system_id: must be 1 to 15 ASCII characters"
                ));
            }
            if b.password.is_some() {
                p.push(format!(
                    "brand[{i}].password: plain passwords are not accepted; set password_hash to the output of `otpgw hash-password`"
                ));
            } else if let Err(e) = otpgw_ingest::auth::check_hash(&b.password_hash) {
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
            if b.otp_lifetime_secs == 0 || b.bulk_lifetime_secs == 0 {
                p.push(format!("brand[{i}]: lifetimes must be at least 1 second"));
            }
        }
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
            if c.password.len() > 8 {
                p.push(format!(
                    "carrier[{i}].password: at most 8 characters (SMPP limit)"
                ));
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
            check_list(&mut p, "routes.default".into(), &self.routes.default);
        }
        for (i, r) in self.routes.prefix.iter().enumerate() {
            check_list(&mut p, format!("routes.prefix[{i}].carriers"), &r.carriers);
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
        p
    }

    /// The brand server's settings.
    pub fn server_config(&self) -> ServerConfig {
        let s = &self.server;
        let mut c = ServerConfig::new(s.listen);
        c.max_frame = s.max_pdu_bytes;
        c.bind_timeout = Duration::from_secs(s.bind_timeout_secs);
        c.enquire_link_interval = Duration::from_secs(s.enquire_link_secs);
        c.response_timeout = Duration::from_secs(s.response_timeout_secs);
        c.receipt_window = s.receipt_window;
        c.max_connections = s.max_connections;
        c.max_pending_submits = s.max_pending_submits;
        c.lockout_after = s.lockout_after;
        c.lockout_ip_after = s.lockout_ip_after;
        c.lockout = Duration::from_secs(s.lockout_secs);
        c.specific_bind_errors = s.specific_bind_errors;
        c.plain = s.plain_listener;
        c.tls = self.tls.clone();
        c.pdu_timeout = Duration::from_secs(s.pdu_timeout_secs);
        c.idle_timeout = Duration::from_secs(s.idle_timeout_secs);
        c.max_connections_per_ip = s.max_connections_per_ip;
        c.max_unbound_per_ip = s.max_unbound_per_ip;
        c
    }

    /// The embedded store's settings.
    pub fn embedded_config(&self) -> otpgw_store::EmbeddedConfig {
        let s = &self.store;
        let mut c = otpgw_store::EmbeddedConfig::new(&s.path);
        c.commit_window = Duration::from_micros(s.commit_window_us);
        c.batch_max = s.batch_max;
        c.finished_retention = Duration::from_secs(s.finished_retention_secs);
        c.receipt_retention = Duration::from_secs(s.receipt_retention_secs);
        c
    }

    /// The Redis store's settings.
    pub fn redis_config(&self) -> otpgw_store::RedisConfig {
        let s = &self.store;
        let mut c = otpgw_store::RedisConfig::new(&s.redis_url, &s.redis_prefix, &s.node_id);
        c.batch_max = s.batch_max;
        c.lease = Duration::from_millis(s.node_lease_ms);
        c
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
                    otpgw_ingest::limits::BrandLimits::new(b.max_rate, std::time::Instant::now());
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
                c
            })
            .collect()
    }

    /// The carriers' connection settings.
    pub fn carrier_configs(&self) -> Vec<CarrierConfig> {
        self.carriers
            .iter()
            .map(|c| {
                let mut k = CarrierConfig::new(&c.name, &c.address, &c.system_id, &c.password);
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
        for p in &self.routes.prefix {
            match &p.brand {
                Some(b) => r.add_brand_prefix(b, &p.prefix, p.carriers.clone()),
                None => r.add_prefix(&p.prefix, p.carriers.clone()),
            }
        }
        r
    }
}

/// The field path a problem message starts with ("carrier[1].binds = 0: ..." ->
/// "carrier[1].binds").
fn field_of(problem: &str) -> &str {
    let end = problem.find([' ', ':']).unwrap_or(problem.len());
    &problem[..end]
}

/// The 1-based line of a field path ("server.listen", "carrier[1].binds",
/// "routes.prefix[0].carriers") in TOML text: the key's line, or its table's header
/// when the key is absent. `None` when the path names no table in the text.
pub fn locate(text: &str, path: &str) -> Option<usize> {
    let segs: Vec<(&str, Option<usize>)> = path
        .split('.')
        .map(|s| match s.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse().ok()),
            None => (s, None),
        })
        .collect();
    let (table, key): (&[(&str, Option<usize>)], Option<&str>) = match segs.last() {
        Some((k, None)) if segs.len() > 1 => (&segs[..segs.len() - 1], Some(k)),
        _ => (&segs[..], None),
    };
    let name = table.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(".");
    let nth = table.last().and_then(|(_, i)| *i);
    let header = match nth {
        Some(_) => format!("[[{name}]]"),
        None => format!("[{name}]"),
    };
    let lines: Vec<&str> = text.lines().collect();
    let mut seen = 0usize;
    let start = lines.iter().position(|l| {
        if l.trim() == header {
            seen += 1;
            seen == nth.unwrap_or(0) + 1
        } else {
            false
        }
    })?;
    let Some(key) = key else {
        return Some(start + 1);
    };
    for (i, l) in lines.iter().enumerate().skip(start + 1) {
        let t = l.trim_start();
        if t.starts_with('[') {
            break;
        }
        if let Some(rest) = t.strip_prefix(key)
            && rest.trim_start().starts_with('=')
        {
            return Some(i + 1);
        }
    }
    Some(start + 1)
}

#[cfg(test)]
mod tests;

/// An address (a /32 or /128 network) or a CIDR network.
fn parse_net(s: &str) -> Option<ipnet::IpNet> {
    s.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}
