//! Where a message goes ([`Destination`]) and what it carries ([`Body`]), in terms
//! of its channel. Today the only channel is SMS: a phone number, and the fields of
//! the brand's `submit_sm` (or of a message a door composed from text). The SMPP
//! fields a carrier is sent are derived from both where the SMS is sent
//! ([`SmsBody::fields`]); the doors, the store, dispatch and the tracker see only a
//! destination and a body. A new channel (e-mail, push) is a new variant of each,
//! a route kind in dispatch and a delivery backend beside `otpgw-carrier`.

use bytes::Bytes;
use otpgw_proto::pdu::{Address, SubmitFields};

/// The channels a message can go by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Sms,
}

impl Channel {
    /// Label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
        }
    }
}

/// Where a message goes. Its `Debug` masks it (a phone number is personal data).
#[derive(Clone, PartialEq, Eq)]
pub enum Destination {
    /// A phone, by SMS: the number as the brand gave it (TON, NPI, digits).
    Phone(Address),
}

impl Default for Destination {
    fn default() -> Self {
        Destination::Phone(Address::default())
    }
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::Phone(a) => write!(f, "Phone({a:?})"),
        }
    }
}

impl Destination {
    /// The channel it is reached by.
    pub fn channel(&self) -> Channel {
        match self {
            Destination::Phone(_) => Channel::Sms,
        }
    }
    /// What routes, per-destination limits, carrier quality and country metrics go
    /// by: a phone number's digits.
    pub fn key(&self) -> &str {
        match self {
            Destination::Phone(a) => &a.addr,
        }
    }
    /// The phone number, for the SMS channel.
    pub fn phone(&self) -> Option<&Address> {
        match self {
            Destination::Phone(a) => Some(a),
        }
    }
}

/// What a message carries, in its channel's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Sms(SmsBody),
}

impl Default for Body {
    fn default() -> Self {
        Body::Sms(SmsBody::default())
    }
}

/// An SMS as the brand gave it: every field of its `submit_sm` but the
/// destination, passed on to the carrier as it is. Its `Debug` hides the text and
/// masks the sender.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SmsBody {
    pub service_type: String,
    pub source: Address,
    pub esm_class: u8,
    pub protocol_id: u8,
    pub priority_flag: u8,
    pub schedule_delivery_time: String,
    pub validity_period: String,
    pub registered_delivery: u8,
    pub data_coding: u8,
    pub short_message: Bytes,
    /// The `message_payload` TLV, when present.
    pub message_payload: Option<Bytes>,
}

impl std::fmt::Debug for SmsBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmsBody")
            .field("source", &self.source)
            .field("esm_class", &self.esm_class)
            .field("registered_delivery", &self.registered_delivery)
            .field("data_coding", &self.data_coding)
            .field("short_message_len", &self.short_message.len())
            .field(
                "payload_len",
                &self.message_payload.as_ref().map(Bytes::len),
            )
            .finish_non_exhaustive()
    }
}

impl SmsBody {
    /// A `submit_sm`'s fields as where the message goes and what it carries.
    pub fn split(f: SubmitFields) -> (Destination, Body) {
        let body = SmsBody {
            service_type: f.service_type,
            source: f.source,
            esm_class: f.esm_class,
            protocol_id: f.protocol_id,
            priority_flag: f.priority_flag,
            schedule_delivery_time: f.schedule_delivery_time,
            validity_period: f.validity_period,
            registered_delivery: f.registered_delivery,
            data_coding: f.data_coding,
            short_message: f.short_message,
            message_payload: f.message_payload,
        };
        (Destination::Phone(f.dest), Body::Sms(body))
    }

    /// The `submit_sm` fields of this SMS to `dest` (where it is sent). They always
    /// ask the carrier for a receipt (registered_delivery bits 0-1 = 1, other bits
    /// as the brand set them): the gateway needs it to know the message arrived, or
    /// it would resend through another carrier when none comes; the brand's own
    /// wish decides only what is forwarded to it (`Message::wants_receipt`).
    pub fn fields(&self, dest: &Address) -> SubmitFields {
        SubmitFields {
            service_type: self.service_type.clone(),
            source: self.source.clone(),
            dest: dest.clone(),
            esm_class: self.esm_class,
            protocol_id: self.protocol_id,
            priority_flag: self.priority_flag,
            schedule_delivery_time: self.schedule_delivery_time.clone(),
            validity_period: self.validity_period.clone(),
            registered_delivery: (self.registered_delivery & !0x03) | 0x01,
            data_coding: self.data_coding,
            short_message: self.short_message.clone(),
            message_payload: self.message_payload.clone(),
        }
    }

    /// The text octets: the payload when present, else the short message.
    pub fn text(&self) -> &[u8] {
        self.message_payload
            .as_deref()
            .unwrap_or(&self.short_message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_split_and_come_back() {
        let f = SubmitFields {
            service_type: "OTP".into(),
            source: Address {
                ton: 5,
                npi: 0,
                addr: "Bank".into(),
            },
            dest: Address {
                ton: 1,
                npi: 1,
                addr: "447400900123".into(),
            },
            registered_delivery: 1,
            data_coding: 8,
            short_message: Bytes::from_static(b"\x00h\x00i"),
            validity_period: "000000000500000R".into(),
            ..Default::default()
        };
        let (to, body) = SmsBody::split(f.clone());
        assert_eq!(to.key(), "447400900123");
        assert_eq!(to.channel(), Channel::Sms);
        let Body::Sms(b) = body;
        assert_eq!(b.fields(to.phone().unwrap()), f);
        assert_eq!(b.text(), b"\x00h\x00i");
        assert!(!format!("{to:?}{b:?}").contains("447400900123"), "masked");
    }

    /// Whatever the brand asked for, the carrier is asked for a receipt: an SMS
    /// submitted with registered_delivery 0 was sent again through the next
    /// carrier when no receipt came, and ended `unknown`.
    #[test]
    fn the_carrier_is_always_asked_for_a_receipt() {
        for (brand, carrier) in [
            (0u8, 1u8),
            (1, 1),
            (2, 1),
            (3, 1),
            (0x10, 0x11),
            (0x12, 0x11),
        ] {
            let f = SubmitFields {
                registered_delivery: brand,
                ..Default::default()
            };
            let (to, Body::Sms(b)) = SmsBody::split(f);
            assert_eq!(
                b.fields(to.phone().unwrap()).registered_delivery,
                carrier,
                "brand asked {brand:#x}"
            );
            assert_eq!(b.registered_delivery, brand, "the brand's wish is kept");
        }
    }
}
