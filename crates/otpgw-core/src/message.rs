//! A message as otpgw accepted it from a brand: its id, brand, class, deadline,
//! where it goes and what it carries ([`crate::content`]).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use otpgw_proto::pdu::SubmitFields;
use otpgw_proto::receipt::DeliveryState;

use crate::content::{Body, Destination, SmsBody};

/// otpgw's own message id, returned to the brand in `submit_sm_resp` and used in its
/// receipts. Printed as 16 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MsgId(pub u64);

impl fmt::Display for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl MsgId {
    /// Parse the 16-hex-digit form (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        u64::from_str_radix(s, 16).ok().map(MsgId)
    }
}

/// Hands out unique message ids: the counter starts at the microseconds since the
/// epoch when the process starts, so ids stay unique across restarts as long as the
/// gateway averaged fewer than a million messages a second since its previous start.
#[derive(Debug)]
pub struct IdGen(AtomicU64);

impl IdGen {
    /// Start at `start` (normally [`crate::clock::now_us`]).
    pub fn starting_at(start: u64) -> Self {
        Self(AtomicU64::new(start))
    }
    /// The next id.
    pub fn next(&self) -> MsgId {
        MsgId(self.0.fetch_add(1, Ordering::Relaxed))
    }
    /// The next id with `id % n == r` (the ids between are skipped): a message
    /// whose idempotency key lives in partition `r` of a store with `n` partitions
    /// (see [`crate::store::key_partition`]).
    pub fn next_in(&self, n: u64, r: u64) -> MsgId {
        if n <= 1 {
            return self.next();
        }
        let step = |cur: u64| cur + (r % n + n - cur % n) % n;
        let got = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |cur| {
                Some(step(cur) + 1)
            })
            .unwrap_or_else(|cur| cur);
        MsgId(step(got))
    }
}

/// Priority class: strict priority between classes, earliest deadline first within.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// One-time passwords and other urgent traffic.
    Otp = 0,
    /// Everything else.
    Bulk = 1,
}

impl Class {
    /// Map `priority_flag`: 1 and above is OTP traffic, 0 is bulk.
    pub fn from_priority_flag(p: u8) -> Self {
        if p >= 1 { Class::Otp } else { Class::Bulk }
    }
    /// Label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Class::Otp => "otp",
            Class::Bulk => "bulk",
        }
    }
}

/// A message accepted from a brand. Its `Debug` hides text and numbers.
#[derive(Debug)]
pub struct Message {
    pub id: MsgId,
    /// The brand's system_id.
    pub brand: Arc<str>,
    /// Where it goes.
    pub to: Destination,
    /// What it carries.
    pub body: Body,
    pub class: Class,
    /// When it was accepted (ms since epoch).
    pub accepted_ms: u64,
    /// After this instant (ms since epoch) it must never be submitted.
    pub deadline_ms: u64,
    /// Sends so far that ended without an answer or with a temporary error (drives
    /// the retry backoff; kept in memory only).
    pub attempts: AtomicU32,
    /// What a message from the HTTP door carries beyond the SMPP fields (`None` for
    /// SMPP messages: one pointer).
    pub extra: Option<Arc<Extra>>,
    /// The SMPP session that submitted it, whose client gets its receipt while the
    /// session is bound (0: none; in memory only: after a restart it is gone).
    pub origin: u64,
    /// How far it got, for status queries of every door (in memory; the store
    /// keeps the final state).
    pub progress: parking_lot::Mutex<Progress>,
    /// One destination of a `submit_multi`: the id the brand was given for the
    /// whole submission (its first destination's), which its receipt carries.
    pub group: Option<MsgId>,
}

/// What a message submitted over HTTP carries beyond its SMPP fields. Its `Debug`
/// hides the receipt URL (it may hold a token of the brand's).
#[derive(Default)]
pub struct Extra {
    /// Its receipt goes to this URL as a signed webhook instead of to an SMPP
    /// receiver session.
    pub receipt_url: Option<Arc<str>>,
    /// The verification whose code it carries (32 hex digits).
    pub verification: Option<String>,
}

impl fmt::Debug for Extra {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Extra")
            .field("receipt_url", &self.receipt_url.as_ref().map(|_| "<set>"))
            .field("verification", &self.verification)
            .finish_non_exhaustive()
    }
}

/// Where a message stands before its final state.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// The carrier that has it (the last one a submit went to).
    pub carrier: Option<Arc<str>>,
    /// When its last submit was confirmed by that carrier (ms since epoch; 0: not yet).
    pub sent_ms: u64,
    /// A carrier bind took it to send (it may be at a carrier: too late to cancel).
    pub claimed: bool,
    /// The brand cancelled it while queued (`cancel_sm`): it is never sent.
    pub cancelled: bool,
}

impl Message {
    /// An SMS with `fields` (as a `submit_sm` carries them), without extras.
    pub fn sms(
        id: MsgId,
        brand: Arc<str>,
        fields: SubmitFields,
        class: Class,
        accepted_ms: u64,
        deadline_ms: u64,
    ) -> Self {
        let (to, body) = SmsBody::split(fields);
        Self {
            id,
            brand,
            to,
            body,
            class,
            accepted_ms,
            deadline_ms,
            attempts: Default::default(),
            extra: None,
            origin: 0,
            progress: Default::default(),
            group: None,
        }
    }

