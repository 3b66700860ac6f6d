//! The in-memory store: acknowledges at once and keeps only counters.
//!
//! Nothing survives a restart. The tracker and outbox already hold the live state in
//! memory, so this backend has nothing else to keep.

use std::sync::atomic::{AtomicU64, Ordering};

use otpgw_core::DeliveryState;
use otpgw_core::message::{Message, MsgId};
use otpgw_core::outbox::ReceiptJob;
use otpgw_core::store::{Recovered, Store, StoreError, StoreFuture, Ticket};

/// See the module docs.
#[derive(Debug, Default)]
pub struct MemoryStore {
    accepted: AtomicU64,
    finished: AtomicU64,
    forwarded: AtomicU64,
}

impl MemoryStore {
    /// A new, empty store.
    pub fn new() -> Self {
        Self::default()
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

impl Store for MemoryStore {
    fn accept<'a>(&'a self, _msg: &'a Message) -> StoreFuture<'a, ()> {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        Box::pin(std::future::ready(Ok(())))
    }
    fn submitted(&self, _id: MsgId) -> Ticket {
        Ticket::ready()
    }
    fn carrier_accepted(&self, _id: MsgId, _carrier: &str, _carrier_msg_id: &str) {}
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
    fn is_durable(&self) -> bool {
        false
    }
    fn name(&self) -> &'static str {
        "memory"
    }
}

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
            fields: Default::default(),
            class: Class::Otp,
            accepted_ms: 0,
            deadline_ms: 0,
            attempts: Default::default(),
        };
        s.accept(&m).await.unwrap();
        s.finished(m.id, DeliveryState::Delivered, None, 0);
        s.receipt_forwarded(m.id);
        assert_eq!(s.counts(), (1, 1, 1));
        assert!(!s.is_durable());
    }
}
