//! The verification service: create (generate, keep the hash, send as an OTP),
//! check (once), resend, look up. Records live in the gateway's store (embedded or
//! Redis: a check on any node finds a code sent by any other), written with
//! compare-and-set so two concurrent checks never both approve. Codes go out through
//! the one acceptor every message takes.

use std::sync::Arc;
use std::time::Duration;

use otpgw_accept::validate::e164;
use otpgw_accept::{Acceptor, BrandConfig, Submission, compose};
use otpgw_core::message::Extra;
use otpgw_core::{Class, Store};

use crate::code::{self, Secret};
use crate::guard::{Guard, GuardConfig};
use crate::machine::{self, Outcome, Refusal, Rules};
use crate::record::{State, Verification};
use crate::transaction::Transaction;

/// Attempts of a compare-and-set loop before giving up (concurrent writers).
const CAS_TRIES: usize = 16;

/// See the module docs.
pub struct Verifier {
    cfg: VerifyConfig,
    acceptor: Arc<Acceptor>,
    guard: Guard,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").finish_non_exhaustive()
    }
}

fn key(id: &str) -> String {
    format!("ver:{id}")
}

fn count(brand: &str, outcome: &'static str) {
    metrics::counter!("otpgw_verifications_total", "brand" => brand.to_string(), "outcome" => outcome)
        .increment(1);
}

/// The text of a code (a transaction's placeholders after the code's, so a payee
/// cannot introduce one).
fn render(template: &str, code: &str, ttl_ms: u64, tx: Option<&Transaction>) -> String {
    let t = template
        .replace("{code}", code)
        .replace("{minutes}", &ttl_ms.div_ceil(60_000).to_string());
    Transaction::fill(&t, tx)
}

impl Verifier {
    /// A service over the acceptor (and its store).
    pub fn new(cfg: VerifyConfig, acceptor: Arc<Acceptor>) -> Self {
        let guard = Guard::new(GuardConfig {
            prefix_digits: cfg.prefix_digits,
            ..cfg.guard.clone()
        });
        Self {
            cfg,
            acceptor,
            guard,
        }
    }

    /// The conversion guard (its blocks, for the admin API).
    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// The limits of every verification.
    pub fn rules(&self) -> &Rules {
        &self.cfg.rules
    }

    fn store(&self) -> &Arc<dyn Store> {
        self.acceptor.store()
    }

    async fn load(&self, brand: &str, id: &str) -> Result<(u64, Verification), VerifyError> {
        if !code::is_id(id) {
            return Err(VerifyError::NotFound);
        }
        let rec = self
            .store()
            .kv_get(&key(id))
            .await
            .map_err(|_| VerifyError::Store)?
            .ok_or(VerifyError::NotFound)?;
        let v = Verification::decode(&rec.value).ok_or(VerifyError::NotFound)?;
        // Another brand's verification does not exist for this one.
        if v.brand != brand {
            return Err(VerifyError::NotFound);
        }
        Ok((rec.version, v))
    }

    /// How long a finished verification of `brand` is kept: `keep_after`, or the
    /// brand's shorter `retention_secs`.
    fn keep_after(&self, brand: &str) -> Duration {
        let own = self
            .acceptor
            .brands()
            .read()
            .get(brand)
            .and_then(|b| b.retention);
        own.map_or(self.cfg.keep_after, |r| r.min(self.cfg.keep_after))
    }

    async fn save(&self, version: u64, v: &Verification) -> Result<bool, VerifyError> {
        let until = v.expires_ms + self.keep_after(&v.brand).as_millis() as u64;
        self.store()
            .kv_put(&key(&v.id), version, v.encode(), until)
            .await
            .map(|r| r.is_some())
            .map_err(|_| VerifyError::Store)
    }

    /// Send the code of `v` as an OTP that expires with the verification.
    async fn send(
        &self,
        brand: &BrandConfig,
        v: &Verification,
        code: &str,
        now: u64,
    ) -> Result<(), VerifyError> {
        let ttl = v.expires_ms.saturating_sub(now);
        let text = render(&v.template, code, ttl, v.transaction.as_ref());
        let (to, body) = compose::sms(compose::Text {
            to: &v.to,
            from: &v.sender,
            text: &text,
            validity_ms: Some(ttl),
            class: Some(Class::Otp),
        });
        let sub = Submission {
            to,
            body,
            class: Some(Class::Otp),
            extra: Some(Arc::new(Extra {
                receipt_url: None,
                verification: Some(v.id.clone()),
            })),
            id: Some(v.message),
            once: None,
            origin: 0,
            group: None,
        };
        self.acceptor
            .accept_with(brand, sub, now)
            .await
            .map(|_| ())
            .map_err(VerifyError::Refused)
    }

