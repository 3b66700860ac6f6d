//! Delivery assurance, assembled: the hooks the tracker calls to send an OTP again
//! through another carrier of its route and to record carrier quality, the loop
//! that times out overdue receipts (every 100 ms), forgets carrier ids of retired
//! attempts after a grace period, and publishes carrier quality as metrics, and the
//! recovery of OTPs with attempts after a restart or a claim.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use otpgw_carrier::Shared;
use otpgw_core::assure::Sample;
use otpgw_core::attempts::Attempt;
use otpgw_core::clock::now_ms;
use otpgw_core::tracker::Tracker;
use otpgw_core::{Message, MsgId};
use otpgw_dispatch::Dispatcher;
use tokio_util::sync::CancellationToken;

/// How long a retired attempt's carrier id stays matchable (its late receipt is
/// then still recognised as late, not unmatched).
const RETIRE_GRACE_MS: u64 = 600_000;
/// Retired attempts remembered at most (beyond, the oldest are forgotten at once).
const RETIRE_MAX: usize = 1_000_000;

/// An attempt's carrier ids to forget: (when, message, carriers).
type Retired = (u64, MsgId, Vec<Arc<str>>);

/// See the module docs.
pub struct Hooks {
    dispatcher: Arc<Dispatcher>,
    carriers: Vec<Arc<Shared>>,
    retired: parking_lot::Mutex<VecDeque<Retired>>,
}

impl Hooks {
    pub fn new(dispatcher: Arc<Dispatcher>, carriers: Vec<Arc<Shared>>) -> Self {
        Self {
            dispatcher,
            carriers,
            retired: Default::default(),
        }
    }

    fn forget(&self, id: MsgId, carriers: &[Arc<str>]) {
        for c in carriers {
            if let Some(s) = self.carriers.iter().find(|s| *s.name == **c) {
                s.matcher.lock().forget(id);
            }
        }
    }

    /// Forget the carrier ids whose grace period ended.
    fn retire_due(&self, now: u64) {
        loop {
            let next = {
                let mut q = self.retired.lock();
                match q.front() {
                    Some((due, _, _)) if *due <= now => q.pop_front(),
                    _ => None,
                }
            };
            let Some((_, id, carriers)) = next else {
                return;
            };
            self.forget(id, &carriers);
        }
    }

    /// Publish carrier quality: on-time ratio and samples per carrier and country
    /// code, receipt latency p50/p90 per carrier.
    fn publish(&self, now: u64) {
        let q = self.dispatcher.quality().lock();
        let mut by: HashMap<(Arc<str>, String), (u32, u32)> = HashMap::new();
        for r in q.rows(now) {
            let cc = otpgw_core::country::calling_code(&r.prefix).to_string();
            let e = by.entry((r.carrier.clone(), cc)).or_default();
            e.0 += r.stats.within;
            e.1 += r.stats.samples;
        }
        for ((carrier, country), (within, samples)) in by {
            let ratio = if samples > 0 {
                f64::from(within) / f64::from(samples)
            } else {
                f64::NAN
            };
            metrics::gauge!("otpgw_carrier_quality_ontime_ratio", "carrier" => carrier.to_string(), "country" => country.clone())
                .set(ratio);
            metrics::gauge!("otpgw_carrier_quality_samples", "carrier" => carrier.to_string(), "country" => country)
                .set(f64::from(samples));
        }
        for c in &self.carriers {
            let s = q.stats(&c.name, None, now);
            for (quantile, v) in [("0.5", s.p50_ms), ("0.9", s.p90_ms)] {
                if let Some(ms) = v {
                    metrics::gauge!("otpgw_carrier_quality_receipt_seconds", "carrier" => c.cfg.name.clone(), "quantile" => quantile)
                        .set(ms as f64 / 1000.0);
                }
            }
        }
    }
}

impl otpgw_core::assure::Hooks for Hooks {
    fn resend(&self, msg: Arc<Message>, tried: &[Arc<str>], now_ms: u64) -> bool {
        match self
            .dispatcher
            .route_excluding(&msg.brand, &msg.fields.dest.addr, tried)
        {
            Ok(q) => {
                q.push(msg, now_ms);
                true
            }
            Err(_) => false,
        }
    }

    fn sample(&self, carrier: &str, dest: &str, sample: Sample, now_ms: u64) {
        self.dispatcher
            .quality()
            .lock()
            .record(carrier, dest, sample, now_ms);
    }

    fn retired(&self, id: MsgId, carriers: &[Arc<str>], now_ms: u64) {
        let evicted = {
            let mut q = self.retired.lock();
            q.push_back((now_ms + RETIRE_GRACE_MS, id, carriers.to_vec()));
            (q.len() > RETIRE_MAX).then(|| q.pop_front()).flatten()
        };
        if let Some((_, id, c)) = evicted {
            self.forget(id, &c);
        }
    }
}

/// Time out overdue receipts every 100 ms, forget retired carrier ids, publish
/// quality every 5 s, until `stop`.
pub fn spawn(tracker: Arc<Tracker>, hooks: Arc<Hooks>, stop: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut n = 0u64;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = now_ms();
            tracker.tick(now);
            hooks.retire_due(now);
            n += 1;
            if n.is_multiple_of(50) {
                hooks.publish(now);
            }
        }
    });
}

/// Take on OTPs recovered with their attempts: their carrier ids go back into
/// their carriers' matchers, and their attempts decide at once what is next.
/// Returns how many.
pub fn adopt(
    tracker: &Tracker,
    carriers: &[Arc<Shared>],
    recovered: Vec<(Message, Vec<Attempt>)>,
    now: u64,
) -> usize {
    let n = recovered.len();
    for (m, list) in recovered {
        for a in list.iter().filter(|a| !a.carrier_id.is_empty()) {
            match carriers.iter().find(|c| *c.name == *a.carrier) {
                Some(c) => c.matcher.lock().preload(&a.carrier_id, m.id),
                None => {
                    tracing::warn!(carrier = %a.carrier, id = %m.id, "attempt confirmed by a carrier not configured here")
                }
            }
        }
        let carrier_timeout = list
            .first()
            .and_then(|a| carriers.iter().find(|c| *c.name == *a.carrier))
            .and_then(|c| c.cfg.receipt_timeout)
            .map(|t| t.as_millis() as u64);
        // Policies may have changed since: without a timeout now, keep the last
        // one known (its due times are in the attempts) and spend no more.
        let (timeout, max) = tracker
            .assure()
            .watch(&m, carrier_timeout)
            .unwrap_or((15_000, list.len().max(1) as u8));
        tracker.restore_attempts(Arc::new(m), list, timeout, max, now);
    }
    n
}
