//! Named admin tokens with roles, and the hash-chained audit log, through the real
//! ops listener: a read token may GET but not change (403), an operate token may
//! pause and resume, an unknown token gets 401; every change and refusal is one
//! audit line (no token in it), `otpgw audit verify` accepts the file and names
//! the first broken line once a byte is changed.

use crate::common;
use crate::ops::call;

use std::process::Command;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_and_a_tamper_evident_audit_log() {
    let (read_key, read_hash) = otpgw_http::auth::new_api_key().unwrap();
    let (op_key, op_hash) = otpgw_http::auth::new_api_key().unwrap();
    let dir = common::store_dir("admin-audit");
    let log = dir.join("audit.log");
    let _ = std::fs::remove_file(&log);
    let sim = common::sim(|_| {}).await;
    let text = common::config_text("127.0.0.1:0", &[("sim", sim.addr())], "")
        + &format!(
            "\n[[ops.admin]]\nname = \"reader\"\nrole = \"read\"\ntoken_hash = \"{read_hash}\"\n\
             [[ops.admin]]\nname = \"oncall\"\nrole = \"operate\"\ntoken_hash = \"{op_hash}\"\n\
             [audit]\npath = \"{}\"\n",
            log.display()
        );
    let gw = common::start(&text).await;
    assert!(gw.wait_bound(1, Duration::from_secs(10)).await);
    let ops = gw.ops_addr().unwrap();

    assert_eq!(
        call(ops, "GET", "/admin/carriers", Some(&read_key)).await.0,
        200
    );
    assert_eq!(
        call(ops, "POST", "/admin/carriers/sim/pause", Some(&read_key))
            .await
            .0,
        403,
        "a read token cannot change"
    );
    assert_eq!(
        call(ops, "POST", "/admin/carriers/sim/pause", Some(&op_key))
            .await
            .0,
        200
    );
    assert_eq!(
        call(ops, "POST", "/admin/carriers/sim/resume", Some(&op_key))
            .await
            .0,
        200
    );
    let wrong = "otpgw_0000000000000000000000000000000000000000000000000000000000000000";
    assert_eq!(call(ops, "GET", "/admin/queue", Some(wrong)).await.0, 401);
    // A reload (SIGHUP) is a change too.
    let same = otpgw_node::Config::parse(&text, "test").unwrap();
    assert!(gw.reload(&same).is_ok());
    let (code, body) = call(ops, "GET", "/admin/audit", Some(&read_key)).await;
    assert_eq!(code, 200);
    let head: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(head["lines"], 5, "{body}");
    gw.shutdown().await;
    sim.shutdown();

    // One line per change and refusal, in order; no token in the file.
    let file = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = file
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary: Vec<(String, String, String, String)> = lines
        .iter()
        .map(|l| {
            let s = |k: &str| l[k].as_str().unwrap().to_string();
            (s("actor"), s("action"), s("target"), s("result"))
        })
        .collect();
    let row = |a: &str, b: &str, c: &str, d: &str| (a.into(), b.into(), c.into(), d.into());
    assert_eq!(
        summary,
        vec![
            row("reader", "pause_carrier", "sim", "forbidden"),
            row("oncall", "pause_carrier", "sim", "200"),
            row("oncall", "resume_carrier", "sim", "200"),
            row("peer 127.0.0.1", "GET /admin/queue", "", "unauthorized"),
            row("signal SIGHUP", "reload", "", "ok"),
        ]
    );
    for secret in [&read_key, &op_key, &read_hash, &op_hash] {
        assert!(!file.contains(secret.as_str()), "a token in the audit log");
    }

    // The chain verifies, with the head the listener served.
    let verify = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_otpgw"))
            .args(["audit", "verify"])
            .arg(&log)
            .args(extra)
            .output()
            .unwrap()
    };
    let o = verify(&[]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains("5 lines") && out.contains(head["head"].as_str().unwrap()),
        "{out}"
    );
    assert!(
        verify(&["--head", head["head"].as_str().unwrap()])
            .status
            .success()
    );
    assert!(
        !verify(&["--head", &"0".repeat(64)]).status.success(),
        "a cut tail"
    );
    // One changed byte in line 2: verify names line 3.
    let tampered = file.replacen("\"200\"", "\"500\"", 1);
    std::fs::write(&log, tampered).unwrap();
    let o = verify(&[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("line 3"), "{err}");
}