    /// A request's code length, lifetime and template, checked.
    fn options(&self, req: &CreateRequest) -> Result<(u8, Duration, String), VerifyError> {
        let invalid = |field, reason| Err(VerifyError::Invalid { field, reason });
        let len = req.code_length.unwrap_or(6);
        if !(4..=10).contains(&len) {
            return invalid("code_length", "must be 4 to 10");
        }
        let ttl = match req.ttl_secs {
            None => self.cfg.default_ttl,
            Some(s) if s >= 1 && s <= self.cfg.max_ttl.as_secs() => Duration::from_secs(s),
            Some(_) => {
                return invalid(
                    "ttl_secs",
                    "must be 1 to the configured maximum (900 by default)",
                );
            }
        };
        if req.channel.as_deref().is_some_and(|c| c != "sms") {
            return invalid("channel", "only \"sms\" is supported");
        }
        let template = match &req.template {
            None => self.cfg.template.clone(),
            Some(t) if t.contains("{code}") && t.chars().count() <= 480 => t.clone(),
            Some(_) => {
                return invalid(
                    "template",
                    "must contain {code} and be at most 480 characters",
                );
            }
        };
        Ok((len, ttl, template))
    }

    /// Start a verification of `req.to` for `brand`: check the request and the
    /// caps, supersede the number's pending verification, keep the new one's hash,
    /// send its code.
    pub async fn create(
        &self,
        brand: &BrandConfig,
        req: CreateRequest,
        now: u64,
    ) -> Result<View, VerifyError> {
        let Some(digits) = e164(&req.to) else {
            return Err(VerifyError::Invalid {
                field: "to",
                reason: "must be an E.164 number: + and 7 to 15 digits",
            });
        };
        let (len, ttl, template) = self.options(&req)?;
        let brand_id = &*brand.system_id;
        let screened = self.screen(brand, digits, &req.signals, now).await?;
        let store = self.store();
        let hour = 3_600_000;
        let n = store
            .count(
                &format!("vn:{brand_id}:{}", self.cfg.secret.blind(digits)),
                hour,
                now,
            )
            .await
            .map_err(|_| VerifyError::Store)?;
        if n.count > u64::from(self.cfg.per_number_per_hour) {
            count(brand_id, "refused_number");
            return Err(VerifyError::NumberLimit(n.resets_in_ms));
        }
        let n = store
            .count(&format!("vp:{brand_id}:{}", screened.prefix), hour, now)
            .await
            .map_err(|_| VerifyError::Store)?;
        if n.count > u64::from(self.cfg.per_prefix_per_hour) {
            count(brand_id, "refused_prefix");
            return Err(VerifyError::PrefixLimit(n.resets_in_ms));
        }
        let (index_version, older) = self.supersede(brand_id, digits, now).await?;
        let id = code::new_id().map_err(|_| VerifyError::Random)?;
        let code = code::generate_code(usize::from(len)).map_err(|_| VerifyError::Random)?;
        let v = Verification {
            hash: self
                .cfg
                .secret
                .hash(&id, &Transaction::bound(&code, req.transaction.as_ref())),
            id,
            brand: brand_id.to_string(),
            to: req.to.clone(),
            code_length: len,
            created_ms: now,
            expires_ms: now + ttl.as_millis() as u64,
            state: State::Pending,
            checks: 0,
            sends: 1,
            last_send_ms: now,
            approved_ms: 0,
            message: self.acceptor.mint(),
            sender: brand
                .verify_sender
                .clone()
                .unwrap_or_else(|| self.cfg.sender.clone()),
            template,
            transaction: req.transaction.clone(),
        };
        // The record, the number's index (for the next verification to supersede
        // this one) and the message go to the store together, in this order: the
        // writers keep it, so the record is durable no later than the message, and a
        // code that went out can always be checked; most often all three share one
        // commit.
        let nk = number_key(&self.cfg.secret, brand_id, digits);
        // The index lives as long as the records it lists (for an erasure).
        let index_until = v.expires_ms + self.keep_after(brand_id).as_millis() as u64;
        let (saved, indexed, sent) = tokio::join!(
            self.save(0, &v),
            store.kv_put(&nk, index_version, index_value(&v.id, &older), index_until),
            self.send(brand, &v, &code, now),
        );
        if !saved? {
            return Err(VerifyError::Busy);
        }
        sent?;
        self.count_code(
            &brand.system_id,
            &screened.prefix,
            &screened.country,
            now,
            false,
            now,
        )
        .await;
        if !matches!(indexed, Ok(Some(_))) {
            // Another verification for the number was created at the same moment:
            // index this one (the later) anyway.
            for _ in 0..CAS_TRIES {
                let cur = store.kv_get(&nk).await.map_err(|_| VerifyError::Store)?;
                let (version, listed) =
                    cur.map_or((0, Vec::new()), |c| (c.version, index_ids(&c.value)));
                if store
                    .kv_put(&nk, version, index_value(&v.id, &listed), index_until)
                    .await
                    .map_err(|_| VerifyError::Store)?
                    .is_some()
                {
                    break;
                }
            }
        }
        count(brand_id, "created");
        Ok(view(&v, now))
    }

