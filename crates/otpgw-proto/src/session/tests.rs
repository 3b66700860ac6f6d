use super::*;
use crate::status::{ESME_RALYBND, ESME_RINVBNDSTS};

fn cfg() -> SessionConfig {
    SessionConfig {
        window: 3,
        response_timeout: Duration::from_secs(5),
        enquire_link_interval: Duration::from_secs(30),
        enquire_link_timeout: Duration::from_secs(2),
    }
}

#[test]
fn window_full_and_release() {
    let t0 = 1_000_000u64;
    let mut s: Session<&str> = Session::new(cfg(), t0);
    for tag in ["a", "b", "c"] {
        let seq = s.next_sequence();
        s.track(seq, tag, t0).unwrap();
    }
    assert_eq!(s.room(), 0);
    let seq = s.next_sequence();
    assert_eq!(s.track(seq, "d", t0), Err(WindowFull(3)));
    assert_eq!(s.on_response(2, t0), Some("b"));
    assert_eq!(s.on_response(2, t0), None, "a response is matched once");
    assert_eq!(s.room(), 1);
    s.track(seq, "d", t0).unwrap();
    assert_eq!(s.in_flight(), 3);
}

#[test]
fn response_timeout_on_simulated_time() {
    let t0 = 1_000_000u64;
    let mut s: Session<u32> = Session::new(cfg(), t0);
    s.track(1, 100, t0).unwrap();
    s.track(2, 200, t0 + 1_000).unwrap();
    assert_eq!(s.next_deadline(), t0 + 5_000);
    assert!(s.poll(t0 + 4999).is_empty());
    assert_eq!(
        s.poll(t0 + 5_000),
        vec![Timeout::Response {
            sequence_number: 1,
            tag: 100
        }]
    );
    // Answer 2 before its deadline: nothing expires later.
    assert_eq!(s.on_response(2, t0 + 5_000), Some(200));
    assert!(s.poll(t0 + 7_000).is_empty());
    assert_eq!(s.in_flight(), 0);
}

#[test]
fn enquire_link_when_idle_and_its_timeout() {
    let t0 = 1_000_000u64;
    let mut s: Session<()> = Session::new(cfg(), t0);
    assert_eq!(s.next_deadline(), t0 + 30_000);
    s.on_receive(t0 + 10_000);
    assert!(s.poll(t0 + 30_000).is_empty(), "traffic resets idleness");
    let t1 = t0 + 40_000;
    let ev = s.poll(t1);
    let seq = match ev.as_slice() {
        [Timeout::SendEnquireLink { sequence_number }] => *sequence_number,
        other => panic!("{other:?}"),
    };
    assert!(s.poll(t1 + 1_000).is_empty(), "one enquire_link at a time");
    // answered: link alive
    assert_eq!(s.on_response(seq, t1 + 1_000), None);
    assert!(s.poll(t1 + 3_000).is_empty());
    // idle again, not answered: dead
    let t2 = t1 + 31_000;
    assert!(matches!(
        s.poll(t2).as_slice(),
        [Timeout::SendEnquireLink { .. }]
    ));
    assert_eq!(s.poll(t2 + 2_000), vec![Timeout::LinkDead]);
}

#[test]
fn sequence_wraps_and_skips_outstanding() {
    let t0 = 1_000_000u64;
    let mut s: Session<()> = Session::new(cfg(), t0);
    s.last_seq = MAX_SEQUENCE - 1;
    assert_eq!(s.next_sequence(), MAX_SEQUENCE);
    assert_eq!(s.next_sequence(), 1);
    s.track(2, (), t0).unwrap();
    assert_eq!(s.next_sequence(), 3, "2 is still outstanding");
    for _ in 0..1000 {
        let n = s.next_sequence();
        assert!((1..=MAX_SEQUENCE).contains(&n));
    }
}

#[test]
fn deadline_queue_stays_small_under_steady_traffic() {
    let t0 = 1_000_000u64;
    let mut s: Session<u32> = Session::new(
        SessionConfig {
            window: 10,
            ..cfg()
        },
        t0,
    );
    for i in 0..100_000u32 {
        let seq = s.next_sequence();
        s.track(seq, i, t0).unwrap();
        assert_eq!(s.on_response(seq, t0), Some(i));
    }
    assert!(s.deadlines.len() <= 10);
}

#[test]
fn drain_returns_all_tags() {
    let t0 = 1_000_000u64;
    let mut s: Session<u32> = Session::new(cfg(), t0);
    s.track(1, 1, t0).unwrap();
    s.track(2, 2, t0).unwrap();
    let mut tags = s.drain();
    tags.sort();
    assert_eq!(tags, vec![1, 2]);
    assert_eq!(s.in_flight(), 0);
}

#[test]
fn admission_by_bind_state() {
    use BindState::*;
    assert_eq!(
        admit(Role::Smsc, Open, cmd::SUBMIT_SM),
        Admission::Refuse(ESME_RINVBNDSTS)
    );
    assert_eq!(
        admit(Role::Smsc, Receiver, cmd::SUBMIT_SM),
        Admission::Refuse(ESME_RINVBNDSTS)
    );
    assert_eq!(
        admit(Role::Smsc, Transmitter, cmd::SUBMIT_SM),
        Admission::Allowed
    );
    assert_eq!(
        admit(Role::Smsc, Transceiver, cmd::BIND_TRANSCEIVER),
        Admission::Refuse(ESME_RALYBND)
    );
    assert_eq!(
        admit(Role::Smsc, Open, cmd::BIND_RECEIVER),
        Admission::Allowed
    );
    assert_eq!(
        admit(Role::Smsc, Open, cmd::ENQUIRE_LINK),
        Admission::Allowed
    );
    assert_eq!(
        admit(Role::Smsc, Open, cmd::UNBIND),
        Admission::Refuse(ESME_RINVBNDSTS)
    );
    assert_eq!(
        admit(Role::Smsc, Transceiver, 0x0000_0777),
        Admission::GenericNack
    );
    assert_eq!(
        admit(Role::Esme, Transmitter, cmd::DELIVER_SM),
        Admission::Refuse(ESME_RINVBNDSTS)
    );
    assert_eq!(
        admit(Role::Esme, Transceiver, cmd::DELIVER_SM),
        Admission::Allowed
    );
}
