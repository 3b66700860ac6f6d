//! [`WriterStats`]: a writer thread's counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Counters of the writer, for tests and benchmarks.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub commits: AtomicU64,
    pub ops: AtomicU64,
    /// Commits that failed (the store is not healthy while the last one failed).
    pub failures: AtomicU64,
    /// Whether the last commit failed.
    pub last_failed: std::sync::atomic::AtomicBool,
}

impl WriterStats {
    /// A commit of `ops` writes, started at `started`, ended (`ok`).
    pub(crate) fn record(&self, started: Instant, ops: usize, ok: bool) {
        metrics::histogram!("otpgw_store_commit_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("otpgw_store_batch_ops").record(ops as f64);
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.ops.fetch_add(ops as u64, Ordering::Relaxed);
        if !ok {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        self.last_failed.store(!ok, Ordering::Relaxed);
    }
}
