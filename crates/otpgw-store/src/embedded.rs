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
//! - `finished`: (finish_ms, id) -> state, kept for `finished_retention`, then purged;
//! - `status`: id -> final status of a message from the HTTP door, with
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
//! Bounded: accepts waiting for the disk are capped (`max_pending_accepts`; beyond it
//! `accept` fails with `Busy` at once, which brands see as a temporary error); the
//! file holds unfinished messages, receipts not yet forwarded (at most
//! `receipt_retention` old) and finished records (at most `finished_retention` old),
//! so under steady load its size levels off.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use otpgw_core::clock::now_ms;
use otpgw_core::outbox::ReceiptJob;
use otpgw_core::status::MessageStatus;
use otpgw_core::store::{Once, Recovered, Store, StoreError, StoreFuture, Ticket, Versioned};
use otpgw_core::{DeliveryState, Message, MsgId};

use crate::counters::Counters;
use crate::record::{self, CarrierState};
use crate::writes::{self, Answer, Op};

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
}

impl EmbeddedConfig {
    /// Defaults at `path`: 200 us commit window, 8192 operations per batch, 100,000
    /// pending accepts, finished records kept 1 hour, receipts kept 3 days.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            commit_window: Duration::from_micros(200),
            batch_max: 8192,
            max_pending_accepts: 100_000,
            finished_retention: Duration::from_secs(3600),
            receipt_retention: Duration::from_secs(3 * 86_400),
            purge_interval: Duration::from_secs(5),
        }
    }
}

/// Counters of the writer, for tests and benchmarks.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub commits: AtomicU64,
    pub ops: AtomicU64,
    /// Commits that failed (the store is not healthy while the last one failed).
    pub failures: AtomicU64,
    /// Whether the last commit failed.
    pub last_failed: std::sync::atomic::AtomicBool,
}

