//! The fraud screening of a new verification: the number (valid, of a type and
//! country the brand verifies), then the brand's decisions: caps per end-user
//! address, network and device, per country and day, and the conversion
//! [`Guard`](crate::guard::Guard). In a brand's shadow mode every decision is made,
//! logged and counted as it would be, and none refuses.

use otpgw_accept::fraud::{FraudMode, NumberRefusal, subnet_of};

use super::*;
use crate::guard::Verdict;

/// End-user signals a brand passes with a request.
#[derive(Debug, Clone, Default)]
pub struct Signals {
    /// The user's address, as the brand saw it.
    pub ip: Option<std::net::IpAddr>,
    /// The user's device, as the brand identifies it (1 to 128 characters).
    pub device_id: Option<String>,
}

/// What the screening learnt of the number.
pub(super) struct Screened {
    pub prefix: String,
    pub country: String,
}

/// A refusal of the fraud policy (for `otpgw_fraud_refused_total`).
fn refused(brand: &str, country: &str, reason: &'static str) {
    metrics::counter!("otpgw_fraud_refused_total", "brand" => brand.to_string(),
        "country" => country.to_string(), "reason" => reason)
    .increment(1);
}

impl Verifier {
    /// Screen a request of `brand` to `digits` (see the module docs).
    pub(super) async fn screen(
        &self,
        brand: &BrandConfig,
        digits: &str,
        signals: &Signals,
        now: u64,
    ) -> Result<Screened, VerifyError> {
        let f = &brand.fraud;
        let id = &*brand.system_id;
        let Some(info) = otpgw_accept::number::inspect(digits) else {
            refused(id, "unknown", "invalid_number");
            return Err(VerifyError::NumberRefused(NumberRefusal::Invalid));
        };
        let country = info.country().to_string();
        f.allows(&info).map_err(|e| {
            refused(id, &country, e.code());
            VerifyError::NumberRefused(e)
        })?;
        let prefix = self.guard.prefix(digits).to_string();
        if f.mode == FraudMode::Off {
            return Ok(Screened { prefix, country });
        }
        let hour = 3_600_000;
        let secret = &self.cfg.secret;
        let mut caps: Vec<(&'static str, String, u32, u64)> = Vec::new();
        if let Some(ip) = signals.ip {
            let ip = ip.to_canonical();
            caps.push((
                "ip_cap",
                format!("vip:{id}:{}", secret.blind(&ip.to_string())),
                f.per_ip_per_hour,
                hour,
            ));
            caps.push((
                "subnet_cap",
                format!("vsn:{id}:{}", secret.blind(&subnet_of(ip))),
                f.per_subnet_per_hour,
                hour,
            ));
        }
        if let Some(d) = &signals.device_id {
            caps.push((
                "device_cap",
                format!("vdev:{id}:{}", secret.blind(d)),
                f.per_device_per_hour,
                hour,
            ));
        }
        if let Some(cap) = f.country_cap(&country) {
            caps.push((
                "country_cap",
                format!("vcc:{id}:{country}"),
                cap,
                86_400_000,
            ));
        }
        for (reason, key, cap, window) in caps {
            let n = self
                .store()
                .count(&key, window, now)
                .await
                .map_err(|_| VerifyError::Store)?;
            if n.count > u64::from(cap) {
                self.decided(brand, &country, &prefix, reason, n.resets_in_ms)?;
            }
        }
        if let Verdict::Blocked { until_ms } =
            self.guard.decide(&brand.system_id, &prefix, &country, now)
        {
            self.decided(
                brand,
                &country,
                &prefix,
                "prefix_blocked",
                until_ms.saturating_sub(now),
            )?;
        }
        Ok(Screened { prefix, country })
    }

    /// A decision to refuse: carried out (an error), or in shadow mode only logged
    /// and counted.
    fn decided(
        &self,
        brand: &BrandConfig,
        country: &str,
        prefix: &str,
        reason: &'static str,
        retry_ms: u64,
    ) -> Result<(), VerifyError> {
        let id = &*brand.system_id;
        if brand.fraud.mode.enforces() {
            refused(id, country, reason);
            tracing::info!(
                brand = id,
                country,
                prefix,
                reason,
                "verification refused by the fraud guard"
            );
            return Err(VerifyError::Fraud { reason, retry_ms });
        }
        metrics::counter!("otpgw_fraud_shadow_refusals_total", "brand" => id.to_string(),
            "country" => country.to_string(), "reason" => reason)
        .increment(1);
        tracing::info!(
            brand = id,
            country,
            prefix,
            reason,
            "fraud guard (shadow mode): would refuse"
        );
        Ok(())
    }
}
