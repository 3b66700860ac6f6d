//! A TCP proxy on loopback for fault campaigns: it stands between the gateway and a
//! simulated carrier and, on demand, adds latency to everything it forwards, resets
//! every connection (RST, no FIN), or stops forwarding (a link that hangs).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

struct State {
    target: SocketAddr,
    latency_ms: AtomicU64,
    stalled: AtomicBool,
    resets: watch::Sender<u64>,
    connections: AtomicU64,
    stop: CancellationToken,
}

/// A running proxy.
#[derive(Clone)]
pub struct Proxy {
    addr: SocketAddr,
    st: Arc<State>,
}

impl Proxy {
    /// Listen on a free port of 127.0.0.1 and forward to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<Self> {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        let addr = l.local_addr()?;
        let (resets, _) = watch::channel(0);
        let st = Arc::new(State {
            target,
            latency_ms: AtomicU64::new(0),
            stalled: AtomicBool::new(false),
            resets,
            connections: AtomicU64::new(0),
            stop: CancellationToken::new(),
        });
        let s = st.clone();
        tokio::spawn(async move {
            loop {
                let (c, _) = tokio::select! {
                    _ = s.stop.cancelled() => return,
                    a = l.accept() => match a { Ok(x) => x, Err(_) => continue },
                };
                tokio::spawn(serve(s.clone(), c));
            }
        });
        Ok(Self { addr, st })
    }

    /// Where the gateway connects.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// Add this much delay to every chunk forwarded, each way.
    pub fn set_latency(&self, d: Duration) {
        self.st
            .latency_ms
            .store(d.as_millis() as u64, Ordering::Relaxed);
    }
    /// Stop forwarding (bytes wait, connections stay open), or resume.
    pub fn set_stalled(&self, on: bool) {
        self.st.stalled.store(on, Ordering::Relaxed);
    }
    /// Reset every open connection (RST on both sides).
    pub fn reset_all(&self) {
        self.st.resets.send_modify(|g| *g += 1);
    }
    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.st.connections.load(Ordering::Relaxed)
    }
    /// Stop listening and close everything.
    pub fn shutdown(&self) {
        self.st.stop.cancel();
        self.reset_all();
    }
}

async fn serve(st: Arc<State>, client: TcpStream) {
    st.connections.fetch_add(1, Ordering::Relaxed);
    let Ok(server) = TcpStream::connect(st.target).await else {
        let _ = client.set_zero_linger();
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let _ = client.set_zero_linger();
    let _ = server.set_zero_linger();
    let mut resets = st.resets.subscribe();
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    tokio::select! {
        _ = resets.changed() => {}
        _ = st.stop.cancelled() => {}
        _ = pump(st.clone(), cr, sw) => {}
        _ = pump(st.clone(), sr, cw) => {}
    }
    // Dropping both sockets with linger 0 sends RST.
}

/// Forward `from` to `to`. Latency is a delay line, not a queue: each chunk is held
/// until `latency` after it was read, while later chunks are read meanwhile (a slow
/// link, not a narrow one). At most 4,096 chunks wait; beyond that reading stops.
async fn pump(
    st: Arc<State>,
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(tokio::time::Instant, Vec<u8>)>(4096);
    let reader = {
        let st = st.clone();
        async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = match from.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let lat = Duration::from_millis(st.latency_ms.load(Ordering::Relaxed));
                let due = tokio::time::Instant::now() + lat;
                if tx.send((due, buf[..n].to_vec())).await.is_err() {
                    return;
                }
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            while st.stalled.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
    };
    // The source's end is forwarded after what it sent; a destination that is gone
    // stops the reading at the next chunk.
    tokio::join!(reader, writer);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn forwards_delays_stalls_and_resets() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = echo.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = echo.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut b = [0u8; 64];
                    while let Ok(n) = s.read(&mut b).await {
                        if n == 0 || s.write_all(&b[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let p = Proxy::start(target).await.unwrap();
        let mut c = TcpStream::connect(p.addr()).await.unwrap();
        let mut b = [0u8; 4];
        c.write_all(b"ping").await.unwrap();
        c.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"ping");
        p.set_latency(Duration::from_millis(100));
        let t = std::time::Instant::now();
        c.write_all(b"pong").await.unwrap();
        c.read_exact(&mut b).await.unwrap();
        assert!(
            t.elapsed() >= Duration::from_millis(200),
            "both ways delayed"
        );
        p.set_latency(Duration::ZERO);
        p.set_stalled(true);
        c.write_all(b"wait").await.unwrap();
        let r = tokio::time::timeout(Duration::from_millis(200), c.read_exact(&mut b)).await;
        assert!(r.is_err(), "nothing while stalled");
        p.set_stalled(false);
        c.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"wait");
        p.reset_all();
        let r = tokio::time::timeout(Duration::from_secs(2), c.read(&mut b))
            .await
            .unwrap();
        assert!(matches!(r, Ok(0) | Err(_)), "reset");
        assert_eq!(p.connections(), 1);
    }
}
