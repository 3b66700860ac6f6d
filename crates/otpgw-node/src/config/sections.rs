//! The plain sections of the configuration: `[server]`, `[store]`, `[queue]`,
//! `[receipts]`, `[log]`, `[ops]`, and the defaults every section shares.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

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
    /// Load balancers (CIDR) whose connections start with a PROXY protocol header
    /// (v1 or v2) naming the client.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
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

pub(super) fn d_10() -> u64 {
    10
}
pub(super) fn d_3600() -> u64 {
    3600
}
pub(super) fn d_10usize() -> usize {
    10
}

pub(super) fn d_lockout_after() -> u32 {
    5
}
pub(super) fn d_lockout_ip_after() -> u32 {
    20
}
pub(super) fn d_lockout_secs() -> u64 {
    300
}
pub(super) fn d_max_binds() -> usize {
    10
}
pub(super) fn d_dest_window() -> u64 {
    3600
}

pub(super) fn d_max_pending_submits() -> usize {
    2000
}
pub(super) fn d_grace() -> u64 {
    10
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A redb file on local disk with group commit: the default.
    Embedded,
    /// An append-only segmented log in the directory `path`, with its index in
    /// memory (one write and one fdatasync per group commit).
    Log,
    /// Keeps nothing across a restart; only when named, and logged loudly.
    Memory,
    /// Redis Streams (`redis_url` or `redis_sentinels`, `redis_prefix`, `node_id`); durable when Redis
    /// runs with `appendonly yes` and `appendfsync always`.
    Redis,
}

#[derive(Clone, Deserialize)]
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
    /// Embedded store: at most this often (when messages finished since), the file
    /// is scrubbed so no finished message's text stays readable in it.
    #[serde(default = "d_scrub_interval")]
    pub scrub_interval_secs: u64,
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
    /// Redis backend: replicas that must confirm each batch (`WAIT`) before its
    /// messages are acknowledged (0: none).
    #[serde(default)]
    pub redis_min_replicas: u32,
    /// Redis backend: how long a batch waits for them (ms); fewer in time: its
    /// accepts get a temporary error and are taken out again.
    #[serde(default = "d_replica_timeout")]
    pub redis_replica_timeout_ms: u64,
    /// Redis backend: Sentinels (`host:port`) that name the primary, instead of
    /// `redis_url`; the node follows their failovers (docs/operations.md).
    #[serde(default)]
    pub redis_sentinels: Vec<String>,
    /// Redis backend: nodes (`host:port`) of a Redis Cluster, instead of
    /// `redis_url` and `redis_sentinels`: the messages spread over its shards
    /// (docs/operations.md).
    #[serde(default)]
    pub redis_cluster: Vec<String>,
    /// Redis backend on a Cluster: the partitions (hash tags) the messages spread
    /// over; keep it the same while any node has messages (16: even over up to 16
    /// shards).
    #[serde(default = "d_partitions")]
    pub redis_partitions: u16,
    /// Redis backend with Sentinels: the name they monitor the primary under.
    #[serde(default)]
    pub redis_master_name: String,
    /// Redis backend with Sentinels or a Cluster: the servers' password (`requirepass`), or
    /// `_env` / `_file` (config::secret); none: no AUTH. With `redis_url` the
    /// password goes in the URL.
    #[serde(default)]
    pub redis_password: Option<String>,
    #[serde(default)]
    pub redis_password_env: Option<String>,
    #[serde(default)]
    pub redis_password_file: Option<std::path::PathBuf>,
    /// Redis backend with Sentinels: the Sentinels' own password, if any.
    #[serde(default)]
    pub redis_sentinel_password: Option<String>,
    #[serde(default)]
    pub redis_sentinel_password_env: Option<String>,
    #[serde(default)]
    pub redis_sentinel_password_file: Option<std::path::PathBuf>,
    /// Encryption at rest (see `encryption`); absent: records are kept in clear.
    #[serde(default)]
    pub encryption: Option<super::encryption::Encryption>,
}

pub(super) fn d_node_lease() -> u64 {
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
            scrub_interval_secs: d_scrub_interval(),
            redis_url: String::new(),
            redis_prefix: d_redis_prefix(),
            node_id: String::new(),
            share_carrier_limits: true,
            node_lease_ms: d_node_lease(),
            redis_min_replicas: 0,
            redis_replica_timeout_ms: d_replica_timeout(),
            redis_sentinels: Vec::new(),
            redis_master_name: String::new(),
            redis_cluster: Vec::new(),
            redis_partitions: d_partitions(),
            redis_password: None,
            redis_password_env: None,
            redis_password_file: None,
            redis_sentinel_password: None,
            redis_sentinel_password_env: None,
            redis_sentinel_password_file: None,
            encryption: None,
        }
    }
}

fn d_partitions() -> u16 {
    16
}

fn d_replica_timeout() -> u64 {
    200
}

pub(super) fn d_redis_prefix() -> String {
    "otpgw".into()
}

