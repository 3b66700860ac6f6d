//! The rules of a verification, free of IO and clock (`now` is passed in): what a
//! check answers and what it changes, and whether a resend is allowed.
//!
//! - A check of a pending, unexpired verification counts; the right code approves
//!   it (once: a later check of an approved verification is denied), a wrong one is
//!   denied, and the `max_checks`-th check that is wrong locks it (every later check
//!   answers max_attempts, even with the right code).
//! - An expired verification answers expired and changes nothing; a superseded one
//!   (a newer verification for the same number) answers superseded.
//! - A resend needs a pending, unexpired verification, `resend_cooldown_ms` since
//!   the last code, and fewer than `max_resends` resends so far.

use crate::record::{State, Verification};

/// Limits of a verification.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub max_checks: u8,
    pub max_resends: u8,
    pub resend_cooldown_ms: u64,
}

impl Default for Rules {
    /// 5 checks, 3 resends, 30 s between codes.
    fn default() -> Self {
        Self {
            max_checks: 5,
            max_resends: 3,
            resend_cooldown_ms: 30_000,
        }
    }
}

/// What a check answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Approved,
    Denied,
    Expired,
    MaxAttempts,
    Superseded,
}

impl Outcome {
    /// Metric label and API status (a superseded verification is reported as
    /// expired, with its reason).
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Approved => "approved",
            Outcome::Denied => "denied",
            Outcome::Expired => "expired",
            Outcome::MaxAttempts => "max_attempts",
            Outcome::Superseded => "superseded",
        }
    }
}

/// Check a code: the answer, and the record to write (`None`: nothing changes).
/// `matches` is asked only when the code counts (it compares in constant time).
pub fn check(
    v: &Verification,
    matches: impl FnOnce() -> bool,
    rules: &Rules,
    now: u64,
) -> (Outcome, Option<Verification>) {
    match v.state {
        State::Approved => return (Outcome::Denied, None),
        State::Superseded => return (Outcome::Superseded, None),
        State::Locked => return (Outcome::MaxAttempts, None),
        State::Pending => {}
    }
    if now >= v.expires_ms {
        return (Outcome::Expired, None);
    }
    let mut next = v.clone();
    if v.checks >= rules.max_checks {
        next.state = State::Locked;
        return (Outcome::MaxAttempts, Some(next));
    }
    next.checks = v.checks.saturating_add(1);
    if matches() {
        next.state = State::Approved;
        next.approved_ms = now;
        (Outcome::Approved, Some(next))
    } else {
        if next.checks >= rules.max_checks {
            next.state = State::Locked;
        }
        (Outcome::Denied, Some(next))
    }
}

/// Why a resend is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Approved, locked, superseded or expired: the outcome a check would give.
    NotPending(Outcome),
    /// Too soon after the last code: wait this long (ms).
    TooSoon(u64),
    /// Every resend allowed was used.
    Limit,
}

/// Whether a new code may be sent now.
pub fn may_resend(v: &Verification, rules: &Rules, now: u64) -> Result<(), Refusal> {
    match v.state {
        State::Approved => return Err(Refusal::NotPending(Outcome::Approved)),
        State::Superseded => return Err(Refusal::NotPending(Outcome::Superseded)),
        State::Locked => return Err(Refusal::NotPending(Outcome::MaxAttempts)),
        State::Pending => {}
    }
    if now >= v.expires_ms {
        return Err(Refusal::NotPending(Outcome::Expired));
    }
    if v.sends > rules.max_resends {
        return Err(Refusal::Limit);
    }
    let ready = v.last_send_ms.saturating_add(rules.resend_cooldown_ms);
    if now < ready {
        return Err(Refusal::TooSoon(ready - now));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::sample;
    use proptest::prelude::*;

    #[test]
    fn right_code_once_then_denied() {
        let r = Rules::default();
        let v = sample();
        let (o, next) = check(&v, || true, &r, 2_000);
        assert_eq!(o, Outcome::Approved);
        let next = next.unwrap();
        assert_eq!(
            (next.state, next.checks, next.approved_ms),
            (State::Approved, 1, 2_000)
        );
        assert_eq!(check(&next, || true, &r, 3_000), (Outcome::Denied, None));
    }

    #[test]
    fn five_wrong_codes_lock_it() {
        let r = Rules::default();
        let mut v = sample();
        for i in 1..=5u8 {
            let (o, next) = check(&v, || false, &r, 2_000);
            assert_eq!(o, Outcome::Denied, "check {i}");
            v = next.unwrap();
            assert_eq!(v.checks, i);
        }
        assert_eq!(v.state, State::Locked);
        assert_eq!(check(&v, || true, &r, 2_000).0, Outcome::MaxAttempts);
    }

    #[test]
    fn expired_and_superseded_change_nothing() {
        let r = Rules::default();
        let v = sample();
        assert_eq!(
            check(&v, || true, &r, v.expires_ms),
            (Outcome::Expired, None)
        );
        let s = Verification {
            state: State::Superseded,
            ..v
        };
        assert_eq!(check(&s, || true, &r, 2_000), (Outcome::Superseded, None));
    }

    #[test]
    fn resend_cooldown_cap_and_state() {
        let r = Rules::default();
        let mut v = sample();
        assert_eq!(may_resend(&v, &r, 1_000 + 29_999), Err(Refusal::TooSoon(1)));
        assert_eq!(may_resend(&v, &r, 1_000 + 30_000), Ok(()));
        v.sends = 4;
        assert_eq!(may_resend(&v, &r, 100_000), Err(Refusal::Limit));
        v.sends = 1;
        assert_eq!(
            may_resend(&v, &r, v.expires_ms),
            Err(Refusal::NotPending(Outcome::Expired))
        );
        v.state = State::Approved;
        assert_eq!(
            may_resend(&v, &r, 100_000),
            Err(Refusal::NotPending(Outcome::Approved))
        );
    }

    proptest! {
        /// Any sequence of checks (right or wrong, at any time): at most one
        /// approval, none at or after expiry, none after the lock, never more
        /// checks counted than allowed.
        #[test]
        fn at_most_one_approval_never_late(steps in proptest::collection::vec((any::<bool>(), 0u64..400_000), 0..40)) {
            let r = Rules::default();
            let mut v = sample();
            let mut approvals = 0;
            let mut locked = false;
            for (right, now) in steps {
                let (o, next) = check(&v, || right, &r, now);
                if o == Outcome::Approved {
                    approvals += 1;
                    prop_assert!(now < v.expires_ms && right && !locked);
                }
                if let Some(n) = next {
                    prop_assert!(n.checks <= r.max_checks);
                    v = n;
                }
                locked |= v.state == State::Locked;
            }
            prop_assert!(approvals <= 1);
        }
    }
}
