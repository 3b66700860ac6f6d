//! The Redis backend: accepted messages in a Redis Stream with a consumer group, so
//! several otpgw nodes can share one Redis and a message always has one owning node.
//!
//! On a Redis Cluster the keys below are spread over partitions, each a hash tag
//! `{P:k}` (a message in partition `id % n`; [`keys`] says which key goes where),
//! and everything below happens per partition: each has its stream and consumer
//! group, the writer sends each batch as one pipeline per shard (the partitions
//! it serves; all at once; the batch fails if one does), recovery, claims and the look-up of doubtful
//! accepts go partition by partition. A node takes over a dead node's work per
//! partition, each step one script in that partition's slot.
//!
//! Keys, under a configurable prefix `P`:
//! - `P:msgs`: the stream; each entry holds one accepted message (`rec`, the binary
//!   record of [`crate::record`]). Consumer group `otpgw`; each node is a consumer
//!   named by its node id. Accepting is one Lua script that `XADD`s the entry and at
//!   once `XREADGROUP`s it for this node, so the entry sits in this node's pending
//!   list (PEL) from the moment it exists. A finished message is `XACK`ed and
//!   `XDEL`eted.
//! - `P:state`: hash, message id -> carrier state (sent mark, or carrier and the
//!   carrier's message id).
//! - `P:receipts:NODE`: hash, message id -> receipt owed to a brand, until the brand
//!   acknowledged it.
//!
//! Durability is Redis's: a write is acknowledged to the brand after Redis answered
//! the script, so with `appendonly yes` and `appendfsync always` an acknowledged
//! message is on Redis's disk. At open the store asks Redis for `appendfsync` and
//! logs an error when it is not `always` (or cannot be read).
//!
//! Writes go through one task that pipelines everything queued (up to `batch_max`)
//! into one round trip, like the embedded store's group commit. When Redis is
//! unreachable every write of the batch fails: accepts resolve to
//! [`StoreError::Unavailable`] (the brand gets a temporary error, nothing is
//! acknowledged), the store reports unhealthy (readiness goes false) and a `PING`
//! every second notices when Redis is back. A connection lost while a pipeline was
//! under way may leave some of its accepts written although their brand got an
//! error: before the store is healthy again they are looked up and taken out
//! ([`doubt`]), so that a refusal means the message will not go out.
//!
//! Recovery (`recover`) reads this node's own pending entries (`XREADGROUP ... 0`),
//! their carrier states and this node's owed receipts.
//!
//! The HTTP door's records:
//! - `P:kv:KEY`: hash `v` (version) and `d` (value), expiring at the record's expiry
//!   (`PEXPIREAT`); a compare-and-set is one Lua script, so two nodes never both
//!   win. An accept with an idempotency key writes the key in the accept script
//!   itself (the key exists: nothing is added, the first value is returned).
//! - `P:tally:KEY`: the fraud guard's shared counts ([`tally`]).
//! - `P:st:ID`: a message's status, from its acceptance (any node answers status
//!   queries) to `status_keep` after its final state.
//! - `P:cnt:KEY`: counters with an expiry (`INCR`, `PEXPIRE` on the first).
//!
//! Several nodes:
//! - Each node renews `P:alive:NODE` (a key with an expiry, `lease`) every third of
//!   the lease. `claim_orphans` (only once this node's own renewals have succeeded
//!   for a whole lease, see [`nodes::may_claim`]) looks at the group's consumers; for one with
//!   pending messages and no live key, one Lua script (atomic, so two claimers never
//!   both take an entry, and a node that came back first keeps its own) moves its
//!   pending entries to this node (`XCLAIM`), and another moves the receipts it
//!   owed brands. A restarting node sets its key before it recovers.
//! - Carriers deliver receipts on any bind of the account, so on any node. A receipt
//!   a node cannot match goes to the stream `P:rcpt` (kept `receipt_keep`, trimmed
//!   by `MINID`) before the carrier gets its `deliver_sm_resp`; every node reads it
//!   and offers the entries to its matchers (without parking), where only the
//!   sender's matches. After claiming, a node reads the kept entries again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::redis_store::link::Link;
use dashmap::DashMap;
use otpgw_core::MsgId;
use otpgw_core::outbox::ReceiptJob;
use otpgw_core::status::MessageStatus;
use otpgw_core::store::{Recovered, StoreError, StoreFuture, Versioned};
use tokio::sync::mpsc;

