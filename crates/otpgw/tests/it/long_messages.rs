//! Long messages over real sockets: a brand submits GSM 7-bit and UCS-2 texts longer
//! than one SMS (in `short_message` and in `message_payload`), its own UDH part, and
//! a short text. The simulated carrier must get correct concatenated parts (UDH with
//! one reference per message, all parts on one bind) that reassemble to the original
//! text, and the brand exactly one DELIVERED receipt per message.

use crate::common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use common::Raw;
use otpgw_proto::pdu::{self, DeliverView, SubmitFields};
use otpgw_proto::receipt::DeliveryState;
use otpgw_proto::rusmpp::{Command, CommandStatus, Pdu};
use otpgw_proto::split::{UDHI, reassemble};
use otpgw_proto::status::{self, cmd};

fn fields(dest: &str, dc: u8) -> SubmitFields {
    SubmitFields {
        registered_delivery: 1,
        priority_flag: 1,
        data_coding: dc,
        ..otpgw_testkit::sample::fields("BANK", dest)
    }
}

fn ucs2(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

#[tokio::test]
async fn long_gsm_and_ucs2_arrive_as_parts_and_reassemble() {
    let sim = common::sim(|_| {}).await;
    let gw = common::gateway(&sim, "").await;
    let mut brand = Raw::connect(gw.brand_addr()).await;
    assert_eq!(
        brand.bind(cmd::BIND_TRANSCEIVER, "bank", "pw1", 1).await,
        (cmd::BIND_TRANSCEIVER_RESP, status::ESME_ROK, 1)
    );

    // GSM 7-bit with an escaped character (the euro sign, 0x1B 0x65) across the cut.
    let mut gsm: Vec<u8> = b"Your code is 482913. ".repeat(7);
    gsm.truncate(152);
    gsm.extend_from_slice(&[0x1B, 0x65]);
    gsm.extend_from_slice(b" do not share it with anyone, not even us.");
    let long_payload: Vec<u8> = (0..600u32).map(|i| b'A' + (i % 26) as u8).collect();
    let uni = ucs2(&("Ваш код 482913 — никому не сообщайте 😀 ".repeat(3)));
    let own_part: Vec<u8> = [&[0x05, 0x00, 0x03, 0x77, 0x02, 0x01][..], b"own part one"].concat();

    let mut cases: Vec<(String, SubmitFields, Vec<u8>, usize)> = Vec::new();
    let mut f = fields("447400900001", 0);
    f.short_message = Bytes::from(gsm.clone());
    cases.push(("gsm".into(), f, gsm.clone(), 2));
    let mut f = fields("447400900002", 0);
    f.message_payload = Some(Bytes::from(long_payload.clone()));
    cases.push(("payload".into(), f, long_payload.clone(), 4));
    let mut f = fields("447400900003", 8);
    f.short_message = Bytes::from(uni.clone());
    let uni_parts = uni.len().div_ceil(134);
    cases.push(("ucs2".into(), f, uni.clone(), uni_parts));
    let mut f = fields("447400900004", 4);
    f.esm_class = UDHI;
    f.short_message = Bytes::from(own_part.clone());
    cases.push(("own udh".into(), f, own_part.clone(), 1));
    let mut f = fields("447400900005", 0);
    f.short_message = Bytes::from_static(b"Your code is 111222");
    cases.push(("short".into(), f, b"Your code is 111222".to_vec(), 1));
    assert!(uni_parts >= 2, "the UCS-2 text must need parts");

    let mut ids: HashMap<String, String> = HashMap::new();
    for (i, (name, f, _, _)) in cases.iter().enumerate() {
        let seq = 10 + i as u32;
        let c = Command::new(CommandStatus::EsmeRok, seq, f.to_submit_sm().unwrap());
        brand.send(&c).await;
        let resp = brand.next_command().await.expect("submit_sm_resp");
        assert_eq!(u32::from(resp.status()), status::ESME_ROK, "{name} refused");
        assert_eq!(resp.sequence_number(), seq);
        ids.insert(pdu::submit_sm_resp_id(&resp).unwrap(), name.clone());
    }

    // Exactly one receipt per message, DELIVERED, once all its parts were delivered.
    let mut receipts: HashMap<String, DeliveryState> = HashMap::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while receipts.len() < cases.len() && tokio::time::Instant::now() < until {
        let Some(c) = brand.next_command().await else {
            continue;
        };
        if u32::from(c.id()) != cmd::DELIVER_SM {
            continue;
        }
        brand
            .send(&pdu::deliver_sm_resp(c.sequence_number(), status::ESME_ROK))
            .await;
        let Some(Pdu::DeliverSm(d)) = c.pdu() else {
            panic!("deliver_sm without body")
        };
        let r = DeliverView::from_deliver_sm(d)
            .receipt()
            .expect("a receipt");
        assert!(ids.contains_key(&r.id), "receipt for an unknown id");
        assert!(
            receipts.insert(r.id.clone(), r.state).is_none(),
            "two receipts for {}",
            ids[&r.id]
        );
    }
    assert_eq!(receipts.len(), cases.len(), "receipts: {receipts:?}");
    assert!(receipts.values().all(|s| *s == DeliveryState::Delivered));
    // No late duplicate receipt.
    if let Ok(Some(c)) =
        tokio::time::timeout(Duration::from_millis(500), brand.next_command()).await
    {
        assert_ne!(u32::from(c.id()), cmd::DELIVER_SM, "an extra receipt");
    }

    // What the carrier got.
    let records = sim.records();
    let mut refs = HashSet::new();
    for (name, f, original, parts) in &cases {
        let got: Vec<_> = records
            .iter()
            .filter(|r| r.fields.dest.addr == f.dest.addr)
            .collect();
        assert_eq!(got.len(), *parts, "{name}: parts");
        assert!(
            got.iter().all(|r| r.fields.data_coding == f.data_coding),
            "{name}: data_coding kept"
        );
        assert!(
            got.iter().all(|r| r.fields.message_payload.is_none()),
            "{name}: parts go in short_message"
        );
        if *parts == 1 {
            assert_eq!(got[0].text(), &original[..], "{name}: passed through");
            assert_eq!(
                got[0].fields.esm_class, f.esm_class,
                "{name}: esm_class kept"
            );
            continue;
        }
        assert!(
            got.iter().all(|r| r.fields.esm_class & UDHI != 0),
            "{name}: UDHI set"
        );
        let conns: HashSet<u64> = got.iter().map(|r| r.connection).collect();
        assert_eq!(conns.len(), 1, "{name}: all parts on one bind");
        let bodies: Vec<&[u8]> = got.iter().map(|r| r.text()).collect();
        for b in &bodies {
            let max = if f.data_coding == 0 { 153 } else { 134 };
            assert!(b.len() <= 6 + max, "{name}: part too long");
        }
        assert_eq!(
            reassemble(&bodies).as_deref(),
            Some(&original[..]),
            "{name}: reassembles to the original"
        );
        assert!(refs.insert(bodies[0][3]), "{name}: reference reused");
    }
    // The UCS-2 parts decode to the original characters.
    let uni_got: Vec<&[u8]> = records
        .iter()
        .filter(|r| r.fields.dest.addr == "447400900003")
        .map(|r| r.text())
        .collect();
    let joined = reassemble(&uni_got).unwrap();
    let units: Vec<u16> = joined
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    assert_eq!(
        String::from_utf16(&units).unwrap(),
        "Ваш код 482913 — никому не сообщайте 😀 ".repeat(3)
    );
    gw.shutdown().await;
}