    /// Mark the number's pending verification superseded; returns the version of
    /// the number's index (0: none) and the ids it lists, newest first.
    async fn supersede(
        &self,
        brand: &str,
        digits: &str,
        now: u64,
    ) -> Result<(u64, Vec<String>), VerifyError> {
        let Some(index) = self
            .store()
            .kv_get(&number_key(&self.cfg.secret, brand, digits))
            .await
            .map_err(|_| VerifyError::Store)?
        else {
            return Ok((0, Vec::new()));
        };
        let found = (index.version, index_ids(&index.value));
        let Some(prev) = found.1.first() else {
            return Ok(found);
        };
        for _ in 0..CAS_TRIES {
            let (version, mut v) = match self.load(brand, prev).await {
                Ok(x) => x,
                Err(VerifyError::NotFound) => return Ok(found),
                Err(e) => return Err(e),
            };
            if v.state != State::Pending || now >= v.expires_ms {
                return Ok(found);
            }
            v.state = State::Superseded;
            if self.save(version, &v).await? {
                count(brand, "superseded");
                return Ok(found);
            }
        }
        Err(VerifyError::Busy)
    }

    /// Check `code` against verification `id` of `brand` (one without a
    /// transaction).
    pub async fn check(
        &self,
        brand: &BrandConfig,
        id: &str,
        code: &str,
        now: u64,
    ) -> Result<(Outcome, View), VerifyError> {
        let (o, v, _) = self.check_for(brand, id, code, None, now).await?;
        Ok((o, v))
    }

    /// Check `code` for transaction `tx` against verification `id` of `brand`;
    /// also says whether it was denied for another transaction.
    pub async fn check_for(
        &self,
        brand: &BrandConfig,
        id: &str,
        code: &str,
        tx: Option<&Transaction>,
        now: u64,
    ) -> Result<(Outcome, View, bool), VerifyError> {
        let code = code.trim();
        for _ in 0..CAS_TRIES {
            let (version, v) = self.load(&brand.system_id, id).await?;
            let well_formed = code.len() == usize::from(v.code_length)
                && code.bytes().all(|b| b.is_ascii_digit());
            // Another transaction (or none where there was one) is a wrong
            // attempt whatever the code.
            let same_tx = Transaction::same(v.transaction.as_ref(), tx);
            let bound = Transaction::bound(code, v.transaction.as_ref());
            let (outcome, next) = machine::check(
                &v,
                || same_tx && well_formed && self.cfg.secret.matches(&v.id, &bound, &v.hash),
                &self.cfg.rules,
                now,
            );
            let mismatch = !same_tx && next.is_some() && outcome != Outcome::Approved;
            let shown = match &next {
                Some(n) => {
                    if !self.save(version, n).await? {
                        continue; // another check came first: decide again
                    }
                    n
                }
                None => &v,
            };
            // A check on a verification a newer one superseded is not a
            // supersession (`superseded` counts those, once each).
            let counted = match outcome {
                Outcome::Superseded => "check_superseded",
                o => o.label(),
            };
            count(&brand.system_id, counted);
            if outcome == Outcome::Approved {
                self.approved(&v, now).await;
                let prefix = self.guard.prefix(v.to.trim_start_matches('+'));
                self.count_code(&brand.system_id, prefix, "", v.last_send_ms, true, now)
                    .await;
            }
            if mismatch {
                count(&brand.system_id, "transaction_mismatch");
            }
            return Ok((outcome, view(shown, now), mismatch));
        }
        Err(VerifyError::Busy)
    }

