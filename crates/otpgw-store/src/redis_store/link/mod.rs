//! The one way a node talks to Redis: a [`Link`] to the current primary, shared by
//! every user (the writer, the readers, the consumer group, the leases, the shared
//! carrier limits, the HTTP and verification records).
//!
//! With a fixed `redis_url` a link is a reconnecting connection to that server.
//! With Sentinels ([`Sentinels`]) the primary is found through them (the redis
//! crate's `Sentinel::async_master_for`, which also checks the server's `ROLE`), and
//! a follower task keeps finding it:
//! - every second, at once when a Sentinel publishes `+switch-master` (each
//!   Sentinel's channel is followed; the announced primary is tried first, once it
//!   says it is one, as the other Sentinels may take seconds more to agree), and
//!   at once when a command failed with a connection error, `READONLY` or
//!   `NOREPLICAS`;
//! - when the Sentinels name another primary, the follower opens a connection to it
//!   and puts it in the link's slot: every clone's next command goes there, nothing
//!   else in the node needs to know (`otpgw_store_redis_failovers_total`).
//!
//! With a Redis Cluster ([`Cluster`]) a link is the redis crate's cluster
//! connection: it learns the slots from the nodes, sends each command (and each
//! pipeline, whose keys share one slot: see [`super::keys`]) to the shard that holds
//! it, and follows `MOVED` and failovers inside the cluster by itself.
//!
//! Writes are never sent to a server that is no longer primary on purpose: a demoted
//! server answers `READONLY` (its replicas are read-only), a stale primary that is
//! cut from its replicas answers `NOREPLICAS` (`min-replicas-to-write`, see
//! docs/operations.md), and either is a failed write: its accepts get a temporary
//! error and are resolved like every accept in doubt ([`super::doubt`]).

use std::sync::Arc;
use std::time::Duration;

use otpgw_core::store::StoreError;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::{
    Cmd, ConnectionAddr, ConnectionInfo, Pipeline, RedisConnectionInfo, RedisFuture, Value,
};
use tokio::sync::Notify;

mod sentinel;
pub use sentinel::Sentinels;

use super::err;

/// The nodes of a Redis Cluster to learn it from.
#[derive(Clone, Default)]
pub struct Cluster {
    /// `host:port` of some of its nodes (one that answers is enough).
    pub nodes: Vec<String>,
    /// The nodes' password (`requirepass`), if any.
    pub password: Option<String>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("nodes", &self.nodes)
            .finish_non_exhaustive()
    }
}

