//! What the log holds, in memory: for every live item (an unfinished message and
//! its carrier state, a receipt owed, a final status, a key-value record) where its
//! record is, and how many live bytes each segment has. The same [`Index::apply`]
//! replays the log at start and records each batch after it is written, so the two
//! never disagree. Free of IO.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::frame::Rec;

/// Where a record is: segment number, offset, framed length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    pub seg: u32,
    pub off: u32,
    pub len: u32,
}

/// An unfinished message.
#[derive(Debug, Clone, Copy)]
pub struct MsgEntry {
    pub accept: Loc,
    pub state: Option<Loc>,
}

/// A key-value record, value in memory (reads are answered from here).
#[derive(Debug, Clone)]
pub struct KvEntry {
    pub version: u64,
    pub expires_ms: u64,
    pub value: Vec<u8>,
    pub loc: Loc,
    /// Its bytes count as live (false when it rides in its message's record).
    own: bool,
}

/// Bytes written to a segment, and how many of them hold live items.
#[derive(Debug, Clone, Copy, Default)]
pub struct SegStats {
    pub size: u64,
    pub live: u64,
}

/// An item to carry over when its segment is compacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Message(u64),
    Receipt(u64),
    Status(u64),
    Kv(String),
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct Index {
    pub msgs: HashMap<u64, MsgEntry>,
    /// Receipts (and events) owed to brands: location, and when they were due.
    pub receipts: HashMap<u64, (Loc, u64)>,
    pub status: HashMap<u64, (Loc, u64)>,
    /// Statuses by (done_ms, id), oldest first, for retention and the cap (sorted,
    /// not kept in the order written: a brand's shorter retention dates its
    /// statuses back, see `WriteQueue::status`).
    status_order: BTreeSet<(u64, u64)>,
    pub kv: HashMap<String, KvEntry>,
    pub segs: BTreeMap<u32, SegStats>,
}

impl Index {
    fn alive(&mut self, l: Loc) {
        self.segs.entry(l.seg).or_default().live += u64::from(l.len);
    }

    fn dead(&mut self, l: Loc) {
        if let Some(s) = self.segs.get_mut(&l.seg) {
            s.live = s.live.saturating_sub(u64::from(l.len));
        }
    }

    /// A record of `len` bytes was written to segment `seg`.
    pub fn grew(&mut self, seg: u32, len: u64) {
        self.segs.entry(seg).or_default().size += len;
    }

    fn put_kv(
        &mut self,
        key: String,
        version: u64,
        expires_ms: u64,
        value: &[u8],
        loc: Loc,
        own: bool,
    ) {
        if let Some(cur) = self.kv.get(&key)
            && cur.version > version
        {
            // An older version written again after a newer one: ignore it.
            return;
        }
        if let Some(old) = self.kv.get(&key).filter(|e| e.own).map(|e| e.loc) {
            self.dead(old);
        }
        if own {
            self.alive(loc);
        }
        self.kv.insert(
            key,
            KvEntry {
                version,
                expires_ms,
                value: value.to_vec(),
                loc,
                own,
            },
        );
    }

    fn put_receipt(&mut self, id: u64, loc: Loc, done_ms: u64) {
        if let Some((old, _)) = self.receipts.insert(id, (loc, done_ms)) {
            self.dead(old);
        }
        self.alive(loc);
    }

