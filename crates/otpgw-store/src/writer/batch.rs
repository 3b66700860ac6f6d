//! Batches: what a writer takes from its queue at a time, and how a written batch
//! answers its waiters.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use otpgw_core::store::Once;

use super::{Backlog, Op};

/// The next batch for a writer thread: the backlog first (then nothing newer may
/// join the batch unless the backlog fits whole), else `first` and what arrives
/// within `window`. Waits up to `idle` for a first write (less while a backlog
/// waits). `Err(())`: the channel closed and nothing is left.
pub(crate) fn next_batch(
    rx: &flume::Receiver<Op>,
    backlog: &mut Backlog,
    window: Duration,
    max: usize,
    idle: Duration,
    batch: &mut Vec<Op>,
) -> Result<(), ()> {
    use flume::RecvTimeoutError;
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
        settle_bare_flushes(batch);
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

/// A batch of nothing but flushes, with no backlog, has nothing to make durable:
/// every write before them is already written. They are answered at once and the
/// batch left empty, so a flush of an idle store costs no commit.
fn settle_bare_flushes(batch: &mut Vec<Op>) {
    if batch.is_empty() || !batch.iter().all(|op| matches!(op, Op::Flush(_))) {
        return;
    }
    for op in batch.drain(..) {
        if let Op::Flush(done) = op {
            let _ = done.send(true);
        }
    }
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
pub(super) fn gather(
    rx: &flume::Receiver<Op>,
    first: Op,
    window: Duration,
    max: usize,
    batch: &mut Vec<Op>,
) {
    use flume::TryRecvError;
    batch.push(first);
    let deadline = Instant::now() + window;
    while batch.len() < max {
        match rx.try_recv() {
            Ok(op) => batch.push(op),
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => {
                let now = Instant::now();
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
