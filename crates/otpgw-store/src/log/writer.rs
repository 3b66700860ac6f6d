//! The log store's writer thread: group commit (one `write` and one `fdatasync`
//! per batch), the index applied after each sync, segment rollover and
//! compaction, and the backlog of writes nobody waits for when a batch fails.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use otpgw_core::clock::now_ms;

use super::frame::{self, HEADER, Rec};
use super::index::{Index, Item, Loc};
use super::{LogConfig, open_head, seg_path, sync_dir};
use crate::codec::Codec;
use crate::record::SendState;
use crate::seal::Unreadable;
use crate::writer::{Answer, Backlog, Op, WriterStats, Writes, answer, log_failed, next_batch};

/// The writer thread.
pub(super) struct Writer {
    pub(super) cfg: LogConfig,
    pub(super) head: u32,
    pub(super) file: File,
    pub(super) size: u64,
    pub(super) index: Arc<parking_lot::RwLock<Index>>,
    pub(super) codec: Arc<Codec>,
    pub(super) stats: Arc<WriterStats>,
    /// A rekey asked for every segment below this one to be compacted (0: none).
    pub(super) rekey_below: Arc<AtomicU32>,
}

/// `kept` sealed again with the active key when it is not (a record that cannot be
/// opened is carried over as it is; the codec reported it).
fn fresh(again: Result<Option<Vec<u8>>, Unreadable>, kept: &[u8]) -> Cow<'_, [u8]> {
    match again {
        Ok(Some(v)) => Cow::Owned(v),
        _ => Cow::Borrowed(kept),
    }
}

