//! The log store: an append-only, segmented log of state changes on local disk,
//! with its index in memory. One record per change (an accepted message, a carrier
//! state, a final state with the receipt owed, a receipt forwarded, a status, a
//! key-value version), written by one thread with group commit: a batch is one
//! `write` and one `fdatasync`, however many messages it carries, where a B-tree
//! store rewrites pages for each.
//!
//! - **Records** ([`frame`]): length, CRC32, kind, body. A crash can tear only the
//!   last write: at start the last segment is read up to its first damaged record
//!   and cut there (nothing acknowledged can be in the cut part, since an
//!   acknowledgement waits for the `fdatasync` of the whole batch). A damaged record
//!   anywhere else is corruption, and the store refuses to open.
//! - **Segments**: `seg-NNNNNNNN.log` of up to `segment_bytes`; a batch never spans
//!   two. A new segment's directory entry is synced before it is written to.
//! - **Index** ([`index`]): the live items and where their records are, built by
//!   replaying the segments at start and kept by applying each batch after its
//!   sync, with the same code. Reads (key-value records, statuses) are answered from
//!   it.
//! - **Compaction**: only the oldest segment is ever removed. When less than half
//!   of it is live, or more than `max_segments` exist, its live items (unfinished
//!   messages with their carrier state, receipts owed, statuses, key-value records)
//!   are written again at the head, synced, and the segment is deleted. Because the
//!   oldest goes first, a tombstone (a final state, a receipt forwarded) is never
//!   needed after the records it cancels are gone.
//! - **Full disk**: a batch that cannot be written is cut back off the segment and
//!   every waiter is told it failed (brands get a temporary error); the store
//!   reports unhealthy until a batch succeeds again.

mod frame;
mod index;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use otpgw_core::clock::now_ms;
use otpgw_core::outbox::ReceiptJob;
use otpgw_core::status::MessageStatus;
use otpgw_core::store::{Once, Recovered, Store, StoreError, StoreFuture, Ticket, Versioned};
use otpgw_core::{DeliveryState, Message, MsgId};

use crate::counters::Counters;
use crate::embedded::WriterStats;
use crate::record::{self, CarrierState};
use crate::writes::{self, Answer, Op};

use frame::{HEADER, Rec};
use index::{Index, Item, Loc};

/// Settings of the log store.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// The directory of the segments.
    pub dir: PathBuf,
    /// Wait this long after the first write of a batch for more to join it.
    pub commit_window: Duration,
    pub batch_max: usize,
    pub max_pending_accepts: usize,
    /// How long final statuses are kept.
    pub finished_retention: Duration,
    /// How long a receipt waits for its brand.
    pub receipt_retention: Duration,
    pub purge_interval: Duration,
    /// A segment is closed past this size.
    pub segment_bytes: u64,
    /// Beyond this many segments the oldest is compacted whatever its live share.
    pub max_segments: usize,
    /// Final statuses kept at most (the oldest beyond go first).
    pub status_max: usize,
}

impl LogConfig {
    /// Defaults in `dir`: 200 us commit window, 8192 writes per batch, 100,000
    /// pending accepts, statuses an hour (2,000,000 at most), receipts 3 days, 64 MiB
    /// segments, at most 8.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            commit_window: Duration::from_micros(200),
            batch_max: 8192,
            max_pending_accepts: 100_000,
            finished_retention: Duration::from_secs(3600),
            receipt_retention: Duration::from_secs(3 * 86_400),
            purge_interval: Duration::from_secs(5),
            segment_bytes: 64 << 20,
            max_segments: 8,
            status_max: 2_000_000,
        }
    }
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn seg_path(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("seg-{n:08}.log"))
}

/// The segments in `dir`, in order.
fn segments(dir: &Path) -> std::io::Result<Vec<u32>> {
    let mut v: Vec<u32> = std::fs::read_dir(dir)?
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_prefix("seg-")?
                .strip_suffix(".log")?
                .parse()
                .ok()
        })
        .collect();
    v.sort_unstable();
    Ok(v)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The body of the record at `l` in `buf` (a whole segment).
