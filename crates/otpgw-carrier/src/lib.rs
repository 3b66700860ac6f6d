//! The carrier side of otpgw: SMPP client binds to each carrier.
//!
//! - [`matcher`]: sans-IO receipt matching (hex/decimal/case/leading zeros, receipts
//!   before their `submit_sm_resp`);
//! - [`bind`]: the async driver of one bind: connect, bind, submit pipelined through
//!   the window, match responses by sequence number, take receipts, reconnect with
//!   exponential backoff and jitter;
//! - [`Carrier`]: the binds of one carrier, sharing its queue and matcher.

pub mod backoff;
pub mod bind;
pub mod matcher;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use otpgw_core::DeliveryState;
use otpgw_core::clock::now_ms;
use otpgw_core::tracker::Tracker;
use otpgw_dispatch::CarrierQueue;

use crate::matcher::Matcher;
pub use crate::matcher::{IdConvention, IdMode};

/// How the gateway binds to a carrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindMode {
    /// `binds` transceiver binds.
    Transceiver,
    /// `binds` transmitter binds plus `binds` receiver binds.
    TransmitterReceiver,
}

/// The policy for a `submit_sm` that may or may not have reached the carrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unanswered {
    /// Send it again (at least once: the phone may get it twice; counted in
    /// `otpgw_carrier_possible_duplicates_total`).
    Resend,
    /// Finish it as UNKNOWN with a receipt (at most once: the code may never arrive).
    Fail,
}

/// One carrier's connection settings.
#[derive(Clone)]
pub struct CarrierConfig {
    pub name: String,
    /// `host:port`.
    pub address: String,
    pub system_id: String,
    pub password: String,
    pub system_type: String,
    pub bind_mode: BindMode,
    /// Binds (of each kind, for transmitter+receiver).
    pub binds: usize,
    /// Outstanding submits per bind.
    pub window: usize,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub enquire_link_interval: Duration,
    pub enquire_link_timeout: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// Delay before a batch is offered again after the store failed to record it.
    pub retry_delay: Duration,
    /// Backoff of retries after throttling, temporary errors and unanswered submits.
    pub retry: otpgw_dispatch::RetryPolicy,
    /// What happens to a `submit_sm` whose response never came (timeout, lost bind).
    pub on_unanswered: Unanswered,
    /// After this many failed sends of one message on this carrier (throttling not
    /// counted), it moves to the next available carrier of its route (0: never).
    pub failover_attempts: u32,
    /// This many failed sends in a row (throttling not counted) and no success for
    /// `failover_after`: the carrier counts as failing, as if its binds were down.
    pub failing_errors: u32,
    /// Largest PDU accepted from the carrier.
    pub max_frame: usize,
    /// How long a receipt that arrived before its `submit_sm_resp` is kept.
    pub early_receipt_ttl: Duration,
    /// How the carrier's receipt ids relate to its response ids.
    pub receipt_ids: IdMode,
    /// On shutdown, how long a bind waits for its window to drain before unbinding.
    pub drain_grace: Duration,
    /// Messages per second for all binds together (`None`: as fast as the windows
    /// allow, until the carrier throttles).
    pub rate_limit: Option<f64>,
    /// Nodes sharing this carrier: the rate limit holds for all of them together
    /// (every batch also asks this shared bucket). `None`: this node alone.
    pub shared_limit: Option<std::sync::Arc<dyn otpgw_core::shared_limit::SharedLimit>>,
    /// The carrier's allowance of binds for all nodes together; a bind connects
    /// only while it holds one of these slots (`bind_slots`).
    pub max_binds_total: Option<usize>,
    pub bind_slots: Option<std::sync::Arc<dyn otpgw_core::shared_limit::BindSlots>>,
    /// With no bind up (or paused) this long, queued messages move to the next
    /// available carrier of their route.
    pub failover_after: Duration,
    /// An OTP this carrier confirmed owes its final receipt within this time, or it
    /// is sent again through another carrier of its route (`None`: not watched,
    /// unless its brand sets a timeout).
    pub receipt_timeout: Option<Duration>,
}

