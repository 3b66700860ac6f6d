//! The record codec: every record a durable store keeps (a message, its carrier
//! state or attempts, a receipt owed, a status) and every key-value value passes
//! through a [`Codec`] on its way to disk or Redis and back. The binary layouts are
//! [`crate::record`]'s; the codec is the one place where what is written is
//! transformed as a whole: with a [`Keyring`] (`[store.encryption]`) it is sealed
//! ([`crate::seal`]), bound to what it belongs to (a record to its message id, a
//! value to its key).
//!
//! The storage framing around a record (table keys, the log's frame header, a
//! key-value record's version and expiry, Redis field names) is the backend's and
//! stays outside: it carries no message text and no number.
//!
//! Reading: a sealed string names its key; a string that is not sealed is a
//! record from before encryption was turned on and reads as it is. What cannot be
//! read (a key the configuration lacks, changed bytes) is counted in
//! `otpgw_store_records_unreadable_total{reason}` and logged with the key id,
//! never decoded into garbage: reads answer nothing for it, recovery and key-value
//! reads fail with [`StoreError::Corrupt`] naming the key, so a node is not started
//! on records it cannot read.
//!
//! Rekeying: [`Codec::reseal_message`] and its siblings give the string to keep
//! instead of one sealed with another key than the active one (or not sealed),
//! `None` when it is current; the backends' rekey and the log's compaction use
//! them.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};

use otpgw_core::attempts::Attempt;
use otpgw_core::outbox::ReceiptJob;
use otpgw_core::status::MessageStatus;
use otpgw_core::store::StoreError;
use otpgw_core::{Message, MsgId};

use crate::record::{self, SendState};
use crate::seal::{self, Aad, Keyring, Unreadable};

/// See the module docs. One codec is shared by a store's writer and readers.
#[derive(Debug, Default)]
pub struct Codec {
    ring: Option<Keyring>,
    unreadable: AtomicU64,
    /// Ids of keys records named that the keyring lacks.
    missing: parking_lot::Mutex<std::collections::BTreeSet<String>>,
}

/// Damaged-record reason label values, registered from start by the node.
pub const UNREADABLE_REASONS: [&str; 2] = ["key_missing", "damaged"];

impl Codec {
    /// The codec that keeps records as they are.
    pub fn plain() -> Self {
        Self::default()
    }

    /// The codec that seals every record with `ring`'s active key.
    pub fn sealing(ring: Keyring) -> Self {
        Self {
            ring: Some(ring),
            ..Self::default()
        }
    }

    /// The id of the key new writes are sealed with (`None`: kept in clear).
    pub fn active_key(&self) -> Option<&str> {
        self.ring.as_ref().map(Keyring::active)
    }

    /// How many reads found a record they could not open, since start.
    pub fn unreadable(&self) -> u64 {
        self.unreadable.load(Ordering::Relaxed)
    }

    /// The bytes to keep for `plain`, bound to `to`.
    fn seal(&self, to: Aad<'_>, plain: Vec<u8>) -> Vec<u8> {
        match &self.ring {
            Some(r) => r.seal(to, &plain),
            None => plain,
        }
    }