fn body_at(buf: &[u8], l: Loc) -> Option<&[u8]> {
    let (s, e) = (l.off as usize + HEADER, l.off as usize + l.len as usize);
    buf.get(s..e)
}

/// See the module docs.
pub struct LogStore {
    cfg: LogConfig,
    tx: Sender<Op>,
    pending_accepts: Arc<AtomicUsize>,
    index: Arc<parking_lot::RwLock<Index>>,
    stats: Arc<WriterStats>,
    writer: parking_lot::Mutex<Option<std::thread::JoinHandle<()>>>,
    counters: Counters,
    recovered: parking_lot::Mutex<Option<Recovered>>,
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("dir", &self.cfg.dir)
            .finish_non_exhaustive()
    }
}

impl LogStore {
    /// Open (or create) the log in `cfg.dir`: replay it, cut a torn tail, and start
    /// the writer thread.
    pub fn open(cfg: LogConfig) -> Result<Self, StoreError> {
        std::fs::create_dir_all(&cfg.dir).map_err(err)?;
        let started = Instant::now();
        let segs = segments(&cfg.dir).map_err(err)?;
        let mut index = Index::default();
        let mut bufs: HashMap<u32, Vec<u8>> = HashMap::new();
        for (i, &n) in segs.iter().enumerate() {
            let path = seg_path(&cfg.dir, n);
            let mut buf = std::fs::read(&path).map_err(err)?;
            let (found, valid) = frame::scan(&buf);
            if valid < buf.len() {
                if i + 1 < segs.len() {
                    return Err(StoreError::Corrupt(format!(
                        "{}: damaged record at byte {valid} of {}",
                        path.display(),
                        buf.len()
                    )));
                }
                tracing::warn!(segment = %path.display(), kept = valid, cut = buf.len() - valid, "torn last write cut off the log");
                let f = OpenOptions::new().write(true).open(&path).map_err(err)?;
                f.set_len(valid as u64).map_err(err)?;
                f.sync_all().map_err(err)?;
            }
            for f in &found {
                let Some(rec) = frame::decode(f.body) else {
                    continue;
                };
                let loc = Loc {
                    seg: n,
                    off: f.offset as u32,
                    len: f.len as u32,
                };
                index.apply(&rec, loc);
            }
            index.grew(n, valid as u64);
            buf.truncate(valid);
            bufs.insert(n, buf);
        }
        let now = now_ms();
        let expired = index.purge(
            now,
            cfg.finished_retention.as_millis() as u64,
            cfg.status_max,
            cfg.receipt_retention.as_millis() as u64,
        );
        if expired > 0 {
            metrics::counter!("otpgw_receipts_expired_total").increment(expired);
        }
        let recovered = recovered(&index, &bufs);
        drop(bufs);
        let head = segs.last().copied().unwrap_or(1);
        let (file, size) = open_head(&cfg.dir, head)?;
        index.segs.entry(head).or_default();
        tracing::info!(
            segments = segs.len(),
            messages = index.msgs.len(),
            receipts = index.receipts.len(),
            ms = started.elapsed().as_millis() as u64,
            "log store replayed"
        );
        let index = Arc::new(parking_lot::RwLock::new(index));
        let (tx, rx) = mpsc::channel();
        let pending = Arc::new(AtomicUsize::new(0));
        let stats = Arc::new(WriterStats::default());
        let w = Writer {
            cfg: cfg.clone(),
            head,
            file,
            size,
            index: index.clone(),
            pending: pending.clone(),
            stats: stats.clone(),
        };
        let writer = std::thread::Builder::new()
            .name("otpgw-log".into())
            .spawn(move || w.run(rx))
            .map_err(err)?;
        Ok(Self {
            cfg,
            tx,
            pending_accepts: pending,
            index,
            stats,
            writer: parking_lot::Mutex::new(Some(writer)),
            counters: Counters::new(1_000_000),
            recovered: parking_lot::Mutex::new(Some(recovered)),
        })
    }

