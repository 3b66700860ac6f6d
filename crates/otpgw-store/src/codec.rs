//! The record codec: every record a durable store keeps (a message, its carrier
//! state or attempts, a receipt owed, a status) and every key-value value passes
//! through a [`Codec`] on its way to disk or Redis and back. The binary layouts are
//! [`crate::record`]'s; the codec is the one place where what is written can be
//! transformed as a whole (encryption at rest goes here), bound to what it belongs
//! to (a record to its message id, a value to its key).
//!
//! The storage framing around a record (table keys, the log's frame header, a
//! key-value record's version and expiry, Redis field names) is the backend's and
//! stays outside: it carries no message text and no number.
//!
//! Binding: a message, a receipt job and a status carry their message id inside,
//! so what is kept for them can name the id it was sealed for and be checked against
//! the record once read; a carrier state (which does not) is read with its id, a
//! key-value value with its key.

use std::borrow::Cow;

use otpgw_core::attempts::Attempt;
use otpgw_core::outbox::ReceiptJob;
use otpgw_core::status::MessageStatus;
use otpgw_core::{Message, MsgId};

use crate::record::{self, SendState};

/// What a sealed byte string is bound to: a record to its message id, a value to
/// its key; `Kept`: the id named by what was kept (checked against the record read).
/// The plain codec ignores it; a sealing codec binds to it.
#[derive(Debug, Clone, Copy)]
#[allow(dead_code)]
enum Bound<'a> {
    Record(u64),
    Key(&'a str),
    Kept,
}

/// See the module docs. Today's codec writes records as they are (the identity
/// transform); one codec is shared by a store's writer and readers.
#[derive(Debug, Default)]
pub struct Codec {
    _private: (),
}

impl Codec {
    /// The codec that keeps records as they are.
    pub fn plain() -> Self {
        Self::default()
    }

    /// The bytes to keep for `plain`, bound to `to`.
    fn seal(&self, _to: Bound<'_>, plain: Vec<u8>) -> Vec<u8> {
        plain
    }

    /// The plain bytes of what [`Codec::seal`] kept for `to` (`None`: they cannot
    /// be read, e.g. damaged).
    fn open<'b>(&self, _to: Bound<'_>, kept: &'b [u8]) -> Option<Cow<'b, [u8]>> {
        Some(Cow::Borrowed(kept))
    }

    /// A message record.
    pub fn message(&self, m: &Message) -> Vec<u8> {
        self.seal(Bound::Record(m.id.0), record::encode_message(m))
    }
    /// The message kept in `kept`.
    pub fn read_message(&self, kept: &[u8]) -> Option<Message> {
        record::decode_message(&self.open(Bound::Kept, kept)?)
    }

    /// A message's carrier state.
    pub fn state(&self, id: MsgId, s: &SendState) -> Vec<u8> {
        self.seal(Bound::Record(id.0), record::encode_state(s))
    }
    /// An OTP's attempts (a carrier state).
    pub fn attempts(&self, id: MsgId, list: &[Attempt]) -> Vec<u8> {
        self.seal(Bound::Record(id.0), record::encode_attempts(list))
    }
    /// The carrier state of record `id`.
    pub fn read_state(&self, id: u64, kept: &[u8]) -> Option<SendState> {
        record::decode_state(&self.open(Bound::Record(id), kept)?)
    }

    /// A receipt (or another job) owed to a brand.
    pub fn receipt(&self, j: &ReceiptJob) -> Vec<u8> {
        self.seal(Bound::Record(j.id.0), record::encode_receipt(j))
    }
    /// The job owed kept in `kept`.
    pub fn read_receipt(&self, kept: &[u8]) -> Option<ReceiptJob> {
        record::decode_receipt(&self.open(Bound::Kept, kept)?)
    }

    /// A message's status.
    pub fn status(&self, s: &MessageStatus) -> Vec<u8> {
        self.seal(Bound::Record(s.id.0), record::encode_status(s))
    }
    /// The status kept in `kept`.
    pub fn read_status(&self, kept: &[u8]) -> Option<MessageStatus> {
        record::decode_status(&self.open(Bound::Kept, kept)?)
    }

    /// The value of key-value record `key`.
    pub fn value(&self, key: &str, v: Vec<u8>) -> Vec<u8> {
        self.seal(Bound::Key(key), v)
    }
    /// The value kept under `key`.
    pub fn read_value(&self, key: &str, kept: &[u8]) -> Option<Vec<u8>> {
        self.open(Bound::Key(key), kept).map(Cow::into_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_states_come_back() {
        let c = Codec::plain();
        let v = c.value("k", b"hello".to_vec());
        assert_eq!(c.read_value("k", &v).as_deref(), Some(&b"hello"[..]));
        let s = SendState::Confirmed {
            carrier: "a".into(),
            carrier_id: "x1".into(),
        };
        let kept = c.state(MsgId(7), &s);
        assert_eq!(c.read_state(7, &kept), Some(s));
        assert_eq!(c.read_state(7, &[]), None, "damaged: refused, no panic");
    }
}
