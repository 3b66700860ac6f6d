//! Sans-IO rate limiter for one carrier, shared by all its binds, with additive
//! increase and multiplicative decrease (AIMD) on throttling.
//!
//! A token bucket refilled at the current rate (burst: 20 ms worth,
//! at least one). The current rate starts at the configured cap (or unlimited when
//! none is configured). When the carrier answers ESME_RTHROTTLED or ESME_RMSGQFUL,
//! `on_throttled` notes the rate that was too fast (the *ceiling*: the rate in force,
//! or what was granted lately when none was, or what the carrier took lately if
//! less) and drops to `decrease` (0.7) times it, at most once per `decrease_every`
//! (500 ms), so one burst of throttle answers is one decrease. After that pause the
//! rate climbs back fast (half the ceiling per second) to 95 % of the ceiling, holds
//! near it and probes on a cubic curve: back at the ceiling after `probe_period`
//! (10 s), faster beyond it, so a lifted cap is found; never above the configured
//! cap. An uncapped carrier becomes unlimited again at twice the ceiling. So a
//! carrier's hidden cap is found within a second or two, then used at about 95 %
//! with one short burst of throttle answers per probe period, where plain halving
//! and a linear climb would average three quarters. Times are milliseconds since
//! the epoch, passed in. Own code rather than a crate (governor has no AIMD): the rate
//! change and the simulated clock are the point, and both are a few lines here.

use std::time::Duration;

/// See the module docs.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    cap: Option<f64>,
    /// Current rate (messages/s); `None` = unlimited.
    rate: Option<f64>,
    tokens: f64,
    last_refill: u64,
    last_decrease: Option<u64>,
    /// The rate that was too fast at the last throttle answer.
    ceiling: f64,
    min_rate: f64,
    decrease: f64,
    decrease_every: Duration,
    /// When the rate reached 95 % of the ceiling after the last decrease.
    probe_start: Option<u64>,
    probe_period: Duration,
    /// What was granted in the current one-second window, and the rate of the last.
    window_start: u64,
    window_taken: f64,
    /// Throttle answers in the current window (so the carrier's accepted rate is
    /// known: granted minus throttled).
    window_throttled: f64,
    last_window_rate: f64,
    last_window_accepted: f64,
}

impl RateLimiter {
    /// A limiter with an optional cap in messages per second.
    pub fn new(cap: Option<f64>, now: u64) -> Self {
        let cap = cap.filter(|c| *c > 0.0);
        Self {
            cap,
            rate: cap,
            tokens: cap.map_or(0.0, burst),
            last_refill: now,
            last_decrease: None,
            ceiling: 0.0,
            min_rate: 1.0,
            decrease: 0.7,
            decrease_every: Duration::from_millis(500),
            probe_start: None,
            probe_period: Duration::from_secs(10),
            window_start: now,
            window_taken: 0.0,
            window_throttled: 0.0,
            last_window_rate: 0.0,
            last_window_accepted: 0.0,
        }
    }

    fn note_taken(&mut self, n: usize, now: u64) {
        let el = secs(self.window_start, now);
        if el >= 1.0 {
            self.last_window_rate = self.window_taken / el;
            self.last_window_accepted = (self.window_taken - self.window_throttled).max(0.0) / el;
            self.window_start = now;
            self.window_taken = 0.0;
            self.window_throttled = 0.0;
        }
        self.window_taken += n as f64;
    }

    /// Messages per second granted lately (the larger of the last full second and
    /// the current partial one).
    pub fn observed(&self, now: u64) -> f64 {
        let el = secs(self.window_start, now);
        let cur = if el >= 0.05 {
            self.window_taken / el
        } else {
            0.0
        };
        self.last_window_rate.max(cur)
    }

    /// What the carrier took lately (granted minus throttled, per second), from the
    /// current window once it is a quarter of a second old, else the last one.
    fn accepted(&self, now: u64) -> Option<f64> {
        let el = secs(self.window_start, now);
        let a = if el >= 0.25 {
            (self.window_taken - self.window_throttled).max(0.0) / el
        } else {
            self.last_window_accepted
        };
        (a > 0.0).then_some(a)
    }

    /// The rate now in force (`None`: unlimited).
    pub fn rate(&self) -> Option<f64> {
        self.rate
    }

    /// The configured cap (messages per second), if any.
    pub fn cap(&self) -> Option<f64> {
        self.cap
    }

