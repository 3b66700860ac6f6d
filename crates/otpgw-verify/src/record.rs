//! A verification as the store keeps it: no code, only its keyed hash. Binary,
//! versioned; reading checks every length and answers `None` on anything short or
//! unknown.

use otpgw_core::MsgId;
use otpgw_core::wire::{Reader, put_str};

use crate::transaction::Transaction;

/// Where a verification stands (expiry is read from the clock, not stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting for the right code.
    Pending,
    /// The right code was given (once).
    Approved,
    /// A newer verification for the same number replaced it.
    Superseded,
    /// Too many wrong codes.
    Locked,
}

/// A verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// 32 hex digits.
    pub id: String,
    pub brand: String,
    /// The destination, `+` and digits.
    pub to: String,
    /// Keyed hash of the current code.
    pub hash: [u8; 32],
    pub code_length: u8,
    pub created_ms: u64,
    pub expires_ms: u64,
    pub state: State,
    /// Checks made so far.
    pub checks: u8,
    /// Codes sent (1 + resends).
    pub sends: u8,
    pub last_send_ms: u64,
    pub approved_ms: u64,
    /// The message that carried the current code.
    pub message: MsgId,
    /// The sender id and the template (`{code}` in it) its codes go out with.
    pub sender: String,
    pub template: String,
    /// The transaction the code is bound to (PSD2 dynamic linking), if any.
    pub transaction: Option<Transaction>,
}

const V1: u8 = 1;
/// Version 2: a transaction follows the template.
const V2: u8 = 2;

impl Verification {
    /// The stored form.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(160 + self.template.len());
        b.push(if self.transaction.is_some() { V2 } else { V1 });
        put_str(&mut b, &self.id);
        put_str(&mut b, &self.brand);
        put_str(&mut b, &self.to);
        b.extend_from_slice(&self.hash);
        b.push(self.code_length);
        for t in [
            self.created_ms,
            self.expires_ms,
            self.last_send_ms,
            self.approved_ms,
            self.message.0,
        ] {
            b.extend_from_slice(&t.to_be_bytes());
        }
        b.push(match self.state {
            State::Pending => 0,
            State::Approved => 1,
            State::Superseded => 2,
            State::Locked => 3,
        });
        b.push(self.checks);
        b.push(self.sends);
        put_str(&mut b, &self.sender);
        put_str(&mut b, &self.template);
        if let Some(t) = &self.transaction {
            t.put(&mut b);
        }
        b
    }

    /// Read the stored form.
    pub fn decode(buf: &[u8]) -> Option<Self> {
        let mut r = Reader(buf);
        let version = r.u8()?;
        if version != V1 && version != V2 {
            return None;
        }
        let id = r.string()?;
        let brand = r.string()?;
        let to = r.string()?;
        let hash: [u8; 32] = r.take(32)?.try_into().ok()?;
        let code_length = r.u8()?;
        let created_ms = r.u64()?;
        let expires_ms = r.u64()?;
        let last_send_ms = r.u64()?;
        let approved_ms = r.u64()?;
        let message = MsgId(r.u64()?);
        let state = match r.u8()? {
            0 => State::Pending,
            1 => State::Approved,
            2 => State::Superseded,
            3 => State::Locked,
            _ => return None,
        };
        let (checks, sends) = (r.u8()?, r.u8()?);
        let (sender, template) = (r.string()?, r.string()?);
        let transaction = match version {
            V2 => Some(Transaction::read(&mut r)?),
            _ => None,
        };
        Some(Self {
            id,
            brand,
            to,
            hash,
            code_length,
            created_ms,
            expires_ms,
            state,
            checks,
            sends,
            last_send_ms,
            approved_ms,
            message,
            sender,
            template,
            transaction,
        })
    }
}

#[cfg(test)]
pub(crate) fn sample() -> Verification {
    Verification {
        id: "0123456789abcdef0123456789abcdef".into(),
        brand: "bank".into(),
        to: "+447400900123".into(),
        hash: [9; 32],
        code_length: 6,
        created_ms: 1_000,
        expires_ms: 301_000,
        state: State::Pending,
        checks: 0,
        sends: 1,
        last_send_ms: 1_000,
        approved_ms: 0,
        message: MsgId(42),
        sender: "BANK".into(),
        template: "Your code is {code}".into(),
        transaction: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let v = sample();
        assert_eq!(Verification::decode(&v.encode()), Some(v.clone()));
        let w = Verification {
            state: State::Locked,
            checks: 5,
            ..v
        };
        assert_eq!(Verification::decode(&w.encode()), Some(w.clone()));
        let t = Verification {
            transaction: Some(Transaction::new("25.00", "EUR", "ACME Ltd").unwrap()),
            ..w
        };
        assert_eq!(t.encode()[0], 2, "version 2 with a transaction");
        assert_eq!(Verification::decode(&t.encode()), Some(t));
    }

    proptest! {
        #[test]
        fn truncated_or_garbage_never_panics(cut in 0usize..300, junk in proptest::collection::vec(any::<u8>(), 0..300)) {
            let e = sample().encode();
            let _ = Verification::decode(&e[..cut.min(e.len())]);
            let _ = Verification::decode(&junk);
        }
    }
}
