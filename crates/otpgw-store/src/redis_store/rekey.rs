//! Rekeying the Redis store (`otpgw rekey`, with every node of the prefix
//! stopped: refused while a node's lease is alive). Every record under the prefix
//! is sealed again with the active key, each replaced by one Lua script only if it
//! is unchanged, keeping its expiry:
//! - carrier states (`P:state`), receipts owed (`P:receipts:NODE`): the hash field;
//! - statuses (`P:st:ID`), key-value records (`P:kv:KEY`): the value;
//! - messages (`P:msgs`) and handed receipts (`P:inbox:NODE`): a stream entry cannot
//!   change, so a new entry takes its place and is read at once into the pending
//!   list of the node that held the old one, which is acknowledged and deleted.
//!
//! A record that cannot be opened (its key is not configured) stops the rekey with
//! its name; what was resealed before stays resealed (each step is atomic), and
//! running it again continues.

use crate::redis_store::link::Link;

use otpgw_core::store::StoreError;

use super::{GROUP, RedisConfig, err};
use crate::embedded::Rekeyed;
use crate::seal::Unreadable;

/// Replace a hash field if unchanged. KEYS: hash. ARGV: field, old, new.
const HASH_LUA: &str = r"
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
";

/// Replace a string value if unchanged, keeping its expiry. KEYS: key. ARGV: old, new.
const STRING_LUA: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
return 1
";

/// Replace a stream entry (see the module docs). KEYS: stream. ARGV: old id, group,
/// '1' when it must be pending, then the new entry's fields and values. Returns 1,
/// 0 when the entry is gone, -1 when it is not pending and must be.
const ENTRY_LUA: &str = r"
if #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) == 0 then return 0 end
local p = redis.call('XPENDING', KEYS[1], ARGV[2], ARGV[1], ARGV[1], 1)
if #p == 0 and ARGV[3] == '1' then return -1 end
redis.call('XADD', KEYS[1], '*', unpack(ARGV, 4))
if #p > 0 then
  redis.call('XREADGROUP', 'GROUP', ARGV[2], p[1][2], 'COUNT', '1', 'STREAMS', KEYS[1], '>')
  redis.call('XACK', KEYS[1], ARGV[2], ARGV[1])
end
redis.call('XDEL', KEYS[1], ARGV[1])
return 1
";

fn refused(what: &str, e: &Unreadable) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

async fn keys(conn: &mut Link, pattern: &str) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .map_err(err)?;
        out.extend(batch);
        if next == 0 {
            return Ok(out);
        }
        cursor = next;
    }
}

fn count(done: &mut Rekeyed, again: Option<&Vec<u8>>) {
    if again.is_some() {
        done.resealed += 1;
    } else {
        done.current += 1;
    }
}

/// Every field of hash `key` (or only field `only`), resealed with
/// `reseal(field, value)`.
async fn hash(
    conn: &mut Link,
    key: &str,
    only: Option<&str>,
    reseal: impl Fn(&str, &[u8]) -> Result<Option<Vec<u8>>, Unreadable>,
    done: &mut Rekeyed,
) -> Result<(), StoreError> {
    let all: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL")
        .arg(key)
        .query_async(conn)
        .await
        .map_err(err)?;
    let script = redis::Script::new(HASH_LUA);
    for (field, kept) in all {
        if only.is_some_and(|o| o != field) {
            continue;
        }
        let again = reseal(&field, &kept).map_err(|e| refused(&format!("{key} {field}"), &e))?;
        count(done, again.as_ref());
        if let Some(new) = again {
            let _: i64 = script
                .key(key)
                .arg(&field)
                .arg(kept)
                .arg(new)
                .invoke_async(conn)
                .await
                .map_err(err)?;
        }
    }
    Ok(())
}

