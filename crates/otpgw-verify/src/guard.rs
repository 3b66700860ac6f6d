//! The conversion guard against SMS pumping, free of IO and clock (`now` is passed
//! in, so tests run on simulated time).
//!
//! Per (brand, number prefix) it keeps, in buckets of [`BUCKET_MS`] by the time a
//! code was sent, how many codes were sent and how many of those were approved (a
//! user typed the code back). Codes younger than `grace` are not judged yet (their
//! users may still be typing). A prefix whose approval ratio over at least
//! `min_samples` judged codes falls below `ratio` times the ratio of the rest of the
//! brand's traffic is **blocked**: requests to it are refused at once, no SMS.
//! After the block, every `probe_every`-th request passes (a probe); once
//! `probe_samples` probes are judged, good conversion lifts the block and bad
//! conversion blocks again for twice as long (at most `max_block`). Honest users
//! type their codes, so a busy honest prefix keeps its ratio and is never blocked.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

/// Width of a counting bucket (ms).
pub const BUCKET_MS: u64 = 5_000;

/// The rest of a brand's ratio assumed while it has too few judged codes of its
/// own (an OTP brand's users type most codes).
pub const ASSUMED_RATIO: f64 = 0.5;

/// Settings of the guard.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardConfig {
    /// Digits of the international number that make its prefix.
    pub prefix_digits: usize,
    /// How far back codes are judged.
    pub window: Duration,
    /// Codes younger than this are not judged yet.
    pub grace: Duration,
    /// Judged codes a prefix needs before it can be blocked (and probes before a
    /// block is lifted or renewed: `probe_samples`).
    pub min_samples: u32,
    /// Blocked below this share of the rest of the brand's approval ratio.
    pub ratio: f64,
    /// First block; each renewal doubles it, up to `max_block`.
    pub block: Duration,
    pub max_block: Duration,
    /// While probing, one request in this many passes.
    pub probe_every: u32,
    pub probe_samples: u32,
    /// Prefixes tracked at most (beyond, idle ones are forgotten; if none is idle,
    /// a new prefix is not tracked and only the hourly cap applies to it).
    pub max_prefixes: usize,
}

impl Default for GuardConfig {
    /// 6-digit prefixes judged over 10 minutes after 15 s, blocked under a third
    /// of the brand's ratio after 25 codes, for 12 hours first (at most 7 days);
    /// one probe in 10, judged after 10.
    fn default() -> Self {
        Self {
            prefix_digits: 6,
            window: Duration::from_secs(600),
            grace: Duration::from_secs(15),
            min_samples: 25,
            ratio: 1.0 / 3.0,
            block: Duration::from_secs(12 * 3600),
            max_block: Duration::from_secs(7 * 86_400),
            probe_every: 10,
            probe_samples: 10,
            max_prefixes: 100_000,
        }
    }
}

/// What the guard says of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// A probe through a block (passes).
    Probe,
    /// Refused: the prefix is blocked (until then, or probing).
    Blocked {
        until_ms: u64,
    },
}

/// A blocked prefix as the admin API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockView {
    pub brand: String,
    pub prefix: String,
    pub country: String,
    pub since_ms: u64,
    pub until_ms: u64,
    /// Renewals so far (0: the first block).
    pub level: u8,
    /// Past `until_ms`: probes pass.
    pub probing: bool,
    /// Judged codes and their approvals when it was blocked.
    pub sent: u32,
    pub approved: u32,
}

#[derive(Debug, Clone, Copy)]
struct Block {
    since: u64,
    until: u64,
    level: u8,
    sent: u32,
    approved: u32,
}

/// Codes sent and approved per bucket (by sending time), oldest first.
#[derive(Debug, Default)]
struct Series(VecDeque<(u64, u32, u32)>);

impl Series {
    fn add(&mut self, at_ms: u64, sent: u32, approved: u32) {
        let b = at_ms / BUCKET_MS;
        match self.0.iter_mut().rev().find(|e| e.0 <= b) {
            Some(e) if e.0 == b => {
                e.1 = e.1.saturating_add(sent);
                e.2 = e.2.saturating_add(approved);
            }
            _ => {
                let at = self.0.partition_point(|e| e.0 < b);
                self.0.insert(at, (b, sent, approved));
            }
        }
    }

    /// Drop buckets older than `from_ms`.
    fn prune(&mut self, from_ms: u64) {
        while self
            .0
            .front()
            .is_some_and(|e| (e.0 + 1) * BUCKET_MS <= from_ms)
        {
            self.0.pop_front();
        }
    }

    /// Sent and approved in buckets wholly within `[from, to)`.
    fn sum(&self, from_ms: u64, to_ms: u64) -> (u32, u32) {
        self.0
            .iter()
            .filter(|e| e.0 * BUCKET_MS >= from_ms && (e.0 + 1) * BUCKET_MS <= to_ms)
            .fold((0u32, 0u32), |(s, a), e| {
                (s.saturating_add(e.1), a.saturating_add(e.2))
            })
    }
}

