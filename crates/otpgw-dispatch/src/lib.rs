//! Dispatch: the bounded queue between ingest and carriers.
//!
//! - [`scheduler::Scheduler`]: sans-IO priority queue (strict classes, earliest
//!   deadline first within a class, expired messages never handed out);
//! - [`routes::Routes`]: destination prefix routing (longest match) to carriers;
//! - [`queue::CarrierQueue`]: one scheduler per carrier behind a lock, with an async
//!   `pop` for the carrier binds;
//! - [`quality::Quality`]: carrier quality per destination prefix (sans-IO), and
//!   the choice among a route's carriers by it;
//! - [`Dispatcher`]: routes a message to its carrier's queue.

pub mod limiter;
pub mod quality;
pub mod queue;
pub mod retry;
pub mod routes;
pub mod scheduler;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use otpgw_core::Message;

pub use limiter::RateLimiter;
pub use quality::{Quality, QualityConfig};
pub use queue::CarrierQueue;
pub use retry::{RetryCause, RetryPolicy};
pub use routes::{Routes, Select};
pub use scheduler::Scheduler;

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

/// Routes messages into per-carrier queues.
#[derive(Debug)]
pub struct Dispatcher {
    /// Reloaded on SIGHUP.
    routes: parking_lot::RwLock<Routes>,
    queues: HashMap<String, Arc<CarrierQueue>>,
    /// Refuse new messages for a route whose carriers have all been unavailable this
    /// long (ms; 0 = never refuse). Reloadable.
    refuse_after_down_ms: AtomicU64,
    /// Carrier quality, for routes that choose by it (and the admin API).
    quality: parking_lot::Mutex<Quality>,
    /// Share of quality-routed messages sent to a carrier other than the best, in
    /// millionths (reloadable).
    explore_ppm: AtomicU64,
    /// State of the pseudo-random draws of exploration.
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

    /// The quality measurements.
    pub fn quality(&self) -> &parking_lot::Mutex<Quality> {
        &self.quality
    }

    /// A uniform draw in [0, 1) (splitmix64 over a counter: cheap, no lock).
    fn draw(&self) -> f64 {
        let mut z = self
            .draws
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Refuse messages for a route once none of its carriers was available for
    /// `ms` milliseconds (0: never refuse, let them wait in the queue).
    pub fn set_refuse_after_down(&self, ms: u64) {
        self.refuse_after_down_ms.store(ms, Ordering::Relaxed);
    }

    /// Replace the routing table (every carrier it names must have a queue).
    pub fn set_routes(&self, routes: Routes) -> Result<(), String> {
        if let Some(c) = routes.carriers().find(|c| !self.queues.contains_key(*c)) {
            return Err(format!("route names carrier {c:?}, which is not running"));
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

    /// The queue a message for `brand` and `dest` goes to.
    pub fn route(&self, brand: &str, dest: &str) -> Result<&Arc<CarrierQueue>, DispatchError> {
        self.route_except(brand, dest, None)
    }

    /// The queue for a message: among the carriers of its route that are
    /// available (a bind up, not paused), skipping `except`, the first (an ordered
    /// route) or the best by measured quality (a quality route; see
    /// [`Dispatcher::route_excluding`]); when none is available, the first carrier
    /// other than `except` (it waits there for a bind to come back).
    pub fn route_except(
        &self,
        brand: &str,
        dest: &str,
        except: Option<&str>,
    ) -> Result<&Arc<CarrierQueue>, DispatchError> {
        match except {
            Some(e) => self.route_excluding(brand, dest, &[e]),
            None => self.route_excluding::<&str>(brand, dest, &[]),
        }
    }

    /// [`Dispatcher::route_except`] skipping every carrier in `tried`. A quality
    /// route prefers carriers not backlogged (more queued than a second of their
    /// rate), then the best recent on-time ratio for the destination's prefix, with
    /// the exploration share going to the others. `NoRoute` when the route has no
    /// carrier outside `tried`.
    pub fn route_excluding<S: AsRef<str>>(
        &self,
        brand: &str,
        dest: &str,
        tried: &[S],
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
                let now = otpgw_core::clock::now_ms();
                let scores: Vec<Option<f64>> = {
                    let q = self.quality.lock();
                    pool.iter()
                        .map(|c| q.score(c.carrier(), dest, now))
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

    /// Check that a message for `dest` can be queued at `now_ms` (before the store is
    /// asked): its route exists, its queue has room, and some carrier of the route
    /// was available lately.
    pub fn check(
        &self,
        brand: &str,
        dest: &str,
        now_ms: u64,
    ) -> Result<&Arc<CarrierQueue>, DispatchError> {
        let q = self.route(brand, dest)?;
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

    /// Queue an accepted message on `q`. Never refuses: an accepted message is never
    /// dropped, so the capacity check happens in [`Dispatcher::check`] and concurrent
    /// accepts may exceed the capacity by at most their number.
    pub fn enqueue(&self, q: &CarrierQueue, msg: Arc<Message>, now_ms: u64) {
        q.push(msg, now_ms);
    }

    /// Messages queued across all carriers.
    pub fn depth(&self) -> usize {
        self.queues.values().map(|q| q.len()).sum()
    }
}
