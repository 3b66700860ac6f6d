//! The HTTP API through the real `otpgw serve` binary, with a real HTTP client
//! (reqwest) and the simulated carrier: messages with signed receipt webhooks and
//! status, verifications (the code that reached the carrier approves once, wrong
//! codes lock, expired codes expire, concurrent checks approve once), bad input,
//! and SIGKILL between the 202 and the carrier.

use crate::common;

use std::time::Duration;

use common::{BANK_HOOK_SECRET, BANK_KEY, HookSink, SHOP_KEY};
use reqwest::StatusCode;
use serde_json::{Value, json};

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(base: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            base: base.to_string(),
        }
    }
    async fn post(
        &self,
        key: &str,
        path: &str,
        body: &Value,
        idem: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(key)
            .json(body);
        if let Some(k) = idem {
            r = r.header("Idempotency-Key", k);
        }
        let r = r.send().await.unwrap();
        let st = r.status();
        (st, r.json().await.unwrap_or(Value::Null))
    }
    async fn get(&self, key: &str, path: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        let st = r.status();
        (st, r.json().await.unwrap_or(Value::Null))
    }
    /// Start a verification of +`digits` (with `extra` fields) and wait for its
    /// code at the carrier (`before`: messages to the number before this one).
    async fn verify(
        &self,
        sim: &otpgw_sim::SimHandle,
        digits: &str,
        extra: Value,
        before: usize,
    ) -> (String, String) {
        let mut body = json!({ "to": format!("+{digits}") });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let (st, v) = self.post(BANK_KEY, "/v1/verifications", &body, None).await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        let id = v["id"].as_str().unwrap().to_string();
        (id, common::code_sent_to(sim, digits, before).await)
    }
    async fn check(&self, id: &str, code: &str) -> String {
        let (st, v) = self
            .post(
                BANK_KEY,
                &format!("/v1/verifications/{id}/check"),
                &json!({ "code": code }),
                None,
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        v["status"].as_str().unwrap().to_string()
    }
}

