//! Sans-IO rate limiter for one carrier, shared by all its binds, with additive
//! increase and multiplicative decrease (AIMD) on throttling.
//!
//! A token bucket refilled at the current rate (burst: a tenth of a second's worth,
//! at least one). The current rate starts at the configured cap (or unlimited when
//! none is configured). When the carrier answers ESME_RTHROTTLED or ESME_RMSGQFUL,
//! `on_throttled` halves the rate (at most once per `decrease_every`, so one burst of
//! throttle answers is one decrease), starting from what the limiter granted lately
//! when no cap is configured. Each second without throttling adds
//! `increase_fraction` of the cap (or of the rate at the last decrease) back, up to
//! the cap; an uncapped carrier becomes unlimited again once it climbed back to twice
//! the rate it was throttled at. Own code rather than a crate: the AIMD rate change
//! and the simulated clock are the point, and both are a few lines here.

use std::time::{Duration, Instant};

/// See the module docs.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    cap: Option<f64>,
    /// Current rate (messages/s); `None` = unlimited.
    rate: Option<f64>,
    tokens: f64,
    last_refill: Instant,
    last_decrease: Option<Instant>,
    /// The rate right after the last decrease (base for additive increase).
    throttled_at: f64,
    min_rate: f64,
    increase_fraction: f64,
    decrease_every: Duration,
    /// What was granted in the current one-second window, and the rate of the last.
    window_start: Instant,
    window_taken: f64,
    last_window_rate: f64,
}

impl RateLimiter {
    /// A limiter with an optional cap in messages per second.
    pub fn new(cap: Option<f64>, now: Instant) -> Self {
        let cap = cap.filter(|c| *c > 0.0);
        Self {
            cap,
            rate: cap,
            tokens: cap.map_or(0.0, burst),
            last_refill: now,
            last_decrease: None,
            throttled_at: 0.0,
            min_rate: 1.0,
            increase_fraction: 0.1,
            decrease_every: Duration::from_millis(500),
            window_start: now,
            window_taken: 0.0,
            last_window_rate: 0.0,
        }
    }

    fn note_taken(&mut self, n: usize, now: Instant) {
        let el = now
            .saturating_duration_since(self.window_start)
            .as_secs_f64();
        if el >= 1.0 {
            self.last_window_rate = self.window_taken / el;
            self.window_start = now;
            self.window_taken = 0.0;
        }
        self.window_taken += n as f64;
    }

    /// Messages per second granted lately (the larger of the last full second and
    /// the current partial one).
    pub fn observed(&self, now: Instant) -> f64 {
        let el = now
            .saturating_duration_since(self.window_start)
            .as_secs_f64();
        let cur = if el >= 0.05 {
            self.window_taken / el
        } else {
            0.0
        };
        self.last_window_rate.max(cur)
    }

    /// The rate now in force (`None`: unlimited).
    pub fn rate(&self) -> Option<f64> {
        self.rate
    }

    /// Change the cap (config reload).
    pub fn set_cap(&mut self, cap: Option<f64>, now: Instant) {
        let cap = cap.filter(|c| *c > 0.0);
        self.refill(now);
        self.cap = cap;
        self.rate = match (self.rate, cap) {
            (Some(r), Some(c)) => Some(r.min(c)),
            (None, c) => c,
            (Some(r), None) => Some(r),
        };
    }

    fn refill(&mut self, now: Instant) {
        let dt = now
            .saturating_duration_since(self.last_refill)
            .as_secs_f64();
        self.last_refill = now;
        let Some(rate) = self.rate else { return };
        // Additive increase after a quiet spell.
        let quiet = self
            .last_decrease
            .is_none_or(|d| now.saturating_duration_since(d) >= Duration::from_secs(1));
        let mut rate = rate;
        if quiet && self.last_decrease.is_some() {
            let step =
                self.cap.unwrap_or(self.throttled_at.max(self.min_rate)) * self.increase_fraction;
            rate += step * dt;
            match self.cap {
                Some(c) => rate = rate.min(c),
                None if rate >= 2.0 * self.throttled_at.max(self.min_rate) => {
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
    pub fn take(&mut self, want: usize, now: Instant) -> usize {
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

    /// When the next token is available (`None`: now, or unlimited).
    pub fn next_token_at(&self, now: Instant) -> Option<Instant> {
        let rate = self.rate?;
        if self.tokens >= 1.0 {
            return None;
        }
        Some(now + Duration::from_secs_f64((1.0 - self.tokens) / rate.max(self.min_rate)))
    }

    /// The carrier said "too fast": halve the rate (once per burst of answers). An
    /// uncapped carrier is halved from what was granted lately.
    pub fn on_throttled(&mut self, now: Instant) {
        self.refill(now);
        if self
            .last_decrease
            .is_some_and(|d| now.saturating_duration_since(d) < self.decrease_every)
        {
            return;
        }
        let base = self
            .rate
            .unwrap_or_else(|| self.observed(now).max(self.min_rate));
        let new = (base * 0.5).max(self.min_rate);
        self.rate = Some(new);
        self.tokens = self.tokens.min(burst(new));
        self.throttled_at = new;
        self.last_decrease = Some(now);
    }
}

/// Tokens a bucket may hold at `rate`: a tenth of a second's worth, at least one.
fn burst(rate: f64) -> f64 {
    (rate / 10.0).max(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    #[test]
    fn unlimited_without_cap_or_throttling() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(None, t0);
        assert_eq!(l.take(10_000, t0), 10_000);
        assert_eq!(l.next_token_at(t0), None);
    }

    #[test]
    fn cap_is_respected_over_a_second() {
        let t0 = Instant::now();
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
    fn throttle_halves_once_per_burst_then_climbs_back() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(Some(1000.0), t0);
        l.on_throttled(t0);
        l.on_throttled(ms(t0, 10)); // same burst: no second halving
        assert_eq!(l.rate(), Some(500.0));
        l.on_throttled(ms(t0, 600));
        assert_eq!(l.rate(), Some(250.0));
        // Quiet for a while: +10 % of the cap per second, up to the cap.
        l.take(0, ms(t0, 1600));
        let r = l.rate().unwrap();
        assert!(r > 250.0 && r < 400.0, "{r}");
        l.take(0, ms(t0, 20_000));
        assert_eq!(l.rate(), Some(1000.0));
    }

    #[test]
    fn uncapped_carrier_is_limited_from_what_it_sent_then_freed() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(None, t0);
        // 800 granted over the last second, then the carrier throttles.
        for step in 0..800u64 {
            l.take(1, ms(t0, step * 1000 / 800));
        }
        l.on_throttled(ms(t0, 1000));
        let r = l.rate().unwrap();
        assert!((380.0..=420.0).contains(&r), "{r}");
        assert!(l.take(10_000, ms(t0, 1000)) <= 42);
        l.take(0, ms(t0, 40_000));
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
            let t0 = Instant::now();
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
