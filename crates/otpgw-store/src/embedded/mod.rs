//! The embedded store: a redb file on local disk, written by one thread with group
//! commit.
//!
//! Every write goes through one channel to the writer thread. The thread takes the
//! first operation, then whatever else arrives within `commit_window` (or up to
//! `batch_max` operations), applies them all in one write transaction and commits it
//! with fsync (redb's `Durability::Immediate`). Only then are the waiting accepts
//! told their message is safe, so `submit_sm_resp` ESME_ROK never precedes the fsync,
//! and concurrent accepts share one fsync. Later writes (sent marker, carrier id,
//! final state, receipt forwarded) ride in the same batches.
//!
//! Tables:
//! - `messages`: id -> message, for every accepted message not yet finished;
//! - `carrier_state`: id -> sent marker or (carrier, carrier id);
//! - `receipts`: id -> receipt owed to a brand, until the brand acknowledges it;
//! - `receipts_by_age`: (done_ms, id), to drop receipts past their retention;
//! - `finished`: no longer written (a file from an earlier version has its records
//!   purged after `finished_retention`);
//! - `status`: id -> final status of every finished message (any door), with
//!   `status_by_age` ((done_ms, id)) to purge it after `finished_retention`;
//! - `kv`: key -> version, expiry and value (verifications, idempotency keys), with
//!   `kv_by_expiry` ((expires_ms, key)) to purge expired ones. A compare-and-set is
//!   applied by the writer inside its batch, so two writes of one key never both
//!   succeed; an idempotency key is written in the same transaction as its message.
//!
//! After a failed commit (a full disk, an I/O error) redb refuses every later write
//! until the file is closed and opened again; the writer does that before its next
//! try (at most once a second), so once the disk has room again the store works
//! without a restart. Meanwhile accepts fail and the writes nobody waits for wait in
//! the writer's backlog.
//!
//! Finished texts: redb frees a page it copied on write but does not clear it, so a
//! finished message's text would stay readable in the file. Every
//! `scrub_interval` (when messages finished since the last one) the writer builds
//! the messages table again and compacts the file (see `writer::scrub`): the file
//! then holds the texts of unfinished messages only. Readers and writes wait for
//! the compaction (about 160 ms for a 40 MB file).
//!
//! Bounded: accepts waiting for the disk are capped (`max_pending_accepts`; beyond it
//! `accept` fails with `Busy` at once, which brands see as a temporary error); the
//! file holds unfinished messages, receipts not yet forwarded (at most
//! `receipt_retention` old) and finished records (at most `finished_retention` old),
//! so under steady load its size levels off.

mod rekey;
mod writer;

pub use rekey::{Rekeyed, rekey};

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use otpgw_core::MsgId;
use otpgw_core::clock::now_ms;
use otpgw_core::status::MessageStatus;
use otpgw_core::store::{Cluster, Recovered, StoreError, StoreFuture, Versioned};

use crate::codec::Codec;
use crate::counters::Counters;
use crate::durable::{Backend, Durable};
use crate::record;
use crate::writer::{WriteQueue, WriterStats, WriterThread};

const MESSAGES: TableDefinition<u64, &[u8]> = TableDefinition::new("messages");
const CARRIER_STATE: TableDefinition<u64, &[u8]> = TableDefinition::new("carrier_state");
const RECEIPTS: TableDefinition<u64, &[u8]> = TableDefinition::new("receipts");
const RECEIPTS_BY_AGE: TableDefinition<(u64, u64), ()> = TableDefinition::new("receipts_by_age");
const FINISHED: TableDefinition<(u64, u64), u8> = TableDefinition::new("finished");
const STATUS: TableDefinition<u64, &[u8]> = TableDefinition::new("status");
const STATUS_BY_AGE: TableDefinition<(u64, u64), ()> = TableDefinition::new("status_by_age");
const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
const KV_BY_EXPIRY: TableDefinition<(u64, &str), ()> = TableDefinition::new("kv_by_expiry");

/// Settings of the embedded store.
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// The record codec (encryption at rest); plain by default.
    pub codec: Arc<Codec>,
    pub path: PathBuf,
    /// Wait this long after the first write of a batch for more to join it.
    pub commit_window: Duration,
    /// Most operations in one commit.
    pub batch_max: usize,
    /// Accepts waiting for the disk before `accept` answers `Busy`.
    pub max_pending_accepts: usize,
    /// How long finished-message records are kept.
    pub finished_retention: Duration,
    /// How long a receipt waits for its brand to bind before it is dropped.
    pub receipt_retention: Duration,
    /// How often old records are purged.
    pub purge_interval: Duration,
    /// How often, when messages finished since the last time, the file's free
    /// pages are overwritten so no finished text stays readable in it (the scrub,
    /// see the writer).
    pub scrub_interval: Duration,
}

