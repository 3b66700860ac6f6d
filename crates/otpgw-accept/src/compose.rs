//! A message composed from text, once for every door that takes text (the HTTP
//! messages API, verification codes), for the channel it goes by (SMS today): the
//! destination and sender addresses, the
//! text encoded in the GSM 7-bit alphabet when it fits, else UCS-2, carried in
//! `short_message` or, past 254 octets, in `message_payload` (split into parts
//! where it is sent), a receipt always asked of the carrier, and the validity.

use otpgw_core::{Body, Class, Destination, SmsBody};
use otpgw_proto::pdu::{Address, SubmitFields};

/// What a door says of a message it composes from text.
#[derive(Debug, Clone, Copy)]
pub struct Text<'a> {
    /// The destination as E.164 digits (without `+`; see [`crate::validate::e164`]).
    pub to: &'a str,
    /// The sender: a number (`+` and up to 15 digits) or an alphanumeric id.
    pub from: &'a str,
    pub text: &'a str,
    /// How long it may wait before it is sent (`None`: the brand's default).
    pub validity_ms: Option<u64>,
    /// The class asked for explicitly (`Some(Otp)` sets `priority_flag`).
    pub class: Option<Class>,
}

/// A message composed from text, to go by SMS: where it goes and what it carries.
pub fn sms(t: Text<'_>) -> (Destination, Body) {
    SmsBody::split(sms_fields(t))
}

/// The `submit_sm` fields of a message composed from text.
pub fn sms_fields(t: Text<'_>) -> SubmitFields {
    let (data_coding, body) = otpgw_proto::gsm::encode(t.text);
    let mut fields = SubmitFields {
        source: sender(t.from),
        dest: Address {
            ton: 1,
            npi: 1,
            addr: t.to.trim_start_matches('+').to_string(),
        },
        priority_flag: u8::from(t.class == Some(Class::Otp)),
        // Always asked of the carrier: for the message's status and the carrier's
        // figures; what the brand gets is the door's to decide.
        registered_delivery: 1,
        data_coding,
        validity_period: t
            .validity_ms
            .map(otpgw_proto::time::relative_smpp_time)
            .unwrap_or_default(),
        ..Default::default()
    };
    if body.len() > 254 {
        fields.message_payload = Some(body.into());
    } else {
        fields.short_message = body.into();
    }
    fields
}

/// The source address of a sender: a number (an optional `+` and 1 to 15 digits)
/// as international (TON 1, NPI 1, without the `+`), anything else as alphanumeric
/// (TON 5, NPI 0).
pub fn sender(from: &str) -> Address {
    let d = from.strip_prefix('+').unwrap_or(from);
    if !d.is_empty() && d.len() <= 15 && d.bytes().all(|b| b.is_ascii_digit()) {
        Address {
            ton: 1,
            npi: 1,
            addr: d.to_string(),
        }
    } else {
        Address {
            ton: 5,
            npi: 0,
            addr: from.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_names_as_senders() {
        assert_eq!(sender("+447400900123").ton, 1);
        assert_eq!(sender("+447400900123").addr, "447400900123");
        assert_eq!(sender("MyBank").ton, 5);
        assert_eq!(sender("MyBank").addr, "MyBank");
        // A number too long for E.164 is sent as written, alphanumeric.
        assert_eq!(sender("1234567890123456").ton, 5);
    }

    #[test]
    fn long_texts_go_in_the_payload() {
        let t = Text {
            to: "+447400900123",
            from: "Bank",
            text: "x",
            validity_ms: Some(60_000),
            class: Some(Class::Otp),
        };
        let f = sms_fields(t);
        assert_eq!(f.dest.addr, "447400900123");
        assert_eq!(f.priority_flag, 1);
        assert_eq!(f.registered_delivery, 1);
        assert!(!f.validity_period.is_empty());
        assert_eq!(&f.short_message[..], b"x");
        let long = "y".repeat(300);
        let f = sms_fields(Text {
            text: &long,
            class: None,
            validity_ms: None,
            ..t
        });
        assert!(f.short_message.is_empty());
        assert_eq!(f.message_payload.as_ref().map(|p| p.len()), Some(300));
        assert_eq!(f.priority_flag, 0);
        assert!(f.validity_period.is_empty());
    }
}
