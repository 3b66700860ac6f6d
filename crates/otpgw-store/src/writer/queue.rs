//! [`WriteQueue`]: where a durable store's calls put their writes, every record
//! encoded by the store's codec on the way, and the admission of accepts (see the
//! module docs of [`crate::writer`]). [`Writes`] is the receiving end a backend's
//! writer takes them from.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use otpgw_core::attempts::Attempt;
use otpgw_core::outbox::ReceiptJob;
use otpgw_core::status::{MessageStatus, Stage};
use otpgw_core::store::{Once, StoreError, StoreFuture, Ticket};
use otpgw_core::{DeliveryState, Message, MsgId};
use tokio::sync::oneshot;

use super::Op;
use crate::codec::Codec;
use crate::record::SendState;

/// See the module docs.
pub(crate) struct WriteQueue {
    tx: flume::Sender<Op>,
    /// Accepts waiting for their batch.
    pending: Arc<AtomicUsize>,
    max_pending: usize,
    /// How a failed write is reported ("commit failed", "redis write failed", ...).
    failed: &'static str,
    pub(crate) codec: Arc<Codec>,
    /// Per brand, how much sooner its final statuses are purged (see
    /// [`otpgw_core::MessageLog::set_status_retention`]): their age is counted
    /// from that much before they finished.
    pub(crate) status_sooner: parking_lot::RwLock<std::collections::HashMap<Arc<str>, u64>>,
}

/// The writer's end of a [`WriteQueue`].
pub(crate) struct Writes {
    pub rx: flume::Receiver<Op>,
    /// Accepts waiting for their batch ([`super::answer`] counts them down).
    pub pending: Arc<AtomicUsize>,
}

impl WriteQueue {
    /// A queue and its writer's end: at most `max_pending` accepts wait at once;
    /// `failed` names a failed write to the callers.
    pub(crate) fn new(
        max_pending: usize,
        failed: &'static str,
        codec: Arc<Codec>,
    ) -> (Self, Writes) {
        let (tx, rx) = flume::unbounded();
        let pending = Arc::new(AtomicUsize::new(0));
        let q = Self {
            tx,
            pending: pending.clone(),
            max_pending,
            failed,
            codec,
            status_sooner: Default::default(),
        };
        (q, Writes { rx, pending })
    }

    /// Queue `op`; `false`: the writer is gone.
    pub(crate) fn put(&self, op: Op) -> bool {
        self.tx.send(op).is_ok()
    }

    /// A write whose ticket the writer resolves.
    fn with_ticket(&self, op: impl FnOnce(oneshot::Sender<bool>) -> Op) -> Ticket {
        let (done, t) = Ticket::pending();
        let _ = self.put(op(done));
        t
    }

    /// Refuse at once when `max_pending` accepts already wait (the brand gets a
    /// temporary error), else queue the message and resolve with the writer's
    /// answer.
    pub(crate) fn accept<'a>(&self, msg: &Message) -> StoreFuture<'a, ()> {
        let f = self.accept_once(msg, None);
        Box::pin(async move { f.await.map(|_| ()) })
    }

