//! Delivery receipts: the textual format (`id:... stat:... err:...`), its parser and
//! formatter, and the states a receipt can carry.
//!
//! The parser is tolerant of what carriers really send: any field may be missing,
//! keys vary in case and spelling (`submit date`, `submit_date`), dates have 10 or 12
//! digits, `err` may be non-numeric, and `text:` runs to the end and may contain
//! colons or key-like words. The `text:` field is never kept: it may repeat the OTP.

use std::fmt;

/// Final (or intermediate) state of a message as a receipt reports it.
/// Numbering follows the `message_state` TLV (SMPP 3.4 section 5.2.28).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    Enroute = 1,
    Delivered = 2,
    Expired = 3,
    Deleted = 4,
    Undeliverable = 5,
    Accepted = 6,
    Unknown = 7,
    Rejected = 8,
    Skipped = 9,
}

impl DeliveryState {
    /// From the `message_state` TLV value.
    pub fn from_tlv(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Enroute,
            2 => Self::Delivered,
            3 => Self::Expired,
            4 => Self::Deleted,
            5 => Self::Undeliverable,
            6 => Self::Accepted,
            7 => Self::Unknown,
            8 => Self::Rejected,
            9 => Self::Skipped,
            _ => return None,
        })
    }

    /// The `message_state` TLV value.
    pub fn tlv(self) -> u8 {
        self as u8
    }

    /// From a `stat:` value, case-insensitively, accepting common long spellings.
    pub fn from_stat(s: &str) -> Option<Self> {
        let s = s.trim();
        let eq = |a: &str| s.eq_ignore_ascii_case(a);
        Some(if eq("DELIVRD") || eq("DELIVERED") {
            Self::Delivered
        } else if eq("EXPIRED") {
            Self::Expired
        } else if eq("DELETED") {
            Self::Deleted
        } else if eq("UNDELIV") || eq("UNDELIVERABLE") || eq("FAILED") {
            Self::Undeliverable
        } else if eq("ACCEPTD") || eq("ACCEPTED") {
            Self::Accepted
        } else if eq("UNKNOWN") {
            Self::Unknown
        } else if eq("REJECTD") || eq("REJECTED") {
            Self::Rejected
        } else if eq("ENROUTE") {
            Self::Enroute
        } else if eq("SKIPPED") {
            Self::Skipped
        } else {
            return None;
        })
    }

    /// The 7-character `stat:` value.
    pub fn stat(self) -> &'static str {
        match self {
            Self::Enroute => "ENROUTE",
            Self::Delivered => "DELIVRD",
            Self::Expired => "EXPIRED",
            Self::Deleted => "DELETED",
            Self::Undeliverable => "UNDELIV",
            Self::Accepted => "ACCEPTD",
            Self::Unknown => "UNKNOWN",
            Self::Rejected => "REJECTD",
            Self::Skipped => "SKIPPED",
        }
    }

    /// Whether the state ends the message's life (no further receipt expected).
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Enroute | Self::Accepted)
    }

    /// A lower-case name for metric labels.
    pub fn label(self) -> &'static str {
        match self {
            Self::Enroute => "enroute",
            Self::Delivered => "delivered",
            Self::Expired => "expired",
            Self::Deleted => "deleted",
            Self::Undeliverable => "undeliverable",
            Self::Accepted => "accepted",
            Self::Unknown => "unknown",
            Self::Rejected => "rejected",
            Self::Skipped => "skipped",
        }
    }
}

impl fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.stat())
    }
}

/// The fields of a textual receipt. `text:` is deliberately not kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiptText {
    pub id: Option<String>,
    pub sub: Option<String>,
    pub dlvrd: Option<String>,
    pub submit_date: Option<String>,
    pub done_date: Option<String>,
    /// The state, when `stat:` held a known value.
    pub stat: Option<DeliveryState>,
    pub err: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    Id,
    Sub,
    Dlvrd,
    SubmitDate,
    DoneDate,
    Stat,
    Err,
    Text,
}

/// Spellings of each key, lower case, without the colon.
const KEYS: &[(&str, Key)] = &[
    ("submit date", Key::SubmitDate),
    ("submit_date", Key::SubmitDate),
    ("submitdate", Key::SubmitDate),
    ("done date", Key::DoneDate),
    ("done_date", Key::DoneDate),
    ("donedate", Key::DoneDate),
    ("dlvrd", Key::Dlvrd),
    ("stat", Key::Stat),
    ("text", Key::Text),
    ("sub", Key::Sub),
    ("err", Key::Err),
    ("id", Key::Id),
];

/// Find the key that ends with a colon at `pos` (a word start), if any.
fn key_at(lower: &[u8], pos: usize) -> Option<(Key, usize)> {
    KEYS.iter().find_map(|&(name, key)| {
        let end = pos + name.len();
        (lower.get(pos..end) == Some(name.as_bytes()) && lower.get(end) == Some(&b':'))
            .then_some((key, end + 1))
    })
}

/// Parse a receipt's `short_message`. Non-UTF-8 bytes are replaced; the parse never
/// fails, missing fields are `None`.
pub fn parse(short_message: &[u8]) -> ReceiptText {
    let text = String::from_utf8_lossy(short_message);
    let lower = text.to_ascii_lowercase().into_bytes();
    // Key positions: a key starts the string or follows white space.
    let mut found: Vec<(usize, Key, usize)> = Vec::with_capacity(8);
    let mut i = 0;
    while i < lower.len() {
        let word_start = i == 0 || lower[i - 1].is_ascii_whitespace();
        if word_start && let Some((key, value_start)) = key_at(&lower, i) {
            found.push((i, key, value_start));
            if key == Key::Text {
                break; // everything after text: is message text, never keys
            }
            i = value_start;
            continue;
        }
        i += 1;
    }
    let mut out = ReceiptText::default();
    for (n, &(_, key, start)) in found.iter().enumerate() {
        let end = found.get(n + 1).map_or(text.len(), |&(p, _, _)| p);
        let value = text.get(start..end).unwrap_or("").trim();
        let v = (!value.is_empty()).then(|| value.to_string());
        let slot = match key {
            Key::Id => &mut out.id,
            Key::Sub => &mut out.sub,
            Key::Dlvrd => &mut out.dlvrd,
            Key::SubmitDate => &mut out.submit_date,
            Key::DoneDate => &mut out.done_date,
            Key::Err => &mut out.err,
            Key::Stat => {
                out.stat = DeliveryState::from_stat(value);
                continue;
            }
            Key::Text => continue,
        };
        if slot.is_none() {
            *slot = v;
        }
    }
    out
}

/// Format the standard receipt text. `text:` is always empty: the message text is
/// never echoed back.
pub fn format(
    id: &str,
    delivered: bool,
    submit_date: &str,
    done_date: &str,
    stat: DeliveryState,
    err: &str,
) -> String {
    format!(
        "id:{id} sub:001 dlvrd:{} submit date:{submit_date} done date:{done_date} stat:{} err:{err} text:",
        if delivered { "001" } else { "000" },
        stat.stat()
    )
}

#[cfg(test)]
mod tests;
