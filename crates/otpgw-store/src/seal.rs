//! Encryption at rest: a [`Keyring`] of named 256-bit keys, one of them active,
//! sealing byte strings with AES-256-GCM (RustCrypto's `aes-gcm`; the CPU's AES
//! instructions where it has them) under a random 96-bit nonce, bound by the
//! associated data to what they belong to (a record's message id, a value's key).
//!
//! A sealed string:
//!
//! ```text
//! MAGIC (4) | key id length (1) | key id | kind (1: 'r' or 'k') | [message id (8, 'r')] | nonce (12) | ciphertext and tag
//! ```
//!
//! The key id is kept in clear so a record names the key it needs (older keys stay
//! readable after a rotation; a store needing a key the configuration lacks is
//! refused by name); the message id is kept in clear because a record read without
//! its id (a message, a receipt job, a status) must still be opened with it as
//! associated data, and it is checked against the id inside once open. A string
//! without the magic is a record from before encryption was turned on: it reads as
//! it is, and a rekey seals it.
//!
//! Nonces come from the operating system's CSPRNG, drawn 4 KiB at a time per
//! thread (one `getrandom` call per 341 records instead of one each).

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;

use aes_gcm::aead::{Aead, AeadInPlace, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

/// The first bytes of a sealed string.
pub const MAGIC: [u8; 4] = [0xE5, b's', b'k', b'1'];
const NONCE: usize = 12;
const RECORD: u8 = b'r';
const VALUE: u8 = b'k';

/// What a sealed string is bound to (its associated data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aad<'a> {
    /// A record of message `id`.
    Record(u64),
    /// The value of a key-value record.
    Key(&'a str),
}

/// Why a kept string cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unreadable {
    /// Sealed with a key the configuration lacks (or with no keys configured).
    #[error("sealed with key {0:?}, which [store.encryption] does not list")]
    KeyMissing(String),
    /// The layout is broken, the tag does not verify (changed bytes, a wrong key
    /// under the right id) or it belongs to another record.
    #[error("damaged or not sealed for this record")]
    Damaged,
}

/// A sealed string's parts (nothing decrypted).
#[derive(Debug)]
pub struct Parts<'b> {
    pub key_id: &'b str,
    /// The kind octet and, for a record, its id: the start of the associated data.
    bound: &'b [u8],
    /// The message id it names (records).
    pub id: Option<u64>,
    nonce: &'b [u8],
    body: &'b [u8],
}

/// The parts of `kept` when it is sealed (`None`: it is not; `Some(Err)`: it starts
/// like a sealed string but is broken).
pub fn parts(kept: &[u8]) -> Option<Result<Parts<'_>, Unreadable>> {
    let rest = kept.strip_prefix(&MAGIC[..])?;
    Some(parse(rest).ok_or(Unreadable::Damaged))
}

fn parse(rest: &[u8]) -> Option<Parts<'_>> {
    let (&n, rest) = rest.split_first()?;
    let (kid, rest) = rest.split_at_checked(usize::from(n))?;
    let key_id = std::str::from_utf8(kid).ok()?;
    let len = match *rest.first()? {
        RECORD => 9,
        VALUE => 1,
        _ => return None,
    };
    let (bound, rest) = rest.split_at_checked(len)?;
    let id = (len == 9).then(|| u64::from_be_bytes(bound[1..].try_into().unwrap_or_default()));
    let (nonce, body) = rest.split_at_checked(NONCE)?;
    Some(Parts {
        key_id,
        bound,
        id,
        nonce,
        body,
    })
}

/// The associated data: the kind (and id) kept in the header, then a value's key.
fn aad<'a>(bound: &'a [u8], to: Aad<'_>) -> Cow<'a, [u8]> {
    match to {
        Aad::Record(_) => Cow::Borrowed(bound),
        Aad::Key(k) => Cow::Owned([bound, k.as_bytes()].concat()),
    }
}

thread_local! {
    static POOL: RefCell<(Vec<u8>, usize)> = const { RefCell::new((Vec::new(), 0)) };
}

