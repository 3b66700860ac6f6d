//! A brand load generator: binds transceivers to an SMPP server, submits messages at
//! a rate or as fast as its windows allow, matches `submit_sm_resp` and receipts, and
//! reports throughput, latency percentiles and every id it was given (so tests can
//! check "exactly one receipt per message").
//!
//! Every loop is bounded: it sends exactly `count` messages and stops waiting for
//! receipts after `receipt_timeout`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use parking_lot::Mutex;

use otpgw_proto::receipt::DeliveryState;

mod session;
use session::{bind_loop, connect};

/// What to send and how.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub addr: SocketAddr,
    pub system_id: String,
    pub password: String,
    /// Transceiver binds.
    pub binds: usize,
    /// Outstanding submits per bind.
    pub window: usize,
    /// Messages in all.
    pub count: u64,
    /// Messages per second across binds; `None` for as fast as the windows allow.
    pub rate: Option<u32>,
    /// registered_delivery for every message (1: receipts wanted).
    pub registered_delivery: u8,
    /// priority_flag of the OTP share of messages.
    pub priority_flag: u8,
    /// Percent of messages sent as OTP (`priority_flag`); the rest as bulk
    /// (priority_flag 0), spread evenly over the run.
    pub otp_percent: u8,
    /// 0 (GSM 7-bit default alphabet, one octet per character here) or 8 (UCS-2, two
    /// octets per character).
    pub data_coding: u8,
    /// Characters of text per message (at least 15: the text carries the message's
    /// index). Texts over 254 octets go in the `message_payload` TLV.
    pub text_len: usize,
    /// Stop submitting after this long even if `count` is not reached.
    pub duration: Option<Duration>,
    /// Stop waiting for receipts this long after the last response.
    pub receipt_timeout: Duration,
    /// Source address.
    pub source: String,
    /// Write each PDU on its own (one `write` per PDU, as simple client libraries
    /// do) instead of batching what is queued.
    pub flush_each: bool,
    /// Index of the first message (its text and destination derive from the index),
    /// so several runs against one gateway send distinct messages.
    pub first_index: u64,
    /// Keep the binds open until this many receipts arrived (or the timeout), e.g. to
    /// collect receipts for messages an earlier run submitted.
    pub expect_receipts: Option<u64>,
    /// validity_period for every message (empty: none).
    pub validity_period: String,
}

impl LoadConfig {
    /// Defaults: 1 bind, window 100, receipts wanted, OTP priority, 20-octet GSM text.
    pub fn new(addr: SocketAddr, system_id: &str, password: &str, count: u64) -> Self {
        Self {
            addr,
            system_id: system_id.into(),
            password: password.into(),
            binds: 1,
            window: 100,
            count,
            rate: None,
            registered_delivery: 1,
            priority_flag: 1,
            otp_percent: 100,
            data_coding: 0,
            text_len: 20,
            duration: None,
            receipt_timeout: Duration::from_secs(30),
            source: "OTPGW".into(),
            flush_each: false,
            first_index: 0,
            expect_receipts: None,
            validity_period: String::new(),
        }
    }
}

/// The text of message `i`: "code NNNNNNNNNN" padded with `x` to `len` octets.
pub fn text_for(i: u64, len: usize) -> Vec<u8> {
    let mut t = format!("code {i:010}").into_bytes();
    t.resize(len.max(t.len()), b'x');
    t
}

/// The text of message `i` encoded for `data_coding` (UCS-2 for 8, else as is).
pub fn encoded_text_for(i: u64, len: usize, data_coding: u8) -> Vec<u8> {
    let t = text_for(i, len);
    if data_coding == 8 {
        t.iter().flat_map(|&c| u16::from(c).to_be_bytes()).collect()
    } else {
        t
    }
}

