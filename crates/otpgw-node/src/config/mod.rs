//! The configuration file: one TOML file, parsed strictly (unknown keys are errors,
//! with line and column) and then checked as a whole. A bad file is never silently
//! replaced by defaults: `otpgw check-config` and `otpgw serve` refuse it and say
//! which field is wrong.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use otpgw_smpp_server::ServerConfig;

mod brand;
mod carrier;
mod encryption;
mod fraud;
mod http;
mod redis;
mod secret;
mod sections;

pub use brand::*;
pub use carrier::*;
pub use http::*;
pub use secret::*;
pub use sections::*;

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
    pub quality: QualityCfg,
    #[serde(default)]
    pub receipts: Receipts,
    #[serde(default)]
    pub ops: Ops,
    #[serde(default)]
    pub log: Log,
    /// The audit log of admin changes (off unless present).
    #[serde(default)]
    pub audit: Option<AuditCfg>,
    /// The HTTP API for brands (off unless present).
    #[serde(default)]
    pub http: Option<Http>,
    /// Verifications (the Verify API; needs `[http]`).
    #[serde(default)]
    pub verify: Option<Verify>,
    #[serde(rename = "brand", default)]
    pub brands: Vec<Brand>,
    #[serde(rename = "carrier", default)]
    pub carriers: Vec<Carrier>,
    pub routes: RoutesCfg,
    /// The TLS listener, loaded from `server.tls_*` when the file is parsed.
    #[serde(skip)]
    pub tls: Option<otpgw_accept::tls::TlsListen>,
    #[serde(skip)]
    tls_error: Option<String>,
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
            match otpgw_accept::tls::server_config(cert, key) {
                Ok(config) => cfg.tls = Some(otpgw_accept::tls::TlsListen { listen, config }),
                Err(e) => cfg.tls_error = Some(e),
            }
        }
        cfg.load_http_tls();
        for c in &mut cfg.carriers {
            c.load_tls();
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
        net_problems("server.trusted_proxies", &s.trusted_proxies, &mut p);
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
        if matches!(st.backend, Backend::Embedded | Backend::Log) && st.path.as_os_str().is_empty()
        {
            p.push("store.path: must not be empty".into());
        }
        if st.backend == Backend::Redis {
            self.redis_problems(&mut p);
        }
        if st.commit_window_us > 100_000 {
            p.push(format!(
                "store.commit_window_us = {}: at most 100000",
                st.commit_window_us
            ));
        }
        if st.scrub_interval_secs == 0 {
            p.push("store.scrub_interval_secs: must be at least 1".into());
        }
        if st.batch_max == 0 {
            p.push("store.batch_max: must be at least 1".into());
        }
        if st.receipt_retention_secs == 0 {
            p.push("store.receipt_retention_secs: must be at least 1".into());
        }
        if let Some(e) = &st.encryption
            && let Err(e) = e.keyring()
        {
            p.push(e);
        }
        self.ops_problems(&mut p);
        if self.queue.capacity == 0 {
            p.push("queue.capacity: must be at least 1".into());
        }
        if self.receipts.outbox_capacity == 0 {
            p.push("receipts.outbox_capacity: must be at least 1".into());
        }
        if self.brands.is_empty() {
            p.push("brand: at least one [[brand]] is required".into());
        }
        let seen = self.brand_problems(&mut p);
        let names = self.carrier_problems(&mut p);
        self.route_problems(&mut p, &names, &seen);
        self.http_problems(&mut p);
        self.quality.problems(&mut p);
        p
    }

    /// `[ops]`: the deprecated admin token and the named ones.
    fn ops_problems(&self, p: &mut Vec<String>) {
        match self.ops.admin_token() {
            Ok(Some(t)) if t.len() < 16 => {
                p.push("ops.admin_token: must be at least 16 characters".into());
            }
            Err(e) => p.push(format!("ops.{e}")),
            _ => {}
        }
        let mut names = std::collections::HashSet::new();
        for (i, a) in self.ops.admin.iter().enumerate() {
            if a.name.is_empty() || !names.insert(a.name.as_str()) {
                p.push(format!("ops.admin[{i}].name: empty or used twice"));
            }
            if a.name == "admin" && matches!(self.ops.admin_token(), Ok(Some(_))) {
                p.push(format!(
                    "ops.admin[{i}].name: \"admin\" is the name of ops.admin_token"
                ));
            }
            if !is_sha256_hash(&a.token_hash) {
                p.push(format!(
                    "ops.admin[{i}].token_hash: must be sha256:<64 hex digits> (otpgw new-api-key prints one)"
                ));
            }
        }
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
        c.trusted_proxies = nets(&s.trusted_proxies);
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
        c.scrub_interval = Duration::from_secs(s.scrub_interval_secs);
        c
    }

    /// The log store's settings (`path` is its directory).
    pub fn log_config(&self) -> otpgw_store::LogConfig {
        let s = &self.store;
        let mut c = otpgw_store::LogConfig::new(&s.path);
        c.commit_window = Duration::from_micros(s.commit_window_us);
        c.batch_max = s.batch_max;
        c.finished_retention = Duration::from_secs(s.finished_retention_secs);
        c.receipt_retention = Duration::from_secs(s.receipt_retention_secs);
        c
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

/// The networks of a list of CIDR strings (those that parse: the config check
/// reports the others).
pub(crate) fn nets(list: &[String]) -> Vec<ipnet::IpNet> {
    list.iter().filter_map(|n| n.parse().ok()).collect()
}

/// A problem for every entry of `list` that is not a network in CIDR form.
pub(crate) fn net_problems(key: &str, list: &[String], p: &mut Vec<String>) {
    for (i, n) in list.iter().enumerate() {
        if n.parse::<ipnet::IpNet>().is_err() {
            p.push(format!(
                "{key}[{i}]: not a network in CIDR form (e.g. 10.20.0.0/16)"
            ));
        }
    }
}

/// `sha256:` then 64 hex digits.
fn is_sha256_hash(h: &str) -> bool {
    h.strip_prefix("sha256:")
        .is_some_and(|x| x.len() == 64 && x.bytes().all(|b| b.is_ascii_hexdigit()))
}
