//! The carrier side of otpgw: SMPP client binds to each carrier. Carriers report
//! what happened to each message (accepted, refused, throttled, unanswered, a
//! receipt) to the dispatcher and the core tracker; they never choose another
//! carrier: every carrier choice is `otpgw_dispatch::Dispatcher`'s.
//!
//! - [`config`]: a carrier's connection settings and policies;
//! - [`matcher`]: sans-IO receipt matching (hex/decimal/case/leading zeros, receipts
//!   before their `submit_sm_resp`);
//! - [`bind`]: the async driver of one bind: connect, bind, submit pipelined through
//!   the window, match responses by sequence number, take receipts, reconnect with
//!   exponential backoff and jitter;
//! - [`state`]: the state the binds of one carrier share;
//! - [`foreign`]: receipts other nodes published, offered to this node's matchers;
//! - [`Carrier`]: the binds of one carrier and its housekeeping.

pub mod backoff;
pub mod bind;
pub mod config;
pub mod foreign;
pub mod matcher;
pub mod metrics;
pub mod state;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use otpgw_core::clock::now_ms;
use otpgw_core::tracker::Tracker;
use otpgw_dispatch::{Dispatcher, UnknownCarrier};

pub use crate::config::{BindMode, CarrierConfig, CarrierTls, Unanswered};
pub use crate::matcher::{IdConvention, IdMode};
pub use crate::state::CarrierState;

/// A carrier: its shared state, and once started its binds and housekeeping.
pub struct Carrier {
    shared: Arc<CarrierState>,
    tasks: Vec<JoinHandle<()>>,
}

impl Carrier {
    /// A carrier whose binds are not started yet (see [`Carrier::start`]): what the
    /// previous run left can be taken on first (its carrier ids go into the
    /// matcher before any receipt can arrive). Its queue is the dispatcher's queue
    /// of that name; it tells the dispatcher how its failed sends are retried.
    pub fn new(
        cfg: CarrierConfig,
        dispatcher: Arc<Dispatcher>,
        tracker: Arc<Tracker>,
        shutdown: CancellationToken,
    ) -> Result<Self, UnknownCarrier> {
        let shared = CarrierState::new(cfg, dispatcher, tracker, shutdown)?;
        Ok(Self {
            shared: Arc::new(shared),
            tasks: Vec::new(),
        })
    }

    /// Start the binds and the housekeeping. They run until the shutdown token is
    /// cancelled. A second call does nothing.
    pub fn start(&mut self) {
        if !self.tasks.is_empty() {
            return;
        }
        let shared = &self.shared;
        let kinds: Vec<bind::Kind> = match shared.cfg.bind_mode {
            BindMode::Transceiver => vec![bind::Kind::Transceiver; shared.cfg.binds],
            BindMode::TransmitterReceiver => (0..shared.cfg.binds)
                .flat_map(|_| [bind::Kind::Transmitter, bind::Kind::Receiver])
                .collect(),
        };
        for (i, kind) in kinds.into_iter().enumerate() {
            let span = tracing::info_span!("carrier_bind", carrier = %shared.cfg.name, bind = i);
            self.tasks
                .push(tokio::spawn(tracing::Instrument::instrument(
                    bind::run(shared.clone(), i, kind),
                    span,
                )));
        }
        self.tasks.push(tokio::spawn(housekeeping(shared.clone())));
    }

    /// [`Carrier::new`] then [`Carrier::start`].
    pub fn spawn(
        cfg: CarrierConfig,
        dispatcher: Arc<Dispatcher>,
        tracker: Arc<Tracker>,
        shutdown: CancellationToken,
    ) -> Result<Self, UnknownCarrier> {
        let mut c = Self::new(cfg, dispatcher, tracker, shutdown)?;
        c.start();
        Ok(c)
    }

    /// The carrier's name.
    pub fn name(&self) -> &str {
        &self.shared.cfg.name
    }

    /// Binds currently bound.
    pub fn bound(&self) -> usize {
        self.shared.bound()
    }

    /// CarrierState state (for tests and status pages).
    pub fn shared(&self) -> &Arc<CarrierState> {
        &self.shared
    }

    /// Wait for every bind to finish (after the shutdown token was cancelled).
    pub async fn join(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Once a second: availability for routing (and, when down or failing long
/// enough, asking the dispatcher to move the queue), expired queued messages
/// finished, stale early receipts dropped, retired carrier ids forgotten, gauges.
async fn housekeeping(shared: Arc<CarrierState>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut expired = Vec::new();
    let mut retired = Vec::new();
    let mut last = 0u64;
    let mut down_since: Option<u64> = None;
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = now_ms();
        shared.check_failing(now);
        let up = shared.is_up();
        if up {
            down_since = None;
        } else {
            shared.refresh_available();
            let since = *down_since.get_or_insert(now);
            let failover_after = shared.cfg.failover_after.as_millis() as u64;
            if now.saturating_sub(since) >= failover_after || shared.is_failing() {
                shared
                    .dispatcher
                    .fail_over(&shared.cfg.name, now, &mut expired);
                shared.finish_expired(&mut expired);
            }
        }
        last = shared.note_second(last);
        shared.queue.expire(now, &mut expired);
        shared.finish_expired(&mut expired);
        shared.matcher.lock().expire(now);
        shared
            .tracker
            .assure()
            .take_retired(&shared.name, now, &mut retired);
        if !retired.is_empty() {
            let mut m = shared.matcher.lock();
            for id in retired.drain(..) {
                m.forget(id);
            }
        }
        shared.publish_gauges();
    }
}
