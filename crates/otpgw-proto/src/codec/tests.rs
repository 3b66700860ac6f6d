use super::*;
use crate::pdu::{Address, ReceiptPdu, SubmitFields, receipt_deliver_sm};
use crate::receipt::DeliveryState;
use crate::status::{self, cmd};
use rusmpp::{CommandStatus, Pdu};

fn submit(seq: u32, text: &str) -> Command {
    let f = SubmitFields {
        source: Address {
            ton: 5,
            npi: 0,
            addr: "BANK".into(),
        },
        dest: Address {
            ton: 1,
            npi: 1,
            addr: "447400900123".into(),
        },
        registered_delivery: 1,
        short_message: Bytes::copy_from_slice(text.as_bytes()),
        ..Default::default()
    };
    Command::new(CommandStatus::EsmeRok, seq, f.to_submit_sm().unwrap())
}

fn encoded(cmds: &[Command]) -> BytesMut {
    let mut b = BytesMut::new();
    for c in cmds {
        encode_command(c, &mut b);
    }
    b
}

fn decode_all(codec: &mut SmppCodec, buf: &mut BytesMut) -> Vec<Frame> {
    let mut out = vec![];
    while let Some(f) = codec.decode(buf).unwrap() {
        out.push(f);
    }
    out
}

fn seqs(frames: &[Frame]) -> Vec<u32> {
    frames
        .iter()
        .map(|f| match f {
            Frame::Command(c) => c.sequence_number(),
            Frame::Malformed(m) => m.sequence_number.unwrap_or(0) | 0x8000_0000,
        })
        .collect()
}

#[test]
fn split_at_every_byte_boundary() {
    let cmds = [
        submit(1, "code 123456"),
        submit(2, "code 654321"),
        submit(3, "x"),
    ];
    let wire = encoded(&cmds);
    for cut in 0..=wire.len() {
        let mut codec = SmppCodec::default();
        let mut buf = BytesMut::new();
        let mut frames = vec![];
        buf.extend_from_slice(&wire[..cut]);
        frames.extend(decode_all(&mut codec, &mut buf));
        buf.extend_from_slice(&wire[cut..]);
        frames.extend(decode_all(&mut codec, &mut buf));
        assert_eq!(seqs(&frames), vec![1, 2, 3], "cut at {cut}");
        assert!(buf.is_empty());
    }
}

#[test]
fn byte_by_byte_delivery() {
    let cmds = [submit(7, "hello"), submit(8, "world")];
    let wire = encoded(&cmds);
    let mut codec = SmppCodec::default();
    let mut buf = BytesMut::new();
    let mut frames = vec![];
    for b in wire.iter() {
        buf.extend_from_slice(&[*b]);
        frames.extend(decode_all(&mut codec, &mut buf));
    }
    assert_eq!(seqs(&frames), vec![7, 8]);
}

#[test]
fn several_pdus_in_one_read() {
    let cmds: Vec<_> = (1..=50).map(|i| submit(i, "abc")).collect();
    let mut buf = encoded(&cmds);
    let frames = decode_all(&mut SmppCodec::default(), &mut buf);
    assert_eq!(seqs(&frames), (1..=50).collect::<Vec<_>>());
}

#[test]
fn too_long_length_is_skipped_without_buffering_and_stream_continues() {
    let mut codec = SmppCodec::new(256);
    let mut buf = BytesMut::new();
    // header announcing 100_000 bytes
    buf.extend_from_slice(&100_000u32.to_be_bytes());
    buf.extend_from_slice(&cmd::SUBMIT_SM.to_be_bytes());
    buf.extend_from_slice(&0u32.to_be_bytes());
    buf.extend_from_slice(&9u32.to_be_bytes());
    let frames = decode_all(&mut codec, &mut buf);
    match &frames[..] {
        [Frame::Malformed(m)] => {
            assert_eq!(m.sequence_number, Some(9));
            assert_eq!(m.command_id, Some(cmd::SUBMIT_SM));
            assert!(matches!(
                m.kind,
                MalformedKind::TooLong {
                    length: 100_000,
                    ..
                }
            ));
            assert!(!m.is_fatal());
        }
        other => panic!("{other:?}"),
    }
    assert!(
        buf.capacity() < 100_000,
        "oversized frame must not be reserved"
    );
    // the rest of the oversized frame arrives in pieces, then a good PDU
    let mut left = 100_000 - 16;
    while left > 0 {
        let n = left.min(7000);
        buf.extend_from_slice(&vec![0xAB; n]);
        assert!(decode_all(&mut codec, &mut buf).is_empty());
        left -= n;
    }
    buf.extend_from_slice(&encoded(&[submit(10, "ok")]));
    assert_eq!(seqs(&decode_all(&mut codec, &mut buf)), vec![10]);
}

