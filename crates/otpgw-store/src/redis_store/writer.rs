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

use super::doubt::Doubts;
use super::pipeline::{Built, Groups, Scripts, build};
use super::scripts::{ACCEPT_LUA, FINISH_LUA, KV_LUA};
use super::{RedisConfig, ensure_groups};
use crate::codec::Codec;
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
    // Shared by the flights (each `Script` holds its code and hash).
    let script = Arc::new(Scripts {
        accept: redis::Script::new(ACCEPT_LUA),
        kv: redis::Script::new(KV_LUA),
        finish: redis::Script::new(FINISH_LUA),
    });
    let mut groups = Groups::read(&cfg, &conn).await;
    let mut flights: futures_util::stream::FuturesOrdered<Flight> = Default::default();
    let mut closed = false;
    // After a failed pipeline its writes (and those of the pipelines that were
    // already under way behind it) are written again, in order, before anything
    // newer: one pipeline at a time until that backlog is gone.
    let mut backlog = Backlog::default();
    let mut recovering = false;
    // Refused accepts Redis may have run: looked up before the store is healthy.
    let mut doubt = Doubts::default();
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
                flights.push_back(launch(&cfg, (&script, &groups), batch, &entries, &conn, &codec, serial));
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
                complete(&cfg, batch, taken, res, &entries, &pending, &mut doubt);
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
                    let _ = ensure_groups(&mut conn, &cfg).await;
                    // A slot may have moved or a replica taken over.
                    groups = Groups::read(&cfg, &conn).await;
                }
                if ok && !doubt.try_settle(&cfg, &mut conn, &codec).await {
                    ok = false;
                }
                healthy.store(ok && doubt.is_empty(), Ordering::Relaxed);
                if ok && !backlog.is_empty() {
                    let mut batch = Vec::new();
                    backlog.take(cfg.batch_max, &mut batch);
                    flights.push_back(launch(&cfg, (&script, &groups), batch, &entries, &conn, &codec, true));
                }
            }
        }
    }
}

/// Send one batch as a pipeline.
fn launch(
    cfg: &RedisConfig,
    (script, groups): (&Arc<Scripts>, &Groups),
    batch: Vec<Op>,
    entries: &DashMap<u64, String>,
    conn: &Link,
    codec: &Codec,
    alone: bool,
) -> Flight {
    let Built {
        mut pipes,
        order,
        taken,
    } = build(cfg, script, &batch, entries, codec, groups);
    let (min, wait_ms) = (cfg.min_replicas, cfg.replica_timeout.as_millis() as u64);
    if min > 0 {
        // In the pipeline, so it asks the shard that ran it.
        for p in pipes.iter_mut().filter(|p| !p.is_empty()) {
            p.cmd("WAIT").arg(min).arg(wait_ms);
        }
    }
    let (link, script, slots) = (conn.clone(), script.clone(), groups.slot.clone());
    Box::pin(async move {
        // Each shard's pipeline to it, all at once (on one Redis: the one pipeline).
        let runs = pipes.iter().zip(slots).map(|(pipe, slot)| {
            let (mut c, mut link, script) = (link.at_slot(slot), link.clone(), script.clone());
            async move {
                if pipe.is_empty() {
                    return Ok(Vec::new());
                }
                let mut res: redis::RedisResult<Vec<redis::Value>> = pipe.query_async(&mut c).await;
                if matches!(&res, Err(e) if e.kind() == redis::ErrorKind::NoScriptError) {
                    // Redis restarted (its script cache is empty): load and send again.
                    if script.load(&mut link).await {
                        res = pipe.query_async(&mut c).await;
                    }
                }
                let mut values = res?;
                if min > 0 {
                    let n = values.pop().map(|v| redis::from_redis_value::<i64>(&v));
                    replicas_enough(n.transpose()?.unwrap_or(0), min, wait_ms)?;
                }
                Ok(values)
            }
        });
        let res = futures_util::future::join_all(runs)
            .await
            .into_iter()
            .collect::<redis::RedisResult<Vec<_>>>()
            .map(|per_group| merge(per_group, &order));
        (batch, taken, res, alone)
    })
}

/// The answers of the shards' pipelines in the order of the batch's writes that
/// have one (`order`: the pipeline of each).
fn merge(per_group: Vec<Vec<redis::Value>>, order: &[u16]) -> Vec<redis::Value> {
    if per_group.len() == 1 {
        return per_group.into_iter().flatten().collect();
    }
    let mut its: Vec<_> = per_group.into_iter().map(Vec::into_iter).collect();
    order
        .iter()
        .filter_map(|&k| its.get_mut(usize::from(k)).and_then(Iterator::next))
        .collect()
}

/// An error unless `n` replicas (of `min` wanted) confirmed within `wait_ms`.
fn replicas_enough(n: i64, min: u32, wait_ms: u64) -> redis::RedisResult<()> {
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

/// `WAIT` for `min` replicas to hold everything written so far on this
/// connection, at most `wait_ms`. Too few in time: an error, so the batch's accepts
/// are refused (a temporary error to the brand) and taken out again like those of
/// a lost reply ([`super::doubt`]): never acknowledged unless replicated.
pub(super) async fn replicated(
    c: &mut (impl redis::aio::ConnectionLike + Send),
    min: u32,
    wait_ms: u64,
) -> redis::RedisResult<()> {
    // A pipeline of one, so that a link routed to a shard (`Link::at_slot`) asks
    // that shard (a bare WAIT on a Cluster goes to every primary).
    let (n,): (i64,) = redis::pipe()
        .cmd("WAIT")
        .arg(min)
        .arg(wait_ms)
        .query_async(c)
        .await?;
    replicas_enough(n, min, wait_ms)
}

/// Resolve a batch's waiters with its pipeline's outcome.
fn complete(
    cfg: &RedisConfig,
    batch: Vec<Op>,
    taken: Vec<(u64, String)>,
    res: redis::RedisResult<Vec<redis::Value>>,
    entries: &DashMap<u64, String>,
    pending: &AtomicUsize,
    doubt: &mut Doubts,
) {
    let ok = res.is_ok();
    if !ok {
        // Not finished in Redis: their entries are still pending there.
        for (id, e) in taken {
            entries.insert(id, e);
        }
    }
    let mut ids = res.ok().map(Vec::into_iter);
    // The newest accept answered in each partition.
    let mut newest: Vec<Option<u64>> = vec![None; usize::from(cfg.parts())];
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
                        newest[usize::from(cfg.part_of(id))] = Some(id);
                        entries.insert(id, e);
                        Once::Accepted
                    }),
                    None => None,
                };
                if outcome.is_none() {
                    // Refused, yet Redis may have written it.
                    doubt.lost(cfg.part_of(id), id, once.map(|o| o.0));
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
    for (k, id) in (0u16..).zip(newest) {
        if let Some(e) = id.and_then(|id| entries.get(&id)) {
            doubt.answered(k, e.value());
        }
    }
}
