//! The attempts of an OTP under a receipt deadline, free of IO and clock (`now` is
//! passed in).
//!
//! An OTP whose carrier (or brand) sets a receipt timeout is watched after each
//! send: a carrier that confirmed it owes a final receipt within the timeout. When
//! it does not come in time, or a final receipt says it failed (UNDELIV, REJECTD,
//! EXPIRED, ...), while time is left before the message's deadline, the message is
//! sent again through a carrier of its route not tried yet, at most `max` attempts
//! in all. The brand gets one receipt: the first DELIVERED of any attempt, or, once
//! every attempt is spent, the last failure's state (UNKNOWN when none answered);
//! a receipt that comes after that is late: matched, counted, never forwarded.
//!
//! ```text
//!            sending(c)          confirmed(c, id)
//!   (none) ─────────────▶ Sent ────────────────────▶ Waiting(due = now + timeout)
//!                          │ refused / lost              │        │         │
//!                          ▼                             │ DELIVRD│ failure │ due passed
//!                        Failed ◀────────────────────────┼────────┘ receipt └──▶ TimedOut
//!                                                        ▼
//!                                                   Finish(DELIVERED)
//!   Failed / TimedOut, every attempt ended:
//!     attempts < max, time left, a carrier not tried ─▶ Resend (next carrier)
//!     else ─▶ Finish(last failure, or UNKNOWN) and, with time left, the fallback event
//! ```
//!
//! Sends that are retried on the same carrier before it confirmed (throttling,
//! temporary errors, a lost bind) stay one attempt. After a restart an attempt
//! that was sent and never confirmed counts as spent (it is not sent again), except
//! a message's first attempt, which is sent again as any unconfirmed message is
//! (at least once, counted as a possible duplicate).

use std::sync::Arc;

use otpgw_proto::receipt::DeliveryState;

/// How one attempt ended (or that it has not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Sent; no final receipt yet (and not timed out).
    Pending,
    Delivered,
    /// A final receipt other than DELIVERED, or a permanent refusal.
    Failed(DeliveryState),
    /// No final receipt by the due time.
    TimedOut,
}

/// One send of a message to one carrier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub carrier: Arc<str>,
    /// The carrier's message id, once it confirmed (empty before).
    pub carrier_id: String,
    /// When it was (last) written to the carrier.
    pub sent_ms: u64,
    /// When its final receipt is due (0 while unconfirmed).
    pub due_ms: u64,
    pub outcome: Outcome,
}

impl Attempt {
    fn confirmed(&self) -> bool {
        !self.carrier_id.is_empty()
    }
}

/// What to do after an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing now.
    Wait,
    /// Finish the message in this state (the brand's receipt). `fallback`: every
    /// attempt was spent with time left (the brand's fallback hook is called).
    Finish {
        state: DeliveryState,
        err: Option<String>,
        fallback: bool,
    },
    /// Send it again through a carrier not in `tried`.
    Resend { tried: Vec<Arc<str>> },
    /// A receipt for an attempt given up, or after the message was decided:
    /// counted, not forwarded.
    Late,
}

/// The attempts of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempts {
    pub list: Vec<Attempt>,
    /// Attempts in all (1 + fallbacks).
    pub max: u8,
    /// How long after a carrier's confirmation its final receipt may take.
    pub timeout_ms: u64,
    /// The message's deadline: never sent at or after it.
    pub deadline_ms: u64,
    /// A resend was asked for and has not been sent yet.
    pub resending: bool,
    /// Finished (the brand's receipt is decided).
    pub decided: bool,
    /// The last failure's error code.
    last_err: Option<String>,
}

/// A send needs at least this much time before the deadline to be worth making.
pub const MIN_TIME_LEFT_MS: u64 = 1_000;

impl Attempts {
    /// No attempt yet.
    pub fn new(max: u8, timeout_ms: u64, deadline_ms: u64) -> Self {
        Self {
            list: Vec::new(),
            max: max.max(1),
            timeout_ms,
            deadline_ms,
            resending: false,
            decided: false,
            last_err: None,
        }
    }

    /// Rebuilt from stored attempts after a restart: an unconfirmed attempt is
    /// spent (never sent again), unless it is the only one (then it is dropped and
    /// the message goes out again as any unconfirmed message does).
    pub fn restored(list: Vec<Attempt>, max: u8, timeout_ms: u64, deadline_ms: u64) -> Self {
        let mut a = Self::new(max, timeout_ms, deadline_ms);
        a.list = list;
        if a.list.len() == 1 && !a.list[0].confirmed() {
            a.list.clear();
        }
        for t in &mut a.list {
            if !t.confirmed() && t.outcome == Outcome::Pending {
                t.outcome = Outcome::TimedOut;
            }
        }
        a
    }

    /// Carriers tried (confirmed or in flight).
    pub fn tried(&self) -> Vec<Arc<str>> {
        self.list.iter().map(|a| a.carrier.clone()).collect()
    }