    /// Conversion figures of an approval: how long it took, and which carrier's
    /// code it was (the carrier that confirmed the message carrying it). A code can
    /// be typed back before its carrier's confirmation was processed, or between
    /// the message's final state and its status reaching the store: the carrier is
    /// looked up again for a few seconds (in a task; the check does not wait), and
    /// counted as "-" if it stays unknown.
    async fn approved(&self, v: &Verification, now: u64) {
        metrics::histogram!("otpgw_verification_approval_seconds", "brand" => v.brand.clone())
            .record(now.saturating_sub(v.created_ms) as f64 / 1000.0);
        let acceptor = self.acceptor.clone();
        let (message, country) = (v.message, otpgw_core::number::country_of(&v.to));
        tokio::spawn(async move {
            let mut carrier = None;
            for wait_ms in [0, 50, 200, 500, 1000, 2000] {
                tokio::time::sleep(std::time::Duration::from_millis(wait_ms)).await;
                if let Ok(Some(s)) = acceptor.status(message).await
                    && s.carrier.is_some()
                {
                    carrier = s.carrier;
                    break;
                }
            }
            metrics::counter!(
                "otpgw_verification_codes_approved_total",
                "carrier" => carrier.unwrap_or_else(|| "-".into()),
                "country" => country
            )
            .increment(1);
        });
    }

    /// Send a new code for verification `id` (the previous code stops working).
    pub async fn resend(
        &self,
        brand: &BrandConfig,
        id: &str,
        now: u64,
    ) -> Result<View, VerifyError> {
        for _ in 0..CAS_TRIES {
            let (version, v) = self.load(&brand.system_id, id).await?;
            match machine::may_resend(&v, &self.cfg.rules, now) {
                Ok(()) => {}
                Err(Refusal::NotPending(o)) => return Err(VerifyError::NotPending(o)),
                Err(Refusal::TooSoon(ms)) => return Err(VerifyError::ResendTooSoon(ms)),
                Err(Refusal::Limit) => return Err(VerifyError::ResendLimit),
            }
            // A resend is a code sent too: not to a prefix the guard blocks.
            let prefix = self.guard.prefix(v.to.trim_start_matches('+')).to_string();
            let country = otpgw_core::number::country_of(&v.to);
            self.check_prefix(brand, &prefix, &country, now).await?;
            let code =
                code::generate_code(usize::from(v.code_length)).map_err(|_| VerifyError::Random)?;
            let next = Verification {
                hash: self
                    .cfg
                    .secret
                    .hash(&v.id, &Transaction::bound(&code, v.transaction.as_ref())),
                sends: v.sends.saturating_add(1),
                last_send_ms: now,
                message: self.acceptor.mint(),
                ..v
            };
            if !self.save(version, &next).await? {
                continue;
            }
            self.send(brand, &next, &code, now).await?;
            self.count_code(&brand.system_id, &prefix, &country, now, false, now)
                .await;
            count(&brand.system_id, "resent");
            return Ok(view(&next, now));
        }
        Err(VerifyError::Busy)
    }

    /// Verification `id` of `brand`.
    pub async fn get(&self, brand: &BrandConfig, id: &str, now: u64) -> Result<View, VerifyError> {
        let (_, v) = self.load(&brand.system_id, id).await?;
        Ok(view(&v, now))
    }
}

/// A verification as the API shows it, at `now`.
fn view(v: &Verification, now: u64) -> View {
    let status = match v.state {
        State::Approved => "approved",
        State::Locked => "max_attempts",
        State::Superseded => "superseded",
        State::Pending if now >= v.expires_ms => "expired",
        State::Pending => "pending",
    };
    View {
        id: v.id.clone(),
        to: v.to.clone(),
        status,
        created_ms: v.created_ms,
        expires_ms: v.expires_ms,
        checks: v.checks,
        sends: v.sends,
        message: v.message,
    }
}

mod fraud;
mod numbers;
mod types;
pub use fraud::Signals;
use numbers::{index_ids, index_value, number_key};
pub use types::{CreateRequest, VerifyConfig, VerifyError, View};

#[cfg(test)]
mod tests;
