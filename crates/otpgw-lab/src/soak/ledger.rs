//! The campaign's ledger and its checker, independent of otpgw's own counters:
//! what the brand saw acknowledged and the receipts it got (from the load
//! generator), and what each carrier received (from the simulators). Free of IO.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use otpgw_proto::receipt::DeliveryState;

/// One acknowledged message.
#[derive(Debug, Clone)]
pub struct Acked {
    pub id: String,
    /// When the brand got its `submit_sm_resp` (the latest a deadline can start).
    pub at: Instant,
}

/// What the campaign saw.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Acknowledged messages by index.
    pub acked: HashMap<u64, Acked>,
    /// Messages the brand was refused (an error status, not a missing answer), by
    /// index: when the load round that was refused began.
    pub refused: HashMap<u64, Instant>,
    /// When a node was killed.
    pub kills: Vec<Instant>,
    /// Receipts the brand got, by otpgw message id: the state, and the span of the
    /// load round that got it (when it arrived, to within a round).
    pub receipts: HashMap<String, Vec<Got>>,
    /// Submits each carrier received, by message index: (carrier, when).
    pub at_carrier: HashMap<u64, Vec<(&'static str, Instant)>>,
    /// When the campaign cut something: a resend to a carrier is expected only
    /// across one of these.
    pub windows: Vec<Window>,
    /// When the campaign began (samples give times from it).
    pub start: Option<Instant>,
}

/// One receipt the brand got.
#[derive(Debug, Clone, Copy)]
pub struct Got {
    pub state: DeliveryState,
    /// The round that got it began and ended then.
    pub from: Instant,
    pub to: Instant,
}

/// A span of time in which a fault could leave a submit's fate unknown to the
/// gateway (a bind cut, a silent carrier, a killed node).
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// The carrier whose link it concerns; `None`: every carrier (a node killed).
    pub carrier: Option<&'static str>,
    pub from: Instant,
    pub to: Instant,
}

/// The checker's numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Verdict {
    pub acked: u64,
    /// Acknowledged, never at any carrier, and no EXPIRED receipt to say why: must
    /// be 0.
    pub lost: u64,
    /// Acknowledged, expired before any carrier could take it, and the brand was
    /// told so (an EXPIRED receipt): allowed, counted.
    pub expired_unsent: u64,
    /// Acknowledged, no receipt at the brand: must be 0.
    pub missing_receipts: u64,
    /// Receipts beyond the first for a message. Receipts are at least once: one
    /// the brand got just before a node was killed, whose acknowledgement the node
    /// had not yet recorded, comes again after the restart.
    pub duplicate_receipts: u64,
    /// Of those, the ones no node kill (or Redis restart) lies between: must be 0.
    pub duplicate_receipts_unexplained: u64,
    /// Messages whose receipts disagree (two different final states).
    pub conflicting_receipts: u64,
    /// Messages a carrier received more than once.
    pub duplicates_at_carrier: u64,
    /// Of those, the ones whose sends no fault window lies between: must be 0.
    pub duplicates_unexplained: u64,
    /// Messages sent through a second carrier (fallback after a receipt timeout).
    pub fallbacks: u64,
    /// Submits after the message's deadline: must be 0.
    pub late: u64,
    /// Receipts for ids the brand was never given.
    pub unknown_receipts: u64,
    /// Messages a carrier received although the brand was refused them (it would
    /// send again, and the phone gets the code twice).
    pub sent_though_refused: u64,
    /// Of those, the ones no node kill lies between the refusal and the send: must
    /// be 0 (a node killed while Redis is away forgets which refused accepts Redis
    /// may have written, see docs/operations.md).
    pub sent_though_refused_unexplained: u64,
    /// A few message ids of each kind above, for the post-mortem ("kind id").
    pub samples: Vec<String>,
}

impl Verdict {
    fn sample(&mut self, kind: &str, id: &str) {
        if self.samples.iter().filter(|s| s.starts_with(kind)).count() < 5 {
            self.samples.push(format!("{kind} {id}"));
        }
    }

