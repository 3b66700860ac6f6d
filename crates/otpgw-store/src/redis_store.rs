//! The Redis backend: accepted messages in a Redis Stream with a consumer group, so
//! several otpgw nodes can share one Redis and a message always has one owning node.
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
//! error: the brand sends again and the message can go out twice (at-least-once,
//! never lost).
//!
//! Recovery (`recover`) reads this node's own pending entries (`XREADGROUP ... 0`),
//! their carrier states and this node's owed receipts.
//!
//! The HTTP door's records:
//! - `P:kv:KEY`: hash `v` (version) and `d` (value), expiring at the record's expiry
//!   (`PEXPIREAT`); a compare-and-set is one Lua script, so two nodes never both
//!   win. An accept with an idempotency key writes the key in the accept script
//!   itself (the key exists: nothing is added, the first value is returned).
//! - `P:st:ID`: a message's status, from its acceptance (any node answers status
//!   queries) to `status_keep` after its final state.
//! - `P:cnt:KEY`: counters with an expiry (`INCR`, `PEXPIRE` on the first).
//!
//! Several nodes:
//! - Each node renews `P:alive:NODE` (a key with an expiry, `lease`) every third of
//!   the lease. `claim_orphans` looks at the group's consumers; for one with
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
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use otpgw_core::outbox::ReceiptJob;
use otpgw_core::status::MessageStatus;
use otpgw_core::store::{Once, Recovered, Store, StoreError, StoreFuture, Ticket, Versioned};
use otpgw_core::{DeliveryState, Message, MsgId};
use redis::aio::ConnectionManager;
use tokio::sync::mpsc;

use crate::record::{self, CarrierState};
use crate::writes::{self, Op};

/// Consumer group every node reads the stream with.
pub const GROUP: &str = "otpgw";

/// Registers a node id under the prefix once and returns its number (1, 2, ...).
const NODE_NUMBER_LUA: &str = r"
local n = redis.call('HGET', KEYS[1], ARGV[1])
if not n then
  n = redis.call('INCR', KEYS[2])
  redis.call('HSET', KEYS[1], ARGV[1], n)
end
return tonumber(n)
";

/// The first message id of node number `node` starting at `now_us`: the number in
/// the top byte, the microsecond clock below it (56 bits last until the year 4253).
pub fn id_start(node: u8, now_us: u64) -> u64 {
    (u64::from(node) << 56) | (now_us & ((1 << 56) - 1))
}

/// Move a dead consumer's pending entries to this node, unless it is alive again.
/// KEYS: stream, the consumer's alive key. ARGV: group, consumer, me, count.
const CLAIM_LUA: &str = r"
if redis.call('EXISTS', KEYS[2]) == 1 then return {} end
local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', tonumber(ARGV[4]), ARGV[2])
if #p == 0 then return {} end
local ids = {}
for i, e in ipairs(p) do ids[i] = e[1] end
local got = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, unpack(ids))
if #got == 0 then
  -- Every entry listed was deleted already (finished): drop them from the PEL.
  redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
end
return got
";

