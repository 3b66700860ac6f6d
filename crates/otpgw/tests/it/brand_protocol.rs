//! The brand-facing server's answers to each kind of input, over raw TCP on 127.0.0.1:
//! bind failures, wrong bind state, unknown commands, malformed frames, and that the
//! session stays up after every recoverable one.

use crate::common;

use common::Raw;

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use futures_util::StreamExt;

use otpgw_proto::codec::encode_command;
use otpgw_proto::pdu::{self, SubmitFields};
use otpgw_proto::rusmpp::{Command, CommandStatus};
use otpgw_proto::status::{self, cmd};

fn submit(seq: u32, dest: &str) -> Command {
    let f = SubmitFields {
        registered_delivery: 0,
        short_message: bytes::Bytes::from_static(b"Your code is 123456"),
        ..otpgw_testkit::sample::fields("BANK", dest)
    };
    Command::new(CommandStatus::EsmeRok, seq, f.to_submit_sm().unwrap())
}

#[tokio::test]
async fn bind_state_unknown_commands_and_malformed_frames() {
    let sim = common::sim(|_| {}).await;
    let gw = common::gateway(&sim, "").await;
    let addr = gw.brand_addr();

    // Wrong password and unknown system_id both answer ESME_RBINDFAIL.
    let mut c = Raw::connect(addr).await;
    assert_eq!(
        c.bind(cmd::BIND_TRANSCEIVER, "bank", "nope", 1).await,
        (cmd::BIND_TRANSCEIVER_RESP, status::ESME_RBINDFAIL, 1)
    );
    assert_eq!(
        c.bind(cmd::BIND_TRANSCEIVER, "nobody", "pw1", 2).await,
        (cmd::BIND_TRANSCEIVER_RESP, status::ESME_RBINDFAIL, 2)
    );
    // A 9-character password (over the SMPP limit) is a bind failure, not a dead session.
    let mut raw = BytesMut::new();
    let body: &[u8] = b"bank\0ninechars\0\0\x34\0\0\0";
    raw.put_u32((16 + body.len()) as u32);
    raw.put_u32(cmd::BIND_TRANSMITTER);
    raw.put_u32(0);
    raw.put_u32(3);
    raw.put_slice(body);
    c.send_raw(&raw).await;
    assert_eq!(
        c.next().await,
        Some((cmd::BIND_TRANSMITTER_RESP, status::ESME_RBINDFAIL, 3))
    );

    // submit_sm before bind: ESME_RINVBNDSTS.
    c.send(&submit(4, "447400900123")).await;
    assert_eq!(
        c.next().await,
        Some((cmd::SUBMIT_SM_RESP, status::ESME_RINVBNDSTS, 4))
    );

    // Bind as receiver: submit is not allowed there either.
    assert_eq!(
        c.bind(cmd::BIND_RECEIVER, "bank", "pw1", 5).await,
        (cmd::BIND_RECEIVER_RESP, status::ESME_ROK, 5)
    );
    c.send(&submit(6, "447400900123")).await;
    assert_eq!(
        c.next().await,
        Some((cmd::SUBMIT_SM_RESP, status::ESME_RINVBNDSTS, 6))
    );
    // Binding twice: ESME_RALYBND.
    assert_eq!(
        c.bind(cmd::BIND_TRANSCEIVER, "bank", "pw1", 7).await,
        (cmd::BIND_TRANSCEIVER_RESP, status::ESME_RALYBND, 7)
    );

    // A transmitter session for the rest.
    let mut t = Raw::connect(addr).await;
    assert_eq!(
        t.bind(cmd::BIND_TRANSMITTER, "shop", "pw2", 1).await.1,
        status::ESME_ROK
    );

    // Unknown command id: generic_nack ESME_RINVCMDID, session stays up.
    let mut raw = BytesMut::new();
    raw.put_u32(16);
    raw.put_u32(0x0000_0777);
    raw.put_u32(0);
    raw.put_u32(2);
    t.send_raw(&raw).await;
    assert_eq!(
        t.next().await,
        Some((cmd::GENERIC_NACK, status::ESME_RINVCMDID, 2))
    );

    // A submit_sm with trailing bytes: answered with an error, session stays up.
    let mut b = BytesMut::new();
    encode_command(&submit(3, "447400900123"), &mut b);
    b.put_slice(&[1, 2, 3]);
    let len = b.len() as u32;
    b[..4].copy_from_slice(&len.to_be_bytes());
    t.send_raw(&b).await;
    let (id, st, seq) = t.next().await.unwrap();
    assert_eq!((id, seq), (cmd::SUBMIT_SM_RESP, 3));
    assert_ne!(st, status::ESME_ROK);

    // An oversized frame: refused without being buffered, session stays up.
    let mut big = BytesMut::new();
    big.put_u32(1_000_000);
    big.put_u32(cmd::SUBMIT_SM);
    big.put_u32(0);
    big.put_u32(4);
    t.send_raw(&big).await;
    assert_eq!(
        t.next().await,
        Some((cmd::SUBMIT_SM_RESP, status::ESME_RINVCMDLEN, 4))
    );
    t.send_raw(&vec![0u8; 1_000_000 - 16]).await;

    // Validation answers with precise codes.
    t.send(&submit(5, "12ab")).await;
    assert_eq!(
        t.next().await,
        Some((cmd::SUBMIT_SM_RESP, status::ESME_RINVDSTADR, 5))
    );
    // International numbers not valid in their country's plan (two digits
    // short; the UK drama range) are refused the same way.
    for (seq, dest) in [
        (51, "4420712345"),
        (52, "447700900123"),
        (53, "+4420712345"),
    ] {
        t.send(&submit(seq, dest)).await;
        assert_eq!(
            t.next().await,
            Some((cmd::SUBMIT_SM_RESP, status::ESME_RINVDSTADR, seq)),
            "{dest}"
        );
    }
    // enquire_link answered; a good submit still works after all of the above.
    t.send(&pdu::header_only(cmd::ENQUIRE_LINK, 0, 6)).await;
    assert_eq!(t.next().await, Some((cmd::ENQUIRE_LINK_RESP, 0, 6)));
    t.send(&submit(7, "447400900123")).await;
    assert_eq!(
        t.next().await,
        Some((cmd::SUBMIT_SM_RESP, status::ESME_ROK, 7))
    );

    // unbind answered with unbind_resp.
    t.send(&pdu::header_only(cmd::UNBIND, 0, 8)).await;
    assert_eq!(t.next().await, Some((cmd::UNBIND_RESP, 0, 8)));

    // command_length below the header: generic_nack and the connection is closed.
    let mut d = Raw::connect(addr).await;
    d.send_raw(&[0, 0, 0, 8, 0, 0, 0, 4]).await;
    assert_eq!(
        d.next().await,
        Some((cmd::GENERIC_NACK, status::ESME_RINVCMDLEN, 0))
    );
    assert_eq!(d.next().await, None, "connection closed");

    gw.shutdown().await;
    sim.shutdown();
}

