//! Compact binary records for the durable stores: a message, a receipt job, a
//! message's carrier state, a message's status. Version byte first; reading checks
//! every length and returns `None` on anything short or unknown, never panics.
//!
//! Version 2 of messages and receipt jobs adds what messages from the HTTP door
//! carry (receipt URL, verification id); version 3 of receipt jobs adds the
//! message's deadline (fallback events); version 3 of messages and 4 of receipt
//! jobs add the `submit_multi` id a destination belongs to; earlier versions still
//! read.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use otpgw_core::attempts::{Attempt, Outcome};
use otpgw_core::message::Extra;
use otpgw_core::outbox::ReceiptJob;
use otpgw_core::status::{MessageStatus, Stage};
use otpgw_core::wire::{Reader as Rd, put_bytes, put_opt, put_str};
use otpgw_core::{Body, Class, DeliveryState, Destination, Message, MsgId, SmsBody};
use otpgw_proto::pdu::{Address, SubmitFields};

const V1: u8 = 1;
const V2: u8 = 2;
const V3: u8 = 3;
const V4: u8 = 4;
/// In a receipt job's attempts octet: it was written to a brand session.
const SENT_FLAG: u8 = 0x80;

fn put_addr(b: &mut BytesMut, a: &Address) {
    b.put_u8(a.ton);
    b.put_u8(a.npi);
    put_str(b, &a.addr);
}

fn addr(r: &mut Rd<'_>) -> Option<Address> {
    Some(Address {
        ton: r.u8()?,
        npi: r.u8()?,
        addr: r.string()?,
    })
}

/// Encode a message (its id is the table key, but is kept inside too). An SMS to a
/// phone is laid out as its `submit_sm` fields were (versions 1 and 2).
pub fn encode_message(m: &Message) -> Vec<u8> {
    let (Destination::Phone(dest), Body::Sms(f)) = (&m.to, &m.body);
    let mut b = BytesMut::with_capacity(96 + f.short_message.len());
    b.put_u8(match (&m.extra, m.group) {
        (None, None) => V1,
        (Some(_), None) => V2,
        (_, Some(_)) => V3,
    });
    b.put_u64(m.id.0);
    put_str(&mut b, &m.brand);
    b.put_u8(m.class as u8);
    b.put_u64(m.accepted_ms);
    b.put_u64(m.deadline_ms);
    put_str(&mut b, &f.service_type);
    put_addr(&mut b, &f.source);
    put_addr(&mut b, dest);
    b.put_u8(f.esm_class);
    b.put_u8(f.protocol_id);
    b.put_u8(f.priority_flag);
    put_str(&mut b, &f.schedule_delivery_time);
    put_str(&mut b, &f.validity_period);
    b.put_u8(f.registered_delivery);
    b.put_u8(f.data_coding);
    put_bytes(&mut b, &f.short_message);
    match &f.message_payload {
        Some(p) => {
            b.put_u8(1);
            put_bytes(&mut b, p);
        }
        None => b.put_u8(0),
    }
    if m.group.is_some() {
        b.put_u8(u8::from(m.extra.is_some()));
    }
    if let Some(e) = &m.extra {
        put_opt(&mut b, e.receipt_url.as_deref());
        put_opt(&mut b, e.verification.as_deref());
    }
    if let Some(g) = m.group {
        b.put_u64(g.0);
    }
    b.to_vec()
}