/// Move what a dead node owed brands to this node's owed receipts: its receipts
/// hash and the receipts handed to it (its inbox, read or not). KEYS: its alive key,
/// its receipts hash, its inbox, my receipts hash. Returns the moved records.
const CLAIM_RECEIPTS_LUA: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return {} end
local out = {}
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  redis.call('HSET', KEYS[4], all[i], all[i + 1])
  out[#out + 1] = all[i + 1]
end
for _, e in ipairs(redis.call('XRANGE', KEYS[3], '-', '+')) do
  local f = e[2]
  local id, rec = nil, nil
  for k = 1, #f, 2 do
    if f[k] == 'id' then id = f[k + 1] elseif f[k] == 'rec' then rec = f[k + 1] end
  end
  if id and rec then
    redis.call('HSET', KEYS[4], id, rec)
    out[#out + 1] = rec
  end
end
redis.call('DEL', KEYS[2], KEYS[3])
return out
";

/// KEYS: stream[, idempotency record]. ARGV: record, group, node[, value,
/// expires_ms]. Returns the entry id, or {'dup', value} when the idempotency record
/// exists (nothing added).
const ACCEPT_LUA: &str = r"
if #KEYS > 1 then
  if redis.call('EXISTS', KEYS[2]) == 1 then
    return {'dup', redis.call('HGET', KEYS[2], 'd')}
  end
  redis.call('HSET', KEYS[2], 'v', 1, 'd', ARGV[4])
  redis.call('PEXPIREAT', KEYS[2], ARGV[5])
end
local e = redis.call('XADD', KEYS[1], '*', 'rec', ARGV[1])
redis.call('XREADGROUP', 'GROUP', ARGV[2], ARGV[3], 'COUNT', '1', 'STREAMS', KEYS[1], '>')
return e
";

/// Compare and set. KEYS: the record. ARGV: expected version, value, expires_ms.
/// Returns the new version, or -1 when the version differs.
const KV_LUA: &str = r"
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if v ~= tonumber(ARGV[1]) then return -1 end
v = v + 1
redis.call('HSET', KEYS[1], 'v', v, 'd', ARGV[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return v
";

/// KEYS: the counter. ARGV: window_ms. Returns the count.
const COUNT_LUA: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
";

/// Where and how.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://host:port/db` (or `rediss://` with TLS support compiled in).
    pub url: String,
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
        }
    }
    fn kv(&self, key: &str) -> String {
        format!("{}:kv:{key}", self.prefix)
    }
    fn status(&self, id: u64) -> String {
        format!("{}:st:{id}", self.prefix)
    }
    fn counter(&self, key: &str) -> String {
        format!("{}:cnt:{key}", self.prefix)
    }
    fn alive(&self, node: &str) -> String {
        format!("{}:alive:{node}", self.prefix)
    }
    fn receipts_of(&self, node: &str) -> String {
        format!("{}:receipts:{node}", self.prefix)
    }
    fn rcpt(&self) -> String {
        format!("{}:rcpt", self.prefix)
    }
    fn inbox(&self, node: &str) -> String {
        format!("{}:inbox:{node}", self.prefix)
    }
    fn bound(&self, brand: &str) -> String {
        format!("{}:bound:{brand}", self.prefix)
    }
    fn stream(&self) -> String {
        format!("{}:msgs", self.prefix)
    }
    fn state(&self) -> String {
        format!("{}:state", self.prefix)
    }
    fn receipts(&self) -> String {
        format!("{}:receipts:{}", self.prefix, self.node)
    }
}

/// The Redis store (see the module docs).
pub struct RedisStore {
    cfg: RedisConfig,
    client: redis::Client,
    tx: mpsc::UnboundedSender<Op>,
    /// Stream entry id of each accepted, unfinished message of this node.
    entries: Arc<DashMap<u64, String>>,
    pending_accepts: Arc<AtomicUsize>,
    healthy: Arc<AtomicBool>,
    node_number: u8,
    /// For claims.
    conn: ConnectionManager,
    foreign: parking_lot::Mutex<Option<mpsc::Receiver<otpgw_core::store::ForeignReceipt>>>,
    rescan: Arc<AtomicBool>,
    /// Receiver sessions per brand on this node.
    receivers: Arc<DashMap<String, usize>>,
    handed: parking_lot::Mutex<Option<mpsc::Receiver<ReceiptJob>>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.cfg.prefix)
            .field("node", &self.cfg.node)
            .finish_non_exhaustive()
    }
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// A connection that reconnects by itself; every command (and each connection
/// attempt) gives up after `timeout`.
pub(crate) async fn connect(
    url: &str,
    timeout: Duration,
) -> Result<(redis::Client, ConnectionManager), String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let cfg = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(timeout)
        .set_response_timeout(timeout)
        .set_number_of_retries(1);
    let conn = tokio::time::timeout(
        timeout,
        ConnectionManager::new_with_config(client.clone(), cfg),
    )
    .await
    .map_err(|_| "connecting to redis timed out".to_string())?
    .map_err(|e| e.to_string())?;
    Ok((client, conn))
}

impl RedisStore {
    /// Connect, create the consumer group if missing, check Redis's fsync setting
    /// and start the writer task. Fails when Redis cannot be reached.
    pub async fn open(cfg: RedisConfig) -> Result<Self, StoreError> {
        if cfg.node.is_empty() || cfg.prefix.is_empty() {
            return Err(StoreError::Unavailable(
                "redis store needs a node id and a key prefix".into(),
            ));
        }
        let (client, mut conn) = connect(&cfg.url, cfg.timeout).await.map_err(err)?;
        ensure_group(&mut conn, &cfg.stream()).await?;
        check_fsync(&mut conn).await;
        let n: i64 = redis::Script::new(NODE_NUMBER_LUA)
            .key(format!("{}:nodes", cfg.prefix))
            .key(format!("{}:node_seq", cfg.prefix))
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
        tokio::spawn(heartbeat(cfg.clone(), conn.clone(), receivers.clone()));
        ensure_group(&mut conn, &cfg.inbox(&cfg.node)).await?;
        let (htx, hrx) = mpsc::channel(10_000);
        tokio::spawn(read_inbox(cfg.clone(), conn.clone(), htx));
        let (ftx, frx) = mpsc::channel(10_000);
        let rescan = Arc::new(AtomicBool::new(false));
        tokio::spawn(read_published(
            cfg.clone(),
            conn.clone(),
            ftx,
            rescan.clone(),
        ));
        let (tx, rx) = mpsc::unbounded_channel();
        let entries = Arc::new(DashMap::new());
        let pending = Arc::new(AtomicUsize::new(0));
        let healthy = Arc::new(AtomicBool::new(true));
        tokio::spawn(writer(
            cfg.clone(),
            conn.clone(),
            rx,
            entries.clone(),
            pending.clone(),
            healthy.clone(),
        ));
        Ok(Self {
            cfg,
            client,
            tx,
            entries,
            pending_accepts: pending,
            healthy,
            node_number,
            conn,
            foreign: parking_lot::Mutex::new(Some(frx)),
            rescan,
            receivers,
            handed: parking_lot::Mutex::new(Some(hrx)),
        })
    }
}

