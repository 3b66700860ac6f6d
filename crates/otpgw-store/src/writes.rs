//! The writes a durable backend's writer applies in batches, and the [`Store`]
//! calls that queue them: the embedded and the Redis store share both and differ
//! only in how a batch is written.
//!
//! [`Store`]: otpgw_core::Store

use std::sync::atomic::{AtomicUsize, Ordering};

use otpgw_core::outbox::ReceiptJob;
use otpgw_core::status::{MessageStatus, Stage};
use otpgw_core::store::{Once, StoreError, StoreFuture, Ticket};
use otpgw_core::{DeliveryState, Message, MsgId};
use tokio::sync::oneshot;

use crate::record::{self, CarrierState};

/// One write for the writer.
pub(crate) enum Op {
    Accept {
        id: u64,
        rec: Vec<u8>,
        /// An idempotency key stored with the message: (key, value, expires_ms); when
        /// the key exists, nothing is stored.
        once: Option<Box<(String, Vec<u8>, u64)>>,
        /// `None`: the write failed.
        done: oneshot::Sender<Option<Once>>,
    },
    /// A message's status: (id, record, final: when it reached its final state).
    Status {
        id: u64,
        rec: Vec<u8>,
        done_ms: u64,
    },
    /// Compare and set in the key-value space (see `Store::kv_put`); answers the new
    /// version, `Some(None)` on a conflict, `None` when the write failed.
    Kv {
        kv: Box<(String, Vec<u8>)>,
        expect: u64,
        expires_ms: u64,
        done: oneshot::Sender<Option<Option<u64>>>,
    },
    Sent(u64, oneshot::Sender<bool>),
    Confirmed(u64, Vec<u8>),
    /// An OTP's attempts (replacing its carrier state).
    Attempts(u64, Vec<u8>, oneshot::Sender<bool>),
    /// A job owed to a brand that is not a receipt (a fallback event): (id, due
    /// since, record).
    Owe(u64, u64, Vec<u8>),
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

/// What a write of a batch answers besides success.
pub(crate) enum Answer {
    None,
    /// An accept whose idempotency key existed: its value.
    Duplicate(Vec<u8>),
    /// A compare-and-set: the new version, or `None` on a conflict.
    Version(Option<u64>),
}

/// Gather a batch for a writer thread: `first`, then whatever else arrives within
/// `window` (at most `max` writes).
pub(crate) fn gather(
    rx: &std::sync::mpsc::Receiver<Op>,
    first: Op,
    window: std::time::Duration,
    max: usize,
    batch: &mut Vec<Op>,
) {
    use std::sync::mpsc::TryRecvError;
    batch.push(first);
    let deadline = std::time::Instant::now() + window;
    while batch.len() < max {
        match rx.try_recv() {
            Ok(op) => batch.push(op),
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => {
                let now = std::time::Instant::now();
                if now >= deadline {
                    break;
                }
                match rx.recv_timeout(deadline - now) {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
        }
    }
}

/// Resolve the waiters of a batch a writer thread wrote (`ok`) with the answers
/// it gave (by position in the batch), and empty it; `true` when it asked the
/// writer to stop.
pub(crate) fn answer(
    batch: &mut Vec<Op>,
    ok: bool,
    mut answers: Vec<(usize, Answer)>,
    pending: &AtomicUsize,
) -> bool {
    let mut take = |i: usize| {
        answers
            .iter_mut()
            .find(|(j, _)| *j == i)
            .map(|(_, a)| std::mem::replace(a, Answer::None))
            .unwrap_or(Answer::None)
    };
    let mut stop = false;
    for (i, op) in batch.drain(..).enumerate() {
        match op {
            Op::Accept { done, .. } => {
                pending.fetch_sub(1, Ordering::Relaxed);
                let once = match take(i) {
                    Answer::Duplicate(v) => Once::Duplicate(v),
                    _ => Once::Accepted,
                };
                let _ = done.send(ok.then_some(once));
            }
            Op::Kv { done, .. } => {
                let v = match take(i) {
                    Answer::Version(v) => v,
                    _ => None,
                };
                let _ = done.send(ok.then_some(v));
            }
            Op::Finished { done, .. }
            | Op::Flush(done)
            | Op::Sent(_, done)
            | Op::Attempts(_, _, done)
            | Op::Publish { done, .. } => {
                let _ = done.send(ok);
            }
            Op::Stop => stop = true,
            Op::Confirmed(..) | Op::Owe(..) | Op::Forwarded(_) | Op::Status { .. } => {}
        }
    }
    stop
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
    let f = accept_once(q, pending, max, msg, None, failed);
    Box::pin(async move { f.await.map(|_| ()) })
}

/// [`accept`] with an idempotency key stored in the same write.
pub(crate) fn accept_once<'a>(
    q: &impl Queue,
    pending: &AtomicUsize,
    max: usize,
    msg: &Message,
    once: Option<(String, Vec<u8>, u64)>,
    failed: &'static str,
) -> StoreFuture<'a, Once> {
    if pending.load(Ordering::Relaxed) >= max {
        metrics::counter!("otpgw_store_busy_total").increment(1);
        return Box::pin(std::future::ready(Err(StoreError::Busy)));
    }
    let (done, rx) = oneshot::channel();
    pending.fetch_add(1, Ordering::Relaxed);
    let op = Op::Accept {
        id: msg.id.0,
        rec: record::encode_message(msg),
        once: once.map(Box::new),
        done,
    };
    if !q.put(op) {
        pending.fetch_sub(1, Ordering::Relaxed);
        return Box::pin(std::future::ready(Err(StoreError::Closed)));
    }
    Box::pin(async move {
        match rx.await {
            Ok(Some(o)) => Ok(o),
            Ok(None) => Err(StoreError::Unavailable(failed.into())),
            Err(_) => Err(StoreError::Closed),
        }
    })
}

/// Queue a message status.
pub(crate) fn status(q: &impl Queue, s: &MessageStatus) {
    let done_ms = match s.stage {
        Stage::Done(_) => s.done_ms,
        _ => 0,
    };
    let _ = q.put(Op::Status {
        id: s.id.0,
        rec: record::encode_status(s),
        done_ms,
    });
}

/// Queue a compare-and-set of the key-value space.
pub(crate) fn kv_put<'a>(
    q: &impl Queue,
    key: &str,
    expect: u64,
    value: Vec<u8>,
    expires_ms: u64,
    failed: &'static str,
) -> StoreFuture<'a, Option<u64>> {
    let (done, rx) = oneshot::channel();
    let op = Op::Kv {
        kv: Box::new((key.to_string(), value)),
        expect,
        expires_ms,
        done,
    };
    if !q.put(op) {
        return Box::pin(std::future::ready(Err(StoreError::Closed)));
    }
    Box::pin(async move {
        match rx.await {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(StoreError::Unavailable(failed.into())),
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

pub(crate) fn attempts(
    q: &impl Queue,
    id: MsgId,
    list: &[otpgw_core::attempts::Attempt],
) -> Ticket {
    let rec = record::encode_attempts(list);
    with_ticket(q, |done| Op::Attempts(id.0, rec, done))
}

pub(crate) fn owe(q: &impl Queue, job: &ReceiptJob) {
    let _ = q.put(Op::Owe(job.id.0, job.done_ms, record::encode_receipt(job)));
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
