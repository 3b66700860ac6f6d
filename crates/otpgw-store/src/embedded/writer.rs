//! The embedded store's writer thread: a batch of writes per redb transaction,
//! committed with fsync; the file opened again after a failed commit; finished
//! records, receipts past their retention and expired key-value records purged;
//! what finished messages left in the file's free pages overwritten (the scrub).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redb::{Database, ReadableTable};

use otpgw_core::MsgId;
use otpgw_core::clock::now_ms;

use super::{
    CARRIER_STATE, Db, EmbeddedConfig, FINISHED, KV, KV_BY_EXPIRY, MESSAGES, RECEIPTS,
    RECEIPTS_BY_AGE, STATUS, STATUS_BY_AGE, decode_kv, encode_kv,
};
use crate::codec::Codec;
use crate::record::SendState;
use crate::writer::{Answer, Backlog, Op, WriterStats, Writes, answer, log_failed, next_batch};

/// The writer thread: batches from the queue, one transaction each (see the module
/// docs), until the queue closes or asks it to stop.
pub(super) fn run(
    db: Arc<Db>,
    cfg: EmbeddedConfig,
    writes: Writes,
    stats: Arc<WriterStats>,
    codec: Arc<Codec>,
) {
    let Writes { rx, pending } = writes;
    let mut batch: Vec<Op> = Vec::with_capacity(cfg.batch_max);
    let mut backlog = Backlog::default();
    let mut last_purge = Instant::now();
    let mut last_scrub = Instant::now();
    // Whether a message finished since the last scrub (its text may be in freed pages).
    let mut scrub_due = false;
    let mut reopen = Reopen::default();
    loop {
        let next = next_batch(
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
            scrub_due |= batch.iter().any(|op| matches!(op, Op::Finished { .. }));
            let started = Instant::now();
            let result = reopen
                .ready(&db)
                .and_then(|d| apply(&d, &codec, &batch).map_err(|e| e.to_string()));
            let (ok, answers) = match result {
                Ok(a) => (true, a),
                Err(e) => {
                    log_failed("store commit failed", &e, batch.len());
                    metrics::counter!("otpgw_store_commit_failures_total").increment(1);
                    backlog.keep_failed(&batch);
                    reopen.needed = true;
                    (false, Vec::new())
                }
            };
            stats.record(started, batch.len(), ok);
            metrics::gauge!("otpgw_store_backlog_writes").set(backlog.len() as f64);
            if answer(&mut batch, ok, answers, &pending) {
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
        if scrub_due && last_scrub.elapsed() >= cfg.scrub_interval && !reopen.needed {
            last_scrub = Instant::now();
            scrub_due = false;
            match scrub(&db) {
                Ok(moved) => {
                    metrics::counter!("otpgw_store_scrubs_total").increment(1);
                    metrics::histogram!("otpgw_store_scrub_seconds")
                        .record(last_scrub.elapsed().as_secs_f64());
                    tracing::debug!(moved, took = ?last_scrub.elapsed(), "store scrubbed");
                }
                Err(e) => {
                    tracing::error!(error = %e, "store scrub failed");
                    reopen.needed = true;
                }
            }
        }
    }
}

/// The table the scrub fills free pages with, then deletes.
/// Overwrite what finished messages left in the file, so their texts cannot be read
/// from it: redb copies a page on write and frees the old copy, a freed page keeps
/// its bytes until reused, and a page changed in place keeps removed records in its
/// unused tail. So: (1) the messages table is built again from its live records
/// (new pages are zero-filled beyond their data); (2) two empty commits let the
/// pages freed so far become free; (3) redb's compaction moves the pages at the end
/// of the file into the free ones and cuts the file after the last page in use
/// (readers wait meanwhile, see [`Db::exclusive`]). Costs one write of the live
/// messages and a compaction. Returns whether compaction moved anything.
pub(super) fn scrub(db: &Db) -> Result<bool, String> {
    {
        let d = db.get().map_err(|e| e.to_string())?;
        rebuild_messages(&d).map_err(|e| e.to_string())?;
    }
    db.exclusive(|d| {
        let mut moved = false;
        while d.compact().map_err(|e| e.to_string())? {
            moved = true;
        }
        Ok(moved)
    })?
}

/// The messages table written again from its live records, in one transaction.
fn rebuild_messages(db: &Database) -> Result<(), redb::Error> {
    let w = db.begin_write()?;
    let live: Vec<(u64, Vec<u8>)> = {
        let t = w.open_table(MESSAGES)?;
        t.iter()?
            .map(|r| r.map(|(k, v)| (k.value(), v.value().to_vec())))
            .collect::<Result<_, _>>()?
    };
    w.delete_table(MESSAGES)?;
    {
        let mut t = w.open_table(MESSAGES)?;
        for (k, v) in &live {
            t.insert(*k, v.as_slice())?;
        }
    }
    w.commit()?;
    for _ in 0..2 {
        db.begin_write()?.commit()?;
    }
    Ok(())
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
pub(super) fn apply(
    db: &Database,
    codec: &Codec,
    batch: &[Op],
) -> Result<Vec<(usize, Answer)>, redb::Error> {
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
                        states.insert(*id, codec.state(MsgId(*id), &SendState::Sent).as_slice())?;
                    }
                }
                Op::Confirmed(id, st) | Op::Attempts(id, st, _) => {
                    if msgs.get(*id)?.is_some() {
                        states.insert(*id, st.as_slice())?;
                    }
                }
                Op::Owe(id, done_ms, rec) => {
                    // Owed again (marked as sent to a brand): its age entry is there.
                    if receipts.insert(*id, rec.as_slice())?.is_none() {
                        by_age.insert((*done_ms, *id), ())?;
                    }
                }
                Op::Finished { id, receipt, .. } => {
                    // Its final state is kept by the `Status` op the tracker writes
                    // with it (the status table).
                    msgs.remove(*id)?;
                    states.remove(*id)?;
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
                        .and_then(|v| codec.read_receipt(v.value()))
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
        let (version, expires, value) = decode_kv(v.value())?;
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
        .insert(key, encode_kv(version, expires_ms, value).as_slice())?
        .and_then(|v| decode_kv(v.value()).map(|(_, e, _)| e));
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