impl EmbeddedConfig {
    /// Defaults at `path`: 200 us commit window, 8192 operations per batch, 100,000
    /// pending accepts, finished records kept 1 hour, receipts kept 3 days, a scrub
    /// every 5 minutes.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            commit_window: Duration::from_micros(200),
            batch_max: 8192,
            max_pending_accepts: 100_000,
            finished_retention: Duration::from_secs(3600),
            receipt_retention: Duration::from_secs(3 * 86_400),
            purge_interval: Duration::from_secs(5),
            scrub_interval: Duration::from_secs(300),
            codec: Arc::new(Codec::plain()),
        }
    }
}

/// The open database, which the writer closes and opens again after a failed
/// commit (see the module docs). Readers take it for the length of one read.
pub(crate) struct Db {
    path: PathBuf,
    open: parking_lot::RwLock<Option<Arc<Database>>>,
}

impl Db {
    pub(crate) fn get(&self) -> Result<Arc<Database>, StoreError> {
        self.open
            .read()
            .clone()
            .ok_or_else(|| StoreError::Unavailable("the store file is being opened again".into()))
    }

    /// Run `f` with the database to itself (redb's compaction needs that): new
    /// readers wait on the lock meanwhile, those under way finish first (at most 2
    /// seconds, else `f` is not run).
    pub(crate) fn exclusive<T>(&self, f: impl FnOnce(&mut Database) -> T) -> Result<T, String> {
        let mut slot = self.open.write();
        let Some(mut db) = slot.take() else {
            return Err("the store file is not open".into());
        };
        let until = Instant::now() + Duration::from_secs(2);
        loop {
            match Arc::get_mut(&mut db) {
                Some(d) => {
                    let out = f(d);
                    *slot = Some(db);
                    return Ok(out);
                }
                None if Instant::now() < until => std::thread::sleep(Duration::from_micros(200)),
                None => {
                    *slot = Some(db);
                    return Err("readers still hold the store file".into());
                }
            }
        }
    }

    /// Close the file and open it again: redb goes back to its last commit.
    pub(crate) fn reopen(&self) -> Result<(), String> {
        let old = self.open.write().take();
        if let Some(mut db) = old {
            let until = Instant::now() + Duration::from_secs(2);
            loop {
                match Arc::try_unwrap(db) {
                    Ok(d) => {
                        drop(d);
                        break;
                    }
                    Err(held) if Instant::now() < until => {
                        db = held;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(held) => {
                        *self.open.write() = Some(held);
                        return Err("readers still hold the store file".into());
                    }
                }
            }
        }
        let db = Database::create(&self.path).map_err(|e| e.to_string())?;
        *self.open.write() = Some(Arc::new(db));
        Ok(())
    }
}

/// The embedded backend: the redb file, its writer thread, what readers need.
pub struct Embedded {
    cfg: EmbeddedConfig,
    db: Arc<Db>,
    codec: Arc<Codec>,
    stats: Arc<WriterStats>,
    writer: WriterThread,
    counters: Counters,
}

/// See the module docs.
pub type EmbeddedStore = Durable<Embedded>;

impl std::fmt::Debug for Embedded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.cfg.path)
            .finish_non_exhaustive()
    }
}

