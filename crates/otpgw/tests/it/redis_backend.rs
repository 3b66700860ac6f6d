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
    // Receipts owed from before the kills arrive after the restart.
    let mut lc = LoadConfig::new(gw.addr(), "bank", "pw1", 0);
    lc.expect_receipts = Some(u64::MAX);
    lc.receipt_timeout = Duration::from_secs(4);
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
