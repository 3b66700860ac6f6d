//! The fraud guard with the real `otpgw serve`: numbers checked at the HTTP door
//! (invalid, premium rate, a bad `ip`), and two nodes on one Redis sharing the
//! conversion guard's counts and blocks: codes made on one node and typed back on
//! the other keep their prefix open, an attack spread over both nodes is blocked
//! on both, the admin API of either lists the block and lifting it on one lifts it
//! for both (audited).

use crate::common;
use crate::ops::{call, ops_addr_in};

use std::time::Duration;

use otpgw_sim::redis_server::TestRedis;

/// POST `body` to `path` of `base` as bank: the status and the error code.
async fn create(base: &str, to: &str) -> (u16, String, String) {
    post(base, "/v1/verifications", serde_json::json!({ "to": to })).await
}

async fn post(base: &str, path: &str, body: serde_json::Value) -> (u16, String, String) {
    let r = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .bearer_auth(common::BANK_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let v: serde_json::Value = r.json().await.unwrap_or_default();
    let code = v["error"]["code"].as_str().unwrap_or("").to_string();
    (status, code, v["id"].as_str().unwrap_or("").to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_the_guard_and_numbers_are_checked() {
    let Some(redis) = TestRedis::start("fraud") else {
        return;
    };
    let sim = common::sim(|c| c.receipt_delay = Duration::from_millis(10)).await;
    let (op_key, op_hash) = otpgw_http::auth::new_api_key().unwrap();
    let (mut bases, mut nodes, mut dirs) = (Vec::new(), Vec::new(), Vec::new());
    for n in ["a", "b"] {
        let dir = common::store_dir(&format!("fraud-{n}"));
        dirs.push(dir.clone());
        let (port, http_port) = (common::free_port(), common::free_port());
        let store = format!(
            "backend = \"redis\"\nredis_url = \"{}\"\nnode_id = \"{n}\"\nredis_prefix = \"gw\"",
            redis.url()
        );
        let (brands, sections) = common::http_pieces(http_port);
        // Codes judged at once and 3 of them enough, so a short test can block.
        let sections = format!(
            "{sections}[verify.fraud]\ngrace_secs = 0\nmin_samples = 3\n\
             [[ops.admin]]\nname = \"analyst\"\nrole = \"operate\"\ntoken_hash = \"{op_hash}\"\n\
             [audit]\npath = \"{}\"\n",
            dir.join("audit.log").display()
        );
        let cfg = common::config_text_full(
            &format!("127.0.0.1:{port}"),
            &[("sim", sim.addr())],
            "receipt_ids = \"hex_to_decimal\"",
            &store,
            [&brands[0], &brands[1]],
            &sections,
        );
        nodes.push(common::GwProc::start(&dir, port, &cfg).await);
        common::wait_port(http_port).await;
        bases.push(format!("http://127.0.0.1:{http_port}"));
    }
    let (a, b) = (&bases[0], &bases[1]);

    // Numbers: invalid for their country, premium rate, a bad address.
    assert_eq!(create(a, "+4420712345").await.1, "invalid_number");
    assert_eq!(create(a, "+447700900123").await.1, "invalid_number");
    assert_eq!(create(b, "+449098790000").await.1, "number_type_refused");
    let m = serde_json::json!({"to": "+4420712345", "from": "BANK", "text": "hi"});
    assert_eq!(post(a, "/v1/messages", m).await.1, "invalid_number");
    let bad_ip = serde_json::json!({"to": "+447400900001", "ip": "300.1.2.3"});
    assert_eq!(
        post(a, "/v1/verifications", bad_ip).await.1,
        "invalid_request"
    );

    // Honest: codes made on A, typed on B. Attack: codes to 447911 on both nodes,
    // never typed.
    for i in 0..4 {
        let to = format!("4474009000{i:02}");
        let (st, _, id) = create(a, &format!("+{to}")).await;
        assert_eq!(st, 201);
        let code = common::code_sent_to(&sim, &to, 0).await;
        let check = format!("/v1/verifications/{id}/check");
        let (st, ..) = post(b, &check, serde_json::json!({ "code": code })).await;
        assert_eq!(st, 200);
        let node = if i % 2 == 0 { a } else { b };
        assert_eq!(create(node, &format!("+4479110000{i:02}")).await.0, 201);
    }
    // Once the codes are judged (their 5 s bucket closed), the attack's prefix
    // is blocked from either node; the honest prefix stays open on A, which saw
    // none of its approvals itself.
    tokio::time::sleep(Duration::from_millis(5_500)).await;
    assert_eq!(create(b, "+447911000100").await.1, "prefix_blocked");
    assert_eq!(create(a, "+447911000101").await.1, "prefix_blocked");
    assert_eq!(create(a, "+447400900100").await.0, 201);

    // The admin API of A lists the block B decided; lifting it on B lifts it for A.
    let ops: Vec<_> = nodes.iter().map(ops_addr_in).collect();
    let (st, body) = call(ops[0], "GET", "/admin/fraud/blocks", Some(&op_key)).await;
    assert_eq!(st, 200, "{body}");
    let blocks: serde_json::Value = serde_json::from_str(&body).unwrap();
    let blocks = blocks.as_array().unwrap();
    assert_eq!(blocks.len(), 1, "{body}");
    assert_eq!(
        (
            &blocks[0]["brand"],
            &blocks[0]["prefix"],
            &blocks[0]["country"]
        ),
        (&"bank".into(), &"447911".into(), &"GB".into())
    );
    assert_eq!(blocks[0]["codes_approved"], 0);
    let path = "/admin/fraud/blocks/bank/447911";
    assert_eq!(call(ops[1], "DELETE", path, Some(&op_key)).await.0, 200);
    assert_eq!(call(ops[1], "DELETE", path, Some(&op_key)).await.0, 404);
    assert_eq!(create(a, "+447911000102").await.0, 201);
    let audit = std::fs::read_to_string(dirs[1].join("audit.log")).unwrap_or_default();
    assert!(
        audit.contains("lift_fraud_block") && audit.contains("bank/447911"),
        "{audit}"
    );
    drop(nodes);
    sim.shutdown();
}
