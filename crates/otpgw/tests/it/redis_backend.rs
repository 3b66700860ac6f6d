//! `otpgw serve` with `backend = "redis"` against a real, durable redis-server
//! started by the test: SIGKILL under load loses nothing acknowledged, and receipts
//! owed reach the brand after the restart. (One node; several nodes sharing the
//! stream are not built yet.)

use crate::common;

use std::collections::HashSet;
use std::time::Duration;

use common::index_of;
use otpgw_sim::loadgen::{self, LoadConfig};
use otpgw_sim::redis_server::TestRedis;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_the_redis_store_loses_nothing_acknowledged() {
    let Some(redis) = TestRedis::start("gw") else {
        return;
    };
    let sim = common::sim(|c| c.receipt_delay = Duration::from_millis(30)).await;
    let dir = common::store_dir("redis-backend");
    let port = common::free_port();
    let store = format!(
        "backend = \"redis\"\nredis_url = \"{}\"\nnode_id = \"node-a\"\nredis_prefix = \"t\"",
        redis.url()
    );
    let cfg = common::config_text_with_store(
        &format!("127.0.0.1:{port}"),
        &[("sim", sim.addr())],
        "receipt_ids = \"hex_to_decimal\"",
        &store,
    );
    let mut gw = common::GwProc::start(&dir, port, &cfg).await;
    let mut acked = HashSet::new();
    let mut ids = HashSet::new();
    let mut receipts = HashSet::new();
    for round in 0..3u64 {
        let mut lc = LoadConfig::new(gw.addr(), "bank", "pw1", 5_000);
        lc.first_index = round * 5_000;
        lc.rate = Some(5_000);
        lc.window = 200;
        lc.receipt_timeout = Duration::from_secs(2);
        let load = tokio::spawn(loadgen::run(lc));
        tokio::time::sleep(Duration::from_millis(400 + 150 * round)).await;
        gw.kill9();
        let r = tokio::time::timeout(Duration::from_secs(60), load)
            .await
            .expect("load ends")
            .expect("task")
            .expect("load ran");
        assert!(r.accepted > 0, "round {round}: nothing acknowledged");
        acked.extend(r.ids.keys().copied());
        ids.extend(r.ids.values().cloned());
        for (i, _) in r.states {
            receipts.insert(r.ids[&i].clone());
        }
        // Receipts for earlier rounds' messages, delivered after a restart.
        for (id, _) in r.foreign_receipts {
            receipts.insert(id);
        }
        gw.restart().await;
    }
    // Receipts owed from before the kills arrive after the restart (recovery,
    // carrier binds and redelivery take longer on a machine running the whole
    // suite: 8 s to collect them).
    let mut lc = LoadConfig::new(gw.addr(), "bank", "pw1", 0);
    lc.expect_receipts = Some(u64::MAX);
    lc.receipt_timeout = Duration::from_secs(8);
    let late = loadgen::run(lc).await.expect("collect");
    for (id, _) in late.foreign_receipts {
        receipts.insert(id);
    }
    assert_eq!(
        gw.term(Duration::from_secs(15)).await,
        Some(0),
        "{}",
        gw.logs()
    );

    let at_carrier: HashSet<u64> = sim.records().iter().map(|r| index_of(r.text())).collect();
    let lost: Vec<_> = acked
        .iter()
        .filter(|i| !at_carrier.contains(i))
        .take(10)
        .collect();
    assert!(lost.is_empty(), "acknowledged but never sent: {lost:?}");
    let no_receipt = ids.iter().filter(|id| !receipts.contains(*id)).count();
    if no_receipt > 0 {
        for l in gw.logs().lines().filter(|l| l.contains("recover")) {
            eprintln!("{l}");
        }
    }
    assert_eq!(
        no_receipt,
        0,
        "{no_receipt} of {} acknowledged messages without a receipt",
        ids.len()
    );
    assert!(gw.logs().contains("redis store open"));
}

/// Whether `replica` is in sync with its primary (`master_link_status:up`).
fn in_sync(replica: &TestRedis) -> bool {
    std::process::Command::new("redis-cli")
        .args(["-p", &replica.port.to_string(), "INFO", "replication"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("master_link_status:up"))
}

async fn wait_sync(replica: &TestRedis) {
    for _ in 0..250 {
        if in_sync(replica) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    panic!("the replica did not sync");
}

/// `redis_min_replicas = 1`: messages are acknowledged once a replica holds them;
/// with the replica gone every submit gets a temporary error and none of those
/// messages ever reaches the carrier; with it back, accepts resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_wait_for_a_replica_and_refused_messages_never_go_out() {
    let Some(primary) = TestRedis::start("min-replicas-p") else {
        return;
    };
    let Some(mut replica) = TestRedis::start_replica("min-replicas-r", &primary) else {
        return;
    };
    wait_sync(&replica).await;
    let sim = common::sim(|c| c.receipt_delay = Duration::from_millis(10)).await;
    let dir = common::store_dir("min-replicas");
    let port = common::free_port();
    let store = format!(
        "backend = \"redis\"\nredis_url = \"{}\"\nnode_id = \"a\"\nredis_prefix = \"r\"\n\
         redis_min_replicas = 1\nredis_replica_timeout_ms = 200",
        primary.url()
    );
    let cfg = common::config_text_with_store(
        &format!("127.0.0.1:{port}"),
        &[("sim", sim.addr())],
        "receipt_ids = \"hex_to_decimal\"",
        &store,
    );
    let gw = common::GwProc::start(&dir, port, &cfg).await;
    let run = |first: u64, n: u64| {
        let mut lc = LoadConfig::new(gw.addr(), "bank", "pw1", n);
        lc.first_index = first;
        lc.receipt_timeout = Duration::from_millis(300);
        loadgen::run(lc)
    };
    let r = run(0, 300).await.unwrap();
    assert_eq!(r.accepted, 300, "replicated: acknowledged");

    replica.kill9();
    let r = run(1_000, 100).await.unwrap();
    assert_eq!(
        r.accepted, 0,
        "no replica: nothing acknowledged ({:?})",
        r.rejected
    );
    assert!(r.rejected.values().sum::<u64>() > 0);
    let ops = crate::ops::ops_addr_in(&gw);
    let short = crate::ops::scrape_sum(ops, "otpgw_store_replica_waits_short_total").await;
    assert!(short >= 1.0, "{short}");

    assert!(replica.spawn());
    wait_sync(&replica).await;
    let mut accepted = 0;
    for _ in 0..50 {
        // The store reports healthy again once it looked up the refused accepts.
        let r = run(2_000, 100).await.unwrap();
        accepted = r.accepted;
        if accepted == 100 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(accepted, 100, "accepts resume with the replica");
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let sent: HashSet<u64> = sim.records().iter().map(|r| index_of(r.text())).collect();
    assert!(
        (0..300).all(|i| sent.contains(&i)),
        "every acknowledged message went out"
    );
    let refused_sent: Vec<&u64> = sent
        .iter()
        .filter(|i| (1_000..1_100).contains(*i))
        .collect();
    assert!(
        refused_sent.is_empty(),
        "refused yet sent: {refused_sent:?}"
    );
    sim.shutdown();
}
