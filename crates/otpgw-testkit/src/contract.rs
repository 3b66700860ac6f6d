//! The store contract: what every backend (memory, embedded, log, Redis) must do,
//! run by each backend's tests against it.

use otpgw_core::{DeliveryState, MsgId};

use crate::sample::{message, receipt_job};

/// What every backend must do for the HTTP door: compare-and-set records with
/// expiry, one winner among concurrent writers, accepts with an idempotency key,
/// final statuses, counts. Run by each backend's tests.
pub async fn http_contract(s: &dyn otpgw_core::Store) {
    use otpgw_core::status::{MessageStatus, Stage};
    use otpgw_core::store::Once;
    let now = otpgw_core::clock::now_ms();
    let tag = now.to_string();
    let later = now + 60_000;
    let key = format!("test:{tag}:a");
    assert_eq!(s.kv_get(&key).await.unwrap(), None);
    assert_eq!(
        s.kv_put(&key, 0, b"one".to_vec(), later).await.unwrap(),
        Some(1)
    );
    assert_eq!(
        s.kv_put(&key, 0, b"again".to_vec(), later).await.unwrap(),
        None,
        "exists: a create conflicts"
    );
    assert_eq!(
        s.kv_put(&key, 1, b"two".to_vec(), later).await.unwrap(),
        Some(2)
    );
    let got = s.kv_get(&key).await.unwrap().unwrap();
    assert_eq!((got.version, got.value.as_slice()), (2, &b"two"[..]));
    // Concurrent writers of one version: exactly one wins.
    let racers = (0..20).map(|i| s.kv_put(&key, 2, vec![i], later));
    let won = futures_util::future::join_all(racers)
        .await
        .into_iter()
        .filter(|r| matches!(r, Ok(Some(3))))
        .count();
    assert_eq!(won, 1, "one compare-and-set of twenty wins");
    // An expired record is absent, and can be created again.
    let gone = format!("test:{tag}:expired");
    assert_eq!(
        s.kv_put(&gone, 0, b"x".to_vec(), now - 1).await.unwrap(),
        Some(1)
    );
    assert_eq!(s.kv_get(&gone).await.unwrap(), None);
    assert_eq!(
        s.kv_put(&gone, 0, b"y".to_vec(), later).await.unwrap(),
        Some(1)
    );
    // Idempotency: the second accept with the key stores nothing and answers the first value.
    let idem = format!("test:{tag}:idem");
    // Ids in the key's partition, as the acceptor picks them (one partition but
    // on a Redis Cluster).
    let n = s.partitions();
    let base = now * 1000;
    let id0 = base + (otpgw_core::store::key_partition(&idem, n) + n - base % n) % n;
    assert_eq!(
        s.accept_once(&message(id0), &idem, b"first".to_vec(), later)
            .await
            .unwrap(),
        Once::Accepted
    );
    assert_eq!(
        s.accept_once(&message(id0 + n), &idem, b"second".to_vec(), later)
            .await
            .unwrap(),
        Once::Duplicate(b"first".to_vec())
    );
    // A final status is kept and read back.
    let st = MessageStatus {
        id: MsgId(id0),
        brand: "bank".into(),
        stage: Stage::Done(DeliveryState::Delivered),
        carrier: Some("sim".into()),
        accepted_ms: now - 10,
        sent_ms: now - 5,
        done_ms: now,
        deadline_ms: later,
        err: "000".into(),
    };
    s.record_status(&st);
    assert!(s.flush().wait().await);
    assert_eq!(s.message_status(MsgId(id0)).await.unwrap(), Some(st));
    assert_eq!(s.message_status(MsgId(id0 + 7)).await.unwrap(), None);
    // Counts in a window.
    let c = format!("test:{tag}:count");
    assert_eq!(s.count(&c, 60_000, now).await.unwrap().count, 1);
    let second = s.count(&c, 60_000, now).await.unwrap();
    assert_eq!(second.count, 2);
    assert!(
        (50_000..=60_000).contains(&second.resets_in_ms),
        "the window's end: {second:?}"
    );
}

