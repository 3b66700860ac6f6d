//! The operator's listener: /healthz, /readyz (not ready before a carrier is bound,
//! ready after), and /metrics with the gateway's counters and histograms.

use crate::common;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use otpgw_sim::loadgen::{self, LoadConfig};

/// A plain HTTP/1.0 GET: (status code, body).
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    call(addr, "GET", path, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics() {
    let sim = common::sim(|_| {}).await;
    sim.set_accepting(false);
    let text = common::config_text("127.0.0.1:0", &[("sim", sim.addr())], "");
    let gw = common::start(&text).await;
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
    assert!(!m.contains("4474"), "a phone number leaked into /metrics");
    assert_eq!(get(ops, "/nope").await.0, 404);
    gw.shutdown().await;
    sim.shutdown();
}

/// An HTTP/1.0 request with an optional bearer token: (status, body).
pub(crate) async fn call(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, String) {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let (code, text) = raw_call(addr, "127.0.0.1", &format!("{method} {path}"), &auth).await;
    (
        code,
        text.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default(),
    )
}

/// `line` (method and path) from the address `from` with the header lines `auth`:
/// (status, the whole answer).
async fn raw_call(addr: std::net::SocketAddr, from: &str, line: &str, auth: &str) -> (u16, String) {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut s = sock.connect(addr).await.unwrap();
    s.write_all(
        format!("{line} HTTP/1.0\r\nHost: x\r\n{auth}Content-Length: 0\r\n\r\n").as_bytes(),
    )
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
    (code, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_needs_the_token_and_pauses_a_carrier() {
    const TOKEN: &str = "s3cret-admin-token-0123";
    let sim = common::sim(|c| c.receipt_delay = Duration::from_millis(1)).await;
    let text = common::config_text("127.0.0.1:0", &[("sim", sim.addr())], "")
        .replace("[ops]\n", &format!("[ops]\nadmin_token = \"{TOKEN}\"\n"));
    let gw = common::start(&text).await;
    assert!(gw.wait_bound(2, Duration::from_secs(10)).await);
    let ops = gw.ops_addr().unwrap();

    assert_eq!(call(ops, "GET", "/admin/carriers", None).await.0, 401);
    assert_eq!(
        call(
            ops,
            "GET",
            "/admin/carriers",
            Some("wrong-token-wrong-token")
        )
        .await
        .0,
        401
    );
    assert_eq!(
        call(ops, "POST", "/admin/carriers/sim/pause", None).await.0,
        401
    );
    let (code, body) = call(ops, "GET", "/admin/carriers", Some(TOKEN)).await;
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v[0]["name"], "sim");
    assert_eq!(v[0]["binds_up"], 2);
    assert_eq!(v[0]["paused"], false);
    assert_eq!(
        call(ops, "POST", "/admin/carriers/nope/pause", Some(TOKEN))
            .await
            .0,
        404
    );

    // Paused: messages are accepted and queued, nothing goes to the carrier.
    let (code, body) = call(ops, "POST", "/admin/carriers/sim/pause", Some(TOKEN)).await;
    assert_eq!(
        (code, body.contains("\"paused\":true")),
        (200, true),
        "{body}"
    );
    let mut lc = LoadConfig::new(gw.brand_addr(), "bank", "pw1", 50);
    lc.receipt_timeout = Duration::from_secs(10);
    let load = tokio::spawn(loadgen::run(lc));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sim.received(), 0, "a paused carrier got messages");
    let q: serde_json::Value =
        serde_json::from_str(&call(ops, "GET", "/admin/queue", Some(TOKEN)).await.1).unwrap();
    assert_eq!(q["queued"], 50);
    let b: serde_json::Value =
        serde_json::from_str(&call(ops, "GET", "/admin/brands", Some(TOKEN)).await.1).unwrap();
    assert_eq!(b[0]["system_id"], "bank");
    assert_eq!(b[0]["sessions"], 1);
    assert_eq!(sim.binds(), 2, "binds stay up while paused");

    // Resumed: everything goes out and the receipts come back.
    assert_eq!(
        call(ops, "POST", "/admin/carriers/sim/resume", Some(TOKEN))
            .await
            .0,
        200
    );
    let r = load.await.unwrap().unwrap();
    assert_eq!(r.receipts, 50);
    assert_eq!(sim.received(), 50);

    // Ten failures from one address lock it (429, Retry-After the lock's time),
    // even with the right token; another address is not locked, and the scheme's
    // case does not matter.
    for _ in 0..6 {
        assert_eq!(
            call(ops, "GET", "/admin/queue", Some("guess-guess"))
                .await
                .0,
            401
        );
    }
    let (code, head) = raw_call(
        ops,
        "127.0.0.1",
        "GET /admin/queue",
        "Authorization: Bearer guess\r\n",
    )
    .await;
    assert_eq!(code, 429, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 60\r\n"),
        "{head}"
    );
    let (code, head) = call(ops, "GET", "/admin/queue", Some(TOKEN)).await;
    assert_eq!(code, 429, "locked even with the token: {head}");
    let auth = format!("Authorization: bearer {TOKEN}\r\n");
    assert_eq!(
        raw_call(ops, "127.0.0.2", "GET /admin/queue", &auth)
            .await
            .0,
        200
    );
    gw.shutdown().await;
    sim.shutdown();
}

#[tokio::test]
async fn admin_api_is_off_without_a_token() {
    let sim = common::sim(|_| {}).await;
    let text = common::config_text("127.0.0.1:0", &[("sim", sim.addr())], "");
    let gw = common::start(&text).await;
    let ops = gw.ops_addr().unwrap();
    assert_eq!(
        call(ops, "GET", "/admin/carriers", Some("anything-at-all-here"))
            .await
            .0,
        404
    );
    gw.shutdown().await;
    sim.shutdown();
}

/// Every series docs/metrics.md lists exists at start, before any traffic, for the
/// carriers and brands in the config (at 0), except those whose labels come from
/// traffic (a destination country, an HTTP route, a quantile), which the docs say
/// appear with their first value. Before, 53 documented series did not exist until
/// their first event, so an alert on the first expiries could not fire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_series_exists_from_start() {
    let sim = common::sim(|_| {}).await;
    let http_port = common::free_port();
    let (brands, sections) = common::http_pieces(http_port);
    let dir = common::store_dir("series");
    let store = format!("path = \"{}\"", dir.join("otpgw.redb").display());
    let text = common::config_text_full(
        "127.0.0.1:0",
        &[("sim", sim.addr())],
        "",
        &store,
        [&brands[0], &brands[1]],
        &sections,
    );
    let gw = common::start(&text).await;
    let ops = gw.ops_addr().expect("ops listener on");
    let (code, m) = get(ops, "/metrics").await;
    assert_eq!(code, 200);
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/metrics.md"
    ))
    .unwrap();
    let mut missing = Vec::new();
    let mut checked = 0;
    for row in docs.lines().filter(|l| l.starts_with("| `otpgw_")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let name = cells[1].trim_matches('`');
        let labels = cells[3];
        // Series whose labels come from traffic, and those of a part only some
        // configurations have (a certificate: checked by the TLS tests).
        if ["country", "route", "quantile", "configured"]
            .iter()
            .any(|l| labels.contains(l))
        {
            continue;
        }
        checked += 1;
        if !m.lines().any(|l| {
            l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b' ' | b'{' | b'_'))
        }) {
            missing.push(name.to_string());
        }
    }
    assert!(checked > 60, "only {checked} series read from the docs");
    assert!(missing.is_empty(), "not at start: {missing:?}");
    // At 0 for the configured brands and carriers.
    for s in [
        "otpgw_messages_finished_total{state=\"expired\"} 0",
        "otpgw_receipt_timeouts_total{carrier=\"sim\"} 0",
        "otpgw_messages_accepted_total{brand=\"bank\"} 0",
    ] {
        assert!(m.contains(s), "{s} missing");
    }
    gw.shutdown().await;
    sim.shutdown();
}

