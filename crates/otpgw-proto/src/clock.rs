//! The wall clock, for drivers only: the sans-IO parts of every crate take `now`
//! (milliseconds since the Unix epoch) as an argument and never call these.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The tokio instant for a time `at_ms` (ms since the epoch, as the sans-IO cores
/// give their deadlines): now plus what is left until then (now when it passed).
pub fn timer_at(at_ms: u64) -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_millis(at_ms.saturating_sub(now_ms()))
}