/// Write what delivery assurance keeps for message `id` (accepted here): its two
/// attempts (one timed out at carrier "a", one waiting at "b") and its fallback
/// event owed to the brand. [`check_assurance_recovered`] checks a later run sees it.
pub async fn write_assurance(s: &dyn otpgw_core::Store, id: u64) {
    use otpgw_core::attempts::{Attempt, Outcome};
    s.accept(&message(id)).await.unwrap();
    let list = vec![
        Attempt {
            carrier: "a".into(),
            carrier_id: "1A".into(),
            sent_ms: 10,
            due_ms: 20,
            outcome: Outcome::TimedOut,
        },
        Attempt {
            carrier: "b".into(),
            carrier_id: "77".into(),
            sent_ms: 30,
            due_ms: 40,
            outcome: Outcome::Pending,
        },
    ];
    assert!(s.attempts(MsgId(id), &list).wait().await);
    let mut ev = receipt_job(
        id | otpgw_core::outbox::FALLBACK_BIT,
        otpgw_core::clock::now_ms(),
    );
    ev.url = Some("http://127.0.0.1:9/fallback".into());
    ev.deadline_ms = 99;
    s.owe(&ev);
    assert!(s.flush().wait().await);
}

/// What [`write_assurance`] wrote, as the next run recovers it.
pub fn check_assurance_recovered(r: &otpgw_core::store::Recovered, id: u64) {
    let (m, list) = r
        .attempts
        .iter()
        .find(|(m, _)| m.id.0 == id)
        .expect("the message comes back with its attempts");
    assert_eq!(m.id.0, id);
    let carriers: Vec<(&str, &str)> = list
        .iter()
        .map(|a| (&*a.carrier, a.carrier_id.as_str()))
        .collect();
    assert_eq!(carriers, [("a", "1A"), ("b", "77")]);
    assert!(!r.unconfirmed.iter().any(|(m, _)| m.id.0 == id));
    let ev = r
        .receipts
        .iter()
        .find(|j| j.is_fallback() && j.message_id().0 == id)
        .expect("the fallback event owed comes back");
    assert_eq!(
        (ev.deadline_ms, ev.url.as_deref()),
        (99, Some("http://127.0.0.1:9/fallback"))
    );
}

/// An outage of the store (a full disk, Redis down), in three steps shared by the
/// backends' tests. Before it: messages 1-30 accepted, 21-30 finished with a
/// receipt owed.
pub async fn write_before_outage(s: &dyn otpgw_core::Store) {
    for i in 1..=30u64 {
        s.accept(&message(i)).await.expect("accepted");
    }
    for i in 21..=30u64 {
        assert!(
            s.finished(
                MsgId(i),
                DeliveryState::Delivered,
                Some(&receipt_job(i, 7)),
                7
            )
            .wait()
            .await
        );
    }
}

/// During it, writes nobody waits for: 1-10 confirmed by the carrier, 21-30's
/// receipts forwarded; and 11-15 finished, which fail (their callers hear it).
pub async fn write_during_outage(s: &dyn otpgw_core::Store) {
    for i in 1..=10u64 {
        s.carrier_accepted(MsgId(i), "sim", &format!("C{i}"));
    }
    let mut finishes = Vec::new();
    for i in 11..=15u64 {
        finishes.push(s.finished(MsgId(i), DeliveryState::Delivered, None, 8));
    }
    for i in 21..=30u64 {
        s.receipt_forwarded(MsgId(i));
    }
    for f in finishes {
        assert!(!f.wait().await, "a finish fails during the outage");
    }
}

/// Messages 1-5 at five stages: 1 accepted; 2 marked sent; 3 confirmed by carrier
/// "sim" as "1A2B"; 4 finished with its receipt owed; 5 finished, its receipt
/// forwarded. [`check_five_stages`] checks what a restart recovers.
pub async fn write_five_stages(s: &dyn otpgw_core::Store) {
    for i in 1..=5 {
        s.accept(&message(i)).await.expect("accepted");
    }
    s.submitted(MsgId(2));
    assert!(s.submitted(MsgId(3)).wait().await);
    s.carrier_accepted(MsgId(3), "sim", "1A2B");
    let r4 = s.finished(
        MsgId(4),
        DeliveryState::Delivered,
        Some(&receipt_job(4, 10)),
        10,
    );
    assert!(r4.wait().await);
    let r5 = s.finished(
        MsgId(5),
        DeliveryState::Delivered,
        Some(&receipt_job(5, 11)),
        11,
    );
    assert!(r5.wait().await);
    s.receipt_forwarded(MsgId(5));
}

