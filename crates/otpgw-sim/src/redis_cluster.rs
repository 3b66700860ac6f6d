//! A real Redis Cluster for tests and benchmarks: `shards` durable primaries
//! ([`TestRedis`] with `--cluster-enabled yes`) on free ports of 127.0.0.1, each
//! with as many replicas as asked. Three or more shards are joined by `redis-cli
//! --cluster create`, the tool operators use; a single shard without replicas
//! (which that tool refuses) takes every slot with `CLUSTER ADDSLOTSRANGE`.
//! [`TestCluster::start`] returns once every server says `cluster_state:ok`.
//!
//! With replicas, every server starts from the shipped
//! `deploy/redis-cluster/redis.conf` (`min-replicas-to-write 1`: a primary cut from
//! its replica refuses writes), with a 2 s `cluster-node-timeout` (a replica takes
//! over 2 to 3 s after its primary stops answering). Servers can be killed
//! (SIGKILL), stopped (SIGSTOP) and continued, and started again on their port and
//! data: a primary that comes back after its replica took over rejoins as a replica.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::redis_ha::command;
use crate::redis_server::TestRedis;

/// The cluster (see the module docs).
pub struct TestCluster {
    /// Every server (primaries and replicas; the cluster decides which is which).
    pub shards: Vec<TestRedis>,
    /// The number of shards (primaries when all is well).
    pub wanted: usize,
    /// The shipped configuration file, written out (with replicas).
    conf: Option<std::path::PathBuf>,
}

/// The shipped settings of every server of a cluster with replicas.
const CLUSTER_CONF: &str = include_str!("../../../deploy/redis-cluster/redis.conf");

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
        let conf = if replicas > 0 {
            let p = std::env::temp_dir()
                .join(format!("otpgw-cluster-{}-{tag}.conf", std::process::id()));
            std::fs::write(&p, CLUSTER_CONF).ok()?;
            Some(p)
        } else {
            None
        };
        let mut all = Vec::new();
        for i in 0..shards.max(1) * (1 + replicas) {
            all.push(TestRedis::start_with(
                &format!("{tag}-s{i}"),
                None,
                &args,
                conf.as_deref(),
            )?);
        }
        let c = Self {
            shards: all,
            wanted: shards.max(1),
            conf,
        };
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
        assert!(
            self.replicas_synced(n, within),
            "the cluster's replicas did not sync: {}",
            self.describe()
        );
    }

    /// Whether, within `within`, all shards have a primary with `n` replicas online.
    pub fn replicas_synced(&self, n: usize, within: Duration) -> bool {
        let until = Instant::now() + within;
        loop {
            let primaries = self.primaries();
            let synced = primaries.len() >= self.wanted
                && primaries.iter().all(|&i| {
                    let info = crate::redis_ha::info(self.shards[i].port, "replication");
                    info.matches("state=online").count() >= n
                });
            if synced {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Wait until every shard has a primary that answers again, server `gone`
    /// left out; whether within `within`.
    pub fn wait_promoted(&self, gone: usize, within: Duration) -> bool {
        let until = Instant::now() + within;
        while Instant::now() < until {
            let up = self.primaries().into_iter().filter(|&i| i != gone).count();
            if up >= self.wanted {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Each server's port and role, for a failure report.
    pub fn describe(&self) -> String {
        self.shards
            .iter()
            .map(|s| {
                format!(
                    "{}: {}",
                    s.port,
                    crate::redis_ha::role(s.port).unwrap_or_else(|| "down".into())
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
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

impl Drop for TestCluster {
    fn drop(&mut self) {
        if let Some(p) = &self.conf {
            let _ = std::fs::remove_file(p);
        }
    }
}
