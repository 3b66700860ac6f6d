//! Accepts whose outcome was lost. When a pipeline fails (the connection broke, a
//! command timed out, Redis restarted), its accepts were refused to their brands,
//! yet Redis may have run them: the reply is what was lost. Such a message sits in
//! this node's pending list and would go out at the node's next restart, after the
//! brand was told it was not taken (and had sent it again).
//!
//! So the writer keeps the ids of every refused accept of a failed pipeline (a
//! bounded set) and, once Redis answers again and before the store reports itself
//! healthy (accepts are refused at the door until then), looks them up among this
//! node's pending entries: an entry found is taken out (`XACK`, `XDEL`) with the
//! idempotency record its accept wrote, so that a refusal always means "not
//! taken". Counted in `otpgw_store_unknown_accepts_total{outcome}`: `cancelled`
//! (Redis had run it), `absent` (it had not).
//!
//! What this cannot cover, said in docs/operations.md: a node killed before it could
//! look (its pending list is recovered at restart as it is), and an entry another
//! node claimed meanwhile (only when this node's lease ran out during the outage).

use std::collections::HashMap;

use crate::redis_store::link::Link;
use otpgw_core::store::StoreError;

use super::{GROUP, RedisConfig, err};
use crate::codec::Codec;

/// Most refused accepts remembered; beyond that the oldest doubt is given up (and
/// counted as `forgotten`): the refused message may then still go out.
const MAX_DOUBTS: usize = 200_000;

/// Entries read per look-up round trip.
const PAGE: usize = 1000;

/// How far before the last entry known accepted the look-up starts (an entry id is
/// Redis's clock in ms and a sequence).
const MARGIN_MS: u64 = 1000;

/// The doubts of every partition (each has its own stream; one on one Redis).
#[derive(Default)]
pub(super) struct Doubts(Vec<Doubt>);

impl Doubts {
    fn of(&mut self, k: u16) -> &mut Doubt {
        let k = usize::from(k);
        if self.0.len() <= k {
            self.0.resize_with(k + 1, Doubt::default);
        }
        &mut self.0[k]
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.iter().all(Doubt::is_empty)
    }

    /// See [`Doubt::answered`]: in partition `k`.
    pub(super) fn answered(&mut self, k: u16, entry: &str) {
        self.of(k).answered(entry);
    }

    /// See [`Doubt::lost`]: in partition `k`.
    pub(super) fn lost(&mut self, k: u16, id: u64, once_key: Option<String>) {
        self.of(k).lost(id, once_key);
    }

    /// [`Doubt::settle`] in every partition, a failure logged (the doubts are kept
    /// for the next try); whether all succeeded.
    pub(super) async fn try_settle(
        &mut self,
        cfg: &RedisConfig,
        conn: &mut Link,
        codec: &Codec,
    ) -> bool {
        let mut all = true;
        for (k, d) in (0u16..).zip(self.0.iter_mut()) {
            if let Err(e) = d.settle(cfg, k, conn, codec).await {
                tracing::warn!(error = %e, partition = k, "cannot look up the accepts whose outcome redis lost yet");
                all = false;
            }
        }
        all
    }
}

/// The refused accepts of one partition whose outcome is unknown, and where to
/// look for them.
#[derive(Default)]
pub(super) struct Doubt {
    /// Message id -> the idempotency record its accept would have written.
    ids: HashMap<u64, Option<String>>,
    /// Redis's clock (ms) in the stream entry of the newest accept answered so far.
    last_ms: Option<u64>,
    /// Where the look-up starts: set at the first doubt, from `last_ms`.
    from: String,
}

impl Doubt {
    pub(super) fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// A batch's newest accept was answered with this stream entry (once a batch:
    /// nothing is kept per message).
    pub(super) fn answered(&mut self, entry: &str) {
        if let Some(ms) = entry.split('-').next().and_then(|ms| ms.parse().ok()) {
            self.last_ms = Some(ms);
        }
    }

    /// An accept's pipeline failed: Redis may or may not have run it.
    pub(super) fn lost(&mut self, id: u64, once_key: Option<String>) {
        if self.ids.is_empty() {
            // `MARGIN_MS` before the last answered entry; the whole stream without one.
            self.from = self.last_ms.map_or_else(
                || "-".into(),
                |ms| format!("{}-0", ms.saturating_sub(MARGIN_MS)),
            );
        }
        if self.ids.len() >= MAX_DOUBTS {
            metrics::counter!("otpgw_store_unknown_accepts_total", "outcome" => "forgotten")
                .increment(1);
            return;
        }
        self.ids.insert(id, once_key);
    }

