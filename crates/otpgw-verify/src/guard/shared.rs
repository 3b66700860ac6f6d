//! The guard over a store several nodes share. Its state lives in tallies:
//! - `fgc:BRAND:PREFIX`: a prefix's counts (fields `sB` and `aB`: codes sent and
//!   approved in bucket `B`), kept a window after their last change;
//! - `fgk:BRAND:PREFIX`: its block (`b_since`, `b_until`, `b_level`, `b_sent`,
//!   `b_approved`), written only when a node decides a block, renewal or lift, and
//!   kept until the longest block could end;
//! - `fgb:BRAND`: the brand's counts;
//! - `fg:blocked`: the blocked prefixes (`BRAND/PREFIX` -> until), for the admin
//!   API.
//!
//! A prefix is digits, so `BRAND:PREFIX` is never another brand's key. Before
//! deciding, a node loads them into its guard ([`Guard::import`]); what it decides
//! ([`Guard::block_fields`]) and counts ([`bucket_field`]) goes back. Free of IO:
//! the service moves the fields.

use super::*;

/// The tally of a prefix's counts.
pub fn cell_key(brand: &str, prefix: &str) -> String {
    format!("fgc:{brand}:{prefix}")
}

/// The tally of a prefix's block.
pub fn block_key(brand: &str, prefix: &str) -> String {
    format!("fgk:{brand}:{prefix}")
}

/// The tally of a brand's counts.
pub fn brand_key(brand: &str) -> String {
    format!("fgb:{brand}")
}

/// Kept past the window, so a bucket outlives its last update by this much.
pub const BUCKET_SLACK_MS: u64 = 60_000;

/// The tally listing blocked prefixes.
pub const BLOCKED_KEY: &str = "fg:blocked";

/// The field counting codes sent (`approved`: approved) at `at_ms`.
pub fn bucket_field(at_ms: u64, approved: bool) -> String {
    format!("{}{}", if approved { 'a' } else { 's' }, at_ms / BUCKET_MS)
}

/// The fields of buckets that end before `before_ms` (to forget them).
pub fn fields_before(fields: &[(String, i64)], before_ms: u64) -> Vec<String> {
    fields
        .iter()
        .filter(|(f, _)| bucket_of(f).is_some_and(|(_, b)| (b + 1) * BUCKET_MS <= before_ms))
        .map(|(f, _)| f.clone())
        .collect()
}

const BLOCK_FIELDS: [&str; 5] = ["b_since", "b_until", "b_level", "b_sent", "b_approved"];

/// A count field's kind (`s` or `a`) and bucket.
fn bucket_of(field: &str) -> Option<(char, u64)> {
    let kind = field.chars().next().filter(|c| matches!(c, 's' | 'a'))?;
    Some((kind, field[1..].parse().ok()?))
}

/// The counts of `fields` from `from_ms` on, and the fields of older buckets.
fn series_of(fields: &[(String, i64)], from_ms: u64) -> (Series, Vec<String>) {
    let mut s = Series::default();
    let mut stale = Vec::new();
    for (f, v) in fields {
        let Some((kind, b)) = bucket_of(f) else {
            continue;
        };
        if (b + 1).saturating_mul(BUCKET_MS) <= from_ms {
            stale.push(f.clone());
            continue;
        }
        let v = u32::try_from((*v).max(0)).unwrap_or(u32::MAX);
        match kind {
            's' => s.add(b.saturating_mul(BUCKET_MS), v, 0),
            _ => s.add(b.saturating_mul(BUCKET_MS), 0, v),
        }
    }
    (s, stale)
}

/// A block from its fields (`None`: no block, or not all of it).
fn block_of(fields: &[(String, i64)]) -> Option<Block> {
    let get = |name: &str| {
        fields
            .iter()
            .find(|(f, _)| f == name)
            .and_then(|(_, v)| u64::try_from(*v).ok())
    };
    match BLOCK_FIELDS.map(get) {
        [
            Some(since),
            Some(until),
            Some(level),
            Some(sent),
            Some(approved),
        ] => Some(Block {
            since,
            until,
            level: u8::try_from(level).unwrap_or(u8::MAX),
            sent: u32::try_from(sent).unwrap_or(u32::MAX),
            approved: u32::try_from(approved).unwrap_or(u32::MAX),
        }),
        _ => None,
    }
}

/// A prefix's shared state as read from its tallies.
#[derive(Debug, Default)]
pub struct Shared {
    pub counts: Vec<(String, i64)>,
    pub block: Vec<(String, i64)>,
    pub brand: Vec<(String, i64)>,
}

