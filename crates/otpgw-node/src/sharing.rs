//! Several nodes on one store: every half lease, the work of nodes whose lease
//! lapsed is claimed and taken on like the previous run's at start
//! ([`crate::recovery::adopt`]). Receipts between nodes go their own ways below this
//! crate: `otpgw_carrier::foreign` (receipts other nodes could not match) and
//! `otpgw_core::handover` (receipts owed to brands bound elsewhere).

use std::sync::Arc;
use std::time::Duration;

use otpgw_carrier::CarrierState;
use otpgw_core::clock;
use otpgw_core::tracker::Tracker;
use otpgw_dispatch::Dispatcher;
use tokio_util::sync::CancellationToken;

use crate::recovery::adopt;

/// Claim dead nodes' work every `lease / 2` until `stop` (nothing when the store is
/// not shared).
pub fn spawn_claims(
    tracker: Arc<Tracker>,
    dispatcher: Arc<Dispatcher>,
    carriers: Vec<Arc<CarrierState>>,
    lease: Duration,
    stop: CancellationToken,
) {
    let store = tracker.store().clone();
    if !store.is_shared() {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(lease / 2);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = clock::now_ms();
            let rec = match store.claim_orphans(now).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot look for dead nodes' work");
                    continue;
                }
            };
            let summary = adopt(rec, &tracker, &dispatcher, &carriers, now);
            if summary.is_empty() {
                continue;
            }
            // Receipts for the claimed messages may have been published already.
            store.rescan_receipts();
            tracing::warn!(
                requeued = summary.requeued,
                possibly_sent = summary.possibly_sent,
                awaiting_receipt = summary.awaiting_receipt,
                expired = summary.expired,
                receipts = summary.receipts,
                receipts_possibly_redelivered = summary.receipts_possibly_redelivered,
                "took over the work of a dead node"
            );
        }
    });
}
