//! Checks on a brand's message, per channel, free of IO and clock (`now` is passed
//! in). Returns the message's deadline when everything is acceptable.

use otpgw_core::{Body, Destination, SmsBody};
use otpgw_proto::pdu::{Address, UDHI};
use otpgw_proto::split::{UdhError, check_udh};
use otpgw_proto::time::parse_smpp_time;

use crate::errors::AcceptError;

/// Largest `message_payload` accepted (octets).
pub const MAX_PAYLOAD: usize = 2000;

/// data_coding values otpgw passes on: SMSC default (GSM 7-bit), IA5/ASCII, 8-bit
/// binary (2 and 4), Latin-1, UCS-2.
pub fn data_coding_supported(dc: u8) -> bool {
    matches!(dc, 0x00 | 0x01 | 0x02 | 0x03 | 0x04 | 0x08)
}

/// A plausible international number: optional `+`, then 7 to 15 digits.
pub fn plausible_number(s: &str) -> bool {
    let d = s.strip_prefix('+').unwrap_or(s);
    (7..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit())
}

/// An international number (TON 1, or a leading `+`) must be valid in its
/// country's numbering plan; other numbers (national, short codes) pass as they
/// are, for the carrier to judge.
pub fn valid_for_its_country(dest: &Address) -> bool {
    let digits = dest.addr.strip_prefix('+');
    match digits {
        Some(d) => crate::number::is_valid(d),
        None if dest.ton == 1 => crate::number::is_valid(&dest.addr),
        None => true,
    }
}

