//! A carrier's rate limit held by several nodes together: one token bucket per
//! carrier in Redis (`PREFIX:rate:CARRIER`, a hash of tokens and the time of the
//! last refill), taken from by a Lua script that reads Redis's own clock (`TIME`),
//! so the nodes' clocks do not matter. A bucket holds at most `burst` tokens (the
//! callers pass 20 ms worth), so in any second all nodes together send at most
//! `rate` plus `burst`.

use std::time::Duration;

use crate::redis_store::link::Link;
use otpgw_core::shared_limit::{BindSlots, GrantFuture, SharedLimit, SlotFuture};
use otpgw_core::store::StoreError;

const TAKE_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1])
local ts = tonumber(b[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate / 1000000)
end
local n = math.min(want, math.floor(tokens))
tokens = tokens - n
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(math.max(now, ts)))
redis.call('PEXPIRE', KEYS[1], 60000)
return n
";

/// Hold or renew a bind slot: a sorted set of holders scored by when their lease
/// ends (Redis's clock). KEYS: the set. ARGV: holder, total, lease ms.
const HOLD_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local lease = tonumber(ARGV[3])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], lease * 4)
  return 1
end
return 0
";

/// The shared buckets and bind slots of every carrier, on one Redis connection.
#[derive(Clone)]
pub struct RedisRateLimit {
    conn: Link,
    prefix: String,
    script: redis::Script,
    hold: redis::Script,
    node: String,
    lease: Duration,
}

impl std::fmt::Debug for RedisRateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimit")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisRateLimit {
    /// Connect to `target` (a URL, or the primary Sentinels name); keys go under
    /// `prefix`. Bind slots are held as `node` for
    /// `lease` at a time.
    pub async fn connect(
        target: crate::redis_store::link::Target<'_>,
        prefix: &str,
        timeout: Duration,
        node: &str,
        lease: Duration,
    ) -> Result<Self, StoreError> {
        let conn = crate::redis_store::link::connect(target, timeout).await?;
        Ok(Self::on(conn, prefix, node, lease))
    }

    /// On an open link (the store's: one way to Redis per node, which follows a
    /// failover once for everything).
    pub fn on(conn: Link, prefix: &str, node: &str, lease: Duration) -> Self {
        Self {
            conn,
            prefix: prefix.into(),
            script: redis::Script::new(TAKE_LUA),
            hold: redis::Script::new(HOLD_LUA),
            node: node.into(),
            lease,
        }
    }
}

impl SharedLimit for RedisRateLimit {
    fn take<'a>(&'a self, carrier: &'a str, rate: f64, burst: f64, want: usize) -> GrantFuture<'a> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let key = format!("{}:rate:{carrier}", self.prefix);
            let mut inv = self.script.key(key);
            inv.arg(rate).arg(burst).arg(want);
            // The connection's response timeout bounds the wait.
            inv.invoke_async::<usize>(&mut conn)
                .await
                .map_err(crate::redis_store::err)
        })
    }
}

impl BindSlots for RedisRateLimit {
    fn hold<'a>(&'a self, carrier: &'a str, total: usize, bind: usize) -> SlotFuture<'a> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let mut inv = self.hold.key(format!("{}:binds:{carrier}", self.prefix));
            inv.arg(format!("{}:{bind}", self.node))
                .arg(total)
                .arg(self.lease.as_millis() as u64);
            let n = inv.invoke_async::<i64>(&mut conn).await;
            n.map(|n| n == 1).map_err(crate::redis_store::err)
        })
    }

    fn release<'a>(&'a self, carrier: &'a str, bind: usize) -> SlotFuture<'a> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let mut cmd = redis::cmd("ZREM");
            cmd.arg(format!("{}:binds:{carrier}", self.prefix))
                .arg(format!("{}:{bind}", self.node));
            let n = cmd.query_async::<i64>(&mut conn).await;
            n.map(|n| n == 1).map_err(crate::redis_store::err)
        })
    }

    fn renew_every(&self) -> Duration {
        self.lease / 3
    }
}
