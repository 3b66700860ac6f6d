//! API keys: `Authorization: Bearer <key>`.
//!
//! A brand's `api_key_hash` is either `sha256:<64 hex>` of a key of 32 random
//! bytes (`otpgw new-api-key` makes both; a lookup costs one SHA-256, and such a key
//! is too long to guess, so a fast hash is safe) or an argon2id PHC string (for keys
//! people chose; verified once per key and process on the blocking pool, two at a
//! time, then remembered by the key's SHA-256). Failed authentications count
//! against the client's address ([`otpgw_accept::auth::Lockout`], as SMPP binds do):
//! past the limit the address gets 429 before any work. A known key used from an
//! address outside the brand's `allowed_ips` gets 403.

use std::net::IpAddr;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode, header};
use dashmap::DashMap;
use sha2::{Digest, Sha256};

use otpgw_accept::auth::{HashError, Lockout, bearer_token, verify_password};
use otpgw_accept::{BrandConfig, Brands};

use crate::error::ApiError;

/// Lower-case hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The SHA-256 of a key.
pub fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The `sha256:` hash of a key, for `api_key_hash`.
pub fn sha256_hash(key: &str) -> String {
    format!("sha256:{}", hex(&digest(key)))
}

/// A new API key (`otpgw_` and 64 hex digits: 32 random bytes) and its hash.
pub fn new_api_key() -> Result<(String, String), HashError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| HashError::Hashing(format!("no randomness: {e}")))?;
    let key = format!("otpgw_{}", hex(&b));
    let hash = sha256_hash(&key);
    Ok((key, hash))
}

/// Whether `h` is a valid `api_key_hash` (for the config check).
pub fn check_key_hash(h: &str) -> Result<(), HashError> {
    if let Some(x) = h.strip_prefix("sha256:") {
        if x.len() == 64 && x.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(());
        }
        return Err(HashError::Sha256);
    }
    otpgw_accept::auth::check_hash(h).map_err(|e| HashError::ApiKey(Box::new(e)))
}

/// 429 for an address locked for `ms` more milliseconds.
fn locked(ms: u64) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_auth_failures",
        "too many failed authentications from this address",
    )
    .retry(ms.div_ceil(1000))
}

/// See the module docs.
pub struct Keys {
    lockout: parking_lot::Mutex<Lockout>,
    /// Keys verified against an argon2id hash: key digest -> brand.
    verified: DashMap<[u8; 32], Arc<str>>,
    slots: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").finish_non_exhaustive()
    }
}

/// Remembered argon2-verified keys at most.
const VERIFIED_MAX: usize = 10_000;

impl Keys {
    /// Lock an address after `ip_after` failures for `lock`.
    pub fn new(ip_after: u32, lock: std::time::Duration) -> Self {
        Self {
            lockout: parking_lot::Mutex::new(Lockout::new(0, ip_after, lock)),
            verified: DashMap::new(),
            slots: tokio::sync::Semaphore::new(otpgw_accept::auth::MAX_CONCURRENT_VERIFIES),
        }
    }

