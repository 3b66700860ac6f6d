//! Text to SMS encodings, for messages that arrive as Unicode text (the HTTP door):
//! GSM 03.38 default alphabet (data_coding 0, one septet per octet as SMPP carries
//! it, extension characters as escape + code), else UCS-2 (data_coding 8, UTF-16
//! big-endian, surrogate pairs for characters beyond the BMP).

/// The default alphabet: index = GSM code, value = the character.
const BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1b}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// The extension table: (character, code after the escape 0x1B).
const EXTENSION: [(char, u8); 10] = [
    ('\u{c}', 0x0A),
    ('^', 0x14),
    ('{', 0x28),
    ('}', 0x29),
    ('\\', 0x2F),
    ('[', 0x3C),
    ('~', 0x3D),
    (']', 0x3E),
    ('|', 0x40),
    ('€', 0x65),
];

/// data_coding of the GSM default alphabet.
pub const DC_GSM: u8 = 0x00;
/// data_coding of UCS-2.
pub const DC_UCS2: u8 = 0x08;

fn gsm_code(c: char) -> Option<u8> {
    if c == '\u{1b}' {
        return None;
    }
    // ASCII letters and digits sit where ASCII has them (the table keeps that).
    if c.is_ascii_alphanumeric() {
        return Some(c as u8);
    }
    BASIC.iter().position(|&b| b == c).map(|i| i as u8)
}

/// The text in the GSM default alphabet (escape + code for extension characters),
/// or `None` when a character is outside it.
pub fn encode_gsm(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        if let Some(g) = gsm_code(c) {
            out.push(g);
        } else if let Some((_, e)) = EXTENSION.iter().find(|(x, _)| *x == c) {
            out.extend_from_slice(&[0x1B, *e]);
        } else {
            return None;
        }
    }
    Some(out)
}

/// The text in UCS-2 (UTF-16 big-endian).
pub fn encode_ucs2(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

/// The text encoded as compactly as it goes: (data_coding, octets).
pub fn encode(text: &str) -> (u8, Vec<u8>) {
    match encode_gsm(text) {
        Some(g) => (DC_GSM, g),
        None => (DC_UCS2, encode_ucs2(text)),
    }
}

/// Decode octets of the GSM default alphabet (one septet per octet); unknown codes
/// become '?'.
pub fn decode_gsm(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    let mut it = b.iter();
    while let Some(&c) = it.next() {
        if c == 0x1B {
            let e = it.next().copied().unwrap_or(0);
            out.push(
                EXTENSION
                    .iter()
                    .find(|(_, x)| *x == e)
                    .map_or('?', |(ch, _)| *ch),
            );
        } else {
            out.push(BASIC.get(usize::from(c)).copied().unwrap_or('?'));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_extension_and_fallback() {
        assert_eq!(encode("Code 123456"), (DC_GSM, b"Code 123456".to_vec()));
        let (dc, b) = encode("Prix: 5€ [ok] @home £");
        assert_eq!(dc, DC_GSM);
        assert_eq!(decode_gsm(&b), "Prix: 5€ [ok] @home £");
        assert!(b.windows(2).any(|w| w == [0x1B, 0x65]), "€ is escaped");
        let (dc, b) = encode("Код 1234 😀");
        assert_eq!(dc, DC_UCS2);
        assert_eq!(b.len(), 2 * "Код 1234 😀".encode_utf16().count());
        assert_eq!(encode_gsm("tab\there"), None, "tab is not GSM");
    }

    #[test]
    fn every_basic_character_round_trips() {
        let all: String = BASIC.iter().filter(|&&c| c != '\u{1b}').collect();
        let b = encode_gsm(&all).unwrap();
        assert_eq!(decode_gsm(&b), all);
        for (i, &c) in BASIC.iter().enumerate() {
            if c != '\u{1b}' {
                assert_eq!(gsm_code(c), Some(i as u8), "{c:?}");
            }
        }
    }
}