use crate::codec::Codec;
use crate::durable::{Backend, Durable};
use crate::record::SendState;
use crate::writer::WriteQueue;

mod doubt;
mod keys;
pub mod link;
mod nodes;
mod pipeline;
mod rekey;
mod scripts;
mod tally;
mod writer;

use nodes::{
    classify, entries_of, heartbeat, messages_of, read_inbox, read_published, renew_lease,
};
use scripts::{COUNT_LUA, NODE_NUMBER_LUA};
use writer::writer;

/// Consumer group every node reads the stream with.
pub use rekey::rekey;

pub const GROUP: &str = "otpgw";

/// The first message id of node number `node` starting at `now_us`: the number in
/// the top byte, the microsecond clock below it (56 bits last until the year 4253).
pub fn id_start(node: u8, now_us: u64) -> u64 {
    (u64::from(node) << 56) | (now_us & ((1 << 56) - 1))
}

/// Where and how.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// The record codec (encryption at rest); plain by default.
    pub codec: Arc<Codec>,
    /// Replicas that must confirm a batch (`WAIT`) before its accepts are
    /// acknowledged (0: none, Redis's asynchronous replication).
    pub min_replicas: u32,
    /// How long a batch waits for them; fewer in time: its accepts are refused
    /// and taken out again (see [`doubt`]).
    pub replica_timeout: Duration,
    /// `redis://host:port/db` (or `rediss://` with TLS support compiled in);
    /// not used when `sentinels` is set.
    pub url: String,
    /// The primary as Redis Sentinels name it, followed across failovers.
    pub sentinels: Option<link::Sentinels>,
    /// A Redis Cluster (instead of `url` and `sentinels`): the messages spread over
    /// `partitions` hash tags ([`keys`]).
    pub cluster: Option<link::Cluster>,
    /// Partitions on a Cluster (each a hash tag, so a slot: more partitions than
    /// shards spread them evenly). Ignored on one Redis.
    pub partitions: u16,
    /// Key prefix, so several gateways can share one Redis.
    pub prefix: String,
    /// This node's id: its consumer name in the group. Must stay the same across
    /// restarts of the node (its pending messages are found by it).
    pub node: String,
    /// Most writes in one pipeline.
    pub batch_max: usize,
    /// Accepts waiting for Redis beyond which brands get a temporary error.
    pub max_pending_accepts: usize,
    /// How long a connection attempt or a command may take.
    pub timeout: Duration,
    /// A node whose alive key is older than this is dead: others claim its work.
    pub lease: Duration,
    /// Published receipts are kept this long for the node that sent their message.
    pub receipt_keep: Duration,
    /// Final statuses of HTTP messages are kept this long.
    pub status_keep: Duration,
}

impl RedisConfig {
    /// Defaults: batches of 1,000, 50,000 pending accepts, 2 s timeout.
    pub fn new(url: &str, prefix: &str, node: &str) -> Self {
        Self {
            url: url.into(),
            prefix: prefix.into(),
            node: node.into(),
            batch_max: 1000,
            max_pending_accepts: 50_000,
            timeout: Duration::from_secs(2),
            lease: Duration::from_secs(5),
            receipt_keep: Duration::from_secs(600),
            status_keep: Duration::from_secs(3600),
            codec: Arc::new(Codec::plain()),
            min_replicas: 0,
            replica_timeout: Duration::from_millis(200),
            sentinels: None,
            cluster: None,
            partitions: 16,
        }
    }

