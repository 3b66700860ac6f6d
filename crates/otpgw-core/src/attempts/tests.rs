use super::*;
use proptest::prelude::*;

fn c(s: &str) -> Arc<str> {
    Arc::from(s)
}

const D: DeliveryState = DeliveryState::Delivered;
const U: DeliveryState = DeliveryState::Undeliverable;

#[test]
fn delivered_on_the_first_carrier() {
    let mut a = Attempts::new(2, 1_000, 100_000);
    a.sending(&c("a"), 0);
    a.confirmed("a", "1A", 10);
    assert_eq!(a.next_due(), Some(1_010));
    assert_eq!(a.tick(500), Action::Wait);
    assert!(matches!(
        a.receipt("a", D, None, 600),
        Action::Finish {
            state: D,
            fallback: false,
            ..
        }
    ));
    assert_eq!(
        a.receipt("a", D, None, 700),
        Action::Late,
        "a second receipt is late"
    );
}

#[test]
fn no_receipt_in_time_goes_to_the_next_carrier_once() {
    let mut a = Attempts::new(2, 1_000, 100_000);
    a.sending(&c("a"), 0);
    a.confirmed("a", "1", 0);
    assert_eq!(
        a.tick(1_000),
        Action::Resend {
            tried: vec![c("a")]
        }
    );
    assert_eq!(a.tick(1_100), Action::Wait, "one resend at a time");
    a.sending(&c("b"), 1_200);
    a.confirmed("b", "2", 1_210);
    // A's receipt comes late (delivered): the code reached the phone: that decides.
    assert!(matches!(
        a.receipt("a", D, None, 1_500),
        Action::Finish { state: D, .. }
    ));
    assert_eq!(a.receipt("b", D, None, 1_600), Action::Late);
}

#[test]
fn a_failure_receipt_with_time_left_falls_back_and_all_spent_finishes_with_fallback() {
    let mut a = Attempts::new(2, 10_000, 100_000);
    a.sending(&c("a"), 0);
    a.confirmed("a", "1", 0);
    assert_eq!(
        a.receipt("a", U, Some("0x1B"), 500),
        Action::Resend {
            tried: vec![c("a")]
        }
    );
    a.sending(&c("b"), 600);
    a.confirmed("b", "2", 600);
    assert_eq!(
        a.tick(10_600),
        Action::Finish {
            state: U,
            err: Some("0x1B".into()),
            fallback: true
        }
    );
    assert_eq!(
        a.receipt("b", D, None, 11_000),
        Action::Late,
        "decided already"
    );
}

#[test]
fn no_answer_anywhere_is_unknown_and_no_resend_near_the_deadline() {
    let mut a = Attempts::new(3, 1_000, 2_500);
    a.sending(&c("a"), 0);
    a.confirmed("a", "1", 0);
    assert_eq!(
        a.tick(1_000),
        Action::Resend {
            tried: vec![c("a")]
        }
    );
    a.sending(&c("b"), 1_000);
    a.confirmed("b", "2", 1_000);
    // 500 ms left: not worth a third send.
    assert_eq!(
        a.tick(2_000),
        Action::Finish {
            state: DeliveryState::Unknown,
            err: Some("TMO".into()),
            fallback: true
        }
    );
}

#[test]
fn retries_before_a_confirmation_are_one_attempt_and_refusals_fail_it() {
    let mut a = Attempts::new(2, 1_000, 100_000);
    a.sending(&c("a"), 0);
    a.sending(&c("a"), 50); // throttled, sent again
    a.sending(&c("b"), 90); // failed over before any confirmation
    assert_eq!(a.list.len(), 1);
    assert_eq!(
        a.refused("b", "045", 100),
        Action::Resend {
            tried: vec![c("b")]
        }
    );
    a.give_up(120);
    assert!(a.decided);
}

#[test]
fn restored_attempts() {
    let sent = |carrier: &str, id: &str| Attempt {
        carrier: c(carrier),
        carrier_id: id.into(),
        sent_ms: 0,
        due_ms: if id.is_empty() { 0 } else { 1_000 },
        outcome: Outcome::Pending,
    };
    // Only a first, unconfirmed send: sent again as any unconfirmed message.
    let mut a = Attempts::restored(vec![sent("a", "")], 2, 1_000, 100_000);
    assert!(a.list.is_empty());
    assert_eq!(a.resume(10), Action::Resend { tried: vec![] });
    // A fallback sent but never confirmed: spent, never sent again.
    let mut a = Attempts::restored(vec![sent("a", "1"), sent("b", "")], 2, 1_000, 100_000);
    assert_eq!(a.list[1].outcome, Outcome::TimedOut);
    assert_eq!(a.resume(500), Action::Wait, "a's receipt may still come");
    assert!(matches!(
        a.tick(1_000),
        Action::Finish { fallback: true, .. }
    ));
}