/// Create the consumer group of stream `key` (and the stream) unless it exists.
async fn ensure_group(conn: &mut ConnectionManager, key: &str) -> Result<(), StoreError> {
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
async fn check_fsync(conn: &mut ConnectionManager) {
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

/// Pipelines in flight at once. Redis runs the commands of one connection in the
/// order they were sent, so later pipelines never overtake earlier ones; having
/// several in flight hides the round trip (and Redis's fsync) behind the next batch.
const PIPELINES_IN_FLIGHT: usize = 4;

/// A batch under way: its writes, the stream entries its finished messages took out
/// of the entry map (put back if the pipeline fails), the pipeline's answer, and
/// whether it went alone (see [`writer`]).
type Flight = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = (
                    Vec<Op>,
                    Vec<(u64, String)>,
                    redis::RedisResult<Vec<redis::Value>>,
                    bool,
                ),
            > + Send,
    >,
>;

async fn writer(
    cfg: RedisConfig,
    mut conn: ConnectionManager,
    mut rx: mpsc::UnboundedReceiver<Op>,
    entries: Arc<DashMap<u64, String>>,
    pending: Arc<AtomicUsize>,
    healthy: Arc<AtomicBool>,
) {
    use futures_util::StreamExt;
    let script = Scripts {
        accept: redis::Script::new(ACCEPT_LUA),
        kv: redis::Script::new(KV_LUA),
    };
    let mut flights: futures_util::stream::FuturesOrdered<Flight> = Default::default();
    let mut closed = false;
    // After a failed pipeline its writes (and those of the pipelines that were
    // already under way behind it) are written again, in order, before anything
    // newer: one pipeline at a time until that backlog is gone.
    let mut backlog = writes::Backlog::default();
    let mut recovering = false;
    loop {
        let serial = recovering || !backlog.is_empty();
        if closed && flights.is_empty() && (backlog.is_empty() || !healthy.load(Ordering::Relaxed))
        {
            return;
        }
        let room = if serial {
            flights.is_empty()
        } else {
            flights.len() < PIPELINES_IN_FLIGHT
        };
        tokio::select! {
            op = rx.recv(), if !closed && room => {
                let mut batch = Vec::with_capacity(64);
                match op {
                    None => {
                        closed = true;
                        continue;
                    }
                    Some(first) if serial => {
                        backlog.push(first);
                        backlog.take(cfg.batch_max, &mut batch);
                    }
                    Some(first) => batch.push(first),
                }
                if backlog.is_empty() {
                    while batch.len() < cfg.batch_max {
                        match rx.try_recv() {
                            Ok(op) => batch.push(op),
                            Err(_) => break,
                        }
                    }
                }
                flights.push_back(launch(&cfg, &script, batch, &entries, &conn, serial));
            }
            Some((batch, taken, res, alone)) = flights.next(), if !flights.is_empty() => {
                let ok = res.is_ok();
                if let Err(e) = &res {
                    writes::log_failed("redis write failed", e, batch.len());
                    metrics::counter!("otpgw_store_write_failures_total").increment(1);
                }
                healthy.store(ok, Ordering::Relaxed);
                if alone {
                    // The oldest writes there are: in front of the backlog again.
                    if !ok {
                        backlog.keep_failed(&batch);
                    }
                } else if !ok || recovering {
                    // Behind the failure, in the order they were sent.
                    recovering = true;
                    backlog.keep_behind(&batch);
                }
                if flights.is_empty() {
                    recovering = false;
                }
                metrics::gauge!("otpgw_store_backlog_writes").set(backlog.len() as f64);
                complete(batch, taken, res, &entries, &pending);
            }
            () = tokio::time::sleep(if backlog.is_empty() { Duration::from_secs(1) } else { writes::Backlog::RETRY_EVERY }),
                if flights.is_empty() =>
            {
                // Idle: find out whether Redis is (still) there; write the backlog
                // once it is.
                let ok = redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok();
                if ok && !healthy.load(Ordering::Relaxed) {
                    let _ = ensure_group(&mut conn, &cfg.stream()).await;
                }
                healthy.store(ok, Ordering::Relaxed);
                if ok && !backlog.is_empty() {
                    let mut batch = Vec::new();
                    backlog.take(cfg.batch_max, &mut batch);
                    flights.push_back(launch(&cfg, &script, batch, &entries, &conn, true));
                }
            }
        }
    }
}

/// Send one batch as a pipeline.
fn launch(
    cfg: &RedisConfig,
    script: &Scripts,
    batch: Vec<Op>,
    entries: &DashMap<u64, String>,
    conn: &ConnectionManager,
    alone: bool,
) -> Flight {
    let (pipe, taken) = build(cfg, script, &batch, entries);
    let (mut c, script) = (conn.clone(), script.clone());
    Box::pin(async move {
        let mut res: redis::RedisResult<Vec<redis::Value>> = pipe.query_async(&mut c).await;
        if matches!(&res, Err(e) if e.kind() == redis::ErrorKind::NoScriptError) {
            // Redis restarted (its script cache is empty): load and send again.
            if script
                .accept
                .prepare_invoke()
                .load_async(&mut c)
                .await
                .is_ok()
                && script.kv.prepare_invoke().load_async(&mut c).await.is_ok()
            {
                res = pipe.query_async(&mut c).await;
            }
        }
        (batch, taken, res, alone)
    })
}

/// The scripts the writer runs (loaded again after Redis restarted).
#[derive(Clone)]
struct Scripts {
    accept: redis::Script,
    kv: redis::Script,
}

/// One pipeline for a batch of writes, and the stream entries of the messages it
/// finishes (taken out of `entries`).
fn build(
    cfg: &RedisConfig,
    script: &Scripts,
    batch: &[Op],
    entries: &DashMap<u64, String>,
) -> (redis::Pipeline, Vec<(u64, String)>) {
    let (stream, state, receipts) = (cfg.stream(), cfg.state(), cfg.receipts());
    let mut pipe = redis::pipe();
    let mut taken = Vec::new();
    for op in batch {
        match op {
            Op::Accept { rec, once, .. } => {
                let c = pipe.cmd("EVALSHA").arg(script.accept.get_hash());
                match once {
                    None => c.arg(1).arg(&stream),
                    Some(o) => c.arg(2).arg(&stream).arg(cfg.kv(&o.0)),
                };
                c.arg(rec.as_slice()).arg(GROUP).arg(&cfg.node);
                if let Some(o) = once {
                    c.arg(o.1.as_slice()).arg(o.2);
                }
            }
            Op::Kv {
                kv,
                expect,
                expires_ms,
                ..
            } => {
                pipe.cmd("EVALSHA")
                    .arg(script.kv.get_hash())
                    .arg(1)
                    .arg(cfg.kv(&kv.0))
                    .arg(*expect)
                    .arg(kv.1.as_slice())
                    .arg(*expires_ms);
            }
            Op::Status { id, rec, done_ms } => {
                let keep = if *done_ms > 0 {
                    cfg.status_keep
                } else {
                    // In flight: until its final status replaces it, at the latest
                    // a day after acceptance.
                    Duration::from_secs(86_400)
                };
                pipe.cmd("SET")
                    .arg(cfg.status(*id))
                    .arg(rec.as_slice())
                    .arg("PX")
                    .arg(keep.as_millis() as u64)
                    .ignore();
            }
            Op::Sent(id, _) => {
                pipe.cmd("HSETNX")
                    .arg(&state)
                    .arg(id)
                    .arg(record::encode_state(&CarrierState::Sent))
                    .ignore();
            }
            Op::Confirmed(id, st) | Op::Attempts(id, st, _) => {
                pipe.cmd("HSET")
                    .arg(&state)
                    .arg(id)
                    .arg(st.as_slice())
                    .ignore();
            }
            Op::Owe(id, _, rec) => {
                pipe.cmd("HSET")
                    .arg(&receipts)
                    .arg(id)
                    .arg(rec.as_slice())
                    .ignore();
            }
            Op::Finished { id, receipt, .. } => {
                if let Some((id, e)) = entries.remove(id) {
                    pipe.cmd("XACK").arg(&stream).arg(GROUP).arg(&e).ignore();
                    pipe.cmd("XDEL").arg(&stream).arg(&e).ignore();
                    taken.push((id, e));
                }
                pipe.cmd("HDEL").arg(&state).arg(id).ignore();
                if let Some((_, r)) = receipt {
                    pipe.cmd("HSET")
                        .arg(&receipts)
                        .arg(id)
                        .arg(r.as_slice())
                        .ignore();
                }
            }
            Op::Forwarded(id) => {
                pipe.cmd("HDEL").arg(&receipts).arg(id).ignore();
            }
            Op::Publish { published, .. } => {
                let (carrier, r) = &**published;
                let keep = cfg.receipt_keep.as_millis() as u64;
                let min = otpgw_core::clock::now_ms().saturating_sub(keep);
                pipe.cmd("XADD")
                    .arg(cfg.rcpt())
                    .arg("MINID")
                    .arg("~")
                    .arg(min)
                    .arg("*")
                    .arg("o")
                    .arg(&cfg.node)
                    .arg("c")
                    .arg(carrier)
                    .arg("i")
                    .arg(&r.id)
                    .arg("s")
                    .arg(r.state.tlv())
                    .arg("e")
                    .arg(r.err.as_deref().unwrap_or(""))
                    .ignore();
            }
            Op::Flush(_) | Op::Stop => {}
        }
    }
    (pipe, taken)
}

/// Resolve a batch's waiters with its pipeline's outcome.
fn complete(
    batch: Vec<Op>,
    taken: Vec<(u64, String)>,
    res: redis::RedisResult<Vec<redis::Value>>,
    entries: &DashMap<u64, String>,
    pending: &AtomicUsize,
) {
    let ok = res.is_ok();
    if !ok {
        // Not finished in Redis: their entries are still pending there.
        for (id, e) in taken {
            entries.insert(id, e);
        }
    }
    let mut ids = res.ok().map(Vec::into_iter);
    for op in batch {
        match op {
            Op::Accept { id, done, .. } => {
                pending.fetch_sub(1, Ordering::Relaxed);
                let answer = ids.as_mut().and_then(Iterator::next);
                let once = match answer {
                    Some(redis::Value::Array(a)) => Some(Once::Duplicate(
                        a.get(1)
                            .and_then(|v| redis::from_redis_value::<Vec<u8>>(v).ok())
                            .unwrap_or_default(),
                    )),
                    Some(v) => redis::from_redis_value::<String>(&v).ok().map(|e| {
                        entries.insert(id, e);
                        Once::Accepted
                    }),
                    None => None,
                };
                let _ = done.send(once);
            }
            Op::Kv { done, .. } => {
                let v = ids
                    .as_mut()
                    .and_then(Iterator::next)
                    .and_then(|v| redis::from_redis_value::<i64>(&v).ok())
                    .map(|n| u64::try_from(n).ok());
                let _ = done.send(v);
            }
            Op::Sent(_, done)
            | Op::Flush(done)
            | Op::Publish { done, .. }
            | Op::Attempts(_, _, done)
            | Op::Finished { done, .. } => {
                let _ = done.send(ok);
            }
            Op::Confirmed(..) | Op::Forwarded(_) | Op::Status { .. } | Op::Owe(..) | Op::Stop => {}
        }
    }
}

impl RedisStore {
    /// Refuse at once while Redis is known unreachable (brands get a temporary
    /// error instead of waiting for a pipeline that cannot go).
    fn reachable(&self) -> Result<(), StoreError> {
        if self.healthy.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err(StoreError::Unavailable("redis unreachable".into()))
        }
    }

    /// This node's number under the prefix (1 for the first node id registered).
    pub fn node_number(&self) -> u8 {
        self.node_number
    }
}

impl Store for RedisStore {
    fn accept<'a>(&'a self, msg: &'a Message) -> StoreFuture<'a, ()> {
        if let Err(e) = self.reachable() {
            return Box::pin(std::future::ready(Err(e)));
        }
        writes::accept(
            &self.tx,
            &self.pending_accepts,
            self.cfg.max_pending_accepts,
            msg,
            "redis write failed",
        )
    }

    fn submitted(&self, id: MsgId) -> Ticket {
        writes::submitted(&self.tx, id)
    }

    fn carrier_accepted(&self, id: MsgId, carrier: &str, carrier_msg_id: &str) {
        writes::carrier_accepted(&self.tx, id, carrier, carrier_msg_id);
    }

    fn finished(
        &self,
        id: MsgId,
        state: DeliveryState,
        receipt: Option<&ReceiptJob>,
        now_ms: u64,
    ) -> Ticket {
        writes::finished(&self.tx, id, state, receipt, now_ms)
    }

    fn receipt_forwarded(&self, id: MsgId) {
        writes::forwarded(&self.tx, id);
    }

    fn attempts(&self, id: MsgId, list: &[otpgw_core::attempts::Attempt]) -> Ticket {
        writes::attempts(&self.tx, id, list)
    }

    fn owe(&self, job: &ReceiptJob) {
        writes::owe(&self.tx, job);
    }

    fn record_status(&self, status: &MessageStatus) {
        writes::status(&self.tx, status);
    }

    fn message_status(&self, id: MsgId) -> StoreFuture<'_, Option<MessageStatus>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let rec: Option<Vec<u8>> = redis::cmd("GET")
                .arg(self.cfg.status(id.0))
                .query_async(&mut conn)
                .await
                .map_err(err)?;
            let mut st = rec.as_deref().and_then(record::decode_status);
            // In flight on some node: the carrier it went to, once confirmed.
            if let Some(s) = st.as_mut()
                && s.done_ms == 0
            {
                let cs: Option<Vec<u8>> = redis::cmd("HGET")
                    .arg(self.cfg.state())
                    .arg(id.0)
                    .query_async(&mut conn)
                    .await
                    .map_err(err)?;
                if let Some(CarrierState::Confirmed { carrier, .. }) =
                    cs.as_deref().and_then(record::decode_state)
                {
                    s.stage = otpgw_core::status::Stage::Sent;
                    s.carrier = Some(carrier);
                }
            }
            Ok(st)
        })
    }

    fn accept_once<'a>(
        &'a self,
        msg: &'a Message,
        key: &'a str,
        value: Vec<u8>,
        expires_ms: u64,
    ) -> StoreFuture<'a, Once> {
        if let Err(e) = self.reachable() {
            return Box::pin(std::future::ready(Err(e)));
        }
        writes::accept_once(
            &self.tx,
            &self.pending_accepts,
            self.cfg.max_pending_accepts,
            msg,
            Some((key.to_string(), value, expires_ms)),
            "redis write failed",
        )
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
                (Some(version), Some(value)) => Some(Versioned { version, value }),
                _ => None,
            })
        })
    }

    fn kv_put<'a>(
        &'a self,
        key: &'a str,
        expect: u64,
        value: Vec<u8>,
        expires_ms: u64,
    ) -> StoreFuture<'a, Option<u64>> {
        writes::kv_put(
            &self.tx,
            key,
            expect,
            value,
            expires_ms,
            "redis write failed",
        )
    }

    fn count<'a>(&'a self, key: &'a str, window_ms: u64, _now_ms: u64) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let n: u64 = redis::Script::new(COUNT_LUA)
                .key(self.cfg.counter(key))
                .arg(window_ms.max(1))
                .invoke_async(&mut conn)
                .await
                .map_err(err)?;
            Ok(n)
        })
    }

    fn recover(&self, _now_ms: u64) -> Result<Recovered, StoreError> {
        let mut c = self
            .client
            .get_connection_with_timeout(self.cfg.timeout)
            .map_err(err)?;
        let _ = c.set_read_timeout(Some(Duration::from_secs(30)));
        let mut out = Recovered::default();
        let stream = self.cfg.stream();
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
                .query(&mut c)
                .map_err(err)?;
            let ids = entries_of(reply);
            let Some(last) = ids.last() else { break };
            after = last.id.clone();
            let msgs = messages_of(&ids, &self.entries);
            if msgs.is_empty() {
                continue;
            }
            let states: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
                .arg(self.cfg.state())
                .arg(msgs.iter().map(|m| m.id.0).collect::<Vec<_>>())
                .query(&mut c)
                .map_err(err)?;
            classify(msgs, states, &mut out);
        }
        let owed: Vec<Vec<u8>> = redis::cmd("HVALS")
            .arg(self.cfg.receipts())
            .query(&mut c)
            .map_err(err)?;
        out.receipts = owed
            .iter()
            .filter_map(|v| record::decode_receipt(v))
            .collect();
        out.receipts.sort_by_key(|j| j.done_ms);
        Ok(out)
    }

    fn flush(&self) -> Ticket {
        writes::flush(&self.tx)
    }

    fn is_durable(&self) -> bool {
        true
    }

    fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    fn name(&self) -> &'static str {
        "redis"
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn publish_receipt(&self, carrier: &str, r: &otpgw_proto::pdu::CarrierReceipt) -> Ticket {
        writes::publish(&self.tx, carrier, r)
    }

    fn take_foreign_receipts(&self) -> Option<mpsc::Receiver<otpgw_core::store::ForeignReceipt>> {
        self.foreign.lock().take()
    }

    fn rescan_receipts(&self) {
        self.rescan.store(true, Ordering::Relaxed);
    }

    fn brand_receiver(&self, brand: &str, opened: bool) {
        let mut e = self.receivers.entry(brand.to_string()).or_insert(0);
        if opened {
            *e += 1;
        } else {
            *e = e.saturating_sub(1);
        }
    }

    fn brand_bound_here(&self, brand: &str) -> bool {
        self.receivers.get(brand).is_some_and(|n| *n > 0)
    }

    fn hand_over_receipts<'a>(
        &'a self,
        brand: &'a str,
        jobs: &'a [ReceiptJob],
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let now = otpgw_core::clock::now_ms();
            // Nodes whose presence for the brand has not lapsed, this one excepted.
            let nodes: Vec<String> = redis::cmd("ZRANGEBYSCORE")
                .arg(self.cfg.bound(brand))
                .arg(now)
                .arg("+inf")
                .query_async(&mut conn)
                .await
                .map_err(err)?;
            let Some(target) = nodes.into_iter().find(|n| *n != self.cfg.node) else {
                return Ok(false);
            };
            let mut pipe = redis::pipe();
            pipe.atomic();
            for j in jobs {
                pipe.cmd("XADD")
                    .arg(self.cfg.inbox(&target))
                    .arg("*")
                    .arg("id")
                    .arg(j.id.0)
                    .arg("rec")
                    .arg(record::encode_receipt(j))
                    .ignore();
                pipe.cmd("HDEL")
                    .arg(self.cfg.receipts())
                    .arg(j.id.0)
                    .ignore();
            }
            pipe.query_async::<()>(&mut conn).await.map_err(err)?;
            tracing::debug!(%brand, to = %target, receipts = jobs.len(), "receipts handed to the node where the brand is bound");
            Ok(true)
        })
    }

    fn take_handed_receipts(&self) -> Option<mpsc::Receiver<ReceiptJob>> {
        self.handed.lock().take()
    }

    fn claim_orphans(&self, _now_ms: u64) -> StoreFuture<'_, Recovered> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            claim(&self.cfg, &mut conn, &self.entries).await
        })
    }
}

