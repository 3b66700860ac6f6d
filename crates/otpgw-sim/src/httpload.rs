//! An HTTP load generator for otpgw's HTTP API: `connections` keep-alive HTTP/1.1
//! connections, each sending one request after the other (what a brand's pool of
//! clients does), at a given rate or flat out; messages (`POST /v1/messages`) or
//! verifications (`POST /v1/verifications`). Reports answers by status and the
//! latency of each request (write to last byte of the answer).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;

use crate::loadgen::dest_for;

/// What to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `POST /v1/messages`.
    Messages,
    /// `POST /v1/verifications`.
    Verifications,
}

/// A run.
#[derive(Debug, Clone)]
pub struct HttpLoadConfig {
    pub addr: SocketAddr,
    /// The brand's API key.
    pub key: String,
    pub kind: Kind,
    pub connections: usize,
    /// Requests in all (the most; `duration` may end the run sooner).
    pub count: u64,
    /// Requests per second across connections (flat out when `None`).
    pub rate: Option<u64>,
    pub duration: Option<Duration>,
    /// Index of the first request (destination numbers follow it).
    pub first_index: u64,
    /// Ask for receipts as webhooks to this URL (messages only).
    pub receipt_url: Option<String>,
}

impl HttpLoadConfig {
    /// `count` messages over 32 connections, flat out.
    pub fn new(addr: SocketAddr, key: &str, count: u64) -> Self {
        Self {
            addr,
            key: key.into(),
            kind: Kind::Messages,
            connections: 32,
            count,
            rate: None,
            duration: None,
            first_index: 0,
            receipt_url: None,
        }
    }
}

/// What a run saw.
#[derive(Debug, Clone)]
pub struct HttpLoadReport {
    pub sent: u64,
    /// 2xx answers.
    pub ok: u64,
    /// Answers by status code.
    pub by_status: BTreeMap<u16, u64>,
    /// Requests that got no answer (connection lost).
    pub failed: u64,
    pub elapsed: Duration,
    /// Microseconds from writing a request to the end of its answer (2xx only).
    pub latency_us: Histogram<u64>,
}

impl HttpLoadReport {
    /// 2xx answers per second.
    pub fn ok_rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpLoadError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("handshake: {0}")]
    Handshake(hyper::Error),
}

fn body(cfg: &HttpLoadConfig, i: u64) -> Bytes {
    let to = dest_for(i);
    let s = match cfg.kind {
        Kind::Messages => match &cfg.receipt_url {
            None => format!(r#"{{"to":"+{to}","from":"OTPGW","text":"code {i:010}"}}"#),
            Some(u) => format!(
                r#"{{"to":"+{to}","from":"OTPGW","text":"code {i:010}","receipt_url":"{u}"}}"#
            ),
        },
        Kind::Verifications => format!(r#"{{"to":"+{to}"}}"#),
    };
    Bytes::from(s)
}

struct RunState {
    cfg: HttpLoadConfig,
    next: AtomicU64,
    start: Instant,
    out: Mutex<(BTreeMap<u16, u64>, u64, Histogram<u64>)>,
}

/// Run the load.
pub async fn run(cfg: HttpLoadConfig) -> Result<HttpLoadReport, HttpLoadError> {
    let hist = Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    let s = Arc::new(RunState {
        next: AtomicU64::new(0),
        start: Instant::now(),
        out: Mutex::new((BTreeMap::new(), 0, hist)),
        cfg,
    });
    let mut tasks = Vec::new();
    for _ in 0..s.cfg.connections.max(1) {
        let stream = tokio::net::TcpStream::connect(s.cfg.addr)
            .await
            .map_err(HttpLoadError::Connect)?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(HttpLoadError::Handshake)?;
        tokio::spawn(conn);
        tasks.push(tokio::spawn(connection(s.clone(), sender)));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = s.start.elapsed();
    let (by_status, failed, latency_us) = {
        let o = s.out.lock();
        (o.0.clone(), o.1, o.2.clone())
    };
    let sent = s.next.load(Ordering::Relaxed).min(s.cfg.count);
    let ok = by_status
        .iter()
        .filter(|(c, _)| (200..300).contains(*c))
        .map(|(_, n)| n)
        .sum();
    Ok(HttpLoadReport {
        sent,
        ok,
        by_status,
        failed,
        elapsed,
        latency_us,
    })
}

async fn connection(
    s: Arc<RunState>,
    mut sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
) {
    let path = match s.cfg.kind {
        Kind::Messages => "/v1/messages",
        Kind::Verifications => "/v1/verifications",
    };
    let auth = format!("Bearer {}", s.cfg.key);
    loop {
        let n = s.next.fetch_add(1, Ordering::Relaxed);
        if n >= s.cfg.count || s.cfg.duration.is_some_and(|d| s.start.elapsed() >= d) {
            return;
        }
        if let Some(rate) = s.cfg.rate {
            let due = s.start + Duration::from_secs_f64(n as f64 / rate.max(1) as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let i = s.cfg.first_index + n;
        let req = Request::post(path)
            .header("host", "otpgw")
            .header("authorization", &auth)
            .header("content-type", "application/json")
            .body(Full::new(body(&s.cfg, i)));
        let Ok(req) = req else { return };
        if sender.ready().await.is_err() {
            s.out.lock().1 += 1;
            return;
        }
        let t = Instant::now();
        let res = match sender.send_request(req).await {
            Ok(r) => r,
            Err(_) => {
                s.out.lock().1 += 1;
                return;
            }
        };
        let status = res.status().as_u16();
        let _ = res.into_body().collect().await;
        let us = t.elapsed().as_micros() as u64;
        let mut o = s.out.lock();
        *o.0.entry(status).or_default() += 1;
        if (200..300).contains(&status) {
            let _ = o.2.record(us.max(1));
        }
    }
}
