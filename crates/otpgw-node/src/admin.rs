//! What the operator's endpoints read and change: `/readyz` (the store is healthy
//! and every route has a carrier with a bind up) and the admin API's views of the
//! carriers, brands, queues and carrier quality.

use std::sync::Arc;

use otpgw_core::Store;
use otpgw_core::clock;
use otpgw_core::tracker::Tracker;
use otpgw_dispatch::Dispatcher;

/// `/readyz`: the store is healthy and every route has a carrier with a bind up.
pub(crate) struct GatewayReadiness {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) carriers: Vec<Arc<otpgw_carrier::CarrierState>>,
    pub(crate) routes: Vec<Vec<String>>,
    /// For the gauges set at scrape time.
    pub(crate) tracker: Arc<Tracker>,
    pub(crate) dispatcher: Arc<Dispatcher>,
    /// When the certificates otpgw presents expire (see `series::cert_expiries`).
    pub(crate) certs: Vec<(&'static str, i64)>,
}

/// The admin API's view of the gateway.
pub(crate) struct GatewayAdmin {
    pub(crate) carriers: Vec<Arc<otpgw_carrier::CarrierState>>,
    pub(crate) dispatcher: Arc<Dispatcher>,
    pub(crate) tracker: Arc<Tracker>,
    pub(crate) smpp: Arc<otpgw_smpp_server::Context>,
    pub(crate) verifier: Option<Arc<otpgw_verify::Verifier>>,
}

impl GatewayAdmin {
    /// See [`crate::ops::Admin::erase_number`]: messages to the number still
    /// queued are cancelled (never sent, no receipt), receipts about it waiting
    /// for a brand are dropped, its verifications erased; all of it durable before
    /// the answer. Messages already at a carrier are counted: their records go
    /// when they finish, and a second call then drops their receipts.
    async fn erase(&self, e164: &str) -> Result<serde_json::Value, crate::ops::Erase> {
        use crate::ops::Erase;
        let digits = otpgw_accept::validate::e164(e164).ok_or(Erase::BadNumber)?;
        let now = clock::now_ms();
        let to_it = |a: &otpgw_proto::pdu::Address| a.addr.trim_start_matches('+') == digits;
        let (mut messages, mut at_carrier) = (0u64, 0u64);
        for m in self.tracker.matching(|m| m.to.phone().is_some_and(to_it)) {
            if m.claim_cancel() {
                let _ = self.tracker.finish_quietly(m.id, now);
                messages += 1;
            } else {
                at_carrier += 1;
            }
        }
        let outbox = self.tracker.outbox();
        let mut receipts = 0u64;
        for (_, b) in outbox.all().into_iter().chain(outbox.all_hooks()) {
            for j in b.remove_where(|j| to_it(&j.source)) {
                self.tracker.store().receipt_forwarded(j.id);
                receipts += 1;
            }
        }
        let verifications = match &self.verifier {
            Some(v) => v
                .erase(digits, now)
                .await
                .map_err(|e| Erase::Store(e.to_string()))?,
            None => 0,
        };
        if !self.tracker.store().flush().wait().await {
            return Err(Erase::Store("the erasure could not be made durable".into()));
        }
        metrics::counter!("otpgw_numbers_erased_total").increment(1);
        Ok(serde_json::json!({
            "messages": messages,
            "receipts": receipts,
            "verifications": verifications,
            "at_carrier": at_carrier,
        }))
    }
}

impl crate::ops::Admin for GatewayAdmin {
    fn erase_number<'a>(
        &'a self,
        e164: &'a str,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<serde_json::Value, crate::ops::Erase>>
                + Send
                + 'a,
        >,
    > {
        Box::pin(self.erase(e164))
    }

