//! [`Backlog`]: the writes a failed batch must still make, ahead of newer ones.

use std::collections::VecDeque;

use super::Op;

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