async fn renew_lease(conn: &mut ConnectionManager, cfg: &RedisConfig) -> redis::RedisResult<()> {
    redis::cmd("SET")
        .arg(cfg.alive(&cfg.node))
        .arg(1)
        .arg("PX")
        .arg(cfg.lease.as_millis() as u64)
        .query_async(conn)
        .await
}

/// Renew this node's alive key every third of the lease, and its presence in the
/// sets of nodes where each brand has a receiver bound (`P:bound:BRAND`, scored by
/// when the presence lapses).
async fn heartbeat(
    cfg: RedisConfig,
    mut conn: ConnectionManager,
    receivers: Arc<DashMap<String, usize>>,
) {
    let mut tick = tokio::time::interval(cfg.lease / 3);
    loop {
        tick.tick().await;
        if let Err(e) = renew_lease(&mut conn, &cfg).await {
            tracing::warn!(error = %e, "cannot renew this node's lease in redis");
        }
        let until = otpgw_core::clock::now_ms() + cfg.lease.as_millis() as u64;
        let mut pipe = redis::pipe();
        for e in receivers.iter() {
            if *e.value() > 0 {
                pipe.cmd("ZADD")
                    .arg(cfg.bound(e.key()))
                    .arg(until)
                    .arg(&cfg.node)
                    .ignore();
            } else {
                pipe.cmd("ZREM")
                    .arg(cfg.bound(e.key()))
                    .arg(&cfg.node)
                    .ignore();
            }
        }
        receivers.retain(|_, n| *n > 0);
        let _: redis::RedisResult<()> = pipe.query_async(&mut conn).await;
    }
}

