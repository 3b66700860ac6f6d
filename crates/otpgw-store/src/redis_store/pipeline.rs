//! How the Redis store's writes become commands: each write of a batch goes into
//! the pipeline of the shard that serves its partition ([`super::keys`],
//! [`Groups`]; one pipeline on one Redis), a finished message as one script
//! ([`finish`]).

use std::time::Duration;

use dashmap::DashMap;

use super::GROUP;
use super::RedisConfig;
use crate::codec::Codec;
use crate::record::SendState;
use crate::redis_store::link::Link;
use crate::writer::Op;

/// The scripts the writer runs (loaded again after Redis restarted).
#[derive(Clone)]
pub(super) struct Scripts {
    pub(super) accept: redis::Script,
    pub(super) kv: redis::Script,
    pub(super) finish: redis::Script,
}

impl Scripts {
    /// Load every script (after Redis restarted or a failover: its cache may be
    /// empty); whether all loaded.
    pub(super) async fn load(&self, c: &mut Link) -> bool {
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

/// A receipt this node could not match, for every node (`P:rcpt`, trimmed to
/// `receipt_keep`).
fn publish(
    pipe: &mut redis::Pipeline,
    cfg: &RedisConfig,
    published: &(String, otpgw_proto::pdu::CarrierReceipt),
) {
    let (carrier, r) = published;
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

/// A batch's writes: one pipeline per group ([`Groups`]; on one Redis: one), the
/// group of each write that has an answer (in the batch's order), and the stream
/// entries of the messages it finishes (taken out of `entries`).
pub(super) struct Built {
    pub(super) pipes: Vec<redis::Pipeline>,
    pub(super) order: Vec<u16>,
    pub(super) taken: Vec<(u64, String)>,
}

/// The partition a write goes to (0 for the published receipts' stream).
fn part_of_op(cfg: &RedisConfig, op: &Op) -> u16 {
    match op {
        Op::Accept { id, .. }
        | Op::Status { id, .. }
        | Op::Sent(id, _)
        | Op::Confirmed(id, _)
        | Op::Attempts(id, _, _)
        | Op::Owe(id, _, _)
        | Op::Finished { id, .. }
        | Op::Forwarded(id) => cfg.part_of(*id),
        Op::Kv { kv, .. } => cfg.part_of_key(&kv.0),
        Op::Publish { .. } | Op::Flush(_) | Op::Stop => 0,
    }
}

/// Which pipeline each partition's writes go in: one per shard on a Cluster (the
/// partitions a shard serves share it, sent to the slot of the first), else one.
/// Read from the cluster at the start and after a failed write (a slot moved, a
/// replica took over); until then one pipeline per partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Groups {
    /// The pipeline of each partition.
    pub(super) of_part: Vec<u16>,
    /// The slot each pipeline is sent to.
    pub(super) slot: Vec<u16>,
}

impl Groups {
    /// One pipeline per partition.
    pub(super) fn each(cfg: &RedisConfig) -> Self {
        Self {
            of_part: cfg.all_parts().collect(),
            slot: cfg.all_parts().map(|k| cfg.slot_of_part(k)).collect(),
        }
    }

    /// One pipeline per shard, as the cluster serves the slots now (one per
    /// partition when it cannot be read).
    pub(super) async fn read(cfg: &RedisConfig, conn: &Link) -> Self {
        let each = Self::each(cfg);
        let Some(owners) = conn.primaries_of(&each.slot).await else {
            return each;
        };
        let mut shards: Vec<&str> = Vec::new();
        let mut g = Self {
            of_part: Vec::new(),
            slot: Vec::new(),
        };
        for (k, owner) in owners.iter().enumerate() {
            let i = shards.iter().position(|s| *s == owner).unwrap_or_else(|| {
                shards.push(owner);
                g.slot.push(each.slot[k]);
                shards.len() - 1
            });
            g.of_part.push(i as u16);
        }
        g
    }
}

/// The pipelines of a batch of writes (see [`Built`]), one per group.
pub(super) fn build(
    cfg: &RedisConfig,
    script: &Scripts,
    batch: &[Op],
    entries: &DashMap<u64, String>,
    codec: &Codec,
    groups: &Groups,
) -> Built {
    let keys: Vec<(String, String, String)> = cfg
        .all_parts()
        .map(|k| (cfg.stream(k), cfg.state(k), cfg.receipts(k)))
        .collect();
    let mut pipes: Vec<redis::Pipeline> = groups.slot.iter().map(|_| redis::pipe()).collect();
    let mut order = Vec::new();
    let mut taken = Vec::new();
    for op in batch {
        let k = part_of_op(cfg, op);
        let g = groups.of_part[usize::from(k)];
        let pipe = &mut pipes[usize::from(g)];
        let (stream, state, receipts) = &keys[usize::from(k)];
        if matches!(op, Op::Accept { .. } | Op::Kv { .. }) {
            order.push(g);
        }
        match op {
            Op::Accept { id, rec, once, .. } => {
                let c = pipe.cmd("EVALSHA").arg(script.accept.get_hash());
                match once {
                    None => c.arg(1).arg(stream),
                    Some(o) => c.arg(2).arg(stream).arg(cfg.kv(&o.0)),
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
                    .arg(state)
                    .arg(id)
                    .arg(codec.state(otpgw_core::MsgId(*id), &SendState::Sent))
                    .ignore();
            }
            Op::Confirmed(id, st) | Op::Attempts(id, st, _) => {
                pipe.cmd("HSET")
                    .arg(state)
                    .arg(id)
                    .arg(st.as_slice())
                    .ignore();
            }
            Op::Owe(id, _, rec) => {
                pipe.cmd("HSET")
                    .arg(receipts)
                    .arg(id)
                    .arg(rec.as_slice())
                    .ignore();
            }
            Op::Finished { id, receipt, .. } => {
                let entry = entries.remove(id);
                let keys = (stream.as_str(), state.as_str(), receipts.as_str());
                let e = entry.as_ref().map_or("", |(_, e)| e.as_str());
                finish(pipe, keys, script, *id, e, receipt.as_ref());
                taken.extend(entry);
            }
            Op::Forwarded(id) => {
                pipe.cmd("HDEL").arg(receipts).arg(id).ignore();
            }
            Op::Publish { published, .. } => publish(pipe, cfg, published),
            Op::Flush(_) | Op::Stop => {}
        }
    }
    Built {
        pipes,
        order,
        taken,
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};

    use redis::Commands as _;

    use super::*;
    use crate::redis_store::scripts::{ACCEPT_LUA, FINISH_LUA, KV_LUA};

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
            .arg(cfg.stream(0))
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
            let e: String = c.xadd(cfg.stream(0), "*", &[("rec", "x")]).expect("xadd");
            let _: redis::Value = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(GROUP)
                .arg("n1")
                .arg("STREAMS")
                .arg(cfg.stream(0))
                .arg(">")
                .query(&mut c)
                .expect("read");
            let _: () = c.hset(cfg.state(0), 7, "s").expect("state");
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
            let built = build(
                &cfg,
                &script,
                &[op],
                &entries,
                &Codec::plain(),
                &Groups::each(&cfg),
            );
            let bytes = built.pipes[0].get_packed_pipeline();
            let whole = cut >= bytes.len();
            let mut raw = std::net::TcpStream::connect(("127.0.0.1", r.port)).expect("connect");
            raw.write_all(&bytes[..cut.min(bytes.len())])
                .expect("write");
            raw.shutdown(std::net::Shutdown::Write).expect("shutdown");
            let mut sink = Vec::new();
            let _ = raw.read_to_end(&mut sink);
            let pending: redis::streams::StreamPendingCountReply = redis::cmd("XPENDING")
                .arg(cfg.stream(0))
                .arg(GROUP)
                .arg(&e)
                .arg(&e)
                .arg(1)
                .query(&mut c)
                .expect("xpending");
            let still = !pending.ids.is_empty();
            let owed: bool = c.hexists(cfg.receipts(0), 7).expect("hexists");
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
                .arg(cfg.stream(0))
                .arg(GROUP)
                .arg(&e)
                .cmd("XDEL")
                .arg(cfg.stream(0))
                .arg(&e)
                .cmd("DEL")
                .arg(cfg.receipts(0))
                .arg(cfg.state(0))
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