#[derive(Debug, Default)]
struct Cell {
    country: String,
    series: Series,
    block: Option<Block>,
    /// Requests seen while probing (every `probe_every`-th passes).
    probe_tick: u32,
    touched: u64,
}

type Key = (Arc<str>, String);

/// See the module docs.
#[derive(Debug)]
pub struct Guard {
    cfg: GuardConfig,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    cells: HashMap<Key, Cell>,
    brands: HashMap<Arc<str>, Series>,
    /// Cells with a block.
    blocked: usize,
    /// When idle cells were last forgotten.
    evicted_at: u64,
}

impl Guard {
    pub fn new(cfg: GuardConfig) -> Self {
        metrics::gauge!("otpgw_fraud_blocked_prefixes").set(0.0);
        Self {
            cfg,
            inner: Mutex::default(),
        }
    }

    pub fn config(&self) -> &GuardConfig {
        &self.cfg
    }

    /// The prefix of `digits` (an international number without `+`): never more
    /// than all but its last 3 digits, so a short number is not its own prefix
    /// (prefixes are logged and kept in the store's keys; numbers never are).
    pub fn prefix<'a>(&self, digits: &'a str) -> &'a str {
        &digits[..digits.len().saturating_sub(3).min(self.cfg.prefix_digits)]
    }

    /// From when a cell's counts are kept at `now`: the window, or while it is
    /// blocked, everything since the block ended (its probes, however slow).
    fn keep_from(&self, block: Option<&Block>, now: u64) -> u64 {
        let from = now.saturating_sub(self.cfg.window.as_millis() as u64);
        block.map_or(from, |b| from.min(b.until))
    }

    /// Decide on a request of `brand` to a number of `prefix` (in `country`);
    /// blocks, lifts and renews happen here.
    pub fn decide(&self, brand: &Arc<str>, prefix: &str, country: &str, now: u64) -> Verdict {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        let key = (brand.clone(), prefix.to_string());
        let Some(cell) = inner.cells.get_mut(&key) else {
            return Verdict::Pass;
        };
        cell.touched = now;
        if cell.country.is_empty() {
            cell.country = country.to_string();
        }
        let from = now.saturating_sub(self.cfg.window.as_millis() as u64);
        let to = now.saturating_sub(self.cfg.grace.as_millis() as u64);
        cell.series.prune(self.keep_from(cell.block.as_ref(), now));
        let (bs, ba) = inner.brands.get(brand).map_or((0, 0), |b| b.sum(from, to));
        let was_blocked = cell.block.is_some();
        let verdict = match cell.block {
            Some(b) if now < b.until => Verdict::Blocked { until_ms: b.until },
            Some(b) => self.probing(cell, b, (bs, ba), to, now),
            None => {
                let (s, a) = cell.series.sum(from, to);
                if self.too_low(s, a, bs.saturating_sub(s), ba.saturating_sub(a)) {
                    let until = now + self.cfg.block.as_millis() as u64;
                    cell.block = Some(Block {
                        since: now,
                        until,
                        level: 0,
                        sent: s,
                        approved: a,
                    });
                    tracing::warn!(
                        brand = %brand, prefix, country, sent = s, approved = a,
                        "fraud guard: prefix blocked (approval ratio far below the brand's)"
                    );
                    Verdict::Blocked { until_ms: until }
                } else {
                    Verdict::Pass
                }
            }
        };
        match (was_blocked, cell.block.is_some()) {
            (false, true) => inner.blocked += 1,
            (true, false) => inner.blocked -= 1,
            _ => {}
        }
        metrics::gauge!("otpgw_fraud_blocked_prefixes").set(inner.blocked as f64);
        verdict
    }

    /// The rule over `cfg`, for judging with other sample counts.
    fn with(cfg: &GuardConfig) -> Judge<'_> {
        Judge(cfg)
    }

    /// Whether `a` of `s` judged codes is far below the rest's `ra` of `rs`.
    fn too_low(&self, s: u32, a: u32, rs: u32, ra: u32) -> bool {
        Judge(&self.cfg).too_low(s, a, rs, ra)
    }
}

/// The blocking rule over some settings.
struct Judge<'a>(&'a GuardConfig);

impl Judge<'_> {
    fn too_low(&self, s: u32, a: u32, rs: u32, ra: u32) -> bool {
        if s < self.0.min_samples {
            return false;
        }
        let rest = if rs >= self.0.min_samples {
            f64::from(ra) / f64::from(rs)
        } else {
            ASSUMED_RATIO
        };
        f64::from(a) / f64::from(s) < self.0.ratio * rest
    }
}

