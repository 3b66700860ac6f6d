//! Carrier quality, measured: per carrier and destination prefix, a sliding window
//! of how the messages it took ended (delivered within `within_ms`, delivered
//! later, failed, or no receipt by the receipt timeout) and how long the DELIVERED
//! receipts took. Free of IO and clock (`now` is passed in).
//!
//! - The window is `slots` slots of `window_ms / slots` each; a sample goes in the
//!   slot of its time, and slots older than the window stop counting.
//! - Prefixes are the first `prefix_digits` digits of the number (country code and
//!   the first digits after it). At most `max_keys` (carrier, prefix) series are
//!   kept: a new one evicts the least recently used.
//! - [`Quality::score`]: the share delivered within `within_ms` for the carrier and
//!   prefix once it has `min_samples` samples, else for the carrier on all its
//!   prefixes, else `None` (unknown).
//! - [`choose`]: which carrier to send to among those available: the best score,
//!   route order breaking near-ties, and a small exploration share that sends some
//!   traffic to the others, so a carrier that recovered is noticed again.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use otpgw_core::assure::Sample;

/// Settings of the measurement.
#[derive(Debug, Clone)]
pub struct QualityConfig {
    pub window_ms: u64,
    pub slots: usize,
    /// A DELIVERED receipt within this time counts as on time.
    pub within_ms: u64,
    pub prefix_digits: usize,
    pub max_keys: usize,
    /// Samples a (carrier, prefix) needs before its own figure is used.
    pub min_samples: u32,
}

impl Default for QualityConfig {
    /// One minute in 6 slots, on time within 10 s, 4-digit prefixes, 10,000 series,
    /// 20 samples.
    fn default() -> Self {
        Self {
            window_ms: 60_000,
            slots: 6,
            within_ms: 10_000,
            prefix_digits: 4,
            max_keys: 10_000,
            min_samples: 20,
        }
    }
}

/// Upper bounds (ms) of the latency buckets; the last catches everything above.
const LAT_MS: [u64; 16] = [
    50,
    100,
    200,
    300,
    500,
    750,
    1_000,
    1_500,
    2_000,
    3_000,
    5_000,
    7_500,
    10_000,
    20_000,
    60_000,
    u64::MAX,
];

#[derive(Debug, Clone, Default)]
struct Slot {
    start: u64,
    within: u32,
    late: u32,
    failed: u32,
    timed_out: u32,
    lat: [u32; LAT_MS.len()],
}

#[derive(Debug, Default)]
struct Series {
    slots: VecDeque<Slot>,
    used: u64,
}

/// Figures of one series (or of a carrier on all its prefixes) over the window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub samples: u32,
    /// Delivered within `within_ms`.
    pub within: u32,
    /// Delivered later.
    pub late: u32,
    pub failed: u32,
    pub timed_out: u32,
    /// Latency of DELIVERED receipts (bucket upper bounds, ms).
    pub p50_ms: Option<u64>,
    pub p90_ms: Option<u64>,
}

impl Stats {
    /// Share delivered within the on-time limit (`None` without samples).
    pub fn within_ratio(&self) -> Option<f64> {
        (self.samples > 0).then(|| f64::from(self.within) / f64::from(self.samples))
    }
    /// Share delivered at all.
    pub fn delivered_ratio(&self) -> Option<f64> {
        (self.samples > 0).then(|| f64::from(self.within + self.late) / f64::from(self.samples))
    }

    fn add(&mut self, s: &Slot, lat: &mut [u32; LAT_MS.len()]) {
        self.within += s.within;
        self.late += s.late;
        self.failed += s.failed;
        self.timed_out += s.timed_out;
        self.samples += s.within + s.late + s.failed + s.timed_out;
        for (a, b) in lat.iter_mut().zip(s.lat.iter()) {
            *a += b;
        }
    }

    fn finish(mut self, lat: &[u32; LAT_MS.len()]) -> Self {
        let total: u32 = lat.iter().sum();
        let q = |p: f64| {
            let want = (f64::from(total) * p).ceil().max(1.0) as u32;
            let mut seen = 0;
            for (i, n) in lat.iter().enumerate() {
                seen += n;
                if seen >= want {
                    return Some(LAT_MS[i]);
                }
            }
            None
        };
        if total > 0 {
            self.p50_ms = q(0.5);
            self.p90_ms = q(0.9);
        }
        self
    }
}

