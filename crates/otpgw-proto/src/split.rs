//! Long messages: splitting a text that does not fit one SMS into concatenated parts
//! with a User Data Header (3GPP TS 23.040, 9.2.3.24.1: IEI 0x00, 8-bit reference).
//!
//! - Text in `short_message` that fits one SMS goes out as it came (no copy).
//! - Text already carrying a UDH (esm_class bit 0x40) is the brand's own part and is
//!   passed through unchanged.
//! - Otherwise (longer than one SMS, or in `message_payload`) the text is cut into
//!   parts, each prefixed with `05 00 03 ref total seq`:
//!   - GSM 7-bit (data_coding 0 and 1, one octet per septet as SMPP carries it):
//!     160 per single SMS, 153 per part; an escape (0x1B) is never separated from
//!     the character it escapes.
//!   - UCS-2 (data_coding 8): 140 octets (70 characters) per SMS, 134 (67) per part;
//!     a surrogate pair is never cut.
//!   - Any other coding (8-bit data, Latin-1): 140 octets per SMS, 134 per part.
//!   - A `message_payload` that fits one SMS goes out as a plain `short_message`.
//!
//! The reference is chosen by the caller per message (never a constant), so parts of
//! two messages to one phone never mix.

use bytes::{BufMut, Bytes, BytesMut};

use crate::pdu::SubmitFields;
pub use crate::pdu::UDHI;
/// The largest number of parts one message may have.
pub const MAX_PARTS: usize = 255;

/// How a message goes out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// As it came: one `submit_sm` with the brand's fields.
    AsIs,
    /// One or more `short_message` bodies; with more than one, each starts with a UDH
    /// and the `submit_sm` sets [`UDHI`] in esm_class.
    Parts(Vec<Bytes>),
}

/// Why a message cannot be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error("text needs more than {MAX_PARTS} parts")]
    TooManyParts,
}

/// Octets per single SMS and per concatenated part for a data_coding.
pub fn limits(data_coding: u8) -> (usize, usize) {
    match data_coding {
        0x00 | 0x01 => (160, 153),
        _ => (140, 134),
    }
}

/// Decide how `f` goes out; `reference` is the message's concatenation reference.
pub fn plan(f: &SubmitFields, reference: u8) -> Result<Plan, SplitError> {
    if f.esm_class & UDHI != 0 {
        return Ok(Plan::AsIs);
    }
    let (single, per_part) = limits(f.data_coding);
    let text = f.text();
    if text.len() <= single {
        return Ok(match &f.message_payload {
            None => Plan::AsIs,
            Some(p) => Plan::Parts(vec![p.clone()]),
        });
    }
    let chunks = chunk(text, per_part, f.data_coding);
    if chunks.len() > MAX_PARTS {
        return Err(SplitError::TooManyParts);
    }
    let total = chunks.len() as u8;
    Ok(Plan::Parts(
        chunks
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut b = BytesMut::with_capacity(6 + c.len());
                b.put_slice(&[0x05, 0x00, 0x03, reference, total, i as u8 + 1]);
                b.put_slice(c);
                b.freeze()
            })
            .collect(),
    ))
}

/// Cut `text` into pieces of at most `max` octets without breaking a character.
fn chunk(text: &[u8], max: usize, data_coding: u8) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut n = rest.len().min(max);
        if n < rest.len() {
            match data_coding {
                // Never end a part on an escape: it belongs to the next character.
                0x00 | 0x01 if rest[n - 1] == 0x1B => n -= 1,
                0x08 => {
                    n -= n % 2;
                    // A high surrogate at the end: its pair starts the next part.
                    if n >= 2 && (0xD8..=0xDB).contains(&rest[n - 2]) {
                        n -= 2;
                    }
                }
                _ => {}
            }
        }
        let (head, tail) = rest.split_at(n);
        out.push(head);
        rest = tail;
    }
    out
}

/// Why a text the brand gave with its own User Data Header (UDHI set) cannot go out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UdhError {
    #[error("user data header longer than the text")]
    Malformed,
    #[error("concatenation header with segment 0, total 0 or segment past total")]
    BadConcatenation,
    #[error("part does not fit one SMS ({0} octets)")]
    TooLong(usize),
}

