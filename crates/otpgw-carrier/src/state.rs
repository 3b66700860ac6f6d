//! [`CarrierState`]: the state all binds of one carrier share: its queue, matcher, rate
//! limiter, window, counters and health. It reports what happened to the
//! dispatcher and the tracker; it never picks another carrier.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use otpgw_core::DeliveryState;
use otpgw_core::clock::now_ms;
use otpgw_core::tracker::Tracker;
use otpgw_dispatch::{CarrierQueue, Dispatcher, RetryCause};

use crate::config::{CarrierConfig, Unanswered};
use crate::matcher::{self, Matcher};
use crate::metrics::CarrierMetrics;

/// State shared by all binds of one carrier.
pub struct CarrierState {
    pub cfg: CarrierConfig,
    /// The carrier's name, shared (kept in messages' progress).
    pub name: Arc<str>,
    pub metrics: CarrierMetrics,
    /// The dispatcher's queue for this carrier.
    pub queue: Arc<CarrierQueue>,
    pub tracker: Arc<Tracker>,
    pub matcher: Mutex<Matcher>,
    pub(crate) bound: AtomicUsize,
    pub shutdown: CancellationToken,
    /// Paused by an operator: binds stay up but take no messages.
    paused: AtomicBool,
    /// Outstanding submits per bind (reloadable).
    window: AtomicUsize,
    /// Submits written, and how many were written in the last full second.
    submitted: AtomicU64,
    rate: AtomicU64,
    /// Submits awaiting a response, across binds.
    in_flight: AtomicUsize,
    /// The carrier's rate, shared by its binds (AIMD on throttling).
    pub limiter: Mutex<otpgw_dispatch::RateLimiter>,
    /// Where failed sends and a queue to move go: every carrier choice is its.
    pub dispatcher: Arc<Dispatcher>,
    /// Failed sends in a row (throttling not counted), and the last success (ms).
    errors_in_row: AtomicU32,
    last_ok_ms: AtomicU64,
    /// Since when (ms) the carrier counts as failing; 0 when it does not.
    failing_since: AtomicU64,
    /// Concatenation reference of the next long message.
    next_ref: AtomicU8,
}

impl CarrierState {
    /// The state of a carrier whose queue is `dispatcher`'s queue of its name. Every
    /// per-carrier series exists from the start (at zero), so rates and alerts see a
    /// series before the first event.
    pub(crate) fn new(
        cfg: CarrierConfig,
        dispatcher: Arc<Dispatcher>,
        tracker: Arc<Tracker>,
        shutdown: CancellationToken,
    ) -> Result<Self, otpgw_dispatch::UnknownCarrier> {
        let queue = dispatcher
            .queue(&cfg.name)
            .ok_or_else(|| otpgw_dispatch::UnknownCarrier(cfg.name.clone()))?;
        dispatcher.set_retry_rule(
            &cfg.name,
            otpgw_dispatch::RetryRule {
                policy: cfg.retry,
                failover_attempts: cfg.failover_attempts,
            },
        );
        for name in [
            "otpgw_carrier_submitted_total",
            "otpgw_carrier_retries_total",
            "otpgw_carrier_response_timeouts_total",
            "otpgw_carrier_possible_duplicates_total",
            "otpgw_carrier_bind_failures_total",
            "otpgw_messages_expired_total",
            "otpgw_messages_failed_over_total",
            "otpgw_carrier_unanswered_failed_total",
            "otpgw_carrier_tls_handshake_failures_total",
        ] {
            metrics::counter!(name, "carrier" => cfg.name.clone()).increment(0);
        }
        metrics::gauge!("otpgw_carrier_binds_up", "carrier" => cfg.name.clone()).increment(0.0);
        metrics::gauge!("otpgw_carrier_window_in_flight", "carrier" => cfg.name.clone()).set(0.0);
        for g in [
            "otpgw_carrier_rate_limit_per_second",
            "otpgw_carrier_failing",
            "otpgw_carrier_available",
        ] {
            metrics::gauge!(g, "carrier" => cfg.name.clone()).set(0.0);
        }
        let now = now_ms();
        Ok(Self {
            name: Arc::from(cfg.name.as_str()),
            matcher: Mutex::new(Matcher::new(
                cfg.receipt_ids,
                cfg.early_receipt_ttl,
                100_000,
            )),
            paused: AtomicBool::new(false),
            window: AtomicUsize::new(cfg.window.max(1)),
            submitted: AtomicU64::new(0),
            rate: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            limiter: Mutex::new(otpgw_dispatch::RateLimiter::new(cfg.rate_limit, now)),
            dispatcher,
            metrics: CarrierMetrics::new(&cfg.name),
            errors_in_row: AtomicU32::new(0),
            last_ok_ms: AtomicU64::new(now),
            failing_since: AtomicU64::new(0),
            next_ref: AtomicU8::new(rand::random()),
            cfg,
            queue,
            tracker,
            bound: AtomicUsize::new(0),
            shutdown,
        })
    }

