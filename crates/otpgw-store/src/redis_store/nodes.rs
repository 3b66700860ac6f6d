//! What keeps several nodes sharing one Redis: the lease each node renews, the
//! receipts handed from node to node and published for all, and the claim of a
//! dead node's messages and owed receipts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::redis_store::link::Link;
use dashmap::DashMap;
use otpgw_core::outbox::ReceiptJob;
use otpgw_core::store::{Cluster, Recovered, StoreError, StoreFuture, Ticket};

use super::Redis;
use crate::durable::Durable;
use otpgw_core::{DeliveryState, Message};
use tokio::sync::mpsc;

use super::scripts::{CLAIM_LUA, CLAIM_RECEIPTS_LUA};
use super::{GROUP, RedisConfig, err};
use crate::codec::Codec;
use crate::record;

/// Renew this node's alive key, in every partition (a claim checks the copy in
/// its own partition, in the same step).
pub(super) async fn renew_lease(conn: &mut Link, cfg: &RedisConfig) -> redis::RedisResult<()> {
    let renewals = cfg.all_parts().map(|k| {
        let mut c = conn.clone();
        async move {
            redis::cmd("SET")
                .arg(cfg.alive(k, &cfg.node))
                .arg(1)
                .arg("PX")
                .arg(cfg.lease.as_millis() as u64)
                .query_async::<()>(&mut c)
                .await
        }
    });
    futures_util::future::try_join_all(renewals).await.map(drop)
}