    fn fraud_blocks(&self) -> crate::ops::AdminFuture<'_, serde_json::Value> {
        Box::pin(async move {
            let Some(v) = &self.verifier else {
                return Ok(serde_json::Value::Array(Vec::new()));
            };
            let now = clock::now_ms();
            let blocks = v.fraud_blocks(now).await.map_err(|e| e.to_string())?;
            Ok(serde_json::Value::Array(
                blocks
                    .into_iter()
                    .map(|b| {
                        serde_json::json!({
                            "brand": b.brand,
                            "prefix": b.prefix,
                            "country": b.country,
                            "since": otpgw_proto::time::rfc3339(b.since_ms),
                            "until": otpgw_proto::time::rfc3339(b.until_ms),
                            "renewals": b.level,
                            "probing": b.probing,
                            "codes_judged": b.sent,
                            "codes_approved": b.approved,
                        })
                    })
                    .collect(),
            ))
        })
    }

    fn lift_block<'a>(
        &'a self,
        brand: &'a str,
        prefix: &'a str,
    ) -> crate::ops::AdminFuture<'a, bool> {
        Box::pin(async move {
            let Some(v) = &self.verifier else {
                return Ok(false);
            };
            let lifted = v
                .lift_block(brand, prefix, clock::now_ms())
                .await
                .map_err(|e| e.to_string())?;
            if lifted {
                tracing::warn!(brand, prefix, "fraud guard: block lifted by an operator");
            }
            Ok(lifted)
        })
    }

    fn carriers(&self) -> serde_json::Value {
        use otpgw_core::Class;
        serde_json::Value::Array(
            self.carriers
                .iter()
                .map(|c| {
                    serde_json::json!({
                        "name": c.cfg.name,
                        "binds_up": c.bound(),
                        "binds_configured": c.cfg.binds,
                        "window": c.window(),
                        "paused": c.is_paused(),
                        "submitted_last_second": c.rate(),
                        "rate_limit_configured": c.cfg.rate_limit,
                        "rate_limit_now": c.limiter.lock().rate().map(|r| r.round()),
                        "queued": {"otp": c.queue.len_class(Class::Otp), "bulk": c.queue.len_class(Class::Bulk)},
                    })
                })
                .collect(),
        )
    }
    fn set_paused(&self, carrier: &str, paused: bool) -> Option<serde_json::Value> {
        let c = self.carriers.iter().find(|c| c.cfg.name == carrier)?;
        c.set_paused(paused);
        Some(serde_json::json!({"name": c.cfg.name, "paused": c.is_paused()}))
    }
    fn brands(&self) -> serde_json::Value {
        let mut v: Vec<_> = self
            .smpp
            .sessions
            .iter()
            .map(|e| serde_json::json!({"system_id": &**e.key(), "sessions": *e.value()}))
            .collect();
        v.sort_by(|a, b| a["system_id"].as_str().cmp(&b["system_id"].as_str()));
        serde_json::Value::Array(v)
    }
    fn quality(&self) -> serde_json::Value {
        let now = clock::now_ms();
        let q = self.dispatcher.quality().lock();
        let cfg = q.config().clone();
        let rows: Vec<serde_json::Value> = q
            .rows(now)
            .into_iter()
            .map(|r| {
                serde_json::json!({
                    "carrier": &*r.carrier,
                    "prefix": r.prefix,
                    "samples": r.stats.samples,
                    "delivered_on_time": r.stats.within,
                    "delivered_late": r.stats.late,
                    "failed": r.stats.failed,
                    "no_receipt": r.stats.timed_out,
                    "on_time_ratio": r.stats.within_ratio(),
                    "delivered_ratio": r.stats.delivered_ratio(),
                    "receipt_p50_ms": r.stats.p50_ms,
                    "receipt_p90_ms": r.stats.p90_ms,
                })
            })
            .collect();
        serde_json::json!({
            "window_secs": cfg.window_ms / 1000,
            "on_time_within_ms": cfg.within_ms,
            "prefix_digits": cfg.prefix_digits,
            "series": rows,
        })
    }
    fn queue(&self) -> serde_json::Value {
        serde_json::json!({
            "queued": self.dispatcher.depth(),
            "in_flight": self.tracker.len(),
            "receipts_waiting": self.tracker.outbox().total(),
        })
    }
}

impl crate::ops::Readiness for GatewayReadiness {
    fn ready(&self) -> Result<(), crate::ops::NotReady> {
        if !self.store.is_healthy() {
            return Err(crate::ops::NotReady::Store);
        }
        let up = |name: &String| {
            self.carriers
                .iter()
                .any(|c| &c.cfg.name == name && c.bound() > 0)
        };
        for route in &self.routes {
            if !route.iter().any(up) {
                return Err(crate::ops::NotReady::NoCarrier(route.clone()));
            }
        }
        Ok(())
    }

    fn refresh_gauges(&self) {
        let in_flight = self.tracker.len();
        metrics::gauge!("otpgw_messages_in_flight").set(in_flight as f64);
        metrics::gauge!("otpgw_receipts_awaited_messages")
            .set(in_flight.saturating_sub(self.dispatcher.depth()) as f64);
        for (brand, q) in self.tracker.outbox().all() {
            metrics::gauge!("otpgw_receipts_held_messages", "brand" => brand.to_string())
                .set(q.len() as f64);
        }
        crate::series::process_gauges();
        crate::series::cert_gauges(&self.certs);
    }
}