/// Every entry of stream `key` (field `rec`), resealed with `reseal`.
async fn stream(
    conn: &mut Link,
    key: &str,
    must_be_pending: bool,
    reseal: impl Fn(&[u8]) -> Result<Option<Vec<u8>>, Unreadable>,
    done: &mut Rekeyed,
) -> Result<u64, StoreError> {
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .map_err(err)?;
    let script = redis::Script::new(ENTRY_LUA);
    let mut skipped = 0;
    for e in reply.ids {
        let Some(kept) = e.get::<Vec<u8>>("rec") else {
            continue;
        };
        let again = reseal(&kept).map_err(|x| refused(&format!("{key} {}", e.id), &x))?;
        count(done, again.as_ref());
        let Some(new) = again else { continue };
        let mut call = script.key(key);
        call.arg(&e.id)
            .arg(GROUP)
            .arg(if must_be_pending { "1" } else { "0" });
        let mut fields: Vec<&String> = e.map.keys().collect();
        fields.sort();
        for f in fields {
            call.arg(f);
            if f == "rec" {
                call.arg(new.as_slice());
            } else {
                call.arg(e.get::<Vec<u8>>(f).unwrap_or_default());
            }
        }
        let r: i64 = call.invoke_async(conn).await.map_err(err)?;
        if r < 0 {
            skipped += 1;
        }
    }
    Ok(skipped)
}

/// Rekey every record under `cfg.prefix` with `cfg.codec` (see the module docs).
pub async fn rekey(cfg: &RedisConfig) -> Result<Rekeyed, StoreError> {
    let codec = &*cfg.codec;
    if codec.active_key().is_none() {
        return Err(StoreError::Corrupt(
            "no [store.encryption]: nothing to seal with".into(),
        ));
    }
    if cfg.cluster.is_some() {
        return Err(StoreError::Unavailable(
            "rekey runs on one Redis (a URL or Sentinels), not yet on a Redis Cluster".into(),
        ));
    }
    let p = &cfg.prefix;
    let mut conn = super::link::connect(cfg.target(), cfg.timeout).await?;
    let alive = keys(&mut conn, &format!("{p}:alive:*")).await?;
    if let Some(a) = alive.first() {
        return Err(StoreError::Unavailable(format!(
            "a node is running on this prefix ({a} is live): stop every node first"
        )));
    }
    let mut done = Rekeyed::default();
    let state = format!("{p}:state");
    hash(
        &mut conn,
        &state,
        None,
        |f, k| match f.parse::<u64>() {
            Ok(id) => codec.reseal_state(id, k),
            Err(_) => Err(Unreadable::Damaged),
        },
        &mut done,
    )
    .await?;
    for key in keys(&mut conn, &format!("{p}:receipts:*")).await? {
        hash(
            &mut conn,
            &key,
            None,
            |_, k| codec.reseal_receipt(k),
            &mut done,
        )
        .await?;
    }
    let string = redis::Script::new(STRING_LUA);
    for key in keys(&mut conn, &format!("{p}:st:*")).await? {
        let kept: Option<Vec<u8>> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .map_err(err)?;
        let Some(kept) = kept else { continue };
        let again = codec.reseal_status(&kept).map_err(|e| refused(&key, &e))?;
        count(&mut done, again.as_ref());
        if let Some(new) = again {
            let _: i64 = string
                .key(&key)
                .arg(kept)
                .arg(new)
                .invoke_async(&mut conn)
                .await
                .map_err(err)?;
        }
    }
    let kv_prefix = format!("{p}:kv:");
    for key in keys(&mut conn, &format!("{kv_prefix}*")).await? {
        let name = key[kv_prefix.len()..].to_string();
        // Only the value field (`d`) is sealed, not the version (`v`).
        let reseal = |_: &str, k: &[u8]| codec.reseal_value(&name, k);
        hash(&mut conn, &key, Some("d"), reseal, &mut done).await?;
    }
    let msgs = format!("{p}:msgs");
    let skipped = stream(
        &mut conn,
        &msgs,
        true,
        |k| codec.reseal_message(k),
        &mut done,
    )
    .await?;
    if skipped > 0 {
        tracing::warn!(
            entries = skipped,
            "message entries not pending on any node: left as they were"
        );
    }
    for key in keys(&mut conn, &format!("{p}:inbox:*")).await? {
        stream(
            &mut conn,
            &key,
            false,
            |k| codec.reseal_receipt(k),
            &mut done,
        )
        .await?;
    }
    Ok(done)
}