    /// The brand the request's key belongs to, among `brands` (the configuration
    /// in force), or the refusal.
    pub async fn brand(
        &self,
        headers: &HeaderMap,
        ip: IpAddr,
        brands: &parking_lot::RwLock<Brands>,
    ) -> Result<Arc<BrandConfig>, ApiError> {
        let now = otpgw_core::clock::now_ms();
        if let Some(left) = self.lockout.lock().locked_for(None, ip, now) {
            metrics::counter!("otpgw_http_auth_locked_out_total").increment(1);
            return Err(locked(left));
        }
        let key = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .filter(|k| k.len() <= 512);
        let Some(key) = key else {
            return Err(ApiError::unauthorized());
        };
        let d = digest(key);
        let (mut found, argon) = {
            let b = brands.read();
            let hit = b.by_key_digest(&d).or_else(|| {
                let name = self.verified.get(&d)?.clone();
                b.get(&name)
            });
            let argon = if hit.is_none() {
                b.argon2_keyed()
            } else {
                Vec::new()
            };
            (hit, argon)
        };
        if found.is_none() && !argon.is_empty() {
            found = self.argon2(key, d, argon).await;
        }
        let Some(brand) = found else {
            metrics::counter!("otpgw_http_auth_failures_total").increment(1);
            if let Some(ms) = self.lockout.lock().failure(None, ip, now) {
                metrics::counter!("otpgw_auth_lockouts_total", "door" => "http").increment(1);
                tracing::warn!(%ip, seconds = ms.div_ceil(1000), "failed API keys: address locked");
                return Err(locked(ms));
            }
            return Err(ApiError::unauthorized());
        };
        if !brand.allows(ip) {
            metrics::counter!("otpgw_http_auth_failures_total").increment(1);
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "ip_not_allowed",
                "this key may not be used from this address",
            ));
        }
        Ok(brand)
    }

    /// Try the argon2id hashes (slow by design; a few at a time).
    async fn argon2(
        &self,
        key: &str,
        d: [u8; 32],
        candidates: Vec<Arc<BrandConfig>>,
    ) -> Option<Arc<BrandConfig>> {
        let _permit = self.slots.acquire().await.ok()?;
        let key = key.to_string();
        let hit = tokio::task::spawn_blocking(move || {
            candidates.into_iter().find(|b| {
                b.api_key_hash
                    .as_deref()
                    .is_some_and(|h| verify_password(h, &key))
            })
        })
        .await
        .ok()??;
        if self.verified.len() >= VERIFIED_MAX {
            self.verified.clear();
        }
        self.verified.insert(d, hit.system_id.clone());
        Some(hit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brand(name: &str, hash: &str) -> BrandConfig {
        let mut b = BrandConfig::new(name, "x");
        b.api_key_hash = Some(hash.into());
        b
    }

    fn bearer(k: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            format!("Bearer {k}").parse().unwrap(),
        );
        h
    }

    #[tokio::test]
    async fn keys_hashes_and_lockout() {
        let (key, hash) = new_api_key().unwrap();
        assert!(key.starts_with("otpgw_") && key.len() == 70);
        assert!(check_key_hash(&hash).is_ok());
        assert!(check_key_hash("sha256:12").is_err());
        assert!(check_key_hash("plain").is_err());
        let argon = otpgw_accept::auth::hash_password("chosen-key").unwrap();
        assert!(check_key_hash(&argon).is_ok());
        let brands =
            parking_lot::RwLock::new(Brands::new([brand("bank", &hash), brand("shop", &argon)]));
        let keys = Keys::new(3, std::time::Duration::from_secs(60));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let b = keys.brand(&bearer(&key), ip, &brands).await.unwrap();
        assert_eq!(&*b.system_id, "bank");
        let b = keys
            .brand(&bearer("chosen-key"), ip, &brands)
            .await
            .unwrap();
        assert_eq!(&*b.system_id, "shop");
        assert_eq!(keys.verified.len(), 1, "remembered");
        let e = keys
            .brand(&HeaderMap::new(), ip, &brands)
            .await
            .unwrap_err();
        assert_eq!(e.code, "unauthorized");
        for _ in 0..2 {
            let e = keys.brand(&bearer("nope"), ip, &brands).await.unwrap_err();
            assert_eq!(e.code, "unauthorized");
        }
        let e = keys.brand(&bearer("nope"), ip, &brands).await.unwrap_err();
        assert_eq!(e.code, "too_many_auth_failures", "the third failure locks");
        assert_eq!(e.retry_after, Some(60), "for as long as the lock lasts");
        let e = keys.brand(&bearer(&key), ip, &brands).await.unwrap_err();
        assert_eq!(
            e.code, "too_many_auth_failures",
            "locked, even with the right key"
        );
        assert!(matches!(e.retry_after, Some(59..=60)));
        // The scheme is case-insensitive (RFC 9110).
        let mut lower = HeaderMap::new();
        lower.insert(
            header::AUTHORIZATION,
            format!("bearer  {key}").parse().unwrap(),
        );
        let fresh: IpAddr = "192.0.2.3".parse().unwrap();
        assert!(keys.brand(&lower, fresh, &brands).await.is_ok());
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(keys.brand(&bearer(&key), other, &brands).await.is_ok());
        // An allow-list.
        let mut limited = BrandConfig::new("lim", "x");
        limited.api_key_hash = Some(sha256_hash("k-lim"));
        limited.allowed_nets = vec!["10.0.0.0/8".parse().unwrap()];
        let brands = parking_lot::RwLock::new(Brands::new([limited]));
        let e = keys
            .brand(&bearer("k-lim"), other, &brands)
            .await
            .unwrap_err();
        assert_eq!(e.code, "ip_not_allowed");
    }
}