/// Whether message `i` is one of the OTP share (`otp_percent` of every 100).
pub fn is_otp(i: u64, otp_percent: u8) -> bool {
    // Spread evenly: message i is OTP when the running share crosses an integer.
    let p = u64::from(otp_percent.min(100));
    (i + 1) * p / 100 > i * p / 100
}

/// The destination of message `i` (a plausible international number).
pub fn dest_for(i: u64) -> String {
    format!("44740{:07}", i % 10_000_000)
}

/// What a run saw.
#[derive(Debug, Clone)]
pub struct LoadReport {
    pub sent: u64,
    pub accepted: u64,
    /// Refusals by status.
    pub rejected: BTreeMap<u32, u64>,
    /// Receipts received (including duplicates and unknown ids).
    pub receipts: u64,
    pub receipts_by_state: BTreeMap<&'static str, u64>,
    /// Receipts for an id this run was never given.
    pub unknown_receipts: u64,
    /// Receipts beyond the first for a message.
    pub duplicate_receipts: u64,
    /// Accepted messages (with receipts wanted) that got none in time.
    pub missing_receipts: u64,
    /// otpgw's message id of each accepted message, by message index.
    pub ids: HashMap<u64, String>,
    /// The message indexes refused with an error status (not those whose answer
    /// never came); `rejected` counts them by status.
    pub refused: HashSet<u64>,
    /// Final state reported for each message index.
    pub states: HashMap<u64, DeliveryState>,
    /// From the first submit to the last response.
    pub submit_elapsed: Duration,
    /// From the first submit to the last receipt (or the timeout).
    pub total_elapsed: Duration,
    /// Microseconds from submit_sm to submit_sm_resp.
    pub resp_latency_us: Histogram<u64>,
    /// Microseconds from submit_sm to receipt.
    pub receipt_latency_us: Histogram<u64>,
    /// Microseconds from submit_sm to a DELIVERED receipt (the first receipt of
    /// each message only).
    pub delivered_latency_us: Histogram<u64>,
    /// Receipts for ids this run was not given (an earlier run's messages): (id, state).
    pub foreign_receipts: Vec<(String, DeliveryState)>,
    /// Every receipt of this run's own messages, by otpgw id, in order of arrival.
    pub receipts_by_id: HashMap<String, Vec<DeliveryState>>,
    /// The run second by second (at most the first [`MAX_SERIES_SECONDS`]).
    pub per_second: Vec<SecondStats>,
    /// When the first and the last acceptance came, and the longest time between
    /// two acceptances (how long the gateway accepted nothing, within the run).
    pub first_accept: Option<Instant>,
    pub last_accept: Option<Instant>,
    pub longest_accept_gap: Duration,
    /// When that longest gap began (the acceptance before it).
    pub longest_accept_gap_from: Option<Instant>,
}

/// Seconds of a run kept in [`LoadReport::per_second`]; later seconds are counted
/// in the totals only.
pub const MAX_SERIES_SECONDS: usize = 3600;

/// One second of a run: what was answered in it and the latencies of those answers.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SecondStats {
    /// Seconds since the first submit (this entry covers [second, second + 1)).
    pub second: u32,
    pub accepted: u64,
    pub refused: u64,
    pub receipts: u64,
    /// submit -> submit_sm_resp percentiles of the responses in this second (ms).
    pub resp_p50_ms: f64,
    pub resp_p99_ms: f64,
    pub resp_p999_ms: f64,
}

/// Live counters of a run, readable while it goes (e.g. for a progress bar).
#[derive(Debug, Default)]
pub struct Progress {
    pub sent: AtomicU64,
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
    pub receipts: AtomicU64,
}

impl LoadReport {
    /// Accepted messages per second.
    pub fn accept_rate(&self) -> f64 {
        self.accepted as f64 / self.submit_elapsed.as_secs_f64().max(1e-9)
    }
    /// Receipts per second over the whole run.
    pub fn receipt_rate(&self) -> f64 {
        self.receipts as f64 / self.total_elapsed.as_secs_f64().max(1e-9)
    }
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("connect: {0}")]
    Connect(#[from] std::io::Error),
    #[error("bind refused with status {0:#x}")]
    BindRefused(u32),
    #[error("no bind response")]
    NoBindResponse,
}

