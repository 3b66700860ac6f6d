//! Brand authentication: argon2id password hashes, and lockout after failed binds.
//!
//! - Passwords live in the config only as argon2id PHC strings (`otpgw
//!   hash-password` makes them). Verifying one costs tens of milliseconds of CPU on
//!   purpose, so the session runs it on the blocking pool, at most
//!   [`MAX_CONCURRENT_VERIFIES`] at a time.
//! - [`Lockout`] (sans-IO: it takes `now`) counts failed binds per account and per
//!   source IP. After `account_after` failures an account is locked for `cool`, after
//!   `ip_after` failures an IP is; a locked bind is refused before any hash work, even
//!   with the right password. A success clears the account's count. At most
//!   `max_entries` keys are tracked; beyond that, entries whose lock or window ended
//!   are dropped first, and new keys are not tracked until there is room.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// Password verifications running at once (each uses one core for tens of ms).
pub const MAX_CONCURRENT_VERIFIES: usize = 2;

/// Why a secret could not be hashed, or a hash is not one otpgw takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    /// Hashing failed (no randomness for the salt, bad parameters).
    #[error("hashing failed: {0}")]
    Hashing(String),
    /// Not a PHC hash string.
    #[error("not a PHC hash string: {0}")]
    NotPhc(String),
    /// A PHC string of another algorithm.
    #[error("algorithm {0} (argon2id required)")]
    Algorithm(String),
    /// Not an API key hash of either form.
    #[error("{0} (or sha256:<64 hex> from `otpgw new-api-key`)")]
    ApiKey(Box<HashError>),
    /// `sha256:` with something else than 64 hex digits.
    #[error("sha256: must be followed by 64 hex digits")]
    Sha256,
}

/// Hash a password as an argon2id PHC string (OWASP parameters: 19 MiB, 2 passes).
pub fn hash_password(password: &str) -> Result<String, HashError> {
    let failed = |e: &dyn std::fmt::Display| HashError::Hashing(e.to_string());
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|e| failed(&e))?;
    let params = Params::new(19 * 1024, 2, 1, None).map_err(|e| failed(&e))?;
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| failed(&e))
}

/// Whether `hash` is an argon2id PHC string otpgw can verify against.
pub fn check_hash(hash: &str) -> Result<(), HashError> {
    let h = PasswordHash::new(hash).map_err(|e| HashError::NotPhc(e.to_string()))?;
    if h.algorithm.as_str() != "argon2id" {
        return Err(HashError::Algorithm(h.algorithm.to_string()));
    }
    Ok(())
}

/// Whether `password` matches the argon2id `hash` (constant time inside argon2).
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Account(String),
    Ip(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    /// Failures count within `cool` of the first one.
    since: u64,
    locked_until: Option<u64>,
}

/// See the module docs.
#[derive(Debug)]
pub struct Lockout {
    account_after: u32,
    ip_after: u32,
    cool: Duration,
    max_entries: usize,
    entries: HashMap<Key, Entry>,
}

impl Lockout {
    /// Lock an account after `account_after` failures and an IP after `ip_after`
    /// (0: never), for `cool`.
    pub fn new(account_after: u32, ip_after: u32, cool: Duration) -> Self {
        Self {
            account_after,
            ip_after,
            cool,
            max_entries: 100_000,
            entries: HashMap::new(),
        }
    }

    fn locked(&self, k: &Key, now: u64) -> bool {
        self.entries
            .get(k)
            .and_then(|e| e.locked_until)
            .is_some_and(|t| now < t)
    }

    /// Whether a bind for `account` from `ip` must be refused now.
    pub fn is_locked(&self, account: &str, ip: IpAddr, now: u64) -> bool {
        self.locked(&Key::Ip(ip), now) || self.locked(&Key::Account(account.to_string()), now)
    }

    /// A bind failed. `account` is `Some` only for a known account (unknown names
    /// are not tracked, so they cannot fill the table).
    pub fn failure(&mut self, account: Option<&str>, ip: IpAddr, now: u64) {
        self.count(Key::Ip(ip), self.ip_after, now);
        if let Some(a) = account {
            self.count(Key::Account(a.to_string()), self.account_after, now);
        }
    }