pub(crate) fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl Durable<Embedded> {
    /// Open (or create) the store file and start the writer thread.
    pub fn open(cfg: EmbeddedConfig) -> Result<Self, StoreError> {
        if let Some(dir) = cfg.path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let db = Database::create(&cfg.path).map_err(err)?;
        // Create the tables so readers never meet a missing one.
        let w = db.begin_write().map_err(err)?;
        {
            w.open_table(MESSAGES).map_err(err)?;
            w.open_table(CARRIER_STATE).map_err(err)?;
            w.open_table(RECEIPTS).map_err(err)?;
            w.open_table(RECEIPTS_BY_AGE).map_err(err)?;
            w.open_table(FINISHED).map_err(err)?;
            w.open_table(STATUS).map_err(err)?;
            w.open_table(STATUS_BY_AGE).map_err(err)?;
            w.open_table(KV).map_err(err)?;
            w.open_table(KV_BY_EXPIRY).map_err(err)?;
        }
        w.commit().map_err(err)?;
        let db = Arc::new(Db {
            path: cfg.path.clone(),
            open: parking_lot::RwLock::new(Some(Arc::new(db))),
        });
        metrics::counter!("otpgw_store_scrubs_total").increment(0);
        let codec = cfg.codec.clone();
        let (queue, writes) =
            WriteQueue::new(cfg.max_pending_accepts, "commit failed", codec.clone());
        let stats = Arc::new(WriterStats::default());
        let writer = {
            let (db, cfg, stats, codec) = (db.clone(), cfg.clone(), stats.clone(), codec.clone());
            WriterThread::spawn("otpgw-store", move || {
                writer::run(db, cfg, writes, stats, codec)
            })
            .map_err(err)?
        };
        Ok(Durable {
            queue,
            backend: Embedded {
                cfg,
                db,
                codec,
                stats,
                writer,
                counters: Counters::new(1_000_000),
            },
        })
    }

    /// The writer's counters.
    pub fn stats(&self) -> &WriterStats {
        &self.backend.stats
    }

    /// The store file's size in bytes.
    pub fn file_size(&self) -> u64 {
        std::fs::metadata(&self.backend.cfg.path)
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// Stop the writer after it committed everything queued before this call.
    pub fn close(&self) {
        self.queue.stop();
        self.backend.writer.join();
    }

    /// Rows in (messages, receipts, final statuses), for tests.
    pub fn counts(&self) -> Result<(u64, u64, u64), StoreError> {
        use redb::ReadableTableMetadata;
        let db = self.backend.db.get()?;
        let r = db.begin_read().map_err(err)?;
        Ok((
            r.open_table(MESSAGES).map_err(err)?.len().map_err(err)?,
            r.open_table(RECEIPTS).map_err(err)?.len().map_err(err)?,
            r.open_table(STATUS).map_err(err)?.len().map_err(err)?,
        ))
    }
}

/// One node: the single-node defaults.
impl Cluster for Durable<Embedded> {}

impl Backend for Embedded {
    fn message_status(&self, id: MsgId) -> StoreFuture<'_, Option<MessageStatus>> {
        let r = (|| {
            let db = self.db.get()?;
            let r = db.begin_read().map_err(err)?;
            let t = r.open_table(STATUS).map_err(err)?;
            Ok(t.get(id.0)
                .map_err(err)?
                .and_then(|v| self.codec.read_status(v.value())))
        })();
        Box::pin(std::future::ready(r))
    }

    fn kv_get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Versioned>> {
        let r = (|| {
            let db = self.db.get()?;
            let r = db.begin_read().map_err(err)?;
            let t = r.open_table(KV).map_err(err)?;
            let now = now_ms();
            let Some(v) = t.get(key).map_err(err)? else {
                return Ok(None);
            };
            let Some((version, expires, value)) = decode_kv(v.value()) else {
                return Err(StoreError::Corrupt(format!("record {key:?}: damaged")));
            };
            if expires <= now {
                return Ok(None);
            }
            let value = self.codec.read_value(key, value)?;
            Ok(Some(Versioned { version, value }))
        })();
        Box::pin(std::future::ready(r))
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

    fn recover(&self, now_ms: u64) -> Result<Recovered, StoreError> {
        let db = self.db.get()?;
        let r = db.begin_read().map_err(err)?;
        let msgs = r.open_table(MESSAGES).map_err(err)?;
        let states = r.open_table(CARRIER_STATE).map_err(err)?;
        let receipts = r.open_table(RECEIPTS).map_err(err)?;
        let mut out = Recovered::default();
        for row in msgs.iter().map_err(err)? {
            let (k, v) = row.map_err(err)?;
            let Some(m) = self.codec.read_message(v.value()) else {
                tracing::error!(id = k.value(), "unreadable message record skipped");
                continue;
            };
            let state = states
                .get(k.value())
                .map_err(err)?
                .and_then(|s| self.codec.read_state(k.value(), s.value()));
            record::sort_recovered(&mut out, m, state);
        }
        let cutoff = now_ms.saturating_sub(self.cfg.receipt_retention.as_millis() as u64);
        for row in receipts.iter().map_err(err)? {
            let (_, v) = row.map_err(err)?;
            if let Some(j) = self.codec.read_receipt(v.value())
                && j.done_ms >= cutoff
            {
                out.receipts.push(j);
            }
        }
        out.receipts.sort_by_key(|j| j.done_ms);
        Ok(out)
    }

    fn is_healthy(&self) -> bool {
        !self.stats.last_failed.load(Ordering::Relaxed)
    }

    fn name(&self) -> &'static str {
        "embedded"
    }
}

/// The storage framing of a key-value record (its value as the codec kept it).
/// A record of the key-value space as the embedded store keeps it: version,
/// expiry, value.
pub(crate) fn encode_kv(version: u64, expires_ms: u64, value: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(16 + value.len());
    b.extend_from_slice(&version.to_be_bytes());
    b.extend_from_slice(&expires_ms.to_be_bytes());
    b.extend_from_slice(value);
    b
}

/// (version, expiry, value) of a key-value record.
pub(crate) fn decode_kv(buf: &[u8]) -> Option<(u64, u64, &[u8])> {
    let mut r = otpgw_core::wire::Reader(buf);
    let v = r.u64()?;
    let e = r.u64()?;
    Some((v, e, r.rest()))
}

#[cfg(test)]
mod tests;