/// Check a text that starts with the brand's own User Data Header: the header fits
/// the text, each concatenation element (IEI 0x00, 8-bit reference; 0x08, 16-bit)
/// has 1 <= segment <= total, and header and text fit one SMS (the header counts
/// in septets for GSM 7-bit, padded to a septet boundary).
pub fn check_udh(data_coding: u8, text: &[u8]) -> Result<(), UdhError> {
    let udhl = *text.first().ok_or(UdhError::Malformed)? as usize;
    let udh = text.get(1..1 + udhl).ok_or(UdhError::Malformed)?;
    let mut i = 0;
    while i < udh.len() {
        let (iei, len) = (udh[i], *udh.get(i + 1).ok_or(UdhError::Malformed)? as usize);
        let data = udh.get(i + 2..i + 2 + len).ok_or(UdhError::Malformed)?;
        let concat = match (iei, len) {
            (0x00, 3) => Some((data[1], data[2])),
            (0x08, 4) => Some((data[2], data[3])),
            (0x00 | 0x08, _) => return Err(UdhError::BadConcatenation),
            _ => None,
        };
        if let Some((total, seq)) = concat
            && (total == 0 || seq == 0 || seq > total)
        {
            return Err(UdhError::BadConcatenation);
        }
        i += 2 + len;
    }
    let body = text.len() - 1 - udhl;
    let fits = match data_coding {
        // One octet per septet in SMPP; the header's octets take (8n + 6) / 7 septets.
        0x00 | 0x01 => ((1 + udhl) * 8).div_ceil(7) + body <= 160,
        _ => text.len() <= 140,
    };
    if fits {
        Ok(())
    } else {
        Err(UdhError::TooLong(text.len()))
    }
}