    /// Look the doubtful accepts up among this node's pending entries and take out
    /// those Redis ran. On success the set is empty; on an error it is kept for the
    /// next try.
    pub(super) async fn settle(
        &mut self,
        cfg: &RedisConfig,
        k: u16,
        conn: &mut Link,
        codec: &Codec,
    ) -> Result<(), StoreError> {
        if self.ids.is_empty() {
            return Ok(());
        }
        let stream = cfg.stream(k);
        let mut start = self.from.clone();
        let mut found: Vec<(String, Option<String>)> = Vec::new();
        loop {
            let page: redis::streams::StreamPendingCountReply = redis::cmd("XPENDING")
                .arg(&stream)
                .arg(GROUP)
                .arg(&start)
                .arg("+")
                .arg(PAGE)
                .arg(&cfg.node)
                .query_async(conn)
                .await
                .map_err(err)?;
            let Some(last) = page.ids.last() else { break };
            start = next_id(&last.id);
            let mut pipe = redis::pipe();
            for p in &page.ids {
                pipe.cmd("XRANGE").arg(&stream).arg(&p.id).arg(&p.id);
            }
            let reads: Vec<redis::streams::StreamRangeReply> =
                pipe.query_async(conn).await.map_err(err)?;
            for e in reads.into_iter().flat_map(|r| r.ids) {
                let rec: Option<Vec<u8>> = e.get("rec");
                let Some(m) = rec.as_deref().and_then(|r| codec.read_message(r)) else {
                    continue;
                };
                if let Some(key) = self.ids.get(&m.id.0) {
                    found.push((e.id.clone(), key.clone()));
                }
            }
            if page.ids.len() < PAGE {
                break;
            }
        }
        if !found.is_empty() {
            let mut pipe = redis::pipe();
            pipe.atomic();
            for (entry, key) in &found {
                pipe.cmd("XACK").arg(&stream).arg(GROUP).arg(entry).ignore();
                pipe.cmd("XDEL").arg(&stream).arg(entry).ignore();
                if let Some(k) = key {
                    pipe.cmd("DEL").arg(cfg.kv(k)).ignore();
                }
            }
            pipe.query_async::<()>(conn).await.map_err(err)?;
            // Taken out on the primary the replicas follow, or not at all: a stale
            // primary (cut off, about to be demoted) answers the writes but no
            // replica confirms them, and the doubts wait for the real one.
            if cfg.min_replicas > 0 {
                let ms = u64::try_from(cfg.replica_timeout.as_millis()).unwrap_or(u64::MAX);
                let mut shard = conn.at_slot(cfg.slot_of_part(k));
                super::writer::replicated(&mut shard, cfg.min_replicas, ms)
                    .await
                    .map_err(err)?;
            }
        }
        let (cancelled, absent) = (found.len(), self.ids.len() - found.len());
        metrics::counter!("otpgw_store_unknown_accepts_total", "outcome" => "cancelled")
            .increment(cancelled as u64);
        metrics::counter!("otpgw_store_unknown_accepts_total", "outcome" => "absent")
            .increment(absent as u64);
        if cancelled > 0 {
            tracing::warn!(
                cancelled,
                absent,
                "accepts refused to brands while redis failed had been written: taken out"
            );
        }
        self.ids.clear();
        Ok(())
    }
}

/// The smallest entry id after `id` (`XPENDING` ranges are inclusive).
fn next_id(id: &str) -> String {
    match id.split_once('-') {
        Some((ms, seq)) => match seq.parse::<u64>() {
            Ok(s) => format!("{ms}-{}", s.saturating_add(1)),
            Err(_) => id.to_string(),
        },
        None => id.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_look_up_starts_a_margin_before_the_last_answer() {
        let mut d = Doubt::default();
        d.lost(7, None);
        assert_eq!(d.from, "-", "nothing answered yet: all");
        let mut d = Doubt::default();
        d.answered("1700000005000-3");
        d.lost(8, Some("k".into()));
        d.answered("1700000009000-0");
        d.lost(9, None);
        assert_eq!(d.from, "1700000004000-0", "set by the first doubt");
        assert_eq!(d.ids.len(), 2);
        assert_eq!(next_id("1700000004000-41"), "1700000004000-42");
    }
}