impl Writer {
    pub(super) fn run(mut self, writes: Writes) {
        let Writes { rx, pending } = writes;
        let mut batch: Vec<Op> = Vec::with_capacity(self.cfg.batch_max);
        let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
        let mut backlog = Backlog::default();
        let mut last_purge = Instant::now();
        loop {
            let next = next_batch(
                &rx,
                &mut backlog,
                self.cfg.commit_window,
                self.cfg.batch_max,
                self.cfg.purge_interval,
                &mut batch,
            );
            if next.is_err() {
                return;
            }
            if !batch.is_empty() {
                let started = Instant::now();
                buf.clear();
                let answers = self.encode(&batch, &mut buf);
                let ok = match self.append(&buf) {
                    Ok(()) => true,
                    Err(e) => {
                        log_failed("log write failed", &e, batch.len());
                        metrics::counter!("otpgw_store_commit_failures_total").increment(1);
                        backlog.keep_failed(&batch);
                        false
                    }
                };
                self.stats.record(started, batch.len(), ok);
                metrics::gauge!("otpgw_store_backlog_writes").set(backlog.len() as f64);
                if answer(&mut batch, ok, answers, &pending) {
                    return;
                }
            }
            if last_purge.elapsed() >= self.cfg.purge_interval {
                last_purge = Instant::now();
                self.purge();
            }
            loop {
                match self.compact() {
                    Ok(true) if self.rekeying() => {}
                    Ok(_) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "log compaction failed");
                        break;
                    }
                }
            }
        }
    }

    /// Encode a batch as records; answers of accepts with a key and of
    /// compare-and-sets (by position). What the batch changes is seen by its later
    /// writes (a key set, a message accepted), not by the index until it is synced.
    fn encode(&self, batch: &[Op], buf: &mut Vec<u8>) -> Vec<(usize, Answer)> {
        let now = now_ms();
        let idx = self.index.read();
        let mut answers = Vec::new();
        // Versions (and values) this batch sets, ahead of the index.
        let mut kv_now: KvNow<'_> = HashMap::new();
        let mut accepted: HashSet<u64> = HashSet::new();
        let mut stated: HashSet<u64> = HashSet::new();
        let forwarded: HashSet<u64> = batch
            .iter()
            .filter_map(|op| match op {
                Op::Forwarded(id) => Some(*id),
                _ => None,
            })
            .collect();
        let mut skipped: HashSet<u64> = HashSet::new();
        let known = |id: &u64, acc: &HashSet<u64>| acc.contains(id) || idx.msgs.contains_key(id);
        for (i, op) in batch.iter().enumerate() {
            match op {
                Op::Accept { id, rec, once, .. } => match once {
                    None => {
                        frame::encode(&Rec::Accept { id: *id, msg: rec }, buf);
                        accepted.insert(*id);
                    }
                    Some(o) => match accept_once(&idx, &mut kv_now, now, *id, rec, o, buf) {
                        Some(dup) => answers.push((i, dup)),
                        None => {
                            accepted.insert(*id);
                        }
                    },
                },
                Op::Sent(id, _) => {
                    let has_state =
                        stated.contains(id) || idx.msgs.get(id).is_some_and(|m| m.state.is_some());
                    if known(id, &accepted) && !has_state {
                        let st = self.codec.state(otpgw_core::MsgId(*id), &SendState::Sent);
                        frame::encode(
                            &Rec::State {
                                id: *id,
                                state: &st,
                            },
                            buf,
                        );
                        stated.insert(*id);
                    }
                }
                Op::Confirmed(id, st) | Op::Attempts(id, st, _) => {
                    if known(id, &accepted) {
                        frame::encode(&Rec::State { id: *id, state: st }, buf);
                        stated.insert(*id);
                    }
                }
                Op::Finished {
                    id,
                    receipt,
                    now_ms,
                    ..
                } => {
                    // A receipt forwarded within the batch need not be written.
                    let keep = receipt.as_ref().filter(|_| !forwarded.contains(id));
                    if receipt.is_some() && keep.is_none() {
                        skipped.insert(*id);
                    }
                    frame::encode(
                        &Rec::Finished {
                            id: *id,
                            done_ms: keep.map_or(*now_ms, |(d, _)| *d),
                            receipt: keep.map(|(_, r)| r.as_slice()),
                        },
                        buf,
                    );
                }
                Op::Forwarded(id) => {
                    if !skipped.contains(id) {
                        frame::encode(&Rec::Forwarded { id: *id }, buf);
                    }
                }
                Op::Owe(id, done_ms, rec) => {
                    frame::encode(
                        &Rec::Owe {
                            id: *id,
                            done_ms: *done_ms,
                            job: rec,
                        },
                        buf,
                    );
                }
                Op::Status { id, rec, done_ms } => {
                    if *done_ms > 0 {
                        frame::encode(
                            &Rec::Status {
                                id: *id,
                                done_ms: *done_ms,
                                status: rec,
                            },
                            buf,
                        );
                    }
                }
                Op::Kv {
                    kv,
                    expect,
                    expires_ms,
                    ..
                } => {
                    let a = compare_and_set(&idx, &mut kv_now, now, kv, *expect, *expires_ms, buf);
                    answers.push((i, a));
                }
                Op::Flush(_) | Op::Stop | Op::Publish { .. } => {}
            }
        }
        answers
    }

    /// Write `buf` at the head (a new segment when it would overflow), sync it, and
    /// apply it to the index. On failure the head is cut back to where it was.
    fn append(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        if self.size > 0 && self.size + buf.len() as u64 > self.cfg.segment_bytes {
            self.roll()?;
        }
        let res = self
            .file
            .write_all(buf)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = res {
            // Leave no half batch behind (a full disk, an IO error).
            let _ = self.file.set_len(self.size);
            let _ = self.file.sync_data();
            return Err(e);
        }
        let base = self.size;
        self.size += buf.len() as u64;
        let (found, _) = frame::scan(buf);
        let mut idx = self.index.write();
        idx.grew(self.head, buf.len() as u64);
        for f in &found {
            if let Some(rec) = frame::decode(f.body) {
                let loc = Loc {
                    seg: self.head,
                    off: (base + f.offset as u64) as u32,
                    len: f.len as u32,
                };
                idx.apply(&rec, loc);
            }
        }
        Ok(())
    }

    /// Close the head segment and start the next.
    fn roll(&mut self) -> std::io::Result<()> {
        let next = self.head + 1;
        let (file, size) =
            open_head(&self.cfg.dir, next).map_err(|e| std::io::Error::other(e.to_string()))?;
        self.file = file;
        self.size = size;
        self.head = next;
        self.index.write().segs.entry(next).or_default();
        Ok(())
    }

    fn purge(&self) {
        let expired = self.index.write().purge(
            now_ms(),
            self.cfg.finished_retention.as_millis() as u64,
            self.cfg.status_max,
            self.cfg.receipt_retention.as_millis() as u64,
        );
        if expired > 0 {
            metrics::counter!("otpgw_receipts_expired_total").increment(expired);
            tracing::warn!(
                receipts = expired,
                "receipts dropped after their retention: their brands never bound"
            );
        }
    }

    /// Whether a rekey still waits for segments to be compacted.
    fn rekeying(&self) -> bool {
        let below = self.rekey_below.load(Ordering::Acquire);
        below > 0
            && self
                .index
                .read()
                .segs
                .keys()
                .next()
                .is_some_and(|&n| n < below)
    }

    /// Compact the oldest segment when it is mostly dead, there are too many, or a
    /// rekey asks for it (the head is closed first). What is carried over is sealed
    /// again with the active key when it is not. Returns whether it compacted one.
    fn compact(&mut self) -> std::io::Result<bool> {
        let rekey = self.rekeying();
        if rekey && self.head < self.rekey_below.load(Ordering::Acquire) {
            self.roll()?;
        }
        let (oldest, st, count) = {
            let idx = self.index.read();
            let Some((&n, st)) = idx.segs.iter().next() else {
                return Ok(false);
            };
            (n, *st, idx.segs.len())
        };
        if oldest == self.head || !(rekey || st.live * 2 < st.size || count > self.cfg.max_segments)
        {
            return Ok(false);
        }
        let items = self.index.read().items_in(oldest);
        let mut buf = Vec::new();
        self.carry_over(&items, &mut buf)?;
        self.append(&buf)?;
        let left = self.index.read().segs.get(&oldest).map_or(0, |s| s.live);
        if left > 0 {
            tracing::error!(
                segment = oldest,
                live = left,
                "compaction left live bytes: segment kept"
            );
            return Ok(false);
        }
        std::fs::remove_file(seg_path(&self.cfg.dir, oldest))?;
        sync_dir(&self.cfg.dir)?;
        self.index.write().drop_segment(oldest);
        metrics::counter!("otpgw_store_segments_compacted_total").increment(1);
        Ok(true)
    }

    /// The live items of a segment being compacted, encoded again into `buf`
    /// (each sealed again with the active key when it is not).
    fn carry_over(&self, items: &[Item], buf: &mut Vec<u8>) -> std::io::Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let codec = self.codec.clone();
        let mut files: HashMap<u32, File> = HashMap::new();
        let dir = &self.cfg.dir;
        let mut read = |l: Loc| -> std::io::Result<Vec<u8>> {
            let f = match files.entry(l.seg) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(File::open(seg_path(dir, l.seg))?)
                }
            };
            let mut b = vec![0u8; l.len as usize];
            f.read_exact_at(&mut b, u64::from(l.off))?;
            Ok(b)
        };
        let idx = self.index.read();
        for item in items {
            match item {
                Item::Message(id) => {
                    let Some(m) = idx.msgs.get(id).copied() else {
                        continue;
                    };
                    let raw = read(m.accept)?;
                    if let Some(Rec::Accept { msg, .. } | Rec::AcceptOnce { msg, .. }) =
                        frame::decode(&raw[HEADER..])
                    {
                        let msg = fresh(codec.reseal_message(msg), msg);
                        frame::encode(&Rec::Accept { id: *id, msg: &msg }, buf);
                    }
                    if let Some(s) = m.state {
                        // The state after its message: replay sees them in order.
                        let raw = read(s)?;
                        match frame::decode(&raw[HEADER..]) {
                            Some(Rec::State { id, state }) => {
                                let state = fresh(codec.reseal_state(id, state), state);
                                frame::encode(&Rec::State { id, state: &state }, buf);
                            }
                            _ => buf.extend_from_slice(&raw),
                        }
                    }
                }
                Item::Receipt(id) => {
                    let Some((l, done_ms)) = idx.receipts.get(id).copied() else {
                        continue;
                    };
                    let raw = read(l)?;
                    if let Some(
                        Rec::Finished {
                            receipt: Some(job), ..
                        }
                        | Rec::Owe { job, .. },
                    ) = frame::decode(&raw[HEADER..])
                    {
                        let job = fresh(codec.reseal_receipt(job), job);
                        frame::encode(
                            &Rec::Owe {
                                id: *id,
                                done_ms,
                                job: &job,
                            },
                            buf,
                        );
                    }
                }
                Item::Status(id) => {
                    if let Some((l, _)) = idx.status.get(id).copied() {
                        let raw = read(l)?;
                        match frame::decode(&raw[HEADER..]) {
                            Some(Rec::Status {
                                id,
                                done_ms,
                                status,
                            }) => {
                                let status = fresh(codec.reseal_status(status), status);
                                let rec = Rec::Status {
                                    id,
                                    done_ms,
                                    status: &status,
                                };
                                frame::encode(&rec, buf);
                            }
                            _ => buf.extend_from_slice(&raw),
                        }
                    }
                }
                Item::Kv(key) => {
                    if let Some(e) = idx.kv.get(key) {
                        let value = fresh(codec.reseal_value(key, &e.value), &e.value);
                        frame::encode(
                            &Rec::Kv {
                                key: key.clone(),
                                version: e.version,
                                expires_ms: e.expires_ms,
                                value: &value,
                            },
                            buf,
                        );
                    }
                }
            }
        }
        Ok(())
    }
}

