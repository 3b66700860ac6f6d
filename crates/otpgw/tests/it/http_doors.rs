//! The HTTP door against strangers, over real sockets to the `otpgw serve` binary:
//! idle connections cannot hold its slots, failed keys lock only the failing
//! address and say truthfully for how long, and the `Bearer` scheme is
//! case-insensitive.

use crate::common;

use std::time::Duration;

use common::BANK_KEY;
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn client(from: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .local_address(Some(from.parse().unwrap()))
        .build()
        .unwrap()
}

/// Whether the server closed `s` within `limit` (EOF or reset).
async fn closed_within(s: &mut tokio::net::TcpStream, limit: Duration) -> bool {
    let mut b = [0u8; 256];
    matches!(
        tokio::time::timeout(limit, s.read(&mut b)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// Connections that never send a request, up to `max_connections` of them, are
/// closed `header_timeout_secs` after they were accepted, and brands get in again;
/// a connection idle after its request is closed `header_timeout_secs` later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cannot_shut_brands_out() {
    let sim = common::sim(|_| {}).await;
    let (mut gw, base) = common::serve_http_process(
        &sim,
        "http-idle",
        "header_timeout_secs = 1\nmax_connections = 10",
    )
    .await;
    let addr = base.trim_start_matches("http://").to_string();
    let c = client("127.0.0.1");
    let send = |c: &reqwest::Client| {
        c.post(format!("{base}/v1/messages"))
            .bearer_auth(BANK_KEY)
            .json(&json!({"to": "+447400900700", "from": "MyBank", "text": "code 1234"}))
            .send()
    };
    // Twenty silent connections: the first ten take every slot.
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // (Before the fix they stayed open for ever and every brand was shut out.)
    // A second later (the header timeout, from accept) every one is closed.
    let started = std::time::Instant::now();
    for s in &mut idle {
        assert!(
            closed_within(s, Duration::from_secs(3)).await,
            "an idle connection stayed open"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    let r = send(&c).await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // A half-sent request head is no better than silence.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert!(
        closed_within(&mut slow, Duration::from_secs(3)).await,
        "a half head stayed open"
    );
    // Keep-alive after a request: closed once idle for `header_timeout_secs`.
    let mut kept = tokio::net::TcpStream::connect(&addr).await.unwrap();
    kept.write_all(b"GET /v1/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut b = vec![0u8; 65536];
    let n = kept.read(&mut b).await.unwrap();
    assert!(b[..n].starts_with(b"HTTP/1.1 200"));
    let t = std::time::Instant::now();
    assert!(
        closed_within(&mut kept, Duration::from_secs(5)).await,
        "an idle keep-alive stayed open"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(800),
        "closed early: {:?}",
        t.elapsed()
    );
    assert_eq!(
        gw.term(Duration::from_secs(10)).await,
        Some(0),
        "{}",
        gw.logs()
    );
    sim.shutdown();
}

/// Bad keys lock the address that sent them, with `Retry-After` the time the lock
/// really has left; the right key from another address still works; `bearer` in
/// lower case is the same scheme.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_keys_lock_only_their_address_and_say_for_how_long() {
    let sim = common::sim(|_| {}).await;
    let (mut gw, base) =
        common::serve_http_process(&sim, "http-lockout", "lockout_after = 3\nlockout_secs = 7")
            .await;
    let url = format!("{base}/v1/messages/0123456789abcdef");
    let (here, there) = (client("127.0.0.1"), client("127.0.0.2"));
    for _ in 0..2 {
        let r = here
            .get(&url)
            .bearer_auth("otpgw_wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = here
        .get(&url)
        .bearer_auth("otpgw_wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "7", "the lock's length");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let r = here.get(&url).bearer_auth(BANK_KEY).send().await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "locked, even with the right key"
    );
    let left: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (5..=6).contains(&left),
        "the time left, not a fixed figure: {left}"
    );
    let r = there
        .get(&url)
        .header("authorization", format!("bearer {BANK_KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "another address, lower-case scheme"
    );
    assert_eq!(
        gw.term(Duration::from_secs(10)).await,
        Some(0),
        "{}",
        gw.logs()
    );
    sim.shutdown();
}

/// Webhook URLs that point inside the gateway's network are refused at submit
/// (400) in every spelling, and a name that resolves there is not posted to;
/// a `fallback_url` there fails the config check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_cannot_reach_internal_addresses() {
    let sim = common::sim(|c| c.receipt_delay = Duration::from_millis(5)).await;
    let hooks = common::HookSink::start().await;
    let (brands, sections) = common::http_pieces(0);
    let sections = sections.replace(common::ALLOW_LOOPBACK_HOOKS, "");
    let text = common::config_text_full(
        "127.0.0.1:0",
        &[("sim", sim.addr())],
        "",
        &format!(
            "path = \"{}\"",
            common::store_dir("http-ssrf").join("otpgw.redb").display()
        ),
        [&brands[0], &brands[1]],
        &sections,
    );
    let gw = common::start(&text).await;
    assert!(gw.wait_bound(2, Duration::from_secs(10)).await);
    let base = format!("http://{}", gw.http_addr().unwrap());
    let c = client("127.0.0.1");
    let post = |url: String| {
        c.post(format!("{base}/v1/messages"))
            .bearer_auth(BANK_KEY)
            .json(&json!({"to": "+447400900710", "from": "MyBank", "text": "code 1", "receipt_url": url}))
            .send()
    };
    for bad in [
        hooks.url.clone(),
        "http://[::ffff:127.0.0.1]/hook".to_string(),
        "http://2130706433/hook".to_string(),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://10.0.0.7/hook".to_string(),
        "https://user:pw@hooks.example.com/hook".to_string(),
    ] {
        let r = post(bad.clone()).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "invalid_receipt_url", "{bad}: {v}");
        assert_eq!(v["error"]["field"], "receipt_url");
    }
    // A name is taken at submit, but it resolves to loopback: never posted to.
    let by_name = hooks.url.replace("127.0.0.1", "localhost");
    let r = post(by_name).await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id = r.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    for _ in 0..100 {
        let v: serde_json::Value = c
            .get(format!("{base}/v1/messages/{id}"))
            .bearer_auth(BANK_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["status"] == "delivered" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(
        hooks.got.lock().is_empty(),
        "a webhook reached loopback through a name"
    );
    gw.shutdown().await;

    // A fallback URL inside: the config check says so.
    let text = text.replace(
        "[[brand]]\nsystem_id = \"bank\"\n",
        "[[brand]]\nsystem_id = \"bank\"\nfallback_url = \"http://169.254.169.254/x\"\n",
    );
    let problems = format!(
        "{:?}",
        otpgw_node::config::Config::parse(&text, "test").unwrap_err()
    );
    assert!(
        problems.contains("fallback_url") && problems.contains("169.254.169.254"),
        "{problems}"
    );
    sim.shutdown();
}

/// The HTTP contract: a body without Content-Type is 415; whole numbers may be
/// written `60.0`; an Idempotency-Key compares the request's meaning (spacing and
/// key order aside) on messages and on verifications, where a retry sends no
/// second code; a verification approved has no checks left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_contract_holds_for_integrators() {
    let sim = common::sim(|c| c.receipt_delay = Duration::from_millis(5)).await;
    let (mut gw, base) = common::serve_http_process(&sim, "http-contract", "").await;
    let c = client("127.0.0.1");
    let raw = |path: &str, body: &str, key: Option<&str>, ct: bool| {
        let mut r = c
            .post(format!("{base}{path}"))
            .bearer_auth(BANK_KEY)
            .body(body.to_string());
        if ct {
            r = r.header("content-type", "application/json");
        }
        if let Some(k) = key {
            r = r.header("idempotency-key", k);
        }
        r.send()
    };
    let msg = r#"{"to":"+447400900720","from":"MyBank","text":"code 5","validity_secs":60}"#;
    let r = raw("/v1/messages", msg, None, false).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // 60.0 is a whole number.
    let first = raw(
        "/v1/messages",
        &msg.replace(":60", ":60.0"),
        Some("m-1"),
        true,
    )
    .await
    .unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let id = first.json::<serde_json::Value>().await.unwrap()["id"].clone();
    // The same request, re-encoded: the same answer.
    let again = r#"{ "validity_secs": 60, "text": "code 5",
        "from": "MyBank", "to": "+447400900720" }"#;
    let r = raw("/v1/messages", again, Some("m-1"), true).await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["id"], id);
    let r = raw(
        "/v1/messages",
        &msg.replace("code 5", "code 6"),
        Some("m-1"),
        true,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Verifications honour the key: one code sent, the same verification answered.
    let digits = "447400900721";
    let body = format!(r#"{{"to":"+{digits}","code_length":6.0}}"#);
    let r = raw("/v1/verifications", &body, Some("v-1"), true)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let v1: serde_json::Value = r.json().await.unwrap();
    let code = common::code_sent_to(&sim, digits, 0).await;
    let body2 = format!(r#"{{ "code_length": 6, "to": "+{digits}" }}"#);
    let r = raw("/v1/verifications", &body2, Some("v-1"), true)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let v2: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v2["id"], v1["id"], "the first verification, not a new one");
    let r = raw(
        "/v1/verifications",
        &format!(r#"{{"to":"+{digits}","code_length":8}}"#),
        Some("v-1"),
        true,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = sim
        .records()
        .iter()
        .filter(|r| r.fields.dest.addr == digits)
        .count();
    assert_eq!(sent, 1, "a retry sent a second code");
    // Approved: no checks left, then or later.
    let vid = v1["id"].as_str().unwrap();
    let check = |code: String| {
        raw(
            &format!("/v1/verifications/{vid}/check"),
            &format!(r#"{{"code":"{code}"}}"#),
            None,
            true,
        )
    };
    let r: serde_json::Value = check(code.clone()).await.unwrap().json().await.unwrap();
    assert_eq!(
        (r["status"].as_str(), r["checks_left"].as_u64()),
        (Some("approved"), Some(0))
    );
    let r: serde_json::Value = check("000000".into()).await.unwrap().json().await.unwrap();
    assert_eq!(r["checks_left"], 0, "after an approval: {r}");
    // A cap answers with the time its window really has left (not a fixed hour).
    let capped = r#"{"to":"+447400900722"}"#;
    for _ in 0..5 {
        let r = raw("/v1/verifications", capped, None, true).await.unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let r = raw("/v1/verifications", capped, None, true).await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let left: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (3_590..=3_598).contains(&left),
        "the window's time left: {left}"
    );
    assert_eq!(
        gw.term(Duration::from_secs(10)).await,
        Some(0),
        "{}",
        gw.logs()
    );
    sim.shutdown();
}

/// Behind a trusted load balancer, failed keys lock the client that
/// `X-Forwarded-For` names, not the balancer; from anyone else the header is
/// ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockouts_see_the_client_behind_a_trusted_proxy() {
    let sim = common::sim(|_| {}).await;
    let (mut gw, base) = common::serve_http_process(
        &sim,
        "http-xff",
        "lockout_after = 2\nlockout_secs = 30\ntrusted_proxies = [\"127.0.0.1/32\"]",
    )
    .await;
    let url = format!("{base}/v1/messages/0123456789abcdef");
    let (proxy, other) = (client("127.0.0.1"), client("127.0.0.2"));
    let get = |c: &reqwest::Client, xff: &str, key: &str| {
        c.get(&url)
            .bearer_auth(key)
            .header("x-forwarded-for", xff)
            .send()
    };
    for _ in 0..2 {
        get(&proxy, "198.51.100.7", "otpgw_wrong").await.unwrap();
    }
    let r = get(&proxy, "198.51.100.7", BANK_KEY).await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the client is locked"
    );
    let r = get(&proxy, "198.51.100.8", BANK_KEY).await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "not the balancer: another client gets in"
    );
    // Not a trusted proxy: its header names nobody; it locks itself.
    for _ in 0..2 {
        get(&other, "198.51.100.9", "otpgw_wrong").await.unwrap();
    }
    let r = get(&other, "198.51.100.9", BANK_KEY).await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let r = get(&proxy, "198.51.100.9", BANK_KEY).await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "198.51.100.9 was never locked"
    );
    assert_eq!(
        gw.term(Duration::from_secs(10)).await,
        Some(0),
        "{}",
        gw.logs()
    );
    sim.shutdown();
}

/// `GET /v1/messages/{id}` tells the truth for messages from the SMPP door too,
/// whatever their `registered_delivery`: state and carrier once the carrier took
/// it, and the same after a restart. Before, with registered_delivery 0 or 2 it
/// read `queued`, carrier null, for ever; with 1 it was 404 once delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smpp_messages_have_true_states_over_http() {
    use otpgw_sim::loadgen::{self, LoadConfig};
    let sim = common::sim(|c| c.receipt_delay = Duration::from_millis(10)).await;
    let (mut gw, base) = common::serve_http_process(&sim, "http-smpp-states", "").await;
    let c = client("127.0.0.1");
    let mut ids = Vec::new();
    for rd in [0u8, 1, 2] {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], gw.port));
        let mut lc = LoadConfig::new(addr, "bank", "pw1", 3);
        lc.registered_delivery = rd;
        lc.receipt_timeout = Duration::from_secs(5);
        let r = loadgen::run(lc).await.unwrap();
        assert_eq!(r.accepted, 3);
        ids.extend(r.ids.values().cloned().map(|id| (rd, id)));
    }
    let state_of = |id: String| {
        let c = c.clone();
        let base = base.clone();
        async move {
            let r = c
                .get(format!("{base}/v1/messages/{id}"))
                .bearer_auth(BANK_KEY)
                .send()
                .await
                .unwrap();
            let code = r.status();
            let v: serde_json::Value = r.json().await.unwrap_or_default();
            (code, v)
        }
    };
    for (rd, id) in &ids {
        let mut last = None;
        for _ in 0..100 {
            let (code, v) = state_of(id.clone()).await;
            if code == StatusCode::OK && v["status"] == "delivered" {
                last = None;
                assert_eq!(v["carrier"], "sim", "rd {rd}: {v}");
                break;
            }
            last = Some((code, v));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(last.is_none(), "rd {rd}: never delivered: {last:?}");
    }
    // The same after a restart.
    assert_eq!(
        gw.term(Duration::from_secs(10)).await,
        Some(0),
        "{}",
        gw.logs()
    );
    gw.restart().await;
    let http_port: u16 = base.rsplit(':').next().unwrap().parse().unwrap();
    common::wait_port(http_port).await;
    for (rd, id) in &ids {
        let (code, v) = state_of(id.clone()).await;
        assert_eq!(
            (code, &v["status"]),
            (StatusCode::OK, &json!("delivered")),
            "rd {rd} after a restart: {v}"
        );
    }
    assert_eq!(
        gw.term(Duration::from_secs(10)).await,
        Some(0),
        "{}",
        gw.logs()
    );
    sim.shutdown();
}