/// Take the receipts other nodes handed to this one (`P:inbox:NODE`, read with the
/// group so one not yet stored here is read again after a restart): store each as
/// owed here, acknowledge it, then hand it to the gateway.
async fn read_inbox(cfg: RedisConfig, mut conn: ConnectionManager, tx: mpsc::Sender<ReceiptJob>) {
    let key = cfg.inbox(&cfg.node);
    // First what was read before a restart but not acknowledged, then new entries.
    let mut from = "0".to_string();
    loop {
        let reply: redis::RedisResult<redis::streams::StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(&cfg.node)
            .arg("COUNT")
            .arg(500)
            .arg("STREAMS")
            .arg(&key)
            .arg(&from)
            .query_async(&mut conn)
            .await;
        let entries = reply.map(entries_of).unwrap_or_default();
        if entries.is_empty() {
            if from != ">" {
                from = ">".into();
                continue;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let mut jobs = Vec::with_capacity(entries.len());
        let mut pipe = redis::pipe();
        pipe.atomic();
        for e in &entries {
            let rec: Option<Vec<u8>> = e.get("rec");
            if let Some(j) = rec.as_deref().and_then(record::decode_receipt) {
                pipe.cmd("HSET")
                    .arg(cfg.receipts())
                    .arg(j.id.0)
                    .arg(rec.as_deref().unwrap_or_default())
                    .ignore();
                jobs.push(j);
            }
            pipe.cmd("XACK").arg(&key).arg(GROUP).arg(&e.id).ignore();
            pipe.cmd("XDEL").arg(&key).arg(&e.id).ignore();
        }
        if pipe.query_async::<()>(&mut conn).await.is_err() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            from = "0".into();
            continue;
        }
        for j in jobs {
            if tx.send(j).await.is_err() {
                return;
            }
        }
    }
}

/// Read the receipts other nodes published and hand them to the gateway. Polls
/// every 20 ms when there is nothing new; starts from the oldest kept entry (and
/// again after a claim), so receipts published while this node was down or before
/// it claimed a message still find it.
async fn read_published(
    cfg: RedisConfig,
    mut conn: ConnectionManager,
    tx: mpsc::Sender<otpgw_core::store::ForeignReceipt>,
    rescan: Arc<AtomicBool>,
) {
    let key = cfg.rcpt();
    let mut last = "0-0".to_string();
    loop {
        if rescan.swap(false, Ordering::Relaxed) {
            last = "0-0".into();
        }
        let reply: redis::RedisResult<redis::streams::StreamReadReply> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(1000)
            .arg("STREAMS")
            .arg(&key)
            .arg(&last)
            .query_async(&mut conn)
            .await;
        let entries = reply.map(entries_of).unwrap_or_default();
        if entries.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        for e in entries {
            // This node's own entries too: a receipt it parked before it claimed the
            // message the receipt belongs to matches only now.
            last = e.id.clone();
            let (Some(carrier), Some(id), Some(state)) = (
                e.get::<String>("c"),
                e.get::<String>("i"),
                e.get::<u8>("s").and_then(DeliveryState::from_tlv),
            ) else {
                continue;
            };
            let err: Option<String> = e.get::<String>("e").filter(|s| !s.is_empty());
            let f = otpgw_core::store::ForeignReceipt {
                carrier,
                receipt: otpgw_proto::pdu::CarrierReceipt { id, state, err },
            };
            if tx.send(f).await.is_err() {
                return;
            }
        }
    }
}

/// Claim what dead nodes left (see the module docs).
async fn claim(
    cfg: &RedisConfig,
    conn: &mut ConnectionManager,
    entries: &DashMap<u64, String>,
) -> Result<Recovered, StoreError> {
    let stream = cfg.stream();
    let info: redis::streams::StreamInfoConsumersReply = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(&stream)
        .arg(GROUP)
        .query_async(conn)
        .await
        .map_err(err)?;
    let claim = redis::Script::new(CLAIM_LUA);
    let claim_receipts = redis::Script::new(CLAIM_RECEIPTS_LUA);
    let mut out = Recovered::default();
    for c in info.consumers {
        if c.name == cfg.node {
            continue;
        }
        let mut msgs = Vec::new();
        if c.pending > 0 {
            loop {
                let got: redis::streams::StreamClaimReply = claim
                    .key(&stream)
                    .key(cfg.alive(&c.name))
                    .arg(GROUP)
                    .arg(&c.name)
                    .arg(&cfg.node)
                    .arg(1000)
                    .invoke_async(conn)
                    .await
                    .map_err(err)?;
                if got.ids.is_empty() {
                    break;
                }
                msgs.extend(messages_of(&got.ids, entries));
            }
        }
        if !msgs.is_empty() {
            let states: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
                .arg(cfg.state())
                .arg(msgs.iter().map(|m| m.id.0).collect::<Vec<_>>())
                .query_async(conn)
                .await
                .map_err(err)?;
            tracing::warn!(node = %c.name, messages = msgs.len(), "claimed the messages of a node whose lease ran out");
            classify(msgs, states, &mut out);
        }
        let owed: Vec<Vec<u8>> = claim_receipts
            .key(cfg.alive(&c.name))
            .key(cfg.receipts_of(&c.name))
            .key(cfg.inbox(&c.name))
            .key(cfg.receipts())
            .invoke_async(conn)
            .await
            .map_err(err)?;
        out.receipts
            .extend(owed.iter().filter_map(|v| record::decode_receipt(v)));
    }
    Ok(out)
}

/// Sort messages by their carrier state into `out`.
fn classify(msgs: Vec<Message>, states: Vec<Option<Vec<u8>>>, out: &mut Recovered) {
    for (m, s) in msgs.into_iter().zip(states) {
        match s.as_deref().and_then(record::decode_state) {
            Some(CarrierState::Confirmed {
                carrier,
                carrier_id,
            }) => out.confirmed.push((m, carrier, carrier_id)),
            Some(CarrierState::Attempts(list)) => out.attempts.push((m, list)),
            Some(CarrierState::Sent) => out.unconfirmed.push((m, true)),
            None => out.unconfirmed.push((m, false)),
        }
    }
}

/// The entries of a stream read.
fn entries_of(reply: redis::streams::StreamReadReply) -> Vec<redis::streams::StreamId> {
    reply.keys.into_iter().flat_map(|k| k.ids).collect()
}

/// The messages of stream entries, each noted with its entry in `entries` (an entry
/// deleted after it was read has no record: nothing to take on).
fn messages_of(ids: &[redis::streams::StreamId], entries: &DashMap<u64, String>) -> Vec<Message> {
    let mut msgs = Vec::with_capacity(ids.len());
    for e in ids {
        let rec: Option<Vec<u8>> = e.get("rec");
        match rec.as_deref().and_then(record::decode_message) {
            Some(m) => {
                entries.insert(m.id.0, e.id.clone());
                msgs.push(m);
            }
            None => tracing::warn!(entry = %e.id, "unreadable or deleted stream entry skipped"),
        }
    }
    msgs
}