#[tokio::test]
async fn receipts_wait_for_a_receiver_and_go_to_the_right_brand() {
    let sim = common::sim(|c| c.receipt_delay = Duration::from_millis(1)).await;
    let gw = common::gateway(&sim, "").await;
    let addr = gw.brand_addr();
    // Submit on a transmitter; no receiver is bound yet.
    let mut t = Raw::connect(addr).await;
    assert_eq!(t.bind(cmd::BIND_TRANSMITTER, "bank", "pw1", 1).await.1, 0);
    let mut c = submit(2, "447400900123");
    if let Some(otpgw_proto::rusmpp::Pdu::SubmitSm(s)) = c.pdu().cloned() {
        let mut f = SubmitFields::from_submit_sm(&s);
        f.registered_delivery = 1;
        c = Command::new(CommandStatus::EsmeRok, 2, f.to_submit_sm().unwrap());
    }
    t.send(&c).await;
    assert_eq!(t.next().await.map(|x| x.1), Some(0));
    // Wait until the receipt is held for the brand.
    for _ in 0..200 {
        if gw.receipts_waiting() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(gw.receipts_waiting(), 1);
    // Another brand's receiver gets nothing; the right brand's receiver gets it.
    let mut other = Raw::connect(addr).await;
    assert_eq!(other.bind(cmd::BIND_RECEIVER, "shop", "pw2", 1).await.1, 0);
    let mut r = Raw::connect(addr).await;
    assert_eq!(r.bind(cmd::BIND_RECEIVER, "bank", "pw1", 1).await.1, 0);
    let (id, st, seq) = r.next().await.unwrap();
    assert_eq!((id, st), (cmd::DELIVER_SM, 0));
    r.send(&pdu::deliver_sm_resp(seq, 0)).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), other.rd.next())
            .await
            .is_err(),
        "other brand got a receipt"
    );
    gw.shutdown().await;
    sim.shutdown();
}