/// Reassemble parts made by [`plan`] (for tests and the simulator): the texts in
/// sequence order, if every part of one reference is present.
pub fn reassemble(parts: &[&[u8]]) -> Option<Vec<u8>> {
    let mut seen: Vec<(u8, &[u8])> = Vec::with_capacity(parts.len());
    let mut total = None;
    let mut reference = None;
    for p in parts {
        let (udh, body) = (p.get(..6)?, p.get(6..)?);
        if udh[..3] != [0x05, 0x00, 0x03] {
            return None;
        }
        if *reference.get_or_insert(udh[3]) != udh[3] || *total.get_or_insert(udh[4]) != udh[4] {
            return None;
        }
        seen.push((udh[5], body));
    }
    seen.sort_by_key(|(i, _)| *i);
    let total = total? as usize;
    if seen.len() != total
        || seen
            .iter()
            .enumerate()
            .any(|(i, (s, _))| *s as usize != i + 1)
    {
        return None;
    }
    Some(
        seen.into_iter()
            .flat_map(|(_, b)| b.iter().copied())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fields(dc: u8, text: &[u8]) -> SubmitFields {
        SubmitFields {
            data_coding: dc,
            short_message: Bytes::copy_from_slice(text),
            ..Default::default()
        }
    }

    fn parts(p: Plan) -> Vec<Bytes> {
        match p {
            Plan::Parts(v) => v,
            Plan::AsIs => panic!("expected parts"),
        }
    }

    #[test]
    fn a_brands_own_header_is_checked() {
        let part = |h: &[u8], n: usize| [h, &vec![b'a'; n]].concat();
        let ok16 = [0x06, 0x08, 0x04, 0x12, 0x34, 3, 2];
        assert_eq!(check_udh(0, &part(&ok16, 152)), Ok(()));
        assert_eq!(check_udh(0, &part(&ok16, 153)), Err(UdhError::TooLong(160)));
        assert_eq!(check_udh(8, &part(&ok16, 133)), Ok(()));
        assert_eq!(check_udh(8, &part(&ok16, 134)), Err(UdhError::TooLong(141)));
        let ok8 = [0x05, 0x00, 0x03, 7, 2, 2];
        assert_eq!(check_udh(0, &part(&ok8, 153)), Ok(()));
        for bad in [
            [0x06, 0x08, 0x04, 0, 1, 0, 0],
            [0x06, 0x08, 0x04, 0, 1, 2, 3],
        ] {
            assert_eq!(
                check_udh(0, &part(&bad, 10)),
                Err(UdhError::BadConcatenation)
            );
        }
        assert_eq!(check_udh(0, &[0x06, 0x08]), Err(UdhError::Malformed));
        assert_eq!(check_udh(0, &[]), Err(UdhError::Malformed));
        // Another element (port addressing) is passed through.
        assert_eq!(
            check_udh(4, &[0x06, 0x05, 0x04, 0x0b, 0x84, 0, 0, 1]),
            Ok(())
        );
    }

    #[test]
    fn single_sms_goes_as_is() {
        assert_eq!(plan(&fields(0, &[b'a'; 160]), 1), Ok(Plan::AsIs));
        assert_eq!(plan(&fields(8, &[0; 140]), 1), Ok(Plan::AsIs));
        let mut own = fields(0, &[b'a'; 200]);
        own.esm_class = UDHI;
        assert_eq!(plan(&own, 1), Ok(Plan::AsIs));
    }

    #[test]
    fn gsm_splits_at_153_with_udh() {
        let text: Vec<u8> = (0..400u32).map(|i| b'a' + (i % 26) as u8).collect();
        let p = parts(plan(&fields(0, &text), 0x42).unwrap());
        assert_eq!(p.len(), 3);
        assert_eq!(&p[0][..6], &[5, 0, 3, 0x42, 3, 1]);
        assert_eq!(&p[2][..6], &[5, 0, 3, 0x42, 3, 3]);
        assert_eq!(p[0].len(), 6 + 153);
        let refs: Vec<&[u8]> = p.iter().map(|b| b.as_ref()).collect();
        assert_eq!(reassemble(&refs).unwrap(), text);
    }

    #[test]
    fn gsm_escape_stays_with_its_character() {
        let mut text = vec![b'a'; 152];
        text.extend_from_slice(&[0x1B, 0x65]); // the euro sign
        text.extend_from_slice(&[b'b'; 20]);
        let p = parts(plan(&fields(0, &text), 1).unwrap());
        assert_eq!(p[0].len(), 6 + 152);
        assert_eq!(&p[1][6..8], &[0x1B, 0x65]);
    }

    #[test]
    fn ucs2_splits_at_67_characters_and_keeps_surrogates() {
        let s: String = "Ω".repeat(66) + "😀" + &"ж".repeat(20);
        let text: Vec<u8> = s.encode_utf16().flat_map(u16::to_be_bytes).collect();
        let p = parts(plan(&fields(8, &text), 9).unwrap());
        assert_eq!(p.len(), 2);
        // 66 characters, then the emoji's pair would not fit whole: it moves on.
        assert_eq!(p[0].len(), 6 + 132);
        let refs: Vec<&[u8]> = p.iter().map(|b| b.as_ref()).collect();
        assert_eq!(reassemble(&refs).unwrap(), text);
    }

    #[test]
    fn payload_is_moved_or_split() {
        let mut f = fields(0, b"");
        f.message_payload = Some(Bytes::from_static(b"short"));
        assert_eq!(
            plan(&f, 1),
            Ok(Plan::Parts(vec![Bytes::from_static(b"short")]))
        );
        f.message_payload = Some(Bytes::from(vec![b'x'; 1000]));
        assert_eq!(parts(plan(&f, 1).unwrap()).len(), 7);
    }

    proptest! {
        #[test]
        fn parts_fit_and_reassemble(text in proptest::collection::vec(any::<u8>(), 0..2000), dc in prop_oneof![Just(0u8), Just(8u8), Just(4u8)], r: u8) {
            let mut f = fields(dc, b"");
            f.message_payload = Some(Bytes::from(text.clone()));
            let p = parts(plan(&f, r).unwrap());
            let (single, per_part) = limits(dc);
            if text.len() <= single {
                prop_assert_eq!(p.len(), 1);
                prop_assert_eq!(p[0].as_ref(), &text[..]);
            } else {
                for b in &p {
                    prop_assert!(b.len() <= 6 + per_part);
                    prop_assert!(b.len() > 6);
                }
                let refs: Vec<&[u8]> = p.iter().map(|b| b.as_ref()).collect();
                prop_assert_eq!(reassemble(&refs).unwrap(), text);
            }
        }
    }
}
