//! Model-based property test of dispatch on simulated time: the real dispatcher,
//! carrier queues, rate limiters and retry policy, driven the way a carrier bind
//! drives them, against random arrivals (OTP and bulk, short and long deadlines),
//! carrier outages with failover, hidden carrier capacities that answer "throttled",
//! and temporary errors. A plain reference model of what is queued where is kept
//! beside it and checked at every step:
//!
//! - no message is submitted at or after its deadline;
//! - a bulk message is never submitted by a carrier while an OTP message is ready
//!   (queued there, not waiting for a retry time, not expired);
//! - no carrier gets more than its configured rate in any one-second window (plus
//!   the limiter's stated burst);
//! - nothing is lost: at the end every accepted message was submitted exactly once
//!   with success or finished as expired.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use otpgw_core::{Class, Message, MsgId};
use otpgw_dispatch::{Dispatcher, RateLimiter, RetryCause, RetryPolicy, Routes};
use proptest::prelude::*;

/// A small deterministic generator (splitmix64), so a failing case replays exactly.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

#[derive(Debug, Clone)]
struct Params {
    seed: u64,
    caps: [u32; 2],
    /// What each carrier really takes per second before answering "throttled".
    true_caps: [u32; 2],
    /// Arrivals per second.
    arrivals: u32,
    otp_per_mille: u64,
    error_per_mille: u64,
    outages: Vec<(u64, u64, usize)>,
}

fn params() -> impl Strategy<Value = Params> {
    (
        any::<u64>(),
        (50u32..400, 50u32..400),
        (20u32..500, 20u32..500),
        100u32..900,
        0u64..1000,
        0u64..50,
        proptest::collection::vec((0u64..8_000, 200u64..3_000, 0usize..2), 0..4),
    )
        .prop_map(
            |(seed, caps, true_caps, arrivals, otp, err, outages)| Params {
                seed,
                caps: [caps.0, caps.1],
                true_caps: [true_caps.0, true_caps.1],
                arrivals,
                otp_per_mille: otp,
                error_per_mille: err,
                outages,
            },
        )
}

const CARRIERS: [&str; 2] = ["a", "b"];
const WINDOW: usize = 20;
const FAILOVER_AFTER: u64 = 500;
const RUN_MS: u64 = 10_000;

#[derive(Debug, Clone, Copy)]
struct Queued {
    carrier: usize,
    ready_at: u64,
}

struct Model {
    p: Params,
    rng: Rng,
    base: u64,
    d: Dispatcher,
    limiters: Vec<RateLimiter>,
    retry: RetryPolicy,
    /// The reference: where each queued message is, and from when it is ready.
    queued: HashMap<MsgId, Queued>,
    msgs: HashMap<MsgId, Arc<Message>>,
    sent_ok: HashMap<MsgId, u64>,
    expired: HashMap<MsgId, u64>,
    /// Submit times per carrier in the last second (for the rate check).
    recent: [VecDeque<u64>; 2],
    /// Submits per carrier in the current whole second (the hidden capacity).
    this_second: [(u64, u32); 2],
    down_since: [Option<u64>; 2],
    next_id: u64,
    accepted: u64,
}

impl Model {
    fn new(p: Params) -> Self {
        let base = 0;
        let names: Vec<String> = CARRIERS.iter().map(|s| s.to_string()).collect();
        let d = Dispatcher::new(Routes::new(names.clone()), &names, 5_000);
        d.set_refuse_after_down(0);
        let limiters = p
            .caps
            .iter()
            .map(|c| RateLimiter::new(Some(f64::from(*c)), base))
            .collect();
        Self {
            rng: Rng(p.seed),
            p,
            base,
            d,
            limiters,
            retry: RetryPolicy::default(),
            queued: HashMap::new(),
            msgs: HashMap::new(),
            sent_ok: HashMap::new(),
            expired: HashMap::new(),
            recent: [VecDeque::new(), VecDeque::new()],
            this_second: [(0, 0), (0, 0)],
            down_since: [None, None],
            next_id: 1,
            accepted: 0,
        }
    }

    fn instant(&self, t: u64) -> u64 {
        self.base + t
    }

    fn carrier_index(&self, name: &str) -> usize {
        CARRIERS
            .iter()
            .position(|c| *c == name)
            .expect("known carrier")
    }

    fn is_down(&self, c: usize, t: u64, outages_on: bool) -> bool {
        outages_on
            && self
                .p
                .outages
                .iter()
                .any(|(start, len, which)| *which == c && t >= *start && t < start + len)
    }

    fn arrive(&mut self, t: u64) {
        // Arrivals spread over the second: each millisecond a chance.
        if !self.rng.chance(u64::from(self.p.arrivals)) {
            return;
        }
        let class = if self.rng.chance(self.p.otp_per_mille) {
            Class::Otp
        } else {
            Class::Bulk
        };
        let lifetime = 50 + self.rng.below(5_000);
        let id = MsgId(self.next_id);
        self.next_id += 1;
        let Ok(q) = self.d.check("brand", "447400900123", t) else {
            return;
        };
        let carrier = self.carrier_index(q.carrier());
        let msg = Arc::new(Message {
            id,
            brand: "brand".into(),
            to: Default::default(),
            body: Default::default(),
            class,
            accepted_ms: t,
            deadline_ms: t + lifetime,
            attempts: Default::default(),
            extra: None,
            origin: 0,
            progress: Default::default(),
            group: None,
        });
        self.accepted += 1;
        self.msgs.insert(id, msg.clone());
        self.queued.insert(
            id,
            Queued {
                carrier,
                ready_at: t,
            },
        );
        let q = q.clone();
        self.d.enqueue(&q, msg, t);
    }

