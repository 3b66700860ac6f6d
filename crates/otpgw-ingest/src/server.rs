//! The brand listeners (plain TCP and/or TLS): accept connections and run a
//! [`crate::session`] for each.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use otpgw_core::tracker::Tracker;

use crate::acceptor::Acceptor;
use crate::brands::Brands;
use crate::session;

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
    pub tls: Option<crate::tls::TlsListen>,
    /// Failed binds of one account before it is locked (0: never).
    pub lockout_after: u32,
    /// Failed binds from one IP before it is locked (0: never).
    pub lockout_ip_after: u32,
    /// How long a lock lasts (and the window failures are counted in).
    pub lockout: Duration,
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
            specific_bind_errors: false,
            pdu_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(3600),
            max_connections_per_ip: 100,
            max_unbound_per_ip: 10,
        }
    }
}

/// Everything a brand session needs.
pub struct Context {
    pub cfg: ServerConfig,
    /// Reloaded on SIGHUP; sessions already bound keep their brand's settings.
    pub brands: Arc<parking_lot::RwLock<Brands>>,
    /// Bound sessions per brand.
    pub sessions: dashmap::DashMap<Arc<str>, usize>,
    pub acceptor: Arc<Acceptor>,
    pub tracker: Arc<Tracker>,
    pub shutdown: CancellationToken,
    pub connections: AtomicUsize,
    /// Failed binds per account and per IP.
    pub lockout: parking_lot::Mutex<crate::auth::Lockout>,
    /// Password verifications running at once.
    pub verify_slots: tokio::sync::Semaphore,
    /// Per source IP: connections, and those not bound.
    pub per_ip: dashmap::DashMap<std::net::IpAddr, (usize, usize)>,
}

impl Context {
    /// Count a new connection from `ip`, or refuse it (over a per-IP limit).
    fn admit_ip(&self, ip: std::net::IpAddr) -> bool {
        let mut e = self.per_ip.entry(ip).or_insert((0, 0));
        if e.0 >= self.cfg.max_connections_per_ip || e.1 >= self.cfg.max_unbound_per_ip {
            return false;
        }
        e.0 += 1;
        e.1 += 1;
        true
    }

    /// A connection from `ip` bound.
    pub(crate) fn ip_bound(&self, ip: std::net::IpAddr) {
        if let Some(mut e) = self.per_ip.get_mut(&ip) {
            e.1 = e.1.saturating_sub(1);
        }
    }

    /// A connection from `ip` ended (`bound`: it had bound and stayed counted so).
    fn ip_closed(&self, ip: std::net::IpAddr, bound: bool) {
        let gone = {
            let Some(mut e) = self.per_ip.get_mut(&ip) else {
                return;
            };
            e.0 = e.0.saturating_sub(1);
            if !bound {
                e.1 = e.1.saturating_sub(1);
            }
            e.0 == 0
        };
        if gone {
            self.per_ip.remove_if(&ip, |_, e| e.0 == 0);
        }
    }
}

/// The bound listeners: plain TCP and/or TLS.
pub struct Server {
    listener: Option<TcpListener>,
    tls: Option<(TcpListener, tokio_rustls::TlsAcceptor)>,
    ctx: Arc<Context>,
}

/// Accept on an optional listener (pending forever when there is none).
async fn accept_on(l: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

impl Server {
    /// Bind the listeners (port 0 picks a free port; see [`Server::local_addr`]).
    pub async fn bind(
        cfg: ServerConfig,
        brands: Brands,
        acceptor: Arc<Acceptor>,
        tracker: Arc<Tracker>,
        shutdown: CancellationToken,
    ) -> std::io::Result<Self> {
        let listener = match cfg.plain {
            true => Some(TcpListener::bind(cfg.listen).await?),
            false => None,
        };
        let tls = match &cfg.tls {
            Some(t) => Some((
                TcpListener::bind(t.listen).await?,
                tokio_rustls::TlsAcceptor::from(t.config.clone()),
            )),
            None => None,
        };
        let lockout =
            crate::auth::Lockout::new(cfg.lockout_after, cfg.lockout_ip_after, cfg.lockout);
        Ok(Self {
            listener,
            tls,
            ctx: Arc::new(Context {
                lockout: parking_lot::Mutex::new(lockout),
                verify_slots: tokio::sync::Semaphore::new(crate::auth::MAX_CONCURRENT_VERIFIES),
                per_ip: dashmap::DashMap::new(),
                cfg,
                brands: Arc::new(parking_lot::RwLock::new(brands)),
                sessions: dashmap::DashMap::new(),
                acceptor,
                tracker,
                shutdown,
                connections: AtomicUsize::new(0),
            }),
        })
    }

    /// The shared context (brands, session counts), for reloads and the admin API.
    pub fn context(&self) -> Arc<Context> {
        self.ctx.clone()
    }

    /// The plain listener's address (`None` when only TLS is configured).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The TLS listener's address, when TLS is configured.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// Accept connections until shutdown; then wait for sessions to end.
    pub async fn run(self) {
        let tasks = TaskTracker::new();
        loop {
            let (accepted, tls) = tokio::select! {
                _ = self.ctx.shutdown.cancelled() => break,
                a = accept_on(self.listener.as_ref()) => (a, None),
                a = accept_on(self.tls.as_ref().map(|(l, _)| l)) => (a, self.tls.as_ref().map(|(_, t)| t.clone())),
            };
            let (stream, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if self.ctx.connections.load(Ordering::Relaxed) >= self.ctx.cfg.max_connections {
                metrics::counter!("otpgw_brand_connections_refused_total").increment(1);
                drop(stream);
                continue;
            }
            if !self.ctx.admit_ip(peer.ip()) {
                metrics::counter!("otpgw_brand_connections_refused_total").increment(1);
                drop(stream);
                continue;
            }
            self.ctx.connections.fetch_add(1, Ordering::Relaxed);
            let ctx = self.ctx.clone();
            // Every log line of the session carries the peer, and the brand once bound.
            let span = tracing::info_span!("brand_session", %peer, brand = tracing::field::Empty);
            tasks.spawn(
                async move {
                    let _ = stream.set_nodelay(true);
                    let bound = match tls {
                        None => {
                            let (rd, wr) = stream.into_split();
                            session::run(ctx.clone(), rd, wr, peer).await
                        }
                        // The handshake must finish within the bind timeout.
                        Some(t) => {
                            match tokio::time::timeout(ctx.cfg.bind_timeout, t.accept(stream)).await
                            {
                                Ok(Ok(s)) => {
                                    let (rd, wr) = tokio::io::split(s);
                                    session::run(ctx.clone(), rd, wr, peer).await
                                }
                                _ => {
                                    metrics::counter!("otpgw_brand_tls_handshake_failures_total")
                                        .increment(1);
                                    tracing::info!(%peer, "TLS handshake failed or timed out");
                                    false
                                }
                            }
                        }
                    };
                    ctx.ip_closed(peer.ip(), bound);
                    ctx.connections.fetch_sub(1, Ordering::Relaxed);
                }
                .instrument(span),
            );
        }
        tasks.close();
        tasks.wait().await;
    }
}
