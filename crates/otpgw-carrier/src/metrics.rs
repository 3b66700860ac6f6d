//! Metric handles of one carrier.

use otpgw_core::DeliveryState;

/// Metric handles of one carrier, built once (no label allocation per message).
pub struct CarrierMetrics {
    pub submitted: metrics::Counter,
    pub responses_ok: metrics::Counter,
    pub response: metrics::Histogram,
    pub queue_wait: metrics::Histogram,
    pub receipt_latency: metrics::Histogram,
    receipts: [metrics::Counter; 9],
}

impl CarrierMetrics {
    pub(crate) fn new(carrier: &str) -> Self {
        let c = || carrier.to_string();
        Self {
            submitted: metrics::counter!("otpgw_carrier_submitted_total", "carrier" => c()),
            responses_ok: metrics::counter!("otpgw_carrier_responses_total", "carrier" => c(), "status" => otpgw_proto::status::name(otpgw_proto::status::ESME_ROK)),
            response: metrics::histogram!("otpgw_carrier_response_seconds", "carrier" => c()),
            queue_wait: metrics::histogram!("otpgw_queue_wait_seconds", "carrier" => c()),
            receipt_latency: metrics::histogram!("otpgw_receipt_latency_seconds", "carrier" => c()),
            receipts: std::array::from_fn(|i| {
                let state = DeliveryState::from_tlv(i as u8 + 1).unwrap_or(DeliveryState::Unknown);
                metrics::counter!("otpgw_receipts_total", "carrier" => c(), "state" => state.label())
            }),
        }
    }

    /// Count a carrier receipt in `state`.
    pub fn receipt(&self, state: DeliveryState) {
        let i = (state.tlv() as usize).saturating_sub(1).min(8);
        self.receipts[i].increment(1);
    }
}
