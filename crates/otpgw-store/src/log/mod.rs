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
mod writer;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use otpgw_core::MsgId;
use otpgw_core::clock::now_ms;
use otpgw_core::status::MessageStatus;
use otpgw_core::store::{Cluster, Recovered, StoreError, StoreFuture, Versioned};

use crate::codec::Codec;
use crate::counters::Counters;
use crate::durable::{Backend, Durable};
use crate::record;
use crate::writer::{WriteQueue, WriterStats, WriterThread};

use frame::{HEADER, Rec};
use index::{Index, Loc};
use writer::Writer;

/// Settings of the log store.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// The record codec (encryption at rest); plain by default.
    pub codec: Arc<Codec>,
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
            codec: Arc::new(Codec::plain()),
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

/// The log backend: the index, the writer thread, what readers need.
pub struct Log {
    cfg: LogConfig,
    codec: Arc<Codec>,
    index: Arc<parking_lot::RwLock<Index>>,
    stats: Arc<WriterStats>,
    writer: WriterThread,
    counters: Counters,
    recovered: parking_lot::Mutex<Option<Recovered>>,
    rekey_below: Arc<AtomicU32>,
}

/// See the module docs.
pub type LogStore = Durable<Log>;

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("dir", &self.cfg.dir)
            .finish_non_exhaustive()
    }
}

impl Durable<Log> {
    /// Open (or create) the log in `cfg.dir`: replay it, cut a torn tail, and start
    /// the writer thread.
    pub fn open(cfg: LogConfig) -> Result<Self, StoreError> {
        let codec = cfg.codec.clone();
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
        let recovered = recovered(&index, &bufs, &codec);
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
        let (queue, writes) =
            WriteQueue::new(cfg.max_pending_accepts, "log write failed", codec.clone());
        let stats = Arc::new(WriterStats::default());
        let rekey_below = Arc::new(AtomicU32::new(0));
        let w = Writer {
            cfg: cfg.clone(),
            head,
            file,
            size,
            index: index.clone(),
            codec: codec.clone(),
            stats: stats.clone(),
            rekey_below: rekey_below.clone(),
        };
        let writer = WriterThread::spawn("otpgw-log", move || w.run(writes)).map_err(err)?;
        Ok(Durable {
            queue,
            backend: Log {
                cfg,
                codec,
                index,
                stats,
                writer,
                counters: Counters::new(1_000_000),
                recovered: parking_lot::Mutex::new(Some(recovered)),
                rekey_below,
            },
        })
    }

    /// The writer's counters.
    pub fn stats(&self) -> &WriterStats {
        &self.backend.stats
    }

    /// Bytes of the segments on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.backend
            .index
            .read()
            .segs
            .values()
            .map(|s| s.size)
            .sum()
    }

    /// Segments on disk.
    pub fn segment_count(&self) -> usize {
        self.backend.index.read().segs.len()
    }

    /// Stop the writer after it wrote everything queued before this call.
    /// Seal every record again with the active key: every segment, the head
    /// included, is compacted (what is live written again, sealed with the active
    /// key; the old segment deleted). Returns how many segments were rewritten;
    /// fails when one could not be within `timeout` or a record could not be
    /// opened (a key missing: nothing is dropped, the segment stays).
    pub async fn rekey(&self, timeout: Duration) -> Result<usize, StoreError> {
        let (below, before) = {
            let idx = self.backend.index.read();
            (
                idx.segs.keys().next_back().map_or(1, |&n| n + 1),
                idx.segs.len(),
            )
        };
        let unreadable = self.queue.codec.unreadable();
        self.backend.rekey_below.store(below, Ordering::Release);
        let started = Instant::now();
        loop {
            // A write wakes the writer, which compacts after its batch.
            let _ = self.queue.flush().wait().await;
            let left = self
                .backend
                .index
                .read()
                .segs
                .keys()
                .take_while(|&&n| n < below)
                .count();
            if self.queue.codec.unreadable() > unreadable {
                self.queue.codec.refuse_missing()?;
                return Err(StoreError::Corrupt(
                    "a record could not be opened: see the log".into(),
                ));
            }
            if left == 0 {
                return Ok(before);
            }
            if started.elapsed() > timeout {
                return Err(StoreError::Unavailable(format!(
                    "{left} segments not compacted yet"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn close(&self) {
        self.queue.stop();
        self.backend.writer.join();
    }
}

/// One node: the single-node defaults.
impl Cluster for Durable<Log> {}

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
fn recovered(index: &Index, bufs: &HashMap<u32, Vec<u8>>, codec: &Codec) -> Recovered {
    let body = |l: Loc| bufs.get(&l.seg).and_then(|b| body_at(b, l));
    let mut out = Recovered::default();
    for m in index.msgs.values() {
        let msg = body(m.accept)
            .and_then(frame::decode)
            .and_then(|r| match r {
                Rec::Accept { msg, .. } | Rec::AcceptOnce { msg, .. } => codec.read_message(msg),
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
                Rec::State { id, state } => codec.read_state(id, state),
                _ => None,
            });
        record::sort_recovered(&mut out, msg, state);
    }
    for (l, _) in index.receipts.values() {
        let job = body(*l).and_then(frame::decode).and_then(|r| match r {
            Rec::Finished {
                receipt: Some(j), ..
            }
            | Rec::Owe { job: j, .. } => codec.read_receipt(j),
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

impl Backend for Log {
    fn message_status(&self, id: MsgId) -> StoreFuture<'_, Option<MessageStatus>> {
        let loc = self.index.read().status.get(&id.0).map(|(l, _)| *l);
        let r = (|| {
            let Some(l) = loc else { return Ok(None) };
            let f = File::open(seg_path(&self.cfg.dir, l.seg)).map_err(err)?;
            let mut b = vec![0u8; l.len as usize];
            f.read_exact_at(&mut b, u64::from(l.off)).map_err(err)?;
            Ok(match frame::decode(&b[HEADER..]) {
                Some(Rec::Status { status, .. }) => self.codec.read_status(status),
                _ => None,
            })
        })();
        Box::pin(std::future::ready(r))
    }

    fn kv_get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Versioned>> {
        let now = now_ms();
        let v = match self.index.read().kv.get(key) {
            Some(e) if e.expires_ms > now => self.codec.read_value(key, &e.value).map(|value| {
                Some(Versioned {
                    version: e.version,
                    value,
                })
            }),
            _ => Ok(None),
        };
        Box::pin(std::future::ready(v))
    }

    fn count<'a>(
        &'a self,
        key: &'a str,
        window_ms: u64,
        now_ms: u64,
    ) -> StoreFuture<'a, otpgw_core::WindowCount> {
        Box::pin(std::future::ready(Ok(self
            .counters
            .count(key, window_ms, now_ms))))
    }

    fn recover(&self, _now_ms: u64) -> Result<Recovered, StoreError> {
        Ok(self.recovered.lock().take().unwrap_or_default())
    }

    fn is_healthy(&self) -> bool {
        !self.stats.last_failed.load(Ordering::Relaxed)
    }

    fn name(&self) -> &'static str {
        "log"
    }
}