    /// A bind succeeded: the account's failures are forgotten.
    pub fn success(&mut self, account: &str) {
        self.entries.remove(&Key::Account(account.to_string()));
    }

    fn count(&mut self, k: Key, after: u32, now: u64) {
        if after == 0 {
            return;
        }
        if !self.entries.contains_key(&k) && self.entries.len() >= self.max_entries {
            self.prune(now);
            if self.entries.len() >= self.max_entries {
                return;
            }
        }
        let cool = self.cool;
        let e = self.entries.entry(k).or_insert(Entry {
            failures: 0,
            since: now,
            locked_until: None,
        });
        if e.locked_until.is_some_and(|t| now >= t) || now.saturating_sub(e.since) >= ms(cool) {
            *e = Entry {
                failures: 0,
                since: now,
                locked_until: None,
            };
        }
        e.failures += 1;
        if e.failures >= after {
            e.locked_until = Some(now + ms(cool));
        }
    }

    fn prune(&mut self, now: u64) {
        let cool = self.cool;
        self.entries.retain(|_, e| match e.locked_until {
            Some(t) => now < t,
            None => now.saturating_sub(e.since) < ms(cool),
        });
    }

    /// Keys tracked (for tests and metrics).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A duration in milliseconds (times here are milliseconds since the epoch).
fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_are_salted() {
        let h = hash_password("s3cret").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(check_hash(&h).is_ok());
        assert!(verify_password(&h, "s3cret"));
        assert!(!verify_password(&h, "s3cre"));
        assert!(!verify_password("garbage", "s3cret"));
        assert_ne!(h, hash_password("s3cret").unwrap(), "salted");
        assert!(check_hash("$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$aGFzaA").is_err());
    }

    #[test]
    fn accounts_and_ips_lock_and_cool_down() {
        let t0: u64 = 1_000_000;
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let mut l = Lockout::new(3, 5, Duration::from_secs(60));
        for _ in 0..2 {
            l.failure(Some("bank"), ip, t0);
        }
        assert!(!l.is_locked("bank", ip, t0));
        l.failure(Some("bank"), ip, t0);
        assert!(l.is_locked("bank", ip, t0), "account locked after 3");
        assert!(l.is_locked("bank", other, t0), "from any IP");
        assert!(!l.is_locked("shop", ip, t0), "the IP is not locked yet");
        // Unknown accounts count against the IP only.
        l.failure(None, ip, t0);
        l.failure(None, ip, t0);
        assert!(l.is_locked("shop", ip, t0), "IP locked after 5");
        assert!(!l.is_locked("shop", other, t0));
        // The cooling period ends.
        let later = t0 + 61_000;
        assert!(!l.is_locked("bank", ip, later));
        // A success clears the account's count.
        l.failure(Some("shop"), other, later);
        l.failure(Some("shop"), other, later);
        l.success("shop");
        l.failure(Some("shop"), other, later);
        assert!(!l.is_locked("shop", other, later));
    }

    #[test]
    fn failures_spread_over_longer_than_the_window_do_not_lock() {
        let t0: u64 = 1_000_000;
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut l = Lockout::new(3, 0, Duration::from_secs(10));
        for i in 0..10u64 {
            l.failure(Some("bank"), ip, t0 + (6 * i) * 1000);
            assert!(!l.is_locked("bank", ip, t0 + (6 * i) * 1000));
        }
    }

    #[test]
    fn the_table_is_bounded() {
        let t0: u64 = 1_000_000;
        let mut l = Lockout::new(3, 3, Duration::from_secs(10));
        l.max_entries = 10;
        for i in 0..50u32 {
            l.failure(None, IpAddr::from(i.to_be_bytes()), t0);
        }
        assert_eq!(l.len(), 10);
        // After the window, old entries make room.
        l.failure(None, "10.0.0.1".parse().unwrap(), t0 + 11_000);
        assert_eq!(l.len(), 1);
    }
}
