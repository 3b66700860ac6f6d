//! `query_sm` and `cancel_sm`: what the gateway knows of a message it accepted, and
//! taking back one still queued (the gateway answers from its own records; carriers
//! rarely honour either).

use rusmpp::pdus::{CancelSm, QuerySm, QuerySmResp};
use rusmpp::types::{COctetString, EmptyOrFullCOctetString};
use rusmpp::values::MessageState;
use rusmpp::{Command, CommandStatus};

use crate::pdu::{FromStrChecked, copy_str};

/// The message id a `query_sm` asks about.
pub fn query_sm_id(q: &QuerySm) -> &str {
    q.message_id.as_str()
}

/// A `query_sm` for `message_id` (for clients and tests).
pub fn query_sm(sequence_number: u32, message_id: &str) -> Command {
    let id = COctetString::from_str_checked(message_id).unwrap_or_default();
    Command::new(
        CommandStatus::EsmeRok,
        sequence_number,
        QuerySm::builder().message_id(id).build(),
    )
}

/// What a `cancel_sm` names: one message by id, or (id empty) every message to
/// `dest` (with `source` and `service_type` when not empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CancelWhat {
    pub message_id: String,
    pub service_type: String,
    pub source: String,
    pub dest: String,
}

/// What a `cancel_sm` names.
pub fn cancel_sm_what(c: &CancelSm) -> CancelWhat {
    CancelWhat {
        message_id: c.message_id.as_str().to_string(),
        service_type: copy_str(c.service_type.value().as_ref()),
        source: c.source_addr.as_str().to_string(),
        dest: c.destination_addr.as_str().to_string(),
    }
}

/// A `cancel_sm` for `message_id` (for clients and tests).
pub fn cancel_sm(sequence_number: u32, message_id: &str) -> Command {
    let id = COctetString::from_str_checked(message_id).unwrap_or_default();
    Command::new(
        CommandStatus::EsmeRok,
        sequence_number,
        CancelSm::builder().message_id(id).build(),
    )
}

/// What a `query_sm_resp` tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub message_id: String,
    /// `message_state` (1 ENROUTE ... 9 SKIPPED, as [`crate::receipt::DeliveryState`]).
    pub state: u8,
    /// When it reached its final state (ms since epoch; 0: not yet).
    pub final_ms: u64,
    /// The network error code, where known (0 otherwise).
    pub error_code: u8,
}

/// The `query_sm_resp` (ESME_ROK) carrying `a`.
pub fn query_sm_resp(sequence_number: u32, a: &Answer) -> Command {
    let id = COctetString::from_str_checked(&a.message_id).unwrap_or_default();
    let final_date = if a.final_ms == 0 {
        EmptyOrFullCOctetString::empty()
    } else {
        let mut v = crate::time::absolute_smpp_time(a.final_ms).into_bytes();
        v.push(0);
        EmptyOrFullCOctetString::from_vec(v).unwrap_or_else(|_| EmptyOrFullCOctetString::empty())
    };
    Command::new(
        CommandStatus::EsmeRok,
        sequence_number,
        QuerySmResp::builder()
            .message_id(id)
            .final_date(final_date)
            .message_state(MessageState::from(a.state))
            .error_code(a.error_code)
            .build(),
    )
}

/// The answer a `query_sm_resp` carries, if it is one.
pub fn read_query_sm_resp(c: &Command) -> Option<Answer> {
    match c.pdu() {
        Some(rusmpp::Pdu::QuerySmResp(r)) => Some(Answer {
            message_id: r.message_id.as_str().to_string(),
            state: r.message_state.into(),
            // Only whether it has one (the date is not parsed back).
            final_ms: u64::from(r.final_date.as_ref().len() > 1),
            error_code: r.error_code,
        }),
        _ => None,
    }
}

/// A carrier's error code as the one octet `query_sm_resp` has room for: decimal
/// ("000", "34") or hex ("0x1f"); 255 when larger, 0 when not a number.
pub fn error_octet(err: &str) -> u8 {
    let e = err.trim();
    let n = match e.strip_prefix("0x").or_else(|| e.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => e.parse::<u32>().ok(),
    };
    n.map_or(0, |n| u8::try_from(n).unwrap_or(u8::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_says_state_date_and_error() {
        let a = Answer {
            message_id: "00ab".into(),
            state: 2,
            final_ms: 1_795_692_000_000,
            error_code: 0,
        };
        let c = query_sm_resp(7, &a);
        let back = read_query_sm_resp(&c).unwrap();
        assert_eq!(
            (back.message_id.as_str(), back.state, back.final_ms),
            ("00ab", 2, 1)
        );
        match c.pdu() {
            Some(rusmpp::Pdu::QuerySmResp(r)) => {
                assert_eq!(r.final_date.as_ref(), b"261126112000000+\0")
            }
            _ => panic!("not a query_sm_resp"),
        }
        let open = query_sm_resp(
            8,
            &Answer {
                final_ms: 0,
                state: 1,
                ..a
            },
        );
        assert_eq!(read_query_sm_resp(&open).unwrap().final_ms, 0);
    }

    #[test]
    fn error_codes_fit_one_octet() {
        assert_eq!(error_octet("000"), 0);
        assert_eq!(error_octet("34"), 34);
        assert_eq!(error_octet("0x1f"), 31);
        assert_eq!(error_octet("999"), 255);
        assert_eq!(error_octet("TMO"), 0);
    }
}
