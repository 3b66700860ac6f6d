//! [`Op`]: one write for the writer.

use otpgw_core::store::Once;
use tokio::sync::oneshot;

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