/// Where Redis is: a URL, the primary the Sentinels name, or a Cluster.
#[derive(Debug, Clone)]
pub enum Target<'a> {
    Url(&'a str),
    Sentinels(&'a Sentinels),
    Cluster(&'a Cluster),
}

/// The connection of a link: to one server, or to a whole Cluster.
#[derive(Clone)]
enum Conn {
    One(ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

/// How to open a blocking connection (recovery) to what a link uses now.
#[derive(Clone)]
enum Opener {
    One(redis::Client),
    Cluster(redis::cluster::ClusterClient),
}

/// The server a link uses now.
#[derive(Clone)]
struct Current {
    client: Opener,
    conn: Conn,
    addr: String,
}

struct Inner {
    now: parking_lot::RwLock<Current>,
    /// Set when the current server may be gone or demoted: look again.
    doubt: Notify,
    db: i64,
    /// Whether a follower is there to hear `doubt`.
    follows: bool,
    /// The primary a Sentinel announced last (`+switch-master`), not yet tried.
    announced: parking_lot::Mutex<Option<(String, u16)>>,
}

impl Inner {
    /// A link's shared state, using `current`; `follows`: a Sentinel follower
    /// hears its doubts.
    fn link(current: Current, db: i64, follows: bool) -> Arc<Self> {
        Arc::new(Self {
            now: parking_lot::RwLock::new(current),
            doubt: Notify::new(),
            db,
            follows,
            announced: parking_lot::Mutex::new(None),
        })
    }
}

/// A connection to the current primary (see the module docs); cheap to clone.
#[derive(Clone)]
pub struct Link {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("addr", &self.inner.now.read().addr)
            .finish()
    }
}

impl Link {
    /// A blocking connection to what the link uses now (recovery), whose
    /// commands may take `read` each.
    pub fn blocking(
        &self,
        timeout: Duration,
        read: Duration,
    ) -> Result<Box<dyn redis::ConnectionLike>, StoreError> {
        let opener = self.inner.now.read().client.clone();
        match opener {
            Opener::One(c) => {
                let conn = c.get_connection_with_timeout(timeout).map_err(err)?;
                let _ = conn.set_read_timeout(Some(read));
                Ok(Box::new(conn))
            }
            Opener::Cluster(c) => Ok(Box::new(c.get_connection().map_err(err)?)),
        }
    }

    /// `host:port` of the current server.
    pub fn addr(&self) -> String {
        self.inner.now.read().addr.clone()
    }

    fn current(&self) -> Conn {
        self.inner.now.read().conn.clone()
    }

    /// On a Cluster, the primary (its node id) serving each of `slots`
    /// (`CLUSTER SLOTS`); `None` on one Redis or when it cannot be read.
    pub async fn primaries_of(&self, slots: &[u16]) -> Option<Vec<String>> {
        if !matches!(self.current(), Conn::Cluster(_)) {
            return None;
        }
        let ranges: Vec<Value> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut self.clone())
            .await
            .ok()?;
        let mut owners: Vec<(i64, i64, String)> = Vec::new();
        for r in ranges {
            let Value::Array(f) = r else { continue };
            if let [Value::Int(a), Value::Int(b), Value::Array(node), ..] = f.as_slice()
                && let [host, Value::Int(port), rest @ ..] = node.as_slice()
            {
                // The node's id names it (its address may be a shared hostname).
                let id: Option<String> = rest.first().and_then(|v| redis::from_redis_value(v).ok());
                let host: String = redis::from_redis_value(host).ok()?;
                owners.push((*a, *b, id.unwrap_or_else(|| format!("{host}:{port}"))));
            }
        }
        slots
            .iter()
            .map(|&s| {
                owners
                    .iter()
                    .find(|(a, b, _)| (*a..=*b).contains(&i64::from(s)))
                    .map(|(_, _, n)| n.clone())
            })
            .collect()
    }

    /// This link, its pipelines sent to the shard serving `slot` (on a Cluster:
    /// a pipeline may then hold the keys of several slots of that shard).
    pub fn at_slot(&self, slot: u16) -> Routed {
        Routed {
            link: self.clone(),
            slot,
        }
    }

    /// After a failed command: a connection error or a demoted server makes the
    /// follower look for the primary at once.
    fn judge<T>(&self, r: &redis::RedisResult<T>) {
        if let Err(e) = r
            && self.inner.follows
            && (e.is_io_error()
                || e.is_connection_dropped()
                || e.is_connection_refusal()
                || e.is_timeout()
                || e.kind() == redis::ErrorKind::ReadOnly
                || e.code() == Some("NOREPLICAS"))
        {
            self.inner.doubt.notify_one();
        }
    }
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let c = self.current();
        Box::pin(async move {
            let r = match c {
                Conn::One(mut c) => c.req_packed_command(cmd).await,
                Conn::Cluster(mut c) => c.req_packed_command(cmd).await,
            };
            self.judge(&r);
            r
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let c = self.current();
        Box::pin(async move {
            let r = match c {
                Conn::One(mut c) => c.req_packed_commands(cmd, offset, count).await,
                Conn::Cluster(mut c) => c.req_packed_commands(cmd, offset, count).await,
            };
            self.judge(&r);
            r
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.db
    }
}

/// A link whose pipelines go to the shard of one slot ([`Link::at_slot`]).
#[derive(Clone)]
pub struct Routed {
    link: Link,
    slot: u16,
}

impl ConnectionLike for Routed {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.link.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let Conn::Cluster(mut c) = self.link.current() else {
            return self.link.req_packed_commands(cmd, offset, count);
        };
        let route = redis::cluster_routing::SingleNodeRoutingInfo::SpecificNode(
            redis::cluster_routing::Route::new(self.slot, redis::cluster_routing::SlotAddr::Master),
        );
        Box::pin(async move { c.route_pipeline(cmd, offset, count, route).await })
    }

    fn get_db(&self) -> i64 {
        self.link.get_db()
    }
}

/// A reconnecting connection of `client`; every command (and each connection
/// attempt) gives up after `timeout`.
async fn manager(
    client: &redis::Client,
    timeout: Duration,
) -> Result<ConnectionManager, StoreError> {
    let cfg = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(timeout)
        .set_response_timeout(timeout)
        .set_number_of_retries(1);
    tokio::time::timeout(
        timeout,
        ConnectionManager::new_with_config(client.clone(), cfg),
    )
    .await
    .map_err(|_| StoreError::Unavailable("connecting to redis timed out".into()))?
    .map_err(err)
}

/// Connect to `target` (with Sentinels: to the primary they name, and follow it).
pub async fn connect(target: Target<'_>, timeout: Duration) -> Result<Link, StoreError> {
    match target {
        Target::Url(url) => {
            let client = redis::Client::open(url).map_err(err)?;
            let conn = manager(&client, timeout).await?;
            let info = client.get_connection_info();
            let (addr, db) = (info.addr.to_string(), info.redis.db);
            let now = Current {
                client: Opener::One(client),
                conn: Conn::One(conn),
                addr,
            };
            Ok(Link {
                inner: Inner::link(now, db, false),
            })
        }
        Target::Sentinels(s) => sentinel::connect(s, timeout).await,
        Target::Cluster(c) => {
            let urls: Vec<ConnectionInfo> = c
                .nodes
                .iter()
                .map(|a| node_of(a, 6379, c.password.clone()))
                .collect();
            let build = |read: Duration| {
                redis::cluster::ClusterClientBuilder::new(urls.clone())
                    .connection_timeout(timeout)
                    .response_timeout(read)
                    // Never send a command again by itself: an accept sent twice
                    // would add its message twice, and a resend could overtake
                    // later writes. A failed write is the writer's to retry.
                    .retries(0)
                    .build()
                    .map_err(err)
            };
            let client = build(timeout)?;
            let conn = tokio::time::timeout(timeout, client.get_async_connection())
                .await
                .map_err(|_| {
                    StoreError::Unavailable("connecting to the redis cluster timed out".into())
                })?
                .map_err(err)?;
            tracing::info!(nodes = ?c.nodes, "redis cluster connected");
            let now = Current {
                client: Opener::Cluster(build(Duration::from_secs(30))?),
                conn: Conn::Cluster(conn),
                addr: c.nodes.join(","),
            };
            Ok(Link {
                inner: Inner::link(now, 0, false),
            })
        }
    }
}

/// A server at `host:port` (`port` when the address has none) with `password`.
fn node_of(addr: &str, port: u16, password: Option<String>) -> ConnectionInfo {
    let (host, port) = addr
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_string(), p.parse().ok()?)))
        .unwrap_or_else(|| (addr.to_string(), port));
    ConnectionInfo {
        addr: ConnectionAddr::Tcp(host, port),
        redis: RedisConnectionInfo {
            password,
            ..Default::default()
        },
    }
}