impl std::fmt::Debug for CarrierConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CarrierConfig")
            .field("name", &self.name)
            .field("address", &self.address)
            .field("system_id", &self.system_id)
            .field("password", &"<redacted>")
            .field("binds", &self.binds)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl CarrierConfig {
    /// Settings with sensible timers for an OTP gateway (short response and
    /// reconnect timers), for a carrier at `address`.
    pub fn new(name: &str, address: &str, system_id: &str, password: &str) -> Self {
        Self {
            name: name.into(),
            address: address.into(),
            system_id: system_id.into(),
            password: password.into(),
            system_type: String::new(),
            bind_mode: BindMode::Transceiver,
            binds: 1,
            window: 100,
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(10),
            enquire_link_interval: Duration::from_secs(30),
            enquire_link_timeout: Duration::from_secs(5),
            reconnect_min: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(10),
            retry_delay: Duration::from_millis(200),
            retry: otpgw_dispatch::RetryPolicy::default(),
            on_unanswered: Unanswered::Resend,
            failover_attempts: 2,
            failing_errors: 20,
            max_frame: otpgw_proto::codec::DEFAULT_MAX_FRAME,
            early_receipt_ttl: Duration::from_secs(600),
            receipt_ids: IdMode::Auto,
            drain_grace: Duration::from_secs(10),
            rate_limit: None,
            shared_limit: None,
            max_binds_total: None,
            bind_slots: None,
            failover_after: Duration::from_secs(2),
            receipt_timeout: None,
        }
    }
}

/// Metric handles of one carrier, built once (no label allocation per message).
pub struct CarrierMetrics {
    pub submitted: metrics::Counter,
    pub responses_ok: metrics::Counter,
    pub response: metrics::Histogram,
    pub queue_wait: metrics::Histogram,
    pub receipt_latency: metrics::Histogram,
    receipts: [metrics::Counter; 9],
}

impl CarrierMetrics {
    fn new(carrier: &str) -> Self {
        let c = || carrier.to_string();
        Self {
            submitted: metrics::counter!("otpgw_carrier_submitted_total", "carrier" => c()),
            responses_ok: metrics::counter!("otpgw_carrier_responses_total", "carrier" => c(), "status" => otpgw_proto::status::name(otpgw_proto::status::ESME_ROK)),
            response: metrics::histogram!("otpgw_carrier_response_seconds", "carrier" => c()),
            queue_wait: metrics::histogram!("otpgw_queue_wait_seconds", "carrier" => c()),
            receipt_latency: metrics::histogram!("otpgw_receipt_latency_seconds", "carrier" => c()),
            receipts: std::array::from_fn(|i| {
                let state = DeliveryState::from_tlv(i as u8 + 1).unwrap_or(DeliveryState::Unknown);
                metrics::counter!("otpgw_receipts_total", "carrier" => c(), "state" => state.label())
            }),
        }
    }

    /// Count a carrier receipt in `state`.
    pub fn receipt(&self, state: DeliveryState) {
        let i = (state.tlv() as usize).saturating_sub(1).min(8);
        self.receipts[i].increment(1);
    }
}

/// State shared by all binds of one carrier.
pub struct Shared {
    pub cfg: CarrierConfig,
    /// The carrier's name, shared (kept in messages' progress).
    pub name: Arc<str>,
    pub metrics: CarrierMetrics,
    pub queue: Arc<CarrierQueue>,
    pub tracker: Arc<Tracker>,
    pub matcher: Mutex<Matcher>,
    bound: AtomicUsize,
    pub shutdown: CancellationToken,
    /// Paused by an operator: binds stay up but take no messages.
    paused: std::sync::atomic::AtomicBool,
    /// Outstanding submits per bind (reloadable).
    window: AtomicUsize,
    /// Submits written, and how many were written in the last full second.
    submitted: std::sync::atomic::AtomicU64,
    rate: std::sync::atomic::AtomicU64,
    /// Submits awaiting a response, across binds.
    in_flight: AtomicUsize,
    /// The carrier's rate, shared by its binds (AIMD on throttling).
    pub limiter: Mutex<otpgw_dispatch::RateLimiter>,
    /// For failover: the other carriers' queues.
    pub dispatcher: Option<Arc<otpgw_dispatch::Dispatcher>>,
    /// Failed sends in a row (throttling not counted), and the last success (ms).
    errors_in_row: std::sync::atomic::AtomicU32,
    last_ok_ms: std::sync::atomic::AtomicU64,
    /// Since when (ms) the carrier counts as failing; 0 when it does not.
    failing_since: std::sync::atomic::AtomicU64,
    /// Concatenation reference of the next long message.
    next_ref: std::sync::atomic::AtomicU8,
}