    /// Where Redis is: the Sentinels' primary, else the URL.
    pub fn target(&self) -> link::Target<'_> {
        match (&self.cluster, &self.sentinels) {
            (Some(c), _) => link::Target::Cluster(c),
            (None, Some(s)) => link::Target::Sentinels(s),
            (None, None) => link::Target::Url(&self.url),
        }
    }
}

/// The Redis backend: connections, this node's stream entries, what readers and
/// the other nodes' work need.
pub struct Redis {
    cfg: RedisConfig,
    codec: Arc<Codec>,
    /// Stream entry id of each accepted, unfinished message of this node.
    entries: Arc<DashMap<u64, String>>,
    healthy: Arc<AtomicBool>,
    node_number: u8,
    /// For claims.
    conn: Link,
    foreign: parking_lot::Mutex<Option<mpsc::Receiver<otpgw_core::store::ForeignReceipt>>>,
    rescan: Arc<AtomicBool>,
    /// Receiver sessions per brand on this node.
    receivers: Arc<DashMap<String, usize>>,
    handed: parking_lot::Mutex<Option<mpsc::Receiver<ReceiptJob>>>,
    /// Since when this node's lease renewals all succeeded (ms; 0: failing).
    renewed_since: Arc<AtomicU64>,
}

/// The Redis store (see the module docs).
pub type RedisStore = Durable<Redis>;

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.cfg.prefix)
            .field("node", &self.cfg.node)
            .finish_non_exhaustive()
    }
}

pub(crate) fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl Durable<Redis> {
    /// Connect, create the consumer group if missing, check Redis's fsync setting
    /// and start the writer task. Fails when Redis cannot be reached.
    pub async fn open(cfg: RedisConfig) -> Result<Self, StoreError> {
        let codec = cfg.codec.clone();
        if cfg.node.is_empty() || cfg.prefix.is_empty() {
            return Err(StoreError::Unavailable(
                "redis store needs a node id and a key prefix".into(),
            ));
        }
        let mut conn = link::connect(cfg.target(), cfg.timeout).await?;
        same_partitions(&mut conn, &cfg).await?;
        ensure_groups(&mut conn, &cfg).await?;
        check_fsync(&mut conn).await;
        let (nodes, seq) = cfg.node_numbers();
        let n: i64 = redis::Script::new(NODE_NUMBER_LUA)
            .key(nodes)
            .key(seq)
            .arg(&cfg.node)
            .invoke_async(&mut conn)
            .await
            .map_err(err)?;
        let node_number = u8::try_from(n).map_err(|_| {
            err(format!(
                "node number {n}: at most 255 node ids can be registered under prefix {} (see the hash {}:nodes)",
                cfg.prefix, cfg.prefix
            ))
        })?;
        // Alive before anything else: a claimer must not take what we recover.
        renew_lease(&mut conn, &cfg).await.map_err(err)?;
        let receivers: Arc<DashMap<String, usize>> = Arc::new(DashMap::new());
        let renewed_since = Arc::new(AtomicU64::new(otpgw_core::clock::now_ms()));
        tokio::spawn(heartbeat(
            cfg.clone(),
            conn.clone(),
            receivers.clone(),
            renewed_since.clone(),
        ));
        ensure_group(&mut conn, &cfg.inbox(&cfg.node)).await?;
        let (htx, hrx) = mpsc::channel(10_000);
        tokio::spawn(read_inbox(cfg.clone(), conn.clone(), htx, codec.clone()));
        let (ftx, frx) = mpsc::channel(10_000);
        let rescan = Arc::new(AtomicBool::new(false));
        tokio::spawn(read_published(
            cfg.clone(),
            conn.clone(),
            ftx,
            rescan.clone(),
        ));
        let (queue, writes) =
            WriteQueue::new(cfg.max_pending_accepts, "redis write failed", codec.clone());
        let entries = Arc::new(DashMap::new());
        let healthy = Arc::new(AtomicBool::new(true));
        tokio::spawn(writer(
            cfg.clone(),
            conn.clone(),
            writes,
            entries.clone(),
            healthy.clone(),
            codec.clone(),
        ));
        Ok(Durable {
            queue,
            backend: Redis {
                cfg,
                codec,
                entries,
                healthy,
                node_number,
                conn,
                foreign: parking_lot::Mutex::new(Some(frx)),
                rescan,
                receivers,
                handed: parking_lot::Mutex::new(Some(hrx)),
                renewed_since,
            },
        })
    }

    /// The store's link to Redis, for the node's other Redis users.
    pub fn link(&self) -> Link {
        self.backend.conn.clone()
    }

    /// This node's number under the prefix (1 for the first node id registered).
    pub fn node_number(&self) -> u8 {
        self.backend.node_number
    }
}

