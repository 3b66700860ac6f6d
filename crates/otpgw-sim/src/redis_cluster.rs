//! A real Redis Cluster for tests and benchmarks: `shards` durable primaries
//! ([`TestRedis`] with `--cluster-enabled yes`) on free ports of 127.0.0.1, each
//! with as many replicas as asked. Three or more shards are joined by `redis-cli
//! --cluster create`, the tool operators use; a single shard without replicas
//! (which that tool refuses) takes every slot with `CLUSTER ADDSLOTSRANGE`.
//! [`TestCluster::start`] returns once every server says `cluster_state:ok`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::redis_ha::command;
use crate::redis_server::TestRedis;

/// The cluster (see the module docs).
pub struct TestCluster {
    pub shards: Vec<TestRedis>,
}

impl TestCluster {
    /// `shards` primaries joined into one cluster; `None` when Redis is not
    /// installed (see [`TestRedis::start`]). Panics when they do not form one.
    pub fn start(tag: &str, shards: usize) -> Option<Self> {
        Self::start_with_replicas(tag, shards, 0)
    }

    /// `shards` primaries with `replicas` replicas each (the cluster promotes one
    /// when its primary has been unreachable for 2 s).
    pub fn start_with_replicas(tag: &str, shards: usize, replicas: usize) -> Option<Self> {
        let args = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "2000",
        ];
        let mut all = Vec::new();
        for i in 0..shards.max(1) * (1 + replicas) {
            all.push(TestRedis::start_with(
                &format!("{tag}-s{i}"),
                None,
                &args,
                None,
            )?);
        }
        let c = Self { shards: all };
        if c.shards.len() == 1 && replicas == 0 {
            let r = command(
                c.shards[0].port,
                &["CLUSTER", "ADDSLOTSRANGE", "0", "16383"],
            );
            assert_eq!(r.first().map(String::as_str), Some("OK"), "addslots: {r:?}");
        } else {
            let out = Command::new("redis-cli")
                .arg("--cluster")
                .arg("create")
                .args(c.nodes())
                .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
                .stdin(Stdio::null())
                .output()
                .expect("redis-cli (installed with redis-server)");
            assert!(
                out.status.success(),
                "redis-cli --cluster create: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        c.wait_ok(Duration::from_secs(30));
        if replicas > 0 {
            c.wait_replicas(replicas, Duration::from_secs(30));
        }
        Some(c)
    }

    /// `127.0.0.1:PORT` of each shard.
    pub fn nodes(&self) -> Vec<String> {
        self.shards
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect()
    }

    /// The number of keys each shard holds (`DBSIZE`).
    pub fn keys_per_shard(&self) -> Vec<u64> {
        self.shards
            .iter()
            .map(|s| {
                command(s.port, &["DBSIZE"])
                    .first()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0)
            })
            .collect()
    }

    /// Wait until every primary has `n` replicas online; panics past `within`.
    pub fn wait_replicas(&self, n: usize, within: Duration) {
        let until = Instant::now() + within;
        loop {
            let primaries = self.primaries();
            let synced = !primaries.is_empty()
                && primaries.iter().all(|&i| {
                    let info = crate::redis_ha::info(self.shards[i].port, "replication");
                    info.matches("state=online").count() >= n
                });
            if synced {
                return;
            }
            assert!(
                Instant::now() < until,
                "the cluster's replicas did not sync"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The servers that say they are primaries (`ROLE`), by index.
    pub fn primaries(&self) -> Vec<usize> {
        (0..self.shards.len())
            .filter(|&i| {
                self.shards[i].running()
                    && crate::redis_ha::role(self.shards[i].port).as_deref() == Some("master")
            })
            .collect()
    }

    /// Wait until every running server says the cluster is ok (all slots
    /// served), e.g. after a replica took over; panics past `within`.
    pub fn wait_ok(&self, within: Duration) {
        let until = Instant::now() + within;
        loop {
            let ok = self.shards.iter().filter(|s| s.running()).all(|s| {
                command(s.port, &["CLUSTER", "INFO"])
                    .concat()
                    .contains("cluster_state:ok")
            });
            if ok {
                return;
            }
            assert!(Instant::now() < until, "the redis cluster did not form");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
