//! Sample records for the store's tests and benchmarks (unit tests, the Redis
//! integration tests, the criterion bench): one accepted OTP and one owed receipt.

use bytes::Bytes;
use otpgw_core::outbox::ReceiptJob;
use otpgw_core::{Class, DeliveryState, Message, MsgId};
use otpgw_proto::pdu::{Address, SubmitFields};

/// An OTP of brand "bank" to 4477<id>, text "code <id>", receipt wanted.
pub fn message(id: u64) -> Message {
    Message {
        id: MsgId(id),
        brand: "bank".into(),
        fields: SubmitFields {
            source: Address {
                ton: 5,
                npi: 0,
                addr: "BANK".into(),
            },
            dest: Address {
                ton: 1,
                npi: 1,
                addr: format!("4477{:08}", id % 100_000_000),
            },
            registered_delivery: 1,
            short_message: Bytes::from(format!("code {id:06}")),
            ..Default::default()
        },
        class: Class::Otp,
        accepted_ms: 1,
        deadline_ms: u64::MAX / 2,
        attempts: Default::default(),
    }
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
    }
}
