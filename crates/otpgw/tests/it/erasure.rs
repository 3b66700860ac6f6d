//! Erasure and retention with the real `otpgw serve`: `DELETE /admin/numbers/{e164}`
//! (operate role, audited with the number masked) cancels the messages to the
//! number still queued (never sent), drops the receipts about it waiting for the
//! brand and erases its verifications, and says how many; the other numbers'
//! messages and receipts go on. A brand's `retention_secs` purges its finished
//! statuses while another brand's stay.

use crate::common;
use crate::ops::{call, ops_addr_in};

use std::collections::HashSet;
use std::time::Duration;

use otpgw_sim::loadgen::{self, LoadConfig, dest_for};

/// OTPs `first..first + n` from bank, gone before their receipts come back.
async fn send(gw: &common::GwProc, first: u64, n: u64) -> HashSet<String> {
    let mut lc = LoadConfig::new(gw.addr(), "bank", "pw1", n);
    lc.first_index = first;
    lc.registered_delivery = 1;
    lc.receipt_timeout = Duration::from_millis(100);
    let r = loadgen::run(lc).await.unwrap();
    assert_eq!(r.accepted, n);
    r.ids.values().cloned().collect()
}

async fn http(
    method: reqwest::Method,
    port: u16,
    key: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut r = reqwest::Client::new()
        .request(method, format!("http://127.0.0.1:{port}{path}"))
        .bearer_auth(key);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasing_a_number_and_brand_retention() {
    let dir = common::store_dir("erasure");
    round(
        &dir,
        &format!("path = \"{}\"", dir.join("otpgw.redb").display()),
        "",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasing_a_number_and_brand_retention_on_the_log_store() {
    let dir = common::store_dir("erasure-log");
    let segs = dir.join("segments");
    round(
        &dir,
        &format!("backend = \"log\"\npath = \"{}\"", segs.display()),
        "",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasing_a_number_and_brand_retention_on_redis() {
    let Some(redis) = otpgw_sim::redis_server::TestRedis::start("erasure") else {
        return;
    };
    let dir = common::store_dir("erasure-redis");
    let store = format!(
        "backend = \"redis\"\nredis_url = \"{}\"\nnode_id = \"a\"\nredis_prefix = \"e\"",
        redis.url()
    );
    round(&dir, &store, "receipt_ids = \"hex_to_decimal\"").await;
}

/// The whole check on one store (`store`: the lines of `[store]`; `carrier`:
/// more lines of the carrier's).
async fn round(dir: &std::path::Path, store: &str, carrier: &str) {
    let (read_key, read_hash) = otpgw_http::auth::new_api_key().unwrap();
    let (op_key, op_hash) = otpgw_http::auth::new_api_key().unwrap();
    let sim = common::sim(|c| c.receipt_delay = Duration::from_millis(1000)).await;
    let audit = dir.join("audit.log");
    let port = common::free_port();
    let http_port = common::free_port();
    let (brands, sections) = common::http_pieces(http_port);
    let shop = format!("{}retention_secs = 1\n", brands[1]);
    let cfg = common::config_text_full(
        &format!("127.0.0.1:{port}"),
        &[("sim", sim.addr())],
        carrier,
        store,
        [&brands[0], &shop],
        &format!(
            "{sections}\n[[ops.admin]]\nname = \"reader\"\nrole = \"read\"\ntoken_hash = \"{read_hash}\"\n\
             [[ops.admin]]\nname = \"dpo\"\nrole = \"operate\"\ntoken_hash = \"{op_hash}\"\n\
             [audit]\npath = \"{}\"\n",
            audit.display()
        ),
    );
    let gw = common::GwProc::start(dir, port, &cfg).await;
    common::wait_port(http_port).await;
    let ops = ops_addr_in(&gw);
    let (a, b) = (dest_for(100), dest_for(101));

    // Receipts about both numbers wait for the brand (it left before they came).
    let first = send(&gw, 100, 2).await;
    while sim.receipts_sent() < 2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Messages to both numbers wait for a paused carrier; a verification of A.
    assert_eq!(
        call(ops, "POST", "/admin/carriers/sim/pause", Some(&op_key))
            .await
            .0,
        200
    );
    // (Over HTTP: an SMPP bind now would take the receipts waiting.)
    for n in [&a, &b] {
        let (st, m) = http(
            reqwest::Method::POST,
            http_port,
            common::BANK_KEY,
            "/v1/messages",
            Some(serde_json::json!({ "to": format!("+{n}"), "text": "code 4711", "from": "BANK" })),
        )
        .await;
        assert_eq!(st, 202, "{m}");
    }
    let (st, v) = http(
        reqwest::Method::POST,
        http_port,
        common::BANK_KEY,
        "/v1/verifications",
        Some(serde_json::json!({ "to": format!("+{a}") })),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let vid = v["id"].as_str().unwrap().to_string();

    let path = format!("/admin/numbers/+{a}");
    assert_eq!(call(ops, "DELETE", &path, Some(&read_key)).await.0, 403);
    assert_eq!(
        call(ops, "DELETE", "/admin/numbers/12345", Some(&op_key))
            .await
            .0,
        400,
        "not E.164"
    );
    let (code, body) = call(ops, "DELETE", &path, Some(&op_key)).await;
    assert_eq!(code, 200, "{body}");
    let erased: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        erased,
        serde_json::json!({"messages": 2, "receipts": 1, "verifications": 1, "at_carrier": 0}),
        "the queued message and the verification's code, A's receipt, A's verification"
    );
    let (st, _) = http(
        reqwest::Method::GET,
        http_port,
        common::BANK_KEY,
        &format!("/v1/verifications/{vid}"),
        None,
    )
    .await;
    assert_eq!(st, 404, "the verification is gone");

    // The carrier goes on: B's message goes out, nothing more to A.
    assert_eq!(
        call(ops, "POST", "/admin/carriers/sim/resume", Some(&op_key))
            .await
            .0,
        200
    );
    let to = |n: &str| {
        sim.records()
            .iter()
            .filter(|r| r.fields.dest.addr == n)
            .count()
    };
    for _ in 0..250 {
        if to(&b) == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!((to(&a), to(&b)), (1, 2), "nothing more reached A");
    // The brand binds: B's receipt, none about A.
    let mut lc = LoadConfig::new(gw.addr(), "bank", "pw1", 0);
    lc.expect_receipts = Some(u64::MAX);
    lc.receipt_timeout = Duration::from_secs(2);
    let got: HashSet<String> = loadgen::run(lc)
        .await
        .unwrap()
        .foreign_receipts
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(got.len(), 1, "B's receipt only: {got:?}");
    assert!(got.is_subset(&first));

    // Audited with the number masked; the number in no log line.
    let lines = std::fs::read_to_string(&audit).unwrap();
    let erase: Vec<&str> = lines
        .lines()
        .filter(|l| l.contains("erase_number"))
        .collect();
    assert_eq!(erase.len(), 3, "forbidden, bad number, done: {lines}");
    assert!(
        erase[2].contains("\"dpo\"") && erase[2].contains("\"200\""),
        "{lines}"
    );
    assert!(!lines.contains(&a), "full number in the audit log");
    assert!(!gw.logs().contains(&a), "number in the log");

    // Retention: shop's statuses are purged after 1 s (the purge runs every 5 s),
    // bank's stay.
    let mut ids = Vec::new();
    for key in [common::BANK_KEY, common::SHOP_KEY] {
        let (st, m) = http(
            reqwest::Method::POST,
            http_port,
            key,
            "/v1/messages",
            Some(serde_json::json!({ "to": format!("+{}", dest_for(200)), "text": "hello", "from": "BANK" })),
        )
        .await;
        assert_eq!(st, 202, "{m}");
        ids.push((key, m["id"].as_str().unwrap().to_string()));
    }
    let status = |key: &'static str, id: String| async move {
        let (st, v) = http(
            reqwest::Method::GET,
            http_port,
            key,
            &format!("/v1/messages/{id}"),
            None,
        )
        .await;
        (st, v["status"].as_str().unwrap_or("").to_string())
    };
    for _ in 0..300 {
        if status(ids[1].0, ids[1].1.clone()).await.1 == "delivered" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(7_000)).await;
    assert_eq!(
        status(ids[0].0, ids[0].1.clone()).await.0,
        200,
        "bank keeps its statuses"
    );
    assert_eq!(
        status(ids[1].0, ids[1].1.clone()).await.0,
        404,
        "shop's purged"
    );
    sim.shutdown();
}
