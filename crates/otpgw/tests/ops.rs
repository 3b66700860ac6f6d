//! The operator's listener: /healthz, /readyz (not ready before a carrier is bound,
//! ready after), and /metrics with the gateway's counters and histograms.

mod common;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use otpgw::{Config, Gateway};
use otpgw_sim::loadgen::{self, LoadConfig};

/// A plain HTTP/1.0 GET: (status code, body).
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics() {
    let sim = common::sim(|_| {}).await;
    sim.set_accepting(false);
    let text = common::config_text("127.0.0.1:0", &[("sim", sim.addr())], "");
    let gw = Gateway::start(&Config::parse(&text, "test").unwrap())
        .await
        .unwrap();
    let ops = gw.ops_addr().expect("ops listener on");

    assert_eq!(get(ops, "/healthz").await.0, 200);
    let (code, body) = get(ops, "/readyz").await;
    assert_eq!(code, 503, "no carrier bound yet: {body}");
    assert!(body.contains("no carrier bound"), "{body}");

    sim.set_accepting(true);
    assert!(gw.wait_bound(1, Duration::from_secs(10)).await);
    assert_eq!(get(ops, "/readyz").await.0, 200);

    let mut lc = LoadConfig::new(gw.brand_addr(), "bank", "pw1", 200);
    lc.receipt_timeout = Duration::from_secs(5);
    let r = loadgen::run(lc).await.unwrap();
    assert_eq!(r.receipts, 200);
    let (code, m) = get(ops, "/metrics").await;
    assert_eq!(code, 200);
    for name in [
        "otpgw_messages_accepted_total",
        "otpgw_carrier_submitted_total",
        "otpgw_carrier_responses_total",
        "otpgw_receipts_total",
        "otpgw_receipts_forwarded_total",
        "otpgw_accept_latency_seconds_bucket",
        "otpgw_carrier_response_seconds_bucket",
        "otpgw_store_commit_seconds_bucket",
        "otpgw_carrier_binds_up",
    ] {
        assert!(m.contains(name), "/metrics lacks {name}");
    }
    // Labels stay low-cardinality: no message id or phone number in any label.
    for id in r.ids.values().take(20) {
        assert!(
            !m.contains(id.as_str()),
            "a message id leaked into /metrics"
        );
    }
    assert!(!m.contains("4477"), "a phone number leaked into /metrics");
    assert_eq!(get(ops, "/nope").await.0, 404);
    gw.shutdown().await;
    sim.shutdown();
}
