//! The Redis store's writer task: every write queued goes into one pipeline (up
//! to `batch_max`), several pipelines in flight, a failed pipeline's writes kept
//! in a backlog and written again in order once Redis is back, and its accepts
//! looked up and taken out if Redis ran them after all ([`super::doubt`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::redis_store::link::Link;
use dashmap::DashMap;
use otpgw_core::store::Once;

use super::doubt::Doubt;
use super::scripts::{ACCEPT_LUA, FINISH_LUA, KV_LUA};
use super::{GROUP, RedisConfig, ensure_group};
use crate::codec::Codec;
use crate::record::SendState;
use crate::writer::{Backlog, Op, Writes, log_failed};

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

pub(super) async fn writer(
    cfg: RedisConfig,
    mut conn: Link,
    writes: Writes,
    entries: Arc<DashMap<u64, String>>,
    healthy: Arc<AtomicBool>,
    codec: Arc<Codec>,
) {
    use futures_util::StreamExt;
    let Writes { rx, pending } = writes;
    let script = Scripts {
        accept: redis::Script::new(ACCEPT_LUA),
        kv: redis::Script::new(KV_LUA),
        finish: redis::Script::new(FINISH_LUA),
    };
    let mut flights: futures_util::stream::FuturesOrdered<Flight> = Default::default();
    let mut closed = false;
    // After a failed pipeline its writes (and those of the pipelines that were
    // already under way behind it) are written again, in order, before anything
    // newer: one pipeline at a time until that backlog is gone.
    let mut backlog = Backlog::default();
    let mut recovering = false;
    // Refused accepts Redis may have run: looked up before the store is healthy.
    let mut doubt = Doubt::default();
    let mut last_settle = tokio::time::Instant::now();
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
            op = async { rx.recv_async().await.ok() }, if !closed && room => {
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
                flights.push_back(launch(&cfg, &script, batch, &entries, &conn, &codec, serial));
            }
            Some((batch, taken, res, alone)) = flights.next(), if !flights.is_empty() => {
                let ok = res.is_ok();
                if let Err(e) = &res {
                    log_failed("redis write failed", e, batch.len());
                    metrics::counter!("otpgw_store_write_failures_total").increment(1);
                }
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
                if !ok {
                    // Before the waiters hear of the failure.
                    healthy.store(false, Ordering::Relaxed);
                }
                complete(batch, taken, res, &entries, &pending, &mut doubt);
                // Writes go through again: settle the doubtful accepts now, not
                // only when the writer is idle (other writes, such as the
                // receipts of earlier messages, may keep it busy for long, and
                // accepts are refused until the doubts are settled).
                if ok && !doubt.is_empty() && last_settle.elapsed() >= Backlog::RETRY_EVERY {
                    last_settle = tokio::time::Instant::now();
                    doubt.try_settle(&cfg, &mut conn, &codec).await;
                }
                if ok {
                    healthy.store(doubt.is_empty(), Ordering::Relaxed);
                }
            }
            () = tokio::time::sleep(if backlog.is_empty() && doubt.is_empty() { Duration::from_secs(1) } else { Backlog::RETRY_EVERY }),
                if flights.is_empty() =>
            {
                // Idle: find out whether Redis is (still) there; settle the
                // doubtful accepts and write the backlog once it is.
                let mut ok = redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok();
                if ok && !healthy.load(Ordering::Relaxed) {
                    let _ = ensure_group(&mut conn, &cfg.stream()).await;
                }
                if ok && !doubt.try_settle(&cfg, &mut conn, &codec).await {
                    ok = false;
                }
                healthy.store(ok && doubt.is_empty(), Ordering::Relaxed);
                if ok && !backlog.is_empty() {
                    let mut batch = Vec::new();
                    backlog.take(cfg.batch_max, &mut batch);
                    flights.push_back(launch(&cfg, &script, batch, &entries, &conn, &codec, true));
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
    conn: &Link,
    codec: &Codec,
    alone: bool,
) -> Flight {
    let (pipe, taken) = build(cfg, script, &batch, entries, codec);
    let (mut c, script) = (conn.clone(), script.clone());
    let (min, wait_ms) = (cfg.min_replicas, cfg.replica_timeout.as_millis() as u64);
    Box::pin(async move {
        let mut res: redis::RedisResult<Vec<redis::Value>> = pipe.query_async(&mut c).await;
        if matches!(&res, Err(e) if e.kind() == redis::ErrorKind::NoScriptError) {
            // Redis restarted (its script cache is empty): load and send again.
            if script.load(&mut c).await {
                res = pipe.query_async(&mut c).await;
            }
        }
        if res.is_ok() && min > 0 {
            res = replicated(&mut c, min, wait_ms).await.and(res);
        }
        (batch, taken, res, alone)
    })
}

/// `WAIT` for `min` replicas to hold everything written so far on this
/// connection, at most `wait_ms`. Too few in time: an error, so the batch's accepts
/// are refused (a temporary error to the brand) and taken out again like those of
/// a lost reply ([`super::doubt`]): never acknowledged unless replicated.
pub(super) async fn replicated(c: &mut Link, min: u32, wait_ms: u64) -> redis::RedisResult<()> {
    let n: i64 = redis::cmd("WAIT")
        .arg(min)
        .arg(wait_ms)
        .query_async(c)
        .await?;
    if n >= i64::from(min) {
        return Ok(());
    }
    metrics::counter!("otpgw_store_replica_waits_short_total").increment(1);
    Err(redis::RedisError::from((
        redis::ErrorKind::TryAgain,
        "too few replicas confirmed the batch",
        format!("{n} of {min} within {wait_ms} ms"),
    )))
}

/// The scripts the writer runs (loaded again after Redis restarted).
#[derive(Clone)]
struct Scripts {
    accept: redis::Script,
    kv: redis::Script,
    finish: redis::Script,
}

impl Scripts {
    /// Load every script (after Redis restarted or a failover: its cache may be
    /// empty); whether all loaded.
    async fn load(&self, c: &mut Link) -> bool {
        for s in [&self.accept, &self.kv, &self.finish] {
            if s.prepare_invoke().load_async(c).await.is_err() {
                return false;
            }
        }
        true
    }
}

/// A finished message's writes: one script, atomic however the pipeline is cut
/// (`FINISH_LUA`).
fn finish(
    pipe: &mut redis::Pipeline,
    (stream, state, receipts): (&str, &str, &str),
    script: &Scripts,
    id: u64,
    entry: &str,
    receipt: Option<&(u64, Vec<u8>)>,
) {
    let c = pipe
        .cmd("EVALSHA")
        .arg(script.finish.get_hash())
        .arg(3)
        .arg(stream)
        .arg(state)
        .arg(receipts)
        .arg(GROUP)
        .arg(entry)
        .arg(id);
    match receipt {
        Some((_, r)) => c.arg("1").arg(r.as_slice()),
        None => c.arg("0"),
    }
    .ignore();
}

/// One pipeline for a batch of writes, and the stream entries of the messages it
/// finishes (taken out of `entries`).
fn build(
    cfg: &RedisConfig,
    script: &Scripts,
    batch: &[Op],
    entries: &DashMap<u64, String>,
    codec: &Codec,
) -> (redis::Pipeline, Vec<(u64, String)>) {
    let (stream, state, receipts) = (cfg.stream(), cfg.state(), cfg.receipts());
    let mut pipe = redis::pipe();
    let mut taken = Vec::new();
    for op in batch {
        match op {
            Op::Accept { id, rec, once, .. } => {
                let c = pipe.cmd("EVALSHA").arg(script.accept.get_hash());
                match once {
                    None => c.arg(1).arg(&stream),
                    Some(o) => c.arg(2).arg(&stream).arg(cfg.kv(&o.0)),
                };
                // A replacement (same id) takes the old entry's place.
                let replaced = entries
                    .get(id)
                    .map(|e| e.value().clone())
                    .unwrap_or_default();
                c.arg(rec.as_slice())
                    .arg(GROUP)
                    .arg(&cfg.node)
                    .arg(replaced);
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
                    // Counted from when it finished (a brand's shorter retention
                    // moves that back: see `WriteQueue::status`).
                    let until = done_ms + cfg.status_keep.as_millis() as u64;
                    Duration::from_millis(until.saturating_sub(otpgw_core::clock::now_ms()).max(1))
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
                    .arg(codec.state(otpgw_core::MsgId(*id), &SendState::Sent))
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
                let entry = entries.remove(id);
                let keys = (stream.as_str(), state.as_str(), receipts.as_str());
                let e = entry.as_ref().map_or("", |(_, e)| e.as_str());
                finish(&mut pipe, keys, script, *id, e, receipt.as_ref());
                taken.extend(entry);
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
    doubt: &mut Doubt,
) {
    let ok = res.is_ok();
    if !ok {
        // Not finished in Redis: their entries are still pending there.
        for (id, e) in taken {
            entries.insert(id, e);
        }
    }
    let mut ids = res.ok().map(Vec::into_iter);
    let mut newest = None;
    for op in batch {
        match op {
            Op::Accept { id, done, once, .. } => {
                pending.fetch_sub(1, Ordering::Relaxed);
                let answer = ids.as_mut().and_then(Iterator::next);
                let outcome = match answer {
                    Some(redis::Value::Array(a)) => Some(Once::Duplicate(
                        a.get(1)
                            .and_then(|v| redis::from_redis_value::<Vec<u8>>(v).ok())
                            .unwrap_or_default(),
                    )),
                    Some(v) => redis::from_redis_value::<String>(&v).ok().map(|e| {
                        newest = Some(id);
                        entries.insert(id, e);
                        Once::Accepted
                    }),
                    None => None,
                };
                if outcome.is_none() {
                    // Refused, yet Redis may have written it.
                    doubt.lost(id, once.map(|o| o.0));
                }
                let _ = done.send(outcome);
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
    if let Some(e) = newest.and_then(|id| entries.get(&id)) {
        doubt.answered(e.value());
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};

    use redis::Commands as _;

    use super::*;

    /// A finished message's writes, cut short at every byte (the node killed while
    /// its pipeline was on the way), against a real Redis: the entry is either still
    /// pending with no receipt owed (nothing applied) or gone with its receipt owed
    /// (all applied); never acknowledged without the receipt the brand is owed.
    #[test]
    fn a_finish_cut_anywhere_keeps_the_message_or_its_receipt() {
        let Some(r) = otpgw_sim::redis_server::TestRedis::start("finish-cut") else {
            return;
        };
        let cfg = RedisConfig::new(&r.url(), "t", "n1");
        let mut c = redis::Client::open(r.url())
            .and_then(|c| c.get_connection())
            .expect("redis");
        let _: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(cfg.stream())
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query(&mut c);
        let script = Scripts {
            accept: redis::Script::new(ACCEPT_LUA),
            kv: redis::Script::new(KV_LUA),
            finish: redis::Script::new(FINISH_LUA),
        };
        // As the writer does on NOSCRIPT.
        let _: String = script.finish.prepare_invoke().load(&mut c).expect("load");
        let (mut applied, mut untouched) = (0, 0);
        let mut cut = 0;
        loop {
            // A pending entry of message 7, with its carrier state.
            let e: String = c.xadd(cfg.stream(), "*", &[("rec", "x")]).expect("xadd");
            let _: redis::Value = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(GROUP)
                .arg("n1")
                .arg("STREAMS")
                .arg(cfg.stream())
                .arg(">")
                .query(&mut c)
                .expect("read");
            let _: () = c.hset(cfg.state(), 7, "s").expect("state");
            let entries = DashMap::new();
            entries.insert(7u64, e.clone());
            let (done, _) = tokio::sync::oneshot::channel();
            let op = Op::Finished {
                id: 7,
                state: 2,
                receipt: Some((1, b"receipt".to_vec())),
                now_ms: 1,
                done,
            };
            let (pipe, _) = build(&cfg, &script, &[op], &entries, &Codec::plain());
            let bytes = pipe.get_packed_pipeline();
            let whole = cut >= bytes.len();
            let mut raw = std::net::TcpStream::connect(("127.0.0.1", r.port)).expect("connect");
            raw.write_all(&bytes[..cut.min(bytes.len())])
                .expect("write");
            raw.shutdown(std::net::Shutdown::Write).expect("shutdown");
            let mut sink = Vec::new();
            let _ = raw.read_to_end(&mut sink);
            let pending: redis::streams::StreamPendingCountReply = redis::cmd("XPENDING")
                .arg(cfg.stream())
                .arg(GROUP)
                .arg(&e)
                .arg(&e)
                .arg(1)
                .query(&mut c)
                .expect("xpending");
            let still = !pending.ids.is_empty();
            let owed: bool = c.hexists(cfg.receipts(), 7).expect("hexists");
            assert!(
                still != owed,
                "cut at byte {cut} of {}: pending {still}, receipt owed {owed}",
                bytes.len()
            );
            if owed {
                applied += 1;
            } else {
                untouched += 1;
            }
            // Clean for the next cut.
            let _: redis::Value = redis::pipe()
                .cmd("XACK")
                .arg(cfg.stream())
                .arg(GROUP)
                .arg(&e)
                .cmd("XDEL")
                .arg(cfg.stream())
                .arg(&e)
                .cmd("DEL")
                .arg(cfg.receipts())
                .arg(cfg.state())
                .query(&mut c)
                .expect("clean");
            if whole {
                break;
            }
            cut += 1;
        }
        assert!(applied >= 1, "the whole pipeline applies it");
        assert!(untouched > 1);
    }
}
