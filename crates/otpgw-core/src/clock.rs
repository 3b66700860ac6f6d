//! Time for drivers. Logic below the drivers takes `now` as an argument; a driver
//! reads it from a [`Clock`] it is given ([`SystemClock`] in a running gateway,
//! [`ManualClock`] or [`TokioClock`] on paused tokio time in tests) or, at the
//! edges, from [`now_ms`].

use std::time::{SystemTime, UNIX_EPOCH};

pub use otpgw_proto::clock::{now_ms, timer_at};

/// Microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Where a driver reads the time (milliseconds since the Unix epoch).
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        now_ms()
    }
}

/// A clock that moves only when told (tests).
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::atomic::AtomicU64);

impl ManualClock {
    /// A clock reading `ms`.
    pub fn at(ms: u64) -> Self {
        Self(std::sync::atomic::AtomicU64::new(ms))
    }
    /// Move it forward by `ms`.
    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Milliseconds since the epoch as tokio's clock runs: the wall clock read once when
/// made, plus tokio's time since. In a test on paused tokio time
/// (`#[tokio::test(start_paused = true)]`) it moves only as that virtual time does,
/// so timing tests of async code are exact and take no real time.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    wall_ms: u64,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// A clock that reads the wall clock now, then follows tokio's time.
    pub fn new() -> Self {
        Self {
            wall_ms: now_ms(),
            start: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> u64 {
        self.wall_ms + self.start.elapsed().as_millis() as u64
    }
}
