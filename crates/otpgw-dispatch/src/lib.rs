//! Dispatch: the bounded queues between the doors and the carriers, and the one
//! authority for every carrier choice.
//!
//! - [`scheduler::Scheduler`]: sans-IO priority queue (strict classes, earliest
//!   deadline first within a class, expired messages never handed out);
//! - [`routes::Routes`]: destination prefix routing (longest match) to carriers;
//! - [`queue::CarrierQueue`]: one scheduler per carrier behind a lock, with an async
//!   `pop` for the carrier binds;
//! - [`quality::Quality`]: carrier quality per destination prefix (sans-IO), and
//!   the choice among a route's carriers by it;
//! - [`limiter::RateLimiter`]: a carrier's rate (sans-IO token bucket, AIMD);
//! - [`retry::RetryPolicy`]: when a failed send is offered again (sans-IO);
//! - [`Dispatcher`]: every carrier choice: a message's first carrier, a retry on the
//!   same carrier or its failover to another, the queue of a carrier that is down
//!   moved to the next, a resend after a receipt timeout, a recovered message;
//! - [`assurance`]: the hooks through which the core's delivery assurance resends
//!   and records quality, and the receipt-deadline loop.

pub mod assurance;
mod dispatcher;
pub mod limiter;
pub mod quality;
pub mod queue;
pub mod retry;
pub mod routes;
pub mod scheduler;

pub use dispatcher::{DispatchError, Dispatcher, Retried, RetryRule, UnknownCarrier};
pub use limiter::RateLimiter;
pub use quality::{Quality, QualityConfig};
pub use queue::CarrierQueue;
pub use retry::{RetryCause, RetryPolicy};
pub use routes::{Routes, Select};
pub use scheduler::Scheduler;
