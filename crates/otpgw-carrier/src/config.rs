//! One carrier's connection settings ([`CarrierConfig`]) and its policies.

use std::time::Duration;

pub use crate::matcher::IdMode;

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

/// TLS towards a carrier: the client configuration (trusted roots, and otpgw's
/// certificate for mutual TLS) and the name the carrier's certificate must carry.
#[derive(Clone)]
pub struct CarrierTls {
    pub config: std::sync::Arc<tokio_rustls::rustls::ClientConfig>,
    pub server_name: String,
}

/// One carrier's connection settings.
#[derive(Clone)]
pub struct CarrierConfig {
    pub name: String,
    /// `host:port`.
    pub address: String,
    /// TLS on the binds (`None`: plain TCP). With it nothing is ever sent in clear:
    /// a failed handshake fails the bind.
    pub tls: Option<CarrierTls>,
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
            tls: None,
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
