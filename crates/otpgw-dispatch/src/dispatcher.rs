//! [`Dispatcher`]: the one authority for carrier choices. Every decision about which
//! carrier a message goes to is made here:
//!
//! - a new message: [`Dispatcher::check`] (before the store is asked: a route, room
//!   in its queue, a carrier up lately) then [`Dispatcher::enqueue`];
//! - a send that failed on a carrier: [`Dispatcher::retry`] (the same carrier after a
//!   backoff, or after `failover_attempts` failures the next available carrier);
//! - a carrier down or failing for a while: [`Dispatcher::fail_over`] moves its queue;
//! - an OTP whose receipt did not come in time: [`Dispatcher::resend`] (a carrier of
//!   its route not tried yet);
//! - a message recovered after a restart or from a dead node: [`Dispatcher::requeue`].
//!
//! Carriers only report what happened (accepted, refused, throttled, down); they
//! never pick another carrier.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use otpgw_core::{Message, MsgId};

use crate::quality::{self, Quality, QualityConfig};
use crate::queue::CarrierQueue;
use crate::retry::{RetryCause, RetryPolicy};
use crate::routes::{Routes, Select};

/// Why a message could not be queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DispatchError {
    /// No route matches the destination.
    #[error("no route for destination")]
    NoRoute,
    /// The carrier's queue is at capacity: the brand gets ESME_RMSGQFUL.
    #[error("queue full for carrier {0}")]
    QueueFull(String),
    /// No carrier of the route has been available for the configured time: the
    /// brand gets ESME_RTHROTTLED rather than a message that waits in vain.
    #[error("no carrier of the route available (first: {0})")]
    NoCarrier(String),
}

/// A carrier name the dispatcher has no queue for (a route naming it, or a carrier
/// started under it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("carrier {0:?} is not running")]
pub struct UnknownCarrier(pub String);

/// How a carrier's failed sends are offered again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetryRule {
    /// Backoff of retries on the same carrier.
    pub policy: RetryPolicy,
    /// After this many failed sends of one message on the carrier (throttling not
    /// counted), it moves to the next available carrier of its route (0: never).
    pub failover_attempts: u32,
}

/// Where [`Dispatcher::retry`] put a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retried {
    /// Back on the same carrier, after its backoff.
    Same,
    /// On another carrier of its route (failover).
    Moved(String),
}

/// Routes messages into per-carrier queues; see the module docs.
#[derive(Debug)]
pub struct Dispatcher {
    /// Reloaded on SIGHUP.
    routes: parking_lot::RwLock<Routes>,
    queues: HashMap<String, Arc<CarrierQueue>>,
    /// Per carrier: how its failed sends are retried.
    retry_rules: parking_lot::RwLock<HashMap<String, RetryRule>>,
    /// Refuse new messages for a route whose carriers have all been unavailable this
    /// long (ms; 0 = never refuse). Reloadable.
    refuse_after_down_ms: AtomicU64,
    /// Carrier quality, for routes that choose by it (and the admin API).
    quality: parking_lot::Mutex<Quality>,
    /// Share of quality-routed messages sent to a carrier other than the best, in
    /// millionths (reloadable).
    explore_ppm: AtomicU64,
    /// State of the pseudo-random draws (exploration, retry jitter).
    draws: AtomicU64,
}

impl Dispatcher {
    /// A dispatcher over `routes`, with one queue per carrier name.
    pub fn new(routes: Routes, carriers: &[String], capacity: usize) -> Self {
        let queues = carriers
            .iter()
            .map(|c| (c.clone(), Arc::new(CarrierQueue::new(c.clone(), capacity))))
            .collect();
        Self {
            routes: parking_lot::RwLock::new(routes),
            queues,
            retry_rules: Default::default(),
            refuse_after_down_ms: AtomicU64::new(0),
            quality: parking_lot::Mutex::new(Quality::new(QualityConfig::default())),
            explore_ppm: AtomicU64::new(50_000),
            draws: AtomicU64::new(0x9E37_79B9_7F4A_7C15),
        }
    }

    /// Measure carrier quality with these settings (clears what was measured).
    pub fn set_quality(&self, cfg: QualityConfig, explore: f64) {
        *self.quality.lock() = Quality::new(cfg);
        self.set_explore(explore);
    }

    /// The exploration share of quality routing (0 to 1).
    pub fn set_explore(&self, explore: f64) {
        self.explore_ppm
            .store((explore.clamp(0.0, 1.0) * 1e6) as u64, Ordering::Relaxed);
    }

