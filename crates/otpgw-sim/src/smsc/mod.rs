//! The simulated carrier SMSC. See the crate docs for what it can do.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use otpgw_proto::pdu::SubmitFields;
use otpgw_proto::receipt::{self, DeliveryState};

use crate::receipts::ReceiptQueue;

mod conn;
use conn::serve;

/// How the simulator writes its message ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdStyle {
    /// Upper-case hex, e.g. `1A2B`.
    HexUpper,
    /// Decimal, e.g. `6699`.
    Decimal,
    /// Lower-case hex padded with zeros to 12, e.g. `000000001a2b`.
    HexPadded,
}

impl IdStyle {
    fn format(self, n: u64) -> String {
        match self {
            IdStyle::HexUpper => format!("{n:X}"),
            IdStyle::Decimal => n.to_string(),
            IdStyle::HexPadded => format!("{n:012x}"),
        }
    }
}

/// Relative weights of the receipt outcomes. The outcome of the n-th message is
/// decided by `n` alone (deterministic), so a run can be predicted and checked.
#[derive(Debug, Clone, Copy)]
pub struct Outcomes {
    pub delivered: u32,
    pub undeliverable: u32,
    pub expired: u32,
}

impl Outcomes {
    /// Everything delivered.
    pub fn all_delivered() -> Self {
        Self {
            delivered: 1,
            undeliverable: 0,
            expired: 0,
        }
    }

    /// The outcome of message number `n`.
    pub fn pick(&self, n: u64) -> DeliveryState {
        let total = u64::from(self.delivered + self.undeliverable + self.expired).max(1);
        let r = (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 33) % total;
        if r < u64::from(self.delivered) {
            DeliveryState::Delivered
        } else if r < u64::from(self.delivered + self.undeliverable) {
            DeliveryState::Undeliverable
        } else {
            DeliveryState::Expired
        }
    }
}

/// What a [`Rule`] does to the messages it applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAction {
    /// Accept the message, never send its receipt (a carrier that silently loses
    /// receipts, or messages).
    DropReceipt,
    /// Send the receipt this much later than usual.
    Delay(Duration),
    /// The receipt says UNDELIV.
    Undeliverable,
}

/// Per-prefix behaviour for a share of messages: destinations starting with
/// `prefix`, `percent` of them (decided by the message's number, so a run can be
/// predicted), get `action`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub prefix: String,
    pub percent: u32,
    pub action: RuleAction,
}

/// A `--rule` that does not parse, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRule(pub String);

impl Rule {
    /// Parse `PREFIX:PERCENT:drop|undeliv|delay=MS`.
    pub fn parse(s: &str) -> Result<Self, BadRule> {
        let mut it = s.splitn(3, ':');
        let (Some(prefix), Some(pct), Some(act)) = (it.next(), it.next(), it.next()) else {
            return Err(BadRule(format!(
                "{s:?}: expected PREFIX:PERCENT:drop|undeliv|delay=MS"
            )));
        };
        let percent: u32 = pct
            .parse()
            .ok()
            .filter(|p| *p <= 100)
            .ok_or_else(|| BadRule(format!("{s:?}: percent must be 0 to 100")))?;
        let action = match act {
            "drop" => RuleAction::DropReceipt,
            "undeliv" => RuleAction::Undeliverable,
            d => match d.strip_prefix("delay=").and_then(|m| m.parse::<u64>().ok()) {
                Some(ms) => RuleAction::Delay(Duration::from_millis(ms)),
                None => {
                    return Err(BadRule(format!(
                        "{s:?}: action must be drop, undeliv or delay=MS"
                    )));
                }
            },
        };
        if !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BadRule(format!("{s:?}: the prefix must be digits")));
        }
        Ok(Self {
            prefix: prefix.into(),
            percent,
            action,
        })
    }

    /// Whether it applies to message number `n` to `dest`.
    pub fn applies(&self, n: u64, dest: &str) -> bool {
        dest.trim_start_matches('+').starts_with(&self.prefix)
            && (n.wrapping_mul(0xD6E8_FEB8_6659_FD93) >> 40) % 100 < u64::from(self.percent)
    }
}

/// How receipts are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptFormat {
    /// `receipted_message_id` and `message_state` TLVs plus the text.
    TlvAndText,
    /// The text only (older SMSCs).
    TextOnly,
}

