//! `Idempotency-Key` on the requests that send something (`POST /v1/messages`,
//! `POST /v1/verifications`): a retry with the same key within
//! [`ONCE_TTL_MS`] answers as the first request did and sends nothing; the same
//! key with another request answers 422 `idempotency_key_reused`.
//!
//! "The same request" is compared on its meaning, not its bytes: the body's
//! [`fingerprint`] is taken over its canonical JSON (object keys sorted at every
//! depth, no spacing, whole numbers written without a fraction), so a client that
//! re-encodes its retry with other spacing or key order is still recognised.
//!
//! Messages keep their key in the same store write as the message
//! (`Store::accept_once`). A verification is several writes (its record, its
//! message), so its key is claimed first ([`claim`]: a compare-and-set of a
//! placeholder that lasts [`CLAIM_MS`]), then holds the verification's id
//! ([`finish`]), or is let go if the start failed ([`release`]); a request that
//! finds the placeholder of one still running answers 409 `request_in_progress`.

use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use otpgw_accept::acceptor::ONCE_TTL_MS;
use otpgw_core::Store;

use crate::error::ApiError;

/// Longest idempotency key.
pub const MAX_KEY: usize = 255;
/// How long a claimed verification key waits for its start to finish.
pub const CLAIM_MS: u64 = 60_000;
/// Bytes of a fingerprint.
const FP: usize = 16;

/// The request's `Idempotency-Key`, if it has a valid one.
pub fn key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match v.to_str() {
        Ok(k) if !k.is_empty() && k.len() <= MAX_KEY && k.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(k.to_string()))
        }
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_idempotency_key",
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        )),
    }
}

/// The first 16 bytes of the SHA-256 of the body's canonical JSON (of the raw
/// bytes when it is not JSON: such a request is refused anyway).
pub fn fingerprint(raw: &[u8]) -> Vec<u8> {
    let digest = match serde_json::from_slice::<Value>(raw) {
        Ok(v) => {
            let mut s = String::with_capacity(raw.len());
            canonical(&v, &mut s);
            Sha256::digest(s.as_bytes())
        }
        Err(_) => Sha256::digest(raw),
    };
    digest[..FP].to_vec()
}

fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9e15 => {
                out.push_str(&(f as i64).to_string());
            }
            _ => out.push_str(&n.to_string()),
        },
        other => out.push_str(&other.to_string()),
    }
}

/// The 422 for a key used with another request.
pub fn reused() -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
        "this Idempotency-Key was used with a different request",
    )
}

fn store_down(_: otpgw_core::StoreError) -> ApiError {
    otpgw_accept::AcceptError::StoreUnavailable.into()
}

/// Where a verification's idempotency key is kept.
pub fn verification_key(brand: &str, key: &str) -> String {
    format!("idem-v:{brand}:{key}")
}

/// What [`claim`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// The key is this request's now (at this version): start, then [`finish`].
    Mine(u64),
    /// A request with this key already started this verification.
    Done(String),
}

/// Claim `key` for a request with fingerprint `fp` (see the module docs).
pub async fn claim(store: &dyn Store, key: &str, fp: &[u8], now: u64) -> Result<Claim, ApiError> {
    for _ in 0..3 {
        if let Some(rec) = store.kv_get(key).await.map_err(store_down)? {
            let (theirs, id) = rec.value.split_at(FP.min(rec.value.len()));
            if theirs != fp {
                return Err(reused());
            }
            if id.is_empty() {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "request_in_progress",
                    "a request with this Idempotency-Key is still being processed",
                )
                .retry(1));
            }
            return Ok(Claim::Done(String::from_utf8_lossy(id).into_owned()));
        }
        if let Some(v) = store
            .kv_put(key, 0, fp.to_vec(), now + CLAIM_MS)
            .await
            .map_err(store_down)?
        {
            return Ok(Claim::Mine(v));
        }
    }
    Err(otpgw_accept::AcceptError::StoreUnavailable.into())
}

/// The claimed key now names verification `id` (kept [`ONCE_TTL_MS`]).
pub async fn finish(store: &dyn Store, key: &str, version: u64, fp: &[u8], id: &str, now: u64) {
    let mut v = fp.to_vec();
    v.extend_from_slice(id.as_bytes());
    if let Err(e) = store.kv_put(key, version, v, now + ONCE_TTL_MS).await {
        tracing::warn!(error = %e, "an idempotency key could not be kept");
    }
}

/// The start failed: the key is free for a retry.
pub async fn release(store: &dyn Store, key: &str, version: u64, now: u64) {
    let _ = store.kv_put(key, version, Vec::new(), now).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_request_written_differently_has_one_fingerprint() {
        let a =
            fingerprint(br#"{"to":"+447400900123","from":"Bank","text":"x","validity_secs":60}"#);
        let b = fingerprint(
            b"{ \"validity_secs\" : 60.0,\n \"text\": \"x\", \"from\":\"Bank\", \"to\":\"+447400900123\" }",
        );
        assert_eq!(a, b);
        let c =
            fingerprint(br#"{"to":"+447400900123","from":"Bank","text":"y","validity_secs":60}"#);
        assert_ne!(a, c);
        assert_ne!(
            fingerprint(br#"{"a":{"b":1,"c":2}}"#),
            fingerprint(br#"{"a":{"b":2,"c":1}}"#)
        );
        assert_eq!(
            fingerprint(br#"{"a":{"b":1,"c":[1,2]}}"#),
            fingerprint(br#"{"a":{"c":[1,2],"b":1}}"#)
        );
        assert_ne!(
            fingerprint(br#"{"a":[1,2]}"#),
            fingerprint(br#"{"a":[2,1]}"#),
            "arrays keep their order"
        );
        assert_eq!(fingerprint(b"not json").len(), 16);
    }

    #[tokio::test]
    async fn a_verification_key_is_claimed_finished_or_released() {
        let store = otpgw_store::MemoryStore::new();
        let (fp, other) = (
            fingerprint(br#"{"to":"+1"}"#),
            fingerprint(br#"{"to":"+2"}"#),
        );
        let n = otpgw_core::clock::now_ms();
        let k = verification_key("bank", "k1");
        let Claim::Mine(v) = claim(&store, &k, &fp, n).await.unwrap() else {
            panic!("first claim")
        };
        let e = claim(&store, &k, &fp, n + 1).await.unwrap_err();
        assert_eq!(
            (e.status, e.code),
            (StatusCode::CONFLICT, "request_in_progress")
        );
        assert_eq!(
            claim(&store, &k, &other, n + 1).await.unwrap_err().code,
            "idempotency_key_reused"
        );
        finish(&store, &k, v, &fp, "vf_abc", n + 2).await;
        assert_eq!(
            claim(&store, &k, &fp, n + 3).await.unwrap(),
            Claim::Done("vf_abc".into())
        );
        // A failed start lets the key go.
        let k2 = verification_key("bank", "k2");
        let Claim::Mine(v) = claim(&store, &k2, &fp, n).await.unwrap() else {
            panic!("claim")
        };
        release(&store, &k2, v, n).await;
        assert!(matches!(
            claim(&store, &k2, &fp, n + 1).await.unwrap(),
            Claim::Mine(_)
        ));
    }
}
