//! `replace_sm` from a brand: a new text (and validity, receipt request) for a
//! message the gateway still holds, read into plain fields. The gateway answers
//! from its own records (docs/smpp-status.md).

use bytes::Bytes;
use rusmpp::pdus::ReplaceSm;
use rusmpp::types::{COctetString, EmptyOrFullCOctetString, OctetString};
use rusmpp::{Command, CommandStatus};

use crate::pdu::{FromStrChecked, copy_str};

/// What a `replace_sm` asks for.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Replacement {
    /// The message to replace, as the brand was given its id.
    pub message_id: String,
    /// Must be the original's source when not empty (the spec's rule).
    pub source: String,
    pub schedule_delivery_time: String,
    pub validity_period: String,
    pub registered_delivery: u8,
    pub short_message: Bytes,
    /// The `message_payload` TLV (SMPP 5.0 allows it here), when present.
    pub message_payload: Option<Bytes>,
}

impl std::fmt::Debug for Replacement {
    /// Hides the text.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replacement")
            .field("message_id", &self.message_id)
            .field("validity_period", &self.validity_period)
            .field("registered_delivery", &self.registered_delivery)
            .field(
                "short_message",
                &format_args!("<{} octets>", self.short_message.len()),
            )
            .finish_non_exhaustive()
    }
}

/// What a decoded `replace_sm` asks for.
pub fn replace_sm_what(r: &ReplaceSm) -> Replacement {
    Replacement {
        message_id: r.message_id.as_str().to_string(),
        source: r.source_addr.as_str().to_string(),
        schedule_delivery_time: copy_str(r.schedule_delivery_time.as_ref()),
        validity_period: copy_str(r.validity_period.as_ref()),
        registered_delivery: r.registered_delivery.into(),
        short_message: Bytes::copy_from_slice(r.short_message().as_ref()),
        message_payload: r
            .message_payload()
            .map(|p| Bytes::copy_from_slice(p.value.as_ref())),
    }
}

/// A `replace_sm` of `message_id` with `text` (for clients and tests).
pub fn replace_sm(sequence_number: u32, message_id: &str, text: &[u8]) -> Command {
    let id = COctetString::from_str_checked(message_id).unwrap_or_default();
    let mut r = ReplaceSm::builder()
        .message_id(id)
        .schedule_delivery_time(EmptyOrFullCOctetString::empty())
        .validity_period(EmptyOrFullCOctetString::empty())
        .build();
    r.set_short_message(OctetString::from_vec(text.to_vec()).unwrap_or_default());
    Command::new(CommandStatus::EsmeRok, sequence_number, r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusmpp::Pdu;

    #[test]
    fn a_replace_sm_reads_back() {
        let c = replace_sm(5, "00000000000000ab", b"Your code is 999999");
        let Some(Pdu::ReplaceSm(r)) = c.pdu() else {
            panic!("not a replace_sm")
        };
        let w = replace_sm_what(r);
        assert_eq!(w.message_id, "00000000000000ab");
        assert_eq!(&w.short_message[..], b"Your code is 999999");
        assert!(w.validity_period.is_empty() && w.message_payload.is_none());
        assert!(!format!("{w:?}").contains("999999"), "Debug hides the text");
    }
}