struct RunState {
    next: AtomicU64,
    /// Messages this run sends at most: `count`, lowered when `duration` ends it.
    limit: AtomicU64,
    responses: AtomicU64,
    accepted_wanting_receipt: AtomicU64,
    /// This run's messages that got their (first) receipt.
    own_receipts: AtomicU64,
    progress: Arc<Progress>,
    inner: Mutex<Inner>,
}

/// A second of the run as it is being counted.
#[derive(Default)]
struct Slot {
    accepted: u64,
    refused: u64,
    receipts: u64,
    resp: Option<Histogram<u64>>,
}

impl Inner {
    /// The slot of the second `at` falls in, created on first use; `None` past
    /// [`MAX_SERIES_SECONDS`].
    fn slot(&mut self, at: Instant) -> Option<&mut Slot> {
        let start = self.started?;
        let sec = at.saturating_duration_since(start).as_secs() as usize;
        if sec >= MAX_SERIES_SECONDS {
            return None;
        }
        if self.series.len() <= sec {
            self.series.resize_with(sec + 1, Slot::default);
        }
        self.series.get_mut(sec)
    }
}

#[derive(Default)]
struct Inner {
    ids: HashMap<u64, String>,
    refused: HashSet<u64>,
    by_id: HashMap<String, (u64, Instant)>,
    receipts: HashMap<String, Vec<DeliveryState>>,
    early: Vec<(String, DeliveryState, Instant)>,
    rejected: BTreeMap<u32, u64>,
    resp_lat: Option<Histogram<u64>>,
    rcpt_lat: Option<Histogram<u64>>,
    dlvr_lat: Option<Histogram<u64>>,
    last_response: Option<Instant>,
    last_receipt: Option<Instant>,
    started: Option<Instant>,
    series: Vec<Slot>,
    first_accept: Option<Instant>,
    last_accept: Option<Instant>,
    longest_accept_gap: Duration,
    longest_accept_gap_from: Option<Instant>,
}

/// Run a load and report. Binds `binds` transceivers; fails if any bind is refused.
pub async fn run(cfg: LoadConfig) -> Result<LoadReport, LoadError> {
    run_with_progress(cfg, Arc::new(Progress::default())).await
}

/// [`run`], counting into `progress` as it goes.
pub async fn run_with_progress(
    cfg: LoadConfig,
    progress: Arc<Progress>,
) -> Result<LoadReport, LoadError> {
    let shared = Arc::new(RunState {
        next: AtomicU64::new(0),
        limit: AtomicU64::new(cfg.count),
        responses: AtomicU64::new(0),
        accepted_wanting_receipt: AtomicU64::new(0),
        own_receipts: AtomicU64::new(0),
        progress,
        inner: Mutex::new(Inner::default()),
    });
    {
        let mut i = shared.inner.lock();
        i.resp_lat = Histogram::new_with_bounds(1, 60_000_000, 3).ok();
        i.rcpt_lat = Histogram::new_with_bounds(1, 600_000_000, 3).ok();
        i.dlvr_lat = Histogram::new_with_bounds(1, 600_000_000, 3).ok();
        i.started = Some(Instant::now());
    }
    let start = Instant::now();
    let mut conns = Vec::new();
    for _ in 0..cfg.binds.max(1) {
        conns.push(connect(&cfg).await?);
    }
    let mut tasks = Vec::new();
    for conn in conns {
        tasks.push(tokio::spawn(bind_loop(
            cfg.clone(),
            shared.clone(),
            conn,
            start,
        )));
    }
    for t in tasks {
        let _ = t.await;
    }
    let inner = std::mem::take(&mut *shared.inner.lock());
    Ok(report(&cfg, &shared, inner, start))
}

