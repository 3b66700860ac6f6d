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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use otpgw_core::assure::Policy;
    use otpgw_core::clock::{Clock, TokioClock};
    use otpgw_core::outbox::Outbox;
    use otpgw_core::tracker::Tracker;
    use otpgw_core::{Class, Message, MsgId};
    use otpgw_store::MemoryStore;
    use tokio_util::sync::CancellationToken;

    use crate::{Dispatcher, Routes};

    /// The receipt-deadline loop on paused tokio time: an OTP confirmed by carrier
    /// `a` without its receipt goes out again through `b` once its 4 s receipt
    /// timeout passed, within one tick (100 ms) of it, and not before.
    #[tokio::test(start_paused = true)]
    async fn an_overdue_receipt_sends_the_otp_through_the_next_carrier() {
        let clock = Arc::new(TokioClock::new());
        let names = ["a".to_string(), "b".to_string()];
        let d = Arc::new(Dispatcher::new(Routes::new(names.to_vec()), &names, 10));
        let tracker = Arc::new(Tracker::new(
            Arc::new(MemoryStore::new()),
            Arc::new(Outbox::new(10)),
        ));
        let policy = Policy {
            receipt_timeout_ms: Some(4_000),
            fallback_max: 1,
            fallback_url: None,
        };
        tracker
            .assure()
            .set_policies([(Arc::from("bank"), policy)].into_iter().collect());
        tracker.assure().set_hooks(d.clone());
        let now = clock.now_ms();
        let msg = Arc::new(Message {
            id: MsgId(7),
            brand: "bank".into(),
            to: Default::default(),
            body: Default::default(),
            class: Class::Otp,
            accepted_ms: now,
            deadline_ms: now + 60_000,
            attempts: Default::default(),
            extra: None,
            origin: 0,
            progress: Default::default(),
            group: None,
        });
        tracker.insert(msg.clone());
        let a: Arc<str> = Arc::from("a");
        assert!(tracker.sending(&msg, &a, None, now).wait().await);
        tracker.confirmed(&msg, &a, "C1", now);

        let stop = CancellationToken::new();
        super::spawn(tracker.clone(), d.clone(), clock, stop.clone());
        let b = d.queue("b").unwrap();
        tokio::time::sleep(Duration::from_millis(3_900)).await;
        assert_eq!(b.len(), 0, "not before its receipt is due");
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(b.len(), 1, "resent through b once overdue");
        assert_eq!(d.queue("a").unwrap().len(), 0, "never again through a");
        stop.cancel();
    }
}