    /// A receipt another node published because it could not match it: finish the
    /// message here if this node sent it.
    pub fn on_foreign_receipt(
        self: &Arc<Self>,
        r: &otpgw_proto::pdu::CarrierReceipt,
    ) -> matcher::Lookup {
        let found = self.matcher.lock().lookup(r);
        if let matcher::Lookup::Found(id) = found {
            let _ = crate::bind::apply_receipt(self, id, r);
        }
        found
    }

    /// Whether an operator paused the carrier.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }
    /// Pause (binds stay up, no messages taken) or resume.
    pub fn set_paused(&self, on: bool) {
        self.paused.store(on, Ordering::Relaxed);
        self.refresh_available();
        tracing::info!(carrier = %self.cfg.name, paused = on, "carrier pause changed");
    }
    /// The window per bind now in force.
    pub fn window(&self) -> usize {
        self.window.load(Ordering::Relaxed)
    }
    /// Change the window per bind (applies at once to every bind).
    pub fn set_window(&self, w: usize) {
        self.window.store(w.max(1), Ordering::Relaxed);
    }
    /// Submits written in the last full second.
    pub fn rate(&self) -> u64 {
        self.rate.load(Ordering::Relaxed)
    }
    /// Submits awaiting a response, across binds.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
    /// A bind's window changed from `before` to `after` outstanding submits.
    pub(crate) fn window_moved(&self, before: usize, after: usize) {
        if after >= before {
            self.in_flight.fetch_add(after - before, Ordering::Relaxed);
        } else {
            self.in_flight.fetch_sub(before - after, Ordering::Relaxed);
        }
    }
    pub(crate) fn count_submit(&self) {
        self.submitted.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether routing should send here: a bind is up, not paused, not failing.
    pub fn is_up(&self) -> bool {
        self.bound() > 0 && !self.is_paused() && !self.is_failing()
    }

    /// Whether the carrier's errors persist (see [`CarrierConfig::failing_errors`]).
    pub fn is_failing(&self) -> bool {
        self.failing_since.load(Ordering::Relaxed) != 0
    }

    /// Tell routing whether the carrier is up. Racing with a bind that comes up, it
    /// looks again after marking the carrier down, so "up" is never overwritten.
    pub fn refresh_available(&self) {
        let up = self.is_up();
        self.queue.set_available(up, now_ms());
        if !up && self.is_up() {
            self.queue.set_available(true, now_ms());
        }
    }

    /// A submit was accepted by the carrier.
    pub(crate) fn note_ok(&self) {
        if self.errors_in_row.load(Ordering::Relaxed) != 0 {
            self.errors_in_row.store(0, Ordering::Relaxed);
        }
        self.last_ok_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// The next concatenation reference (a counter, so consecutive long messages to
    /// one phone never share one).
    pub(crate) fn next_reference(&self) -> u8 {
        self.next_ref.fetch_add(1, Ordering::Relaxed)
    }

    /// A send of `msg` failed for `cause`: the dispatcher offers it again (here
    /// after a backoff, or on another carrier of its route).
    pub(crate) fn retry(&self, msg: Arc<otpgw_core::Message>, cause: RetryCause) {
        if cause != RetryCause::Throttled {
            self.errors_in_row.fetch_add(1, Ordering::Relaxed);
        }
        metrics::counter!("otpgw_carrier_retries_total", "carrier" => self.cfg.name.clone())
            .increment(1);
        self.dispatcher.retry(msg, &self.cfg.name, cause, now_ms());
    }

    /// A submit got no answer (timeout, or the bind went down with it outstanding):
    /// resend it or finish it as UNKNOWN, by the configured policy.
    pub(crate) fn unanswered(&self, msg: Arc<otpgw_core::Message>) {
        match self.cfg.on_unanswered {
            Unanswered::Resend => {
                metrics::counter!("otpgw_carrier_possible_duplicates_total", "carrier" => self.cfg.name.clone())
                    .increment(1);
                self.retry(msg, RetryCause::Unanswered);
            }
            Unanswered::Fail => {
                metrics::counter!("otpgw_carrier_unanswered_failed_total", "carrier" => self.cfg.name.clone())
                    .increment(1);
                let _ = self
                    .tracker
                    .finish(msg.id, DeliveryState::Unknown, None, now_ms());
            }
        }
    }

    /// Whether the carrier's errors persist, and whether it recovered (once a
    /// second, by the housekeeping).
    pub(crate) fn check_failing(&self, now: u64) {
        let since = self.failing_since.load(Ordering::Relaxed);
        let window = self.cfg.failover_after.as_millis() as u64;
        if since == 0 {
            let errors = self.errors_in_row.load(Ordering::Relaxed);
            let quiet = now.saturating_sub(self.last_ok_ms.load(Ordering::Relaxed));
            if self.cfg.failing_errors > 0 && errors >= self.cfg.failing_errors && quiet >= window {
                self.failing_since.store(now.max(1), Ordering::Relaxed);
                tracing::warn!(carrier = %self.cfg.name, errors, "carrier failing: its errors persist; routing elsewhere");
                self.refresh_available();
            }
        } else if self.errors_in_row.load(Ordering::Relaxed) == 0
            || now.saturating_sub(since) >= 5 * window.max(1000)
        {
            // A success since, or time to probe again: take traffic again (it trips
            // again if the errors go on).
            self.errors_in_row.store(0, Ordering::Relaxed);
            self.last_ok_ms.store(now, Ordering::Relaxed);
            self.failing_since.store(0, Ordering::Relaxed);
            tracing::info!(carrier = %self.cfg.name, "carrier no longer failing");
            self.refresh_available();
        }
    }

    /// Once a second: the submits of the second that ended (`last`: the count at
    /// its start; returns the count now), and whether the queue is backlogged (more
    /// queued than a second of the carrier's rate: quality routing sends new
    /// messages elsewhere meanwhile).
    pub(crate) fn note_second(&self, last: u64) -> u64 {
        let now_count = self.submitted.load(Ordering::Relaxed);
        self.rate.store(now_count - last, Ordering::Relaxed);
        let per_sec = self
            .limiter
            .lock()
            .rate()
            .unwrap_or((now_count - last) as f64)
            .max(100.0);
        self.queue.set_backlogged(self.queue.len() as f64 > per_sec);
        now_count
    }

    /// Gauges of the window, queue, rate and state (once a second).
    pub(crate) fn publish_gauges(&self) {
        let name = &self.cfg.name;
        metrics::gauge!("otpgw_carrier_window_in_flight", "carrier" => name.clone())
            .set(self.in_flight() as f64);
        let rate = self.limiter.lock().rate().unwrap_or(0.0);
        metrics::gauge!("otpgw_carrier_rate_limit_per_second", "carrier" => name.clone()).set(rate);
        let flag = |on: bool| if on { 1.0 } else { 0.0 };
        metrics::gauge!("otpgw_carrier_failing", "carrier" => name.clone())
            .set(flag(self.is_failing()));
        metrics::gauge!("otpgw_carrier_available", "carrier" => name.clone())
            .set(flag(self.is_up()));
        for class in [otpgw_core::Class::Otp, otpgw_core::Class::Bulk] {
            metrics::gauge!("otpgw_queue_depth_messages", "carrier" => self.cfg.name.clone(), "class" => class.label())
                .set(self.queue.len_class(class) as f64);
        }
    }

    /// Binds of this carrier currently bound.
    pub fn bound(&self) -> usize {
        self.bound.load(Ordering::Relaxed)
    }

    /// Finish messages the queue found expired.
    pub fn finish_expired(&self, expired: &mut Vec<Arc<otpgw_core::Message>>) {
        let now = now_ms();
        for m in expired.drain(..) {
            if m.is_cancelled() {
                // Finished (DELETED) when it was cancelled.
                continue;
            }
            metrics::counter!("otpgw_messages_expired_total", "carrier" => self.cfg.name.clone())
                .increment(1);
            let _ = self.tracker.finish(m.id, DeliveryState::Expired, None, now);
        }
    }
}