/// A row of [`Quality::rows`].
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub carrier: Arc<str>,
    pub prefix: String,
    pub stats: Stats,
}

/// See the module docs.
#[derive(Debug)]
pub struct Quality {
    cfg: QualityConfig,
    table: HashMap<(Arc<str>, String), Series>,
}

impl Quality {
    /// An empty table.
    pub fn new(cfg: QualityConfig) -> Self {
        Self {
            cfg,
            table: HashMap::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &QualityConfig {
        &self.cfg
    }

    /// The prefix of a destination.
    pub fn prefix_of<'a>(&self, dest: &'a str) -> &'a str {
        let d = dest.trim_start_matches('+');
        &d[..d.len().min(self.cfg.prefix_digits)]
    }

    fn slot_ms(&self) -> u64 {
        (self.cfg.window_ms / self.cfg.slots.max(1) as u64).max(1)
    }

    /// Record how a message to `dest` through `carrier` ended.
    pub fn record(&mut self, carrier: &str, dest: &str, s: Sample, now: u64) {
        let key = (Arc::<str>::from(carrier), self.prefix_of(dest).to_string());
        if !self.table.contains_key(&key) && self.table.len() >= self.cfg.max_keys {
            self.evict(now);
        }
        let slot_ms = self.slot_ms();
        let start = now - now % slot_ms;
        let max_slots = self.cfg.slots.max(1);
        let within_ms = self.cfg.within_ms;
        let series = self.table.entry(key).or_default();
        series.used = now;
        if series.slots.back().is_none_or(|b| b.start < start) {
            series.slots.push_back(Slot {
                start,
                ..Default::default()
            });
            while series.slots.len() > max_slots {
                series.slots.pop_front();
            }
        }
        // A sample is in the latest slot (time only moves forward here).
        let Some(slot) = series.slots.back_mut() else {
            return;
        };
        match s {
            Sample::Delivered(ms) => {
                if ms <= within_ms {
                    slot.within += 1;
                } else {
                    slot.late += 1;
                }
                let i = LAT_MS
                    .iter()
                    .position(|b| ms <= *b)
                    .unwrap_or(LAT_MS.len() - 1);
                slot.lat[i] += 1;
            }
            Sample::Failed => slot.failed += 1,
            Sample::TimedOut => slot.timed_out += 1,
        }
    }

    /// Drop series with nothing in the window, else the least recently used one.
    fn evict(&mut self, now: u64) {
        let horizon = now.saturating_sub(self.cfg.window_ms);
        self.table.retain(|_, s| s.used >= horizon);
        if self.table.len() >= self.cfg.max_keys
            && let Some(k) = self
                .table
                .iter()
                .min_by_key(|(_, s)| s.used)
                .map(|(k, _)| k.clone())
        {
            self.table.remove(&k);
        }
    }

    fn window_start(&self, now: u64) -> u64 {
        let slot_ms = self.slot_ms();
        (now - now % slot_ms).saturating_sub(self.cfg.window_ms - slot_ms)
    }

    /// Figures of `carrier` for `prefix` (`None`: on all its prefixes).
    pub fn stats(&self, carrier: &str, prefix: Option<&str>, now: u64) -> Stats {
        let from = self.window_start(now);
        let mut st = Stats::default();
        let mut lat = [0u32; LAT_MS.len()];
        for ((c, p), s) in &self.table {
            if &**c != carrier || prefix.is_some_and(|x| x != p) {
                continue;
            }
            for slot in s.slots.iter().filter(|x| x.start >= from) {
                st.add(slot, &mut lat);
            }
        }
        st.finish(&lat)
    }

    /// The on-time share of `carrier` for `dest` (see the module docs).
    pub fn score(&self, carrier: &str, dest: &str, now: u64) -> Option<f64> {
        let own = self.stats(carrier, Some(self.prefix_of(dest)), now);
        if own.samples >= self.cfg.min_samples {
            return own.within_ratio();
        }
        let all = self.stats(carrier, None, now);
        (all.samples >= self.cfg.min_samples)
            .then(|| all.within_ratio())
            .flatten()
    }

    /// Every series with samples in the window.
    pub fn rows(&self, now: u64) -> Vec<Row> {
        let mut keys: Vec<_> = self.table.keys().cloned().collect();
        keys.sort();
        keys.into_iter()
            .map(|(c, p)| Row {
                stats: self.stats(&c, Some(&p), now),
                carrier: c,
                prefix: p,
            })
            .filter(|r| r.stats.samples > 0)
            .collect()
    }
}