/// A fresh random nonce (see the module docs).
fn nonce() -> Result<[u8; NONCE], getrandom::Error> {
    POOL.with(|p| {
        let (buf, at) = &mut *p.borrow_mut();
        if *at + NONCE > buf.len() {
            buf.resize(4092, 0);
            getrandom::fill(buf)?;
            *at = 0;
        }
        let mut n = [0u8; NONCE];
        n.copy_from_slice(&buf[*at..*at + NONCE]);
        // Used bytes are cleared so a nonce is never handed out twice.
        buf[*at..*at + NONCE].fill(0);
        *at += NONCE;
        Ok(n)
    })
}

/// Named keys, one of them active (see the module docs). Its `Debug` prints the
/// key ids only.
pub struct Keyring {
    active: String,
    keys: HashMap<String, Aes256Gcm>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut ids: Vec<&String> = self.keys.keys().collect();
        ids.sort();
        f.debug_struct("Keyring")
            .field("active", &self.active)
            .field("keys", &ids)
            .finish()
    }
}

impl Keyring {
    /// A keyring of `keys` (id, 32 bytes) whose `active` one seals new writes.
    pub fn new(active: &str, keys: &[(String, [u8; 32])]) -> Result<Self, String> {
        let mut map = HashMap::new();
        for (id, k) in keys {
            if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!(
                    "key id {id:?}: 1 to 64 printable ASCII characters, no spaces"
                ));
            }
            if map.insert(id.clone(), Aes256Gcm::new(k.into())).is_some() {
                return Err(format!("key id {id:?} is listed twice"));
            }
        }
        if !map.contains_key(active) {
            return Err(format!("active key {active:?} is not among the keys"));
        }
        Ok(Self {
            active: active.to_string(),
            keys: map,
        })
    }

    /// The id of the key new writes are sealed with.
    pub fn active(&self) -> &str {
        &self.active
    }

    /// Whether the keyring holds `id`.
    pub fn has(&self, id: &str) -> bool {
        self.keys.contains_key(id)
    }

    /// `plain` sealed with the active key, bound to `to`: one buffer, encrypted in
    /// place.
    pub fn seal(&self, to: Aad<'_>, plain: &[u8]) -> Vec<u8> {
        let key = &self.keys[&self.active];
        let kid = self.active.as_bytes();
        let mut out = Vec::with_capacity(plain.len() + 48 + kid.len());
        out.extend_from_slice(&MAGIC);
        out.push(kid.len() as u8);
        out.extend_from_slice(kid);
        let bound_at = out.len();
        match to {
            Aad::Record(id) => {
                out.push(RECORD);
                out.extend_from_slice(&id.to_be_bytes());
            }
            Aad::Key(_) => out.push(VALUE),
        }
        // The OS refusing randomness, or AES-GCM refusing a record under 64 GiB,
        // cannot be worked around: nothing may be written in clear instead.
        let n = match nonce() {
            Ok(n) => n,
            Err(e) => panic!("no random nonce for encryption at rest: {e}"),
        };
        out.extend_from_slice(&n);
        let body_at = out.len();
        out.extend_from_slice(plain);
        let (head, body) = out.split_at_mut(body_at);
        let aad = aad(&head[bound_at..body_at - NONCE], to);
        match key.encrypt_in_place_detached(Nonce::from_slice(&n), &aad, body) {
            Ok(tag) => out.extend_from_slice(&tag),
            Err(_) => panic!("AES-GCM refused to seal a record"),
        }
        out
    }

    /// The plain bytes of sealed `p`, bound to `to` (`None`: take the id `p` names).
    pub fn open(&self, p: &Parts<'_>, to: Option<Aad<'_>>) -> Result<Vec<u8>, Unreadable> {
        let key = self
            .keys
            .get(p.key_id)
            .ok_or_else(|| Unreadable::KeyMissing(p.key_id.to_string()))?;
        let to = match to {
            Some(Aad::Record(id)) if p.id != Some(id) => return Err(Unreadable::Damaged),
            Some(Aad::Key(k)) if p.id.is_none() => Aad::Key(k),
            Some(Aad::Key(_)) => return Err(Unreadable::Damaged),
            _ => Aad::Record(p.id.unwrap_or_default()),
        };
        key.decrypt(
            Nonce::from_slice(p.nonce),
            Payload {
                msg: p.body,
                aad: &aad(p.bound, to),
            },
        )
        .map_err(|_| Unreadable::Damaged)
    }
}