    /// The SMS fields of this message for a carrier (`None`: not an SMS).
    pub fn sms_fields(&self) -> Option<SubmitFields> {
        match (&self.to, &self.body) {
            (Destination::Phone(a), Body::Sms(b)) => Some(b.fields(a)),
        }
    }

    /// One part of this message, to be sent again on its own (a concatenated part
    /// whose send failed): same id, class and deadline, `fields` holding the part.
    pub fn part(&self, fields: SubmitFields) -> Self {
        let (to, body) = SmsBody::split(fields);
        Self {
            id: self.id,
            brand: self.brand.clone(),
            to,
            body,
            class: self.class,
            accepted_ms: self.accepted_ms,
            deadline_ms: self.deadline_ms,
            attempts: AtomicU32::new(self.attempts.load(Ordering::Relaxed)),
            extra: self.extra.clone(),
            origin: self.origin,
            progress: parking_lot::Mutex::new(self.progress.lock().clone()),
            group: self.group,
        }
    }

    /// A carrier confirmed a submit of this message at `now_ms` (kept for status
    /// queries).
    pub fn note_confirmed(&self, carrier: &Arc<str>, now_ms: u64) {
        {
            let mut p = self.progress.lock();
            p.carrier = Some(carrier.clone());
            p.sent_ms = now_ms;
        }
        if self
            .extra
            .as_ref()
            .is_some_and(|e| e.verification.is_some())
        {
            metrics::counter!(
                "otpgw_verification_codes_sent_total",
                "carrier" => carrier.to_string(),
                "country" => crate::number::country_of(self.to.key())
            )
            .increment(1);
        }
    }

    /// A carrier bind is about to send it: `false` when it was cancelled (then it
    /// must not be sent); from now on it cannot be cancelled.
    pub fn claim_send(&self) -> bool {
        let mut p = self.progress.lock();
        p.claimed = !p.cancelled;
        p.claimed
    }

    /// The bind that claimed it put it back in the queue unsent: it may be
    /// cancelled or replaced again.
    pub fn release_claim(&self) {
        self.progress.lock().claimed = false;
    }

    /// The brand cancels it: `true` when no bind has taken it yet (it never will);
    /// `false` when it may be at a carrier already.
    pub fn claim_cancel(&self) -> bool {
        let mut p = self.progress.lock();
        p.cancelled = !p.claimed;
        p.cancelled
    }

    /// Whether the brand cancelled it.
    pub fn is_cancelled(&self) -> bool {
        self.progress.lock().cancelled
    }

    /// The sender's address (a receipt's destination).
    pub fn sender(&self) -> otpgw_proto::pdu::Address {
        match &self.body {
            Body::Sms(b) => b.source.clone(),
        }
    }

    /// Count one more failed send; returns the number of failed sends so far.
    pub fn note_attempt(&self) -> u32 {
        self.attempts.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Whether the brand asked for a receipt for a message ending in `state`
    /// (registered_delivery bits 0-1: 1 = always, 2 = on failure only). A message
    /// from the HTTP door asks its carrier for a receipt always (for its status and
    /// the carrier's figures), and gets one itself only when it named a receipt URL.
    pub fn wants_receipt(&self, state: DeliveryState) -> bool {
        if let Some(e) = &self.extra
            && e.receipt_url.is_none()
        {
            return false;
        }
        let Body::Sms(b) = &self.body;
        match b.registered_delivery & 0x03 {
            1 => true,
            2 => state != DeliveryState::Delivered,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_print_as_hex() {
        let g = IdGen::starting_at(0x19a_0000_0000);
        let a = g.next();
        let b = g.next();
        assert_ne!(a, b);
        assert_eq!(a.to_string(), "0000019a00000000");
        assert_eq!(MsgId::parse(&a.to_string()), Some(a));
        assert_eq!(MsgId::parse("0000019A00000000"), Some(a));
    }

    #[test]
    fn ids_in_a_partition() {
        let g = IdGen::starting_at(100);
        let mut seen = std::collections::HashSet::new();
        for r in [3, 0, 15, 15, 7] {
            let id = g.next_in(16, r);
            assert_eq!(id.0 % 16, r);
            assert!(seen.insert(id.0), "unique");
        }
        let plain = g.next();
        assert!(seen.iter().all(|&s| s < plain.0), "never handed out twice");
        assert_eq!(g.next_in(1, 0).0, plain.0 + 1);
    }

    #[test]
    fn receipt_wishes() {
        let mut m = Message {
            id: MsgId(1),
            brand: "b".into(),
            to: Destination::default(),
            body: Body::default(),
            class: Class::Otp,
            accepted_ms: 0,
            deadline_ms: 0,
            attempts: Default::default(),
            extra: None,
            origin: 0,
            progress: Default::default(),
            group: None,
        };
        assert!(!m.wants_receipt(DeliveryState::Delivered));
        let rd = |m: &mut Message, v| {
            let Body::Sms(b) = &mut m.body;
            b.registered_delivery = v;
        };
        rd(&mut m, 1);
        assert!(m.wants_receipt(DeliveryState::Delivered));
        rd(&mut m, 2);
        assert!(!m.wants_receipt(DeliveryState::Delivered));
        assert!(m.wants_receipt(DeliveryState::Undeliverable));
    }
}
