//! The Redis backend's settings: where Redis is (`redis_url`, `redis_sentinels`
//! with `redis_master_name`, or `redis_cluster` with `redis_partitions`; their
//! passwords), the checks of `check-config`, and the store's
//! [`otpgw_store::RedisConfig`].

use std::time::Duration;

use otpgw_store::redis_store::link::{Cluster, Sentinels};

use super::Config;
use super::secret::source;
use super::sections::Store;

impl std::fmt::Debug for Store {
    /// Never prints a password (nor the URL, which may hold one).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .field("path", &self.path)
            .field("redis_prefix", &self.redis_prefix)
            .field("node_id", &self.node_id)
            .field("redis_sentinels", &self.redis_sentinels)
            .field("redis_master_name", &self.redis_master_name)
            .field("redis_cluster", &self.redis_cluster)
            .field("redis_partitions", &self.redis_partitions)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// The primary's password with Sentinels (`None`: no AUTH).
    pub fn redis_password(&self) -> Result<Option<String>, String> {
        source(
            "store.redis_password",
            &self.redis_password,
            &self.redis_password_env,
            &self.redis_password_file,
        )
        .resolve()
    }

    /// The Sentinels' password (`None`: no AUTH).
    pub fn redis_sentinel_password(&self) -> Result<Option<String>, String> {
        source(
            "store.redis_sentinel_password",
            &self.redis_sentinel_password,
            &self.redis_sentinel_password_env,
            &self.redis_sentinel_password_file,
        )
        .resolve()
    }
}

impl Config {
    /// Problems of the Redis backend's settings (only with `backend = "redis"`).
    pub(super) fn redis_problems(&self, p: &mut Vec<String>) {
        let st = &self.store;
        if !st.redis_cluster.is_empty() {
            self.cluster_problems(p);
        } else if st.redis_sentinels.is_empty() {
            if !(st.redis_url.starts_with("redis://") || st.redis_url.starts_with("rediss://")) {
                p.push(
                    "store.redis_url: required with backend = \"redis\" (redis://host:port/db), unless redis_sentinels or redis_cluster is set"
                        .into(),
                );
            }
            if !st.redis_master_name.is_empty() {
                p.push("store.redis_master_name: goes with redis_sentinels".into());
            }
        } else {
            if !st.redis_url.is_empty() {
                p.push("store.redis_url: set either redis_url or redis_sentinels, not both".into());
            }
            addr_problems("store.redis_sentinels", &st.redis_sentinels, p);
            if st.redis_master_name.is_empty() || st.redis_master_name.contains(char::is_whitespace)
            {
                p.push("store.redis_master_name: required with redis_sentinels (the name in sentinel.conf's `sentinel monitor`)".into());
            }
        }
        for r in [st.redis_password(), st.redis_sentinel_password()] {
            if let Err(e) = r {
                p.push(e);
            }
        }
        if st.node_id.is_empty()
            || !st
                .node_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            p.push("store.node_id: required with backend = \"redis\": letters, digits, '-', '_' or '.', unique per node".into());
        }
        if !(300..=600_000).contains(&st.node_lease_ms) {
            p.push(format!(
                "store.node_lease_ms = {}: must be 300 to 600000",
                st.node_lease_ms
            ));
        }
        if !(1..=1000).contains(&st.redis_replica_timeout_ms) {
            p.push(format!(
                "store.redis_replica_timeout_ms = {}: must be 1 to 1000 (below the 2 s command timeout)",
                st.redis_replica_timeout_ms
            ));
        }
        if st.redis_prefix.is_empty()
            || st.redis_prefix.contains(char::is_whitespace)
            || st.redis_prefix.contains(['{', '}'])
        {
            p.push("store.redis_prefix: must be a non-empty word without braces (they make Redis Cluster hash tags)".into());
        }
    }

    /// Problems of `redis_cluster` and what goes with it.
    fn cluster_problems(&self, p: &mut Vec<String>) {
        let st = &self.store;
        if !st.redis_url.is_empty() || !st.redis_sentinels.is_empty() {
            p.push(
                "store.redis_cluster: set one of redis_url, redis_sentinels or redis_cluster"
                    .into(),
            );
        }
        if !st.redis_master_name.is_empty() {
            p.push("store.redis_master_name: goes with redis_sentinels".into());
        }
        addr_problems("store.redis_cluster", &st.redis_cluster, p);
        if !(1..=1024).contains(&st.redis_partitions) {
            p.push(format!(
                "store.redis_partitions = {}: must be 1 to 1024",
                st.redis_partitions
            ));
        }
    }

    /// The Redis store's settings (passwords that cannot be read are left out:
    /// `check-config` names them before a start).
    pub fn redis_config(&self) -> otpgw_store::RedisConfig {
        let s = &self.store;
        let mut c = otpgw_store::RedisConfig::new(&s.redis_url, &s.redis_prefix, &s.node_id);
        c.batch_max = s.batch_max;
        c.lease = Duration::from_millis(s.node_lease_ms);
        c.status_keep = Duration::from_secs(s.finished_retention_secs);
        c.min_replicas = s.redis_min_replicas;
        c.replica_timeout = Duration::from_millis(s.redis_replica_timeout_ms);
        c.partitions = s.redis_partitions;
        if !s.redis_cluster.is_empty() {
            c.cluster = Some(Cluster {
                nodes: s.redis_cluster.clone(),
                password: s.redis_password().ok().flatten(),
            });
        } else if !s.redis_sentinels.is_empty() {
            c.sentinels = Some(Sentinels {
                addrs: s.redis_sentinels.clone(),
                master: s.redis_master_name.clone(),
                password: s.redis_password().ok().flatten(),
                sentinel_password: s.redis_sentinel_password().ok().flatten(),
            });
        }
        c
    }
}

/// Each of `list` (named `field`) must be `host:port`.
fn addr_problems(field: &str, list: &[String], p: &mut Vec<String>) {
    for (i, a) in list.iter().enumerate() {
        let ok = a
            .rsplit_once(':')
            .is_some_and(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok_and(|n| n > 0));
        if !ok {
            p.push(format!("{field}[{i}] = {a:?}: must be host:port"));
        }
    }
}
