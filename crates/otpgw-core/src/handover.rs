//! Receipts between nodes on a shared store: a receipt owed to a brand with no
//! receiver session on this node is handed to a node where the brand has one, and
//! receipts other nodes handed here go into this node's outbox. Both loops run only
//! when the store is shared ([`crate::Store::is_shared`]).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::tracker::Tracker;

/// Receipts handed over per store call.
const BATCH: usize = 500;
/// How often the outboxes are looked at for brands bound elsewhere.
const EVERY: Duration = Duration::from_millis(250);

/// Start both loops (nothing when the store is not shared); they end with `stop`.
pub fn spawn(tracker: Arc<Tracker>, stop: CancellationToken) {
    let store = tracker.store().clone();
    if !store.is_shared() {
        return;
    }
    // Receipts other nodes handed over: owed to a brand bound here.
    if let Some(mut rx) = store.take_handed_receipts() {
        let (tracker, stop) = (tracker.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    j = rx.recv() => match j {
                        Some(j) => tracker.restore_receipt(j),
                        None => return,
                    },
                }
            }
        });
    }
    // Receipts for brands with no receiver here go to a node where they have one.
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        let mut jobs = Vec::new();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            for (brand, ob) in tracker.outbox().all() {
                while !ob.is_empty() && !store.brand_bound_here(&brand) {
                    jobs.clear();
                    ob.try_take(BATCH, &mut jobs);
                    match store.hand_over_receipts(&brand, &jobs).await {
                        Ok(true) => {
                            metrics::counter!("otpgw_receipts_handed_over_total")
                                .increment(jobs.len() as u64);
                        }
                        Ok(false) | Err(_) => {
                            ob.push_front(jobs.drain(..));
                            break;
                        }
                    }
                }
            }
        }
    });
}