/// Simulator settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub listen: SocketAddr,
    /// Credentials required to bind; `None` accepts any.
    pub credentials: Option<(String, String)>,
    pub receipt_delay: Duration,
    pub outcomes: Outcomes,
    /// Submits per second across all binds; above it ESME_RTHROTTLED.
    pub rate_cap: Option<u32>,
    pub resp_id_style: IdStyle,
    pub receipt_id_style: IdStyle,
    pub receipt_format: ReceiptFormat,
    /// Send each receipt before its `submit_sm_resp` (on a transceiver bind).
    pub early_receipts: bool,
    /// Receipts outstanding per bind.
    pub window: usize,
    /// Per-prefix behaviour for shares of messages (the first rule that applies).
    pub rules: Vec<Rule>,
    /// Serve SMPP over TLS with this configuration (it may require client
    /// certificates: mutual TLS); `None`: plain TCP.
    pub tls: Option<std::sync::Arc<tokio_rustls::rustls::ServerConfig>>,
}

impl SimConfig {
    /// Defaults: any credentials, receipts after 10 ms, all delivered, no cap,
    /// hex ids in responses and decimal ids in receipts (like many real SMSCs).
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            credentials: None,
            receipt_delay: Duration::from_millis(10),
            outcomes: Outcomes::all_delivered(),
            rate_cap: None,
            resp_id_style: IdStyle::HexUpper,
            receipt_id_style: IdStyle::Decimal,
            receipt_format: ReceiptFormat::TlvAndText,
            early_receipts: false,
            window: 1000,
            rules: Vec::new(),
            tls: None,
        }
    }
}

/// One message the simulator received.
#[derive(Debug, Clone)]
pub struct Received {
    /// The simulator's id (as a number).
    pub sim_id: u64,
    pub system_id: String,
    /// Which connection (bind) it came on, numbered from 0 in accept order.
    pub connection: u64,
    pub fields: SubmitFields,
    pub outcome: DeliveryState,
    pub at: Instant,
    /// A rule dropped its receipt.
    pub receipt_dropped: bool,
}

impl Received {
    /// The message text (from `message_payload` when present).
    pub fn text(&self) -> &[u8] {
        self.fields.text()
    }

    /// The text as a phone shows it (GSM alphabet, or UCS-2 for data_coding 8).
    pub fn shown_text(&self) -> String {
        let t = self.text();
        if self.fields.data_coding == 8 {
            let u: Vec<u16> = t
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]))
                .collect();
            String::from_utf16_lossy(&u)
        } else {
            otpgw_proto::gsm::decode_gsm(t)
        }
    }
}

struct State {
    cfg: Mutex<SimConfig>,
    next_id: AtomicU64,
    records: Mutex<Vec<Received>>,
    connections: AtomicU64,
    throttled: AtomicU64,
    window: Mutex<(Instant, u32)>,
    receipts: ReceiptQueue,
    receipts_sent: AtomicU64,
    binds: AtomicUsize,
    drop_gen: watch::Sender<u64>,
    shutdown: CancellationToken,
    accepting: AtomicBool,
    rate_cap: AtomicU32,
    /// Fault injection for submits: 0 = normal, u32::MAX = never answer (and keep
    /// nothing), any other value = answer with that status.
    submit_fault: AtomicU32,
    /// Submits swallowed or refused by the fault switch.
    faulted: AtomicU64,
}

/// A running simulator.
#[derive(Clone)]
pub struct SimHandle {
    addr: SocketAddr,
    st: Arc<State>,
}

