//! The HTTP listener: plain TCP or TLS (rustls, ALPN h2 and http/1.1), HTTP/1.1
//! with keep-alive and HTTP/2 on one port (hyper-util's automatic builder).
//!
//! Defences: connections at once in all and per client address (past either, a new
//! connection is closed at once); a connection must bring its first complete
//! request head within `header_timeout` of being accepted, its TLS handshake
//! included (an idle or slow connection is closed: it cannot hold a slot), and a
//! connection with no request in flight is closed `header_timeout` after its last
//! request ended ([`Activity`]; hyper's header timer does the same for HTTP/1.1
//! and guards each later head against slowloris);
//! bodies are capped and timed by the handlers ([`crate::body`]); at most
//! `max_streams` concurrent HTTP/2 streams per connection. On shutdown the
//! listener stops accepting and open connections finish their requests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::time::Instant;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::HttpConfig;

/// The client's address (see the module docs), put in every request's extensions.
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
    // Every series exists from the start (at 0).
    for reason in ["no_request", "idle"] {
        metrics::counter!("otpgw_http_connections_timed_out_total", "reason" => reason)
            .increment(0);
    }
    metrics::counter!("otpgw_auth_lockouts_total", "door" => "http").increment(0);
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
        let accepted = Instant::now();
        tasks.spawn(async move {
            let first_head_by = accepted + cfg.header_timeout;
            match tls {
                None => connection(TokioIo::new(stream), peer, app, &cfg, stop, accepted).await,
                Some(t) => match tokio::time::timeout_at(first_head_by, t.accept(stream)).await {
                    Ok(Ok(s)) => connection(TokioIo::new(s), peer, app, &cfg, stop, accepted).await,
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

/// Requests of one connection: how many are in flight and when the last one
/// ended (ms after the connection was accepted; 0 before the first request).
#[derive(Default)]
struct Activity {
    in_flight: AtomicUsize,
    requests: AtomicU64,
    idle_since_ms: AtomicU64,
}

impl Activity {
    /// When the connection is to be closed if nothing happens before: the first
    /// head's deadline, or the idle limit after the last request; `None` while a
    /// request is in flight.
    fn close_at(&self, accepted: Instant, cfg: &HttpConfig) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        if self.requests.load(Ordering::Acquire) == 0 {
            return Some(accepted + cfg.header_timeout);
        }
        let since = std::time::Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
        Some(accepted + since + cfg.header_timeout)
    }
}

/// Decrements the in-flight count when the request's handling ends.
struct InFlight {
    activity: Arc<Activity>,
    accepted: Instant,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let ms = self.accepted.elapsed().as_millis() as u64;
        self.activity.idle_since_ms.store(ms, Ordering::Release);
        self.activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Closes the connection when [`Activity::close_at`] passes with nothing in flight.
async fn idle_watch(activity: &Activity, accepted: Instant, cfg: &HttpConfig) {
    loop {
        match activity.close_at(accepted, cfg) {
            Some(at) if Instant::now() >= at => return,
            Some(at) => tokio::time::sleep_until(at).await,
            // A request in flight: look again later (it cannot end the wait itself).
            None => tokio::time::sleep(cfg.header_timeout).await,
        }
    }
}

async fn connection<I>(
    io: TokioIo<I>,
    peer: SocketAddr,
    app: Router,
    cfg: &HttpConfig,
    stop: CancellationToken,
    accepted: Instant,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::default());
    let seen = activity.clone();
    let trusted = cfg.trusted_proxies.clone();
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let client = client_of(peer, req.headers(), &trusted);
        req.extensions_mut().insert(Peer(client));
        seen.requests.fetch_add(1, Ordering::AcqRel);
        seen.in_flight.fetch_add(1, Ordering::AcqRel);
        let guard = InFlight {
            activity: seen.clone(),
            accepted,
        };
        let call = app.clone().oneshot(req.map(axum::body::Body::new));
        async move {
            let r = call.await;
            drop(guard);
            r
        }
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
        _ = idle_watch(&activity, accepted, cfg) => {
            let first = activity.requests.load(Ordering::Acquire) == 0;
            let why = if first { "no_request" } else { "idle" };
            metrics::counter!("otpgw_http_connections_timed_out_total", "reason" => why).increment(1);
            tracing::debug!(%peer, why, "http connection closed");
        }
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), conn).await;
        }
    }
}

/// The client of a request that came from `peer`: `peer` itself, unless it is a
/// trusted proxy; then the nearest `X-Forwarded-For` hop, from the right, that is
/// not a trusted proxy (every hop to the right of it was added by one). A hop that
/// is not an address ends the walk (at the last trusted hop).
pub fn client_of(
    peer: SocketAddr,
    headers: &hyper::HeaderMap,
    trusted: &[ipnet::IpNet],
) -> SocketAddr {
    let is_trusted = |ip: &std::net::IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer.ip()) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer.ip();
    for hop in hops.iter().rev() {
        match hop.parse::<std::net::IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(&ip) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    if client == peer.ip() {
        peer
    } else {
        SocketAddr::new(client, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_behind_trusted_proxies() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let h = |v: &[&str]| {
            let mut m = hyper::HeaderMap::new();
            for x in v {
                m.append("x-forwarded-for", x.parse().unwrap());
            }
            m
        };
        let lb: SocketAddr = "10.0.0.5:4000".parse().unwrap();
        let ip = |a: SocketAddr| a.ip().to_string();
        assert_eq!(ip(client_of(lb, &h(&["192.0.2.7"]), &trusted)), "192.0.2.7");
        // A client that writes its own header cannot choose its address: the
        // nearest untrusted hop counts.
        assert_eq!(
            ip(client_of(lb, &h(&["6.6.6.6, 192.0.2.7"]), &trusted)),
            "192.0.2.7"
        );
        assert_eq!(
            ip(client_of(
                lb,
                &h(&["6.6.6.6", "192.0.2.7, 10.0.0.9"]),
                &trusted
            )),
            "192.0.2.7"
        );
        assert_eq!(
            ip(client_of(lb, &h(&["garbage, 10.0.0.9"]), &trusted)),
            "10.0.0.9"
        );
        assert_eq!(client_of(lb, &h(&[]), &trusted), lb);
        // Not from a trusted proxy: the header is ignored.
        let direct: SocketAddr = "192.0.2.8:5000".parse().unwrap();
        assert_eq!(client_of(direct, &h(&["6.6.6.6"]), &trusted), direct);
    }
}