/// Key-value versions and values a batch sets, ahead of the index.
type KvNow<'a> = HashMap<&'a str, (u64, &'a [u8])>;

/// An accept with an idempotency key: the record, unless the key is live (in the
/// index or set earlier in the batch): then its value, and nothing is written.
fn accept_once<'a>(
    idx: &Index,
    kv_now: &mut KvNow<'a>,
    now: u64,
    id: u64,
    rec: &[u8],
    once: &'a (String, Vec<u8>, u64),
    buf: &mut Vec<u8>,
) -> Option<Answer> {
    let (key, value, expires) = once;
    let found = match kv_now.get(key.as_str()) {
        Some((_, v)) => Some(v.to_vec()),
        None => (idx.kv_version(key, now) > 0)
            .then(|| idx.kv.get(key).map(|e| e.value.clone()))
            .flatten(),
    };
    if let Some(v) = found {
        return Some(Answer::Duplicate(v));
    }
    frame::encode(
        &Rec::AcceptOnce {
            id,
            msg: rec,
            key: key.clone(),
            value,
            expires_ms: *expires,
        },
        buf,
    );
    kv_now.insert(key, (1, value));
    None
}

/// A compare-and-set: the record of the new version when the current one (the
/// batch's, else the index's) is `expect`.
fn compare_and_set<'a>(
    idx: &Index,
    kv_now: &mut KvNow<'a>,
    now: u64,
    kv: &'a (String, Vec<u8>),
    expect: u64,
    expires_ms: u64,
    buf: &mut Vec<u8>,
) -> Answer {
    let (key, value) = kv;
    let current = kv_now
        .get(key.as_str())
        .map(|(v, _)| *v)
        .unwrap_or_else(|| idx.kv_version(key, now));
    if current != expect {
        return Answer::Version(None);
    }
    frame::encode(
        &Rec::Kv {
            key: key.clone(),
            version: current + 1,
            expires_ms,
            value,
        },
        buf,
    );
    kv_now.insert(key, (current + 1, value));
    Answer::Version(Some(current + 1))
}
