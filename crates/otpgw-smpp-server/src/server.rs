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

use otpgw_accept::Acceptor;
use otpgw_core::tracker::Tracker;

use crate::config::ServerConfig;
use crate::context::Context;
use crate::session;

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
        metrics::counter!("otpgw_auth_lockouts_total", "door" => "smpp").increment(0);
        metrics::counter!("otpgw_brand_proxy_header_failures_total").increment(0);
        metrics::counter!("otpgw_messages_cancelled_total").increment(0);
        let lockout =
            otpgw_accept::auth::Lockout::new(cfg.lockout_after, cfg.lockout_ip_after, cfg.lockout);
        Ok(Self {
            listener,
            tls,
            ctx: Arc::new(Context {
                lockout: parking_lot::Mutex::new(lockout),
                verify_slots: tokio::sync::Semaphore::new(
                    otpgw_accept::auth::MAX_CONCURRENT_VERIFIES,
                ),
                per_ip: dashmap::DashMap::new(),
                cfg,
                sessions: dashmap::DashMap::new(),
                acceptor,
                tracker,
                shutdown,
                connections: AtomicUsize::new(0),
            }),
        })
    }

    /// The shared context (session counts), for the admin API.
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
            let span = tracing::info_span!(
                "brand_session",
                %peer,
                client = tracing::field::Empty,
                brand = tracing::field::Empty
            );
            tasks.spawn(
                async move {
                    let mut stream = stream;
                    let _ = stream.set_nodelay(true);
                    // Behind a trusted load balancer: the client is who its
                    // PROXY header says (the limits per address above stay the
                    // proxy's).
                    let conn_ip = peer.ip();
                    let peer = match client_address(&ctx, &mut stream, peer).await {
                        Some(p) => p,
                        None => {
                            ctx.ip_closed(conn_ip, false);
                            ctx.connections.fetch_sub(1, Ordering::Relaxed);
                            return;
                        }
                    };
                    if peer.ip() != conn_ip {
                        tracing::Span::current().record("client", tracing::field::display(peer));
                    }
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
                    ctx.ip_closed(conn_ip, bound);
                    ctx.connections.fetch_sub(1, Ordering::Relaxed);
                }
                .instrument(span),
            );
        }
        tasks.close();
        tasks.wait().await;
    }
}

/// The client's address: the connection's, or, from a trusted proxy, the one its
/// PROXY protocol header names (read within the bind timeout). `None`: the header
/// is missing, malformed or late, and the connection is to be closed.
async fn client_address(
    ctx: &Context,
    stream: &mut TcpStream,
    peer: SocketAddr,
) -> Option<SocketAddr> {
    if !ctx
        .cfg
        .trusted_proxies
        .iter()
        .any(|n| n.contains(&peer.ip()))
    {
        return Some(peer);
    }
    let read = crate::proxy_protocol::read_header(stream);
    match tokio::time::timeout(ctx.cfg.bind_timeout, read).await {
        Ok(Ok(client)) => Some(client.unwrap_or(peer)),
        Ok(Err(e)) => {
            metrics::counter!("otpgw_brand_proxy_header_failures_total").increment(1);
            tracing::info!(%peer, error = %e, "connection from a trusted proxy refused");
            None
        }
        Err(_) => {
            metrics::counter!("otpgw_brand_proxy_header_failures_total").increment(1);
            tracing::info!(%peer, "no PROXY protocol header in time");
            None
        }
    }
}
