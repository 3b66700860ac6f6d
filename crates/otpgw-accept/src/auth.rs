//! Brand authentication: argon2id password hashes, and lockout after failed binds.
//!
//! - Passwords live in the config only as argon2id PHC strings (`otpgw
//!   hash-password` makes them). Verifying one costs tens of milliseconds of CPU on
//!   purpose, so the session runs it on the blocking pool, at most
//!   [`MAX_CONCURRENT_VERIFIES`] at a time.
//! - [`Lockout`] (sans-IO: it takes `now`) counts failed authentications per
//!   (account, source address) and per source address. After `pair_after` failures
//!   within `cool` that account is locked *for that address only* (a stranger's
//!   guesses never lock the real client out), after `ip_after` the address is,
//!   whatever it tries. The first lock lasts `cool`, each further one twice the one
//!   before (at most 2^[`MAX_DOUBLINGS`] times `cool`), until a success or a quiet
//!   longest-lock period. A locked attempt is refused before any hash work, even
//!   with the right password, and [`Lockout::locked_for`] says for how long (the
//!   truthful `Retry-After`). A success clears its pair. At most `max_entries` keys
//!   are tracked; beyond that, entries whose lock or window ended are dropped
//!   first, and new keys are not tracked until there is room.
//! - [`dummy_verify`]: the same argon2 work for an unknown account as for a known
//!   one, so the answer's timing does not tell which accounts exist.

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

/// The token of an `Authorization: Bearer <token>` value: the scheme compared
/// without regard to case and followed by one or more spaces (RFC 9110 11.1,
/// RFC 6750 2.1); `None` for another scheme or an empty token.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim_matches(' ');
    (!token.is_empty() && !token.contains(' ')).then_some(token)
}

/// Burn the time of one password check against a hash of the same parameters as
/// real ones (for an unknown account: see the module docs).
pub fn dummy_verify(password: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let hash = DUMMY.get_or_init(|| hash_password("otpgw dummy password").unwrap_or_default());
    std::hint::black_box(verify_password(hash, password));
}

/// What a failure counts against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    /// An account from one address: a stranger elsewhere cannot lock it.
    Pair(String, IpAddr),
    /// An address, whatever account it tries.
    Ip(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    /// Failures count within `cool` of the first one.
    since: u64,
    locked_until: Option<u64>,
    /// Locks in a row: each lock lasts twice the one before (up to [`MAX_DOUBLINGS`]).
    strikes: u32,
}

/// A lock lasts at most `cool` times 2 to this power.
pub const MAX_DOUBLINGS: u32 = 6;

/// See the module docs.
#[derive(Debug)]
pub struct Lockout {
    pair_after: u32,
    ip_after: u32,
    cool: Duration,
    max_entries: usize,
    entries: HashMap<Key, Entry>,
}

impl Lockout {
    /// Lock an account from one address after `pair_after` failures and an address
    /// after `ip_after` (0: never), first for `cool`, then twice as long each time.
    pub fn new(pair_after: u32, ip_after: u32, cool: Duration) -> Self {
        Self {
            pair_after,
            ip_after,
            cool,
            max_entries: 100_000,
            entries: HashMap::new(),
        }
    }

    fn remaining(&self, k: &Key, now: u64) -> Option<u64> {
        let until = self.entries.get(k)?.locked_until?;
        (now < until).then(|| until - now)
    }

    /// How long (ms) a bind for `account` (or, with `None`, any request) from `ip`
    /// stays refused, if it is now: the longer of the address's and the pair's lock.
    pub fn locked_for(&self, account: Option<&str>, ip: IpAddr, now: u64) -> Option<u64> {
        let by_ip = self.remaining(&Key::Ip(ip), now);
        let by_pair = account.and_then(|a| self.remaining(&Key::Pair(a.to_string(), ip), now));
        by_ip.max(by_pair)
    }

    /// An authentication failed. `account` is `Some` only for a known account that
    /// may be used from `ip` (unknown names and addresses outside an allow-list
    /// count against the address alone, so they cannot fill the table or lock an
    /// account). Returns how long (ms) the failure locked, if it did.
    pub fn failure(&mut self, account: Option<&str>, ip: IpAddr, now: u64) -> Option<u64> {
        let a = self.count(Key::Ip(ip), self.ip_after, now);
        let b = account
            .and_then(|acc| self.count(Key::Pair(acc.to_string(), ip), self.pair_after, now));
        a.max(b)
    }

    /// An authentication succeeded: the account's failures from this address are
    /// forgotten (those of other addresses stand).
    pub fn success(&mut self, account: &str, ip: IpAddr) {
        self.entries.remove(&Key::Pair(account.to_string(), ip));
    }

    fn longest(&self) -> u64 {
        ms(self.cool).saturating_mul(1 << MAX_DOUBLINGS)
    }

