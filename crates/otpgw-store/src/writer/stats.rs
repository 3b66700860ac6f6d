//! [`WriterStats`]: a writer thread's counters; [`WriterThread`]: the thread itself.

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

/// A writer thread (the embedded and log stores'): spawned once, joined once, when
/// asked or when its store is dropped (after the store's queue, whose closing ends
/// the thread once it wrote everything queued).
#[derive(Debug)]
pub(crate) struct WriterThread(parking_lot::Mutex<Option<std::thread::JoinHandle<()>>>);

impl WriterThread {
    /// Run `f` on a thread named `name`.
    pub(crate) fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> std::io::Result<Self> {
        let h = std::thread::Builder::new().name(name.into()).spawn(f)?;
        Ok(Self(parking_lot::Mutex::new(Some(h))))
    }

    /// Wait for the thread to end (it ends after a stop, or once its queue closed).
    pub(crate) fn join(&self) {
        if let Some(h) = self.0.lock().take() {
            let _ = h.join();
        }
    }
}

impl Drop for WriterThread {
    fn drop(&mut self) {
        self.join();
    }
}
