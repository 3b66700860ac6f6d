//! The country calling code of an international number (ITU-T E.164): the label
//! metrics use for a destination, never the number itself. Bounded: at most the
//! codes of the numbering plan (1 to 3 digits).

/// Two-digit country codes (every other code, beyond 1 and 7, has three digits).
const TWO: &[&str] = &[
    "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46", "47",
    "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61", "62", "63", "64", "65",
    "66", "81", "82", "84", "86", "90", "91", "92", "93", "94", "95", "98",
];

/// The calling code of `number` (digits, with or without `+`); "?" when it has too
/// few digits.
pub fn calling_code(number: &str) -> &str {
    let d = number.strip_prefix('+').unwrap_or(number);
    if d.len() < 4 || !d.bytes().all(|b| b.is_ascii_digit()) {
        return "?";
    }
    if d.starts_with('1') || d.starts_with('7') {
        return &d[..1];
    }
    if TWO.contains(&&d[..2]) {
        return &d[..2];
    }
    &d[..3]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(calling_code("+14155550100"), "1");
        assert_eq!(calling_code("79161234567"), "7");
        assert_eq!(calling_code("+447400900123"), "44");
        assert_eq!(calling_code("353861234567"), "353");
        assert_eq!(calling_code("+9715012345"), "971");
        assert_eq!(calling_code("12"), "?");
        assert_eq!(calling_code("44abc12345"), "?");
    }
}
