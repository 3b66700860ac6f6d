//! Receipts between nodes on a shared store: a receipt another node could not match
//! (it did not send the message) is published for the others; this node offers each
//! one it takes to its own carriers' matchers, and tries again for a while when none
//! matches yet (the carrier's response for the message may come after its receipt).

use std::sync::Arc;

use otpgw_core::store::ForeignReceipt;
use tokio_util::sync::CancellationToken;

use crate::CarrierState;

/// Offer the receipts other nodes publish (when the store shares them) to
/// `carriers` until `stop`.
pub fn spawn(
    store: &dyn otpgw_core::Store,
    carriers: Vec<Arc<CarrierState>>,
    stop: CancellationToken,
) {
    if let Some(rx) = store.take_foreign_receipts() {
        tokio::spawn(offer(rx, carriers, stop));
    }
}

/// Offer the receipts other nodes published to this node's carriers. A receipt can
/// come before this node has the carrier's response for its message: one that
/// matches nothing is tried again after 0.1, 0.5 and 2 seconds; one with several
/// candidates (the carrier's id convention is not learned yet) every half second
/// for a minute. At most RETRY_MAX wait; beyond that a new one is not retried.
async fn offer(
    mut rx: tokio::sync::mpsc::Receiver<ForeignReceipt>,
    carriers: Vec<Arc<CarrierState>>,
    stop: CancellationToken,
) {
    use crate::matcher::Lookup;
    use std::cmp::Reverse;
    const RETRY_MAX: usize = 200_000;
    const AGAIN_MS: [u64; 3] = [100, 500, 2000];
    const AMBIGUOUS_TRIES: usize = 120;
    // (when, tries so far, order of arrival) -> receipt; earliest first.
    let mut again = std::collections::BinaryHeap::new();
    let mut waiting: std::collections::HashMap<u64, ForeignReceipt> = Default::default();
    let mut seq = 0u64;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(50));
    // When to try again after try `n` (`None`: matched, or give up).
    let offer = |f: &ForeignReceipt, n: usize| {
        let found = carriers
            .iter()
            .find(|c| c.cfg.name == f.carrier)
            .map_or(Lookup::None, |c| c.on_foreign_receipt(&f.receipt));
        let ms = match found {
            Lookup::Found(_) => {
                metrics::counter!("otpgw_receipts_from_other_nodes_total").increment(1);
                return None;
            }
            Lookup::Ambiguous if n < AMBIGUOUS_TRIES => 500,
            Lookup::None if n < AGAIN_MS.len() => AGAIN_MS[n],
            _ => return None,
        };
        Some(tokio::time::Instant::now() + std::time::Duration::from_millis(ms))
    };
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            f = rx.recv() => {
                let Some(f) = f else { return };
                if let Some(at) = offer(&f, 0)
                    && waiting.len() < RETRY_MAX
                {
                    seq += 1;
                    again.push(Reverse((at, 1usize, seq)));
                    waiting.insert(seq, f);
                }
            }
            _ = tick.tick() => {
                let now = tokio::time::Instant::now();
                while let Some(Reverse((at, n, k))) = again.peek().copied() {
                    if at > now {
                        break;
                    }
                    again.pop();
                    let Some(f) = waiting.remove(&k) else { continue };
                    if let Some(at) = offer(&f, n) {
                        again.push(Reverse((at, n + 1, k)));
                        waiting.insert(k, f);
                    }
                }
            }
        }
    }
}
