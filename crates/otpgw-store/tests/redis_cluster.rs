//! The Redis store on a real Redis Cluster: three `redis-server --cluster-enabled
//! yes` primaries on free ports of 127.0.0.1 joined by `redis-cli --cluster
//! create` ([`TestCluster`]). The messages spread over the partitions' hash tags,
//! so over every shard; what the store does on one Redis it does here too:
//! recovery, the HTTP door's records, claims of a dead node's work, writes made
//! while a shard is down. Skipped when `redis-server` is not installed, unless
//! `OTPGW_REQUIRE_REDIS=1`.

use std::sync::Arc;
use std::time::Duration;

use otpgw_core::store::{Cluster as _, MessageLog};
use otpgw_core::{DeliveryState, MsgId};
use otpgw_sim::redis_cluster::TestCluster;
use otpgw_store::redis_store::link::Cluster;
use otpgw_store::{RedisConfig, RedisStore};
use otpgw_testkit::contract as fixtures;
use otpgw_testkit::sample::{message as msg, receipt_job as job};

fn cfg(c: &TestCluster, node: &str) -> RedisConfig {
    let mut cfg = RedisConfig::new("", "t", node);
    cfg.cluster = Some(Cluster {
        nodes: c.nodes(),
        password: None,
    });
    cfg.partitions = 12;
    cfg.lease = Duration::from_millis(900);
    cfg
}

async fn open(c: &TestCluster, node: &str) -> RedisStore {
    RedisStore::open(cfg(c, node))
        .await
        .expect("redis store opens on the cluster")
}

/// Accepted messages spread over every shard and come back at the node's restart
/// with their carrier states and the receipts owed; the HTTP door's records
/// (compare-and-set, idempotency keys, statuses, counts) work across slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_spread_over_the_shards_and_are_recovered() {
    let Some(c) = TestCluster::start("spread", 3) else {
        return;
    };
    {
        let s = Arc::new(open(&c, "n1").await);
        assert_eq!(s.partitions(), 12);
        let mut tasks = Vec::new();
        for i in 100..1100u64 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move { s.accept(&msg(i)).await.is_ok() }));
        }
        for t in tasks {
            assert!(t.await.expect("task"));
        }
        let keys = c.keys_per_shard();
        assert!(
            keys.iter().all(|&k| k >= 4),
            "every shard holds some partitions' streams: {keys:?}"
        );
        fixtures::write_five_stages(&*s).await;
        for i in 100..1100u64 {
            s.finished(MsgId(i), DeliveryState::Delivered, None, 12);
        }
        assert!(s.flush().wait().await);
    }
    fixtures::http_contract(&open(&c, "nh").await).await;
    // A node with another number of partitions would look in the wrong ones.
    let mut other = cfg(&c, "n9");
    other.partitions = 8;
    let e = RedisStore::open(other).await.expect_err("refused");
    assert!(e.to_string().contains("redis_partitions = 8"), "{e}");
    let other = open(&c, "n2").await;
    let rec = other.recover(20).expect("recover");
    assert!(rec.unconfirmed.is_empty() && rec.confirmed.is_empty() && rec.receipts.is_empty());

    let s = open(&c, "n1").await;
    fixtures::check_five_stages(&s.recover(20).expect("recover"));
}

/// A node that stops renewing its lease leaves messages and owed receipts in
/// several partitions: another node claims them all, partition by partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_work_is_claimed_in_every_partition() {
    let Some(c) = TestCluster::start("claim", 3) else {
        return;
    };
    let survivor = open(&c, "n2").await;
    // n1 runs on a runtime of its own, dropped at the end: every task of the node
    // (its lease renewals too) stops as if the process died.
    let n1 = cfg(&c, "n1");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let dead = RedisStore::open(n1).await.expect("opens");
            for i in 1..=24u64 {
                dead.accept(&msg(i)).await.expect("accepted");
            }
            for i in [30u64, 31, 32] {
                dead.accept(&msg(i)).await.expect("accepted");
                let r = dead.finished(MsgId(i), DeliveryState::Delivered, Some(&job(i, 5)), 5);
                assert!(r.wait().await);
            }
        });
    })
    .join()
    .expect("n1 ran");
    let mut claimed = Vec::new();
    let mut receipts = Vec::new();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = otpgw_core::clock::now_ms();
        let got = survivor.claim_orphans(now).await.expect("claim");
        claimed.extend(got.unconfirmed.iter().map(|(m, _)| m.id.0));
        receipts.extend(got.receipts.iter().map(|j| j.id.0));
        if claimed.len() >= 24 && receipts.len() >= 3 {
            break;
        }
    }
    claimed.sort_unstable();
    receipts.sort_unstable();
    assert_eq!(claimed, (1..=24).collect::<Vec<_>>(), "every message, once");
    assert_eq!(receipts, vec![30, 31, 32], "every receipt owed");
}