impl WriterStats {
    /// A commit of `ops` writes, started at `started`, ended (`ok`).
    pub(crate) fn record(&self, started: Instant, ops: usize, ok: bool) {
        metrics::histogram!("otpgw_store_commit_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("otpgw_store_batch_ops").record(ops as f64);
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.ops.fetch_add(ops as u64, Ordering::Relaxed);
        if !ok {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        self.last_failed.store(!ok, Ordering::Relaxed);
    }
}

/// The open database, which the writer closes and opens again after a failed
/// commit (see the module docs). Readers take it for the length of one read.
struct Db {
    path: PathBuf,
    open: parking_lot::RwLock<Option<Arc<Database>>>,
}

impl Db {
    fn get(&self) -> Result<Arc<Database>, StoreError> {
        self.open
            .read()
            .clone()
            .ok_or_else(|| StoreError::Unavailable("the store file is being opened again".into()))
    }

    /// Close the file and open it again: redb goes back to its last commit.
    fn reopen(&self) -> Result<(), String> {
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

/// See the module docs.
pub struct EmbeddedStore {
    cfg: EmbeddedConfig,
    db: Arc<Db>,
    tx: Sender<Op>,
    pending_accepts: Arc<AtomicUsize>,
    stats: Arc<WriterStats>,
    writer: parking_lot::Mutex<Option<std::thread::JoinHandle<()>>>,
    counters: Counters,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.cfg.path)
            .finish_non_exhaustive()
    }
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl EmbeddedStore {
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
        let (tx, rx) = mpsc::channel();
        let pending = Arc::new(AtomicUsize::new(0));
        let stats = Arc::new(WriterStats::default());
        let writer = {
            let (db, cfg, pending, stats) =
                (db.clone(), cfg.clone(), pending.clone(), stats.clone());
            std::thread::Builder::new()
                .name("otpgw-store".into())
                .spawn(move || writer_loop(db, cfg, rx, pending, stats))
                .map_err(err)?
        };
        Ok(Self {
            cfg,
            db,
            tx,
            pending_accepts: pending,
            stats,
            writer: parking_lot::Mutex::new(Some(writer)),
            counters: Counters::new(1_000_000),
        })
    }

    /// The writer's counters.
    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// The store file's size in bytes.
    pub fn file_size(&self) -> u64 {
        std::fs::metadata(&self.cfg.path)
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// Stop the writer after it committed everything queued before this call.
    pub fn close(&self) {
        let _ = self.tx.send(Op::Stop);
        if let Some(h) = self.writer.lock().take() {
            let _ = h.join();
        }
    }

    /// Rows in (messages, receipts, finished), for tests.
    pub fn counts(&self) -> Result<(u64, u64, u64), StoreError> {
        use redb::ReadableTableMetadata;
        let db = self.db.get()?;
        let r = db.begin_read().map_err(err)?;
        Ok((
            r.open_table(MESSAGES).map_err(err)?.len().map_err(err)?,
            r.open_table(RECEIPTS).map_err(err)?.len().map_err(err)?,
            r.open_table(FINISHED).map_err(err)?.len().map_err(err)?,
        ))
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        self.close();
    }
}

impl Store for EmbeddedStore {
    fn accept<'a>(&'a self, msg: &'a Message) -> StoreFuture<'a, ()> {
        writes::accept(
            &self.tx,
            &self.pending_accepts,
            self.cfg.max_pending_accepts,
            msg,
            "commit failed",
        )
    }

    fn submitted(&self, id: MsgId) -> Ticket {
        writes::submitted(&self.tx, id)
    }

    fn carrier_accepted(&self, id: MsgId, carrier: &str, carrier_msg_id: &str) {
        writes::carrier_accepted(&self.tx, id, carrier, carrier_msg_id);
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

    fn attempts(&self, id: MsgId, list: &[otpgw_core::attempts::Attempt]) -> Ticket {
        writes::attempts(&self.tx, id, list)
    }

    fn owe(&self, job: &ReceiptJob) {
        writes::owe(&self.tx, job);
    }

    fn record_status(&self, status: &MessageStatus) {
        // Messages in flight are answered from memory on this (only) node.
        if status.done_ms > 0 {
            writes::status(&self.tx, status);
        }
    }

    fn message_status(&self, id: MsgId) -> StoreFuture<'_, Option<MessageStatus>> {
        let r = (|| {
            let db = self.db.get()?;
            let r = db.begin_read().map_err(err)?;
            let t = r.open_table(STATUS).map_err(err)?;
            Ok(t.get(id.0)
                .map_err(err)?
                .and_then(|v| record::decode_status(v.value())))
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
            "commit failed",
        )
    }

    fn kv_get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Versioned>> {
        let r = (|| {
            let db = self.db.get()?;
            let r = db.begin_read().map_err(err)?;
            let t = r.open_table(KV).map_err(err)?;
            let now = now_ms();
            Ok(t.get(key).map_err(err)?.and_then(|v| {
                let (version, expires, value) = record::decode_kv(v.value())?;
                (expires > now).then(|| Versioned {
                    version,
                    value: value.to_vec(),
                })
            }))
        })();
        Box::pin(std::future::ready(r))
    }

    fn kv_put<'a>(
        &'a self,
        key: &'a str,
        expect: u64,
        value: Vec<u8>,
        expires_ms: u64,
    ) -> StoreFuture<'a, Option<u64>> {
        writes::kv_put(&self.tx, key, expect, value, expires_ms, "commit failed")
    }

    fn count<'a>(&'a self, key: &'a str, window_ms: u64, now_ms: u64) -> StoreFuture<'a, u64> {
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
            let Some(m) = record::decode_message(v.value()) else {
                tracing::error!(id = k.value(), "unreadable message record skipped");
                continue;
            };
            let state = states
                .get(k.value())
                .map_err(err)?
                .and_then(|s| record::decode_state(s.value()));
            record::sort_recovered(&mut out, m, state);
        }
        let cutoff = now_ms.saturating_sub(self.cfg.receipt_retention.as_millis() as u64);
        for row in receipts.iter().map_err(err)? {
            let (_, v) = row.map_err(err)?;
            if let Some(j) = record::decode_receipt(v.value())
                && j.done_ms >= cutoff
            {
                out.receipts.push(j);
            }
        }
        out.receipts.sort_by_key(|j| j.done_ms);
        Ok(out)
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
        "embedded"
    }
}

fn writer_loop(
    db: Arc<Db>,
    cfg: EmbeddedConfig,
    rx: Receiver<Op>,
    pending: Arc<AtomicUsize>,
    stats: Arc<WriterStats>,
) {
    let mut batch: Vec<Op> = Vec::with_capacity(cfg.batch_max);
    let mut backlog = writes::Backlog::default();
    let mut last_purge = Instant::now();
    let mut reopen = Reopen::default();
    loop {
        let next = writes::next_batch(
            &rx,
            &mut backlog,
            cfg.commit_window,
            cfg.batch_max,
            cfg.purge_interval,
            &mut batch,
        );
        if next.is_err() {
            return;
        }
        if !batch.is_empty() {
            let started = Instant::now();
            let result = reopen
                .ready(&db)
                .and_then(|d| apply(&d, &batch).map_err(|e| e.to_string()));
            let (ok, answers) = match result {
                Ok(a) => (true, a),
                Err(e) => {
                    writes::log_failed("store commit failed", &e, batch.len());
                    metrics::counter!("otpgw_store_commit_failures_total").increment(1);
                    backlog.keep_failed(&batch);
                    reopen.needed = true;
                    (false, Vec::new())
                }
            };
            stats.record(started, batch.len(), ok);
            metrics::gauge!("otpgw_store_backlog_writes").set(backlog.len() as f64);
            if writes::answer(&mut batch, ok, answers, &pending) {
                return;
            }
        }
        if last_purge.elapsed() >= cfg.purge_interval {
            last_purge = Instant::now();
            if !reopen.needed
                && let Ok(d) = db.get()
                && let Err(e) = purge(&d, &cfg, now_ms())
            {
                tracing::error!(error = %e, "store purge failed");
                reopen.needed = true;
            }
        }
    }
}

/// The writer's reopening of the file after a failed commit.
#[derive(Default)]
struct Reopen {
    needed: bool,
    last_try: Option<Instant>,
}

impl Reopen {
    /// The database to write to: opened again first if a commit failed (at most
    /// one try a second; until it succeeds, batches fail).
    fn ready(&mut self, db: &Db) -> Result<Arc<Database>, String> {
        if self.needed {
            if self
                .last_try
                .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
            {
                return Err("the store file is not open again yet".into());
            }
            self.last_try = Some(Instant::now());
            db.reopen()?;
            self.needed = false;
            metrics::counter!("otpgw_store_reopens_total").increment(1);
            tracing::warn!("store file opened again after a failed commit");
        }
        db.get().map_err(|e| e.to_string())
    }
}

/// Write one batch in one transaction. Writes that a later op of the same batch
/// cancels are skipped (the batch commits atomically, so the end state is the same):
/// the "sent" mark of a message whose carrier confirmation is in the batch, and the
/// stored receipt of a message whose receipt was forwarded within the batch. Under
/// load most receipts are forwarded within one commit interval, which saves four
/// B-tree updates per message. Returns the answers of accepts with an idempotency
/// key and of compare-and-sets, by their position in the batch.
fn apply(db: &Database, batch: &[Op]) -> Result<Vec<(usize, Answer)>, redb::Error> {
    let mut answers = Vec::new();
    let now = now_ms();
    let mut confirmed = HashSet::new();
    let mut forwarded = HashSet::new();
    for op in batch {
        match op {
            Op::Confirmed(id, _) => {
                confirmed.insert(*id);
            }
            Op::Forwarded(id) => {
                forwarded.insert(*id);
            }
            _ => {}
        }
    }
    let w = db.begin_write()?;
    {
        let mut msgs = w.open_table(MESSAGES)?;
        let mut states = w.open_table(CARRIER_STATE)?;
        let mut receipts = w.open_table(RECEIPTS)?;
        let mut by_age = w.open_table(RECEIPTS_BY_AGE)?;
        let mut finished = w.open_table(FINISHED)?;
        let mut kv = w.open_table(KV)?;
        let mut kv_exp = w.open_table(KV_BY_EXPIRY)?;
        let mut status = w.open_table(STATUS)?;
        let mut st_age = w.open_table(STATUS_BY_AGE)?;
        for (i, op) in batch.iter().enumerate() {
            match op {
                Op::Accept { id, rec, once, .. } => {
                    if let Some(o) = once {
                        let (key, value, expires) = &**o;
                        if let Some(found) = kv_live(&kv, key, now)? {
                            answers.push((i, Answer::Duplicate(found.2)));
                            continue;
                        }
                        kv_write(&mut kv, &mut kv_exp, key, 1, *expires, value)?;
                    }
                    msgs.insert(*id, rec.as_slice())?;
                }
                Op::Kv {
                    kv: k,
                    expect,
                    expires_ms,
                    ..
                } => {
                    let (key, value) = &**k;
                    let current = kv_live(&kv, key, now)?.map_or(0, |f| f.0);
                    if current != *expect {
                        answers.push((i, Answer::Version(None)));
                        continue;
                    }
                    kv_write(&mut kv, &mut kv_exp, key, current + 1, *expires_ms, value)?;
                    answers.push((i, Answer::Version(Some(current + 1))));
                }
                Op::Status { id, rec, done_ms } => {
                    if *done_ms > 0 {
                        status.insert(*id, rec.as_slice())?;
                        st_age.insert((*done_ms, *id), ())?;
                    }
                }
                Op::Sent(id, _) => {
                    if !confirmed.contains(id)
                        && msgs.get(*id)?.is_some()
                        && states.get(*id)?.is_none()
                    {
                        states.insert(*id, record::encode_state(&CarrierState::Sent).as_slice())?;
                    }
                }
                Op::Confirmed(id, st) | Op::Attempts(id, st, _) => {
                    if msgs.get(*id)?.is_some() {
                        states.insert(*id, st.as_slice())?;
                    }
                }
                Op::Owe(id, done_ms, rec) => {
                    receipts.insert(*id, rec.as_slice())?;
                    by_age.insert((*done_ms, *id), ())?;
                }
                Op::Finished {
                    id,
                    state,
                    receipt,
                    now_ms,
                    ..
                } => {
                    msgs.remove(*id)?;
                    states.remove(*id)?;
                    finished.insert((*now_ms, *id), *state)?;
                    if let Some((done_ms, rec)) = receipt
                        && !forwarded.remove(id)
                    {
                        receipts.insert(*id, rec.as_slice())?;
                        by_age.insert((*done_ms, *id), ())?;
                    }
                }
                Op::Forwarded(id) => {
                    if !forwarded.contains(id) {
                        // Its receipt was never stored: the Finished of this batch
                        // skipped it.
                        continue;
                    }
                    let done_ms = receipts
                        .remove(*id)?
                        .and_then(|v| record::decode_receipt(v.value()))
                        .map(|j| j.done_ms);
                    if let Some(d) = done_ms {
                        by_age.remove((d, *id))?;
                    }
                }
                // Nothing to keep: one node shares nothing.
                Op::Flush(_) | Op::Stop | Op::Publish { .. } => {}
            }
        }
    }
    w.commit()?;
    Ok(answers)
}

/// The live record under `key` at `now`: (version, expiry, value).
fn kv_live(
    kv: &redb::Table<&str, &[u8]>,
    key: &str,
    now: u64,
) -> Result<Option<(u64, u64, Vec<u8>)>, redb::Error> {
    Ok(kv.get(key)?.and_then(|v| {
        let (version, expires, value) = record::decode_kv(v.value())?;
        (expires > now).then(|| (version, expires, value.to_vec()))
    }))
}

/// Write a key-value record, keeping its expiry index right.
fn kv_write(
    kv: &mut redb::Table<&str, &[u8]>,
    by_expiry: &mut redb::Table<(u64, &str), ()>,
    key: &str,
    version: u64,
    expires_ms: u64,
    value: &[u8],
) -> Result<(), redb::Error> {
    let old = kv
        .insert(
            key,
            record::encode_kv(version, expires_ms, value).as_slice(),
        )?
        .and_then(|v| record::decode_kv(v.value()).map(|(_, e, _)| e));
    if let Some(e) = old
        && e != expires_ms
    {
        by_expiry.remove((e, key))?;
    }
    by_expiry.insert((expires_ms, key), ())?;
    Ok(())
}

/// Drop finished records and undelivered receipts past their retention.
fn purge(db: &Database, cfg: &EmbeddedConfig, now: u64) -> Result<(), redb::Error> {
    const MAX: usize = 200_000;
    let fin_cut = now.saturating_sub(cfg.finished_retention.as_millis() as u64);
    let rc_cut = now.saturating_sub(cfg.receipt_retention.as_millis() as u64);
    let w = db.begin_write()?;
    let (mut n_fin, mut n_rc) = (0u64, 0u64);
    {
        let mut finished = w.open_table(FINISHED)?;
        let old: Vec<(u64, u64)> = finished
            .range(..(fin_cut, 0))?
            .take(MAX)
            .filter_map(|r| r.ok().map(|(k, _)| k.value()))
            .collect();
        for k in old {
            finished.remove(k)?;
            n_fin += 1;
        }
        let mut by_age = w.open_table(RECEIPTS_BY_AGE)?;
        let mut receipts = w.open_table(RECEIPTS)?;
        let old: Vec<(u64, u64)> = by_age
            .range(..(rc_cut, 0))?
            .take(MAX)
            .filter_map(|r| r.ok().map(|(k, _)| k.value()))
            .collect();
        for k in old {
            by_age.remove(k)?;
            receipts.remove(k.1)?;
            n_rc += 1;
        }
        let mut st_age = w.open_table(STATUS_BY_AGE)?;
        let mut status = w.open_table(STATUS)?;
        let old: Vec<(u64, u64)> = st_age
            .range(..(fin_cut, 0))?
            .take(MAX)
            .filter_map(|r| r.ok().map(|(k, _)| k.value()))
            .collect();
        for k in old {
            st_age.remove(k)?;
            status.remove(k.1)?;
        }
        let mut kv_exp = w.open_table(KV_BY_EXPIRY)?;
        let mut kv = w.open_table(KV)?;
        let old: Vec<(u64, String)> = kv_exp
            .range(..(now, ""))?
            .take(MAX)
            .filter_map(|r| r.ok().map(|(k, _)| (k.value().0, k.value().1.to_string())))
            .collect();
        for (e, key) in old {
            kv_exp.remove((e, key.as_str()))?;
            kv.remove(key.as_str())?;
        }
    }
    w.commit()?;
    if n_rc > 0 {
        metrics::counter!("otpgw_receipts_expired_total").increment(n_rc);
        tracing::warn!(
            receipts = n_rc,
            "receipts dropped after their retention: their brands never bound"
        );
    }
    let _ = n_fin;
    Ok(())
}

#[cfg(test)]
mod tests;