impl Guard {
    /// Replace this node's view of `prefix` of `brand`, and of the brand, with
    /// the shared tallies. Returns the fields of buckets no longer kept (for the
    /// caller to remove): of the prefix's counts, then of the brand's.
    pub fn import(
        &self,
        brand: &Arc<str>,
        prefix: &str,
        country: &str,
        t: &Shared,
        now: u64,
    ) -> (Vec<String>, Vec<String>) {
        let block = block_of(&t.block);
        let from = now.saturating_sub(self.cfg.window.as_millis() as u64);
        let (series, stale_cell) = series_of(&t.counts, self.keep_from(block.as_ref(), now));
        let (brand_series, stale_brand) = series_of(&t.brand, from);
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        let key = (brand.clone(), prefix.to_string());
        let had = inner.cells.get(&key).is_some_and(|c| c.block.is_some());
        if series.0.is_empty() && block.is_none() {
            inner.cells.remove(&key);
        } else {
            let c = inner.cells.entry(key).or_default();
            c.series = series;
            c.block = block;
            c.touched = now;
            if c.country.is_empty() {
                c.country = country.to_string();
            }
        }
        match (had, block.is_some()) {
            (false, true) => inner.blocked += 1,
            (true, false) => inner.blocked -= 1,
            _ => {}
        }
        inner.brands.insert(brand.clone(), brand_series);
        metrics::gauge!("otpgw_fraud_blocked_prefixes").set(inner.blocked as f64);
        (stale_cell, stale_brand)
    }

    /// The block of `prefix` of `brand` as tally fields (all `None`: no block).
    pub fn block_fields(&self, brand: &str, prefix: &str) -> Vec<(String, Option<i64>)> {
        let inner = self.inner.lock();
        let b = inner
            .cells
            .get(&(Arc::from(brand), prefix.to_string()))
            .and_then(|c| c.block);
        let values = b.map(|b| {
            [
                b.since,
                b.until,
                u64::from(b.level),
                u64::from(b.sent),
                u64::from(b.approved),
            ]
        });
        BLOCK_FIELDS
            .iter()
            .enumerate()
            .map(|(i, f)| {
                (
                    (*f).to_string(),
                    values.map(|v| i64::try_from(v[i]).unwrap_or(i64::MAX)),
                )
            })
            .collect()
    }

    /// When the block of `prefix` of `brand` ends, if it has one.
    pub fn blocked_until(&self, brand: &str, prefix: &str) -> Option<u64> {
        let inner = self.inner.lock();
        inner
            .cells
            .get(&(Arc::from(brand), prefix.to_string()))
            .and_then(|c| c.block.map(|b| b.until))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_and_counts_travel_through_fields() {
        let a = Guard::new(GuardConfig::default());
        let b: Arc<str> = "bank".into();
        for s in 0..40 {
            a.sent(&b, "449000", "GB", s * 100);
        }
        assert!(matches!(
            a.decide(&b, "449000", "GB", 60_000),
            Verdict::Blocked { .. }
        ));
        // Another node learns the counts and the block from the fields.
        let block: Vec<(String, i64)> = a
            .block_fields("bank", "449000")
            .into_iter()
            .map(|(f, v)| (f, v.unwrap()))
            .collect();
        let mut counts = std::collections::HashMap::<String, i64>::new();
        for s in 0..40 {
            *counts.entry(bucket_field(s * 100, false)).or_default() += 1;
        }
        let mut counts: Vec<(String, i64)> = counts.into_iter().collect();
        counts.push(("s1".into(), 5));
        counts.push(("\u{e9}9".into(), 5)); // not a count: ignored
        let cell = Shared {
            counts,
            block,
            brand: Vec::new(),
        };
        let other = Guard::new(GuardConfig::default());
        let (stale, _) = other.import(&b, "449000", "GB", &cell, 60_000);
        assert!(stale.is_empty());
        assert_eq!(
            other.blocked_until("bank", "449000"),
            a.blocked_until("bank", "449000")
        );
        assert_eq!(other.blocks(60_000)[0].sent, 40);
        // Buckets past the window are for the caller to remove; while a block
        // lasts, those since its end are kept (its probes, however slow).
        let late = Guard::new(GuardConfig::default());
        let unblocked = Shared {
            counts: cell.counts.clone(),
            ..Shared::default()
        };
        let (mut stale, _) = late.import(&b, "449000", "GB", &unblocked, 10_000_000);
        stale.sort();
        assert_eq!(stale, ["s0", "s1"]);
        let until = a.blocked_until("bank", "449000").unwrap();
        let probe = format!("s{}", until / BUCKET_MS + 1);
        let mut probing = Shared {
            counts: cell.counts.clone(),
            block: cell.block.clone(),
            brand: Vec::new(),
        };
        probing.counts.push((probe.clone(), 1));
        let (mut stale, _) = late.import(&b, "449000", "GB", &probing, until + 3_600_000);
        stale.sort();
        assert_eq!(stale, ["s0", "s1"], "the probe of an hour ago is kept");
        assert_eq!(fields_before(&cell.counts, 5_000), ["s0"]);
        // A lifted block travels as fields removed.
        assert!(other.lift("bank", "449000"));
        assert!(
            other
                .block_fields("bank", "449000")
                .iter()
                .all(|(_, v)| v.is_none())
        );
    }
}
