//! Recovery: what the previous run left (at start) and what a dead node left
//! (claimed at run time) are taken on by one function, [`adopt`]:
//! - messages a carrier confirmed wait for their receipt again: their carrier ids go
//!   back into that carrier's matcher;
//! - OTPs under a receipt deadline come back with their attempts: their carrier ids
//!   go back into the matchers, and the attempts decide at once what is next;
//! - messages no carrier confirmed are queued again with their remaining validity,
//!   or finished as EXPIRED when it ran out;
//! - receipts owed to brands go back into their outboxes; those written to a brand
//!   session before (their acknowledgement not recorded) are counted as possibly
//!   delivered twice (`otpgw_receipts_possibly_redelivered_total`).

use std::sync::Arc;

use otpgw_carrier::CarrierState;
use otpgw_core::attempts::Attempt;
use otpgw_core::store::Recovered;
use otpgw_core::tracker::Tracker;
use otpgw_core::{DeliveryState, Message};
use otpgw_dispatch::Dispatcher;

/// What recovery found.
#[derive(Debug, Default, Clone, Copy)]
pub struct RecoverySummary {
    /// Unconfirmed messages queued again.
    pub requeued: usize,
    /// Of those, how many may already have reached a carrier (possible duplicates).
    pub possibly_sent: usize,
    /// Confirmed by a carrier, waiting for their receipt again.
    pub awaiting_receipt: usize,
    /// Past their deadline: finished as EXPIRED, never sent.
    pub expired: usize,
    /// Receipts owed to brands, queued again.
    pub receipts: usize,
    /// Of those, how many had been written to a brand session already (its
    /// acknowledgement was not recorded): the brand may get them twice.
    pub receipts_possibly_redelivered: usize,
    /// With no route any more: finished as UNDELIVERABLE.
    pub unroutable: usize,
}

impl RecoverySummary {
    /// Whether nothing was taken on.
    pub fn is_empty(&self) -> bool {
        self.requeued == 0
            && self.awaiting_receipt == 0
            && self.expired == 0
            && self.receipts == 0
            && self.unroutable == 0
    }
}

/// Take on `rec` (see the module docs). `carriers` are this node's carriers (their
/// binds may not be started yet: at start they are not, so that no receipt comes
/// before its carrier id is known).
pub fn adopt(
    rec: Recovered,
    tracker: &Tracker,
    dispatcher: &Dispatcher,
    carriers: &[Arc<CarrierState>],
    now: u64,
) -> RecoverySummary {
    let mut summary = RecoverySummary::default();
    let carrier = |name: &str| carriers.iter().find(|c| *c.name == *name);
    for (m, name, cid) in rec.confirmed {
        match carrier(&name) {
            Some(c) => c.matcher.lock().preload(&cid, m.id),
            None => {
                tracing::warn!(carrier = %name, id = %m.id, "message confirmed by a carrier not configured here; its receipt cannot arrive")
            }
        }
        // At a carrier: never cancellable.
        m.progress.lock().claimed = true;
        tracker.insert(Arc::new(m));
        summary.awaiting_receipt += 1;
    }
    for (m, list) in rec.attempts {
        adopt_attempts(tracker, &carrier, m, list, now);
        summary.awaiting_receipt += 1;
    }
    for (m, sent) in rec.unconfirmed {
        // Possibly at a carrier: not cancellable.
        m.progress.lock().claimed = sent;
        let m = Arc::new(m);
        tracker.insert(m.clone());
        if m.deadline_ms <= now {
            tracker.finish(m.id, DeliveryState::Expired, None, now);
            summary.expired += 1;
            continue;
        }
        if dispatcher.requeue(m.clone(), now) {
            summary.requeued += 1;
            summary.possibly_sent += usize::from(sent);
        } else {
            tracing::warn!(id = %m.id, "recovered message has no route any more");
            tracker.finish(m.id, DeliveryState::Undeliverable, Some("RTE"), now);
            summary.unroutable += 1;
        }
    }
    metrics::counter!("otpgw_recovered_possible_duplicates_total")
        .increment(summary.possibly_sent as u64);
    for j in rec.receipts {
        summary.receipts_possibly_redelivered += usize::from(j.sent);
        tracker.restore_receipt(j);
        summary.receipts += 1;
    }
    metrics::counter!("otpgw_receipts_possibly_redelivered_total")
        .increment(summary.receipts_possibly_redelivered as u64);
    summary
}

/// An OTP recovered with its attempts: their carrier ids go back into their
/// carriers' matchers, and the attempts decide at once what is next.
fn adopt_attempts<'a>(
    tracker: &Tracker,
    carrier: &impl Fn(&str) -> Option<&'a Arc<CarrierState>>,
    m: Message,
    list: Vec<Attempt>,
    now: u64,
) {
    // Sent at least once: never cancellable.
    m.progress.lock().claimed = true;
    for a in list.iter().filter(|a| !a.carrier_id.is_empty()) {
        match carrier(&a.carrier) {
            Some(c) => c.matcher.lock().preload(&a.carrier_id, m.id),
            None => {
                tracing::warn!(carrier = %a.carrier, id = %m.id, "attempt confirmed by a carrier not configured here")
            }
        }
    }
    let carrier_timeout = list
        .first()
        .and_then(|a| carrier(&a.carrier))
        .and_then(|c| c.cfg.receipt_timeout)
        .map(|t| t.as_millis() as u64);
    // Policies may have changed since: without a timeout now, keep the last one
    // known (its due times are in the attempts) and spend no more.
    let (timeout, max) = tracker
        .assure()
        .watch(&m, carrier_timeout)
        .unwrap_or((15_000, list.len().max(1) as u8));
    tracker.restore_attempts(Arc::new(m), list, timeout, max, now);
}