    fn count(&mut self, k: Key, after: u32, now: u64) -> Option<u64> {
        if after == 0 {
            return None;
        }
        if !self.entries.contains_key(&k) && self.entries.len() >= self.max_entries {
            self.prune(now);
            if self.entries.len() >= self.max_entries {
                return None;
            }
        }
        let (cool, longest) = (ms(self.cool), self.longest());
        let e = self.entries.entry(k).or_insert(Entry {
            failures: 0,
            since: now,
            locked_until: None,
            strikes: 0,
        });
        if let Some(t) = e.locked_until {
            if now < t {
                // Still locked (a caller that did not look first): nothing new.
                return Some(t - now);
            }
            // A lock ended: strikes are kept unless the address stayed quiet for
            // the longest lock since.
            let strikes = if now - t >= longest { 0 } else { e.strikes };
            *e = Entry {
                failures: 0,
                since: now,
                locked_until: None,
                strikes,
            };
        } else if now.saturating_sub(e.since) >= cool {
            e.failures = 0;
            e.since = now;
        }
        e.failures += 1;
        if e.failures < after {
            return None;
        }
        let lock = cool.saturating_mul(1 << e.strikes.min(MAX_DOUBLINGS));
        e.strikes = e.strikes.saturating_add(1);
        e.locked_until = Some(now + lock);
        Some(lock)
    }

    fn prune(&mut self, now: u64) {
        let (cool, longest) = (ms(self.cool), self.longest());
        self.entries.retain(|_, e| match e.locked_until {
            Some(t) => now < t.saturating_add(longest),
            None => now.saturating_sub(e.since) < cool,
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
    fn a_pair_locks_only_its_address_and_an_address_every_account() {
        let t0: u64 = 1_000_000;
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let mut l = Lockout::new(3, 5, Duration::from_secs(60));
        for _ in 0..2 {
            assert_eq!(l.failure(Some("bank"), ip, t0), None);
        }
        assert_eq!(l.locked_for(Some("bank"), ip, t0), None);
        assert_eq!(l.failure(Some("bank"), ip, t0), Some(60_000));
        assert_eq!(
            l.locked_for(Some("bank"), ip, t0 + 1_000),
            Some(59_000),
            "locked after 3, the time left"
        );
        assert_eq!(
            l.locked_for(Some("bank"), other, t0),
            None,
            "never from another address"
        );
        assert_eq!(
            l.locked_for(Some("shop"), ip, t0),
            None,
            "the address is not locked yet"
        );
        // Unknown accounts count against the address only.
        l.failure(None, ip, t0);
        l.failure(None, ip, t0);
        assert_eq!(
            l.locked_for(Some("shop"), ip, t0),
            Some(60_000),
            "address locked after 5"
        );
        assert_eq!(l.locked_for(None, ip, t0), Some(60_000));
        assert_eq!(l.locked_for(Some("shop"), other, t0), None);
        // The lock ends.
        let later = t0 + 61_000;
        assert_eq!(l.locked_for(Some("bank"), ip, later), None);
        // A success clears the pair's count.
        l.failure(Some("shop"), other, later);
        l.failure(Some("shop"), other, later);
        l.success("shop", other);
        l.failure(Some("shop"), other, later);
        assert_eq!(l.locked_for(Some("shop"), other, later), None);
    }

    #[test]
    fn each_lock_in_a_row_lasts_twice_the_one_before() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut l = Lockout::new(2, 0, Duration::from_secs(10));
        let mut now: u64 = 1_000_000;
        let mut locks = Vec::new();
        for _ in 0..9 {
            l.failure(Some("bank"), ip, now);
            let lock = l.failure(Some("bank"), ip, now).unwrap();
            assert_eq!(l.locked_for(Some("bank"), ip, now), Some(lock));
            assert_eq!(
                l.failure(Some("bank"), ip, now + 1),
                Some(lock - 1),
                "no new lock while locked"
            );
            locks.push(lock / 1000);
            now += lock;
        }
        assert_eq!(locks, [10, 20, 40, 80, 160, 320, 640, 640, 640]);
        // A success starts over.
        l.success("bank", ip);
        l.failure(Some("bank"), ip, now);
        assert_eq!(l.failure(Some("bank"), ip, now), Some(10_000));
        // So does a quiet longest-lock period after a lock.
        let mut m = Lockout::new(1, 0, Duration::from_secs(10));
        assert_eq!(m.failure(Some("bank"), ip, 0), Some(10_000));
        assert_eq!(m.failure(Some("bank"), ip, 10_000), Some(20_000));
        assert_eq!(m.failure(Some("bank"), ip, 30_000 + 640_000), Some(10_000));
    }

    #[test]
    fn bearer_tokens() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER   abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer a b"), None);
        assert_eq!(bearer_token("Bearerabc"), None);
    }

    #[test]
    fn failures_spread_over_longer_than_the_window_do_not_lock() {
        let t0: u64 = 1_000_000;
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut l = Lockout::new(3, 0, Duration::from_secs(10));
        for i in 0..10u64 {
            l.failure(Some("bank"), ip, t0 + (6 * i) * 1000);
            assert_eq!(l.locked_for(Some("bank"), ip, t0 + (6 * i) * 1000), None);
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
