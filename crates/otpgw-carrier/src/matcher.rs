//! Sans-IO matching of carrier receipts to otpgw messages.
//!
//! Carriers are inconsistent about their own ids: a receipt may carry in decimal an
//! id that `submit_sm_resp` gave in hex (or the reverse), in another case, with or
//! without leading zeros, and it may arrive before the `submit_sm_resp`. The matcher:
//! - normalises ids (trimmed, lower case, leading zeros dropped);
//! - records each carrier id under its exact form and, as alternatives, its hex<->decimal
//!   conversions; an exact match always wins over an alternative;
//! - parks a receipt whose id is not known yet and hands it over when the
//!   `submit_sm_resp` with that id arrives; parked receipts older than a TTL are dropped
//!   and counted as unmatched.
//!
//! One matcher serves all binds of a carrier: a receipt may come on any of them.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use otpgw_core::MsgId;
use otpgw_proto::pdu::CarrierReceipt;

/// Normalise a carrier message id: trim, lower-case, drop leading zeros.
pub fn normalize(id: &str) -> String {
    let t = id.trim().trim_matches(char::from(0)).to_ascii_lowercase();
    let stripped = t.trim_start_matches('0');
    if stripped.is_empty() && !t.is_empty() {
        "0".to_string()
    } else {
        stripped.to_string()
    }
}

/// The hex<->decimal readings of a normalised id.
pub fn alternatives(norm: &str) -> Vec<String> {
    let mut v = Vec::with_capacity(2);
    if !norm.is_empty() && norm.len() <= 32 {
        if norm.bytes().all(|b| b.is_ascii_digit())
            && let Ok(n) = norm.parse::<u128>()
        {
            v.push(format!("{n:x}"));
        }
        if norm.bytes().all(|b| b.is_ascii_hexdigit())
            && let Ok(n) = u128::from_str_radix(norm, 16)
        {
            v.push(n.to_string());
        }
    }
    v.retain(|a| a != norm);
    v.dedup();
    v
}

/// Outcome of offering a receipt to the matcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matched {
    /// The receipt belongs to this message.
    Found(MsgId, CarrierReceipt),
    /// Not known yet: parked until its `submit_sm_resp` arrives or the TTL passes.
    Parked,
}

/// See the module docs.
#[derive(Debug)]
pub struct Matcher {
    exact: HashMap<String, MsgId>,
    alt: HashMap<String, MsgId>,
    /// Per message, the keys it is recorded under (to forget them together).
    keys: HashMap<MsgId, Vec<String>>,
    parked: HashMap<String, (Instant, CarrierReceipt)>,
    parked_order: VecDeque<(Instant, String)>,
    park_ttl: Duration,
    max_parked: usize,
}

impl Matcher {
    /// A matcher that keeps early receipts for `park_ttl`, at most `max_parked` of them.
    pub fn new(park_ttl: Duration, max_parked: usize) -> Self {
        Self {
            exact: HashMap::new(),
            alt: HashMap::new(),
            keys: HashMap::new(),
            parked: HashMap::new(),
            parked_order: VecDeque::new(),
            park_ttl,
            max_parked,
        }
    }

    /// Ids recorded and receipts parked.
    pub fn sizes(&self) -> (usize, usize) {
        (self.keys.len(), self.parked.len())
    }

    /// The carrier accepted `msg` with `carrier_id`. Returns receipts that arrived
    /// before this response and now match.
    pub fn on_submitted(&mut self, carrier_id: &str, msg: MsgId) -> Vec<CarrierReceipt> {
        let norm = normalize(carrier_id);
        let alts = alternatives(&norm);
        let mut early = Vec::new();
        for k in std::iter::once(&norm).chain(alts.iter()) {
            if let Some((_, r)) = self.parked.remove(k) {
                early.push(r);
            }
        }
        self.exact.insert(norm.clone(), msg);
        for a in &alts {
            self.alt.entry(a.clone()).or_insert(msg);
        }
        let mut keys = alts;
        keys.push(norm);
        self.keys.insert(msg, keys);
        early
    }