/// On a Cluster, the number of partitions is kept under the prefix by the first
/// node; a node configured with another refuses to start (its messages would be
/// looked for in the wrong partitions).
async fn same_partitions(conn: &mut Link, cfg: &RedisConfig) -> Result<(), StoreError> {
    if cfg.cluster.is_none() {
        return Ok(());
    }
    let key = cfg.partitions_key();
    let (kept,): (u16,) = redis::pipe()
        .cmd("SET")
        .arg(&key)
        .arg(cfg.parts())
        .arg("NX")
        .ignore()
        .cmd("GET")
        .arg(&key)
        .query_async(conn)
        .await
        .map_err(err)?;
    if kept == cfg.parts() {
        Ok(())
    } else {
        Err(err(format!(
            "redis_partitions = {} but the nodes under prefix {} use {kept} ({key}): set it to {kept}",
            cfg.parts(),
            cfg.prefix
        )))
    }
}

/// Create the consumer group of every partition's stream unless it exists.
pub(super) async fn ensure_groups(conn: &mut Link, cfg: &RedisConfig) -> Result<(), StoreError> {
    for k in cfg.all_parts() {
        ensure_group(conn, &cfg.stream(k)).await?;
    }
    Ok(())
}

/// Create the consumer group of stream `key` (and the stream) unless it exists.
pub(super) async fn ensure_group(conn: &mut Link, key: &str) -> Result<(), StoreError> {
    let r: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(key)
        .arg(GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match r {
        Ok(()) => Ok(()),
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        Err(e) => Err(err(e)),
    }
}

/// Log an error when Redis does not fsync every write.
async fn check_fsync(conn: &mut Link) {
    let r: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendfsync")
        .query_async(conn)
        .await;
    let aof: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendonly")
        .query_async(conn)
        .await;
    match (r, aof) {
        (Ok(f), Ok(a))
            if f.get(1).map(String::as_str) == Some("always")
                && a.get(1).map(String::as_str) == Some("yes") => {}
        (Ok(f), Ok(a)) => tracing::error!(
            appendonly = a.get(1).map(String::as_str).unwrap_or("?"),
            appendfsync = f.get(1).map(String::as_str).unwrap_or("?"),
            "redis is not configured to fsync every write (appendonly yes, appendfsync always): acknowledged messages can be lost if redis crashes"
        ),
        _ => tracing::error!(
            "cannot read redis's appendfsync setting (CONFIG GET refused?): make sure it is appendonly yes, appendfsync always"
        ),
    }
}

impl Backend for Redis {
    /// Refuse at once while Redis is known unreachable (brands get a temporary
    /// error instead of waiting for a pipeline that cannot go).
    fn ready(&self) -> Result<(), StoreError> {
        if self.healthy.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err(StoreError::Unavailable("redis unreachable".into()))
        }
    }

    /// Any node answers status queries for messages in flight on another.
    fn keeps_statuses_in_flight(&self) -> bool {
        true
    }

    fn message_status(&self, id: MsgId) -> StoreFuture<'_, Option<MessageStatus>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let k = self.cfg.part_of(id.0);
            let rec: Option<Vec<u8>> = redis::cmd("GET")
                .arg(self.cfg.status(id.0))
                .query_async(&mut conn)
                .await
                .map_err(err)?;
            let mut st = rec.as_deref().and_then(|r| self.codec.read_status(r));
            // In flight on some node: the carrier it went to, once confirmed.
            if let Some(s) = st.as_mut()
                && s.done_ms == 0
            {
                let cs: Option<Vec<u8>> = redis::cmd("HGET")
                    .arg(self.cfg.state(k))
                    .arg(id.0)
                    .query_async(&mut conn)
                    .await
                    .map_err(err)?;
                if let Some(SendState::Confirmed { carrier, .. }) =
                    cs.as_deref().and_then(|c| self.codec.read_state(id.0, c))
                {
                    s.stage = otpgw_core::status::Stage::Sent;
                    s.carrier = Some(carrier);
                }
            }
            Ok(st)
        })
    }

    fn kv_get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Versioned>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let (v, d): (Option<u64>, Option<Vec<u8>>) = redis::cmd("HMGET")
                .arg(self.cfg.kv(key))
                .arg("v")
                .arg("d")
                .query_async(&mut conn)
                .await
                .map_err(err)?;
            Ok(match (v, d) {
                (Some(version), Some(kept)) => Some(Versioned {
                    version,
                    value: self.codec.read_value(key, &kept)?,
                }),
                _ => None,
            })
        })
    }

    fn count<'a>(
        &'a self,
        key: &'a str,
        window_ms: u64,
        _now_ms: u64,
    ) -> StoreFuture<'a, otpgw_core::WindowCount> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let (count, ttl): (u64, i64) = redis::Script::new(COUNT_LUA)
                .key(self.cfg.counter(key))
                .arg(window_ms.max(1))
                .invoke_async(&mut conn)
                .await
                .map_err(err)?;
            Ok(otpgw_core::WindowCount {
                count,
                resets_in_ms: u64::try_from(ttl).unwrap_or(window_ms),
            })
        })
    }

    fn check_once(&self, msg: MsgId, key: &str) -> Result<(), StoreError> {
        if self.cfg.part_of(msg.0) == self.cfg.part_of_key(key) {
            Ok(())
        } else {
            Err(StoreError::Unavailable(format!(
                "message {msg} is not in the partition of its idempotency key"
            )))
        }
    }

    fn recover(&self, _now_ms: u64) -> Result<Recovered, StoreError> {
        let mut c = self
            .conn
            .blocking(self.cfg.timeout, Duration::from_secs(30))?;
        let c = c.as_mut();
        let mut out = Recovered::default();
        for k in self.cfg.all_parts() {
            self.recover_part(c, k, &mut out)?;
        }
        out.receipts.sort_by_key(|j| j.done_ms);
        Ok(out)
    }

    fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    fn name(&self) -> &'static str {
        "redis"
    }
}

