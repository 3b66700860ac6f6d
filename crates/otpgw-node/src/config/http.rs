//! `[http]` (the HTTP API for brands) and `[verify]` (verifications), checked here
//! and turned into the HTTP and verify crates' settings.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::Config;

/// The HTTP API (off unless this section is present).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http {
    pub listen: SocketAddr,
    /// TLS with a PEM certificate chain and key (both or neither).
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
    #[serde(default = "d_max_body")]
    pub max_body_bytes: usize,
    #[serde(default = "d_10s")]
    pub body_timeout_secs: u64,
    #[serde(default = "d_10s")]
    pub header_timeout_secs: u64,
    #[serde(default = "d_conns")]
    pub max_connections: usize,
    #[serde(default = "d_conns_ip")]
    pub max_connections_per_ip: usize,
    /// Failed authentications from one address before it is locked (0: never).
    #[serde(default = "d_lock_after")]
    pub lockout_after: u32,
    #[serde(default = "d_lock_secs")]
    pub lockout_secs: u64,
    /// Webhook posts in flight per brand.
    #[serde(default = "d_hook_conc")]
    pub webhook_concurrency: usize,
    /// How long a webhook is retried after its message finished.
    #[serde(default = "d_hook_hours")]
    pub webhook_retry_hours: u64,
    #[serde(default = "d_10s")]
    pub webhook_timeout_secs: u64,
    /// Networks webhooks may reach although they are internal (loopback, private,
    /// link-local...): CIDR strings, e.g. `["10.20.0.0/16"]`. Empty by default.
    #[serde(default)]
    pub webhook_allow_networks: Vec<String>,
    /// Load balancers (CIDR) whose `X-Forwarded-For` names the client.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    #[serde(skip)]
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    #[serde(skip)]
    pub(super) tls_error: Option<String>,
}

fn d_max_body() -> usize {
    64 * 1024
}
fn d_10s() -> u64 {
    10
}
fn d_conns() -> usize {
    10_000
}
fn d_conns_ip() -> usize {
    1_000
}
fn d_lock_after() -> u32 {
    20
}
fn d_lock_secs() -> u64 {
    300
}
fn d_hook_conc() -> usize {
    16
}
fn d_hook_hours() -> u64 {
    24
}

/// Verifications.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verify {
    /// The key of code hashes (at least 32 bytes; the same on every node), or the
    /// environment variable holding it.
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub secret_env: Option<String>,
    #[serde(default)]
    pub secret_file: Option<std::path::PathBuf>,
    #[serde(default = "d_sender")]
    pub sender: String,
    /// Default text; `{code}` required, `{minutes}` optional.
    #[serde(default = "d_template")]
    pub template: String,
    #[serde(default = "d_checks")]
    pub max_checks: u8,
    #[serde(default = "d_resends")]
    pub max_resends: u8,
    #[serde(default = "d_cooldown")]
    pub resend_cooldown_secs: u64,
    #[serde(default = "d_ttl")]
    pub default_ttl_secs: u64,
    #[serde(default = "d_max_ttl")]
    pub max_ttl_secs: u64,
    #[serde(default = "d_per_number")]
    pub max_per_number_per_hour: u32,
    #[serde(default = "d_per_prefix")]
    pub max_per_prefix_per_hour: u32,
    #[serde(default = "d_prefix_digits")]
    pub prefix_digits: usize,
    /// The conversion guard against SMS pumping.
    #[serde(default)]
    pub fraud: super::fraud::GuardCfg,
}

impl std::fmt::Debug for Verify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verify")
            .field("secret_env", &self.secret_env)
            .field("secret_file", &self.secret_file)
            .finish_non_exhaustive()
    }
}

fn d_sender() -> String {
    "Verify".into()
}
fn d_template() -> String {
    "Your verification code is {code}. It expires in {minutes} minutes.".into()
}
fn d_checks() -> u8 {
    5
}
fn d_resends() -> u8 {
    3
}
fn d_cooldown() -> u64 {
    30
}
fn d_ttl() -> u64 {
    300
}
fn d_max_ttl() -> u64 {
    900
}
fn d_per_number() -> u32 {
    5
}
fn d_per_prefix() -> u32 {
    10_000
}
fn d_prefix_digits() -> usize {
    6
}

impl Verify {
    /// The secret's bytes (from the file or the environment).
    pub fn secret_bytes(&self) -> Result<Vec<u8>, String> {
        super::secret::source("secret", &self.secret, &self.secret_env, &self.secret_file)
            .resolve()?
            .map(String::into_bytes)
            .ok_or_else(|| "set exactly one of secret, secret_env and secret_file".into())
    }
}

impl Config {
    /// Load the HTTP listener's TLS files (at parse time, so check-config sees them).
    pub(super) fn load_http_tls(&mut self) {
        if let Some(h) = &mut self.http
            && let (Some(cert), Some(key)) = (&h.tls_cert_file, &h.tls_key_file)
        {
            match otpgw_accept::tls::server_config(cert, key) {
                Ok(c) => h.tls = Some(c),
                Err(e) => h.tls_error = Some(e),
            }
        }
    }

