//! The in-memory store: acknowledges at once and keeps only counters, final
//! statuses of HTTP messages and the key-value space.
//!
//! Nothing survives a restart. The tracker and outbox already hold the live state in
//! memory, so this backend has little else to keep. Bounded: at most [`MAX_KEPT`]
//! statuses and key-value records; when full, expired ones are dropped, and then
//! the oldest statuses, while new key-value records are refused (an error).

use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use otpgw_core::DeliveryState;
use otpgw_core::clock::now_ms;
use otpgw_core::message::{Message, MsgId};
use otpgw_core::outbox::ReceiptJob;
use otpgw_core::status::MessageStatus;
use otpgw_core::store::{
    Cluster, KeyValue, MessageLog, Once, Recovered, StoreError, StoreFuture, Ticket, Versioned,
};

use crate::counters::Counters;

/// Statuses and key-value records kept at most (each).
pub const MAX_KEPT: usize = 1_000_000;
/// Statuses are kept this long.
const STATUS_KEEP_MS: u64 = 3_600_000;

/// See the module docs.
#[derive(Debug)]
pub struct MemoryStore {
    accepted: AtomicU64,
    finished: AtomicU64,
    forwarded: AtomicU64,
    status: DashMap<MsgId, MessageStatus>,
    /// key -> (version, expires_ms, value).
    kv: DashMap<String, (u64, u64, Vec<u8>)>,
    counters: Counters,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self {
            accepted: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            status: DashMap::new(),
            kv: DashMap::new(),
            counters: Counters::new(MAX_KEPT),
        }
    }
}

impl MemoryStore {
    /// A new, empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Make room for a new key-value record (false: none).
    fn kv_room(&self, now: u64) -> bool {
        if self.kv.len() < MAX_KEPT {
            return true;
        }
        self.kv.retain(|_, (_, e, _)| *e > now);
        self.kv.len() < MAX_KEPT
    }

    /// Compare and set under the entry's lock.
    fn cas(
        &self,
        key: &str,
        expect: u64,
        value: Vec<u8>,
        expires_ms: u64,
    ) -> Result<Option<u64>, StoreError> {
        let now = now_ms();
        if !self.kv.contains_key(key) && !self.kv_room(now) {
            return Err(StoreError::Busy);
        }
        let mut e = self.kv.entry(key.to_string()).or_insert((0, 0, Vec::new()));
        let current = if e.1 > now { e.0 } else { 0 };
        if current != expect {
            return Ok(None);
        }
        *e = (current + 1, expires_ms, value);
        Ok(Some(current + 1))
    }
    /// (accepted, finished, receipts forwarded) so far.
    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.accepted.load(Ordering::Relaxed),
            self.finished.load(Ordering::Relaxed),
            self.forwarded.load(Ordering::Relaxed),
        )
    }
}

impl MessageLog for MemoryStore {
    fn accept<'a>(&'a self, _msg: &'a Message) -> StoreFuture<'a, ()> {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        Box::pin(std::future::ready(Ok(())))
    }

    fn submitted(&self, _id: MsgId) -> Ticket {
        Ticket::ready()
    }

    fn carrier_accepted(&self, _id: MsgId, _carrier: &str, _carrier_msg_id: &str) {}

    fn attempts(&self, _id: MsgId, _list: &[otpgw_core::attempts::Attempt]) -> Ticket {
        Ticket::ready()
    }

    fn owe(&self, _job: &ReceiptJob) {}

    fn finished(
        &self,
        _id: MsgId,
        _state: DeliveryState,
        _r: Option<&ReceiptJob>,
        _now_ms: u64,
    ) -> Ticket {
        self.finished.fetch_add(1, Ordering::Relaxed);
        Ticket::ready()
    }

    fn recover(&self, _now_ms: u64) -> Result<Recovered, StoreError> {
        Ok(Recovered::default())
    }

    fn flush(&self) -> Ticket {
        Ticket::ready()
    }

    fn receipt_forwarded(&self, _id: MsgId) {
        self.forwarded.fetch_add(1, Ordering::Relaxed);
    }

    fn record_status(&self, status: &MessageStatus) {
        if status.done_ms == 0 {
            return;
        }
        if self.status.len() >= MAX_KEPT {
            let cut = status.done_ms.saturating_sub(STATUS_KEEP_MS);
            self.status.retain(|_, s| s.done_ms > cut);
            if self.status.len() >= MAX_KEPT {
                return;
            }
        }
        self.status.insert(status.id, status.clone());
    }

    fn message_status(&self, id: MsgId) -> StoreFuture<'_, Option<MessageStatus>> {
        let s = self.status.get(&id).map(|s| s.clone());
        Box::pin(std::future::ready(Ok(s)))
    }

    fn accept_once<'a>(
        &'a self,
        _msg: &'a Message,
        key: &'a str,
        value: Vec<u8>,
        expires_ms: u64,
    ) -> StoreFuture<'a, Once> {
        let r = match self.cas(key, 0, value, expires_ms) {
            Ok(Some(_)) => {
                self.accepted.fetch_add(1, Ordering::Relaxed);
                Ok(Once::Accepted)
            }
            Ok(None) => Ok(Once::Duplicate(
                self.kv.get(key).map(|e| e.2.clone()).unwrap_or_default(),
            )),
            Err(e) => Err(e),
        };
        Box::pin(std::future::ready(r))
    }

    fn is_durable(&self) -> bool {
        false
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}

impl KeyValue for MemoryStore {
    fn kv_get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Versioned>> {
        let now = now_ms();
        let v = self.kv.get(key).and_then(|e| {
            (e.1 > now).then(|| Versioned {
                version: e.0,
                value: e.2.clone(),
            })
        });
        Box::pin(std::future::ready(Ok(v)))
    }

    fn kv_put<'a>(
        &'a self,
        key: &'a str,
        expect: u64,
        value: Vec<u8>,
        expires_ms: u64,
    ) -> StoreFuture<'a, Option<u64>> {
        Box::pin(std::future::ready(self.cas(key, expect, value, expires_ms)))
    }

    fn count<'a>(
        &'a self,
        key: &'a str,
        window_ms: u64,
        now_ms: u64,
    ) -> StoreFuture<'a, otpgw_core::WindowCount> {
        Box::pin(std::future::ready(Ok(self
            .counters
            .count(key, window_ms, now_ms))))
    }
}

/// One node: the single-node defaults.
impl Cluster for MemoryStore {}

#[cfg(test)]
mod tests {
    use super::*;
    use otpgw_core::Class;

    #[tokio::test]
    async fn counts_calls() {
        let s = MemoryStore::new();
        let m = Message {
            id: MsgId(1),
            brand: "b".into(),
            to: Default::default(),
            body: Default::default(),
            class: Class::Otp,
            accepted_ms: 0,
            deadline_ms: 0,
            attempts: Default::default(),
            extra: None,
            origin: 0,
            progress: Default::default(),
            group: None,
        };
        s.accept(&m).await.unwrap();
        s.finished(m.id, DeliveryState::Delivered, None, 0);
        s.receipt_forwarded(m.id);
        assert_eq!(s.counts(), (1, 1, 1));
        assert!(!s.is_durable());
    }

    #[tokio::test]
    async fn keeps_statuses_keys_and_counts() {
        otpgw_testkit::contract::http_contract(&MemoryStore::new()).await;
    }
}
