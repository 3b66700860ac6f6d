//! The writes a durable backend's writer applies in batches, and the [`Store`]
//! calls that queue them: the embedded and the Redis store share both and differ
//! only in how a batch is written.
//!
//! [`Store`]: otpgw_core::Store

use std::collections::VecDeque;
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

impl Op {
    /// A copy to write again after its batch failed, without a waiter (whoever
    /// waited was told of the failure). Writes that can be applied twice in their
    /// order: statuses, carrier states, attempts, owed jobs, finishes, forwarded
    /// marks. Not accepts, compare-and-sets or publications: their callers were
    /// refused and act on it (a brand sends again, a carrier receipt is not
    /// acknowledged and comes again).
    pub(crate) fn replay_copy(&self) -> Option<Op> {
        let dead = || oneshot::channel().0;
        Some(match self {
            Op::Status { id, rec, done_ms } => Op::Status {
                id: *id,
                rec: rec.clone(),
                done_ms: *done_ms,
            },
            Op::Sent(id, _) => Op::Sent(*id, dead()),
            Op::Confirmed(id, st) => Op::Confirmed(*id, st.clone()),
            Op::Attempts(id, st, _) => Op::Attempts(*id, st.clone(), dead()),
            Op::Owe(id, at, rec) => Op::Owe(*id, *at, rec.clone()),
            Op::Finished {
                id,
                state,
                receipt,
                now_ms,
                ..
            } => Op::Finished {
                id: *id,
                state: *state,
                receipt: receipt.clone(),
                now_ms: *now_ms,
                done: dead(),
            },
            Op::Forwarded(id) => Op::Forwarded(*id),
            Op::Accept { .. } | Op::Kv { .. } | Op::Publish { .. } | Op::Flush(_) | Op::Stop => {
                return None;
            }
        })
    }
}

/// Writes still to be made, in order, ahead of anything newer: those a failed
/// batch carried (see [`Op::replay_copy`]) and, behind them, whatever the writer
/// took from its channel meanwhile. A full disk or an unreachable Redis must not
/// silently forget that a receipt was forwarded or a message confirmed: the next
/// run would send them again. Bounded: past [`Backlog::MAX`] the oldest go,
/// counted in `otpgw_store_writes_dropped_total`.
#[derive(Default)]
pub(crate) struct Backlog {
    ops: VecDeque<Op>,
}

impl Backlog {
    pub(crate) const MAX: usize = 200_000;
    /// How often a writer with a backlog tries again when nothing new arrives.
    pub(crate) const RETRY_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

    pub(crate) fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.ops.len()
    }

    /// Queue `op` behind the rest (a new write: it is answered when its batch is
    /// written, so these never pile up beyond what the channel brings).
    pub(crate) fn push(&mut self, op: Op) {
        self.ops.push_back(op);
    }

    /// Keep what a failed batch must still write (its waiters were answered), in
    /// front of the rest: they are older. Past [`Self::MAX`] the oldest copies go.
    pub(crate) fn keep_failed(&mut self, batch: &[Op]) {
        let again: Vec<Op> = batch.iter().filter_map(Op::replay_copy).collect();
        let over = (self.ops.len() + again.len()).saturating_sub(Self::MAX);
        let dropped = over.min(again.len());
        if dropped > 0 {
            metrics::counter!("otpgw_store_writes_dropped_total").increment(dropped as u64);
        }
        for op in again.into_iter().skip(dropped).rev() {
            self.ops.push_front(op);
        }
    }

    /// Keep what a batch must (still) write behind the rest: a Redis pipeline sent
    /// after one that failed (written again so that the order holds).
    pub(crate) fn keep_behind(&mut self, batch: &[Op]) {
        for op in batch.iter().filter_map(Op::replay_copy) {
            if self.ops.len() >= Self::MAX {
                metrics::counter!("otpgw_store_writes_dropped_total").increment(1);
                continue;
            }
            self.ops.push_back(op);
        }
    }

    /// Move up to `max` of the oldest into `batch`.
    pub(crate) fn take(&mut self, max: usize, batch: &mut Vec<Op>) {
        let n = max.min(self.ops.len());
        batch.extend(self.ops.drain(..n));
    }
}