impl Guard {
    /// A blocked prefix past its block: judge the probes (as a prefix is judged,
    /// against the rest of the brand), else let one through now and then.
    fn probing(&self, cell: &mut Cell, b: Block, brand: (u32, u32), to: u64, now: u64) -> Verdict {
        let (s, a) = cell.series.sum(b.until.div_ceil(BUCKET_MS) * BUCKET_MS, to);
        if s >= self.cfg.probe_samples {
            let (rs, ra) = (brand.0.saturating_sub(s), brand.1.saturating_sub(a));
            let judged = GuardConfig {
                min_samples: self.cfg.probe_samples,
                ..self.cfg.clone()
            };
            if !Guard::with(&judged).too_low(s, a, rs, ra) {
                // Lifted: what was counted before the probes is forgotten.
                cell.block = None;
                cell.series.prune(b.until);
                tracing::info!(country = %cell.country, probes = s, approved = a,
                    "fraud guard: block lifted after good probes");
                return Verdict::Pass;
            }
            let level = b.level.saturating_add(1);
            let len = (self.cfg.block.as_millis() as u64)
                .saturating_mul(1 << level.min(20))
                .min(self.cfg.max_block.as_millis() as u64);
            cell.block = Some(Block {
                since: now,
                until: now + len,
                level,
                sent: s,
                approved: a,
            });
            cell.series.prune(now);
            tracing::warn!(country = %cell.country, probes = s, approved = a, level,
                "fraud guard: block renewed after bad probes");
            return Verdict::Blocked {
                until_ms: now + len,
            };
        }
        cell.probe_tick = cell.probe_tick.wrapping_add(1);
        if cell.probe_tick.is_multiple_of(self.cfg.probe_every.max(1)) {
            Verdict::Probe
        } else {
            // Probing: worth trying again after a bucket, not at once.
            Verdict::Blocked {
                until_ms: b.until.max(now + BUCKET_MS),
            }
        }
    }

    /// A code of `brand` went to a number of `prefix` at `now`.
    pub fn sent(&self, brand: &Arc<str>, prefix: &str, country: &str, now: u64) {
        self.add(brand, prefix, country, now, now, 1, 0);
    }

    /// A code sent at `sent_ms` was approved.
    pub fn approved(&self, brand: &Arc<str>, prefix: &str, sent_ms: u64, now: u64) {
        self.add(brand, prefix, "", sent_ms, now, 0, 1);
    }

    #[allow(clippy::too_many_arguments)]
    fn add(
        &self,
        brand: &Arc<str>,
        prefix: &str,
        country: &str,
        at: u64,
        now: u64,
        s: u32,
        a: u32,
    ) {
        let from = now.saturating_sub(self.cfg.window.as_millis() as u64);
        if at < from {
            return;
        }
        let mut inner = self.inner.lock();
        let Inner {
            cells,
            brands,
            evicted_at,
            ..
        } = &mut *inner;
        let key = (brand.clone(), prefix.to_string());
        if !cells.contains_key(&key) {
            if a > 0 {
                return; // a prefix forgotten since: nothing to add to
            }
            if cells.len() >= self.cfg.max_prefixes {
                // Idle prefixes forgotten, at most once a bucket (a walk of
                // them all under the lock).
                if now >= *evicted_at + BUCKET_MS {
                    *evicted_at = now;
                    cells.retain(|_, c| c.block.is_some() || c.touched >= from);
                }
                if cells.len() >= self.cfg.max_prefixes {
                    return;
                }
            }
        }
        let cell = cells.entry(key).or_default();
        if cell.country.is_empty() {
            cell.country = country.to_string();
        }
        cell.touched = cell.touched.max(now);
        cell.series.add(at, s, a);
        let series = brands.entry(brand.clone()).or_default();
        series.prune(from);
        series.add(at, s, a);
    }

    /// The blocked prefixes, probing ones included.
    pub fn blocks(&self, now: u64) -> Vec<BlockView> {
        let inner = self.inner.lock();
        let mut out: Vec<BlockView> = inner
            .cells
            .iter()
            .filter_map(|((brand, prefix), c)| {
                let b = c.block?;
                Some(BlockView {
                    brand: brand.to_string(),
                    prefix: prefix.clone(),
                    country: c.country.clone(),
                    since_ms: b.since,
                    until_ms: b.until,
                    level: b.level,
                    probing: now >= b.until,
                    sent: b.sent,
                    approved: b.approved,
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.brand, &a.prefix).cmp(&(&b.brand, &b.prefix)));
        out
    }

    /// Lift the block of `prefix` for `brand` (and forget its counts); whether
    /// there was one.
    pub fn lift(&self, brand: &str, prefix: &str) -> bool {
        let mut inner = self.inner.lock();
        let key: Key = (brand.into(), prefix.to_string());
        let lifted = inner
            .cells
            .get_mut(&key)
            .is_some_and(|c| c.block.take().is_some());
        if lifted {
            inner.cells.remove(&key);
            inner.blocked -= 1;
            metrics::gauge!("otpgw_fraud_blocked_prefixes").set(inner.blocked as f64);
        }
        lifted
    }
}

pub mod shared;

#[cfg(test)]
mod tests;
