//! The Lua scripts the Redis store runs: each is one atomic step in Redis.

/// Registers a node id under the prefix once and returns its number (1, 2, ...).
pub(super) const NODE_NUMBER_LUA: &str = r"
local n = redis.call('HGET', KEYS[1], ARGV[1])
if not n then
  n = redis.call('INCR', KEYS[2])
  redis.call('HSET', KEYS[1], ARGV[1], n)
end
return tonumber(n)
";
/// Move a dead consumer's pending entries to this node, unless it is alive again.
/// KEYS: stream, the consumer's alive key. ARGV: group, consumer, me, count.
pub(super) const CLAIM_LUA: &str = r"
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

/// Move what a dead node owed brands to this node: its receipts hash to mine, and
/// the receipts handed to it (its inbox, read or not) into my inbox (read from
/// there they are owed here, in their partition). KEYS: its alive key, its receipts
/// hash, my receipts hash[, its inbox, my inbox]. Returns the records moved to my
/// hash.
pub(super) const CLAIM_RECEIPTS_LUA: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return {} end
local out = {}
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  redis.call('HSET', KEYS[3], all[i], all[i + 1])
  out[#out + 1] = all[i + 1]
end
redis.call('DEL', KEYS[2])
if #KEYS < 5 then return out end
for _, e in ipairs(redis.call('XRANGE', KEYS[4], '-', '+')) do
  local f = e[2]
  local id, rec = nil, nil
  for k = 1, #f, 2 do
    if f[k] == 'id' then id = f[k + 1] elseif f[k] == 'rec' then rec = f[k + 1] end
  end
  if id and rec then
    redis.call('XADD', KEYS[5], '*', 'id', id, 'rec', rec)
  end
end
redis.call('DEL', KEYS[4])
return out
";

/// KEYS: stream[, idempotency record]. ARGV: record, group, node, the stream entry
/// of the message this one replaces (same id; '' for none)[, value, expires_ms].
/// Returns the entry id, or {'dup', value} when the idempotency record exists
/// (nothing added). A replaced message's entry goes in the same step as the new one
/// comes, so a crash never leaves both.
pub(super) const ACCEPT_LUA: &str = r"
if #KEYS > 1 then
  if redis.call('EXISTS', KEYS[2]) == 1 then
    return {'dup', redis.call('HGET', KEYS[2], 'd')}
  end
  redis.call('HSET', KEYS[2], 'v', 1, 'd', ARGV[5])
  redis.call('PEXPIREAT', KEYS[2], ARGV[6])
end
if ARGV[4] ~= '' then
  redis.call('XACK', KEYS[1], ARGV[2], ARGV[4])
  redis.call('XDEL', KEYS[1], ARGV[4])
end
local e = redis.call('XADD', KEYS[1], '*', 'rec', ARGV[1])
redis.call('XREADGROUP', 'GROUP', ARGV[2], ARGV[3], 'COUNT', '1', 'STREAMS', KEYS[1], '>')
return e
";

/// A message finished, in one step (a node killed while sending it must not
/// leave the entry acknowledged without the receipt owed). KEYS: the stream, the
/// carrier states, the receipts owed. ARGV: the group, the entry id ('' when this
/// node holds none), the message id, '1' and the receipt record when one is owed.
pub(super) const FINISH_LUA: &str = r"
if ARGV[2] ~= '' then
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
  redis.call('XDEL', KEYS[1], ARGV[2])
end
redis.call('HDEL', KEYS[2], ARGV[3])
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[3], ARGV[3], ARGV[5])
end
return 1
";

/// Compare and set. KEYS: the record. ARGV: expected version, value, expires_ms.
/// Returns the new version, or -1 when the version differs.
pub(super) const KV_LUA: &str = r"
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if v ~= tonumber(ARGV[1]) then return -1 end
v = v + 1
redis.call('HSET', KEYS[1], 'v', v, 'd', ARGV[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return v
";

/// KEYS: the counter. ARGV: window_ms. Returns the count.
pub(super) const COUNT_LUA: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {n, redis.call('PTTL', KEYS[1])}
";