    /// A submit of the message is about to be written to `carrier`. A send not yet
    /// confirmed is the same attempt (a retry, possibly on another carrier before
    /// any confirmed it).
    pub fn sending(&mut self, carrier: &Arc<str>, now: u64) {
        self.resending = false;
        if let Some(last) = self.list.last_mut()
            && !last.confirmed()
            && last.outcome == Outcome::Pending
        {
            last.carrier = carrier.clone();
            last.sent_ms = now;
            return;
        }
        self.list.push(Attempt {
            carrier: carrier.clone(),
            carrier_id: String::new(),
            sent_ms: now,
            due_ms: 0,
            outcome: Outcome::Pending,
        });
    }

    /// `carrier` confirmed the message with its id: its final receipt is due within
    /// the timeout.
    pub fn confirmed(&mut self, carrier: &str, carrier_id: &str, now: u64) {
        if let Some(a) = self
            .list
            .iter_mut()
            .rev()
            .find(|a| &*a.carrier == carrier && !a.confirmed())
        {
            a.carrier_id = carrier_id.to_string();
            a.due_ms = now.saturating_add(self.timeout_ms);
        }
    }

    /// The earliest receipt due among pending attempts.
    pub fn next_due(&self) -> Option<u64> {
        self.list
            .iter()
            .filter(|a| a.outcome == Outcome::Pending && a.due_ms > 0)
            .map(|a| a.due_ms)
            .min()
    }

    /// A final receipt from `carrier`.
    pub fn receipt(
        &mut self,
        carrier: &str,
        state: DeliveryState,
        err: Option<&str>,
        now: u64,
    ) -> Action {
        if self.decided {
            return Action::Late;
        }
        // The carrier's own attempt (pending first: a carrier tried twice is not
        // possible, but an attempt timed out can still report late).
        let Some(a) = self
            .list
            .iter_mut()
            .rev()
            .find(|a| &*a.carrier == carrier && a.confirmed())
        else {
            return Action::Late;
        };
        let was_pending = a.outcome == Outcome::Pending;
        if state == DeliveryState::Delivered {
            // Delivered, even late: the code reached the phone.
            a.outcome = Outcome::Delivered;
            self.decided = true;
            return Action::Finish {
                state,
                err: err.map(String::from),
                fallback: false,
            };
        }
        if !was_pending {
            return Action::Late;
        }
        a.outcome = Outcome::Failed(state);
        self.last_err = err.map(String::from);
        self.decide(now)
    }

    /// `carrier` refused the submit for good (a permanent error status).
    pub fn refused(&mut self, carrier: &str, err: &str, now: u64) -> Action {
        if self.decided {
            return Action::Late;
        }
        if let Some(a) = self
            .list
            .iter_mut()
            .rev()
            .find(|a| &*a.carrier == carrier && a.outcome == Outcome::Pending)
        {
            a.outcome = Outcome::Failed(DeliveryState::Undeliverable);
        }
        self.last_err = Some(err.to_string());
        self.decide(now)
    }

    /// Time passed: attempts past their due time time out.
    pub fn tick(&mut self, now: u64) -> Action {
        if self.decided {
            return Action::Wait;
        }
        let mut changed = false;
        for a in &mut self.list {
            if a.outcome == Outcome::Pending && a.due_ms > 0 && now >= a.due_ms {
                a.outcome = Outcome::TimedOut;
                changed = true;
            }
        }
        if changed {
            self.decide(now)
        } else {
            Action::Wait
        }
    }

    /// The resend asked for could not be made (no carrier of the route left):
    /// finish with what there is.
    pub fn give_up(&mut self, now: u64) -> Action {
        self.resending = false;
        self.finish(now)
    }

    /// After an attempt ended: wait, resend, or finish.
    fn decide(&mut self, now: u64) -> Action {
        if self.resending || self.list.iter().any(|a| a.outcome == Outcome::Pending) {
            return Action::Wait;
        }
        let time_left = self.deadline_ms.saturating_sub(now);
        if self.list.len() < usize::from(self.max) && time_left >= MIN_TIME_LEFT_MS {
            self.resending = true;
            return Action::Resend {
                tried: self.tried(),
            };
        }
        self.finish(now)
    }

    /// After a restart (or anything that may have left it undecided): decide.
    pub fn resume(&mut self, now: u64) -> Action {
        if self.decided {
            return Action::Wait;
        }
        match self.tick(now) {
            Action::Wait => self.decide(now),
            a => a,
        }
    }

    fn finish(&mut self, now: u64) -> Action {
        self.decided = true;
        let failed = self.list.iter().rev().find_map(|a| match a.outcome {
            Outcome::Failed(s) => Some(s),
            _ => None,
        });
        let (state, err) = match failed {
            Some(s) => (s, self.last_err.clone()),
            // No attempt answered: nobody knows whether a phone got it.
            None => (DeliveryState::Unknown, Some("TMO".to_string())),
        };
        Action::Finish {
            state,
            err,
            fallback: now < self.deadline_ms,
        }
    }
}

#[cfg(test)]
mod tests;