    /// Change the cap (config reload).
    pub fn set_cap(&mut self, cap: Option<f64>, now: u64) {
        let cap = cap.filter(|c| *c > 0.0);
        self.refill(now);
        self.cap = cap;
        self.rate = match (self.rate, cap) {
            (Some(r), Some(c)) => Some(r.min(c)),
            (None, c) => c,
            (Some(r), None) => Some(r),
        };
    }

    fn refill(&mut self, now: u64) {
        let prev = self.last_refill;
        let dt = secs(prev, now);
        self.last_refill = now;
        let Some(rate) = self.rate else { return };
        // Climb back once the burst that caused the decrease is over.
        let mut rate = rate;
        if let Some(d) = self.last_decrease {
            let climb = secs(prev.max(d + ms(self.decrease_every)), now);
            let ceiling = self.ceiling.max(self.min_rate);
            if rate < 0.95 * ceiling {
                // Fast back to just under what was too fast.
                rate = (rate + ceiling * 0.5 * climb).min(0.95 * ceiling);
                if rate >= 0.95 * ceiling {
                    self.probe_start = Some(now);
                }
            } else {
                // Then hold near it and probe on a cubic: the old ceiling again
                // after `probe_period`, faster and faster beyond (a lifted cap is
                // found), never above the configured cap.
                let start = *self.probe_start.get_or_insert(now);
                let x = secs(start, now) / self.probe_period.as_secs_f64();
                rate = rate.max(ceiling * (0.95 + 0.05 * x * x * x));
            }
            match self.cap {
                Some(c) => rate = rate.min(c),
                None if rate >= 2.0 * ceiling => {
                    self.rate = None;
                    return;
                }
                None => {}
            }
        }
        self.rate = Some(rate);
        self.tokens = (self.tokens + rate * dt).min(burst(rate));
    }

    /// Take up to `want` tokens now; returns how many may be sent.
    pub fn take(&mut self, want: usize, now: u64) -> usize {
        self.refill(now);
        if self.rate.is_none() {
            self.note_taken(want, now);
            return want;
        }
        let n = (self.tokens.floor() as usize).min(want);
        self.tokens -= n as f64;
        self.note_taken(n, now);
        n
    }

    /// Give back `n` tokens taken by [`RateLimiter::take`] but not used (another
    /// limit, such as one shared with other nodes, granted fewer).
    pub fn refund(&mut self, n: usize) {
        if let Some(rate) = self.rate {
            self.tokens = (self.tokens + n as f64).min(burst(rate));
            self.window_taken = (self.window_taken - n as f64).max(0.0);
        }
    }

    /// When the next token is available (`None`: now, or unlimited).
    pub fn next_token_at(&self, now: u64) -> Option<u64> {
        let rate = self.rate?;
        if self.tokens >= 1.0 {
            return None;
        }
        let wait_s = (1.0 - self.tokens) / rate.max(self.min_rate);
        Some(now + ((wait_s * 1000.0).ceil() as u64).max(1))
    }

    /// The carrier said "too fast": drop to `decrease` times the rate in force (once
    /// per burst of answers). An uncapped carrier drops from what was granted lately.
    pub fn on_throttled(&mut self, now: u64) {
        self.refill(now);
        self.window_throttled += 1.0;
        if self
            .last_decrease
            .is_some_and(|d| now.saturating_sub(d) < ms(self.decrease_every))
        {
            return;
        }
        let base = self
            .rate
            .unwrap_or_else(|| self.observed(now).max(self.min_rate));
        // The ceiling: what was too fast, or what the carrier actually took if less
        // (so a carrier first met far above its cap is found in one or two steps).
        let ceiling = self
            .accepted(now)
            .map_or(base, |a| a.min(base))
            .max(self.min_rate);
        let new = (ceiling * self.decrease).max(self.min_rate);
        self.rate = Some(new);
        self.tokens = self.tokens.min(burst(new));
        self.ceiling = ceiling;
        self.probe_start = None;
        self.last_decrease = Some(now);
    }
}

/// Tokens a bucket may hold at `rate`: a fiftieth of a second (20 ms)'s worth, at least one.
pub fn burst(rate: f64) -> f64 {
    (rate / 50.0).max(1.0)
}

/// Seconds from `from` to `to` (ms; 0 when `to` is earlier).
fn secs(from: u64, to: u64) -> f64 {
    to.saturating_sub(from) as f64 / 1000.0
}

