//! `otpgw serve` on a Redis primary named by Sentinels (`redis_sentinels`), with
//! acks that wait for a replica (`redis_min_replicas = 1`): the primary is killed
//! (SIGKILL) under load, the Sentinels promote a replica, the node follows them,
//! and every acknowledged message still reaches the carrier; messages the brand
//! was refused never do. All real: redis-server ×3 and redis-sentinel ×3.

use crate::common;

use std::collections::HashSet;
use std::time::Duration;

use common::index_of;
use otpgw_sim::loadgen::{self, LoadConfig};
use otpgw_sim::redis_ha::{self, MASTER, TestHa};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_is_followed_and_nothing_acknowledged_is_lost() {
    let Some(mut ha) = TestHa::start("it", 2, Duration::from_millis(1000)) else {
        return;
    };
    let sim = common::sim(|c| c.receipt_delay = Duration::from_millis(10)).await;
    let dir = common::store_dir("sentinel");
    let port = common::free_port();
    let sentinels: Vec<String> = ha
        .sentinel_addrs()
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect();
    let store = format!(
        "backend = \"redis\"\nredis_sentinels = [{}]\nredis_master_name = \"{MASTER}\"\n\
         node_id = \"a\"\nredis_prefix = \"s\"\nredis_min_replicas = 1\nredis_replica_timeout_ms = 500",
        sentinels.join(", ")
    );
    let cfg = common::config_text_with_store(
        &format!("127.0.0.1:{port}"),
        &[("sim", sim.addr())],
        "receipt_ids = \"hex_to_decimal\"",
        &store,
    );
    let gw = common::GwProc::start(&dir, port, &cfg).await;
    let run = |first: u64, n: u64, rate: Option<u32>| {
        let mut lc = LoadConfig::new(gw.addr(), "bank", "pw1", n);
        lc.first_index = first;
        lc.rate = rate;
        lc.window = 100;
        lc.receipt_timeout = Duration::from_secs(2);
        loadgen::run(lc)
    };
    // 8 s of load at 500/s; the primary dies 2 s in.
    let load = tokio::spawn(run(0, 4_000, Some(500)));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(ha.primary(), Some(0));
    ha.servers[0].kill9();
    let promoted = tokio::task::block_in_place(|| ha.wait_failover(0, Duration::from_secs(30)));
    assert!(promoted.is_some(), "the sentinels promoted no replica");
    let r = tokio::time::timeout(Duration::from_secs(60), load)
        .await
        .expect("load ends")
        .expect("task")
        .expect("load ran");
    assert!(
        r.accepted > 1_000,
        "accepted before the kill: {}",
        r.accepted
    );
    let mut acked: HashSet<u64> = r.ids.keys().copied().collect();
    let mut refused: HashSet<u64> = r.refused.clone();

    // The node writes to the new primary: accepts resume.
    let mut after = 0;
    for round in 0..40u64 {
        let r = run(10_000 + round * 1_000, 200, None).await.expect("load");
        acked.extend(r.ids.keys().copied());
        refused.extend(r.refused.iter().copied());
        after = r.accepted;
        if after == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(after, 200, "accepts resume on the promoted replica");
    let ops = crate::ops::ops_addr_in(&gw);
    let moved = crate::ops::scrape_sum(ops, "otpgw_store_redis_failovers_total").await;
    assert!(moved >= 1.0, "the node moved to the new primary: {moved}");
    assert!(gw.logs().contains("redis primary changed"), "{}", gw.logs());

    // The old primary comes back: the Sentinels make it a replica, and it takes no
    // write of ours.
    assert!(ha.servers[0].spawn());
    let old = ha.servers[0].port;
    let mut demoted = false;
    for _ in 0..200 {
        if redis_ha::role(old).as_deref() == Some("slave") {
            demoted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(demoted, "the old primary rejoins as a replica");

    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let at_carrier: HashSet<u64> = sim.records().iter().map(|r| index_of(r.text())).collect();
    let lost: Vec<_> = acked
        .iter()
        .filter(|i| !at_carrier.contains(i))
        .take(10)
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged but never sent ({} acked): {lost:?}",
        acked.len()
    );
    let sent_refused: Vec<_> = refused
        .iter()
        .filter(|i| at_carrier.contains(i))
        .take(10)
        .collect();
    assert!(
        sent_refused.is_empty(),
        "refused yet sent: {sent_refused:?}"
    );
    sim.shutdown();
}

/// `scripts/failover.sh --smoke`: two nodes, a replica killed and resynced, then
/// the primary killed under 5,000 msg/s; the campaign's ledger finds nothing
/// acknowledged lost and its JSON report has the fields checks read.
#[test]
fn the_failover_smoke_loses_nothing_acknowledged() {
    failover_smoke(&[]);
}

/// `scripts/failover.sh --smoke` with `more` arguments (`--cluster`), checked.
pub(crate) fn failover_smoke(more: &[&str]) {
    let has_redis = std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok();
    if !has_redis {
        assert!(
            std::env::var("OTPGW_REQUIRE_REDIS").as_deref() != Ok("1"),
            "redis-server is required (OTPGW_REQUIRE_REDIS=1)"
        );
        eprintln!("redis-server not available: test skipped");
        return;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let json = std::env::temp_dir().join(format!("otpgw-failover-{}.json", std::process::id()));
    let out = std::process::Command::new("bash")
        .arg(root.join("scripts/failover.sh"))
        .arg("--smoke")
        .args(more)
        .arg("--json")
        .arg(&json)
        .env("OTPGW_BIN", env!("CARGO_BIN_EXE_otpgw"))
        .output()
        .expect("bash runs");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("report")).expect("json");
    let n = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k} in {r}"));
    assert_eq!(n("failovers"), 1, "{text}");
    assert_eq!(n("lost"), 0, "{text}");
    assert!(n("acked") > 10_000, "{text}");
    assert!(n("duplicates") <= n("duplicates_counted"), "{text}");
    assert!(n("max_unavailable_ms") > 0, "{text}");
    let _ = std::fs::remove_file(&json);
}
