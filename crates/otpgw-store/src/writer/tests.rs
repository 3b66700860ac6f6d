use std::sync::atomic::AtomicUsize;

use tokio::sync::oneshot;

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
    let (tx, rx) = flume::unbounded();
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

/// A flush of an idle store is answered without a commit; behind writes it is
/// part of their batch.
#[test]
fn a_flush_alone_needs_no_commit() {
    let (tx, rx) = flume::unbounded();
    let mut backlog = Backlog::default();
    let mut batch = Vec::new();
    let w = std::time::Duration::from_millis(1);
    let (done, mut done_rx) = oneshot::channel();
    tx.send(Op::Flush(done)).unwrap();
    next_batch(&rx, &mut backlog, w, 100, w, &mut batch).unwrap();
    assert!(batch.is_empty(), "nothing to write");
    assert!(matches!(done_rx.try_recv(), Ok(true)), "answered at once");
    let (done, _done_rx) = oneshot::channel();
    tx.send(Op::Forwarded(1)).unwrap();
    tx.send(Op::Flush(done)).unwrap();
    next_batch(&rx, &mut backlog, w, 100, w, &mut batch).unwrap();
    assert_eq!(batch.len(), 2, "the flush waits for the write before it");
}