    /// Whether every must-be-zero number is zero.
    pub fn clean(&self) -> bool {
        self.lost == 0
            && self.missing_receipts == 0
            && self.duplicate_receipts_unexplained == 0
            && self.conflicting_receipts == 0
            && self.late == 0
            && self.duplicates_unexplained == 0
            && self.sent_though_refused_unexplained == 0
    }
}

impl Ledger {
    /// Whether a fault window that `concerns` lies (at least partly) between
    /// `first` and `last`.
    fn fault_between(
        &self,
        first: Option<Instant>,
        last: Option<Instant>,
        concerns: impl Fn(&Window) -> bool,
    ) -> bool {
        let (Some(first), Some(last)) = (first, last) else {
            return false;
        };
        self.windows
            .iter()
            .any(|w| concerns(w) && w.from <= last && w.to >= first)
    }

    /// Check it: `validity` is every message's lifetime.
    pub fn check(&self, validity: Duration) -> Verdict {
        let mut v = Verdict {
            acked: self.acked.len() as u64,
            ..Default::default()
        };
        for (i, a) in &self.acked {
            let sends = self
                .at_carrier
                .get(i)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let receipts = self.receipts.get(&a.id);
            if sends.is_empty() {
                let told =
                    receipts.is_some_and(|r| r.iter().any(|g| g.state == DeliveryState::Expired));
                if told {
                    v.expired_unsent += 1;
                    v.sample("expired_unsent", &a.id);
                } else {
                    v.lost += 1;
                    v.sample("lost", &a.id);
                }
            }
            let deadline = a.at + validity;
            let late = sends.iter().filter(|(_, t)| *t > deadline).count() as u64;
            if late > 0 {
                v.late += late;
                v.sample("late", &a.id);
            }
            match receipts {
                None => {
                    v.missing_receipts += 1;
                    v.sample("missing_receipt", &a.id);
                }
                Some(r) => {
                    let extra = r.len().saturating_sub(1) as u64;
                    v.duplicate_receipts += extra;
                    if extra > 0 {
                        // Only a node kill (or a Redis restart) repeats a receipt.
                        let explained = self.fault_between(
                            r.iter().map(|g| g.from).min(),
                            r.iter().map(|g| g.to).max(),
                            |w| w.carrier.is_none(),
                        );
                        if !explained {
                            v.duplicate_receipts_unexplained += extra;
                            v.sample("duplicate_receipt", &a.id);
                        }
                    }
                    if r.iter().any(|g| g.state != r[0].state) {
                        v.conflicting_receipts += 1;
                        v.sample("conflicting_receipts", &a.id);
                    }
                }
            }
        }
        for (i, sends) in &self.at_carrier {
            let mut per: BTreeMap<&str, usize> = BTreeMap::new();
            for (c, _) in sends {
                *per.entry(c).or_default() += 1;
            }
            if per.values().any(|n| *n > 1) {
                v.duplicates_at_carrier += 1;
                let explained = per.iter().filter(|(_, n)| **n > 1).all(|(c, _)| {
                    let times = sends.iter().filter(|(x, _)| x == c).map(|(_, t)| *t);
                    self.fault_between(times.clone().min(), times.max(), |w| {
                        w.carrier.is_none_or(|wc| wc == *c)
                    })
                });
                if !explained {
                    v.duplicates_unexplained += 1;
                    let mut id = self
                        .acked
                        .get(i)
                        .map_or(format!("index {i}"), |a| a.id.clone());
                    let start = self.start.unwrap_or_else(Instant::now);
                    let mut sends = sends.clone();
                    sends.sort_by_key(|(_, t)| *t);
                    for (c, t) in sends {
                        let at = t.saturating_duration_since(start).as_secs_f64();
                        id.push_str(&format!(" {c}@{at:.3}s"));
                    }
                    v.sample("duplicate_at_carrier", &id);
                }
            }
            if per.len() > 1 {
                v.fallbacks += 1;
            }
        }
        for (i, refused_at) in &self.refused {
            if self.acked.contains_key(i) {
                continue;
            }
            let Some(first) = self
                .at_carrier
                .get(i)
                .and_then(|s| s.iter().map(|(_, t)| *t).min())
            else {
                continue;
            };
            v.sent_though_refused += 1;
            if !self.kills.iter().any(|k| *k >= *refused_at && *k <= first) {
                v.sent_though_refused_unexplained += 1;
                v.sample("sent_though_refused", &format!("index {i}"));
            }
        }
        let known: std::collections::HashSet<&str> =
            self.acked.values().map(|a| a.id.as_str()).collect();
        v.unknown_receipts = self
            .receipts
            .keys()
            .filter(|id| !known.contains(id.as_str()))
            .count() as u64;
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fault_is_named() {
        let t = Instant::now();
        let later = t + Duration::from_secs(700);
        let mut l = Ledger::default();
        for (i, id) in ["a", "b", "c", "d", "e", "f", "g", "h"].iter().enumerate() {
            let acked = Acked {
                id: (*id).into(),
                at: t,
            };
            l.acked.insert(i as u64 + 1, acked);
        }
        let got = |state, from, to| Got { state, from, to };
        let dl = DeliveryState::Delivered;
        // A bind of carrier b cut at t+5 s; a node killed at t+3 s.
        let cut = t + Duration::from_secs(5);
        l.windows.push(Window {
            carrier: Some("b"),
            from: cut,
            to: cut,
        });
        let kill = t + Duration::from_secs(3);
        l.windows.push(Window {
            carrier: None,
            from: kill,
            to: kill,
        });
        // 1: fine. 2: twice at a (no window for a), then b after its deadline,
        // receipts that disagree. 3: a then b (a fallback), no receipt. 4: never
        // at a carrier, no receipt (lost). 5: never at a carrier, EXPIRED told.
        // 6: twice at b across the cut, late; its receipt twice across the kill.
        // 7: twice at a before the kill. 8: two receipts in rounds before the kill.
        l.at_carrier.insert(1, vec![("a", t)]);
        l.at_carrier
            .insert(2, vec![("a", t), ("a", t), ("b", later)]);
        l.at_carrier.insert(3, vec![("a", t), ("b", t)]);
        l.at_carrier.insert(6, vec![("b", t), ("b", later)]);
        let before = t + Duration::from_secs(1);
        l.at_carrier.insert(7, vec![("a", t), ("a", before)]);
        l.at_carrier.insert(8, vec![("a", t)]);
        l.receipts.insert("a".into(), vec![got(dl, t, t)]);
        l.receipts.insert(
            "b".into(),
            vec![got(dl, t, t), got(DeliveryState::Undeliverable, t, t)],
        );
        l.receipts
            .insert("e".into(), vec![got(DeliveryState::Expired, t, t)]);
        l.receipts.insert(
            "f".into(),
            vec![got(dl, t, t), got(dl, t + Duration::from_secs(5), later)],
        );
        l.receipts.insert("g".into(), vec![got(dl, t, t)]);
        l.receipts
            .insert("h".into(), vec![got(dl, t, before), got(dl, t, before)]);
        l.receipts.insert("zz".into(), vec![got(dl, t, t)]);
        // 20: refused, sent anyway, no kill between. 21: refused, a node killed
        // before it was sent. 22: refused, never sent.
        l.kills.push(kill);
        l.refused.insert(20, later);
        l.at_carrier.insert(20, vec![("a", later)]);
        l.refused.insert(21, t);
        l.at_carrier.insert(21, vec![("a", later)]);
        l.refused.insert(22, t);
        let v = l.check(Duration::from_secs(600));
        assert_eq!(v.samples.len(), 12, "{:?}", v.samples);
        assert_eq!(
            v,
            Verdict {
                samples: v.samples.clone(),
                acked: 8,
                lost: 1,
                expired_unsent: 1,
                missing_receipts: 2,
                duplicate_receipts: 3,
                duplicate_receipts_unexplained: 2,
                conflicting_receipts: 1,
                duplicates_at_carrier: 3,
                duplicates_unexplained: 2,
                fallbacks: 2,
                late: 2,
                unknown_receipts: 1,
                sent_though_refused: 2,
                sent_though_refused_unexplained: 1,
            }
        );
        assert!(!v.clean());
    }
}
