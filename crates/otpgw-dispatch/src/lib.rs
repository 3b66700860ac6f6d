//! Dispatch: the bounded queue between ingest and carriers.
//!
//! - [`scheduler::Scheduler`]: sans-IO priority queue (strict classes, earliest
//!   deadline first within a class, expired messages never handed out);
//! - [`routes::Routes`]: destination prefix routing (longest match) to carriers;
//! - [`queue::CarrierQueue`]: one scheduler per carrier behind a lock, with an async
//!   `pop` for the carrier binds;
//! - [`Dispatcher`]: routes a message to its carrier's queue.

pub mod limiter;
pub mod queue;
pub mod routes;
pub mod scheduler;

use std::collections::HashMap;
use std::sync::Arc;

use otpgw_core::Message;

pub use limiter::RateLimiter;
pub use queue::CarrierQueue;
pub use routes::Routes;
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
}

/// Routes messages into per-carrier queues.
#[derive(Debug)]
pub struct Dispatcher {
    /// Reloaded on SIGHUP.
    routes: parking_lot::RwLock<Routes>,
    queues: HashMap<String, Arc<CarrierQueue>>,
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
        }
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

    /// The queue for a message: the first carrier of its route that is available
    /// (a bind up, not paused), skipping `except`; when none is, the first carrier
    /// other than `except` (it waits there for a bind to come back).
    pub fn route_except(
        &self,
        brand: &str,
        dest: &str,
        except: Option<&str>,
    ) -> Result<&Arc<CarrierQueue>, DispatchError> {
        let routes = self.routes.read();
        let list = routes
            .carriers_for(brand, dest)
            .ok_or(DispatchError::NoRoute)?;
        let candidates = || {
            list.iter()
                .filter(|c| Some(c.as_str()) != except)
                .filter_map(|c| self.queues.get(c))
        };
        candidates()
            .find(|q| q.is_available())
            .or_else(|| candidates().next())
            .ok_or(DispatchError::NoRoute)
    }

    /// Check that a message for `dest` can be queued now (before the store is asked).
    pub fn check(&self, brand: &str, dest: &str) -> Result<&Arc<CarrierQueue>, DispatchError> {
        let q = self.route(brand, dest)?;
        if q.is_full() {
            return Err(DispatchError::QueueFull(q.carrier().to_string()));
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