impl Shared {
    /// A receipt another node published because it could not match it: finish the
    /// message here if this node sent it.
    pub fn on_foreign_receipt(
        self: &Arc<Self>,
        r: &otpgw_proto::pdu::CarrierReceipt,
    ) -> matcher::Lookup {
        let found = self.matcher.lock().lookup(r);
        if let matcher::Lookup::Found(id) = found {
            let _ = bind::apply_receipt(self, id, r);
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

    /// Offer a message whose send failed again, after a backoff capped by its
    /// deadline. After `failover_attempts` failures here (throttling aside), it goes
    /// to the next available carrier of its route instead.
    pub(crate) fn retry(&self, msg: Arc<otpgw_core::Message>, cause: otpgw_dispatch::RetryCause) {
        use otpgw_dispatch::RetryCause;
        let now = now_ms();
        let attempt = msg.note_attempt();
        if cause != RetryCause::Throttled {
            self.errors_in_row.fetch_add(1, Ordering::Relaxed);
        }
        metrics::counter!("otpgw_carrier_retries_total", "carrier" => self.cfg.name.clone())
            .increment(1);
        let at = self
            .cfg
            .retry
            .retry_at(cause, attempt, now, msg.deadline_ms, rand::random());
        let n = self.cfg.failover_attempts;
        if cause != RetryCause::Throttled
            && n > 0
            && attempt.is_multiple_of(n)
            && let Some(d) = &self.dispatcher
            && let Ok(q) = d.route_except(&msg.brand, &msg.fields.dest.addr, Some(&self.cfg.name))
            && q.is_available()
        {
            metrics::counter!("otpgw_messages_failed_over_total", "carrier" => self.cfg.name.clone())
                .increment(1);
            q.push_at(msg, at);
            return;
        }
        self.queue.push_at(msg, at);
    }

    /// A submit got no answer (timeout, or the bind went down with it outstanding):
    /// resend it or finish it as UNKNOWN, by the configured policy.
    pub(crate) fn unanswered(&self, msg: Arc<otpgw_core::Message>) {
        match self.cfg.on_unanswered {
            Unanswered::Resend => {
                metrics::counter!("otpgw_carrier_possible_duplicates_total", "carrier" => self.cfg.name.clone())
                    .increment(1);
                self.retry(msg, otpgw_dispatch::RetryCause::Unanswered);
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

    /// Once a second: whether the carrier's errors persist, and whether it recovered.
    fn check_failing(&self) {
        let now = now_ms();
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

    /// Binds of this carrier currently bound.
    pub fn bound(&self) -> usize {
        self.bound.load(Ordering::Relaxed)
    }

    /// Finish messages the queue found expired.
    pub fn finish_expired(&self, expired: &mut Vec<Arc<otpgw_core::Message>>) {
        let now = now_ms();
        for m in expired.drain(..) {
            metrics::counter!("otpgw_messages_expired_total", "carrier" => self.cfg.name.clone())
                .increment(1);
            let _ = self.tracker.finish(m.id, DeliveryState::Expired, None, now);
        }
    }
}

/// A running carrier: its binds and housekeeping.
pub struct Carrier {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Carrier {
    /// Start the binds of a carrier. They run until `shutdown` is cancelled.
    pub fn spawn(
        cfg: CarrierConfig,
        queue: Arc<CarrierQueue>,
        tracker: Arc<Tracker>,
        shutdown: CancellationToken,
    ) -> Self {
        Self::spawn_with(cfg, queue, tracker, shutdown, Vec::new(), None)
    }

    /// Start the binds, with the carrier ids of messages it confirmed before a restart
    /// (so their receipts still match).
    pub fn spawn_with(
        cfg: CarrierConfig,
        queue: Arc<CarrierQueue>,
        tracker: Arc<Tracker>,
        shutdown: CancellationToken,
        confirmed: Vec<(String, otpgw_core::MsgId)>,
        dispatcher: Option<Arc<otpgw_dispatch::Dispatcher>>,
    ) -> Self {
        // Every per-carrier counter exists from the start (at zero), so rates and
        // alerts see a series before the first event.
        for name in [
            "otpgw_carrier_submitted_total",
            "otpgw_carrier_retries_total",
            "otpgw_carrier_response_timeouts_total",
            "otpgw_carrier_possible_duplicates_total",
            "otpgw_carrier_bind_failures_total",
            "otpgw_messages_expired_total",
            "otpgw_messages_failed_over_total",
            "otpgw_carrier_unanswered_failed_total",
        ] {
            metrics::counter!(name, "carrier" => cfg.name.clone()).increment(0);
        }
        metrics::gauge!("otpgw_carrier_binds_up", "carrier" => cfg.name.clone()).increment(0.0);
        metrics::gauge!("otpgw_carrier_window_in_flight", "carrier" => cfg.name.clone()).set(0.0);
        let mut matcher = Matcher::new(cfg.receipt_ids, cfg.early_receipt_ttl, 100_000);
        for (cid, id) in confirmed {
            matcher.preload(&cid, id);
        }
        let shared = Arc::new(Shared {
            name: Arc::from(cfg.name.as_str()),
            matcher: Mutex::new(matcher),
            paused: std::sync::atomic::AtomicBool::new(false),
            window: AtomicUsize::new(cfg.window.max(1)),
            submitted: std::sync::atomic::AtomicU64::new(0),
            rate: std::sync::atomic::AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            limiter: Mutex::new(otpgw_dispatch::RateLimiter::new(
                cfg.rate_limit,
                std::time::Instant::now(),
            )),
            dispatcher,
            metrics: CarrierMetrics::new(&cfg.name),
            errors_in_row: std::sync::atomic::AtomicU32::new(0),
            last_ok_ms: std::sync::atomic::AtomicU64::new(now_ms()),
            failing_since: std::sync::atomic::AtomicU64::new(0),
            next_ref: std::sync::atomic::AtomicU8::new(rand::random()),
            cfg,
            queue,
            tracker,
            bound: AtomicUsize::new(0),
            shutdown,
        });
        let mut tasks = Vec::new();
        let kinds: Vec<bind::Kind> = match shared.cfg.bind_mode {
            BindMode::Transceiver => vec![bind::Kind::Transceiver; shared.cfg.binds],
            BindMode::TransmitterReceiver => (0..shared.cfg.binds)
                .flat_map(|_| [bind::Kind::Transmitter, bind::Kind::Receiver])
                .collect(),
        };
        for (i, kind) in kinds.into_iter().enumerate() {
            let span = tracing::info_span!("carrier_bind", carrier = %shared.cfg.name, bind = i);
            tasks.push(tokio::spawn(tracing::Instrument::instrument(
                bind::run(shared.clone(), i, kind),
                span,
            )));
        }
        tasks.push(tokio::spawn(housekeeping(shared.clone())));
        Self { shared, tasks }
    }

    /// The carrier's name.
    pub fn name(&self) -> &str {
        &self.shared.cfg.name
    }

    /// Binds currently bound.
    pub fn bound(&self) -> usize {
        self.shared.bound.load(Ordering::Relaxed)
    }

    /// Shared state (for tests and status pages).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Wait for every bind to finish (after the shutdown token was cancelled).
    pub async fn join(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Move every queued message to the next available carrier of its route (those
/// with no other carrier stay).
fn fail_over(shared: &Arc<Shared>, expired: &mut Vec<Arc<otpgw_core::Message>>) {
    let Some(d) = &shared.dispatcher else { return };
    let mut msgs = Vec::new();
    shared.queue.drain_all(now_ms(), &mut msgs, expired);
    shared.finish_expired(expired);
    let mut moved = 0u64;
    for m in msgs {
        match d.route_except(&m.brand, &m.fields.dest.addr, Some(&shared.cfg.name)) {
            Ok(q) if q.is_available() => {
                q.push(m, now_ms());
                moved += 1;
            }
            _ => shared.queue.push(m, now_ms()),
        }
    }
    if moved > 0 {
        metrics::counter!("otpgw_messages_failed_over_total", "carrier" => shared.cfg.name.clone())
            .increment(moved);
        tracing::warn!(carrier = %shared.cfg.name, moved, "carrier down: messages moved to the next carrier of their routes");
    }
}

/// Once a second: finish expired queued messages and drop stale early receipts.
async fn housekeeping(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut expired = Vec::new();
    let mut last = 0u64;
    let mut down_since: Option<std::time::Instant> = None;
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        // Availability for routing, and failover of what waits here.
        shared.check_failing();
        let up = shared.is_up();
        if !up {
            shared.refresh_available();
        }
        if up {
            down_since = None;
        } else {
            let since = *down_since.get_or_insert_with(std::time::Instant::now);
            if since.elapsed() >= shared.cfg.failover_after || shared.is_failing() {
                fail_over(&shared, &mut expired);
            }
        }
        let now_count = shared.submitted.load(Ordering::Relaxed);
        shared.rate.store(now_count - last, Ordering::Relaxed);
        // More queued than a second of the carrier's rate: quality routing sends
        // new messages elsewhere meanwhile.
        let per_sec = shared
            .limiter
            .lock()
            .rate()
            .unwrap_or((now_count - last) as f64)
            .max(100.0);
        shared
            .queue
            .set_backlogged(shared.queue.len() as f64 > per_sec);
        metrics::gauge!("otpgw_carrier_window_in_flight", "carrier" => shared.cfg.name.clone())
            .set(shared.in_flight() as f64);
        last = now_count;
        shared.queue.expire(now_ms(), &mut expired);
        shared.finish_expired(&mut expired);
        shared.matcher.lock().expire(std::time::Instant::now());
        for class in [otpgw_core::Class::Otp, otpgw_core::Class::Bulk] {
            metrics::gauge!("otpgw_queue_depth_messages", "carrier" => shared.cfg.name.clone(), "class" => class.label())
                .set(shared.queue.len_class(class) as f64);
        }
    }
}
