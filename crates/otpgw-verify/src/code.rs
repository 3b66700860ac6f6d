//! Codes and ids: drawn from the operating system's CSPRNG, and kept only as a keyed
//! hash (HMAC-SHA256 with the deployment's secret over the verification id and the
//! code), compared in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why randomness could not be had (the OS refused: nothing is generated).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the operating system's random source failed: {0}")]
pub struct RandomError(String);

fn random(buf: &mut [u8]) -> Result<(), RandomError> {
    getrandom::fill(buf).map_err(|e| RandomError(e.to_string()))
}

/// The deployment's secret for code hashes. Its `Debug` prints nothing of it.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Shortest secret accepted (bytes).
pub const MIN_SECRET: usize = 32;

impl Secret {
    /// A secret of at least [`MIN_SECRET`] bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Option<Self> {
        let b = bytes.into();
        (b.len() >= MIN_SECRET).then_some(Self(b))
    }

    /// A fresh random secret (for the demo and tests).
    pub fn random() -> Result<Self, RandomError> {
        let mut b = vec![0u8; MIN_SECRET];
        random(&mut b)?;
        Ok(Self(b))
    }

    fn mac(&self, id: &str, code: &str) -> HmacSha256 {
        // HMAC takes keys of any length: this cannot fail.
        let mut m = match HmacSha256::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC accepts any key length"),
        };
        m.update(id.as_bytes());
        m.update(b":");
        m.update(code.as_bytes());
        m
    }

    /// The hash kept for `code` of verification `id`.
    pub fn hash(&self, id: &str, code: &str) -> [u8; 32] {
        self.mac(id, code).finalize().into_bytes().into()
    }

    /// `number` as the store's look-ups see it: a keyed hash (HMAC-SHA256 with
    /// the secret, 128 bits in hex), so no key in any store holds a phone number.
    pub fn blind(&self, number: &str) -> String {
        let h = self.mac("number", number).finalize().into_bytes();
        h[..16].iter().map(|x| format!("{x:02x}")).collect()
    }

    /// Whether `code` is the one hashed into `hash` (constant time).
    pub fn matches(&self, id: &str, code: &str, hash: &[u8; 32]) -> bool {
        self.mac(id, code).verify_slice(hash).is_ok()
    }
}

/// A code of `len` decimal digits, each uniform (rejection sampling of random bytes).
pub fn generate_code(len: usize) -> Result<String, RandomError> {
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 32];
    while out.len() < len {
        random(&mut buf)?;
        for &b in &buf {
            // 250 = 25 * 10: below it every digit is equally likely.
            if b < 250 && out.len() < len {
                out.push(char::from(b'0' + b % 10));
            }
        }
    }
    Ok(out)
}

/// A verification id: 128 random bits as 32 lower-case hex digits.
pub fn new_id() -> Result<String, RandomError> {
    let mut b = [0u8; 16];
    random(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Whether `s` has the shape of a verification id.
pub fn is_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_digits_of_the_length_asked_and_spread() {
        let mut counts = [0u32; 10];
        for len in 4..=10 {
            for _ in 0..200 {
                let c = generate_code(len).unwrap();
                assert_eq!(c.len(), len);
                for b in c.bytes() {
                    counts[usize::from(b - b'0')] += 1;
                }
            }
        }
        // 9,800 digits: each digit near 980 (a bias would show far beyond 5 sigma).
        for n in counts {
            assert!((780..1180).contains(&n), "{counts:?}");
        }
    }

    #[test]
    fn ids_are_random_hex() {
        let a = new_id().unwrap();
        let b = new_id().unwrap();
        assert!(is_id(&a) && is_id(&b));
        assert_ne!(a, b);
        assert!(!is_id("ABCDEF0123456789abcdef0123456789"));
        assert!(!is_id("abc"));
    }

    #[test]
    fn hashes_are_keyed_and_bound_to_the_id() {
        let s = Secret::new(vec![7u8; 32]).unwrap();
        let other = Secret::new(vec![8u8; 32]).unwrap();
        let h = s.hash("id1", "123456");
        assert!(s.matches("id1", "123456", &h));
        assert!(!s.matches("id1", "123457", &h));
        assert!(!s.matches("id2", "123456", &h), "bound to the verification");
        assert!(!other.matches("id1", "123456", &h), "keyed");
        assert!(Secret::new(vec![1u8; 31]).is_none());
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
    }
}