/// A model of a message under attempts: carriers confirm what is sent, receipts
/// come in any order (or never), time jumps, and the gateway restarts (the machine
/// is rebuilt from its stored attempts).
#[derive(Debug, Clone)]
enum Ev {
    Tick(u64),
    /// A final receipt for attempt `i % len`, delivered or not.
    Receipt(usize, bool),
    /// The gateway restarts, taking this long (ms) to come back.
    Restart(u64),
}

fn ev() -> impl Strategy<Value = Ev> {
    prop_oneof![
        (1u64..3_000).prop_map(Ev::Tick),
        (0usize..4, any::<bool>()).prop_map(|(i, d)| Ev::Receipt(i, d)),
        (0u64..3_000).prop_map(Ev::Restart),
    ]
}

proptest! {
    /// One final receipt per message; never a send at or after the deadline (nor
    /// within the minimum time left); each carrier at most once; at most `max`
    /// attempts; a DELIVERED receipt before the decision decides DELIVERED.
    #[test]
    fn one_final_receipt_never_late(max in 1u8..4, timeout in 200u64..3_000, deadline in 1_000u64..20_000, evs in proptest::collection::vec(ev(), 0..60)) {
        let carriers = [c("a"), c("b"), c("c")];
        let mut now = 0u64;
        let mut m = Attempts::new(max, timeout, deadline);
        let mut finishes = 0;
        let mut sends = vec![];
        let send = |m: &mut Attempts, tried: &[Arc<str>], now: u64, sends: &mut Vec<(Arc<str>, u64)>| {
            match carriers.iter().find(|k| !tried.contains(k)) {
                Some(k) => {
                    m.sending(k, now);
                    m.confirmed(k, &format!("id-{k}"), now);
                    sends.push((k.clone(), now));
                    Action::Wait
                }
                None => m.give_up(now),
            }
        };
        let first = send(&mut m, &[], now, &mut sends);
        prop_assert_eq!(first, Action::Wait);
        for e in evs {
            let act = match e {
                Ev::Tick(dt) => {
                    now += dt;
                    m.tick(now)
                }
                Ev::Receipt(i, delivered) => {
                    if m.list.is_empty() { continue; }
                    let k = m.list[i % m.list.len()].carrier.clone();
                    let undecided = !m.decided;
                    let a = m.receipt(&k, if delivered { D } else { U }, None, now);
                    if delivered && undecided {
                        let decided_delivered = matches!(a, Action::Finish { state: D, .. });
                        prop_assert!(decided_delivered, "{:?}", a);
                    }
                    a
                }
                Ev::Restart(dt) => {
                    if m.decided { break; } // finished: gone from the store
                    now += dt;
                    m = Attempts::restored(m.list.clone(), max, timeout, deadline);
                    m.resume(now)
                }
            };
            let act = match act {
                Action::Resend { tried } => {
                    prop_assert!(now + MIN_TIME_LEFT_MS <= deadline, "resend at {now}, deadline {deadline}");
                    send(&mut m, &tried, now, &mut sends)
                }
                a => a,
            };
            if let Action::Finish { .. } = act {
                finishes += 1;
            }
            prop_assert!(finishes <= 1, "two final receipts");
            prop_assert!(m.list.len() <= usize::from(max));
        }
        // Live: once time runs past the deadline, the message is decided.
        if finishes == 0 && !m.decided {
            now = deadline + 10 * timeout;
            let mut act = m.tick(now);
            if let Action::Resend { tried } = act {
                act = send(&mut m, &tried, now, &mut sends);
                prop_assert!(false, "resend past the deadline: {:?}", act);
            }
            if act == Action::Wait {
                act = m.resume(now);
            }
            prop_assert!(m.decided, "undecided past the deadline: {:?} {:?}", act, m);
        }
        let mut distinct: Vec<_> = sends.iter().map(|(k, _)| k.clone()).collect();
        distinct.sort();
        let n = distinct.len();
        distinct.dedup();
        prop_assert_eq!(distinct.len(), n, "a carrier was tried twice: {:?}", sends);
        for (_, at) in &sends {
            prop_assert!(*at < deadline);
        }
    }
}

#[test]
fn restored_after_a_timeout_whose_resend_was_not_sent_resends() {
    let timed_out = Attempt {
        carrier: c("a"),
        carrier_id: "33".into(),
        sent_ms: 0,
        due_ms: 1_000,
        outcome: Outcome::TimedOut,
    };
    let mut a = Attempts::restored(vec![timed_out.clone()], 2, 1_000, 100_000);
    assert_eq!(
        a.resume(2_000),
        Action::Resend {
            tried: vec![c("a")]
        }
    );
    // The same with the timeout falling due during the restart.
    let pending = Attempt {
        outcome: Outcome::Pending,
        ..timed_out
    };
    let mut a = Attempts::restored(vec![pending], 2, 1_000, 100_000);
    assert_eq!(
        a.resume(2_000),
        Action::Resend {
            tried: vec![c("a")]
        }
    );
}