async fn wait_for<T>(mut f: impl FnMut() -> Option<T>, what: &str) -> T {
    for _ in 0..500 {
        if let Some(t) = f() {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_and_verifications_through_the_binary() {
    let sim = common::sim(|c| c.receipt_delay = Duration::from_millis(20)).await;
    let hooks = HookSink::start().await;
    let (mut gw, base) =
        common::serve_http_process(&sim, "http-api", "body_timeout_secs = 1").await;
    let c = Client::new(&base);

    // A message with a receipt webhook: accepted, sent, receipt signed, status kept.
    let (st, v) = c
        .post(
            BANK_KEY,
            "/v1/messages",
            &json!({"to": "+447400900500", "from": "MyBank", "text": "Votre code: 4242 €", "receipt_url": hooks.url}),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let hook = wait_for(
        || hooks.for_id(&id, BANK_HOOK_SECRET).pop(),
        "the receipt webhook",
    )
    .await;
    assert!(hook.0, "signed with the brand's secret: {hook:?}");
    assert_eq!(hook.1["status"], "delivered");
    assert_eq!(hook.1["to"], "+447400900500");
    assert_eq!(
        common::last_text_to(&sim, "447400900500").unwrap(),
        "Votre code: 4242 €"
    );
    let (st, v) = c.get(BANK_KEY, &format!("/v1/messages/{id}")).await;
    assert_eq!(
        (st, v["status"].as_str(), v["carrier"].as_str()),
        (StatusCode::OK, Some("delivered"), Some("sim")),
        "{v}"
    );
    // Another brand's message does not exist for shop.
    assert_eq!(
        c.get(SHOP_KEY, &format!("/v1/messages/{id}")).await.0,
        StatusCode::NOT_FOUND
    );

    // A verification: the code that reached the carrier approves once, then is denied.
    let (st, v) = c
        .post(
            BANK_KEY,
            "/v1/verifications",
            &json!({"to": "+447400900501"}),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let vid = v["id"].as_str().unwrap().to_string();
    assert_eq!(vid.len(), 32);
    let code = common::code_sent_to(&sim, "447400900501", 0).await;
    assert_eq!(code.len(), 6);
    assert_eq!(c.check(&vid, &code).await, "approved");
    assert_eq!(c.check(&vid, &code).await, "denied");
    assert_eq!(
        c.get(BANK_KEY, &format!("/v1/verifications/{vid}")).await.1["status"],
        "approved"
    );
    assert_eq!(
        c.get(SHOP_KEY, &format!("/v1/verifications/{vid}")).await.0,
        StatusCode::NOT_FOUND
    );

    // Five wrong codes lock it: the right one then answers max_attempts.
    let (vid, code) = c
        .verify(&sim, "447400900502", json!({"code_length": 8}), 0)
        .await;
    assert_eq!(code.len(), 8);
    let wrong = if code == "00000000" {
        "00000001"
    } else {
        "00000000"
    };
    for _ in 0..5 {
        assert_eq!(c.check(&vid, wrong).await, "denied");
    }
    assert_eq!(c.check(&vid, &code).await, "max_attempts");

    // An expired code is expired.
    let (vid, code) = c
        .verify(&sim, "447400900503", json!({"ttl_secs": 1}), 0)
        .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(c.check(&vid, &code).await, "expired");

    // Concurrent correct checks: exactly one approval.
    let (vid, code) = c.verify(&sim, "447400900504", json!({}), 0).await;
    let racers = (0..10).map(|_| c.check(&vid, &code));
    let outcomes = futures_util::future::join_all(racers).await;
    assert_eq!(
        outcomes.iter().filter(|o| *o == "approved").count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.iter().filter(|o| *o == "denied").count(),
        9,
        "{outcomes:?}"
    );

    // A new verification for the number supersedes the old one.
    let (old, old_code) = c.verify(&sim, "447400900505", json!({}), 0).await;
    let (new, new_code) = c.verify(&sim, "447400900505", json!({}), 1).await;
    let (_, r) = c
        .post(
            BANK_KEY,
            &format!("/v1/verifications/{old}/check"),
            &json!({"code": old_code}),
            None,
        )
        .await;
    assert_eq!(
        (r["status"].as_str(), r["reason"].as_str()),
        (Some("expired"), Some("superseded"))
    );
    assert_eq!(c.check(&new, &new_code).await, "approved");
    // Resend too soon: 429 with Retry-After.
    let (_, v) = c
        .post(
            BANK_KEY,
            "/v1/verifications",
            &json!({"to": "+447400900506"}),
            None,
        )
        .await;
    let vid = v["id"].as_str().unwrap().to_string();
    let (st, e) = c
        .post(
            BANK_KEY,
            &format!("/v1/verifications/{vid}/resend"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("resend_too_soon"))
    );

    // Bad input: a clear 4xx, nothing stored, nothing sent, no panic.
    common::code_sent_to(&sim, "447400900506", 0).await; // the last good one is out
    let before = sim.received();
    let raw = |body: &'static str, key: &'static str| {
        let http = c.http.clone();
        let url = format!("{base}/v1/messages");
        async move {
            let r = http
                .post(url)
                .bearer_auth(key)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let st = r.status();
            let v: Value = r.json().await.unwrap_or(Value::Null);
            (st, v["error"]["code"].as_str().unwrap_or("").to_string())
        }
    };
    let long = "x".repeat(2001);
    let too_long = Box::leak(
        json!({"to": "+447400900507", "from": "MyBank", "text": long})
            .to_string()
            .into_boxed_str(),
    );
    let huge = Box::leak(
        format!(
            "{{\"to\":\"+447400900507\",\"from\":\"MyBank\",\"text\":\"{}\"}}",
            "y".repeat(70_000)
        )
        .into_boxed_str(),
    );
    for (body, key, want) in [
        ("{nope", BANK_KEY, (StatusCode::BAD_REQUEST, "invalid_json")),
        (
            r#"{"to":"+447400900507","from":"MyBank","text":"t","x":1}"#,
            BANK_KEY,
            (StatusCode::BAD_REQUEST, "unknown_field"),
        ),
        (
            r#"{"to":"07700900507","from":"MyBank","text":"t"}"#,
            BANK_KEY,
            (StatusCode::BAD_REQUEST, "invalid_number"),
        ),
        (
            r#"{"to":"+447400900507","from":"","text":"t"}"#,
            BANK_KEY,
            (StatusCode::BAD_REQUEST, "invalid_sender"),
        ),
        (
            r#"{"to":"+447400900507","from":"MyBank","text":""}"#,
            BANK_KEY,
            (StatusCode::BAD_REQUEST, "invalid_text"),
        ),
        (
            r#"{"to":"+447400900507","from":"MyBank","text":"t","receipt_url":"ftp://x"}"#,
            BANK_KEY,
            (StatusCode::BAD_REQUEST, "invalid_receipt_url"),
        ),
        (
            r#"{"to":"+447400900507","from":"MyBank","text":"t","receipt_url":"http://127.0.0.1/h"}"#,
            SHOP_KEY,
            (StatusCode::BAD_REQUEST, "webhook_not_configured"),
        ),
        (
            r#"{"to":"+447400900507","from":"MyBank","text":"t"}"#,
            "wrong-key",
            (StatusCode::UNAUTHORIZED, "unauthorized"),
        ),
        (
            too_long,
            BANK_KEY,
            (StatusCode::BAD_REQUEST, "text_too_long"),
        ),
        (
            huge,
            BANK_KEY,
            (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
        ),
    ] {
        let got = raw(body, key).await;
        assert_eq!(
            (got.0, got.1.as_str()),
            want,
            "{}",
            &body[..body.len().min(80)]
        );
    }
    for (path, want) in [
        (
            "/v1/verifications/0123456789abcdef0123456789abcdef/check",
            StatusCode::NOT_FOUND,
        ),
        ("/v1/verifications/not-an-id/check", StatusCode::NOT_FOUND),
        ("/v1/nothing", StatusCode::NOT_FOUND),
    ] {
        assert_eq!(
            c.post(BANK_KEY, path, &json!({"code": "123456"}), None)
                .await
                .0,
            want,
            "{path}"
        );
    }
    let (st, e) = c
        .post(
            BANK_KEY,
            "/v1/verifications",
            &json!({"to": "+447400900508", "code_length": 11}),
            None,
        )
        .await;
    assert_eq!(
        (st, e["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("code_length"))
    );
    // A slow body is cut off.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = base.trim_start_matches("http://");
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {BANK_KEY}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"to\":"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(
            answer.starts_with("HTTP/1.1 408") && answer.contains("body_timeout"),
            "{answer}"
        );
    }
    // HTTP/2 without TLS (prior knowledge) on the same port.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = h2
        .get(format!("{base}/v1/messages/{id}"))
        .bearer_auth(BANK_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status(), r.version()),
        (StatusCode::OK, reqwest::Version::HTTP_2)
    );
    // Every operation of the served OpenAPI document is routed: without a key it
    // answers 401 (not 404 or 405).
    let doc: Value = c
        .http
        .get(format!("{base}/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let shipped: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/openapi.json"
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(doc, shipped, "docs/openapi.json is what the binary serves");
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let path = path.replace("{id}", "0123456789abcdef");
        for method in item.as_object().unwrap().keys() {
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let st = c
                .http
                .request(m, format!("{base}{path}"))
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(st, StatusCode::UNAUTHORIZED, "{method} {path}");
            operations += 1;
        }
    }
    assert_eq!(operations, 6);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sim.received(), before, "nothing was sent for bad requests");
    assert_eq!(
        gw.term(Duration::from_secs(10)).await,
        Some(0),
        "{}",
        gw.logs()
    );
    assert!(!gw.logs().contains("panicked"));
    sim.shutdown();
}

/// SIGKILL between the 202 and the carrier: the message is still delivered; a
/// webhook owed survives a restart and arrives signed; the Idempotency-Key still
/// answers the first id after the restart, and nothing is sent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_keeps_messages_webhooks_and_idempotency_keys() {
    let sim = common::sim(|c| c.receipt_delay = Duration::from_millis(20)).await;
    sim.set_accepting(false); // the carrier is away: messages wait in the store
    let hooks = HookSink::start().await;
    hooks
        .status
        .store(503, std::sync::atomic::Ordering::Relaxed);
    let (mut gw, base) = common::serve_http_process(&sim, "http-kill", "").await;
    let c = Client::new(&base);
    let body = json!({"to": "+447400900600", "from": "MyBank", "text": "code 600600", "receipt_url": hooks.url});
    let (st, v) = c
        .post(BANK_KEY, "/v1/messages", &body, Some("order-600"))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    gw.kill9();

    // Back up, with the carrier: the message goes out; its webhook fails (503).
    sim.set_accepting(true);
    gw.restart().await;
    common::wait_port(base.rsplit(':').next().unwrap().parse().unwrap()).await;
    wait_for(
        || (sim.received() == 1).then_some(()),
        "the message at the carrier",
    )
    .await;
    wait_for(
        || (!hooks.for_id(&id, BANK_HOOK_SECRET).is_empty()).then_some(()),
        "a first webhook try",
    )
    .await;
    gw.kill9();

    // Back up, the receiver mended: the webhook owed arrives, signed.
    hooks
        .status
        .store(200, std::sync::atomic::Ordering::Relaxed);
    let tried = hooks.for_id(&id, BANK_HOOK_SECRET).len();
    gw.restart().await;
    common::wait_port(base.rsplit(':').next().unwrap().parse().unwrap()).await;
    let got = wait_for(
        || {
            let h = hooks.for_id(&id, BANK_HOOK_SECRET);
            (h.len() > tried).then_some(h)
        },
        "the webhook after the restart",
    )
    .await;
    let last = got.last().unwrap();
    assert!(last.0, "signed");
    assert_eq!(last.1["status"], "delivered");
    // The same key answers the first id, and sends nothing.
    let (st, v) = c
        .post(BANK_KEY, "/v1/messages", &body, Some("order-600"))
        .await;
    assert_eq!(
        (st, v["id"].as_str()),
        (StatusCode::ACCEPTED, Some(id.as_str()))
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sim.received(), 1, "sent once");
    assert_eq!(gw.term(Duration::from_secs(10)).await, Some(0));
    sim.shutdown();
}

/// A verification a newer one for the same number superseded counts once in
/// `otpgw_verifications_total{outcome="superseded"}`; each check made on it after
/// counts as `check_superseded`. Before, every such check counted as one more
/// supersession.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_superseded_verification_counts_once() {
    let sim = common::sim(|c| c.receipt_delay = Duration::from_millis(20)).await;
    let (mut gw, base) = common::serve_http_process(&sim, "http-superseded", "").await;
    let c = Client::new(&base);
    let (first, code) = c.verify(&sim, "447400900611", json!({}), 0).await;
    let _second = c.verify(&sim, "447400900611", json!({}), 1).await;
    for _ in 0..3 {
        // The API reports a superseded verification as expired.
        assert_eq!(c.check(&first, &code).await, "expired");
    }
    let ops = crate::ops::ops_addr_in(&gw);
    let count = |o: &'static str| async move {
        let s = format!("otpgw_verifications_total{{brand=\"bank\",outcome=\"{o}\"}}");
        crate::ops::scrape_value(ops, &s).await
    };
    assert_eq!(count("superseded").await, Some(1.0));
    assert_eq!(count("check_superseded").await, Some(3.0));
    assert_eq!(count("created").await, Some(2.0));
    assert_eq!(gw.term(Duration::from_secs(10)).await, Some(0));
    sim.shutdown();
}

/// PSD2 dynamic linking over HTTP: the SMS shows the transaction, a check with
/// another amount is denied (`transaction_mismatch`) even with the right code, the
/// same transaction respelled approves; a bad transaction is a 400 naming its field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_authorises_its_transaction_only() {
    let sim = common::sim(|c| c.receipt_delay = Duration::from_millis(20)).await;
    let (mut gw, base) = common::serve_http_process(&sim, "http-psd2", "").await;
    let c = Client::new(&base);
    let tx = json!({"amount": "25.00", "currency": "EUR", "payee": "ACME Ltd"});
    let (id, code) = c
        .verify(
            &sim,
            "447400900612",
            json!({"transaction": tx, "template": "Code {code} pays {amount} {currency} to {payee}"}),
            0,
        )
        .await;
    assert_eq!(
        common::last_text_to(&sim, "447400900612").unwrap(),
        format!("Code {code} pays 25.00 EUR to ACME Ltd")
    );
    let check = |body: Value| {
        let c = &c;
        let id = id.clone();
        async move {
            c.post(
                BANK_KEY,
                &format!("/v1/verifications/{id}/check"),
                &body,
                None,
            )
            .await
        }
    };
    let other = json!({"amount": "250.00", "currency": "EUR", "payee": "ACME Ltd"});
    let (st, v) = check(json!({"code": code, "transaction": other})).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        (
            v["status"].as_str(),
            v["reason"].as_str(),
            v["checks_left"].as_u64()
        ),
        (Some("denied"), Some("transaction_mismatch"), Some(4)),
        "{v}"
    );
    let (_, v) = check(json!({"code": code})).await;
    assert_eq!(
        v["reason"], "transaction_mismatch",
        "a check without it: {v}"
    );
    let (st, v) = check(
        json!({"code": code, "transaction": {"amount": "25", "currency": "EUR", "payee": "ACME"}}),
    )
    .await;
    assert_eq!(
        (st, v["reason"].as_str()),
        (StatusCode::OK, Some("transaction_mismatch"))
    );
    let same = json!({"amount": "25", "currency": "eur", "payee": "ACME  Ltd"});
    let (_, v) = check(json!({"code": code, "transaction": same})).await;
    assert_eq!(
        (v["status"].as_str(), v["checks_left"].as_u64()),
        (Some("approved"), Some(0)),
        "{v}"
    );
    let (_, v) = check(json!({"code": code, "transaction": same})).await;
    assert_eq!(
        (v["status"].as_str(), v["checks_left"].as_u64()),
        (Some("denied"), Some(0)),
        "used once: {v}"
    );
    let bad = json!({"to": "+447400900613", "transaction": {"amount": "1e3", "currency": "EUR", "payee": "x"}});
    let (st, v) = c.post(BANK_KEY, "/v1/verifications", &bad, None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(v.to_string().contains("transaction.amount"), "{v}");
    assert_eq!(gw.term(Duration::from_secs(10)).await, Some(0));
    sim.shutdown();
}
