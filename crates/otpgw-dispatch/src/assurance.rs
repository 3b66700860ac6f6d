//! Delivery assurance, the dispatch side: the hooks through which the core's
//! attempts machine ([`otpgw_core::assure`]) resends an OTP through another carrier
//! of its route and records carrier quality, and the loop that times out overdue
//! receipts (every 100 ms) and publishes carrier quality as metrics (every 5 s).
//! A receipt's way back therefore stays below the node: the carrier bind matches
//! it, the core tracker decides, and dispatch picks the next carrier.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use otpgw_core::Message;
use otpgw_core::assure::{Hooks, Sample};
use otpgw_core::clock::Clock;
use otpgw_core::tracker::Tracker;
use tokio_util::sync::CancellationToken;

use crate::Dispatcher;

impl Hooks for Dispatcher {
    fn resend(&self, msg: Arc<Message>, tried: &[Arc<str>], now_ms: u64) -> bool {
        Dispatcher::resend(self, msg, tried, now_ms)
    }

    fn sample(&self, carrier: &str, dest: &str, sample: Sample, now_ms: u64) {
        self.quality().lock().record(carrier, dest, sample, now_ms);
    }
}

/// Publish carrier quality: on-time ratio and samples per carrier and country
/// code, receipt latency p50/p90 per carrier.
pub fn publish_quality(d: &Dispatcher, now: u64) {
    let q = d.quality().lock();
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
    for c in d.queues() {
        let s = q.stats(c.carrier(), None, now);
        for (quantile, v) in [("0.5", s.p50_ms), ("0.9", s.p90_ms)] {
            if let Some(ms) = v {
                metrics::gauge!("otpgw_carrier_quality_receipt_seconds", "carrier" => c.carrier().to_string(), "quantile" => quantile)
                    .set(ms as f64 / 1000.0);
            }
        }
    }
}

/// Time out overdue receipts every 100 ms and publish quality every 5 s, until
/// `stop`. The dispatcher must be the tracker's assurance hooks.
pub fn spawn(
    tracker: Arc<Tracker>,
    dispatcher: Arc<Dispatcher>,
    clock: Arc<dyn Clock>,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut n = 0u64;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = clock.now_ms();
            tracker.tick(now);
            n += 1;
            if n.is_multiple_of(50) {
                publish_quality(&dispatcher, now);
            }
        }
    });
}
