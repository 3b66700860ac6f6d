//! Brands allowed to bind, with their credentials (argon2id hashes), where they may
//! bind from, how many binds they may hold, and their message defaults.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use otpgw_core::Class;

/// One brand.
#[derive(Clone)]
pub struct BrandConfig {
    /// The `system_id` it binds with.
    pub system_id: Arc<str>,
    /// argon2id PHC string of the password.
    pub password_hash: String,
    /// Simultaneous binds allowed.
    pub max_binds: usize,
    /// Networks it may bind from (empty: anywhere).
    pub allowed_nets: Vec<ipnet::IpNet>,
    /// Its rate, sender ids and destination prefixes.
    pub limits: Arc<crate::limits::BrandLimits>,
    /// At most this many messages per destination number per window (`None`: no limit).
    pub per_destination: Option<(u32, Duration)>,
    /// Class for messages whose `priority_flag` is 0 (1 and above are always OTP).
    pub default_class: Class,
    /// Lifetime of an OTP-class message without a `validity_period`.
    pub otp_lifetime: Duration,
    /// Lifetime of a bulk message without a `validity_period`.
    pub bulk_lifetime: Duration,
    /// The HTTP API key's hash: `sha256:<64 hex>` or an argon2id PHC string
    /// (`None`: the brand has no HTTP access).
    pub api_key_hash: Option<String>,
    /// The key webhooks to the brand are signed with (HMAC-SHA256).
    pub webhook_secret: Option<String>,
    /// Sender id of verification codes (else the `[verify]` default).
    pub verify_sender: Option<String>,
    /// Whether a receipt goes back to the SMPP session that submitted its message
    /// (`true`, the default) or to any receiver session of the brand.
    pub receipts_to_submitter: bool,
    /// How long its finished records are kept, when shorter than the defaults.
    pub retention: Option<Duration>,
    /// Its fraud policy for verifications.
    pub fraud: Arc<crate::fraud::BrandFraud>,
    /// `otpgw_messages_accepted_total{brand}`, registered on first use and then
    /// incremented without a registry lookup.
    accepted_counter: std::sync::OnceLock<metrics::Counter>,
}

impl std::fmt::Debug for BrandConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrandConfig")
            .field("system_id", &self.system_id)
            .field("password_hash", &"<redacted>")
            .field("max_binds", &self.max_binds)
            .field("allowed_nets", &self.allowed_nets)
            .field("default_class", &self.default_class)
            .field(
                "api_key_hash",
                &self.api_key_hash.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

impl BrandConfig {
    /// Whether it may bind from `ip` (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn allows(&self, ip: std::net::IpAddr) -> bool {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
            v4 => v4,
        };
        self.allowed_nets.is_empty() || self.allowed_nets.iter().any(|n| n.contains(&ip))
    }

    /// A brand with its password's argon2id hash, OTP as default class, 10 minutes
    /// OTP and 24 hours bulk lifetime, 10 binds, from anywhere.
    pub fn new(system_id: &str, password_hash: &str) -> Self {
        Self {
            system_id: system_id.into(),
            password_hash: password_hash.into(),
            max_binds: 10,
            allowed_nets: Vec::new(),
            limits: Arc::default(),
            per_destination: None,
            default_class: Class::Otp,
            otp_lifetime: Duration::from_secs(600),
            bulk_lifetime: Duration::from_secs(86_400),
            api_key_hash: None,
            webhook_secret: None,
            verify_sender: None,
            receipts_to_submitter: true,
            retention: None,
            fraud: Arc::default(),
            accepted_counter: std::sync::OnceLock::new(),
        }
    }

    /// Count one accepted message.
    pub fn count_accepted(&self) {
        self.accepted_counter
            .get_or_init(|| {
                metrics::counter!("otpgw_messages_accepted_total", "brand" => self.system_id.to_string())
            })
            .increment(1);
    }
}

/// The brands, by `system_id`, and by the SHA-256 of their HTTP API key (for
/// `sha256:` key hashes).
#[derive(Debug, Clone, Default)]
pub struct Brands {
    by_id: HashMap<String, Arc<BrandConfig>>,
    by_key: HashMap<[u8; 32], Arc<BrandConfig>>,
}

/// The digest of a `sha256:<64 hex>` key hash.
pub fn sha256_key_digest(h: &str) -> Option<[u8; 32]> {
    let x = h.strip_prefix("sha256:")?;
    if x.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(x.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Brands {
    /// From a list of brands.
    pub fn new(list: impl IntoIterator<Item = BrandConfig>) -> Self {
        let by_id: HashMap<String, Arc<BrandConfig>> = list
            .into_iter()
            .map(|b| (b.system_id.to_string(), Arc::new(b)))
            .collect();
        let by_key = by_id
            .values()
            .filter_map(|b| {
                let d = sha256_key_digest(b.api_key_hash.as_deref()?)?;
                Some((d, b.clone()))
            })
            .collect();
        Self { by_id, by_key }
    }

    /// The brand with this `system_id` (its password is checked by the session).
    pub fn get(&self, system_id: &str) -> Option<Arc<BrandConfig>> {
        self.by_id.get(system_id).cloned()
    }

    /// Every brand's `system_id`.
    pub fn ids(&self) -> Vec<String> {
        self.by_id.keys().cloned().collect()
    }

    /// The brand whose `sha256:` API key hash is this digest.
    pub fn by_key_digest(&self, d: &[u8; 32]) -> Option<Arc<BrandConfig>> {
        self.by_key.get(d).cloned()
    }

    /// Brands whose API key hash is an argon2id string.
    pub fn argon2_keyed(&self) -> Vec<Arc<BrandConfig>> {
        self.by_id
            .values()
            .filter(|b| {
                b.api_key_hash
                    .as_deref()
                    .is_some_and(|h| h.starts_with("$argon2"))
            })
            .cloned()
            .collect()
    }
}

/// Compare without an early exit on the first differing byte (credentials, tokens).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_allow_list_and_redacted_debug() {
        let mut b = BrandConfig::new("bank", "$argon2id$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$aGFzaA");
        assert!(
            b.allows("203.0.113.9".parse().unwrap()),
            "empty list: anywhere"
        );
        b.allowed_nets = vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ];
        assert!(b.allows("10.1.2.3".parse().unwrap()));
        assert!(b.allows("::ffff:10.1.2.3".parse().unwrap()), "mapped IPv4");
        assert!(b.allows("2001:db8::1".parse().unwrap()));
        assert!(!b.allows("127.0.0.1".parse().unwrap()));
        assert!(!format!("{b:?}").contains("argon2id"));
        let all = Brands::new([b]);
        assert!(all.get("bank").is_some());
        assert!(all.get("bonk").is_none());
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