/// The next batch for a writer thread: the backlog first (then nothing newer may
/// join the batch unless the backlog fits whole), else `first` and what arrives
/// within `window`. Waits up to `idle` for a first write (less while a backlog
/// waits). `Err(())`: the channel closed and nothing is left.
pub(crate) fn next_batch(
    rx: &std::sync::mpsc::Receiver<Op>,
    backlog: &mut Backlog,
    window: std::time::Duration,
    max: usize,
    idle: std::time::Duration,
    batch: &mut Vec<Op>,
) -> Result<(), ()> {
    use std::sync::mpsc::RecvTimeoutError;
    let wait = if backlog.is_empty() {
        idle
    } else {
        idle.min(Backlog::RETRY_EVERY)
    };
    let first = match rx.recv_timeout(wait) {
        Ok(op) => Some(op),
        Err(RecvTimeoutError::Timeout) => None,
        Err(RecvTimeoutError::Disconnected) if backlog.is_empty() => return Err(()),
        Err(RecvTimeoutError::Disconnected) => None,
    };
    if backlog.is_empty() {
        if let Some(op) = first {
            gather(rx, op, window, max, batch);
        }
        return Ok(());
    }
    if let Some(op) = first {
        backlog.push(op);
    }
    backlog.take(max, batch);
    if backlog.is_empty() && batch.len() < max {
        while batch.len() < max {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
    }
    Ok(())
}

/// Log a failed batch, at most once a second with the number left unsaid since (a
/// full disk fails every batch; the metric counts each).
pub(crate) fn log_failed(what: &'static str, e: &dyn std::fmt::Display, ops: usize) {
    use std::sync::atomic::AtomicU64;
    static LAST: AtomicU64 = AtomicU64::new(0);
    static QUIET: AtomicU64 = AtomicU64::new(0);
    let now = otpgw_core::clock::now_ms();
    let last = LAST.load(Ordering::Relaxed);
    if now >= last + 1000
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        let quiet = QUIET.swap(0, Ordering::Relaxed);
        tracing::error!(error = %e, ops, failed_since_last_line = quiet, "{what}");
    } else {
        QUIET.fetch_add(1, Ordering::Relaxed);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn id_of(op: &Op) -> (char, u64) {
        match op {
            Op::Confirmed(id, _) => ('c', *id),
            Op::Forwarded(id) => ('f', *id),
            Op::Finished { id, .. } => ('x', *id),
            Op::Accept { id, .. } => ('a', *id),
            Op::Sent(id, _) => ('s', *id),
            _ => ('?', 0),
        }
    }

    fn finished(id: u64) -> (Op, oneshot::Receiver<bool>) {
        let (done, rx) = oneshot::channel();
        let op = Op::Finished {
            id,
            state: 2,
            receipt: Some((5, vec![1, 2])),
            now_ms: 5,
            done,
        };
        (op, rx)
    }

    /// A failed batch's writes without a caller to act on the failure are kept and
    /// come first in the next batch, ahead of newer writes, in their order; its
    /// waiters hear of the failure and accepts are not written again.
    #[test]
    fn a_failed_batch_is_written_again_first_and_in_order() {
        let (tx, rx) = std::sync::mpsc::channel();
        let pending = AtomicUsize::new(1);
        let (fin, fin_rx) = finished(3);
        let (acc_done, mut acc_rx) = oneshot::channel();
        let mut batch = vec![
            Op::Confirmed(1, vec![9]),
            Op::Accept {
                id: 2,
                rec: vec![],
                once: None,
                done: acc_done,
            },
            fin,
            Op::Forwarded(4),
        ];
        let mut backlog = Backlog::default();
        backlog.keep_failed(&batch);
        assert!(!answer(&mut batch, false, Vec::new(), &pending));
        assert_eq!(fin_rx.blocking_recv(), Ok(false), "the waiter hears of it");
        assert!(
            matches!(acc_rx.try_recv(), Ok(None)),
            "the accept is refused"
        );
        assert_eq!(backlog.len(), 3, "the accept is not kept");

        // Newer writes wait behind the backlog.
        tx.send(Op::Forwarded(3)).unwrap();
        tx.send(Op::Confirmed(5, vec![1])).unwrap();
        let w = std::time::Duration::from_millis(1);
        next_batch(&rx, &mut backlog, w, 100, w, &mut batch).unwrap();
        let got: Vec<_> = batch.iter().map(id_of).collect();
        assert_eq!(
            got,
            vec![('c', 1), ('x', 3), ('f', 4), ('f', 3), ('c', 5)],
            "the failed writes first, in order, then the newer"
        );
        assert!(backlog.is_empty());

        // A backlog larger than a batch: nothing newer joins until it is gone.
        batch.clear();
        for i in 0..5 {
            backlog.push(Op::Forwarded(i));
        }
        tx.send(Op::Forwarded(99)).unwrap();
        next_batch(&rx, &mut backlog, w, 3, w, &mut batch).unwrap();
        assert_eq!(
            batch.iter().map(id_of).collect::<Vec<_>>(),
            vec![('f', 0), ('f', 1), ('f', 2)]
        );
        batch.clear();
        next_batch(&rx, &mut backlog, w, 3, w, &mut batch).unwrap();
        assert_eq!(
            batch.iter().map(id_of).collect::<Vec<_>>(),
            vec![('f', 3), ('f', 4), ('f', 99)]
        );
    }

    /// Past its bound the backlog drops the oldest copies, counted, never a write
    /// someone waits for.
    #[test]
    fn the_backlog_is_bounded() {
        let mut backlog = Backlog::default();
        let (acc_done, _acc_rx) = oneshot::channel();
        backlog.push(Op::Accept {
            id: 1,
            rec: vec![],
            once: None,
            done: acc_done,
        });
        let many: Vec<Op> = (0..Backlog::MAX as u64 + 10).map(Op::Forwarded).collect();
        backlog.keep_failed(&many);
        assert_eq!(backlog.len(), Backlog::MAX);
        let mut batch = Vec::new();
        backlog.take(Backlog::MAX, &mut batch);
        assert_eq!(id_of(&batch[0]), ('f', 10 + 1), "the oldest copies went");
        assert_eq!(id_of(batch.last().unwrap()), ('a', 1), "the accept stays");
    }
}