/// Decode a message.
pub fn decode_message(buf: &[u8]) -> Option<Message> {
    let mut r = Rd(buf);
    let version = r.u8()?;
    if !(V1..=V3).contains(&version) {
        return None;
    }
    let id = MsgId(r.u64()?);
    let brand: Arc<str> = r.string()?.into();
    let class = match r.u8()? {
        0 => Class::Otp,
        _ => Class::Bulk,
    };
    let accepted_ms = r.u64()?;
    let deadline_ms = r.u64()?;
    let (to, body) = SmsBody::split(SubmitFields {
        service_type: r.string()?,
        source: addr(&mut r)?,
        dest: addr(&mut r)?,
        esm_class: r.u8()?,
        protocol_id: r.u8()?,
        priority_flag: r.u8()?,
        schedule_delivery_time: r.string()?,
        validity_period: r.string()?,
        registered_delivery: r.u8()?,
        data_coding: r.u8()?,
        short_message: Bytes::copy_from_slice(r.bytes()?),
        message_payload: match r.u8()? {
            1 => Some(Bytes::copy_from_slice(r.bytes()?)),
            _ => None,
        },
    });
    let has_extra = match version {
        V1 => false,
        V2 => true,
        _ => r.u8()? != 0,
    };
    let extra = if has_extra {
        Some(Arc::new(Extra {
            receipt_url: r.opt_string()?.map(Arc::from),
            verification: r.opt_string()?,
        }))
    } else {
        None
    };
    let group = if version == V3 {
        Some(MsgId(r.u64()?))
    } else {
        None
    };
    Some(Message {
        id,
        brand,
        to,
        body,
        class,
        accepted_ms,
        deadline_ms,
        attempts: Default::default(),
        extra,
        // The session that submitted it is gone after a restart.
        origin: 0,
        progress: Default::default(),
        group,
    })
}

/// Encode a receipt job.
pub fn encode_receipt(j: &ReceiptJob) -> Vec<u8> {
    let mut b = BytesMut::with_capacity(96);
    b.put_u8(match (&j.url, j.deadline_ms, j.group) {
        (_, _, Some(_)) => V4,
        (None, 0, None) => V1,
        (_, 0, None) => V2,
        _ => V3,
    });
    b.put_u64(j.id.0);
    put_str(&mut b, &j.brand);
    put_addr(&mut b, &j.source);
    put_addr(&mut b, &j.dest);
    b.put_u8(j.state.tlv());
    put_str(&mut b, &j.err);
    b.put_u64(j.submit_ms);
    b.put_u64(j.done_ms);
    // Attempts never reach 128: the top bit says it was written to a brand.
    b.put_u8(j.attempts.min(SENT_FLAG - 1) | if j.sent { SENT_FLAG } else { 0 });
    if j.url.is_some() || j.deadline_ms != 0 || j.group.is_some() {
        put_str(&mut b, j.url.as_deref().unwrap_or(""));
    }
    if j.deadline_ms != 0 || j.group.is_some() {
        b.put_u64(j.deadline_ms);
    }
    if let Some(g) = j.group {
        b.put_u64(g.0);
    }
    b.to_vec()
}

/// Decode a receipt job.
pub fn decode_receipt(buf: &[u8]) -> Option<ReceiptJob> {
    let mut r = Rd(buf);
    let version = r.u8()?;
    if !(V1..=V4).contains(&version) {
        return None;
    }
    let sent;
    Some(ReceiptJob {
        id: MsgId(r.u64()?),
        brand: r.string()?.into(),
        source: addr(&mut r)?,
        dest: addr(&mut r)?,
        state: DeliveryState::from_tlv(r.u8()?)?,
        err: r.string()?,
        submit_ms: r.u64()?,
        done_ms: r.u64()?,
        attempts: {
            let a = r.u8()?;
            sent = a & SENT_FLAG != 0;
            a & !SENT_FLAG
        },
        url: match version {
            V1 => None,
            _ => Some(r.string()?).filter(|u| !u.is_empty()).map(Into::into),
        },
        deadline_ms: match version {
            V3 | V4 => r.u64()?,
            _ => 0,
        },
        // The session that submitted it is gone after a restart.
        origin: 0,
        sent,
        group: match version {
            V4 => Some(MsgId(r.u64()?)),
            _ => None,
        },
    })
}

