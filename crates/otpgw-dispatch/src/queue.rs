//! One carrier's queue: a [`Scheduler`] behind a lock, with an async `pop` for the
//! carrier's binds. Several binds may wait at once; each push wakes one, and a bind
//! that leaves messages behind wakes the next. A waiting bind also wakes when the
//! earliest delayed retry becomes ready.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

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
    /// Kept by the carrier: a bind is up, the carrier is not paused and not failing.
    available: AtomicBool,
    /// Since when (ms since epoch) the carrier is unavailable; 0 while available.
    down_since: AtomicU64,
    /// Set by the carrier: more is queued than it takes in a second at its rate
    /// (quality routing sends elsewhere while it is).
    backlogged: AtomicBool,
}

impl CarrierQueue {
    /// An empty queue for `carrier` holding up to `capacity` messages.
    pub fn new(carrier: String, capacity: usize) -> Self {
        Self {
            carrier,
            sched: Mutex::new(Scheduler::new(capacity)),
            notify: Notify::new(),
            available: AtomicBool::new(true),
            down_since: AtomicU64::new(0),
            backlogged: AtomicBool::new(false),
        }
    }

    /// Whether more is queued than the carrier takes in a second (kept by the
    /// carrier).
    pub fn is_backlogged(&self) -> bool {
        self.backlogged.load(Ordering::Relaxed)
    }

    /// Set by the carrier once a second.
    pub fn set_backlogged(&self, on: bool) {
        self.backlogged.store(on, Ordering::Relaxed);
    }

    /// Whether the carrier can take messages now (routing prefers available ones).
    pub fn is_available(&self) -> bool {
        self.available.load(Ordering::Relaxed)
    }

    /// Set by the carrier when its binds come up or all go down, on pause, and when
    /// its errors persist.
    pub fn set_available(&self, on: bool, now_ms: u64) {
        self.available.store(on, Ordering::Relaxed);
        if on {
            self.down_since.store(0, Ordering::Relaxed);
        } else {
            let _ = self.down_since.compare_exchange(
                0,
                now_ms.max(1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// How long (ms) the carrier has been unavailable at `now_ms`; 0 while available.
    pub fn down_for(&self, now_ms: u64) -> u64 {
        match self.down_since.load(Ordering::Relaxed) {
            0 => 0,
            t => now_ms.saturating_sub(t),
        }
    }

    /// Take every queued message (for failover to another carrier).
    pub fn drain_all(
        &self,
        now_ms: u64,
        out: &mut Vec<Arc<Message>>,
        expired: &mut Vec<Arc<Message>>,
    ) {
        self.sched.lock().drain(now_ms, out, expired);
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

    /// Queue a retry that waits until `not_before` (ms since epoch), keeping its class
    /// and deadline order once ready.
    pub fn push_at(&self, msg: Arc<Message>, not_before: u64) {
        self.sched.lock().push_at(msg, not_before);
        // A waiting bind re-arms its timer for the new earliest retry.
        self.notify.notify_one();
    }

    /// Retries waiting for their time.
    pub fn len_delayed(&self) -> usize {
        self.sched.lock().len_delayed()
    }

    /// Take up to `max` sendable messages without waiting; expired ones go to `expired`.
    /// Returns when the earliest waiting retry becomes ready, if one waits.
    pub fn try_pop(
        &self,
        max: usize,
        now_ms: u64,
        out: &mut Vec<Arc<Message>>,
        expired: &mut Vec<Arc<Message>>,
    ) -> Option<u64> {
        let (more, next) = {
            let mut s = self.sched.lock();
            while out.len() < max {
                match s.pop(now_ms, expired) {
                    Some(m) => out.push(m),
                    None => break,
                }
            }
            (s.len() > s.len_delayed(), s.next_ready_at())
        };
        if more && !out.is_empty() {
            self.notify.notify_one();
        }
        next
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
            let t = now();
            let next = self.try_pop(max, t, out, expired);
            if !out.is_empty() || !expired.is_empty() {
                return;
            }
            match next {
                Some(at) => {
                    let wait = Duration::from_millis(at.saturating_sub(t).max(1));
                    let _ = tokio::time::timeout(wait, notified).await;
                }
                None => notified.await,
            }
        }
    }

    /// Remove every expired message (periodic sweep).
    pub fn expire(&self, now_ms: u64, expired: &mut Vec<Arc<Message>>) {
        self.sched.lock().expire(now_ms, expired);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use otpgw_core::clock::{Clock, TokioClock};
    use otpgw_core::{Class, MsgId};

    use super::*;

    fn msg(id: u64, deadline_ms: u64) -> Arc<Message> {
        Arc::new(Message {
            id: MsgId(id),
            brand: "bank".into(),
            to: Default::default(),
            body: Default::default(),
            class: Class::Otp,
            accepted_ms: 0,
            deadline_ms,
            attempts: Default::default(),
            extra: None,
            origin: 0,
            progress: Default::default(),
            group: None,
        })
    }

    /// A bind waiting on the queue gets a retry exactly when it is due, not before,
    /// and a new message at once (on paused tokio time: exact, no real waiting).
    #[tokio::test(start_paused = true)]
    async fn a_waiting_bind_gets_a_retry_when_it_is_due() {
        let clock = TokioClock::new();
        let q = CarrierQueue::new("a".into(), 10);
        let far = clock.now_ms() + 3_600_000;
        q.push_at(msg(1, far), clock.now_ms() + 30_000);
        let t0 = tokio::time::Instant::now();
        let (mut out, mut expired) = (Vec::new(), Vec::new());
        q.pop(10, || clock.now_ms(), &mut out, &mut expired).await;
        assert_eq!(out.len(), 1);
        assert_eq!(
            t0.elapsed(),
            Duration::from_secs(30),
            "due in 30 s, not sooner"
        );

        // Waiting again: a message pushed meanwhile wakes the bind at once.
        out.clear();
        let t1 = tokio::time::Instant::now();
        let q = Arc::new(q);
        let pusher = {
            let q = q.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(5)).await;
                q.push(msg(2, far), 0);
            })
        };
        q.pop(10, || clock.now_ms(), &mut out, &mut expired).await;
        assert_eq!(out.iter().map(|m| m.id.0).collect::<Vec<_>>(), vec![2]);
        assert_eq!(t1.elapsed(), Duration::from_secs(5));
        pusher.await.unwrap();
    }
}
