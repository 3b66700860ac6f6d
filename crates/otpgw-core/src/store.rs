//! The store: where otpgw keeps what it has promised, split by concern.
//!
//! - [`MessageLog`]: the life of each message (accepted, sent, confirmed, its
//!   attempts, finished, its receipt forwarded), its status, and what the previous
//!   run left. `accept` resolves only when the message is as safe as the backend
//!   can make it: a door answers ESME_ROK (or HTTP 202) after it resolves, never
//!   before. The later writes are fire-and-forget (or resolve a [`Ticket`]) so a
//!   backend can batch them.
//! - [`KeyValue`]: small records with versions and compare-and-set (verifications,
//!   idempotency keys), and counters in windows.
//! - [`Cluster`]: what nodes sharing one store do together (claims of dead nodes'
//!   work, receipts between nodes, brand presence); a store serving one node keeps
//!   the defaults.
//! - [`Store`]: all three, what a node is assembled from.

use std::future::Future;
use std::pin::Pin;

use otpgw_proto::receipt::DeliveryState;
use tokio::sync::oneshot;

use crate::message::{Message, MsgId};
use crate::outbox::ReceiptJob;
use crate::status::MessageStatus;

/// Resolves when a write the store took is durable (`true`), or can no longer
/// become durable (`false`: the store failed or closed).
#[derive(Debug)]
pub struct Ticket(Option<oneshot::Receiver<bool>>);

impl Ticket {
    /// A write that is as durable as it will get already.
    pub fn ready() -> Self {
        Self(None)
    }
    /// A ticket resolved by the store through the paired sender.
    pub fn pending() -> (oneshot::Sender<bool>, Self) {
        let (tx, rx) = oneshot::channel();
        (tx, Self(Some(rx)))
    }
    /// Whether it is resolved already (nothing to wait for).
    pub fn is_ready(&self) -> bool {
        self.0.is_none()
    }
    /// Wait for the write.
    pub async fn wait(self) -> bool {
        match self.0 {
            None => true,
            Some(rx) => rx.await.unwrap_or(false),
        }
    }
}

/// What a store hands back at start: the state the previous run left.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Accepted, no carrier has confirmed them. `bool`: a submit may have been sent.
    pub unconfirmed: Vec<(Message, bool)>,
    /// Confirmed by a carrier, waiting for its receipt: (message, carrier, carrier id).
    pub confirmed: Vec<(Message, String, String)>,
    /// Receipts finished but not yet delivered to their brand.
    pub receipts: Vec<ReceiptJob>,
    /// OTPs under a receipt deadline, with their attempts (carriers, carrier ids).
    pub attempts: Vec<(Message, Vec<crate::attempts::Attempt>)>,
}

/// A carrier receipt that arrived at another node, which could not match it.
#[derive(Debug, Clone)]
pub struct ForeignReceipt {
    /// The carrier's name (as configured on every node).
    pub carrier: String,
    pub receipt: otpgw_proto::pdu::CarrierReceipt,
}

/// A store operation's future.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// What [`KeyValue::count`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowCount {
    /// Events in the window, this one included.
    pub count: u64,
    /// Milliseconds until the window ends (the truthful `Retry-After` of a cap).
    pub resets_in_ms: u64,
}

/// Why the store refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend is unavailable for now: the brand gets a temporary error.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The backend is shutting down.
    #[error("store closed")]
    Closed,
    /// Too many accepts are waiting for the disk: the brand gets a temporary error.
    #[error("store busy")]
    Busy,
    /// The data on disk could not be read.
    #[error("store corrupt: {0}")]
    Corrupt(String),
}

/// A record of the small key-value space (verifications, idempotency keys): its
/// version (1 for the first write, one more per write) and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub version: u64,
    pub value: Vec<u8>,
}

/// What [`Store::accept_once`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Once {
    /// The message is stored (and the key with it, in the same write).
    Accepted,
    /// The key was there already (with this value): nothing was stored.
    Duplicate(Vec<u8>),
}