/// An E.164 number as the HTTP door takes it: `+`, then 7 to 15 digits, the first
/// not zero. Returns the digits (as SMPP carries them, with TON 1 / NPI 1).
pub fn e164(s: &str) -> Option<&str> {
    let d = s.strip_prefix('+')?;
    ((7..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0'))
        .then_some(d)
}

/// A source: a number (up to 15 digits) or an alphanumeric sender id (up to 11
/// printable ASCII characters).
pub fn plausible_source(s: &str) -> bool {
    let d = s.strip_prefix('+').unwrap_or(s);
    if !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()) {
        return d.len() <= 15;
    }
    (1..=11).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
}

/// Validate a message and compute its deadline (ms since epoch).
/// `default_lifetime_ms` applies when the brand gave none.
pub fn validate(
    to: &Destination,
    body: &Body,
    now_ms: u64,
    default_lifetime_ms: u64,
) -> Result<u64, AcceptError> {
    match (to, body) {
        (Destination::Phone(dest), Body::Sms(b)) => sms(dest, b, now_ms, default_lifetime_ms),
    }
}

/// An SMS: a plausible number and sender, a text that fits, a coding passed on, no
/// scheduled delivery, and a validity period (absolute or relative) not yet past.
fn sms(
    dest: &Address,
    f: &SmsBody,
    now_ms: u64,
    default_lifetime_ms: u64,
) -> Result<u64, AcceptError> {
    if !plausible_number(&dest.addr) || !valid_for_its_country(dest) {
        return Err(AcceptError::BadDestination);
    }
    if !plausible_source(&f.source.addr) {
        return Err(AcceptError::BadSource);
    }
    if let Some(p) = &f.message_payload {
        if !f.short_message.is_empty() {
            return Err(AcceptError::BothTextFields);
        }
        if p.len() > MAX_PAYLOAD {
            return Err(AcceptError::TooLong(p.len()));
        }
    } else if f.short_message.len() > 254 {
        return Err(AcceptError::TooLong(f.short_message.len()));
    }
    if !data_coding_supported(f.data_coding) {
        return Err(AcceptError::BadDataCoding(f.data_coding));
    }
    if f.esm_class & UDHI != 0 {
        check_udh(f.data_coding, f.text()).map_err(|e| match e {
            UdhError::TooLong(n) => AcceptError::TooLong(n),
            UdhError::Malformed | UdhError::BadConcatenation => AcceptError::BadConcatenation,
        })?;
    }
    if !f.schedule_delivery_time.is_empty() {
        return Err(AcceptError::Scheduled);
    }
    match parse_smpp_time(&f.validity_period, now_ms) {
        Ok(Some(t)) if t > now_ms => Ok(t),
        Ok(Some(_)) | Err(_) => Err(AcceptError::BadValidity),
        Ok(None) => Ok(now_ms + default_lifetime_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use otpgw_proto::pdu::SubmitFields;

    /// [`validate`] of a `submit_sm`'s fields.
    fn check(f: &SubmitFields, now: u64, lifetime: u64) -> Result<u64, AcceptError> {
        let (to, body) = SmsBody::split(f.clone());
        validate(&to, &body, now, lifetime)
    }

    fn ok() -> SubmitFields {
        SubmitFields {
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
            short_message: Bytes::from_static(b"123456"),
            ..Default::default()
        }
    }

    #[test]
    fn accepts_a_normal_otp_with_default_lifetime() {
        assert_eq!(check(&ok(), 1000, 600_000), Ok(601_000));
    }

    #[test]
    fn each_refusal_has_its_reason() {
        let now = 1_795_692_000_000;
        let mut f = ok();
        f.dest.addr = "12ab".into();
        assert_eq!(check(&f, now, 1), Err(AcceptError::BadDestination));
        // International numbers must be valid in their country's plan (a UK
        // number two digits short, the drama range); national ones pass.
        for bad in ["4420712345", "447700900123", "+4420712345"] {
            let mut f = ok();
            f.dest.addr = bad.into();
            f.dest.ton = u8::from(!bad.starts_with('+'));
            assert_eq!(check(&f, now, 1), Err(AcceptError::BadDestination), "{bad}");
        }
        let mut f = ok();
        f.dest = Address {
            ton: 2,
            npi: 1,
            addr: "07700900123".into(),
        };
        assert!(
            check(&f, now, 600_000).is_ok(),
            "national: the carrier judges"
        );
        let mut f = ok();
        f.source.addr = String::new();
        assert_eq!(check(&f, now, 1), Err(AcceptError::BadSource));
        let mut f = ok();
        f.message_payload = Some(Bytes::from_static(b"x"));
        assert_eq!(check(&f, now, 1), Err(AcceptError::BothTextFields));
        let mut f = ok();
        f.data_coding = 0xF5;
        assert_eq!(check(&f, now, 1), Err(AcceptError::BadDataCoding(0xF5)));
        let mut f = ok();
        f.validity_period = "garbage".into();
        assert_eq!(check(&f, now, 1), Err(AcceptError::BadValidity));
        let mut f = ok();
        f.validity_period = "000000000500000R".into();
        assert_eq!(check(&f, now, 1), Ok(now + 300_000));
        let mut f = ok();
        f.validity_period = "200101000000000+".into();
        assert_eq!(check(&f, now, 1), Err(AcceptError::BadValidity));
        let mut f = ok();
        f.schedule_delivery_time = "000000000500000R".into();
        assert_eq!(check(&f, now, 1), Err(AcceptError::Scheduled));
        let mut f = ok();
        f.apply_sar(otpgw_proto::pdu::Sar {
            reference: Some(9),
            total: Some(2),
            seq: Some(3),
        });
        assert_eq!(check(&f, now, 1), Err(AcceptError::BadConcatenation));
        let mut f = ok();
        f.apply_sar(otpgw_proto::pdu::Sar {
            reference: Some(9),
            total: Some(2),
            seq: None,
        });
        assert_eq!(check(&f, now, 1), Err(AcceptError::BadConcatenation));
        let mut f = ok();
        f.short_message = Bytes::from(vec![b'a'; 153]);
        f.apply_sar(otpgw_proto::pdu::Sar {
            reference: Some(9),
            total: Some(2),
            seq: Some(2),
        });
        assert_eq!(check(&f, now, 1), Err(AcceptError::TooLong(160)));
    }

    #[test]
    fn e164_numbers() {
        assert_eq!(e164("+447400900123"), Some("447400900123"));
        assert_eq!(e164("447400900123"), None, "the + is required");
        assert_eq!(e164("+0447400900123"), None);
        assert_eq!(e164("+44 7400 900123"), None);
        assert_eq!(e164("+1234567890123456"), None, "16 digits");
        assert_eq!(e164("+123456"), None, "6 digits");
    }

    #[test]
    fn sources() {
        assert!(plausible_source("MyBank"));
        assert!(plausible_source("447400900123"));
        assert!(!plausible_source("ThisIsWayTooLongForAnAlpha"));
        assert!(!plausible_source(""));
    }
}
