//! One carrier's queue: a [`Scheduler`] behind a lock, with an async `pop` for the
//! carrier's binds. Several binds may wait at once; each push wakes one, and a bind
//! that leaves messages behind wakes the next.

use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

use otpgw_core::{Class, Message};

use crate::scheduler::Scheduler;

/// See the module docs.
#[derive(Debug)]
pub struct CarrierQueue {
    carrier: String,
    sched: Mutex<Scheduler>,
    notify: Notify,
    /// Kept by the carrier: a bind is up and the carrier is not paused.
    available: std::sync::atomic::AtomicBool,
}

impl CarrierQueue {
    /// An empty queue for `carrier` holding up to `capacity` messages.
    pub fn new(carrier: String, capacity: usize) -> Self {
        Self {
            carrier,
            sched: Mutex::new(Scheduler::new(capacity)),
            notify: Notify::new(),
            available: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// Whether the carrier can take messages now (routing prefers available ones).
    pub fn is_available(&self) -> bool {
        self.available.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Set by the carrier when its binds come up or all go down, or on pause.
    pub fn set_available(&self, on: bool) {
        self.available
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Take every queued message (for failover to another carrier).
    pub fn drain_all(
        &self,
        now_ms: u64,
        out: &mut Vec<Arc<Message>>,
        expired: &mut Vec<Arc<Message>>,
    ) {
        let mut s = self.sched.lock();
        while let Some(m) = s.pop(now_ms, expired) {
            out.push(m);
        }
    }

    /// The carrier's name.
    pub fn carrier(&self) -> &str {
        &self.carrier
    }

    /// Messages queued.
    pub fn len(&self) -> usize {
        self.sched.lock().len()
    }
    /// Messages queued in one class.
    pub fn len_class(&self, class: Class) -> usize {
        self.sched.lock().len_class(class)
    }
    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Whether the queue is at capacity.
    pub fn is_full(&self) -> bool {
        self.sched.lock().is_full()
    }

    /// Queue a message and wake one waiting bind.
    pub fn push(&self, msg: Arc<Message>, _now_ms: u64) {
        self.sched.lock().push(msg);
        self.notify.notify_one();
    }

    /// Take up to `max` sendable messages without waiting; expired ones go to `expired`.
    pub fn try_pop(
        &self,
        max: usize,
        now_ms: u64,
        out: &mut Vec<Arc<Message>>,
        expired: &mut Vec<Arc<Message>>,
    ) {
        let more = {
            let mut s = self.sched.lock();
            while out.len() < max {
                match s.pop(now_ms, expired) {
                    Some(m) => out.push(m),
                    None => break,
                }
            }
            !s.is_empty()
        };
        if more && !out.is_empty() {
            self.notify.notify_one();
        }
    }

    /// Wait until something can be taken, then take up to `max`. Cancel-safe: nothing
    /// leaves the queue unless the future completes. `now` is read after each wake-up.
    pub async fn pop(
        &self,
        max: usize,
        now: impl Fn() -> u64,
        out: &mut Vec<Arc<Message>>,
        expired: &mut Vec<Arc<Message>>,
    ) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            self.try_pop(max, now(), out, expired);
            if !out.is_empty() || !expired.is_empty() {
                return;
            }
            notified.await;
        }
    }

    /// Remove every expired message (periodic sweep).
    pub fn expire(&self, now_ms: u64, expired: &mut Vec<Arc<Message>>) {
        self.sched.lock().expire(now_ms, expired);
    }
}