/// The life of each message (see the module docs).
pub trait MessageLog: Send + Sync + 'static {
    /// Record an accepted message; resolves when it is safe to acknowledge.
    fn accept<'a>(&'a self, msg: &'a Message) -> StoreFuture<'a, ()>;
    /// Accept `msg` and store `key` = `value` (kept until `expires_ms`) in the same
    /// durable write, unless `key` exists: then nothing is stored and the value
    /// found is returned (a retried request with the same idempotency key).
    fn accept_once<'a>(
        &'a self,
        msg: &'a Message,
        key: &'a str,
        value: Vec<u8>,
        expires_ms: u64,
    ) -> StoreFuture<'a, Once>;
    /// A `submit_sm` for the message is about to be written to a carrier. The
    /// carrier bind writes it only after the ticket resolved, so after a crash every
    /// message that may have reached a carrier is known (and counted as a possible
    /// duplicate when it is sent again). Batched with other writes.
    fn submitted(&self, id: MsgId) -> Ticket;
    /// The carrier acknowledged the message with its own id. Batched.
    fn carrier_accepted(&self, id: MsgId, carrier: &str, carrier_msg_id: &str);
    /// The attempts of an OTP under a receipt deadline (they replace the "sent" mark
    /// and carrier id of [`MessageLog::submitted`] and
    /// [`MessageLog::carrier_accepted`] for it). Batched; the ticket resolves when
    /// durable (a new attempt is written to its carrier only then).
    fn attempts(&self, id: MsgId, list: &[crate::attempts::Attempt]) -> Ticket;
    /// Keep a job owed to a brand that is not a message's receipt (the fallback
    /// event of an OTP whose attempts were all spent), until
    /// [`MessageLog::receipt_forwarded`] with its id. Batched.
    fn owe(&self, job: &ReceiptJob);
    /// The message reached its final state; `receipt` is what the brand is owed, if
    /// anything. The ticket resolves when this is durable (a carrier's receipt is
    /// acknowledged only then).
    fn finished(
        &self,
        id: MsgId,
        state: DeliveryState,
        receipt: Option<&ReceiptJob>,
        now_ms: u64,
    ) -> Ticket;
    /// The brand acknowledged the receipt for this message. Batched.
    fn receipt_forwarded(&self, id: MsgId);
    /// Keep the status of a message that asked for one (HTTP messages): its final
    /// state, and (stores several nodes share) its acceptance. Batched.
    fn record_status(&self, status: &MessageStatus);
    /// Per brand, how much sooner (ms) than the store's own retention its final
    /// statuses are purged (a brand's `retention_secs`); replaces the previous.
    fn set_status_retention(&self, _sooner: std::collections::HashMap<std::sync::Arc<str>, u64>) {}
    /// The status kept for `id`, if any.
    fn message_status(&self, id: MsgId) -> StoreFuture<'_, Option<MessageStatus>>;
    /// What the previous run left (empty for a store that keeps nothing).
    fn recover(&self, now_ms: u64) -> Result<Recovered, StoreError>;
    /// Wait until every write taken so far is durable.
    fn flush(&self) -> Ticket;
    /// Whether an acknowledged message survives a crash.
    fn is_durable(&self) -> bool;
    /// Whether the last writes succeeded (readiness).
    fn is_healthy(&self) -> bool {
        true
    }
    /// Backend name for logs and metrics.
    fn name(&self) -> &'static str;
}

/// Small versioned records and counters (see the module docs).
pub trait KeyValue: Send + Sync + 'static {
    /// The record under `key`, unless it is absent or expired.
    fn kv_get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Versioned>>;
    /// Write `key` = `value` (kept until `expires_ms`) if its version is still
    /// `expect` (0: absent or expired); resolves once durable to the new version, or
    /// `None` when another write came first (compare and set: read again, decide
    /// again).
    fn kv_put<'a>(
        &'a self,
        key: &'a str,
        expect: u64,
        value: Vec<u8>,
        expires_ms: u64,
    ) -> StoreFuture<'a, Option<u64>>;
    /// Count one event under `key` in a window of `window_ms` that starts with the
    /// window's first event; returns the count, this event included, and when the
    /// window ends. Shared by the nodes of a shared store; a single node may keep
    /// it in memory only.
    fn count<'a>(
        &'a self,
        key: &'a str,
        window_ms: u64,
        now_ms: u64,
    ) -> StoreFuture<'a, WindowCount>;
}