pub(super) fn d_backend() -> Backend {
    Backend::Embedded
}
pub(super) fn d_store_path() -> std::path::PathBuf {
    "data/otpgw.redb".into()
}
pub(super) fn d_commit_window() -> u64 {
    200
}
pub(super) fn d_batch_max() -> usize {
    8192
}
pub(super) fn d_finished_retention() -> u64 {
    3600
}
pub(super) fn d_scrub_interval() -> u64 {
    300
}
pub(super) fn d_receipt_retention() -> u64 {
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

pub(super) fn d_refuse_down() -> u64 {
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
    pub format: LogFormat,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ops {
    /// Serve /metrics, /healthz and /readyz.
    #[serde(default = "d_true")]
    pub enabled: bool,
    /// Where (loopback by default: it is not for the internet).
    #[serde(default = "d_ops_listen")]
    pub listen: SocketAddr,
    /// Deprecated: one bearer token for /admin, taken as an `operate` token named
    /// `admin`. Prefer `[[ops.admin]]`.
    #[serde(default)]
    pub admin_token: Option<String>,
    #[serde(default)]
    pub admin_token_env: Option<String>,
    #[serde(default)]
    pub admin_token_file: Option<std::path::PathBuf>,
    /// Named admin tokens with their roles; without any (and no `admin_token`) the
    /// admin API is off.
    #[serde(default)]
    pub admin: Vec<AdminToken>,
}
impl Default for Ops {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: d_ops_listen(),
            admin_token: None,
            admin_token_env: None,
            admin_token_file: None,
            admin: Vec::new(),
        }
    }
}

impl std::fmt::Debug for Ops {
    /// Never prints the admin token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ops")
            .field("enabled", &self.enabled)
            .field("listen", &self.listen)
            .field("admin_token_env", &self.admin_token_env)
            .field("admin_token_file", &self.admin_token_file)
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

impl Ops {
    /// The deprecated single admin token, from the file, the environment or a file.
    pub fn admin_token(&self) -> Result<Option<String>, String> {
        super::secret::source(
            "admin_token",
            &self.admin_token,
            &self.admin_token_env,
            &self.admin_token_file,
        )
        .resolve()
    }
}

/// What an admin token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminRole {
    /// GET only.
    Read,
    /// Also changes (pause, resume).
    Operate,
}

/// One `[[ops.admin]]` entry: a named token (only its hash is in the file).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminToken {
    /// Who holds it (the audit log's actor).
    pub name: String,
    pub role: AdminRole,
    /// `sha256:<64 hex>` of the token, as `otpgw new-api-key` prints it.
    pub token_hash: String,
}

impl std::fmt::Debug for AdminToken {
    /// Shows no part of the hash.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminToken")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// `[audit]`: where admin changes and refused admin calls are recorded.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditCfg {
    /// The append-only, hash-chained log file (see `otpgw audit verify`).
    pub path: std::path::PathBuf,
}
pub(super) fn d_true() -> bool {
    true
}
pub(super) fn d_ops_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}

pub(super) fn d_max_pdu() -> usize {
    otpgw_proto::codec::DEFAULT_MAX_FRAME
}
pub(super) fn d_1() -> usize {
    1
}
pub(super) fn d_30() -> u64 {
    30
}
pub(super) fn d_60() -> u64 {
    60
}
pub(super) fn d_100() -> usize {
    100
}
pub(super) fn d_200() -> u64 {
    200
}
pub(super) fn d_600() -> u64 {
    600
}
pub(super) fn d_1000() -> usize {
    1000
}
pub(super) fn d_10000() -> u64 {
    10_000
}
pub(super) fn d_86400() -> u64 {
    86_400
}
pub(super) fn d_queue() -> usize {
    1_000_000
}
pub(super) fn d_outbox() -> usize {
    100_000
}

/// Carrier quality measurement (for routes with `select = "quality"`, the admin
/// API and the metrics).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualityCfg {
    /// The sliding window.
    #[serde(default = "d_q_window")]
    pub window_secs: u64,
    /// A DELIVERED receipt within this time is on time.
    #[serde(default = "d_q_within")]
    pub within_ms: u64,
    /// Digits of the destination a series is kept per (country code and more).
    #[serde(default = "d_q_digits")]
    pub prefix_digits: usize,
    /// Share of quality-routed messages sent to a carrier other than the best.
    #[serde(default = "d_q_explore")]
    pub explore: f64,
    /// Samples a (carrier, prefix) needs before its own figure counts.
    #[serde(default = "d_q_min")]
    pub min_samples: u32,
}

impl Default for QualityCfg {
    fn default() -> Self {
        Self {
            window_secs: d_q_window(),
            within_ms: d_q_within(),
            prefix_digits: d_q_digits(),
            explore: d_q_explore(),
            min_samples: d_q_min(),
        }
    }
}

fn d_q_window() -> u64 {
    60
}
fn d_q_within() -> u64 {
    10_000
}
fn d_q_digits() -> usize {
    4
}
fn d_q_explore() -> f64 {
    0.05
}
fn d_q_min() -> u32 {
    20
}

impl QualityCfg {
    /// Problems, each naming its field.
    pub(super) fn problems(&self, p: &mut Vec<String>) {
        if !(5..=3600).contains(&self.window_secs) {
            p.push("quality.window_secs: must be 5 to 3600".into());
        }
        if !(1..=10).contains(&self.prefix_digits) {
            p.push("quality.prefix_digits: must be 1 to 10".into());
        }
        if !(0.0..=0.5).contains(&self.explore) {
            p.push("quality.explore: must be 0 to 0.5".into());
        }
        if self.within_ms == 0 || self.min_samples == 0 {
            p.push("quality: within_ms and min_samples must be at least 1".into());
        }
    }

    /// The dispatch crate's settings.
    pub fn config(&self) -> otpgw_dispatch::QualityConfig {
        otpgw_dispatch::QualityConfig {
            window_ms: self.window_secs * 1000,
            slots: 6,
            within_ms: self.within_ms,
            prefix_digits: self.prefix_digits,
            max_keys: 10_000,
            min_samples: self.min_samples,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, with the span fields (brand, carrier, ids).
    Json,
}