    /// A receipt arrived. Intermediate receipts keep the mapping; final ones are matched
    /// here and the caller calls [`Matcher::forget`] once it has finished the message.
    pub fn on_receipt(&mut self, r: CarrierReceipt, now: Instant) -> Matched {
        let norm = normalize(&r.id);
        let found = self.exact.get(&norm).or_else(|| self.alt.get(&norm)).copied();
        match found {
            Some(id) => Matched::Found(id, r),
            None => {
                if self.parked.len() >= self.max_parked
                    && let Some((_, k)) = self.parked_order.pop_front()
                {
                    self.parked.remove(&k);
                    metrics::counter!("otpgw_receipts_unmatched_total").increment(1);
                }
                self.parked_order.push_back((now, norm.clone()));
                self.parked.insert(norm, (now, r));
                Matched::Parked
            }
        }
    }

    /// Forget a finished message's ids.
    pub fn forget(&mut self, msg: MsgId) {
        if let Some(keys) = self.keys.remove(&msg) {
            for k in keys {
                if self.exact.get(&k) == Some(&msg) {
                    self.exact.remove(&k);
                }
                if self.alt.get(&k) == Some(&msg) {
                    self.alt.remove(&k);
                }
            }
        }
    }

    /// Drop parked receipts older than the TTL; returns how many were dropped.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut n = 0;
        while let Some((t, _)) = self.parked_order.front() {
            if now.duration_since(*t) < self.park_ttl {
                break;
            }
            if let Some((t, k)) = self.parked_order.pop_front()
                && self.parked.get(&k).is_some_and(|(pt, _)| *pt == t)
            {
                self.parked.remove(&k);
                n += 1;
            }
        }
        if n > 0 {
            metrics::counter!("otpgw_receipts_unmatched_total").increment(n as u64);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use otpgw_proto::receipt::DeliveryState;

    fn r(id: &str) -> CarrierReceipt {
        CarrierReceipt {
            id: id.into(),
            state: DeliveryState::Delivered,
            err: None,
        }
    }

    fn m() -> Matcher {
        Matcher::new(Duration::from_secs(60), 1000)
    }

    #[test]
    fn normalisation() {
        assert_eq!(normalize(" 00AbC "), "abc");
        assert_eq!(normalize("0000"), "0");
        assert_eq!(alternatives("255"), vec!["ff".to_string(), "597".to_string()]);
        assert_eq!(alternatives("ff"), vec!["255".to_string()]);
        assert!(alternatives("xyz").is_empty());
    }

    #[test]
    fn hex_response_decimal_receipt_and_case() {
        let now = Instant::now();
        let mut mt = m();
        mt.on_submitted("1A2B", MsgId(1));
        assert!(matches!(mt.on_receipt(r("6699"), now), Matched::Found(MsgId(1), _)));
        assert!(matches!(mt.on_receipt(r("001a2b"), now), Matched::Found(MsgId(1), _)));
        mt.on_submitted("0000012345", MsgId(2));
        assert!(matches!(mt.on_receipt(r("3039"), now), Matched::Found(MsgId(2), _)));
        assert!(matches!(mt.on_receipt(r("12345"), now), Matched::Found(MsgId(2), _)));
    }

    #[test]
    fn exact_beats_alternative() {
        let now = Instant::now();
        let mut mt = m();
        mt.on_submitted("10", MsgId(1)); // alternatives: "a" (dec->hex), "16" (hex->dec)
        mt.on_submitted("16", MsgId(2));
        assert!(matches!(mt.on_receipt(r("16"), now), Matched::Found(MsgId(2), _)));
        assert!(matches!(mt.on_receipt(r("10"), now), Matched::Found(MsgId(1), _)));
    }

    #[test]
    fn receipt_before_response_is_parked_then_handed_over() {
        let now = Instant::now();
        let mut mt = m();
        assert_eq!(mt.on_receipt(r("ABC"), now), Matched::Parked);
        let early = mt.on_submitted("abc", MsgId(7));
        assert_eq!(early, vec![r("ABC")]);
        assert_eq!(mt.sizes().1, 0);
        // decimal form of a hex id parked early
        assert_eq!(mt.on_receipt(r("4095"), now), Matched::Parked);
        assert_eq!(mt.on_submitted("FFF", MsgId(8)).len(), 1);
    }

    #[test]
    fn forget_and_expire() {
        let now = Instant::now();
        let mut mt = m();
        mt.on_submitted("99", MsgId(1));
        mt.forget(MsgId(1));
        assert_eq!(mt.on_receipt(r("99"), now), Matched::Parked);
        assert_eq!(mt.expire(now + Duration::from_secs(59)), 0);
        assert_eq!(mt.expire(now + Duration::from_secs(61)), 1);
        assert_eq!(mt.sizes(), (0, 0));
    }
}
