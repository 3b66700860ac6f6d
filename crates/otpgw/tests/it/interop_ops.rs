//! The SMPP operations brands use, from clients nobody here wrote, against the real
//! `otpgw serve` whose carrier takes one message a second (so messages wait in the
//! queue): `replace_sm`, `cancel_sm`, `replace_if_present_flag`, `submit_multi`
//! and concatenation by `sar_` TLVs (node-smpp: `tests/interop/node_smpp_ops.js`; python-smpplib,
//! which has no replace_sm or cancel_sm: `tests/interop/smpplib_ops.py`).
//!
//! Before: replace_sm, cancel_sm and submit_multi got generic_nack, the flag was ignored (both
//! texts went out), and sar_ parts reached the carrier as unrelated SMS.

use crate::common;
use crate::interop::{node_smpp_available, serve, smpplib_available};

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use otpgw_proto::split::UDHI;
use otpgw_sim::smsc::Received;

/// Run a client script; its JSON summary.
async fn run(program: &str, script: &str, port: u16, prefix: &str) -> serde_json::Value {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/interop");
    let mut cmd = Command::new(program);
    cmd.arg(format!("{dir}/{script}"))
        .args(["--port", &port.to_string(), "--prefix", prefix])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{script}: {stdout}");
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "{script}: no JSON summary ({e}): {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// What the carrier got for `dest`.
fn to(sim: &otpgw_sim::SimHandle, dest: &str) -> Vec<Received> {
    sim.records()
        .into_iter()
        .filter(|r| r.fields.dest.addr == dest)
        .collect()
}

/// Three `sar_` parts (reference `reference`) reached the carrier as a
/// concatenated message: each with UDHI and a 16-bit concatenation header, in
/// order, reassembling to the brand's text.
fn check_sar_parts(sim: &otpgw_sim::SimHandle, dest: &str, reference: u16) {
    let mut got = to(sim, dest);
    assert_eq!(got.len(), 3, "three parts to {dest}");
    got.sort_by_key(|r| r.text().get(6).copied());
    let [hi, lo] = reference.to_be_bytes();
    let mut text = Vec::new();
    for (i, r) in got.iter().enumerate() {
        assert_ne!(r.fields.esm_class & UDHI, 0, "UDHI set");
        let t = r.text();
        assert_eq!(
            &t[..7],
            &[0x06, 0x08, 0x04, hi, lo, 3, i as u8 + 1],
            "header"
        );
        text.extend_from_slice(&t[7..]);
    }
    assert_eq!(
        String::from_utf8_lossy(&text),
        "This long message was split by the brand itself and sent as three parts with sar TLVs."
    );
}

fn receipts(v: &serde_json::Value, id: &serde_json::Value) -> Vec<String> {
    let id = id.as_str().expect("an id");
    v["receipts"][id]
        .as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

fn skip() -> bool {
    if smpplib_available() && node_smpp_available() {
        return false;
    }
    assert!(
        std::env::var_os("OTPGW_REQUIRE_INTEROP").is_none(),
        "python smpplib and node smpp are required (scripts/test-deps.sh installs them)"
    );
    eprintln!("SKIPPED: smpplib or node smpp not installed; run scripts/test-deps.sh");
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_cancel_and_sar_from_node_smpp() {
    if skip() {
        return;
    }
    let sim = common::sim(|c| c.receipt_delay = Duration::from_millis(5)).await;
    let (_gw, port) = serve(&sim, "ops-node", "rate_limit = 1").await;
    let v = run("node", "node_smpp_ops.js", port, "4474009000").await;
    assert!(v["error"].is_null(), "{v}");
    let st: HashMap<String, u64> = serde_json::from_value(v["status"].clone()).unwrap();
    for ok in [
        "A",
        "B",
        "C",
        "D",
        "replace_B",
        "cancel_C",
        "D2",
        "sar1",
        "sar2",
        "sar3",
        "multi",
    ] {
        assert_eq!(st[ok], 0, "{ok}: {v}");
    }
    assert_eq!(
        st["replace_A"], 0x13,
        "A is at the carrier: ESME_RREPLACEFAIL"
    );
    assert_eq!(st["replace_none"], 0x13, "unknown id: ESME_RREPLACEFAIL");
    let ids = &v["ids"];
    assert_eq!(ids["D2"], ids["D"], "the flag replaced D in place");
    // The carrier got the new texts only, nothing of C, and the parts concatenated.
    let text = |dest| {
        to(&sim, dest)
            .iter()
            .map(|r| String::from_utf8_lossy(r.text()).into_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(text("447400900001"), ["Your code is 111111"]);
    assert_eq!(text("447400900002"), ["Your code is 999999"]);
    assert!(text("447400900003").is_empty(), "cancelled: never sent");
    assert_eq!(text("447400900004"), ["Your code is 555555"]);
    check_sar_parts(&sim, "447400900005", 0x1234);
    // One receipt per message: C's says DELETED.
    for (name, state) in [
        ("A", "DELIVRD"),
        ("B", "DELIVRD"),
        ("C", "DELETED"),
        ("D", "DELIVRD"),
    ] {
        assert_eq!(receipts(&v, &ids[name]), [state], "{name}: {v}");
    }
    for p in ["sar1", "sar2", "sar3"] {
        assert_eq!(receipts(&v, &ids[p]), ["DELIVRD"], "{p}");
    }
    // submit_multi: one message per number, one id for the submission (every
    // number's receipt carries it), the list and the non-number refused.
    assert_eq!(text("447400900006"), ["Your code is 777777"]);
    assert_eq!(text("447400900007"), ["Your code is 777777"]);
    assert_eq!(receipts(&v, &ids["multi"]), ["DELIVRD", "DELIVRD"]);
    let refused: Vec<(String, u64)> = serde_json::from_value(v["unsuccess"].clone()).unwrap();
    assert_eq!(
        refused,
        [("staff".to_string(), 0x34), ("12ab".to_string(), 0x0B)],
        "unsuccess_sme"
    );
    sim.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_if_present_and_sar_from_smpplib() {
    if skip() {
        return;
    }
    let sim = common::sim(|c| c.receipt_delay = Duration::from_millis(5)).await;
    let (_gw, port) = serve(&sim, "ops-py", "rate_limit = 1").await;
    let v = run("python3", "smpplib_ops.py", port, "4474009100").await;
    let st: HashMap<String, u64> = serde_json::from_value(v["status"].clone()).unwrap();
    for ok in ["A", "D", "D2", "sar1", "sar2", "sar3"] {
        assert_eq!(st.get(ok), Some(&0), "{ok}: {v}");
    }
    let ids = &v["ids"];
    assert_eq!(ids["D2"], ids["D"], "the flag replaced D in place");
    let texts: Vec<_> = to(&sim, "447400910004")
        .iter()
        .map(|r| String::from_utf8_lossy(r.text()).into_owned())
        .collect();
    assert_eq!(texts, ["Your code is 555555"]);
    check_sar_parts(&sim, "447400910005", 0x4321);
    for name in ["A", "D", "sar1", "sar2", "sar3"] {
        assert_eq!(receipts(&v, &ids[name]), ["DELIVRD"], "{name}: {v}");
    }
    sim.shutdown();
}