#[test]
fn length_below_header_is_fatal_and_poisons() {
    let mut codec = SmppCodec::default();
    let mut buf = BytesMut::from(&[0, 0, 0, 8, 0, 0, 0, 4, 1, 2, 3][..]);
    let frames = decode_all(&mut codec, &mut buf);
    match &frames[..] {
        [Frame::Malformed(m)] => {
            assert!(m.is_fatal());
            assert_eq!(m.command_id, Some(cmd::SUBMIT_SM));
        }
        other => panic!("{other:?}"),
    }
    buf.extend_from_slice(&encoded(&[submit(1, "x")]));
    assert!(decode_all(&mut codec, &mut buf).is_empty());
}

#[test]
fn body_shorter_than_pdu_needs_is_recoverable() {
    // A submit_sm whose command_length cuts the body after the source address.
    let full = encoded(&[submit(5, "hello")]);
    let cut = 16 + 12;
    let mut frame = BytesMut::from(&full[..cut]);
    frame[..4].copy_from_slice(&(cut as u32).to_be_bytes());
    frame.extend_from_slice(&encoded(&[submit(6, "next")]));
    let frames = decode_all(&mut SmppCodec::default(), &mut frame);
    match &frames[..] {
        [Frame::Malformed(m), Frame::Command(c)] => {
            assert_eq!(m.sequence_number, Some(5));
            assert!(matches!(m.kind, MalformedKind::Undecodable { .. }));
            assert_eq!(c.sequence_number(), 6);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn trailing_bytes_are_malformed_and_do_not_leak_into_next_frame() {
    let mut c = encoded(&[header_only_enquire(3)]);
    c.extend_from_slice(&[1, 2, 3, 4]);
    let len = c.len() as u32;
    c[..4].copy_from_slice(&len.to_be_bytes());
    c.extend_from_slice(&encoded(&[header_only_enquire(4)]));
    let frames = decode_all(&mut SmppCodec::default(), &mut c);
    match &frames[..] {
        [Frame::Malformed(m), Frame::Command(next)] => {
            assert_eq!(m.sequence_number, Some(3));
            assert_eq!(m.kind, MalformedKind::TrailingBytes { left: 4 });
            assert_eq!(next.sequence_number(), 4);
        }
        other => panic!("{other:?}"),
    }
}

fn header_only_enquire(seq: u32) -> Command {
    Command::new(CommandStatus::EsmeRok, seq, Pdu::EnquireLink)
}

#[test]
fn receipt_without_nul_in_receipted_message_id_is_read_leniently() {
    let a = Address {
        ton: 1,
        npi: 1,
        addr: "447400900123".into(),
    };
    let b = Address {
        ton: 5,
        npi: 0,
        addr: "BANK".into(),
    };
    let d = receipt_deliver_sm(&ReceiptPdu {
        source: &a,
        dest: &b,
        message_id: "ABC123",
        state: DeliveryState::Delivered,
        submit_date: "2611261120",
        done_date: "2611261121",
        err: "000",
    })
    .unwrap();
    let full = encoded(&[Command::new(CommandStatus::EsmeRok, 77, d)]);
    // Strip the NUL of the receipted_message_id TLV (tag 0x001E, len 7 -> 6).
    let pos = full
        .windows(4)
        .position(|w| w == [0x00, 0x1E, 0x00, 0x07])
        .unwrap();
    let nul = pos + 4 + 6;
    assert_eq!(full[nul], 0);
    let mut wire = BytesMut::new();
    wire.extend_from_slice(&full[..pos + 3]);
    wire.extend_from_slice(&[6]);
    wire.extend_from_slice(&full[pos + 4..nul]);
    wire.extend_from_slice(&full[nul + 1..]);
    let len = wire.len() as u32;
    wire[..4].copy_from_slice(&len.to_be_bytes());
    wire.extend_from_slice(&encoded(&[header_only_enquire(78)]));

    let frames = decode_all(&mut SmppCodec::default(), &mut wire);
    let m = match &frames[..] {
        [Frame::Malformed(m), Frame::Command(next)] => {
            assert_eq!(next.sequence_number(), 78);
            m
        }
        other => panic!("expected malformed then next frame: {other:?}"),
    };
    assert_eq!(m.command_id, Some(cmd::DELIVER_SM));
    assert_eq!(m.sequence_number, Some(77));
    let view = crate::pdu::lenient_deliver_sm(&m.body).expect("lenient read");
    assert!(view.is_receipt());
    let r = view.receipt().unwrap();
    assert_eq!(r.id, "ABC123");
    assert_eq!(r.state, DeliveryState::Delivered);
    let _ = status::ESME_ROK;
}

#[test]
fn encode_header_is_sixteen_bytes() {
    let mut b = BytesMut::new();
    encode_header(cmd::GENERIC_NACK, status::ESME_RINVCMDID, 42, &mut b);
    assert_eq!(b.len(), 16);
    let frames = decode_all(&mut SmppCodec::default(), &mut b);
    match &frames[..] {
        [Frame::Command(c)] => {
            assert_eq!(u32::from(c.id()), cmd::GENERIC_NACK);
            assert_eq!(u32::from(c.status()), status::ESME_RINVCMDID);
        }
        other => panic!("{other:?}"),
    }
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Arbitrary bytes never panic the decoder, and it always makes progress.
        #[test]
        fn arbitrary_bytes_never_panic(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8)) {
            let mut codec = SmppCodec::new(1024);
            let mut buf = BytesMut::new();
            for c in chunks {
                buf.extend_from_slice(&c);
                let mut guard = 0;
                while codec.decode(&mut buf).unwrap().is_some() {
                    guard += 1;
                    prop_assert!(guard < 10_000);
                }
            }
        }

        /// Valid PDUs with flipped bits (anywhere, the length field included) and
        /// optionally truncated, then a valid enquire_link: never a panic; when the
        /// length fields were left intact and nothing was cut, every frame stays
        /// isolated and the enquire_link comes out whole at the end.
        #[test]
        fn mutated_pdus_never_panic_and_isolable_frames_stay_isolated(
            flips in proptest::collection::vec((0usize..400, 0u8..8), 0..6),
            cut in proptest::option::of(0usize..400),
        ) {
            let mut bytes = encoded(&[submit(1, "Your code is 123456"), submit(2, "and another")]);
            let n = bytes.len();
            // The second PDU starts where the (unflipped) first length says.
            let second_start = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
            let mut length_touched = false;
            for (pos, bit) in &flips {
                let p = pos % n;
                length_touched |= p < 4;
                bytes[p] ^= 1 << bit;
            }
            length_touched |= flips.iter().any(|(pos, _)| {
                let p = pos % n;
                p >= second_start && p < second_start + 4
            });
            if let Some(c) = cut {
                bytes.truncate(c % n);
            }
            bytes.extend_from_slice(&encoded(&[Command::new(
                CommandStatus::EsmeRok,
                0x7FFF_FFF0,
                Pdu::EnquireLink,
            )]));
            let mut codec = SmppCodec::new(4096);
            let mut frames = Vec::new();
            let mut guard = 0;
            loop {
                match codec.decode(&mut bytes) {
                    Ok(Some(f)) => frames.push(f),
                    Ok(None) | Err(_) => break,
                }
                guard += 1;
                prop_assert!(guard < 10_000);
            }
            if !length_touched && cut.is_none() {
                prop_assert_eq!(frames.len(), 3);
                let last = frames.last().unwrap();
                prop_assert!(
                    matches!(last, Frame::Command(c) if c.sequence_number() == 0x7FFF_FFF0),
                    "the probe after isolable frames: {:?}", last
                );
            }
        }
    }
}
