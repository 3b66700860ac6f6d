//! The sample message every test builds on: its SMS fields, the accepted OTP, and
//! the receipt owed for it.

use bytes::Bytes;
use otpgw_core::outbox::ReceiptJob;
use otpgw_core::{Class, DeliveryState, Message, MsgId};
use otpgw_proto::pdu::{Address, SubmitFields};

/// The SMS fields of a message from `source` (alphanumeric) to `dest` (an
/// international number), nothing else set.
pub fn fields(source: &str, dest: &str) -> SubmitFields {
    SubmitFields {
        source: Address {
            ton: 5,
            npi: 0,
            addr: source.into(),
        },
        dest: Address {
            ton: 1,
            npi: 1,
            addr: dest.into(),
        },
        ..Default::default()
    }
}

/// An OTP of brand "bank" to 44740<id>, text "code <id>", receipt wanted.
pub fn message(id: u64) -> Message {
    Message::sms(
        MsgId(id),
        "bank".into(),
        SubmitFields {
            registered_delivery: 1,
            short_message: Bytes::from(format!("code {id:06}")),
            ..fields("BANK", &format!("44740{:07}", id % 10_000_000))
        },
        Class::Otp,
        1,
        u64::MAX / 2,
    )
}

/// A DELIVERED receipt owed to "bank" for message `id`, finished at `done_ms`.
pub fn receipt_job(id: u64, done_ms: u64) -> ReceiptJob {
    ReceiptJob {
        id: MsgId(id),
        brand: "bank".into(),
        source: Address::default(),
        dest: Address::default(),
        state: DeliveryState::Delivered,
        err: "000".into(),
        submit_ms: 0,
        done_ms,
        attempts: 0,
        url: None,
        deadline_ms: 0,
        origin: 0,
        sent: false,
        group: None,
    }
}