    /// [`WriteQueue::accept`] with an idempotency key (key, value, expiry) stored in
    /// the same write.
    pub(crate) fn accept_once<'a>(
        &self,
        msg: &Message,
        once: Option<(String, Vec<u8>, u64)>,
    ) -> StoreFuture<'a, Once> {
        if self.pending.load(Ordering::Relaxed) >= self.max_pending {
            metrics::counter!("otpgw_store_busy_total").increment(1);
            return Box::pin(std::future::ready(Err(StoreError::Busy)));
        }
        let (done, rx) = oneshot::channel();
        self.pending.fetch_add(1, Ordering::Relaxed);
        let key = once.as_ref().map(|(k, _, _)| k.clone());
        let once = once.map(|(key, value, expires)| {
            let value = self.codec.value(&key, value);
            Box::new((key, value, expires))
        });
        let op = Op::Accept {
            id: msg.id.0,
            rec: self.codec.message(msg),
            once,
            done,
        };
        if !self.put(op) {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            return Box::pin(std::future::ready(Err(StoreError::Closed)));
        }
        let (failed, codec) = (self.failed, self.codec.clone());
        Box::pin(async move {
            match rx.await {
                // The value found under the key, as the codec kept it.
                Ok(Some(Once::Duplicate(kept))) => match key.as_deref() {
                    Some(k) => codec.read_value(k, &kept).map(Once::Duplicate),
                    None => Err(StoreError::Corrupt(
                        "an idempotency record without a key".into(),
                    )),
                },
                Ok(Some(o)) => Ok(o),
                Ok(None) => Err(StoreError::Unavailable(failed.into())),
                Err(_) => Err(StoreError::Closed),
            }
        })
    }

    /// Queue a message status (final, or with `in_flight` its acceptance too: stores
    /// several nodes share answer other nodes' queries from it).
    pub(crate) fn status(&self, s: &MessageStatus) {
        let done_ms = match s.stage {
            Stage::Done(_) => {
                let sooner = self.status_sooner.read().get(&s.brand).copied();
                s.done_ms.saturating_sub(sooner.unwrap_or(0)).max(1)
            }
            _ => 0,
        };
        let _ = self.put(Op::Status {
            id: s.id.0,
            rec: self.codec.status(s),
            done_ms,
        });
    }

    /// Queue a compare-and-set of the key-value space.
    pub(crate) fn kv_put<'a>(
        &self,
        key: &str,
        expect: u64,
        value: Vec<u8>,
        expires_ms: u64,
    ) -> StoreFuture<'a, Option<u64>> {
        let (done, rx) = oneshot::channel();
        let op = Op::Kv {
            kv: Box::new((key.to_string(), self.codec.value(key, value))),
            expect,
            expires_ms,
            done,
        };
        if !self.put(op) {
            return Box::pin(std::future::ready(Err(StoreError::Closed)));
        }
        let failed = self.failed;
        Box::pin(async move {
            match rx.await {
                Ok(Some(v)) => Ok(v),
                Ok(None) => Err(StoreError::Unavailable(failed.into())),
                Err(_) => Err(StoreError::Closed),
            }
        })
    }

    pub(crate) fn submitted(&self, id: MsgId) -> Ticket {
        self.with_ticket(|done| Op::Sent(id.0, done))
    }

    pub(crate) fn carrier_accepted(&self, id: MsgId, carrier: &str, carrier_msg_id: &str) {
        let s = SendState::Confirmed {
            carrier: carrier.into(),
            carrier_id: carrier_msg_id.into(),
        };
        let _ = self.put(Op::Confirmed(id.0, self.codec.state(id, &s)));
    }

    pub(crate) fn finished(
        &self,
        id: MsgId,
        state: DeliveryState,
        receipt: Option<&ReceiptJob>,
        now_ms: u64,
    ) -> Ticket {
        let receipt = receipt.map(|j| (j.done_ms, self.codec.receipt(j)));
        self.with_ticket(|done| Op::Finished {
            id: id.0,
            state: state.tlv(),
            receipt,
            now_ms,
            done,
        })
    }

    pub(crate) fn attempts(&self, id: MsgId, list: &[Attempt]) -> Ticket {
        let rec = self.codec.attempts(id, list);
        self.with_ticket(|done| Op::Attempts(id.0, rec, done))
    }

    pub(crate) fn owe(&self, job: &ReceiptJob) {
        let _ = self.put(Op::Owe(job.id.0, job.done_ms, self.codec.receipt(job)));
    }

    pub(crate) fn forwarded(&self, id: MsgId) {
        let _ = self.put(Op::Forwarded(id.0));
    }

    pub(crate) fn flush(&self) -> Ticket {
        self.with_ticket(Op::Flush)
    }

    pub(crate) fn publish(&self, carrier: &str, r: &otpgw_proto::pdu::CarrierReceipt) -> Ticket {
        self.with_ticket(|done| Op::Publish {
            published: Box::new((carrier.into(), r.clone())),
            done,
        })
    }

    /// Ask the writer to stop after what is queued (the embedded and log writer
    /// threads).
    pub(crate) fn stop(&self) {
        let _ = self.put(Op::Stop);
    }
}