    /// The writer's counters.
    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// Bytes of the segments on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.index.read().segs.values().map(|s| s.size).sum()
    }

    /// Segments on disk.
    pub fn segment_count(&self) -> usize {
        self.index.read().segs.len()
    }

    /// Stop the writer after it wrote everything queued before this call.
    pub fn close(&self) {
        let _ = self.tx.send(Op::Stop);
        if let Some(h) = self.writer.lock().take() {
            let _ = h.join();
        }
    }
}

impl Drop for LogStore {
    fn drop(&mut self) {
        self.close();
    }
}

/// Open the head segment for appending; returns it and its size.
fn open_head(dir: &Path, n: u32) -> Result<(File, u64), StoreError> {
    let path = seg_path(dir, n);
    let new = !path.exists();
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(&path)
        .map_err(err)?;
    if new {
        sync_dir(dir).map_err(err)?;
    }
    let size = f.metadata().map_err(err)?.len();
    Ok((f, size))
}

/// What the index says the previous run left, read from the segments.
fn recovered(index: &Index, bufs: &HashMap<u32, Vec<u8>>) -> Recovered {
    let body = |l: Loc| bufs.get(&l.seg).and_then(|b| body_at(b, l));
    let mut out = Recovered::default();
    for m in index.msgs.values() {
        let msg = body(m.accept)
            .and_then(frame::decode)
            .and_then(|r| match r {
                Rec::Accept { msg, .. } | Rec::AcceptOnce { msg, .. } => {
                    record::decode_message(msg)
                }
                _ => None,
            });
        let Some(msg) = msg else {
            tracing::error!(at = ?m.accept, "unreadable message record skipped");
            continue;
        };
        let state = m
            .state
            .and_then(body)
            .and_then(frame::decode)
            .and_then(|r| match r {
                Rec::State { state, .. } => record::decode_state(state),
                _ => None,
            });
        match state {
            Some(CarrierState::Confirmed {
                carrier,
                carrier_id,
            }) => out.confirmed.push((msg, carrier, carrier_id)),
            Some(CarrierState::Attempts(list)) => out.attempts.push((msg, list)),
            Some(CarrierState::Sent) => out.unconfirmed.push((msg, true)),
            None => out.unconfirmed.push((msg, false)),
        }
    }
    for (l, _) in index.receipts.values() {
        let job = body(*l).and_then(frame::decode).and_then(|r| match r {
            Rec::Finished {
                receipt: Some(j), ..
            }
            | Rec::Owe { job: j, .. } => record::decode_receipt(j),
            _ => None,
        });
        if let Some(j) = job {
            out.receipts.push(j);
        }
    }
    out.receipts.sort_by_key(|j| j.done_ms);
    out.unconfirmed.sort_by_key(|(m, _)| m.id);
    out
}