/// Record a receipt; true when it is the first for one of this run's messages.
fn record_receipt(inner: &mut Inner, id: String, state: DeliveryState, at: Instant) -> bool {
    let first = !inner.receipts.contains_key(&id);
    let own = if let Some(&(_, sent)) = inner.by_id.get(&id) {
        let us = at.saturating_duration_since(sent).as_micros().max(1) as u64;
        if let Some(h) = inner.rcpt_lat.as_mut() {
            let _ = h.record(us);
        }
        if first
            && state == DeliveryState::Delivered
            && let Some(h) = inner.dlvr_lat.as_mut()
        {
            let _ = h.record(us);
        }
        true
    } else {
        false
    };
    inner.receipts.entry(id).or_default().push(state);
    first && own
}

fn report(cfg: &LoadConfig, sh: &RunState, inner: Inner, start: Instant) -> LoadReport {
    let mut by_state = BTreeMap::new();
    let mut states = HashMap::new();
    let mut duplicates = 0;
    for (id, v) in &inner.receipts {
        for s in v {
            *by_state.entry(s.label()).or_default() += 1;
        }
        duplicates += v.len().saturating_sub(1) as u64;
        if let (Some((i, _)), Some(s)) = (inner.by_id.get(id), v.first()) {
            states.insert(*i, *s);
        }
    }
    let unknown = inner.early.len() as u64;
    let foreign_receipts = inner
        .early
        .iter()
        .map(|(id, st, _)| (id.clone(), *st))
        .collect();
    let accepted = inner.ids.len() as u64;
    let missing = if cfg.registered_delivery & 0x03 == 1 {
        inner
            .ids
            .values()
            .filter(|id| !inner.receipts.contains_key(*id))
            .count() as u64
    } else {
        0
    };
    let per_second = inner
        .series
        .iter()
        .enumerate()
        .map(|(sec, slot)| {
            let q = |p: f64| {
                slot.resp
                    .as_ref()
                    .map_or(0.0, |h| h.value_at_quantile(p) as f64 / 1000.0)
            };
            SecondStats {
                second: sec as u32,
                accepted: slot.accepted,
                refused: slot.refused,
                receipts: slot.receipts,
                resp_p50_ms: q(0.5),
                resp_p99_ms: q(0.99),
                resp_p999_ms: q(0.999),
            }
        })
        .collect();
    let end_submit = inner.last_response.unwrap_or(start);
    let end_total = inner
        .last_receipt
        .into_iter()
        .chain(inner.last_response)
        .max()
        .unwrap_or(start);
    LoadReport {
        sent: sh.progress.sent.load(Ordering::Relaxed),
        accepted,
        rejected: inner.rejected,
        receipts: sh.progress.receipts.load(Ordering::Relaxed),
        receipts_by_state: by_state,
        unknown_receipts: unknown,
        duplicate_receipts: duplicates,
        missing_receipts: missing,
        ids: inner.ids,
        refused: inner.refused,
        states,
        submit_elapsed: end_submit.saturating_duration_since(start),
        total_elapsed: end_total.saturating_duration_since(start),
        resp_latency_us: inner
            .resp_lat
            .unwrap_or_else(|| Histogram::new(3).expect("valid sigfig")),
        receipt_latency_us: inner
            .rcpt_lat
            .unwrap_or_else(|| Histogram::new(3).expect("valid sigfig")),
        delivered_latency_us: inner
            .dlvr_lat
            .unwrap_or_else(|| Histogram::new(3).expect("valid sigfig")),
        foreign_receipts,
        receipts_by_id: inner.receipts,
        per_second,
        first_accept: inner.first_accept,
        last_accept: inner.last_accept,
        longest_accept_gap: inner.longest_accept_gap,
        longest_accept_gap_from: inner.longest_accept_gap_from,
    }
}