    fn note_expired(&mut self, list: Vec<Arc<Message>>, t: u64) -> Result<(), TestCaseError> {
        for m in list {
            prop_assert!(m.deadline_ms <= t, "expired early");
            prop_assert!(self.queued.remove(&m.id).is_some(), "expired twice");
            prop_assert!(self.expired.insert(m.id, t).is_none());
        }
        Ok(())
    }

    /// Carrier availability and failover, as the carrier's housekeeping does it.
    fn availability(&mut self, t: u64, outages_on: bool) -> Result<(), TestCaseError> {
        for (c, name) in CARRIERS.iter().enumerate() {
            let q = self.d.queue(name).expect("queue");
            let down = self.is_down(c, t, outages_on);
            q.set_available(!down, t);
            if !down {
                self.down_since[c] = None;
                continue;
            }
            let since = *self.down_since[c].get_or_insert(t);
            if t - since >= FAILOVER_AFTER {
                // Every message waiting here is ready at once: moved, or put back.
                for e in self.queued.values_mut().filter(|e| e.carrier == c) {
                    e.ready_at = e.ready_at.min(t);
                }
                let mut expired = Vec::new();
                let moved = self.d.fail_over(name, t, &mut expired);
                self.note_expired(expired, t)?;
                for (id, to) in moved {
                    let to = self.carrier_index(&to);
                    let e = self.queued.get_mut(&id).expect("queued in the reference");
                    e.carrier = to;
                }
            }
        }
        Ok(())
    }

    /// One carrier's bind at `t`: take what the window and the limiter allow, submit.
    fn send(&mut self, c: usize, t: u64, outages_on: bool) -> Result<(), TestCaseError> {
        if self.is_down(c, t, outages_on) {
            return Ok(());
        }
        let q = self.d.queue(CARRIERS[c]).expect("queue");
        let (mut out, mut expired) = (Vec::new(), Vec::new());
        q.try_pop(WINDOW, t, &mut out, &mut expired);
        self.note_expired(expired, t)?;
        let now = self.instant(t);
        let granted = self.limiters[c].take(out.len(), now);
        for m in out.drain(granted..).rev() {
            q.push(m, t);
        }
        for m in out {
            let r = self
                .queued
                .remove(&m.id)
                .expect("popped message was queued");
            prop_assert_eq!(r.carrier, c, "popped from the wrong carrier");
            prop_assert!(r.ready_at <= t, "retry sent before its time");
            prop_assert!(t < m.deadline_ms, "submitted at or after its deadline");
            if m.class == Class::Bulk {
                let ready_otp = self.queued.iter().any(|(id, e)| {
                    let o = &self.msgs[id];
                    e.carrier == c && e.ready_at <= t && o.class == Class::Otp && o.deadline_ms > t
                });
                prop_assert!(!ready_otp, "bulk sent while an OTP was ready");
            }
            // The configured rate in any one-second window (plus the burst).
            let recent = &mut self.recent[c];
            recent.push_back(t);
            while recent.front().is_some_and(|s| *s + 1000 <= t) {
                recent.pop_front();
            }
            let cap = f64::from(self.p.caps[c]);
            let allowed = (cap * 1.1).ceil() as usize + 1;
            prop_assert!(
                recent.len() <= allowed,
                "rate exceeded: {} > {}",
                recent.len(),
                allowed
            );
            // The carrier's answer.
            let sec = t / 1000;
            let (s, n) = &mut self.this_second[c];
            if *s != sec {
                *s = sec;
                *n = 0;
            }
            *n += 1;
            let cause = if *n > self.p.true_caps[c] {
                self.limiters[c].on_throttled(now);
                Some(RetryCause::Throttled)
            } else if self.rng.chance(self.p.error_per_mille) {
                Some(RetryCause::Temporary)
            } else {
                None
            };
            match cause {
                None => {
                    prop_assert!(self.sent_ok.insert(m.id, t).is_none(), "sent twice");
                }
                Some(cause) => {
                    let attempt = m.note_attempt();
                    let at = self
                        .retry
                        .retry_at(cause, attempt, t, m.deadline_ms, self.rng.next());
                    prop_assert!(at >= t && at < m.deadline_ms, "retry time out of range");
                    self.queued.insert(
                        m.id,
                        Queued {
                            carrier: c,
                            ready_at: at,
                        },
                    );
                    q.push_at(m, at);
                }
            }
        }
        Ok(())
    }

    fn run(mut self) -> Result<(), TestCaseError> {
        let mut t = 0;
        while t < RUN_MS {
            self.arrive(t);
            self.availability(t, true)?;
            for c in 0..2 {
                self.send(c, t, true)?;
            }
            if t % 1000 == 0 {
                for name in CARRIERS {
                    let mut expired = Vec::new();
                    self.d.queue(name).expect("q").expire(t, &mut expired);
                    self.note_expired(expired, t)?;
                }
            }
            t += 1;
        }
        // Drain: carriers up, no arrivals, until everything left (bounded: every
        // deadline is at most 5 s after the last arrival).
        let end = t + 20_000;
        while !self.queued.is_empty() && t < end {
            self.availability(t, false)?;
            for c in 0..2 {
                self.send(c, t, false)?;
            }
            t += 1;
        }
        prop_assert!(
            self.queued.is_empty(),
            "{} messages never left",
            self.queued.len()
        );
        prop_assert_eq!(self.d.depth(), 0);
        let done = self.sent_ok.len() + self.expired.len();
        prop_assert_eq!(done as u64, self.accepted, "lost or duplicated messages");
        for id in self.sent_ok.keys() {
            prop_assert!(!self.expired.contains_key(id));
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("OTPGW_MODEL_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)
    ))]
    #[test]
    fn dispatch_keeps_deadlines_priorities_rates_and_every_message(p in params()) {
        Model::new(p).run()?;
    }
}