/// Several nodes on one store (only the Redis backend shares; the defaults are
/// those of a store that serves one node).
pub trait Cluster: Send + Sync + 'static {
    /// Whether several nodes share this store (and the calls below do anything).
    fn is_shared(&self) -> bool {
        false
    }
    /// Partitions the store spreads messages over (a Redis Cluster), `id % n`; 1:
    /// none. A message accepted with an idempotency key must have an id in the
    /// key's partition ([`key_partition`]; `IdGen::next_in`), as the key and the
    /// message are written in one step.
    fn partitions(&self) -> u64 {
        1
    }
    /// A receipt this node could not match (yet): make it available to the other
    /// nodes, one of which may have sent the message. The carrier's `deliver_sm` is
    /// acknowledged once the ticket resolved.
    fn publish_receipt(&self, _carrier: &str, _r: &otpgw_proto::pdu::CarrierReceipt) -> Ticket {
        Ticket::ready()
    }
    /// Receipts other nodes published, for this node to try to match (taken once).
    fn take_foreign_receipts(&self) -> Option<tokio::sync::mpsc::Receiver<ForeignReceipt>> {
        None
    }
    /// Take over what nodes that stopped renewing their lease left: their messages
    /// and the receipts they owed brands.
    fn claim_orphans(&self, _now_ms: u64) -> StoreFuture<'_, Recovered> {
        Box::pin(std::future::ready(Ok(Recovered::default())))
    }
    /// Offer the published receipts still kept again (after claiming messages whose
    /// receipts may have been published before).
    fn rescan_receipts(&self) {}
    /// A receiver session of `brand` opened (`true`) or closed here, so other nodes
    /// know where to hand the brand's receipts.
    fn brand_receiver(&self, _brand: &str, _opened: bool) {}
    /// Whether `brand` has a receiver session on this node.
    fn brand_bound_here(&self, _brand: &str) -> bool {
        true
    }
    /// Hand receipts this node owes `brand` to a node where the brand has a receiver
    /// bound (they leave this node's durable copy in the same step). `Ok(false)`:
    /// no such node; the caller keeps them.
    fn hand_over_receipts<'a>(
        &'a self,
        _brand: &'a str,
        _jobs: &'a [ReceiptJob],
    ) -> StoreFuture<'a, bool> {
        Box::pin(std::future::ready(Ok(false)))
    }
    /// Receipts other nodes handed to this one, already stored as owed here (taken
    /// once).
    fn take_handed_receipts(&self) -> Option<tokio::sync::mpsc::Receiver<ReceiptJob>> {
        None
    }
    /// Tallies: named numbers under one key that the nodes build together (the
    /// fraud guard's codes sent and approved per prefix), kept by a store several
    /// nodes share (others keep none: a single node counts in memory). Add to
    /// fields; the key is kept `ttl_ms` after its last change. Not personal data:
    /// never sealed.
    fn tally_add<'a>(
        &'a self,
        _key: &'a str,
        _adds: &'a [(String, i64)],
        _ttl_ms: u64,
    ) -> StoreFuture<'a, ()> {
        Box::pin(std::future::ready(Ok(())))
    }
    /// Set fields of a tally (`None` removes one).
    fn tally_set<'a>(
        &'a self,
        _key: &'a str,
        _fields: &'a [(String, Option<i64>)],
        _ttl_ms: u64,
    ) -> StoreFuture<'a, ()> {
        Box::pin(std::future::ready(Ok(())))
    }
    /// Every field of a tally.
    fn tally_get<'a>(&'a self, _key: &'a str) -> StoreFuture<'a, Vec<(String, i64)>> {
        Box::pin(std::future::ready(Ok(Vec::new())))
    }
}

/// The partition (of `n`) of an idempotency or key-value key: FNV-1a of its bytes,
/// the same on every node and version.
pub fn key_partition(key: &str, n: u64) -> u64 {
    if n <= 1 {
        return 0;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h % n
}

/// A whole store: the message log, the key-value space and cluster coordination.
/// Implemented by every type that has all three.
pub trait Store: MessageLog + KeyValue + Cluster {}

impl<T: MessageLog + KeyValue + Cluster> Store for T {}
