//! Number intelligence: an international number parsed and validated against the
//! numbering plans compiled into the `phonenumber` crate (Google's libphonenumber
//! metadata; nothing is downloaded), its type (mobile, fixed line, premium rate, ...)
//! and its country. Free of IO and clock.

use phonenumber::metadata::DATABASE;
use phonenumber::{PhoneNumber, Type};

/// What a number is, from its numbering plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Mobile,
    FixedLine,
    FixedLineOrMobile,
    Voip,
    PremiumRate,
    SharedCost,
    TollFree,
    Pager,
    Uan,
    Unknown,
}

impl Kind {
    /// Every kind, in the order of their names.
    pub const ALL: [Kind; 10] = [
        Kind::Mobile,
        Kind::FixedLine,
        Kind::FixedLineOrMobile,
        Kind::Voip,
        Kind::PremiumRate,
        Kind::SharedCost,
        Kind::TollFree,
        Kind::Pager,
        Kind::Uan,
        Kind::Unknown,
    ];

    /// The name in configuration, errors and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Mobile => "mobile",
            Kind::FixedLine => "fixed_line",
            Kind::FixedLineOrMobile => "fixed_line_or_mobile",
            Kind::Voip => "voip",
            Kind::PremiumRate => "premium_rate",
            Kind::SharedCost => "shared_cost",
            Kind::TollFree => "toll_free",
            Kind::Pager => "pager",
            Kind::Uan => "uan",
            Kind::Unknown => "unknown",
        }
    }

    /// The kind named `s` (as [`Kind::label`] writes it).
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.label() == s)
    }

    fn of(t: Type) -> Kind {
        match t {
            Type::Mobile => Kind::Mobile,
            Type::FixedLine => Kind::FixedLine,
            Type::FixedLineOrMobile => Kind::FixedLineOrMobile,
            Type::Voip => Kind::Voip,
            Type::PremiumRate => Kind::PremiumRate,
            Type::SharedCost => Kind::SharedCost,
            Type::TollFree => Kind::TollFree,
            Type::Pager => Kind::Pager,
            Type::Uan => Kind::Uan,
            _ => Kind::Unknown,
        }
    }
}

/// A valid number's type and country.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumberInfo {
    pub kind: Kind,
    id: Option<phonenumber::country::Id>,
}

impl NumberInfo {
    /// ISO 3166-1 alpha-2 code ("GB"), or "ZZ" for a number of no one country
    /// (international services).
    pub fn country(&self) -> &str {
        self.id.as_ref().map_or("ZZ", |id| id.as_ref())
    }
}

/// Inspect `digits`, an international number without `+` (country code first).
/// `None`: not a number any country's plan allows.
pub fn inspect(digits: &str) -> Option<NumberInfo> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 15 {
        return None;
    }
    let mut plus = String::with_capacity(digits.len() + 1);
    plus.push('+');
    plus.push_str(digits);
    let n: PhoneNumber = phonenumber::parse(None, &plus).ok()?;
    if !phonenumber::is_valid_with(&DATABASE, &n) {
        return None;
    }
    let kind = Kind::of(n.number_type(&DATABASE));
    Some(NumberInfo {
        kind,
        id: n.country().id(),
    })
}

/// Load the numbering plans now (the first look-up would otherwise pay for
/// reading the whole metadata, tens of milliseconds): called when a gateway
/// starts. Returns how long it took.
pub fn warm_up() -> std::time::Duration {
    let t = std::time::Instant::now();
    for n in ["447400123456", "33612345678", "14155550100"] {
        let _ = inspect(n);
    }
    t.elapsed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_countries_and_invalid_numbers() {
        let i = |d: &str| inspect(d).map(|n| (n.kind.label(), n.country().to_string()));
        assert_eq!(i("447400123456"), Some(("mobile", "GB".into())));
        assert_eq!(i("447700000100"), Some(("mobile", "GB".into())));
        assert_eq!(i("33612345678"), Some(("mobile", "FR".into())));
        assert_eq!(i("4915112345678"), Some(("mobile", "DE".into())));
        assert_eq!(i("449098790000").map(|x| x.0), Some("premium_rate"));
        assert_eq!(i("442079460000"), Some(("fixed_line", "GB".into())));
        assert_eq!(i("14155550100").map(|x| x.1), Some("US".into()));
        // A UK number two digits short, the drama range, digits that are no number.
        assert_eq!(i("4420712345"), None);
        assert_eq!(i("447700900123"), None);
        assert_eq!(i("999123456789"), None);
        assert_eq!(i("44abc"), None);
        assert_eq!(i(""), None);
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.label()), Some(k));
        }
        assert!(warm_up() < std::time::Duration::from_secs(5));
    }
}
