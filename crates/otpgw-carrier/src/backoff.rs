//! Exponential backoff with full jitter, sans-IO (the caller sleeps).

use std::time::Duration;

use rand::Rng;

/// Doubles from `min` up to `max`; each delay is drawn uniformly from half to all of
/// the current step, so binds that dropped together do not reconnect together.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    /// A backoff between `min` and `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            step: min,
        }
    }

    /// The next delay, drawn with `rng`.
    pub fn next_with(&mut self, rng: &mut impl Rng) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        let lo = step.as_millis() as u64 / 2;
        let hi = step.as_millis() as u64;
        Duration::from_millis(if hi > lo {
            rng.random_range(lo..=hi)
        } else {
            hi
        })
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        self.next_with(&mut rand::rng())
    }

    /// Back to the minimum after a success.
    pub fn reset(&mut self) {
        self.step = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let mut rng = rand::rng();
        let d: Vec<u64> = (0..6)
            .map(|_| b.next_with(&mut rng).as_millis() as u64)
            .collect();
        assert!((50..=100).contains(&d[0]));
        assert!((100..=200).contains(&d[1]));
        assert!((400..=800).contains(&d[5]));
        b.reset();
        assert!(b.next_with(&mut rng) <= Duration::from_millis(100));
    }
}