/// Scores within this of the best count as a tie (route order decides).
pub const TIE: f64 = 0.02;

/// Pick among candidates in route order, each with its score (`None`: unknown,
/// counted as perfect so a new carrier gets traffic), given a uniform random
/// number `r` in [0, 1) and the exploration share: with probability `explore` a
/// candidate other than the best, chosen by `r`; else the best, the earliest in
/// route order among near-ties.
pub fn choose(scores: &[Option<f64>], explore: f64, r: f64) -> usize {
    if scores.len() <= 1 {
        return 0;
    }
    let s = |i: usize| scores[i].unwrap_or(1.0);
    let top = (0..scores.len()).map(s).fold(f64::MIN, f64::max);
    let best = (0..scores.len()).find(|&i| s(i) >= top - TIE).unwrap_or(0);
    if r < explore {
        // Spread the exploration share over the others.
        let others: Vec<usize> = (0..scores.len()).filter(|&i| i != best).collect();
        let k = ((r / explore) * others.len() as f64) as usize;
        return others[k.min(others.len() - 1)];
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q() -> Quality {
        Quality::new(QualityConfig {
            window_ms: 10_000,
            slots: 5,
            min_samples: 10,
            ..Default::default()
        })
    }

    #[test]
    fn ratios_latencies_and_the_window() {
        let mut q = q();
        for i in 0..70u64 {
            q.record("a", "+447400900001", Sample::Delivered(400 + i), 1_000);
        }
        for _ in 0..30 {
            q.record("a", "447400900002", Sample::TimedOut, 1_000);
        }
        let s = q.stats("a", Some("4474"), 1_000);
        assert_eq!((s.samples, s.within, s.timed_out), (100, 70, 30));
        assert_eq!(s.within_ratio(), Some(0.7));
        assert_eq!((s.p50_ms, s.p90_ms), (Some(500), Some(500)));
        assert_eq!(
            q.score("a", "447711111111", 1_000),
            Some(0.7),
            "carrier-wide for a new prefix"
        );
        assert_eq!(q.score("b", "447711111111", 1_000), None, "unknown carrier");
        // Ten seconds later the window has moved past them.
        assert_eq!(q.stats("a", None, 12_000).samples, 0);
        assert_eq!(q.score("a", "447400900001", 12_000), None);
        // Late deliveries count as delivered, not on time.
        q.record("b", "4477", Sample::Delivered(20_000), 12_000);
        let s = q.stats("b", None, 12_000);
        assert_eq!(
            (s.within_ratio(), s.delivered_ratio()),
            (Some(0.0), Some(1.0))
        );
        assert_eq!(q.rows(12_000).len(), 1);
    }

    #[test]
    fn the_table_is_bounded() {
        let mut q = Quality::new(QualityConfig {
            max_keys: 3,
            prefix_digits: 6,
            ..Default::default()
        });
        for i in 0..10u64 {
            q.record("a", &format!("4477{i:02}000000"), Sample::Failed, 1_000 + i);
        }
        assert_eq!(q.table.len(), 3);
    }

    #[test]
    fn choice_prefers_the_best_explores_and_keeps_route_order_on_ties() {
        assert_eq!(choose(&[Some(0.7), Some(1.0)], 0.1, 0.5), 1);
        assert_eq!(
            choose(&[Some(0.99), Some(1.0)], 0.1, 0.5),
            0,
            "near-tie: route order"
        );
        assert_eq!(
            choose(&[None, Some(0.9)], 0.1, 0.5),
            0,
            "unknown counts as perfect"
        );
        assert_eq!(choose(&[Some(0.7), Some(1.0)], 0.1, 0.05), 0, "exploring");
        assert_eq!(choose(&[Some(0.2), Some(0.5), Some(1.0)], 0.1, 0.09), 1);
        assert_eq!(choose(&[Some(0.2)], 0.1, 0.0), 0);
        // Over many draws the worse carrier gets about the exploration share.
        let n = 10_000;
        let worse = (0..n)
            .filter(|i| choose(&[Some(0.7), Some(1.0)], 0.1, *i as f64 / n as f64) == 0)
            .count();
        assert_eq!(worse, 1_000);
    }
}