/// What a restart after [`write_five_stages`] recovers: 1 and 2 to send (2 maybe
/// sent), 3 waiting for its receipt, 4's receipt owed; nothing of 5.
pub fn check_five_stages(rec: &otpgw_core::store::Recovered) {
    let mut un: Vec<(u64, bool)> = rec.unconfirmed.iter().map(|(m, s)| (m.id.0, *s)).collect();
    un.sort_unstable();
    assert_eq!(un, vec![(1, false), (2, true)]);
    assert_eq!(rec.confirmed.len(), 1);
    let (m, carrier, cid) = &rec.confirmed[0];
    assert_eq!((m.id.0, carrier.as_str(), cid.as_str()), (3, "sim", "1A2B"));
    assert_eq!(m.body, message(3).body);
    assert_eq!(
        rec.receipts.iter().map(|j| j.id.0).collect::<Vec<_>>(),
        vec![4]
    );
}

/// Whether the store's writes go through (a flush succeeds) within `within`,
/// trying every 100 ms: after an outage, once the backlog is written.
pub async fn flushed_within(s: &dyn otpgw_core::Store, within: std::time::Duration) -> bool {
    let until = std::time::Instant::now() + within;
    loop {
        if s.flush().wait().await {
            return true;
        }
        if std::time::Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// After it (the store reopened): the writes made during it landed, so the next
/// run neither sends 1-10 again nor repeats 21-30's receipts.
pub fn check_outage_writes_landed(rec: &otpgw_core::store::Recovered) {
    let mut confirmed: Vec<u64> = rec.confirmed.iter().map(|(m, _, _)| m.id.0).collect();
    confirmed.sort();
    assert_eq!(
        confirmed,
        (1..=10).collect::<Vec<_>>(),
        "confirmations landed"
    );
    let mut unconfirmed: Vec<u64> = rec.unconfirmed.iter().map(|(m, _)| m.id.0).collect();
    unconfirmed.retain(|i| *i < 1_000);
    unconfirmed.sort();
    assert_eq!(
        unconfirmed,
        (16..=20).collect::<Vec<_>>(),
        "finishes landed (11-15 are gone)"
    );
    assert!(rec.receipts.is_empty(), "forwarded marks landed");
}

/// A queued message replaced in place (`replace_sm`): message `id` accepted, then
/// accepted again under the same id with the text "replaced". See
/// [`check_replacement_recovered`].
pub async fn write_replacement(s: &dyn otpgw_core::Store, id: u64) {
    s.accept(&message(id)).await.unwrap();
    let mut f = message(id).sms_fields().expect("an SMS");
    f.short_message = bytes::Bytes::from_static(b"replaced");
    let m = otpgw_core::Message::sms(
        MsgId(id),
        "bank".into(),
        f,
        otpgw_core::Class::Otp,
        1,
        REPLACED_DEADLINE,
    );
    s.accept(&m).await.unwrap();
    assert!(s.flush().wait().await);
}

/// The next run recovers the replacement only: one message `id`, with the new
/// text and deadline (the first text never comes back to be sent).
pub fn check_replacement_recovered(r: &otpgw_core::store::Recovered, id: u64) {
    let found: Vec<&otpgw_core::Message> = r
        .unconfirmed
        .iter()
        .map(|(m, _)| m)
        .chain(r.confirmed.iter().map(|(m, _, _)| m))
        .chain(r.attempts.iter().map(|(m, _)| m))
        .filter(|m| m.id.0 == id)
        .collect();
    assert_eq!(found.len(), 1, "one message {id} comes back");
    let otpgw_core::Body::Sms(b) = &found[0].body;
    assert_eq!(&b.short_message[..], b"replaced");
    assert_eq!(found[0].deadline_ms, REPLACED_DEADLINE);
}

/// The replacement's deadline in [`write_replacement`] (the first one's differs).
const REPLACED_DEADLINE: u64 = u64::MAX / 3;