/// A duration in milliseconds.
fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(t0: u64, n: u64) -> u64 {
        t0 + n
    }

    #[test]
    fn unlimited_without_cap_or_throttling() {
        let t0: u64 = 1_000_000;
        let mut l = RateLimiter::new(None, t0);
        assert_eq!(l.take(10_000, t0), 10_000);
        assert_eq!(l.next_token_at(t0), None);
    }

    #[test]
    fn cap_is_respected_over_a_second() {
        let t0: u64 = 1_000_000;
        let mut l = RateLimiter::new(Some(100.0), t0);
        let mut sent = 0;
        for step in 0..=1000 {
            sent += l.take(1000, ms(t0, step));
        }
        assert!(
            (100..=111).contains(&sent),
            "{sent} in one second at 100/s (burst 10)"
        );
    }

    #[test]
    fn throttle_decreases_once_per_burst_then_climbs_back() {
        let t0: u64 = 1_000_000;
        let mut l = RateLimiter::new(Some(1000.0), t0);
        l.on_throttled(t0);
        l.on_throttled(ms(t0, 10)); // same burst: no second decrease
        assert_eq!(l.rate(), Some(700.0));
        l.take(0, ms(t0, 400));
        l.take(0, ms(t0, 500));
        assert_eq!(l.rate(), Some(700.0), "no climb during the burst");
        // Fast back towards the ceiling (1000): 95 % of it within half a second...
        l.take(0, ms(t0, 1_000));
        let r = l.rate().unwrap();
        assert!((949.0..=951.0).contains(&r), "{r}");
        // ...then holds near it, back at the ceiling after the probe period (10 s).
        l.take(0, ms(t0, 6_000));
        let r = l.rate().unwrap();
        assert!((950.0..=958.0).contains(&r), "{r}");
        l.take(0, ms(t0, 10_500));
        let r = l.rate().unwrap();
        assert!((990.0..=1000.0).contains(&r), "{r}");
        l.take(0, ms(t0, 13_000));
        assert_eq!(l.rate(), Some(1000.0), "never above the cap");
        // The next throttle starts from the rate in force.
        l.on_throttled(ms(t0, 13_100));
        assert_eq!(l.rate(), Some(700.0));
    }

    #[test]
    fn uncapped_carrier_is_limited_from_what_it_sent_then_freed() {
        let t0: u64 = 1_000_000;
        let mut l = RateLimiter::new(None, t0);
        // 800 granted over the last second, then the carrier throttles.
        for step in 0..800u64 {
            l.take(1, ms(t0, step * 1000 / 800));
        }
        l.on_throttled(ms(t0, 1000));
        let r = l.rate().unwrap();
        assert!((530.0..=590.0).contains(&r), "{r}");
        assert!(l.take(10_000, ms(t0, 1000)) <= 60);
        // Quiet: near the ceiling for a while, then faster, then unlimited.
        for step in 11..=100u64 {
            l.take(0, ms(t0, step * 100));
        }
        let r = l.rate().unwrap();
        assert!((740.0..=800.0).contains(&r), "{r} after 10 s");
        for step in 101..=400u64 {
            l.take(0, ms(t0, step * 100));
        }
        assert_eq!(l.rate(), None, "unlimited again after climbing back");
    }

    proptest! {
        /// Whatever the throttle pattern, no one-second window sees more than the
        /// cap plus one burst.
        #[test]
        fn never_exceeds_cap_in_any_second(
            cap in 10u32..2000,
            throttles in proptest::collection::vec(0u64..5000, 0..20),
        ) {
            let t0: u64 = 1_000_000;
            let cap = f64::from(cap);
            let mut l = RateLimiter::new(Some(cap), t0);
            let mut sends: Vec<u64> = Vec::new();
            for step in 0..5000u64 {
                if throttles.contains(&step) {
                    l.on_throttled(ms(t0, step));
                }
                for _ in 0..l.take(usize::MAX, ms(t0, step)) {
                    sends.push(step);
                }
            }
            let allowed = cap + burst(cap) + 1.0;
            let mut lo = 0;
            for hi in 0..sends.len() {
                while sends[hi] - sends[lo] >= 1000 { lo += 1; }
                prop_assert!((hi - lo + 1) as f64 <= allowed, "{} sends in a second, cap {cap}", hi - lo + 1);
            }
        }
    }
}