/// Writes made while one shard is down (killed) are written once it is back, in
/// order, as on one Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_made_while_a_shard_is_down_land_once_it_is_back() {
    let Some(mut c) = TestCluster::start("backlog", 3) else {
        return;
    };
    let s = open(&c, "n1").await;
    fixtures::write_before_outage(&s).await;
    c.shards[1].kill9();
    // As `fixtures::write_during_outage`, but a finish may go through: only the
    // partitions of the killed shard fail (then the whole batch is kept).
    for i in 1..=10u64 {
        s.carrier_accepted(MsgId(i), "sim", &format!("C{i}"));
    }
    for i in 11..=15u64 {
        drop(s.finished(MsgId(i), DeliveryState::Delivered, None, 8));
    }
    for i in 21..=30u64 {
        s.receipt_forwarded(MsgId(i));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(c.shards[1].spawn(), "the shard restarts");
    assert!(
        fixtures::flushed_within(&s, Duration::from_secs(15)).await,
        "writes go through again"
    );
    fixtures::check_outage_writes_landed(&open(&c, "n1").await.recover(0).expect("recover"));
}

/// A shard's primary killed (SIGKILL) under accepts, with `redis_min_replicas = 1`
/// on a cluster whose shards each have a replica: the cluster promotes the
/// replica; accepts get temporary errors meanwhile (and until the killed server is
/// back as the new primary's replica: an acknowledgement waits for a replica); every
/// acknowledged message is in the node's pending list afterwards, and every
/// refused one is not (taken out if it was written).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_failover_loses_nothing_acknowledged() {
    let Some(mut c) = TestCluster::start_with_replicas("failover", 3, 1) else {
        return;
    };
    let mut cf = cfg(&c, "n1");
    cf.min_replicas = 1;
    cf.replica_timeout = Duration::from_millis(500);
    cf.lease = Duration::from_secs(30);
    let s = Arc::new(RedisStore::open(cf.clone()).await.expect("opens"));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (s, stop) = (s.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut acked, mut refused) = (Vec::new(), 0u64);
            let mut next = 1u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let wave: Vec<_> = (next..next + 50)
                    .map(|i| {
                        let s = s.clone();
                        async move { (i, s.accept(&msg(i)).await.is_ok()) }
                    })
                    .collect();
                next += 50;
                for (i, ok) in futures_util::future::join_all(wave).await {
                    if ok {
                        acked.push(i);
                    } else {
                        refused += 1;
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (acked, refused, next)
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let victim = c.primaries()[0];
    c.shards[victim].kill9();
    // The replica takes over (cluster-node-timeout 2 s); the killed one comes
    // back as its replica.
    let t = std::time::Instant::now();
    while c.primaries().len() < 3 {
        assert!(t.elapsed() < Duration::from_secs(20), "no replica promoted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(c.shards[victim].spawn(), "the killed server restarts");
    let c2 = tokio::task::spawn_blocking(move || {
        c.wait_replicas(1, Duration::from_secs(30));
        c
    })
    .await
    .expect("replicas");
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (acked, refused, next) = load.await.expect("load");
    assert!(refused > 0, "the failover refused some accepts");
    assert!(
        acked.last().is_some_and(|&l| l + 100 >= next),
        "accepts go through again after the failover"
    );
    let t = std::time::Instant::now();
    while !s.is_healthy() {
        assert!(t.elapsed() < Duration::from_secs(20), "healthy again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rec = s.recover(0).expect("recover");
    let mut pending: Vec<u64> = rec.unconfirmed.iter().map(|(m, _)| m.id.0).collect();
    pending.sort_unstable();
    let mut want = acked.clone();
    want.sort_unstable();
    let lost: Vec<_> = want
        .iter()
        .filter(|i| pending.binary_search(i).is_err())
        .take(10)
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged, not pending after the failover: {lost:?}"
    );
    let extra: Vec<_> = pending
        .iter()
        .filter(|i| want.binary_search(i).is_err())
        .take(10)
        .collect();
    assert!(extra.is_empty(), "refused, yet pending: {extra:?}");
    eprintln!("acked {}, refused {refused}", acked.len());
    drop(c2);
}
