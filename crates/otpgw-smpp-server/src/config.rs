//! The SMPP door's listener and session settings.

use std::net::SocketAddr;
use std::time::Duration;

/// Listener and session settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Largest PDU accepted from a brand.
    pub max_frame: usize,
    /// A connection must bind within this time.
    pub bind_timeout: Duration,
    pub enquire_link_interval: Duration,
    pub enquire_link_timeout: Duration,
    /// How long a `deliver_sm` to a brand may wait for its response.
    pub response_timeout: Duration,
    /// Receipts outstanding per brand session.
    pub receipt_window: usize,
    /// Connections at once; past it new connections are closed at once.
    pub max_connections: usize,
    /// Brands that refuse a receipt this many times lose it (counted).
    pub max_receipt_attempts: u8,
    /// On shutdown, how long a brand may take to answer otpgw's unbind.
    pub unbind_grace: Duration,
    /// submit_sm one session may have waiting for the store; beyond: ESME_RTHROTTLED.
    pub max_pending_submits: usize,
    /// Whether the plain-TCP listener on `listen` runs.
    pub plain: bool,
    /// The TLS listener, if any.
    pub tls: Option<otpgw_accept::tls::TlsListen>,
    /// Failed binds of one account from one address before that account is
    /// locked for that address (0: never).
    pub lockout_after: u32,
    /// Failed binds from one IP before it is locked (0: never).
    pub lockout_ip_after: u32,
    /// The first lock (and the window failures are counted in); each further lock
    /// in a row lasts twice as long.
    pub lockout: Duration,
    /// Load balancers whose connections start with a PROXY protocol header (v1 or
    /// v2) naming the client ([`crate::proxy_protocol`]).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Answer bind failures with the specific status (ESME_RINVSYSID, ESME_RINVPASWD)
    /// instead of ESME_RBINDFAIL for all (which tells an attacker nothing).
    pub specific_bind_errors: bool,
    /// A PDU whose first bytes arrived must be complete within this time (slow
    /// senders holding a connection open byte by byte are closed).
    pub pdu_timeout: Duration,
    /// A bound session that receives nothing but keepalives (enquire_link) for this
    /// long is closed.
    pub idle_timeout: Duration,
    /// Connections at once from one IP address.
    pub max_connections_per_ip: usize,
    /// Connections from one IP address that are not (yet) bound.
    pub max_unbound_per_ip: usize,
}

impl ServerConfig {
    /// Defaults on `listen`.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            max_frame: otpgw_proto::codec::DEFAULT_MAX_FRAME,
            bind_timeout: Duration::from_secs(30),
            enquire_link_interval: Duration::from_secs(60),
            enquire_link_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(30),
            receipt_window: 100,
            max_connections: 1000,
            max_receipt_attempts: 10,
            unbind_grace: Duration::from_secs(1),
            max_pending_submits: 2000,
            plain: true,
            tls: None,
            lockout_after: 5,
            lockout_ip_after: 20,
            lockout: Duration::from_secs(300),
            trusted_proxies: Vec::new(),
            specific_bind_errors: false,
            pdu_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(3600),
            max_connections_per_ip: 100,
            max_unbound_per_ip: 10,
        }
    }
}
