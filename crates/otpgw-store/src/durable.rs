//! [`Durable`]: a store over a backend whose writes go through the one writer
//! ([`crate::writer`]). The store calls that write are here once, for every durable
//! backend (embedded, log, Redis); a [`Backend`] says only how it reads (statuses,
//! key-value records, counters, what the previous run left) and runs its writer on
//! the other end of the queue. Cluster coordination ([`Cluster`]) is the Redis
//! backend's; the others keep the single-node defaults.

use otpgw_core::attempts::Attempt;
use otpgw_core::outbox::ReceiptJob;
use otpgw_core::status::MessageStatus;
use otpgw_core::store::{
    KeyValue, MessageLog, Once, Recovered, StoreError, StoreFuture, Ticket, Versioned,
};
use otpgw_core::{DeliveryState, Message, MsgId};

use crate::writer::WriteQueue;

/// How a durable backend reads; see the module docs.
pub trait Backend: Send + Sync + 'static {
    /// The backend's name for logs and metrics.
    fn name(&self) -> &'static str;
    /// Whether an accept may be queued now (`Err`: refused at once, e.g. Redis
    /// unreachable).
    fn ready(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Whether statuses of messages still in flight are kept too (a store several
    /// nodes share: any node answers status queries); otherwise only final ones.
    fn keeps_statuses_in_flight(&self) -> bool {
        false
    }
    /// The status kept for `id`.
    fn message_status(&self, id: MsgId) -> StoreFuture<'_, Option<MessageStatus>>;
    /// The live record under `key`.
    fn kv_get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Versioned>>;
    /// Count an event under `key` (see [`KeyValue::count`]).
    fn count<'a>(
        &'a self,
        key: &'a str,
        window_ms: u64,
        now_ms: u64,
    ) -> StoreFuture<'a, otpgw_core::WindowCount>;
    /// What the previous run left.
    fn recover(&self, now_ms: u64) -> Result<Recovered, StoreError>;
    /// Whether the last writes succeeded.
    fn is_healthy(&self) -> bool;
    /// Whether `msg` may be accepted with idempotency key `key` (a partitioned
    /// store needs both in one partition, see `Cluster::partitions`).
    fn check_once(&self, _msg: MsgId, _key: &str) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A durable store: its write queue and its backend.
pub struct Durable<B> {
    pub(crate) queue: WriteQueue,
    pub(crate) backend: B,
}

impl<B> Durable<B> {
    /// The backend (its own statistics and controls).
    pub fn backend(&self) -> &B {
        &self.backend
    }
}

impl<B: std::fmt::Debug> std::fmt::Debug for Durable<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.backend.fmt(f)
    }
}

impl<B: Backend> MessageLog for Durable<B> {
    fn accept<'a>(&'a self, msg: &'a Message) -> StoreFuture<'a, ()> {
        if let Err(e) = self.backend.ready() {
            return Box::pin(std::future::ready(Err(e)));
        }
        self.queue.accept(msg)
    }

    fn accept_once<'a>(
        &'a self,
        msg: &'a Message,
        key: &'a str,
        value: Vec<u8>,
        expires_ms: u64,
    ) -> StoreFuture<'a, Once> {
        if let Err(e) = self
            .backend
            .ready()
            .and_then(|()| self.backend.check_once(msg.id, key))
        {
            return Box::pin(std::future::ready(Err(e)));
        }
        self.queue
            .accept_once(msg, Some((key.to_string(), value, expires_ms)))
    }

    fn submitted(&self, id: MsgId) -> Ticket {
        self.queue.submitted(id)
    }

    fn carrier_accepted(&self, id: MsgId, carrier: &str, carrier_msg_id: &str) {
        self.queue.carrier_accepted(id, carrier, carrier_msg_id);
    }

    fn attempts(&self, id: MsgId, list: &[Attempt]) -> Ticket {
        self.queue.attempts(id, list)
    }

    fn owe(&self, job: &ReceiptJob) {
        self.queue.owe(job);
    }

    fn finished(
        &self,
        id: MsgId,
        state: DeliveryState,
        receipt: Option<&ReceiptJob>,
        now_ms: u64,
    ) -> Ticket {
        self.queue.finished(id, state, receipt, now_ms)
    }

    fn receipt_forwarded(&self, id: MsgId) {
        self.queue.forwarded(id);
    }

    fn record_status(&self, status: &MessageStatus) {
        // One node answers for its messages in flight from memory.
        if status.done_ms > 0 || self.backend.keeps_statuses_in_flight() {
            self.queue.status(status);
        }
    }

    fn set_status_retention(&self, sooner: std::collections::HashMap<std::sync::Arc<str>, u64>) {
        *self.queue.status_sooner.write() = sooner;
    }

    fn message_status(&self, id: MsgId) -> StoreFuture<'_, Option<MessageStatus>> {
        self.backend.message_status(id)
    }

    fn recover(&self, now_ms: u64) -> Result<Recovered, StoreError> {
        let r = self.backend.recover(now_ms)?;
        self.queue.codec.refuse_missing()?;
        Ok(r)
    }

    fn flush(&self) -> Ticket {
        self.queue.flush()
    }

    fn is_durable(&self) -> bool {
        true
    }

    fn is_healthy(&self) -> bool {
        self.backend.is_healthy()
    }

    fn name(&self) -> &'static str {
        self.backend.name()
    }
}

impl<B: Backend> KeyValue for Durable<B> {
    fn kv_get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Versioned>> {
        self.backend.kv_get(key)
    }

    fn kv_put<'a>(
        &'a self,
        key: &'a str,
        expect: u64,
        value: Vec<u8>,
        expires_ms: u64,
    ) -> StoreFuture<'a, Option<u64>> {
        self.queue.kv_put(key, expect, value, expires_ms)
    }

    fn count<'a>(
        &'a self,
        key: &'a str,
        window_ms: u64,
        now_ms: u64,
    ) -> StoreFuture<'a, otpgw_core::WindowCount> {
        self.backend.count(key, window_ms, now_ms)
    }
}
