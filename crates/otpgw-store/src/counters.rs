//! Event counts in windows, in memory: what a store that serves one node uses for
//! [`otpgw_core::Store::count`] (per-number and per-prefix caps). Bounded: at most
//! `max` keys; when full, keys whose window ended are dropped, and if none has, the
//! count answered is `u64::MAX` (callers refuse rather than leave a key unchecked).

use dashmap::DashMap;
use otpgw_core::WindowCount;

/// See the module docs.
#[derive(Debug)]
pub struct Counters {
    max: usize,
    /// key -> (window start, count).
    map: DashMap<String, (u64, u64)>,
}

impl Counters {
    /// Counters for at most `max` keys.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            map: DashMap::new(),
        }
    }

    /// Count one event under `key` at `now_ms` in a window of `window_ms` that
    /// starts with its first event; the count, this one included, and when the
    /// window ends.
    pub fn count(&self, key: &str, window_ms: u64, now_ms: u64) -> WindowCount {
        if !self.map.contains_key(key) && self.map.len() >= self.max {
            self.map
                .retain(|_, (start, _)| now_ms.saturating_sub(*start) < window_ms);
            if self.map.len() >= self.max {
                return WindowCount {
                    count: u64::MAX,
                    resets_in_ms: window_ms,
                };
            }
        }
        let mut e = self.map.entry(key.to_string()).or_insert((now_ms, 0));
        if now_ms.saturating_sub(e.0) >= window_ms {
            *e = (now_ms, 0);
        }
        e.1 += 1;
        WindowCount {
            count: e.1,
            resets_in_ms: (e.0 + window_ms).saturating_sub(now_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_and_bound() {
        let c = Counters::new(2);
        let n = |key: &str, now: u64| c.count(key, 1000, now).count;
        assert_eq!(n("a", 0), 1);
        assert_eq!(
            c.count("a", 1000, 999),
            WindowCount {
                count: 2,
                resets_in_ms: 1
            }
        );
        assert_eq!(
            c.count("a", 1000, 1000),
            WindowCount {
                count: 1,
                resets_in_ms: 1000
            },
            "a new window"
        );
        assert_eq!(n("b", 1000), 1);
        assert_eq!(n("c", 1500), u64::MAX, "full: refused");
        assert_eq!(n("c", 2500), 1, "ended windows make room");
    }
}