/// `cancel_sm` and `query_sm` answered from the gateway's records: a message still
/// queued is cancelled (never sent, DELETED, its receipt says so, a query says so);
/// one already at the carrier, an unknown id and another brand's id answer
/// ESME_RCANCELFAIL. Before, `cancel_sm` got `generic_nack` and the message went out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_takes_back_only_what_is_still_queued() {
    use otpgw_proto::query::{cancel_sm, query_sm, read_query_sm_resp};
    let sim = common::sim(|c| c.receipt_delay = Duration::from_millis(1)).await;
    // One message a second: the first goes at once, the others wait in the queue.
    let gw = common::gateway(&sim, "rate_limit = 1").await;
    let addr = gw.brand_addr();
    let mut t = Raw::connect(addr).await;
    assert_eq!(t.bind(cmd::BIND_TRANSCEIVER, "bank", "pw1", 1).await.1, 0);
    let mut receipts = Vec::new();
    // Answers come in order; receipts may come between them.
    let answer = async |t: &mut Raw, c: Command, receipts: &mut Vec<(String, u8)>| {
        t.send(&c).await;
        loop {
            let r = t.next_command().await.expect("an answer");
            if u32::from(r.id()) != cmd::DELIVER_SM {
                return r;
            }
            if let Some(otpgw_proto::rusmpp::Pdu::DeliverSm(d)) = r.pdu() {
                let v = pdu::DeliverView::from_deliver_sm(d);
                receipts.push((v.receipted_message_id.unwrap(), v.message_state.unwrap()));
            }
            t.send(&pdu::deliver_sm_resp(r.sequence_number(), 0)).await;
        }
    };
    let mut ids = Vec::new();
    for (i, dest) in ["447400900201", "447400900202", "447400900203"]
        .iter()
        .enumerate()
    {
        let seq = 10 + i as u32;
        let mut c = submit(seq, dest);
        if let Some(otpgw_proto::rusmpp::Pdu::SubmitSm(s)) = c.pdu().cloned() {
            let mut f = SubmitFields::from_submit_sm(&s);
            f.registered_delivery = 1;
            c = Command::new(CommandStatus::EsmeRok, seq, f.to_submit_sm().unwrap());
        }
        // The first message's receipt may come before the later answers.
        let r = answer(&mut t, c, &mut receipts).await;
        assert_eq!(u32::from(r.status()), 0);
        ids.push(pdu::submit_sm_resp_id(&r).unwrap());
    }
    // The first is at the carrier by now.
    for _ in 0..100 {
        if sim.received() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r = answer(&mut t, cancel_sm(20, &ids[2]), &mut receipts).await;
    assert_eq!(
        (u32::from(r.id()), u32::from(r.status())),
        (cmd::CANCEL_SM_RESP, 0)
    );
    let r = answer(&mut t, cancel_sm(21, &ids[0]), &mut receipts).await;
    assert_eq!(
        u32::from(r.status()),
        status::ESME_RCANCELFAIL,
        "already at the carrier"
    );
    let r = answer(&mut t, cancel_sm(22, "ffffffffffffffff"), &mut receipts).await;
    assert_eq!(
        u32::from(r.status()),
        status::ESME_RCANCELFAIL,
        "unknown id"
    );
    let r = answer(&mut t, query_sm(23, &ids[2]), &mut receipts).await;
    assert_eq!(read_query_sm_resp(&r).unwrap().state, 4, "DELETED");
    // Another brand cannot cancel or query this brand's message.
    let mut other = Raw::connect(addr).await;
    assert_eq!(
        other.bind(cmd::BIND_TRANSMITTER, "shop", "pw2", 1).await.1,
        0
    );
    other.send(&cancel_sm(2, &ids[1])).await;
    assert_eq!(other.next().await.unwrap().1, status::ESME_RCANCELFAIL);
    other.send(&query_sm(3, &ids[1])).await;
    assert_eq!(other.next().await.unwrap().1, status::ESME_RQUERYFAIL);
    // The rest arrive: the second is sent and delivered, the third never sent.
    while receipts.len() < 3 {
        let r = tokio::time::timeout(Duration::from_secs(5), t.next_command())
            .await
            .expect("all receipts within 5 s")
            .unwrap();
        if let Some(otpgw_proto::rusmpp::Pdu::DeliverSm(d)) = r.pdu() {
            let v = pdu::DeliverView::from_deliver_sm(d);
            receipts.push((v.receipted_message_id.unwrap(), v.message_state.unwrap()));
            t.send(&pdu::deliver_sm_resp(r.sequence_number(), 0)).await;
        }
    }
    receipts.sort();
    let mut want = vec![
        (ids[0].clone(), 2),
        (ids[1].clone(), 2),
        (ids[2].clone(), 4),
    ];
    want.sort();
    assert_eq!(receipts, want);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(sim.received(), 2, "the cancelled message was sent");
    gw.shutdown().await;
    sim.shutdown();
}