    /// How failed sends on `carrier` are retried.
    pub fn set_retry_rule(&self, carrier: &str, rule: RetryRule) {
        self.retry_rules.write().insert(carrier.to_string(), rule);
    }

    /// The quality measurements.
    pub fn quality(&self) -> &parking_lot::Mutex<Quality> {
        &self.quality
    }

    /// A uniform draw in [0, 1).
    fn draw(&self) -> f64 {
        (self.random() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A uniform random `u64` (splitmix64 over a counter: cheap, no lock).
    fn random(&self) -> u64 {
        let mut z = self
            .draws
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Refuse messages for a route once none of its carriers was available for
    /// `ms` milliseconds (0: never refuse, let them wait in the queue).
    pub fn set_refuse_after_down(&self, ms: u64) {
        self.refuse_after_down_ms.store(ms, Ordering::Relaxed);
    }

    /// Replace the routing table (every carrier it names must have a queue).
    pub fn set_routes(&self, routes: Routes) -> Result<(), UnknownCarrier> {
        if let Some(c) = routes.carriers().find(|c| !self.queues.contains_key(*c)) {
            return Err(UnknownCarrier(c.to_string()));
        }
        *self.routes.write() = routes;
        Ok(())
    }

    /// The queue of a carrier.
    pub fn queue(&self, carrier: &str) -> Option<Arc<CarrierQueue>> {
        self.queues.get(carrier).cloned()
    }

    /// All carrier queues.
    pub fn queues(&self) -> impl Iterator<Item = &Arc<CarrierQueue>> {
        self.queues.values()
    }

    /// The queue for a message: among the carriers of its route that are
    /// available (a bind up, not paused), skipping those in `tried`, the first (an
    /// ordered route) or the best by measured quality (a quality route prefers
    /// carriers not backlogged (more queued than a second of their rate), then the
    /// best recent on-time ratio for the destination's prefix, with the exploration
    /// share going to the others); when none is available, the first carrier not
    /// in `tried` (it waits there for a bind to come back). `NoRoute` when the route
    /// has no carrier outside `tried`.
    pub fn route<S: AsRef<str>>(
        &self,
        brand: &str,
        dest: &str,
        tried: &[S],
        now_ms: u64,
    ) -> Result<&Arc<CarrierQueue>, DispatchError> {
        let routes = self.routes.read();
        let (list, select) = routes
            .route_for(brand, dest)
            .ok_or(DispatchError::NoRoute)?;
        let candidates = || {
            list.iter()
                .filter(|c| !tried.iter().any(|t| t.as_ref() == c.as_str()))
                .filter_map(|c| self.queues.get(c))
        };
        if select == Select::Quality {
            let up: Vec<&Arc<CarrierQueue>> = candidates().filter(|q| q.is_available()).collect();
            let fit: Vec<&Arc<CarrierQueue>> =
                up.iter().copied().filter(|q| !q.is_backlogged()).collect();
            let pool = if fit.is_empty() { up } else { fit };
            if pool.len() > 1 {
                let scores: Vec<Option<f64>> = {
                    let q = self.quality.lock();
                    pool.iter()
                        .map(|c| q.score(c.carrier(), dest, now_ms))
                        .collect()
                };
                let explore = self.explore_ppm.load(Ordering::Relaxed) as f64 / 1e6;
                return Ok(pool[quality::choose(&scores, explore, self.draw())]);
            }
            if let Some(q) = pool.first() {
                return Ok(q);
            }
        }
        candidates()
            .find(|q| q.is_available())
            .or_else(|| candidates().next())
            .ok_or(DispatchError::NoRoute)
    }

    /// The next available carrier of a message's route other than `from`, if any.
    fn other_available(
        &self,
        msg: &Message,
        from: &str,
        now_ms: u64,
    ) -> Option<&Arc<CarrierQueue>> {
        self.route(&msg.brand, msg.to.key(), &[from], now_ms)
            .ok()
            .filter(|q| q.is_available())
    }

    /// Check that a message for `dest` can be queued at `now_ms` (before the store is
    /// asked): its route exists, its queue has room, and some carrier of the route
    /// was available lately.
    pub fn check(
        &self,
        brand: &str,
        dest: &str,
        now_ms: u64,
    ) -> Result<&Arc<CarrierQueue>, DispatchError> {
        let q = self.route::<&str>(brand, dest, &[], now_ms)?;
        if q.is_full() {
            return Err(DispatchError::QueueFull(q.carrier().to_string()));
        }
        // `route` prefers an available carrier: if it returned one that is down,
        // every carrier of the route is down.
        let refuse = self.refuse_after_down_ms.load(Ordering::Relaxed);
        if refuse > 0 && !q.is_available() && q.down_for(now_ms) >= refuse {
            return Err(DispatchError::NoCarrier(q.carrier().to_string()));
        }
        Ok(q)
    }

    /// Queue an accepted message on `q` (from [`Dispatcher::check`]). Never refuses:
    /// an accepted message is never dropped, so the capacity check happens in
    /// [`Dispatcher::check`] and concurrent accepts may exceed the capacity by at
    /// most their number.
    pub fn enqueue(&self, q: &CarrierQueue, msg: Arc<Message>, now_ms: u64) {
        q.push(msg, now_ms);
    }

    /// Queue a recovered message again on its route (after a restart, or claimed
    /// from a dead node). `false`: it has no route any more.
    pub fn requeue(&self, msg: Arc<Message>, now_ms: u64) -> bool {
        match self.route::<&str>(&msg.brand, msg.to.key(), &[], now_ms) {
            Ok(q) => {
                q.push(msg, now_ms);
                true
            }
            Err(_) => false,
        }
    }

    /// A send of `msg` through `carrier` failed for `cause` (its failed sends so far
    /// counted in the message): offer it again after the carrier's backoff, capped by
    /// its deadline; after `failover_attempts` failures there (throttling aside), on
    /// the next available carrier of its route instead.
    pub fn retry(
        &self,
        msg: Arc<Message>,
        carrier: &str,
        cause: RetryCause,
        now_ms: u64,
    ) -> Retried {
        let attempt = msg.note_attempt();
        let rule = self
            .retry_rules
            .read()
            .get(carrier)
            .copied()
            .unwrap_or_default();
        let at = rule
            .policy
            .retry_at(cause, attempt, now_ms, msg.deadline_ms, self.random());
        let n = rule.failover_attempts;
        if cause != RetryCause::Throttled
            && n > 0
            && attempt.is_multiple_of(n)
            && let Some(q) = self.other_available(&msg, carrier, now_ms)
        {
            metrics::counter!("otpgw_messages_failed_over_total", "carrier" => carrier.to_string())
                .increment(1);
            let to = q.carrier().to_string();
            q.push_at(msg, at);
            return Retried::Moved(to);
        }
        if let Some(q) = self.queues.get(carrier) {
            q.push_at(msg, at);
        }
        Retried::Same
    }

    /// `carrier` has been down (or failing) long enough: move every message queued
    /// for it to the next available carrier of its route; those with no other
    /// carrier stay (ready at once, like those moved), expired ones go to
    /// `expired`. Returns where each moved message went.
    pub fn fail_over(
        &self,
        carrier: &str,
        now_ms: u64,
        expired: &mut Vec<Arc<Message>>,
    ) -> Vec<(MsgId, String)> {
        let mut moved = Vec::new();
        let Some(own) = self.queues.get(carrier) else {
            return moved;
        };
        let mut msgs = Vec::new();
        own.drain_all(now_ms, &mut msgs, expired);
        for m in msgs {
            match self.other_available(&m, carrier, now_ms) {
                Some(q) => {
                    moved.push((m.id, q.carrier().to_string()));
                    q.push(m, now_ms);
                }
                None => own.push(m, now_ms),
            }
        }
        if !moved.is_empty() {
            metrics::counter!("otpgw_messages_failed_over_total", "carrier" => carrier.to_string())
                .increment(moved.len() as u64);
            tracing::warn!(
                carrier,
                moved = moved.len(),
                "carrier down: messages moved to the next carrier of their routes"
            );
        }
        moved
    }

    /// An OTP whose attempts so far (through `tried`) failed or timed out, with time
    /// left: queue it on an available carrier of its route not tried yet. `false`
    /// when the route has none.
    pub fn resend(&self, msg: Arc<Message>, tried: &[Arc<str>], now_ms: u64) -> bool {
        match self.route(&msg.brand, msg.to.key(), tried, now_ms) {
            Ok(q) => {
                q.push(msg, now_ms);
                true
            }
            Err(_) => false,
        }
    }

    /// Messages queued across all carriers.
    pub fn depth(&self) -> usize {
        self.queues.values().map(|q| q.len()).sum()
    }
}
