//! Sans-IO matching of carrier receipts to otpgw messages.
//!
//! Carriers are inconsistent about their own ids: a receipt may carry in decimal an
//! id that `submit_sm_resp` gave in hex (or the reverse), in another case, with or
//! without leading zeros, and it may arrive before the `submit_sm_resp`. The matcher:
//! - normalises ids (trimmed, lower case, leading zeros dropped);
//! - knows three conventions: the same id, hex in the response and decimal in the
//!   receipt, or the reverse ([`IdConvention`]). A carrier follows one of them; which
//!   one is set in the config or, by default, learned: until then every message is
//!   recorded under all three keys, every receipt is parked (nothing is delivered on
//!   a guess: a receipt that overtook its own response may find exactly one, wrong,
//!   candidate), a receipt that only one convention can explain counts as evidence,
//!   and after [`LEARN_AFTER`] such receipts for one convention (and twenty times more
//!   than for the others) the matcher settles on it and replays what it parked;
//!   `"16"` may be message A's decimal id and message B's hex id, so guessing would
//!   hand a brand someone else's receipt;
//! - parks a receipt whose id is not known yet and hands it over when the
//!   `submit_sm_resp` with that id arrives (once the convention is known; before, it
//!   waits for the replay); parked receipts older than a TTL are dropped and counted
//!   as unmatched. A carrier that sends every receipt before its response gives the
//!   matcher nothing to learn from: set its convention in the config.
//!
//! One matcher serves all binds of a carrier: a receipt may come on any of them.
//! Times are milliseconds since the epoch, passed in by the binds.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use otpgw_core::MsgId;
use otpgw_proto::pdu::CarrierReceipt;

/// What [`Matcher::lookup`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Found(MsgId),
    /// Candidates under several id conventions, or a submit awaits its response.
    Ambiguous,
    None,
}

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

/// How a carrier's receipt ids relate to the ids in its `submit_sm_resp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdConvention {
    /// The same id (after normalisation: case, leading zeros).
    Same = 0,
    /// Response in hex, receipt in decimal.
    HexToDecimal = 1,
    /// Response in decimal, receipt in hex.
    DecimalToHex = 2,
}

const CONVENTIONS: [IdConvention; 3] = [
    IdConvention::Same,
    IdConvention::HexToDecimal,
    IdConvention::DecimalToHex,
];

impl IdConvention {
    /// The receipt-side key of a response id under this convention.
    pub fn key(self, norm: &str) -> Option<String> {
        if norm.is_empty() || norm.len() > 32 {
            return (self == IdConvention::Same).then(|| norm.to_string());
        }
        match self {
            IdConvention::Same => Some(norm.to_string()),
            IdConvention::HexToDecimal => {
                u128::from_str_radix(norm, 16).ok().map(|n| n.to_string())
            }
            IdConvention::DecimalToHex => norm
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| norm.parse::<u128>().ok().map(|n| format!("{n:x}")))
                .flatten(),
        }
    }
}

/// How the matcher picks the convention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdMode {
    /// Fixed by configuration.
    Fixed(IdConvention),
    /// Learned from receipts that only one convention can explain; see the module docs.
    Auto,
}

/// Receipts that only one convention explains needed to settle on it in
/// [`IdMode::Auto`] (and at least 20 times as many as for all others together).
pub const LEARN_AFTER: u64 = 16;

/// See the module docs.
#[derive(Debug)]
pub struct Matcher {
    /// The settled convention (fixed, or learned).
    settled: Option<IdConvention>,
    evidence: [u64; 3],
    maps: [HashMap<String, MsgId>; 3],
    /// Per message, the keys it is recorded under (to forget them together).
    keys: HashMap<MsgId, Vec<(IdConvention, String)>>,
    parked: HashMap<String, (u64, CarrierReceipt)>,
    parked_order: VecDeque<(u64, String)>,
    park_ttl: Duration,
    max_parked: usize,
    /// Submits written to the carrier whose response has not been processed yet.
    unanswered: usize,
}