/// Renew this node's alive key every third of the lease, and its presence in the
/// sets of nodes where each brand has a receiver bound (`P:bound:BRAND`, scored by
/// when the presence lapses). `renewed_since` holds since when (ms) every renewal
/// succeeded, 0 while they fail: see [`may_claim`].
pub(super) async fn heartbeat(
    cfg: RedisConfig,
    mut conn: Link,
    receivers: Arc<DashMap<String, usize>>,
    renewed_since: Arc<AtomicU64>,
) {
    let mut tick = tokio::time::interval(cfg.lease / 3);
    loop {
        tick.tick().await;
        match renew_lease(&mut conn, &cfg).await {
            Ok(()) => {
                let _ = renewed_since.compare_exchange(
                    0,
                    otpgw_core::clock::now_ms(),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
            Err(e) => {
                renewed_since.store(0, Ordering::Relaxed);
                tracing::warn!(error = %e, "cannot renew this node's lease in redis");
            }
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
pub(super) async fn read_inbox(
    cfg: RedisConfig,
    mut conn: Link,
    tx: mpsc::Sender<ReceiptJob>,
    codec: Arc<Codec>,
) {
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
        // Owed here first, then out of the inbox: in one step on one Redis; on a
        // Cluster the receipts of partitions other than the inbox's go before it.
        let mut pipes: Vec<redis::Pipeline> = cfg.all_parts().map(|_| redis::pipe()).collect();
        let owed: Vec<String> = cfg.all_parts().map(|k| cfg.receipts(k)).collect();
        pipes[0].atomic();
        for e in &entries {
            let rec: Option<Vec<u8>> = e.get("rec");
            if let Some(j) = rec.as_deref().and_then(|r| codec.read_receipt(r)) {
                let k = cfg.part_of(j.id.0);
                pipes[usize::from(k)]
                    .cmd("HSET")
                    .arg(&owed[usize::from(k)])
                    .arg(j.id.0)
                    .arg(rec.as_deref().unwrap_or_default())
                    .ignore();
                jobs.push(j);
            }
            pipes[0]
                .cmd("XACK")
                .arg(&key)
                .arg(GROUP)
                .arg(&e.id)
                .ignore();
            pipes[0].cmd("XDEL").arg(&key).arg(&e.id).ignore();
        }
        let mut failed = false;
        for p in pipes.iter().skip(1).chain(pipes.first()) {
            if !p.is_empty() && p.query_async::<()>(&mut conn).await.is_err() {
                failed = true;
                break;
            }
        }
        if failed {
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
pub(super) async fn read_published(
    cfg: RedisConfig,
    mut conn: Link,
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

/// Whether this node may claim other nodes' work now: only after its own lease
/// renewals have succeeded for a whole lease. When Redis was away (or failing
/// over) for longer than a lease, every node's alive key lapsed although the nodes
/// live; the first to reach Redis again must not take the others' messages (they
/// would go out twice, and accepts a node refused would go out) before they could
/// renew their keys. A dead node's work waits one lease longer.
pub(super) fn may_claim(renewed_since: &AtomicU64, lease: Duration, now_ms: u64) -> bool {
    let since = renewed_since.load(Ordering::Relaxed);
    since != 0 && now_ms.saturating_sub(since) >= lease.as_millis() as u64
}

/// Claim what dead nodes left (see the module docs), partition by partition.
pub(super) async fn claim(
    cfg: &RedisConfig,
    conn: &mut Link,
    entries: &DashMap<u64, String>,
    codec: &Codec,
) -> Result<Recovered, StoreError> {
    let mut out = Recovered::default();
    for k in cfg.all_parts() {
        claim_part(cfg, k, conn, entries, codec, &mut out).await?;
    }
    Ok(out)
}

/// Claim what dead nodes left in partition `k`.
async fn claim_part(
    cfg: &RedisConfig,
    k: u16,
    conn: &mut Link,
    entries: &DashMap<u64, String>,
    codec: &Codec,
    out: &mut Recovered,
) -> Result<(), StoreError> {
    let stream = cfg.stream(k);
    let info: redis::streams::StreamInfoConsumersReply = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(&stream)
        .arg(GROUP)
        .query_async(conn)
        .await
        .map_err(err)?;
    let claim = redis::Script::new(CLAIM_LUA);
    let claim_receipts = redis::Script::new(CLAIM_RECEIPTS_LUA);
    for c in info.consumers {
        if c.name == cfg.node {
            continue;
        }
        let mut msgs = Vec::new();
        if c.pending > 0 {
            loop {
                let got: redis::streams::StreamClaimReply = claim
                    .key(&stream)
                    .key(cfg.alive(k, &c.name))
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
                msgs.extend(messages_of(&got.ids, entries, codec));
            }
        }
        if !msgs.is_empty() {
            let states: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
                .arg(cfg.state(k))
                .arg(msgs.iter().map(|m| m.id.0).collect::<Vec<_>>())
                .query_async(conn)
                .await
                .map_err(err)?;
            tracing::warn!(node = %c.name, messages = msgs.len(), partition = k, "claimed the messages of a node whose lease ran out");
            classify(msgs, states, out, codec);
        }
        let mut inv = claim_receipts.key(cfg.alive(k, &c.name));
        inv.key(cfg.receipts_of(k, &c.name)).key(cfg.receipts(k));
        if k == 0 {
            // The handed receipts are in partition 0's slot.
            inv.key(cfg.inbox(&c.name)).key(cfg.inbox(&cfg.node));
        }
        let owed: Vec<Vec<u8>> = inv.invoke_async(conn).await.map_err(err)?;
        out.receipts
            .extend(owed.iter().filter_map(|v| codec.read_receipt(v)));
    }
    Ok(())
}

/// Sort messages by their carrier state into `out`.
pub(super) fn classify(
    msgs: Vec<Message>,
    states: Vec<Option<Vec<u8>>>,
    out: &mut Recovered,
    codec: &Codec,
) {
    for (m, s) in msgs.into_iter().zip(states) {
        let state = s.as_deref().and_then(|s| codec.read_state(m.id.0, s));
        record::sort_recovered(out, m, state);
    }
}

/// The entries of a stream read.
pub(super) fn entries_of(reply: redis::streams::StreamReadReply) -> Vec<redis::streams::StreamId> {
    reply.keys.into_iter().flat_map(|k| k.ids).collect()
}

/// The messages of stream entries, each noted with its entry in `entries` (an entry
/// deleted after it was read has no record: nothing to take on).
pub(super) fn messages_of(
    ids: &[redis::streams::StreamId],
    entries: &DashMap<u64, String>,
    codec: &Codec,
) -> Vec<Message> {
    let mut msgs = Vec::with_capacity(ids.len());
    for e in ids {
        let rec: Option<Vec<u8>> = e.get("rec");
        match rec.as_deref().and_then(|r| codec.read_message(r)) {
            Some(m) => {
                entries.insert(m.id.0, e.id.clone());
                msgs.push(m);
            }
            None => tracing::warn!(entry = %e.id, "unreadable or deleted stream entry skipped"),
        }
    }
    msgs
}

/// What the Redis store does for nodes that share it (see the module docs of
/// [`super`]).
impl Cluster for Durable<Redis> {
    fn is_shared(&self) -> bool {
        true
    }

    fn partitions(&self) -> u64 {
        u64::from(self.backend.cfg.parts())
    }

    fn tally_add<'a>(
        &'a self,
        k: &'a str,
        a: &'a [(String, i64)],
        ttl: u64,
    ) -> StoreFuture<'a, ()> {
        Box::pin(self.backend.tally_add(k, a, ttl))
    }

    fn tally_set<'a>(
        &'a self,
        k: &'a str,
        f: &'a [(String, Option<i64>)],
        ttl: u64,
    ) -> StoreFuture<'a, ()> {
        Box::pin(self.backend.tally_set(k, f, ttl))
    }

    fn tally_get<'a>(&'a self, k: &'a str) -> StoreFuture<'a, Vec<(String, i64)>> {
        Box::pin(self.backend.tally_get(k))
    }

    fn publish_receipt(&self, carrier: &str, r: &otpgw_proto::pdu::CarrierReceipt) -> Ticket {
        self.queue.publish(carrier, r)
    }

    fn take_foreign_receipts(&self) -> Option<mpsc::Receiver<otpgw_core::store::ForeignReceipt>> {
        self.backend.foreign.lock().take()
    }

    fn rescan_receipts(&self) {
        self.backend.rescan.store(true, Ordering::Relaxed);
    }

    fn brand_receiver(&self, brand: &str, opened: bool) {
        let mut e = self.backend.receivers.entry(brand.to_string()).or_insert(0);
        if opened {
            *e += 1;
        } else {
            *e = e.saturating_sub(1);
        }
    }

    fn brand_bound_here(&self, brand: &str) -> bool {
        self.backend.receivers.get(brand).is_some_and(|n| *n > 0)
    }

    fn hand_over_receipts<'a>(
        &'a self,
        brand: &'a str,
        jobs: &'a [ReceiptJob],
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut conn = self.backend.conn.clone();
            let now = otpgw_core::clock::now_ms();
            // Nodes whose presence for the brand has not lapsed, this one excepted.
            let nodes: Vec<String> = redis::cmd("ZRANGEBYSCORE")
                .arg(self.backend.cfg.bound(brand))
                .arg(now)
                .arg("+inf")
                .query_async(&mut conn)
                .await
                .map_err(err)?;
            let Some(target) = nodes.into_iter().find(|n| *n != self.backend.cfg.node) else {
                return Ok(false);
            };
            let cfg = &self.backend.cfg;
            // The inbox and partition 0 in one step; on a Cluster the owed
            // receipts of other partitions leave after it (a node killed between
            // owes them twice: the brand may get one twice, never none).
            let mut pipe = redis::pipe();
            pipe.atomic();
            let mut rest: Vec<Vec<u64>> = vec![Vec::new(); usize::from(cfg.parts())];
            let (inbox, owed) = (cfg.inbox(&target), cfg.receipts(0));
            for j in jobs {
                pipe.cmd("XADD")
                    .arg(&inbox)
                    .arg("*")
                    .arg("id")
                    .arg(j.id.0)
                    .arg("rec")
                    .arg(self.backend.codec.receipt(j))
                    .ignore();
                match cfg.part_of(j.id.0) {
                    0 => {
                        pipe.cmd("HDEL").arg(&owed).arg(j.id.0).ignore();
                    }
                    k => rest[usize::from(k)].push(j.id.0),
                }
            }
            pipe.query_async::<()>(&mut conn).await.map_err(err)?;
            for (k, ids) in (0u16..).zip(rest) {
                if !ids.is_empty() {
                    redis::cmd("HDEL")
                        .arg(cfg.receipts(k))
                        .arg(ids)
                        .query_async::<()>(&mut conn)
                        .await
                        .map_err(err)?;
                }
            }
            tracing::debug!(%brand, to = %target, receipts = jobs.len(), "receipts handed to the node where the brand is bound");
            Ok(true)
        })
    }

    fn take_handed_receipts(&self) -> Option<mpsc::Receiver<ReceiptJob>> {
        self.backend.handed.lock().take()
    }

    fn claim_orphans(&self, now_ms: u64) -> StoreFuture<'_, Recovered> {
        Box::pin(async move {
            if !may_claim(&self.backend.renewed_since, self.backend.cfg.lease, now_ms) {
                return Ok(Recovered::default());
            }
            let mut conn = self.backend.conn.clone();
            claim(
                &self.backend.cfg,
                &mut conn,
                &self.backend.entries,
                &self.backend.codec,
            )
            .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_wait_a_whole_lease_of_good_renewals() {
        let lease = Duration::from_secs(5);
        let since = AtomicU64::new(0);
        assert!(!may_claim(&since, lease, 100_000), "renewals failing");
        since.store(100_000, Ordering::Relaxed);
        assert!(!may_claim(&since, lease, 100_000));
        assert!(!may_claim(&since, lease, 104_999), "less than a lease");
        assert!(may_claim(&since, lease, 105_000));
        assert!(!may_claim(&since, lease, 99_000), "a clock step back");
    }
}
