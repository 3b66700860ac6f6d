//! `otpgw serve` nodes on a real Redis Cluster (`redis_cluster = [...]`): three
//! `redis-server --cluster-enabled yes` primaries joined by `redis-cli --cluster
//! create` ([`TestCluster`]). The scale-out scenarios of [`super::redis_scale_out`]
//! run on it unchanged: a node killed under load loses nothing acknowledged; the
//! verifications, idempotency keys and statuses are shared by the nodes. The keys
//! spread over every shard. And `scripts/failover.sh --smoke --cluster`: a shard's
//! primary killed under load (three shards of a primary and two replicas).

use otpgw_sim::redis_cluster::TestCluster;

use super::redis_scale_out::{kill_one_of_three, shared_records};
use super::redis_sentinel::failover_smoke;

/// `[store]`'s line for the cluster.
fn at(c: &TestCluster) -> String {
    let nodes: Vec<String> = c.nodes().iter().map(|n| format!("\"{n}\"")).collect();
    format!(
        "redis_cluster = [{}]\nredis_partitions = 12",
        nodes.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_one_of_three_nodes_on_a_cluster_loses_nothing_acknowledged() {
    let Some(c) = TestCluster::start("gw-kill", 3) else {
        return;
    };
    kill_one_of_three(&at(&c), None).await;
    let keys = c.keys_per_shard();
    assert!(
        keys.iter().all(|&k| k > 0),
        "every shard holds keys: {keys:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifications_statuses_and_keys_are_shared_on_a_cluster() {
    let Some(c) = TestCluster::start("gw-http", 3) else {
        return;
    };
    shared_records(&at(&c)).await;
}

/// `scripts/failover.sh --smoke --cluster`: two nodes on a 3-shard cluster with
/// `redis_min_replicas = 1`; a replica killed and resynced, then a shard's primary
/// killed under 5,000 msg/s and its replica promoted by the cluster; the ledger
/// finds nothing acknowledged lost.
#[test]
fn the_cluster_failover_smoke_loses_nothing_acknowledged() {
    failover_smoke(&["--cluster"]);
}