/// Encode a message status.
pub fn encode_status(s: &MessageStatus) -> Vec<u8> {
    let mut b = BytesMut::with_capacity(64);
    b.put_u8(V1);
    b.put_u64(s.id.0);
    put_str(&mut b, &s.brand);
    b.put_u8(match s.stage {
        Stage::Queued => 0,
        Stage::Sent => 1,
        Stage::Done(st) => 0x10 | st.tlv(),
    });
    put_opt(&mut b, s.carrier.as_deref());
    b.put_u64(s.accepted_ms);
    b.put_u64(s.sent_ms);
    b.put_u64(s.done_ms);
    b.put_u64(s.deadline_ms);
    put_str(&mut b, &s.err);
    b.to_vec()
}

/// Decode a message status.
pub fn decode_status(buf: &[u8]) -> Option<MessageStatus> {
    let mut r = Rd(buf);
    if r.u8()? != V1 {
        return None;
    }
    Some(MessageStatus {
        id: MsgId(r.u64()?),
        brand: r.string()?.into(),
        stage: match r.u8()? {
            0 => Stage::Queued,
            1 => Stage::Sent,
            x if x & 0x10 != 0 => Stage::Done(DeliveryState::from_tlv(x & 0x0F)?),
            _ => return None,
        },
        carrier: r.opt_string()?,
        accepted_ms: r.u64()?,
        sent_ms: r.u64()?,
        done_ms: r.u64()?,
        deadline_ms: r.u64()?,
        err: r.string()?,
    })
}

/// A message's carrier state: sent (maybe), or confirmed with the carrier's id, or
/// (an OTP under a receipt deadline) its attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendState {
    Sent,
    Confirmed { carrier: String, carrier_id: String },
    Attempts(Vec<Attempt>),
}

/// Put a recovered message where its carrier state says it belongs in `out`: sent
/// and confirmed (awaits its receipt), under a receipt deadline (its attempts), or
/// unconfirmed (with whether it may have been sent).
pub(crate) fn sort_recovered(
    out: &mut otpgw_core::store::Recovered,
    m: Message,
    state: Option<SendState>,
) {
    match state {
        Some(SendState::Confirmed {
            carrier,
            carrier_id,
        }) => out.confirmed.push((m, carrier, carrier_id)),
        Some(SendState::Attempts(list)) => out.attempts.push((m, list)),
        Some(SendState::Sent) => out.unconfirmed.push((m, true)),
        None => out.unconfirmed.push((m, false)),
    }
}

fn outcome_code(o: Outcome) -> u8 {
    match o {
        Outcome::Pending => 0,
        Outcome::Delivered => 1,
        Outcome::TimedOut => 2,
        Outcome::Failed(s) => 0x10 | s.tlv(),
    }
}

fn outcome_of(c: u8) -> Option<Outcome> {
    Some(match c {
        0 => Outcome::Pending,
        1 => Outcome::Delivered,
        2 => Outcome::TimedOut,
        x if x & 0x10 != 0 => Outcome::Failed(DeliveryState::from_tlv(x & 0x0F)?),
        _ => return None,
    })
}

/// Encode an OTP's attempts (a carrier state).
pub fn encode_attempts(list: &[Attempt]) -> Vec<u8> {
    let mut b = BytesMut::with_capacity(8 + 40 * list.len());
    b.put_u8(3);
    b.put_u8(list.len().min(255) as u8);
    for a in list.iter().take(255) {
        put_str(&mut b, &a.carrier);
        put_str(&mut b, &a.carrier_id);
        b.put_u64(a.sent_ms);
        b.put_u64(a.due_ms);
        b.put_u8(outcome_code(a.outcome));
    }
    b.to_vec()
}

/// Encode a carrier state.
pub fn encode_state(s: &SendState) -> Vec<u8> {
    let mut b = BytesMut::with_capacity(32);
    match s {
        SendState::Sent => b.put_u8(1),
        SendState::Confirmed {
            carrier,
            carrier_id,
        } => {
            b.put_u8(2);
            put_str(&mut b, carrier);
            put_str(&mut b, carrier_id);
        }
        SendState::Attempts(list) => return encode_attempts(list),
    }
    b.to_vec()
}