    /// Problems of `[http]`, `[verify]` and the brands' HTTP settings.
    pub(super) fn http_problems(&self, p: &mut Vec<String>) {
        if let Some(h) = &self.http {
            match (&h.tls_cert_file, &h.tls_key_file) {
                (None, None) => {}
                (Some(_), Some(_)) => {
                    if let Some(e) = &h.tls_error {
                        p.push(format!("http.tls_cert_file: {e}"));
                    }
                }
                _ => p.push("http: tls_cert_file and tls_key_file go together".into()),
            }
            if !(1024..=1 << 20).contains(&h.max_body_bytes) {
                p.push("http.max_body_bytes: must be 1024 to 1048576".into());
            }
            if h.body_timeout_secs == 0 || h.header_timeout_secs == 0 || h.webhook_timeout_secs == 0
            {
                p.push("http: timeouts must be at least 1 second".into());
            }
            if h.max_connections == 0 || h.max_connections_per_ip == 0 {
                p.push(
                    "http: max_connections and max_connections_per_ip must be at least 1".into(),
                );
            }
            if h.webhook_concurrency == 0 || h.webhook_retry_hours == 0 {
                p.push(
                    "http: webhook_concurrency and webhook_retry_hours must be at least 1".into(),
                );
            }
            super::net_problems("http.webhook_allow_networks", &h.webhook_allow_networks, p);
            super::net_problems("http.trusted_proxies", &h.trusted_proxies, p);
            if !self.brands.iter().any(|b| b.api_key_hash.is_some()) {
                p.push("http: no [[brand]] has an api_key_hash: nobody could call the API".into());
            }
        }
        if let Some(v) = &self.verify {
            match v.secret_bytes() {
                Ok(s) if s.len() >= otpgw_verify::code::MIN_SECRET => {}
                Ok(_) => {
                    p.push("verify.secret: at least 32 bytes (e.g. `openssl rand -hex 32`)".into())
                }
                Err(e) => p.push(format!("verify.secret: {e}")),
            }
            if !v.template.contains("{code}") {
                p.push("verify.template: must contain {code}".into());
            }
            if !otpgw_accept::validate::plausible_source(&v.sender) {
                p.push("verify.sender: up to 11 letters and digits, or a number".into());
            }
            if !(30..=900).contains(&v.max_ttl_secs)
                || !(30..=v.max_ttl_secs).contains(&v.default_ttl_secs)
            {
                p.push("verify: need 30 <= default_ttl_secs <= max_ttl_secs <= 900".into());
            }
            if v.max_checks == 0 || v.max_per_number_per_hour == 0 || v.max_per_prefix_per_hour == 0
            {
                p.push("verify: max_checks and the hourly caps must be at least 1".into());
            }
            if !(3..=15).contains(&v.prefix_digits) {
                p.push("verify.prefix_digits: must be 3 to 15".into());
            }
            v.fraud.problems(p);
        }
        for (i, b) in self.brands.iter().enumerate() {
            if let Some(h) = &b.api_key_hash
                && let Err(e) = otpgw_http::auth::check_key_hash(h)
            {
                p.push(format!("brand[{i}].api_key_hash: {e}"));
            }
            match b.webhook_secret() {
                Ok(Some(s)) if s.len() < 16 => {
                    p.push(format!("brand[{i}].webhook_secret: at least 16 characters"))
                }
                Ok(_) => {}
                Err(e) => p.push(format!("brand[{i}].webhook_secret: {e}")),
            }
            if let Some(s) = &b.verify_sender
                && !otpgw_accept::validate::plausible_source(s)
            {
                p.push(format!(
                    "brand[{i}].verify_sender: up to 11 letters and digits, or a number"
                ));
            }
        }
    }

    /// The HTTP API's settings, when `[http]` is present.
    pub fn http_config(&self) -> Option<otpgw_http::HttpConfig> {
        let h = self.http.as_ref()?;
        let mut c = otpgw_http::HttpConfig::new(h.listen);
        c.tls = h.tls.clone();
        c.max_body = h.max_body_bytes;
        c.body_timeout = Duration::from_secs(h.body_timeout_secs);
        c.header_timeout = Duration::from_secs(h.header_timeout_secs);
        c.max_connections = h.max_connections;
        c.max_connections_per_ip = h.max_connections_per_ip;
        c.lockout_after = h.lockout_after;
        c.lockout = Duration::from_secs(h.lockout_secs);
        c.webhooks.concurrency = h.webhook_concurrency;
        c.webhooks.max_age = Duration::from_secs(h.webhook_retry_hours * 3600);
        c.webhooks.timeout = Duration::from_secs(h.webhook_timeout_secs);
        c.webhooks.urls = self.url_policy();
        c.trusted_proxies = super::nets(&h.trusted_proxies);
        Some(c)
    }

    /// Where webhooks may go: `[http] webhook_allow_networks` (none without
    /// `[http]`).
    pub fn url_policy(&self) -> otpgw_http::url_policy::UrlPolicy {
        let nets = self
            .http
            .as_ref()
            .map(|h| super::nets(&h.webhook_allow_networks))
            .unwrap_or_default();
        otpgw_http::url_policy::UrlPolicy::new(nets)
    }

    /// The verification service's settings, when `[verify]` is present and valid.
    pub fn verify_config(&self) -> Option<otpgw_verify::VerifyConfig> {
        let v = self.verify.as_ref()?;
        let secret = otpgw_verify::Secret::new(v.secret_bytes().ok()?)?;
        let mut c = otpgw_verify::VerifyConfig::new(secret);
        c.sender = v.sender.clone();
        c.template = v.template.clone();
        c.rules = otpgw_verify::Rules {
            max_checks: v.max_checks,
            max_resends: v.max_resends,
            resend_cooldown_ms: v.resend_cooldown_secs * 1000,
        };
        c.default_ttl = Duration::from_secs(v.default_ttl_secs);
        c.max_ttl = Duration::from_secs(v.max_ttl_secs);
        c.per_number_per_hour = v.max_per_number_per_hour;
        c.per_prefix_per_hour = v.max_per_prefix_per_hour;
        c.prefix_digits = v.prefix_digits;
        c.guard = v.fraud.guard(v.prefix_digits);
        Some(c)
    }
}