/// The writer thread.
struct Writer {
    cfg: LogConfig,
    head: u32,
    file: File,
    size: u64,
    index: Arc<parking_lot::RwLock<Index>>,
    pending: Arc<AtomicUsize>,
    stats: Arc<WriterStats>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Op>) {
        let mut batch: Vec<Op> = Vec::with_capacity(self.cfg.batch_max);
        let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
        let mut backlog = writes::Backlog::default();
        let mut last_purge = Instant::now();
        loop {
            let next = writes::next_batch(
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
                        writes::log_failed("log write failed", &e, batch.len());
                        metrics::counter!("otpgw_store_commit_failures_total").increment(1);
                        backlog.keep_failed(&batch);
                        false
                    }
                };
                self.stats.record(started, batch.len(), ok);
                metrics::gauge!("otpgw_store_backlog_writes").set(backlog.len() as f64);
                if writes::answer(&mut batch, ok, answers, &self.pending) {
                    return;
                }
            }
            if last_purge.elapsed() >= self.cfg.purge_interval {
                last_purge = Instant::now();
                self.purge();
            }
            if let Err(e) = self.compact() {
                tracing::error!(error = %e, "log compaction failed");
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
        let mut kv_now: HashMap<&str, (u64, &[u8])> = HashMap::new();
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
                    Some(o) => {
                        let (key, value, expires) = &**o;
                        let found = match kv_now.get(key.as_str()) {
                            Some((_, v)) => Some(v.to_vec()),
                            None => (idx.kv_version(key, now) > 0)
                                .then(|| idx.kv.get(key).map(|e| e.value.clone()))
                                .flatten(),
                        };
                        if let Some(v) = found {
                            answers.push((i, Answer::Duplicate(v)));
                            continue;
                        }
                        frame::encode(
                            &Rec::AcceptOnce {
                                id: *id,
                                msg: rec,
                                key: key.clone(),
                                value,
                                expires_ms: *expires,
                            },
                            buf,
                        );
                        kv_now.insert(key, (1, value));
                        accepted.insert(*id);
                    }
                },
                Op::Sent(id, _) => {
                    let has_state =
                        stated.contains(id) || idx.msgs.get(id).is_some_and(|m| m.state.is_some());
                    if known(id, &accepted) && !has_state {
                        let st = record::encode_state(&CarrierState::Sent);
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
                    let (key, value) = &**kv;
                    let current = kv_now
                        .get(key.as_str())
                        .map(|(v, _)| *v)
                        .unwrap_or_else(|| idx.kv_version(key, now));
                    if current != *expect {
                        answers.push((i, Answer::Version(None)));
                        continue;
                    }
                    frame::encode(
                        &Rec::Kv {
                            key: key.clone(),
                            version: current + 1,
                            expires_ms: *expires_ms,
                            value,
                        },
                        buf,
                    );
                    kv_now.insert(key, (current + 1, value));
                    answers.push((i, Answer::Version(Some(current + 1))));
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

    /// Compact the oldest segment when it is mostly dead or there are too many.
    fn compact(&mut self) -> std::io::Result<()> {
        let (oldest, st, count) = {
            let idx = self.index.read();
            let Some((&n, st)) = idx.segs.iter().next() else {
                return Ok(());
            };
            (n, *st, idx.segs.len())
        };
        if oldest == self.head || !(st.live * 2 < st.size || count > self.cfg.max_segments) {
            return Ok(());
        }
        let items = self.index.read().items_in(oldest);
        let mut buf = Vec::new();
        if !items.is_empty() {
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
            for item in &items {
                match item {
                    Item::Message(id) => {
                        let Some(m) = idx.msgs.get(id).copied() else {
                            continue;
                        };
                        let raw = read(m.accept)?;
                        if let Some(Rec::Accept { msg, .. } | Rec::AcceptOnce { msg, .. }) =
                            frame::decode(&raw[HEADER..])
                        {
                            frame::encode(&Rec::Accept { id: *id, msg }, &mut buf);
                        }
                        if let Some(s) = m.state {
                            // The state after its message: replay sees them in order.
                            let raw = read(s)?;
                            buf.extend_from_slice(&raw);
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
                            frame::encode(
                                &Rec::Owe {
                                    id: *id,
                                    done_ms,
                                    job,
                                },
                                &mut buf,
                            );
                        }
                    }
                    Item::Status(id) => {
                        if let Some((l, _)) = idx.status.get(id).copied() {
                            buf.extend_from_slice(&read(l)?);
                        }
                    }
                    Item::Kv(key) => {
                        if let Some(e) = idx.kv.get(key) {
                            frame::encode(
                                &Rec::Kv {
                                    key: key.clone(),
                                    version: e.version,
                                    expires_ms: e.expires_ms,
                                    value: &e.value,
                                },
                                &mut buf,
                            );
                        }
                    }
                }
            }
        }
        self.append(&buf)?;
        let left = self.index.read().segs.get(&oldest).map_or(0, |s| s.live);
        if left > 0 {
            tracing::error!(
                segment = oldest,
                live = left,
                "compaction left live bytes: segment kept"
            );
            return Ok(());
        }
        std::fs::remove_file(seg_path(&self.cfg.dir, oldest))?;
        sync_dir(&self.cfg.dir)?;
        self.index.write().drop_segment(oldest);
        metrics::counter!("otpgw_store_segments_compacted_total").increment(1);
        Ok(())
    }
}

impl Store for LogStore {
    fn accept<'a>(&'a self, msg: &'a Message) -> StoreFuture<'a, ()> {
        writes::accept(
            &self.tx,
            &self.pending_accepts,
            self.cfg.max_pending_accepts,
            msg,
            "log write failed",
        )
    }

    fn submitted(&self, id: MsgId) -> Ticket {
        writes::submitted(&self.tx, id)
    }

    fn carrier_accepted(&self, id: MsgId, carrier: &str, carrier_msg_id: &str) {
        writes::carrier_accepted(&self.tx, id, carrier, carrier_msg_id);
    }

    fn attempts(&self, id: MsgId, list: &[otpgw_core::attempts::Attempt]) -> Ticket {
        writes::attempts(&self.tx, id, list)
    }

    fn owe(&self, job: &ReceiptJob) {
        writes::owe(&self.tx, job);
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

    fn record_status(&self, status: &MessageStatus) {
        if status.done_ms > 0 {
            writes::status(&self.tx, status);
        }
    }

    fn message_status(&self, id: MsgId) -> StoreFuture<'_, Option<MessageStatus>> {
        let loc = self.index.read().status.get(&id.0).map(|(l, _)| *l);
        let r = (|| {
            let Some(l) = loc else { return Ok(None) };
            let f = File::open(seg_path(&self.cfg.dir, l.seg)).map_err(err)?;
            let mut b = vec![0u8; l.len as usize];
            f.read_exact_at(&mut b, u64::from(l.off)).map_err(err)?;
            Ok(match frame::decode(&b[HEADER..]) {
                Some(Rec::Status { status, .. }) => record::decode_status(status),
                _ => None,
            })
        })();
        Box::pin(std::future::ready(r))
    }

    fn accept_once<'a>(
        &'a self,
        msg: &'a Message,
        key: &'a str,
        value: Vec<u8>,
        expires_ms: u64,
    ) -> StoreFuture<'a, Once> {
        writes::accept_once(
            &self.tx,
            &self.pending_accepts,
            self.cfg.max_pending_accepts,
            msg,
            Some((key.to_string(), value, expires_ms)),
            "log write failed",
        )
    }

    fn kv_get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Versioned>> {
        let now = now_ms();
        let v = self.index.read().kv.get(key).and_then(|e| {
            (e.expires_ms > now).then(|| Versioned {
                version: e.version,
                value: e.value.clone(),
            })
        });
        Box::pin(std::future::ready(Ok(v)))
    }

    fn kv_put<'a>(
        &'a self,
        key: &'a str,
        expect: u64,
        value: Vec<u8>,
        expires_ms: u64,
    ) -> StoreFuture<'a, Option<u64>> {
        writes::kv_put(&self.tx, key, expect, value, expires_ms, "log write failed")
    }

    fn count<'a>(&'a self, key: &'a str, window_ms: u64, now_ms: u64) -> StoreFuture<'a, u64> {
        Box::pin(std::future::ready(Ok(self
            .counters
            .count(key, window_ms, now_ms))))
    }

    fn recover(&self, _now_ms: u64) -> Result<Recovered, StoreError> {
        Ok(self.recovered.lock().take().unwrap_or_default())
    }

    fn flush(&self) -> Ticket {
        writes::flush(&self.tx)
    }

    fn is_durable(&self) -> bool {
        true
    }

    fn is_healthy(&self) -> bool {
        !self.stats.last_failed.load(Ordering::Relaxed)
    }

    fn name(&self) -> &'static str {
        "log"
    }
}