    /// Apply one record found (or written) at `loc`.
    pub fn apply(&mut self, rec: &Rec<'_>, loc: Loc) {
        match rec {
            Rec::Accept { id, .. } => {
                if let Some(old) = self.msgs.insert(
                    *id,
                    MsgEntry {
                        accept: loc,
                        state: None,
                    },
                ) {
                    self.dead(old.accept);
                    if let Some(s) = old.state {
                        self.dead(s);
                    }
                }
                self.alive(loc);
            }
            Rec::AcceptOnce {
                id,
                key,
                value,
                expires_ms,
                ..
            } => {
                self.msgs.insert(
                    *id,
                    MsgEntry {
                        accept: loc,
                        state: None,
                    },
                );
                self.alive(loc);
                // The key lives as long as the record: its bytes are counted once,
                // with the message's (a compaction writes it again on its own).
                self.put_kv(key.clone(), 1, *expires_ms, value, loc, false);
            }
            Rec::State { id, .. } => {
                let old = match self.msgs.get_mut(id) {
                    Some(m) => m.state.replace(loc),
                    // A state for a message finished (or never accepted): nothing.
                    None => return,
                };
                if let Some(o) = old {
                    self.dead(o);
                }
                self.alive(loc);
            }
            Rec::Finished {
                id,
                done_ms,
                receipt,
            } => {
                if let Some(m) = self.msgs.remove(id) {
                    self.dead(m.accept);
                    if let Some(s) = m.state {
                        self.dead(s);
                    }
                }
                if receipt.is_some() {
                    self.put_receipt(*id, loc, *done_ms);
                }
            }
            Rec::Forwarded { id } => {
                if let Some((l, _)) = self.receipts.remove(id) {
                    self.dead(l);
                }
            }
            Rec::Owe { id, done_ms, .. } => self.put_receipt(*id, loc, *done_ms),
            Rec::Status { id, done_ms, .. } => {
                if let Some((old, _)) = self.status.insert(*id, (loc, *done_ms)) {
                    self.dead(old);
                }
                self.alive(loc);
                self.status_order.insert((*done_ms, *id));
            }
            Rec::Kv {
                key,
                version,
                expires_ms,
                value,
            } => self.put_kv(key.clone(), *version, *expires_ms, value, loc, true),
        }
    }

    /// The live version of `key` at `now` (0: absent or expired).
    pub fn kv_version(&self, key: &str, now: u64) -> u64 {
        self.kv
            .get(key)
            .filter(|e| e.expires_ms > now)
            .map_or(0, |e| e.version)
    }

    /// Drop what is past its time: statuses older than `status_keep_ms` (and the
    /// oldest beyond `status_max`), receipts older than `receipt_keep_ms`, expired
    /// key-value records. Returns the receipts dropped.
    pub fn purge(
        &mut self,
        now: u64,
        status_keep_ms: u64,
        status_max: usize,
        receipt_keep_ms: u64,
    ) -> u64 {
        let status_cut = now.saturating_sub(status_keep_ms);
        while let Some(&(done, id)) = self.status_order.first() {
            if done >= status_cut && self.status_order.len() <= status_max {
                break;
            }
            self.status_order.pop_first();
            if let Some((l, d)) = self.status.get(&id).copied()
                && d == done
            {
                self.status.remove(&id);
                self.dead(l);
            }
        }
        let receipt_cut = now.saturating_sub(receipt_keep_ms);
        let old: Vec<u64> = self
            .receipts
            .iter()
            .filter(|(_, (_, d))| *d < receipt_cut)
            .map(|(id, _)| *id)
            .collect();
        for id in &old {
            if let Some((l, _)) = self.receipts.remove(id) {
                self.dead(l);
            }
        }
        let expired: Vec<String> = self
            .kv
            .iter()
            .filter(|(_, e)| e.expires_ms <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in expired {
            if let Some(e) = self.kv.remove(&k)
                && e.own
            {
                self.dead(e.loc);
            }
        }
        old.len() as u64
    }

    /// Every live item with a record in segment `seg`.
    pub fn items_in(&self, seg: u32) -> Vec<Item> {
        let mut out = Vec::new();
        for (id, m) in &self.msgs {
            if m.accept.seg == seg || m.state.is_some_and(|s| s.seg == seg) {
                out.push(Item::Message(*id));
            }
        }
        for (id, (l, _)) in &self.receipts {
            if l.seg == seg {
                out.push(Item::Receipt(*id));
            }
        }
        for (id, (l, _)) in &self.status {
            if l.seg == seg {
                out.push(Item::Status(*id));
            }
        }
        for (k, e) in &self.kv {
            if e.loc.seg == seg {
                out.push(Item::Kv(k.clone()));
            }
        }
        out
    }

    /// Forget a segment (it was compacted and deleted).
    pub fn drop_segment(&mut self, seg: u32) {
        self.segs.remove(&seg);
    }
}