impl Redis {
    /// This node's pending entries of partition `k`, their carrier states, and
    /// the receipts it owes there.
    fn recover_part(
        &self,
        c: &mut dyn redis::ConnectionLike,
        k: u16,
        out: &mut Recovered,
    ) -> Result<(), StoreError> {
        let stream = self.cfg.stream(k);
        let mut after = "0-0".to_string();
        loop {
            // This node's pending entries, oldest first, 1,000 at a time.
            let reply: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(GROUP)
                .arg(&self.cfg.node)
                .arg("COUNT")
                .arg(1000)
                .arg("STREAMS")
                .arg(&stream)
                .arg(&after)
                .query(c)
                .map_err(err)?;
            let ids = entries_of(reply);
            let Some(last) = ids.last() else { break };
            after = last.id.clone();
            let msgs = messages_of(&ids, &self.entries, &self.codec);
            if msgs.is_empty() {
                continue;
            }
            let states: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
                .arg(self.cfg.state(k))
                .arg(msgs.iter().map(|m| m.id.0).collect::<Vec<_>>())
                .query(c)
                .map_err(err)?;
            classify(msgs, states, out, &self.codec);
        }
        let owed: Vec<Vec<u8>> = redis::cmd("HVALS")
            .arg(self.cfg.receipts(k))
            .query(c)
            .map_err(err)?;
        out.receipts
            .extend(owed.iter().filter_map(|v| self.codec.read_receipt(v)));
        Ok(())
    }
}