impl Matcher {
    /// A matcher that keeps early or ambiguous receipts for `park_ttl`, at most
    /// `max_parked` of them.
    pub fn new(mode: IdMode, park_ttl: Duration, max_parked: usize) -> Self {
        Self {
            settled: match mode {
                IdMode::Fixed(c) => Some(c),
                IdMode::Auto => None,
            },
            evidence: [0; 3],
            maps: [HashMap::new(), HashMap::new(), HashMap::new()],
            keys: HashMap::new(),
            parked: HashMap::new(),
            parked_order: VecDeque::new(),
            park_ttl,
            max_parked,
            unanswered: 0,
        }
    }

    /// A `submit_sm` was written to the carrier.
    pub fn sent(&mut self) {
        self.unanswered += 1;
    }

    /// `n` submits got an answer other than success (error, timeout, lost link).
    /// Returns receipts that became deliverable.
    pub fn answered(&mut self, n: usize) -> Vec<(MsgId, CarrierReceipt)> {
        self.unanswered = self.unanswered.saturating_sub(n);
        self.replay_if_quiet()
    }

    /// Before the convention is known, receipts are safe to hand over when no submit
    /// awaits its response: then every message a parked receipt could belong to is
    /// known, and a single candidate is the owner.
    fn replay_if_quiet(&mut self) -> Vec<(MsgId, CarrierReceipt)> {
        let mut out = Vec::new();
        if self.settled.is_none() && self.unanswered == 0 && !self.parked.is_empty() {
            let waiting: Vec<_> = self.parked.drain().map(|(_, (t, r))| (t, r)).collect();
            self.parked_order.clear();
            for (t, r) in waiting {
                self.offer(r, t, &mut out, false);
            }
        }
        out
    }

    /// The convention in use, once known.
    pub fn convention(&self) -> Option<IdConvention> {
        self.settled
    }

    /// Ids recorded and receipts parked.
    pub fn sizes(&self) -> (usize, usize) {
        (self.keys.len(), self.parked.len())
    }

