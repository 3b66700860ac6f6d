//! Several `otpgw serve` nodes on one Redis (`backend = "redis"`, same prefix,
//! their own node ids) in front of one simulated carrier.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::index_of;
use otpgw_sim::loadgen::{self, LoadConfig};
use otpgw_sim::redis_server::TestRedis;

fn node_config(
    redis: &TestRedis,
    node: &str,
    port: u16,
    sim: std::net::SocketAddr,
    extra: &str,
) -> String {
    let store = format!(
        "backend = \"redis\"\nredis_url = \"{}\"\nnode_id = \"{node}\"\nredis_prefix = \"gw\"",
        redis.url()
    );
    common::config_text_with_store(&format!("127.0.0.1:{port}"), &[("sim", sim)], extra, &store)
}

/// A carrier rate cap of 300/s holds for three nodes together: the simulator never
/// sees more than 300 in any second (plus the 20 ms burst and 3 % for send jitter),
/// while each node alone would send 300/s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carrier_rate_cap_holds_across_three_nodes() {
    let Some(redis) = TestRedis::start("cap") else {
        return;
    };
    let sim = common::sim(|_| {}).await;
    let mut nodes = Vec::new();
    for n in ["a", "b", "c"] {
        let dir = common::store_dir(&format!("scale-cap-{n}"));
        let port = common::free_port();
        let cfg = node_config(&redis, n, port, sim.addr(), "rate_limit = 300");
        nodes.push(common::GwProc::start(&dir, port, &cfg).await);
    }
    let per_node = 600u64;
    let mut loads = Vec::new();
    for (k, gw) in nodes.iter().enumerate() {
        let mut lc = LoadConfig::new(gw.addr(), "bank", "pw1", per_node);
        lc.first_index = k as u64 * per_node;
        lc.registered_delivery = 0;
        lc.window = 100;
        loads.push(tokio::spawn(loadgen::run(lc)));
    }
    let mut acked = HashSet::new();
    for l in loads {
        let r = tokio::time::timeout(Duration::from_secs(30), l)
            .await
            .expect("load ends")
            .expect("task")
            .expect("load ran");
        assert_eq!(r.accepted, per_node, "refused: {:?}", r.rejected);
        acked.extend(r.ids.values().cloned());
    }
    assert_eq!(
        acked.len() as u64,
        3 * per_node,
        "message ids unique across nodes"
    );
    // Wait until the carrier has them all (1,800 at 300/s: about 6 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while sim.records().len() < 1800 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut recs = sim.records();
    assert_eq!(recs.len(), 1800, "all messages reached the carrier");
    let distinct: HashSet<u64> = recs.iter().map(|r| index_of(r.text())).collect();
    assert_eq!(distinct.len(), 1800, "each exactly once");
    recs.sort_by_key(|r| r.at);
    let mut worst = 0;
    for (i, r) in recs.iter().enumerate() {
        let n = recs[i..]
            .iter()
            .take_while(|x| x.at < r.at + Duration::from_secs(1))
            .count();
        worst = worst.max(n);
    }
    let span = recs[recs.len() - 1].at - recs[0].at;
    assert!(
        worst <= 318,
        "{worst} submits in one second with a shared cap of 300/s"
    );
    assert!(
        span >= Duration::from_secs(5),
        "1,800 at 300/s took only {span:?}"
    );
    for gw in &mut nodes {
        assert_eq!(
            gw.term(Duration::from_secs(10)).await,
            Some(0),
            "{}",
            gw.logs()
        );
    }
}
