//! Per-brand traffic limits, sans-IO (they take `now`):
//!
//! - [`BrandLimits`]: a brand's messages per second (a token bucket shared by all
//!   its sessions; over it: ESME_RTHROTTLED), the sender ids it may use, and the
//!   destination prefixes it may send to;
//! - [`DestinationLimiter`]: at most `max` messages per destination number per
//!   window for each brand, the basic defence against SMS pumping (a bot making a
//!   brand's login form send codes to premium numbers). At most `max_entries`
//!   (brand, number) pairs are tracked; when full, pairs whose window ended are
//!   dropped, and if none has, new numbers are refused rather than left unchecked.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

/// A token bucket holding up to one second's worth (brands send in bursts).
#[derive(Debug)]
struct Bucket {
    rate: f64,
    tokens: f64,
    /// When tokens were last added (ms since the epoch).
    last: u64,
}

impl Bucket {
    fn take(&mut self, now: u64) -> bool {
        let dt = now.saturating_sub(self.last) as f64 / 1000.0;
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.rate.max(1.0));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct BrandLimits {
    /// Messages per second for all the brand's sessions, a second's worth of burst
    /// (`None`: no limit).
    rate: Option<Mutex<Bucket>>,
    /// Sender ids (source addresses) allowed, compared exactly; empty: any.
    pub allowed_sources: Vec<String>,
    /// Destination prefixes allowed (digits, without `+`); empty: any.
    pub allowed_prefixes: Vec<String>,
}

impl BrandLimits {
    /// Limits with an optional rate in messages per second.
    pub fn new(rate: Option<u32>, now: u64) -> Self {
        Self {
            rate: rate.map(|r| {
                Mutex::new(Bucket {
                    rate: f64::from(r),
                    tokens: f64::from(r),
                    last: now,
                })
            }),
            allowed_sources: Vec::new(),
            allowed_prefixes: Vec::new(),
        }
    }

    /// Take one message from the brand's rate at `now`; false when over it.
    pub fn take(&self, now: u64) -> bool {
        self.rate.as_ref().is_none_or(|b| b.lock().take(now))
    }

    /// Whether the brand may send from this source address.
    pub fn source_allowed(&self, source: &str) -> bool {
        self.allowed_sources.is_empty() || self.allowed_sources.iter().any(|s| s == source)
    }

    /// Whether the brand may send to this destination.
    pub fn destination_allowed(&self, dest: &str) -> bool {
        let d = dest.strip_prefix('+').unwrap_or(dest);
        self.allowed_prefixes.is_empty()
            || self
                .allowed_prefixes
                .iter()
                .any(|p| d.starts_with(p.as_str()))
    }
}

/// See the module docs.
#[derive(Debug)]
pub struct DestinationLimiter {
    max_entries: usize,
    /// Keyed by brand and number (digit count and value: no allocation per message).
    counts: HashMap<(Arc<str>, u8, u64), (u64, u32)>,
}

impl DestinationLimiter {
    /// A limiter tracking at most `max_entries` (brand, number) pairs.
    pub fn new(max_entries: usize) -> Self {
        Self {
            max_entries,
            counts: HashMap::new(),
        }
    }

    /// Count a message from `brand` to `dest` at `now`, allowing `max` per `window`;
    /// `Err(ms)` when it is over the limit (it is then not counted): the window
    /// ends in `ms`.
    pub fn admit(
        &mut self,
        brand: &Arc<str>,
        dest: &str,
        max: u32,
        window: Duration,
        now: u64,
    ) -> Result<(), u64> {
        let window_ms = window.as_millis() as u64;
        // Validation let only 7-15 digit numbers (optional `+`) through.
        let digits = dest.strip_prefix('+').unwrap_or(dest);
        let Ok(number) = digits.parse::<u64>() else {
            return Err(window_ms);
        };
        let key = (brand.clone(), digits.len() as u8, number);
        if !self.counts.contains_key(&key) && self.counts.len() >= self.max_entries {
            self.counts
                .retain(|_, (start, _)| now.saturating_sub(*start) < window_ms);
            if self.counts.len() >= self.max_entries {
                return Err(window_ms);
            }
        }
        let e = self.counts.entry(key).or_insert((now, 0));
        if now.saturating_sub(e.0) >= window_ms {
            *e = (now, 0);
        }
        if e.1 >= max {
            return Err((e.0 + window_ms).saturating_sub(now));
        }
        e.1 += 1;
        Ok(())
    }

    /// Pairs tracked.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brand_rate_sources_and_prefixes() {
        let t0: u64 = 1_000_000;
        let mut l = BrandLimits::new(Some(100), t0);
        let took = (0..1000).filter(|_| l.take(t0)).count();
        assert_eq!(took, 100, "a second's worth at once");
        let took = (0..1000).filter(|_| l.take(t0 + 500)).count();
        assert_eq!(took, 50, "then the rate");
        assert!(BrandLimits::default().take(t0), "no limit");
        assert!(l.source_allowed("anything"));
        l.allowed_sources = vec!["MyBank".into()];
        assert!(l.source_allowed("MyBank") && !l.source_allowed("MyBank2"));
        l.allowed_prefixes = vec!["44".into(), "353".into()];
        assert!(l.destination_allowed("447400900123"));
        assert!(l.destination_allowed("+353861234567"));
        assert!(!l.destination_allowed("88216001234"));
    }

    #[test]
    fn per_destination_window() {
        let t0: u64 = 1_000_000;
        let w = Duration::from_secs(60);
        let mut d = DestinationLimiter::new(1000);
        let (bank, shop): (Arc<str>, Arc<str>) = ("bank".into(), "shop".into());
        for _ in 0..3 {
            assert!(d.admit(&bank, "447400900123", 3, w, t0).is_ok());
        }
        assert_eq!(
            d.admit(&bank, "+447400900123", 3, w, t0 + 15_000),
            Err(45_000),
            "same number with +; refused for the rest of its window"
        );
        assert!(
            d.admit(&shop, "447400900123", 3, w, t0).is_ok(),
            "per brand"
        );
        assert!(
            d.admit(&bank, "447400900124", 3, w, t0).is_ok(),
            "per number"
        );
        assert!(
            d.admit(&bank, "447400900123", 3, w, t0 + w.as_millis() as u64)
                .is_ok(),
            "next window"
        );
    }

    #[test]
    fn bounded_and_refuses_when_full() {
        let t0: u64 = 1_000_000;
        let w = Duration::from_secs(60);
        let mut d = DestinationLimiter::new(10);
        let b: Arc<str> = "b".into();
        for i in 0..10 {
            assert!(d.admit(&b, &format!("44740090{i:04}"), 5, w, t0).is_ok());
        }
        assert!(
            d.admit(&b, "447400991111", 5, w, t0).is_err(),
            "full: refused, not unchecked"
        );
        assert!(
            d.admit(&b, "447400991111", 5, w, t0 + w.as_millis() as u64)
                .is_ok(),
            "expired pairs make room"
        );
        assert_eq!(d.len(), 1);
    }
}