/// The value of one series in a Prometheus text page (`series` with its labels as
/// rendered, e.g. `otpgw_x{brand="bank"}`).
fn value(page: &str, series: &str) -> Option<f64> {
    page.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The gauges ops asked for: messages in flight and awaiting their receipt,
/// receipts held for a brand with no receiver bound, the carrier's rate and state,
/// build info, the process's memory and files. Before, none existed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gauges_show_what_waits_where() {
    use common::Raw;
    use otpgw_proto::pdu::{self, SubmitFields};
    use otpgw_proto::rusmpp::{Command, CommandStatus};
    use otpgw_proto::status::cmd;
    let sim = common::sim(|c| c.receipt_delay = Duration::from_millis(1500)).await;
    let gw = common::gateway(&sim, "rate_limit = 100").await;
    let ops = gw.ops_addr().expect("ops listener on");
    // A transmitter only: the receipts have no receiver to go to.
    let mut t = Raw::connect(gw.brand_addr()).await;
    assert_eq!(t.bind(cmd::BIND_TRANSMITTER, "bank", "pw1", 1).await.1, 0);
    for i in 0..5u32 {
        let f = SubmitFields {
            registered_delivery: 1,
            short_message: bytes::Bytes::from_static(b"Your code is 123456"),
            ..otpgw_testkit::sample::fields("BANK", &format!("44740090{i:04}"))
        };
        t.send(&Command::new(
            CommandStatus::EsmeRok,
            10 + i,
            f.to_submit_sm().unwrap(),
        ))
        .await;
        let r = t.next_command().await.unwrap();
        assert!(pdu::submit_sm_resp_id(&r).is_some());
    }
    // At the carrier, receipts not yet back.
    for _ in 0..100 {
        if sim.received() == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (_, m) = get(ops, "/metrics").await;
    assert_eq!(value(&m, "otpgw_messages_in_flight"), Some(5.0), "{m}");
    assert_eq!(value(&m, "otpgw_receipts_awaited_messages"), Some(5.0));
    assert_eq!(
        value(&m, "otpgw_receipts_held_messages{brand=\"bank\"}"),
        Some(0.0)
    );
    // The receipts came back: held for the brand.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (_, m) = get(ops, "/metrics").await;
    assert_eq!(value(&m, "otpgw_messages_in_flight"), Some(0.0));
    assert_eq!(value(&m, "otpgw_receipts_awaited_messages"), Some(0.0));
    assert_eq!(
        value(&m, "otpgw_receipts_held_messages{brand=\"bank\"}"),
        Some(5.0)
    );
    assert_eq!(
        value(&m, "otpgw_carrier_available{carrier=\"sim\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(&m, "otpgw_carrier_failing{carrier=\"sim\"}"),
        Some(0.0)
    );
    assert_eq!(
        value(&m, "otpgw_carrier_rate_limit_per_second{carrier=\"sim\"}"),
        Some(100.0)
    );
    let version = format!(
        "otpgw_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(value(&m, &version), Some(1.0));
    assert!(value(&m, "otpgw_process_resident_memory_bytes").unwrap() > 1e6);
    assert!(value(&m, "otpgw_process_open_fds").unwrap() >= 3.0);
    // The carrier goes away: not available.
    sim.shutdown();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, m) = get(ops, "/metrics").await;
    assert_eq!(
        value(&m, "otpgw_carrier_available{carrier=\"sim\"}"),
        Some(0.0)
    );
    gw.shutdown().await;
}

/// The sum of a metric's series on a node's `/metrics`, whatever their labels (a
/// node on a shared store labels every series with its node id).
pub(crate) async fn scrape_sum(ops: std::net::SocketAddr, name: &str) -> f64 {
    let (_, m) = get(ops, "/metrics").await;
    m.lines()
        .filter(|l| {
            matches!(
                l.strip_prefix(name).and_then(|r| r.chars().next()),
                Some(' ' | '{')
            )
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The ops listener's address, from a node's log (its config says port 0), once
/// the node has logged it (up to 10 s: a loaded machine may start it after the
/// ports the caller waited for).
pub(crate) fn ops_addr_in(gw: &crate::common::GwProc) -> std::net::SocketAddr {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let found = gw
            .logs()
            .lines()
            .filter(|l| l.contains("ops listener"))
            .find_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("addr=")))
            .and_then(|a| a.parse().ok());
        match found {
            Some(a) => return a,
            None if std::time::Instant::now() < until => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            None => panic!("the ops listener's address in the log"),
        }
    }
}

/// One series (name and labels as rendered) from a node's `/metrics`.
pub(crate) async fn scrape_value(ops: std::net::SocketAddr, series: &str) -> Option<f64> {
    let (_, m) = get(ops, "/metrics").await;
    value(&m, series)
}
