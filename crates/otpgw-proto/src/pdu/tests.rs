use super::*;
use crate::codec::{Frame, SmppCodec, encode_command};
use bytes::BytesMut;
use tokio_util::codec::Decoder;

fn roundtrip(c: &Command) -> Command {
    let mut b = BytesMut::new();
    encode_command(c, &mut b);
    match SmppCodec::default().decode(&mut b).unwrap() {
        Some(Frame::Command(c)) => *c,
        other => panic!("{other:?}"),
    }
}

#[test]
fn submit_fields_round_trip_all_kept_fields() {
    let f = SubmitFields {
        service_type: "OTP".into(),
        source: Address {
            ton: 5,
            npi: 0,
            addr: "MyBank".into(),
        },
        dest: Address {
            ton: 1,
            npi: 1,
            addr: "4915112345678".into(),
        },
        esm_class: 0x40,
        protocol_id: 0,
        priority_flag: 3,
        schedule_delivery_time: String::new(),
        validity_period: "000000000500000R".into(),
        registered_delivery: 1,
        data_coding: 8,
        short_message: Bytes::from_static(&[0, 0x41, 0, 0x42]),
        message_payload: None,
    };
    let c = roundtrip(&Command::new(
        CommandStatus::EsmeRok,
        9,
        f.to_submit_sm().unwrap(),
    ));
    let Some(Pdu::SubmitSm(s)) = c.pdu() else {
        panic!()
    };
    assert_eq!(SubmitFields::from_submit_sm(s), f);
}

#[test]
fn message_payload_is_kept() {
    let f = SubmitFields {
        source: Address {
            ton: 5,
            npi: 0,
            addr: "X".into(),
        },
        dest: Address {
            ton: 1,
            npi: 1,
            addr: "4915112345678".into(),
        },
        message_payload: Some(Bytes::from(vec![b'a'; 600])),
        ..Default::default()
    };
    let c = roundtrip(&Command::new(
        CommandStatus::EsmeRok,
        9,
        f.to_submit_sm().unwrap(),
    ));
    let Some(Pdu::SubmitSm(s)) = c.pdu() else {
        panic!()
    };
    let back = SubmitFields::from_submit_sm(s);
    assert_eq!(back.text().len(), 600);
    assert!(back.short_message.is_empty());
}

#[test]
fn receipt_deliver_sm_has_tlvs_and_text() {
    let a = Address {
        ton: 1,
        npi: 1,
        addr: "4915112345678".into(),
    };
    let b = Address {
        ton: 5,
        npi: 0,
        addr: "MyBank".into(),
    };
    let d = receipt_deliver_sm(&ReceiptPdu {
        source: &a,
        dest: &b,
        message_id: "0000019abc",
        state: DeliveryState::Undeliverable,
        submit_date: "2611261120",
        done_date: "2611261121",
        err: "001",
    })
    .unwrap();
    let c = roundtrip(&Command::new(CommandStatus::EsmeRok, 1, d));
    let Some(Pdu::DeliverSm(d)) = c.pdu() else {
        panic!()
    };
    let v = DeliverView::from_deliver_sm(d);
    assert!(v.is_receipt());
    assert_eq!(v.esm_class, 0x04);
    assert_eq!(v.receipted_message_id.as_deref(), Some("0000019abc"));
    assert_eq!(v.message_state, Some(5));
    let text = receipt::parse(&v.short_message);
    assert_eq!(text.id.as_deref(), Some("0000019abc"));
    assert_eq!(text.stat, Some(DeliveryState::Undeliverable));
    // the lenient reader agrees with rusmpp on a well-formed receipt
    let mut raw = BytesMut::new();
    encode_command(&c, &mut raw);
    assert_eq!(lenient_deliver_sm(&raw[16..]), Some(v));
}

#[test]
fn tlvs_win_over_text() {
    let v = DeliverView {
        esm_class: 0x04,
        short_message: Bytes::from_static(b"id:111 stat:UNDELIV err:005"),
        receipted_message_id: Some("6F".into()),
        message_state: Some(2),
        ..Default::default()
    };
    let r = v.receipt().unwrap();
    assert_eq!(r.id, "6F");
    assert_eq!(r.state, DeliveryState::Delivered);
    assert_eq!(r.err.as_deref(), Some("005"));
}

#[test]
fn mask_keeps_only_ends() {
    assert_eq!(mask_number("447400900123"), "44********23");
    assert_eq!(mask_number("123"), "***");
    let a = Address {
        ton: 1,
        npi: 1,
        addr: "447400900123".into(),
    };
    assert!(!format!("{a:?}").contains("7700900"));
}

#[test]
fn header_only_and_bind_builders() {
    let c = roundtrip(&header_only(
        cmd::SUBMIT_SM_RESP,
        crate::status::ESME_RTHROTTLED,
        12,
    ));
    assert_eq!(u32::from(c.id()), cmd::SUBMIT_SM_RESP);
    assert_eq!(u32::from(c.status()), crate::status::ESME_RTHROTTLED);
    let p = BindParams {
        system_id: "brand".into(),
        password: "pw".into(),
        system_type: String::new(),
    };
    let c = roundtrip(&bind(cmd::BIND_TRANSCEIVER, 1, &p).unwrap());
    let r = bind_request(&c).unwrap();
    assert_eq!(r.command_id, cmd::BIND_TRANSCEIVER);
    assert_eq!(r.params.system_id, "brand");
    assert_eq!(r.params.password, "pw");
    assert!(!format!("{p:?}").contains("pw\""));
}