/// A 32-byte key from 64 hexadecimal characters (surrounding whitespace ignored).
pub fn key_from_hex(s: &str) -> Result<[u8; 32], String> {
    let s = s.trim();
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "a key is 64 hexadecimal characters (32 bytes), this is {} characters",
            s.len()
        ));
    }
    let mut k = [0u8; 32];
    for (i, b) in k.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(active: &str) -> Keyring {
        Keyring::new(
            active,
            &[("k1".into(), [1u8; 32]), ("k2".into(), [2u8; 32])],
        )
        .unwrap()
    }

    fn open(r: &Keyring, kept: &[u8], to: Option<Aad<'_>>) -> Result<Vec<u8>, Unreadable> {
        r.open(&parts(kept).expect("sealed")?, to)
    }

    #[test]
    fn seals_and_opens_bound_to_what_it_belongs_to() {
        let r = ring("k1");
        let text = b"Your code is 123456, to +447400900123";
        let kept = r.seal(Aad::Record(42), text);
        assert!(!kept.windows(6).any(|w| w == b"123456"), "no text in clear");
        assert_eq!(open(&r, &kept, Some(Aad::Record(42))).unwrap(), text);
        assert_eq!(open(&r, &kept, None).unwrap(), text, "the id it names");
        assert_eq!(
            open(&r, &kept, Some(Aad::Record(43))),
            Err(Unreadable::Damaged),
            "another record's"
        );
        let v = r.seal(Aad::Key("ver:a"), b"value");
        assert_eq!(open(&r, &v, Some(Aad::Key("ver:a"))).unwrap(), b"value");
        assert_eq!(
            open(&r, &v, Some(Aad::Key("ver:b"))),
            Err(Unreadable::Damaged),
            "moved to another key"
        );
        assert_ne!(
            r.seal(Aad::Record(42), text),
            kept,
            "a fresh nonce each time"
        );
    }

    #[test]
    fn changed_bytes_and_missing_keys_are_told_apart() {
        let r = ring("k1");
        let kept = r.seal(Aad::Record(7), b"hello");
        for i in 0..kept.len() {
            let mut bad = kept.clone();
            bad[i] ^= 0x01;
            let got = match parts(&bad) {
                None => continue,
                Some(p) => p.and_then(|p| r.open(&p, Some(Aad::Record(7)))),
            };
            assert!(got.is_err(), "byte {i} changed yet opened");
        }
        let only_k2 = Keyring::new("k2", &[("k2".into(), [2u8; 32])]).unwrap();
        assert_eq!(
            open(&only_k2, &kept, None),
            Err(Unreadable::KeyMissing("k1".into()))
        );
        let wrong = Keyring::new("k1", &[("k1".into(), [9u8; 32])]).unwrap();
        assert_eq!(open(&wrong, &kept, None), Err(Unreadable::Damaged));
        assert!(parts(b"\x03plain record").is_none(), "plain: not sealed");
    }

    #[test]
    fn keyrings_are_checked_and_never_print_keys() {
        assert!(Keyring::new("k3", &[("k1".into(), [1; 32])]).is_err());
        assert!(Keyring::new("k1", &[("k1".into(), [1; 32]), ("k1".into(), [2; 32])]).is_err());
        assert!(Keyring::new("a b", &[("a b".into(), [1; 32])]).is_err());
        let s = format!("{:?}", ring("k2"));
        assert_eq!(s, r#"Keyring { active: "k2", keys: ["k1", "k2"] }"#);
        assert_eq!(key_from_hex(&"0f".repeat(32)).unwrap(), [0x0f; 32]);
        assert!(key_from_hex("abcd").is_err());
        assert!(key_from_hex(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn nonces_do_not_repeat() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..5000 {
            assert!(seen.insert(nonce().unwrap()));
        }
    }
}