    fn active(&self) -> &'static [IdConvention] {
        match self.settled {
            Some(IdConvention::Same) => &CONVENTIONS[0..1],
            Some(IdConvention::HexToDecimal) => &CONVENTIONS[1..2],
            Some(IdConvention::DecimalToHex) => &CONVENTIONS[2..3],
            None => &CONVENTIONS,
        }
    }

    /// The carrier accepted `msg` with `carrier_id` (its response). Returns receipts
    /// that arrived before and now match, with the message each belongs to.
    pub fn on_submitted(&mut self, carrier_id: &str, msg: MsgId) -> Vec<(MsgId, CarrierReceipt)> {
        self.unanswered = self.unanswered.saturating_sub(1);
        let mut out: Vec<(MsgId, CarrierReceipt)> = self
            .record(carrier_id, msg)
            .into_iter()
            .map(|r| (msg, r))
            .collect();
        out.extend(self.replay_if_quiet());
        out
    }

    /// Record a message confirmed before a restart (no response is awaited for it).
    pub fn preload(&mut self, carrier_id: &str, msg: MsgId) {
        let _ = self.record(carrier_id, msg);
    }

    fn record(&mut self, carrier_id: &str, msg: MsgId) -> Vec<CarrierReceipt> {
        let norm = normalize(carrier_id);
        let mut keys = Vec::with_capacity(3);
        for &c in self.active() {
            if let Some(k) = c.key(&norm) {
                self.maps[c as usize].insert(k.clone(), msg);
                keys.push((c, k));
            }
        }
        // Hand over receipts that came first. Not before the convention is known:
        // "26" parked may be message 38's hex receipt, not message 26's; those wait
        // for the replay when the convention settles.
        let mut early = Vec::new();
        if self.settled.is_some() {
            for (_, k) in &keys {
                if let Some((_, r)) = self.parked.remove(k) {
                    early.push(r);
                }
            }
        }
        // A message sent twice (after a lost connection) keeps both ids until it ends.
        self.keys.entry(msg).or_default().extend(keys);
        early
    }

    /// A receipt arrived: returns the matches it produced (none when it was parked;
    /// several when it settled the convention and parked receipts could be replayed).
    /// Intermediate receipts keep the mapping; the caller calls [`Matcher::forget`]
    /// once it has finished a message.
    pub fn on_receipt(&mut self, r: CarrierReceipt, now: u64) -> Vec<(MsgId, CarrierReceipt)> {
        let mut out = Vec::new();
        if let Some(learned) = self.offer(r, now, &mut out, true) {
            // The convention was just learned: replay what waited for it.
            self.settle(learned);
            let waiting: Vec<_> = self.parked.drain().map(|(_, (t, r))| (t, r)).collect();
            self.parked_order.clear();
            for (t, r) in waiting {
                self.offer(r, t, &mut out, false);
            }
        }
        out
    }

    /// Match or park one receipt; returns a convention when this receipt settled it.
    ///
    /// Before the convention is settled, a receipt is delivered only when it has a
    /// single candidate and no submit awaits its response: a receipt that overtook
    /// its own `submit_sm_resp` could otherwise find exactly one, wrong, candidate.
    /// Receipts that one convention alone explains count as evidence (`learn`).
    fn offer(
        &mut self,
        r: CarrierReceipt,
        at: u64,
        out: &mut Vec<(MsgId, CarrierReceipt)>,
        learn: bool,
    ) -> Option<IdConvention> {
        let norm = normalize(&r.id);
        if let Some(c) = self.settled {
            match self.maps[c as usize].get(&norm).copied() {
                Some(id) => out.push((id, r)),
                None => self.park(norm, r, at),
            }
            return None;
        }
        let mut found: [Option<MsgId>; 3] = [None; 3];
        for c in CONVENTIONS {
            found[c as usize] = self.maps[c as usize].get(&norm).copied();
        }
        let kinds: Vec<usize> = (0..3).filter(|&k| found[k].is_some()).collect();
        let mut distinct: Vec<MsgId> = found.iter().flatten().copied().collect();
        distinct.sort();
        distinct.dedup();
        let mut learned = None;
        if learn && let [k] = kinds.as_slice() {
            self.evidence[*k] += 1;
            let others: u64 = (0..3).filter(|i| i != k).map(|i| self.evidence[i]).sum();
            if self.evidence[*k] >= LEARN_AFTER && self.evidence[*k] >= 20 * others {
                learned = Some(CONVENTIONS[*k]);
            }
        }
        if distinct.len() > 1 {
            metrics::counter!("otpgw_receipts_ambiguous_total").increment(1);
        }
        match distinct.as_slice() {
            [id] if self.unanswered == 0 => out.push((*id, r)),
            _ => self.park(norm, r, at),
        }
        learned
    }

    fn settle(&mut self, c: IdConvention) {
        tracing::info!(convention = ?c, "carrier receipt id convention learned");
        self.settled = Some(c);
        for other in CONVENTIONS {
            if other != c {
                self.maps[other as usize].clear();
            }
        }
        for keys in self.keys.values_mut() {
            keys.retain(|(k, _)| *k == c);
        }
    }

    fn park(&mut self, norm: String, r: CarrierReceipt, at: u64) {
        if self.parked.len() >= self.max_parked
            && let Some((_, k)) = self.parked_order.pop_front()
        {
            self.parked.remove(&k);
            metrics::counter!("otpgw_receipts_unmatched_total").increment(1);
        }
        self.parked_order.push_back((at, norm.clone()));
        self.parked.insert(norm, (at, r));
    }

    /// The message a receipt another node could not match belongs to here, if any.
    /// Never parks: a receipt that is not this node's is simply not ours. Before the
    /// id convention is settled, several candidates are [`Lookup::Ambiguous`] (the
    /// caller asks again later).
    pub fn lookup(&self, r: &CarrierReceipt) -> Lookup {
        let norm = normalize(&r.id);
        if let Some(c) = self.settled {
            return self.maps[c as usize]
                .get(&norm)
                .copied()
                .map_or(Lookup::None, Lookup::Found);
        }
        let mut found: Vec<MsgId> = CONVENTIONS
            .iter()
            .filter_map(|c| self.maps[*c as usize].get(&norm).copied())
            .collect();
        found.sort();
        found.dedup();
        match found.as_slice() {
            [] => Lookup::None,
            [id] if self.unanswered == 0 => Lookup::Found(*id),
            _ => Lookup::Ambiguous,
        }
    }

    /// Forget a finished message's ids.
    pub fn forget(&mut self, msg: MsgId) {
        if let Some(keys) = self.keys.remove(&msg) {
            for (c, k) in keys {
                let m = &mut self.maps[c as usize];
                if m.get(&k) == Some(&msg) {
                    m.remove(&k);
                }
            }
        }
    }

    /// Drop parked receipts older than the TTL; returns how many were dropped.
    pub fn expire(&mut self, now: u64) -> usize {
        let mut n = 0;
        while let Some((t, _)) = self.parked_order.front() {
            if now.saturating_sub(*t) < self.park_ttl.as_millis() as u64 {
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

    fn fixed(c: IdConvention) -> Matcher {
        Matcher::new(IdMode::Fixed(c), Duration::from_secs(60), 1000)
    }

    fn ids(v: Vec<(MsgId, CarrierReceipt)>) -> Vec<u64> {
        v.into_iter().map(|(m, _)| m.0).collect()
    }

    #[test]
    fn normalisation_and_keys() {
        assert_eq!(normalize(" 00AbC "), "abc");
        assert_eq!(normalize("0000"), "0");
        assert_eq!(IdConvention::HexToDecimal.key("ff"), Some("255".into()));
        assert_eq!(IdConvention::DecimalToHex.key("255"), Some("ff".into()));
        assert_eq!(IdConvention::DecimalToHex.key("ff"), None);
        assert_eq!(IdConvention::HexToDecimal.key("xyz"), None);
    }

    #[test]
    fn fixed_conventions_case_and_zeros() {
        let now: u64 = 1_000_000;
        let mut m = fixed(IdConvention::HexToDecimal);
        m.on_submitted("1A2B", MsgId(1));
        assert_eq!(ids(m.on_receipt(r("0006699"), now)), vec![1]);
        let mut m = fixed(IdConvention::DecimalToHex);
        m.on_submitted("0000012345", MsgId(2));
        assert_eq!(ids(m.on_receipt(r("3039"), now)), vec![2]);
        let mut m = fixed(IdConvention::Same);
        m.on_submitted("abc", MsgId(3));
        assert_eq!(ids(m.on_receipt(r("000ABC"), now)), vec![3]);
    }

    #[test]
    fn auto_learns_hex_to_decimal_and_never_misroutes() {
        // A carrier answering in hex and receipting in decimal, with every message in
        // flight at once: "16" is message 16's receipt and message 22's hex id.
        let now: u64 = 1_000_000;
        let mut m = Matcher::new(IdMode::Auto, Duration::from_secs(60), 10_000);
        for n in 1..=2000u64 {
            m.sent();
            assert!(m.on_submitted(&format!("{n:X}"), MsgId(n)).is_empty());
        }
        let mut got = Vec::new();
        for n in 1..=2000u64 {
            for (id, rc) in m.on_receipt(r(&n.to_string()), now) {
                // the receipt carries the decimal id of its own message
                assert_eq!(rc.id.parse::<u64>().unwrap(), id.0, "misrouted receipt");
                got.push(id.0);
                m.forget(id);
            }
        }
        assert_eq!(m.convention(), Some(IdConvention::HexToDecimal));
        got.sort();
        assert_eq!(got, (1..=2000).collect::<Vec<_>>());
        assert_eq!(m.sizes(), (0, 0));
    }

    #[test]
    fn auto_never_misroutes_receipts_that_overtake_their_response() {
        // Hex responses, decimal receipts, 200 messages in flight ahead; every fourth
        // receipt arrives before the response carrying its id (it came on another
        // bind), while later messages whose hex ids read like its decimal id are known.
        let now: u64 = 1_000_000;
        let mut m = Matcher::new(IdMode::Auto, Duration::from_secs(60), 100_000);
        let mut got = Vec::new();
        let delayed = |n: u64| n.is_multiple_of(4);
        let mut next = 1u64;
        for n in 1..=3000u64 {
            let mut delivered = Vec::new();
            while next <= (n + 200).min(3000) {
                m.sent();
                if !delayed(next) {
                    delivered.extend(m.on_submitted(&format!("{next:X}"), MsgId(next)));
                }
                next += 1;
            }
            delivered.extend(m.on_receipt(r(&n.to_string()), now));
            if delayed(n) {
                delivered.extend(m.on_submitted(&format!("{n:X}"), MsgId(n)));
            }
            for (id, rc) in delivered {
                assert_eq!(rc.id.parse::<u64>().unwrap(), id.0, "misrouted receipt");
                got.push(id.0);
                m.forget(id);
            }
        }
        assert_eq!(m.convention(), Some(IdConvention::HexToDecimal));
        got.sort();
        got.dedup();
        assert_eq!(got.len(), 3000, "every receipt delivered once");
    }

    #[test]
    fn auto_learns_same_for_consistent_decimal_carrier() {
        let now: u64 = 1_000_000;
        let mut m = Matcher::new(IdMode::Auto, Duration::from_secs(60), 10_000);
        for n in 1..=5000u64 {
            m.on_submitted(&n.to_string(), MsgId(n));
        }
        let mut got = 0;
        for n in (1..=5000u64).rev() {
            for (id, rc) in m.on_receipt(r(&format!("{n:010}")), now) {
                assert_eq!(normalize(&rc.id), id.0.to_string());
                got += 1;
                m.forget(id);
            }
        }
        assert_eq!(got, 5000);
        assert_eq!(m.convention(), Some(IdConvention::Same));
    }

    #[test]
    fn receipt_before_response_is_parked_then_handed_over() {
        let now: u64 = 1_000_000;
        let mut m = fixed(IdConvention::Same);
        assert!(m.on_receipt(r("ABC"), now).is_empty());
        assert_eq!(m.on_submitted("abc", MsgId(7)), vec![(MsgId(7), r("ABC"))]);
        assert_eq!(m.sizes().1, 0);
        let mut m = fixed(IdConvention::HexToDecimal);
        assert!(m.on_receipt(r("4095"), now).is_empty());
        assert_eq!(m.on_submitted("FFF", MsgId(8)).len(), 1);
        // Auto, not settled yet: an early receipt is not handed over on a guess...
        let mut m = Matcher::new(IdMode::Auto, Duration::from_secs(60), 100);
        m.sent();
        m.sent();
        assert!(m.on_receipt(r("26"), now).is_empty()); // really message 38's (hex 0x26)
        assert!(m.on_submitted("26", MsgId(26)).is_empty());
        assert!(
            m.on_submitted("38", MsgId(38)).is_empty(),
            "ambiguous: must wait"
        );
        // ...but replayed to the right message once the convention is learned.
        for n in 1000..1000 + LEARN_AFTER {
            m.sent();
            m.on_submitted(&n.to_string(), MsgId(n));
        }
        let mut got = Vec::new();
        for n in 1000..1000 + LEARN_AFTER {
            got.extend(ids(m.on_receipt(r(&format!("{n:x}")), now)));
        }
        assert_eq!(m.convention(), Some(IdConvention::DecimalToHex));
        assert!(got.contains(&38) && !got.contains(&26), "{got:?}");
    }

    #[test]
    fn a_single_receipt_is_delivered_once_no_submit_awaits_its_response() {
        // A quiet carrier never gives 16 receipts to learn from: a receipt with one
        // candidate goes out as soon as no response is outstanding.
        let now: u64 = 1_000_000;
        let mut m = Matcher::new(IdMode::Auto, Duration::from_secs(60), 100);
        m.sent();
        m.sent();
        assert!(m.on_submitted("1F", MsgId(1)).is_empty());
        assert!(
            m.on_receipt(r("31"), now).is_empty(),
            "one response still outstanding"
        );
        assert_eq!(m.answered(1), vec![(MsgId(1), r("31"))]);
        assert_eq!(m.convention(), None);
        m.sent();
        m.on_submitted("2A", MsgId(2));
        assert_eq!(m.on_receipt(r("42"), now), vec![(MsgId(2), r("42"))]);
    }

    #[test]
    fn forget_and_expire() {
        let now: u64 = 1_000_000;
        let mut m = fixed(IdConvention::Same);
        m.on_submitted("99", MsgId(1));
        m.forget(MsgId(1));
        assert!(m.on_receipt(r("99"), now).is_empty());
        assert_eq!(m.expire(now + 59_000), 0);
        assert_eq!(m.expire(now + 61_000), 1);
        assert_eq!(m.sizes(), (0, 0));
    }
}
