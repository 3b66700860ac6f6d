//! When a message whose send failed is offered again: exponential backoff with
//! jitter, capped by the message's deadline. Sans-IO: `now` and the random draw are
//! passed in.
//!
//! - A throttle answer (ESME_RTHROTTLED, ESME_RMSGQFUL) retries within a fraction of
//!   a second: the carrier's rate limiter already slowed down, so the message only
//!   needs to step aside briefly (`throttle_base`, doubling per attempt up to
//!   `throttle_max`).
//! - Any other temporary error, a response timeout or a lost bind starts at `base`
//!   and doubles up to `max`.
//! - Each delay is drawn uniformly between half and all of its step (so retries of a
//!   burst spread out), and never more than half of the time left before the
//!   deadline, so a retry always happens while it can still be useful.

/// Why a send is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryCause {
    /// ESME_RTHROTTLED or ESME_RMSGQFUL.
    Throttled,
    /// Another temporary error status.
    Temporary,
    /// No response (timeout) or the bind was lost with the submit outstanding.
    Unanswered,
}

/// See the module docs. Times in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub throttle_base: u64,
    pub throttle_max: u64,
    pub base: u64,
    pub max: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            throttle_base: 20,
            throttle_max: 500,
            base: 200,
            max: 10_000,
        }
    }
}

impl RetryPolicy {
    /// The not-before time of the `attempt`-th retry (1 for the first) at `now` of a
    /// message due by `deadline`; `draw` is a uniform random number.
    pub fn retry_at(
        &self,
        cause: RetryCause,
        attempt: u32,
        now: u64,
        deadline: u64,
        draw: u64,
    ) -> u64 {
        let (base, max) = match cause {
            RetryCause::Throttled => (self.throttle_base, self.throttle_max),
            RetryCause::Temporary | RetryCause::Unanswered => (self.base, self.max),
        };
        let shift = attempt.saturating_sub(1).min(20);
        let step = base.saturating_mul(1 << shift).min(max.max(base));
        let lo = step / 2;
        let delay = lo + draw % (step - lo + 1);
        let left = deadline.saturating_sub(now);
        now + delay.min(left / 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn throttles_retry_fast_and_errors_back_off() {
        let p = RetryPolicy::default();
        let far = 1_000_000;
        let t1 = p.retry_at(RetryCause::Throttled, 1, 0, far, 0);
        assert!((10..=20).contains(&t1), "{t1}");
        let t5 = p.retry_at(RetryCause::Throttled, 5, 0, far, u64::MAX);
        assert!(t5 <= 320, "{t5}");
        let e1 = p.retry_at(RetryCause::Temporary, 1, 0, far, 7);
        let e4 = p.retry_at(RetryCause::Temporary, 4, 0, far, 7);
        assert!((100..=200).contains(&e1) && (800..=1600).contains(&e4));
        assert!(p.retry_at(RetryCause::Unanswered, 30, 0, far, u64::MAX) <= 10_000);
    }

    #[test]
    fn the_deadline_caps_the_delay() {
        let p = RetryPolicy::default();
        // 300 ms left: the retry comes within 150 ms.
        assert!(p.retry_at(RetryCause::Temporary, 6, 1_000, 1_300, u64::MAX) <= 1_150);
    }

    proptest! {
        #[test]
        fn always_before_the_deadline_and_not_in_the_past(
            attempt in 0u32..64, now in 0u64..1 << 40, left in 2u64..1 << 30,
            draw: u64, throttled: bool,
        ) {
            let p = RetryPolicy::default();
            let cause = if throttled { RetryCause::Throttled } else { RetryCause::Temporary };
            let t = p.retry_at(cause, attempt, now, now + left, draw);
            prop_assert!(t >= now && t < now + left);
        }
    }
}