impl SimHandle {
    /// Bind the listener and start serving.
    pub async fn start(cfg: SimConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(cfg.listen).await?;
        let tls = cfg.tls.clone().map(tokio_rustls::TlsAcceptor::from);
        let addr = listener.local_addr()?;
        let (drop_gen, _) = watch::channel(0);
        let st = Arc::new(State {
            rate_cap: AtomicU32::new(cfg.rate_cap.unwrap_or(0)),
            submit_fault: AtomicU32::new(0),
            faulted: AtomicU64::new(0),
            cfg: Mutex::new(cfg),
            next_id: AtomicU64::new(1),
            records: Mutex::new(Vec::new()),
            throttled: AtomicU64::new(0),
            window: Mutex::new((Instant::now(), 0)),
            receipts: ReceiptQueue::default(),
            receipts_sent: AtomicU64::new(0),
            binds: AtomicUsize::new(0),
            drop_gen,
            shutdown: CancellationToken::new(),
            accepting: AtomicBool::new(true),
            connections: AtomicU64::new(0),
        });
        let st2 = st.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = st2.shutdown.cancelled() => return,
                    a = listener.accept() => match a { Ok(x) => x, Err(_) => continue },
                };
                if !st2.accepting.load(Ordering::Relaxed) {
                    drop(stream);
                    continue;
                }
                let _ = stream.set_nodelay(true);
                match &tls {
                    None => {
                        tokio::spawn(serve(st2.clone(), stream));
                    }
                    Some(acceptor) => {
                        let (acceptor, st3) = (acceptor.clone(), st2.clone());
                        tokio::spawn(async move {
                            // A client that fails the handshake (no or a wrong
                            // certificate) never reaches SMPP.
                            let hs = tokio::time::timeout(
                                Duration::from_secs(10),
                                acceptor.accept(stream),
                            )
                            .await;
                            match hs {
                                Ok(Ok(s)) => serve(st3, s).await,
                                Ok(Err(e)) => {
                                    tracing::info!(error = %e, "sim: TLS handshake failed")
                                }
                                Err(_) => tracing::info!("sim: TLS handshake timed out"),
                            }
                        });
                    }
                }
            }
        });
        Ok(Self { addr, st })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// Every message received so far.
    pub fn records(&self) -> Vec<Received> {
        self.st.records.lock().clone()
    }
    /// Messages received so far.
    pub fn received(&self) -> usize {
        self.st.records.lock().len()
    }
    /// ESME_RTHROTTLED answers sent so far.
    pub fn throttled(&self) -> u64 {
        self.st.throttled.load(Ordering::Relaxed)
    }
    /// Receipts waiting to be sent (held while no receiver is bound).
    pub fn pending_receipts(&self) -> usize {
        self.st.receipts.len()
    }
    /// Receipts acknowledged by the gateway.
    pub fn receipts_sent(&self) -> u64 {
        self.st.receipts_sent.load(Ordering::Relaxed)
    }
    /// Binds currently up.
    pub fn binds(&self) -> usize {
        self.st.binds.load(Ordering::Relaxed)
    }
    /// Answer every submit with `status` (`Some(0)` or `None`: behave normally).
    pub fn set_submit_error(&self, status: Option<u32>) {
        self.st
            .submit_fault
            .store(status.unwrap_or(0), Ordering::Relaxed);
    }

    /// Swallow every submit without answering (a carrier that hangs), or stop doing so.
    pub fn set_silent(&self, on: bool) {
        self.st
            .submit_fault
            .store(if on { u32::MAX } else { 0 }, Ordering::Relaxed);
    }

    /// Submits the fault switches swallowed or refused.
    pub fn faulted(&self) -> u64 {
        self.st.faulted.load(Ordering::Relaxed)
    }

    /// Replace the per-prefix rules (a carrier that starts or stops losing receipts).
    pub fn set_rules(&self, rules: Vec<Rule>) {
        self.st.cfg.lock().rules = rules;
    }

    /// Change the rate cap (0 or `None`: no cap).
    pub fn set_rate_cap(&self, cap: Option<u32>) {
        self.st.rate_cap.store(cap.unwrap_or(0), Ordering::Relaxed);
    }
    /// Close every current connection abruptly (no unbind).
    pub fn drop_connections(&self) {
        self.st.drop_gen.send_modify(|g| *g += 1);
    }
    /// Refuse (close at once) new connections, or accept them again.
    pub fn set_accepting(&self, on: bool) {
        self.st.accepting.store(on, Ordering::Relaxed);
    }
    /// Stop listening and close everything.
    pub fn shutdown(&self) {
        self.st.shutdown.cancel();
        self.drop_connections();
    }
}

impl State {
    /// Whether one more submit fits in the current one-second window.
    fn admit_rate(&self) -> bool {
        let cap = self.rate_cap.load(Ordering::Relaxed);
        if cap == 0 {
            return true;
        }
        let mut w = self.window.lock();
        let now = Instant::now();
        if now.duration_since(w.0) >= Duration::from_secs(1) {
            *w = (now, 0);
        }
        if w.1 >= cap {
            return false;
        }
        w.1 += 1;
        true
    }
}

/// Parse a receipt text the simulator wrote (for its own tests).
pub fn parse_receipt_text(b: &[u8]) -> receipt::ReceiptText {
    receipt::parse(b)
}

#[cfg(test)]
mod rule_tests {
    use super::*;

    #[test]
    fn rules_parse_and_apply_to_their_share() {
        let r = Rule::parse("44:30:drop").unwrap();
        assert_eq!(r.action, RuleAction::DropReceipt);
        assert_eq!(
            Rule::parse("1:5:delay=2500").unwrap().action,
            RuleAction::Delay(Duration::from_millis(2500))
        );
        assert!(Rule::parse("44:101:drop").is_err());
        assert!(Rule::parse("4a:10:drop").is_err());
        assert!(Rule::parse("44:10:explode").is_err());
        let hit = (0..10_000u64)
            .filter(|n| r.applies(*n, "447400900123"))
            .count();
        assert!((2_800..3_200).contains(&hit), "{hit} of 10,000");
        assert!(!(0..1000u64).any(|n| r.applies(n, "337700900123")));
    }
}