    /// The plain bytes of what [`Codec::seal`] kept for `to` (`None`: a record read
    /// without its id; then the id it names, checked by the caller).
    fn open<'b>(
        &self,
        to: Option<Aad<'_>>,
        kept: &'b [u8],
    ) -> Result<(Cow<'b, [u8]>, Option<u64>), Unreadable> {
        let Some(parts) = seal::parts(kept) else {
            return Ok((Cow::Borrowed(kept), None));
        };
        let got = parts.and_then(|p| match &self.ring {
            Some(r) => r.open(&p, to).map(|v| (Cow::Owned(v), p.id)),
            None => Err(Unreadable::KeyMissing(p.key_id.to_string())),
        });
        if let Err(e) = &got {
            self.report(e);
        }
        got
    }

    /// `Err` naming the keys records needed and the keyring lacked, if any was
    /// met since start (a store is not served on records it cannot read).
    pub fn refuse_missing(&self) -> Result<(), StoreError> {
        let missing = self.missing.lock();
        if missing.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = missing.iter().map(String::as_str).collect();
        Err(StoreError::Corrupt(format!(
            "the store holds records sealed with key(s) {ids:?}, which [store.encryption] does not list{}",
            if self.ring.is_none() {
                " (the store is encrypted and no [store.encryption] is configured)"
            } else {
                ""
            }
        )))
    }

    fn report(&self, e: &Unreadable) {
        if let Unreadable::KeyMissing(id) = e {
            self.missing.lock().insert(id.clone());
        }
        let n = self.unreadable.fetch_add(1, Ordering::Relaxed);
        let reason = match e {
            Unreadable::KeyMissing(_) => UNREADABLE_REASONS[0],
            Unreadable::Damaged => UNREADABLE_REASONS[1],
        };
        metrics::counter!("otpgw_store_records_unreadable_total", "reason" => reason).increment(1);
        if n.is_power_of_two() || n == 0 {
            tracing::error!(error = %e, unreadable = n + 1, "a stored record cannot be read");
        }
    }

    /// A record read without its id: decoded, then its id checked against the
    /// one it was sealed for.
    fn read_kept<T>(
        &self,
        kept: &[u8],
        decode: impl FnOnce(&[u8]) -> Option<T>,
        id: impl FnOnce(&T) -> u64,
    ) -> Result<T, Unreadable> {
        let (plain, sealed_for) = self.open(None, kept)?;
        let v = decode(&plain).ok_or(Unreadable::Damaged)?;
        if sealed_for.is_some_and(|s| s != id(&v)) {
            self.report(&Unreadable::Damaged);
            return Err(Unreadable::Damaged);
        }
        Ok(v)
    }

    /// A message record.
    pub fn message(&self, m: &Message) -> Vec<u8> {
        self.seal(Aad::Record(m.id.0), record::encode_message(m))
    }
    /// The message kept in `kept`.
    pub fn read_message(&self, kept: &[u8]) -> Option<Message> {
        self.try_message(kept).ok()
    }
    /// The message kept in `kept`, or why it cannot be read.
    pub fn try_message(&self, kept: &[u8]) -> Result<Message, Unreadable> {
        self.read_kept(kept, record::decode_message, |m| m.id.0)
    }

    /// A message's carrier state.
    pub fn state(&self, id: MsgId, s: &SendState) -> Vec<u8> {
        self.seal(Aad::Record(id.0), record::encode_state(s))
    }
    /// An OTP's attempts (a carrier state).
    pub fn attempts(&self, id: MsgId, list: &[Attempt]) -> Vec<u8> {
        self.seal(Aad::Record(id.0), record::encode_attempts(list))
    }
    /// The carrier state of record `id`.
    pub fn read_state(&self, id: u64, kept: &[u8]) -> Option<SendState> {
        let (plain, _) = self.open(Some(Aad::Record(id)), kept).ok()?;
        record::decode_state(&plain)
    }

    /// A receipt (or another job) owed to a brand.
    pub fn receipt(&self, j: &ReceiptJob) -> Vec<u8> {
        self.seal(Aad::Record(j.id.0), record::encode_receipt(j))
    }
    /// The job owed kept in `kept`.
    pub fn read_receipt(&self, kept: &[u8]) -> Option<ReceiptJob> {
        self.read_kept(kept, record::decode_receipt, |j| j.id.0)
            .ok()
    }

    /// A message's status.
    pub fn status(&self, s: &MessageStatus) -> Vec<u8> {
        self.seal(Aad::Record(s.id.0), record::encode_status(s))
    }
    /// The status kept in `kept`.
    pub fn read_status(&self, kept: &[u8]) -> Option<MessageStatus> {
        self.read_kept(kept, record::decode_status, |s| s.id.0).ok()
    }

    /// The value of key-value record `key`.
    pub fn value(&self, key: &str, v: Vec<u8>) -> Vec<u8> {
        self.seal(Aad::Key(key), v)
    }
    /// The value kept under `key`; unreadable: [`StoreError::Corrupt`] saying why.
    pub fn read_value(&self, key: &str, kept: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.open(Some(Aad::Key(key)), kept)
            .map(|(v, _)| v.into_owned())
            .map_err(|e| match (&e, &self.ring) {
                (Unreadable::KeyMissing(id), None) => StoreError::Corrupt(format!(
                    "record {key:?} is sealed with key {id:?}: the store is encrypted and no [store.encryption] is configured"
                )),
                _ => StoreError::Corrupt(format!("record {key:?}: {e}")),
            })
    }

    /// Whether `kept` is sealed with the active key (or nothing is sealed).
    fn current(&self, kept: &[u8]) -> bool {
        match (&self.ring, seal::parts(kept)) {
            (None, _) => true,
            (Some(r), Some(Ok(p))) => p.key_id == r.active(),
            (Some(_), _) => false,
        }
    }

    /// What to keep instead of message record `kept` (see the module docs).
    pub fn reseal_message(&self, kept: &[u8]) -> Result<Option<Vec<u8>>, Unreadable> {
        if self.current(kept) {
            return Ok(None);
        }
        Ok(Some(self.message(&self.try_message(kept)?)))
    }
    /// What to keep instead of carrier state `kept` of record `id`.
    pub fn reseal_state(&self, id: u64, kept: &[u8]) -> Result<Option<Vec<u8>>, Unreadable> {
        if self.current(kept) {
            return Ok(None);
        }
        let (plain, _) = self.open(Some(Aad::Record(id)), kept)?;
        Ok(Some(self.seal(Aad::Record(id), plain.into_owned())))
    }
    /// What to keep instead of receipt job `kept`.
    pub fn reseal_receipt(&self, kept: &[u8]) -> Result<Option<Vec<u8>>, Unreadable> {
        if self.current(kept) {
            return Ok(None);
        }
        let j = self.read_kept(kept, record::decode_receipt, |j| j.id.0)?;
        Ok(Some(self.receipt(&j)))
    }
    /// What to keep instead of status `kept`.
    pub fn reseal_status(&self, kept: &[u8]) -> Result<Option<Vec<u8>>, Unreadable> {
        if self.current(kept) {
            return Ok(None);
        }
        let s = self.read_kept(kept, record::decode_status, |s| s.id.0)?;
        Ok(Some(self.status(&s)))
    }
    /// What to keep instead of value `kept` of key-value record `key`.
    pub fn reseal_value(&self, key: &str, kept: &[u8]) -> Result<Option<Vec<u8>>, Unreadable> {
        if self.current(kept) {
            return Ok(None);
        }
        let (plain, _) = self.open(Some(Aad::Key(key)), kept)?;
        Ok(Some(self.value(key, plain.into_owned())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(active: &str, ids: &[&str]) -> Keyring {
        let keys: Vec<(String, [u8; 32])> = ids
            .iter()
            .map(|id| (id.to_string(), [id.as_bytes()[1]; 32]))
            .collect();
        Keyring::new(active, &keys).unwrap()
    }

    #[test]
    fn values_and_states_come_back() {
        for c in [Codec::plain(), Codec::sealing(ring("k1", &["k1"]))] {
            let v = c.value("k", b"hello".to_vec());
            assert_eq!(c.read_value("k", &v).unwrap(), b"hello");
            let s = SendState::Confirmed {
                carrier: "a".into(),
                carrier_id: "x1".into(),
            };
            let kept = c.state(MsgId(7), &s);
            assert_eq!(c.read_state(7, &kept), Some(s));
            assert_eq!(c.read_state(7, &[]), None, "damaged: refused, no panic");
        }
    }

    #[test]
    fn rotation_reads_old_keys_reseals_and_reports_missing_ones() {
        let old = Codec::sealing(ring("k1", &["k1"]));
        let plain = Codec::plain();
        let a = old.value("ver:x", b"v1".to_vec());
        let b = plain.value("ver:y", b"v0".to_vec());
        let s = old.state(MsgId(9), &SendState::Sent);

        let both = Codec::sealing(ring("k2", &["k1", "k2"]));
        assert_eq!(
            both.read_value("ver:x", &a).unwrap(),
            b"v1",
            "old key reads"
        );
        assert_eq!(both.read_value("ver:y", &b).unwrap(), b"v0", "clear reads");
        let a2 = both.reseal_value("ver:x", &a).unwrap().expect("resealed");
        let b2 = both.reseal_value("ver:y", &b).unwrap().expect("sealed");
        let s2 = both.reseal_state(9, &s).unwrap().expect("resealed");
        assert_eq!(both.reseal_value("ver:x", &a2).unwrap(), None, "current");

        let new = Codec::sealing(ring("k2", &["k2"]));
        assert_eq!(new.read_value("ver:x", &a2).unwrap(), b"v1");
        assert_eq!(new.read_value("ver:y", &b2).unwrap(), b"v0");
        assert_eq!(new.read_state(9, &s2), Some(SendState::Sent));
        let e = new.read_value("ver:x", &a).unwrap_err().to_string();
        assert!(e.contains("\"k1\""), "names the missing key: {e}");
        assert_eq!(new.read_state(9, &s), None);
        assert_eq!(new.unreadable(), 2);
        let e = plain.read_value("ver:x", &a).unwrap_err().to_string();
        assert!(e.contains("k1"), "{e}");
        assert_eq!(both.read_state(10, &s), None, "sealed for another record");
    }
}
