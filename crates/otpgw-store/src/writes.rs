//! The writes a durable backend's writer applies in batches, and the [`Store`]
//! calls that queue them: the embedded and the Redis store share both and differ
//! only in how a batch is written.
//!
//! [`Store`]: otpgw_core::Store

use std::sync::atomic::{AtomicUsize, Ordering};

use otpgw_core::outbox::ReceiptJob;
use otpgw_core::store::{StoreError, StoreFuture, Ticket};
use otpgw_core::{DeliveryState, Message, MsgId};
use tokio::sync::oneshot;

use crate::record::{self, CarrierState};

/// One write for the writer.
pub(crate) enum Op {
    Accept {
        id: u64,
        rec: Vec<u8>,
        done: oneshot::Sender<bool>,
    },
    Sent(u64, oneshot::Sender<bool>),
    Confirmed(u64, Vec<u8>),
    Finished {
        id: u64,
        state: u8,
        /// The receipt owed to the brand: (finished at, record).
        receipt: Option<(u64, Vec<u8>)>,
        now_ms: u64,
        done: oneshot::Sender<bool>,
    },
    Forwarded(u64),
    Flush(oneshot::Sender<bool>),
    /// Redis only: a receipt this node could not match, for the other nodes (boxed:
    /// rare, and it would make every write as large as itself).
    Publish {
        published: Box<(String, otpgw_proto::pdu::CarrierReceipt)>,
        done: oneshot::Sender<bool>,
    },
    /// Embedded only: the writer thread ends.
    Stop,
}

/// Where a backend's writes go (its writer's channel); `false`: the writer is gone.
pub(crate) trait Queue {
    fn put(&self, op: Op) -> bool;
}

impl Queue for std::sync::mpsc::Sender<Op> {
    fn put(&self, op: Op) -> bool {
        self.send(op).is_ok()
    }
}

impl Queue for tokio::sync::mpsc::UnboundedSender<Op> {
    fn put(&self, op: Op) -> bool {
        self.send(op).is_ok()
    }
}

/// Refuse at once when `max` accepts already wait (the brand gets a temporary
/// error), else queue the message and resolve with the writer's answer (`failed`
/// names a failed write).
pub(crate) fn accept<'a>(
    q: &impl Queue,
    pending: &AtomicUsize,
    max: usize,
    msg: &Message,
    failed: &'static str,
) -> StoreFuture<'a, ()> {
    if pending.load(Ordering::Relaxed) >= max {
        metrics::counter!("otpgw_store_busy_total").increment(1);
        return Box::pin(std::future::ready(Err(StoreError::Busy)));
    }
    let (done, rx) = oneshot::channel();
    pending.fetch_add(1, Ordering::Relaxed);
    let op = Op::Accept {
        id: msg.id.0,
        rec: record::encode_message(msg),
        done,
    };
    if !q.put(op) {
        pending.fetch_sub(1, Ordering::Relaxed);
        return Box::pin(std::future::ready(Err(StoreError::Closed)));
    }
    Box::pin(async move {
        match rx.await {
            Ok(true) => Ok(()),
            Ok(false) => Err(StoreError::Unavailable(failed.into())),
            Err(_) => Err(StoreError::Closed),
        }
    })
}

/// A write whose ticket the writer resolves.
fn with_ticket(q: &impl Queue, op: impl FnOnce(oneshot::Sender<bool>) -> Op) -> Ticket {
    let (done, t) = Ticket::pending();
    let _ = q.put(op(done));
    t
}

pub(crate) fn submitted(q: &impl Queue, id: MsgId) -> Ticket {
    with_ticket(q, |done| Op::Sent(id.0, done))
}

pub(crate) fn carrier_accepted(q: &impl Queue, id: MsgId, carrier: &str, carrier_msg_id: &str) {
    let s = CarrierState::Confirmed {
        carrier: carrier.into(),
        carrier_id: carrier_msg_id.into(),
    };
    let _ = q.put(Op::Confirmed(id.0, record::encode_state(&s)));
}

pub(crate) fn finished(
    q: &impl Queue,
    id: MsgId,
    state: DeliveryState,
    receipt: Option<&ReceiptJob>,
    now_ms: u64,
) -> Ticket {
    let receipt = receipt.map(|j| (j.done_ms, record::encode_receipt(j)));
    with_ticket(q, |done| Op::Finished {
        id: id.0,
        state: state.tlv(),
        receipt,
        now_ms,
        done,
    })
}

pub(crate) fn forwarded(q: &impl Queue, id: MsgId) {
    let _ = q.put(Op::Forwarded(id.0));
}

pub(crate) fn flush(q: &impl Queue) -> Ticket {
    with_ticket(q, Op::Flush)
}

pub(crate) fn publish(
    q: &impl Queue,
    carrier: &str,
    r: &otpgw_proto::pdu::CarrierReceipt,
) -> Ticket {
    with_ticket(q, |done| Op::Publish {
        published: Box::new((carrier.into(), r.clone())),
        done,
    })
}
