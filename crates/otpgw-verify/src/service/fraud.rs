//! The fraud screening of a new verification: the number (valid, of a type and
//! country the brand verifies), then the brand's decisions: caps per end-user
//! address, network and device, per country and day, and the conversion
//! [`Guard`](crate::guard::Guard). In a brand's shadow mode every decision is made,
//! logged and counted as it would be, and none refuses.

use otpgw_accept::fraud::{FraudMode, NumberRefusal, subnet_of};

use super::*;
use crate::guard::{BUCKET_MS, Verdict, shared};

/// Past any bucket written so far (a lift forgets every count).
const BUCKET_SLACK: u64 = BUCKET_MS;

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
        // The guard first: a request it refuses uses up no cap.
        self.check_prefix(brand, &prefix, &country, now).await?;
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
        Ok(Screened { prefix, country })
    }

    /// The conversion guard's decision on `prefix` for `brand` (with several
    /// nodes, on their shared counts and block): a refusal is carried out, or in
    /// shadow mode only counted.
    pub(super) async fn check_prefix(
        &self,
        brand: &BrandConfig,
        prefix: &str,
        country: &str,
        now: u64,
    ) -> Result<(), VerifyError> {
        if brand.fraud.mode == FraudMode::Off {
            return Ok(());
        }
        let id = &brand.system_id;
        let shared = self.store().is_shared();
        if shared {
            self.load_shared(id, prefix, country, now).await?;
        }
        let before = self.guard.blocked_until(id, prefix);
        let verdict = self.guard.decide(id, prefix, country, now);
        if shared && self.guard.blocked_until(id, prefix) != before {
            self.save_block(id, prefix, before, now).await?;
        }
        if let Verdict::Blocked { until_ms } = verdict {
            let retry = until_ms.saturating_sub(now);
            self.decided(brand, country, prefix, "prefix_blocked", retry)?;
        }
        Ok(())
    }

    /// How long the guard's counts are kept after their last change.
    fn tally_ttl(&self) -> u64 {
        self.guard.config().window.as_millis() as u64 + shared::BUCKET_SLACK_MS
    }

    /// Load the shared counts and block of `prefix` (several nodes).
    async fn load_shared(
        &self,
        brand: &Arc<str>,
        prefix: &str,
        country: &str,
        now: u64,
    ) -> Result<(), VerifyError> {
        let store = self.store();
        let (ck, kk, bk) = (
            shared::cell_key(brand, prefix),
            shared::block_key(brand, prefix),
            shared::brand_key(brand),
        );
        let (counts, block, all) = tokio::try_join!(
            store.tally_get(&ck),
            store.tally_get(&kk),
            store.tally_get(&bk)
        )
        .map_err(|_| VerifyError::Store)?;
        let t = shared::Shared {
            counts,
            block,
            brand: all,
        };
        let (stale_cell, stale_brand) = self.guard.import(brand, prefix, country, &t, now);
        for (key, stale) in [(ck, stale_cell), (bk, stale_brand)] {
            if !stale.is_empty() {
                let gone: Vec<_> = stale.into_iter().map(|f| (f, None)).collect();
                let _ = store.tally_set(&key, &gone, self.tally_ttl()).await;
            }
        }
        Ok(())
    }

    /// Write the block of `prefix` for the other nodes: a new or renewed one, or
    /// its lifting (`before`: when the block it had ended; the counts before it
    /// are forgotten with it, as the guard forgets them).
    async fn save_block(
        &self,
        brand: &str,
        prefix: &str,
        before: Option<u64>,
        now: u64,
    ) -> Result<(), VerifyError> {
        let store = self.store();
        let until = self.guard.blocked_until(brand, prefix);
        let longest = self.guard.config().max_block.as_millis() as u64 + self.tally_ttl();
        let keep = until.map_or(0, |u| u.saturating_sub(now)) + longest;
        let fields = self.guard.block_fields(brand, prefix);
        let listed = [(
            format!("{brand}/{prefix}"),
            until.map(|u| i64::try_from(u).unwrap_or(i64::MAX)),
        )];
        let kk = shared::block_key(brand, prefix);
        tokio::try_join!(
            store.tally_set(&kk, &fields, keep),
            store.tally_set(shared::BLOCKED_KEY, &listed, longest),
        )
        .map_err(|_| VerifyError::Store)?;
        if let (None, Some(ended)) = (until, before) {
            let ck = shared::cell_key(brand, prefix);
            let counts = store.tally_get(&ck).await.map_err(|_| VerifyError::Store)?;
            let gone: Vec<_> = shared::fields_before(&counts, ended)
                .into_iter()
                .map(|f| (f, None))
                .collect();
            if !gone.is_empty() {
                store
                    .tally_set(&ck, &gone, self.tally_ttl())
                    .await
                    .map_err(|_| VerifyError::Store)?;
            }
        }
        Ok(())
    }

    /// Count a code sent to `prefix` (`approved`: a code sent at `at` approved),
    /// here and, with several nodes, in the shared tallies.
    pub(super) async fn count_code(
        &self,
        brand: &Arc<str>,
        prefix: &str,
        country: &str,
        at: u64,
        approved: bool,
        now: u64,
    ) {
        if approved {
            self.guard.approved(brand, prefix, at, now);
        } else {
            self.guard.sent(brand, prefix, country, now);
        }
        let store = self.store();
        if store.is_shared() {
            let add = [(shared::bucket_field(at, approved), 1)];
            let ttl = self.tally_ttl();
            let (ck, bk) = (shared::cell_key(brand, prefix), shared::brand_key(brand));
            let r = tokio::try_join!(
                store.tally_add(&ck, &add, ttl),
                store.tally_add(&bk, &add, ttl)
            );
            if let Err(e) = r {
                tracing::warn!(error = %e, "fraud guard: a count could not be shared");
            }
        }
    }

    /// The prefixes blocked (with several nodes: by any node, as listed in the
    /// store; entries whose block is gone are dropped from the list).
    pub async fn fraud_blocks(
        &self,
        now: u64,
    ) -> Result<Vec<crate::guard::BlockView>, VerifyError> {
        let store = self.store();
        if !store.is_shared() {
            return Ok(self.guard.blocks(now));
        }
        let listed = store
            .tally_get(shared::BLOCKED_KEY)
            .await
            .map_err(|_| VerifyError::Store)?;
        let mut out = Vec::new();
        for (entry, _) in listed {
            let Some((brand, prefix)) = entry.rsplit_once('/') else {
                continue;
            };
            self.load_shared(&Arc::from(brand), prefix, "", now).await?;
            let view = self
                .guard
                .blocks(now)
                .into_iter()
                .find(|b| b.brand == brand && b.prefix == prefix);
            match view {
                Some(v) => out.push(v),
                None => {
                    let longest = self.guard.config().max_block.as_millis() as u64;
                    let _ = store
                        .tally_set(shared::BLOCKED_KEY, &[(entry, None)], longest)
                        .await;
                }
            }
        }
        Ok(out)
    }

    /// Lift the block of `prefix` of `brand` and forget its counts (with several
    /// nodes, for all); whether there was one.
    pub async fn lift_block(
        &self,
        brand: &str,
        prefix: &str,
        now: u64,
    ) -> Result<bool, VerifyError> {
        let store = self.store();
        if !store.is_shared() {
            return Ok(self.guard.lift(brand, prefix));
        }
        self.load_shared(&Arc::from(brand), prefix, "", now).await?;
        let Some(until) = self.guard.blocked_until(brand, prefix) else {
            return Ok(false);
        };
        self.guard.lift(brand, prefix);
        // Every count of the prefix goes with the block.
        self.save_block(brand, prefix, Some(until.max(now) + BUCKET_SLACK), now)
            .await?;
        Ok(true)
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
