//! The HTTP listener: plain TCP or TLS (rustls, ALPN h2 and http/1.1), HTTP/1.1
//! with keep-alive and HTTP/2 on one port (hyper-util's automatic builder).
//!
//! Defences: connections at once in all and per client address (past either, a new
//! connection is closed at once); request headers must arrive within
//! `header_timeout` (slowloris); bodies are capped and timed by the handlers
//! ([`crate::body`]); a TLS handshake must finish within the header timeout; at
//! most `max_streams` concurrent HTTP/2 streams per connection. On shutdown the
//! listener stops accepting and open connections finish their requests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::HttpConfig;

/// The client's address, put in every request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// Connections per client address.
struct PerIp {
    total: AtomicUsize,
    by_ip: dashmap::DashMap<std::net::IpAddr, usize>,
}

impl PerIp {
    fn admit(&self, ip: std::net::IpAddr, cfg: &HttpConfig) -> bool {
        if self.total.load(Ordering::Relaxed) >= cfg.max_connections {
            return false;
        }
        let mut n = self.by_ip.entry(ip).or_insert(0);
        if *n >= cfg.max_connections_per_ip {
            return false;
        }
        *n += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        true
    }
    fn release(&self, ip: std::net::IpAddr) {
        self.total.fetch_sub(1, Ordering::Relaxed);
        let gone = match self.by_ip.get_mut(&ip) {
            Some(mut n) => {
                *n = n.saturating_sub(1);
                *n == 0
            }
            None => false,
        };
        if gone {
            self.by_ip.remove_if(&ip, |_, n| *n == 0);
        }
    }
}

/// Serve `app` on `listener` until `stop`; returns when every connection ended.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    cfg: Arc<HttpConfig>,
    stop: CancellationToken,
) {
    let tls = cfg.tls.clone().map(|c| {
        let mut c = (*c).clone();
        c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        tokio_rustls::TlsAcceptor::from(Arc::new(c))
    });
    let limits = Arc::new(PerIp {
        total: AtomicUsize::new(0),
        by_ip: dashmap::DashMap::new(),
    });
    let tasks = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            a = listener.accept() => match a {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "http accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if !limits.admit(peer.ip(), &cfg) {
            metrics::counter!("otpgw_http_connections_refused_total").increment(1);
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let (app, cfg, stop, limits, tls) = (
            app.clone(),
            cfg.clone(),
            stop.clone(),
            limits.clone(),
            tls.clone(),
        );
        tasks.spawn(async move {
            match tls {
                None => connection(TokioIo::new(stream), peer, app, &cfg, stop).await,
                Some(t) => match tokio::time::timeout(cfg.header_timeout, t.accept(stream)).await {
                    Ok(Ok(s)) => connection(TokioIo::new(s), peer, app, &cfg, stop).await,
                    _ => {
                        metrics::counter!("otpgw_http_tls_handshake_failures_total").increment(1);
                    }
                },
            }
            limits.release(peer.ip());
        });
    }
    tasks.close();
    tasks.wait().await;
}

async fn connection<I>(
    io: TokioIo<I>,
    peer: SocketAddr,
    app: Router,
    cfg: &HttpConfig,
    stop: CancellationToken,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(Peer(peer));
        app.clone().oneshot(req.map(axum::body::Body::new))
    });
    let mut b = Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.header_timeout)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(cfg.max_streams)
        .keep_alive_interval(Some(std::time::Duration::from_secs(30)));
    let conn = b.serve_connection(io, svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::trace!(%peer, error = %e, "http connection ended with an error");
            }
        }
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), conn).await;
        }
    }
}