/// Decode a carrier state.
pub fn decode_state(buf: &[u8]) -> Option<SendState> {
    let mut r = Rd(buf);
    match r.u8()? {
        1 => Some(SendState::Sent),
        2 => Some(SendState::Confirmed {
            carrier: r.string()?,
            carrier_id: r.string()?,
        }),
        3 => {
            let n = r.u8()?;
            let mut list = Vec::with_capacity(usize::from(n));
            for _ in 0..n {
                list.push(Attempt {
                    carrier: r.string()?.into(),
                    carrier_id: r.string()?,
                    sent_ms: r.u64()?,
                    due_ms: r.u64()?,
                    outcome: outcome_of(r.u8()?)?,
                });
            }
            Some(SendState::Attempts(list))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::{decode_kv, encode_kv};
    use proptest::prelude::*;

    fn msg() -> Message {
        Message::sms(
            MsgId(0x19a_0000_1234),
            "bank".into(),
            SubmitFields {
                service_type: "OTP".into(),
                source: Address {
                    ton: 5,
                    npi: 0,
                    addr: "MyBank".into(),
                },
                dest: Address {
                    ton: 1,
                    npi: 1,
                    addr: "447400900123".into(),
                },
                esm_class: 0x40,
                protocol_id: 0,
                priority_flag: 1,
                schedule_delivery_time: String::new(),
                validity_period: "000000000500000R".into(),
                registered_delivery: 1,
                data_coding: 8,
                short_message: Bytes::from_static(&[0, 0x41]),
                message_payload: Some(Bytes::from_static(b"payload")),
            },
            Class::Otp,
            1,
            2,
        )
    }

    #[test]
    fn round_trips() {
        let m = msg();
        let back = decode_message(&encode_message(&m)).unwrap();
        assert_eq!(back.id, m.id);
        assert_eq!(back.to, m.to);
        assert_eq!(back.body, m.body);
        assert_eq!(
            (back.class, back.accepted_ms, back.deadline_ms, &*back.brand),
            (Class::Otp, 1, 2, "bank")
        );
        let j = ReceiptJob {
            id: MsgId(7),
            brand: "bank".into(),
            source: m.to.phone().cloned().unwrap_or_default(),
            dest: m.sender(),
            state: DeliveryState::Undeliverable,
            err: "0x1".into(),
            submit_ms: 3,
            done_ms: 4,
            attempts: 2,
            url: None,
            deadline_ms: 0,
            origin: 0,
            sent: false,
            group: None,
        };
        let b = decode_receipt(&encode_receipt(&j)).unwrap();
        assert_eq!(
            (b.id, &*b.brand, b.state, b.err.as_str(), b.attempts),
            (j.id, "bank", j.state, "0x1", 2)
        );
        assert_eq!(b.url, None);
        let hooked = ReceiptJob {
            url: Some("https://bank.example/hook?t=1".into()),
            ..j.clone()
        };
        let b = decode_receipt(&encode_receipt(&hooked)).unwrap();
        assert_eq!(b.url.as_deref(), Some("https://bank.example/hook?t=1"));
        assert_eq!(b.deadline_ms, 0);
        let fallback = ReceiptJob {
            deadline_ms: 99,
            ..hooked
        };
        let b = decode_receipt(&encode_receipt(&fallback)).unwrap();
        assert_eq!(
            (b.url.as_deref(), b.deadline_ms),
            (Some("https://bank.example/hook?t=1"), 99)
        );
        assert!(!b.sent);
        assert_eq!(b.group, None);
        // Written to a brand once: kept with its attempts.
        let sent = ReceiptJob {
            sent: true,
            group: None,
            ..fallback
        };
        let b = decode_receipt(&encode_receipt(&sent)).unwrap();
        assert_eq!((b.sent, b.attempts), (true, 2));
        // A message from the HTTP door keeps its extras; one from SMPP writes v1.
        assert_eq!(encode_message(&m)[0], V1);
        let mut h = msg();
        h.extra = Some(Arc::new(Extra {
            receipt_url: Some("http://127.0.0.1/r".into()),
            verification: Some("ab".repeat(16)),
        }));
        let back = decode_message(&encode_message(&h)).unwrap();
        let e = back.extra.unwrap();
        assert_eq!(e.receipt_url.as_deref(), Some("http://127.0.0.1/r"));
        assert_eq!(e.verification.as_deref(), Some("ab".repeat(16).as_str()));
        for stage in [
            Stage::Queued,
            Stage::Sent,
            Stage::Done(DeliveryState::Undeliverable),
        ] {
            let st = MessageStatus {
                id: MsgId(9),
                brand: "bank".into(),
                stage,
                carrier: Some("a".into()),
                accepted_ms: 1,
                sent_ms: 2,
                done_ms: 3,
                deadline_ms: 4,
                err: "0x1".into(),
            };
            assert_eq!(decode_status(&encode_status(&st)), Some(st));
        }
        let kv = encode_kv(3, 99, b"xyz");
        assert_eq!(decode_kv(&kv), Some((3, 99, &b"xyz"[..])));
        let att = |o| Attempt {
            carrier: "a".into(),
            carrier_id: "1A".into(),
            sent_ms: 5,
            due_ms: 15,
            outcome: o,
        };
        for s in [
            SendState::Sent,
            SendState::Confirmed {
                carrier: "c".into(),
                carrier_id: "1A".into(),
            },
            SendState::Attempts(vec![
                att(Outcome::Failed(DeliveryState::Undeliverable)),
                att(Outcome::TimedOut),
                att(Outcome::Pending),
                att(Outcome::Delivered),
            ]),
        ] {
            assert_eq!(decode_state(&encode_state(&s)), Some(s));
        }
    }

    #[test]
    fn submit_multi_ids_round_trip() {
        let m = msg();
        let j = ReceiptJob {
            id: MsgId(7),
            brand: "bank".into(),
            source: m.to.phone().cloned().unwrap_or_default(),
            dest: m.sender(),
            state: DeliveryState::Delivered,
            err: "000".into(),
            submit_ms: 3,
            done_ms: 4,
            attempts: 0,
            url: None,
            deadline_ms: 0,
            origin: 0,
            sent: false,
            group: None,
        };
        // A submit_multi destination's receipt keeps the submission's id.
        let grouped = ReceiptJob {
            group: Some(MsgId(5)),
            ..j
        };
        let b = decode_receipt(&encode_receipt(&grouped)).unwrap();
        assert_eq!((b.group, b.url, b.deadline_ms), (Some(MsgId(5)), None, 0));
        // A submit_multi destination keeps its submission's id, with or without extras.
        let mut g = msg();
        g.group = Some(MsgId(77));
        let back = decode_message(&encode_message(&g)).unwrap();
        assert_eq!(
            (back.group, back.extra.is_none(), back.body),
            (Some(MsgId(77)), true, g.body.clone())
        );
        g.extra = Some(Arc::new(Extra {
            receipt_url: Some("http://127.0.0.1/r".into()),
            verification: None,
        }));
        let back = decode_message(&encode_message(&g)).unwrap();
        assert_eq!(back.group, Some(MsgId(77)));
        assert_eq!(
            back.extra.unwrap().receipt_url.as_deref(),
            Some("http://127.0.0.1/r")
        );
    }

    proptest! {
        #[test]
        fn truncated_or_garbage_never_panics(cut in 0usize..200, junk in proptest::collection::vec(any::<u8>(), 0..200)) {
            let e = encode_message(&msg());
            let _ = decode_message(&e[..cut.min(e.len())]);
            let _ = decode_message(&junk);
            let _ = decode_receipt(&junk);
            let _ = decode_state(&junk);
            let _ = decode_status(&junk);
            let _ = decode_kv(&junk);
        }
    }
}
