//! A brand's fraud policy for verifications (the codes otpgw makes and sends
//! itself): which number types and countries it verifies, its caps per country,
//! end-user address and device, and whether the conversion guard blocks, only
//! watches (shadow) or is off. The numbers' checks are here, free of IO and clock;
//! the counting is the verification service's.

use std::collections::HashMap;

use crate::number::{Kind, NumberInfo};

/// What the guard does with its decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FraudMode {
    /// Decide, and refuse.
    Block,
    /// Decide, log and count as if refusing; refuse nothing.
    Shadow,
    /// Decide nothing (number type and country checks still apply).
    Off,
}

impl FraudMode {
    /// The mode named `s` ("block", "shadow", "off").
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "block" => Some(Self::Block),
            "shadow" => Some(Self::Shadow),
            "off" => Some(Self::Off),
            _ => None,
        }
    }

    /// Whether a decision to refuse is carried out.
    pub fn enforces(self) -> bool {
        self == Self::Block
    }
}

/// See the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrandFraud {
    pub mode: FraudMode,
    /// Number types verified (others: `number_type_refused`).
    pub allowed_types: Vec<Kind>,
    /// ISO country codes verified (empty: all).
    pub allowed_countries: Vec<String>,
    /// Verifications per country (ISO code) per day.
    pub per_country_per_day: HashMap<String, u32>,
    /// Verifications per end-user address per hour (`ip` of the request).
    pub per_ip_per_hour: u32,
    /// Per IPv4 /24 (IPv6 /64) per hour.
    pub per_subnet_per_hour: u32,
    /// Per end-user device (`device_id`) per hour.
    pub per_device_per_hour: u32,
}

impl Default for BrandFraud {
    /// Blocking, mobile numbers (and those a plan cannot tell from fixed lines),
    /// every country, no country cap, 10 per address, 50 per /24 and 10 per device
    /// an hour.
    fn default() -> Self {
        Self {
            mode: FraudMode::Block,
            allowed_types: vec![Kind::Mobile, Kind::FixedLineOrMobile],
            allowed_countries: Vec::new(),
            per_country_per_day: HashMap::new(),
            per_ip_per_hour: 10,
            per_subnet_per_hour: 50,
            per_device_per_hour: 10,
        }
    }
}

/// Why a number is not verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NumberRefusal {
    #[error("not a valid number for its country")]
    Invalid,
    #[error("numbers of this type are not verified")]
    Type(Kind),
    #[error("numbers of this country are not verified")]
    Country,
}

impl NumberRefusal {
    /// The refusal's code (HTTP `error.code`, metric `reason`).
    pub fn code(self) -> &'static str {
        match self {
            Self::Invalid => "invalid_number",
            Self::Type(_) => "number_type_refused",
            Self::Country => "country_refused",
        }
    }
}

impl BrandFraud {
    /// Check `digits` (international, no `+`) for a verification: valid, of an
    /// allowed type and country. Returns what the number is.
    pub fn check_number(&self, digits: &str) -> Result<NumberInfo, NumberRefusal> {
        let info = crate::number::inspect(digits).ok_or(NumberRefusal::Invalid)?;
        self.allows(&info).map(|()| info)
    }

    /// Whether a valid number is of a type and country verified.
    pub fn allows(&self, info: &NumberInfo) -> Result<(), NumberRefusal> {
        if !self.allowed_types.contains(&info.kind) {
            return Err(NumberRefusal::Type(info.kind));
        }
        if !self.allowed_countries.is_empty()
            && !self.allowed_countries.iter().any(|c| c == info.country())
        {
            return Err(NumberRefusal::Country);
        }
        Ok(())
    }

    /// The daily cap of `country`, if any.
    pub fn country_cap(&self, country: &str) -> Option<u32> {
        self.per_country_per_day.get(country).copied()
    }
}

/// The network of an end-user address whose requests are counted together: the
/// /24 of an IPv4 address, the /64 of an IPv6 one.
pub fn subnet_of(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_types_and_countries() {
        let mut f = BrandFraud::default();
        assert_eq!(
            f.check_number("447400123456").map(|i| i.kind),
            Ok(Kind::Mobile)
        );
        assert_eq!(f.check_number("4420712345"), Err(NumberRefusal::Invalid));
        assert_eq!(
            f.check_number("449098790000"),
            Err(NumberRefusal::Type(Kind::PremiumRate))
        );
        assert_eq!(
            f.check_number("442079460000"),
            Err(NumberRefusal::Type(Kind::FixedLine))
        );
        f.allowed_countries = vec!["FR".into()];
        assert_eq!(f.check_number("447400123456"), Err(NumberRefusal::Country));
        assert!(f.check_number("33612345678").is_ok());
        f.per_country_per_day.insert("FR".into(), 7);
        assert_eq!(f.country_cap("FR"), Some(7));
        assert_eq!(f.country_cap("GB"), None);
        assert_eq!(FraudMode::parse("shadow"), Some(FraudMode::Shadow));
        assert!(!FraudMode::Shadow.enforces() && FraudMode::Block.enforces());
        assert_eq!(FraudMode::parse("on"), None);
    }

    #[test]
    fn subnets() {
        assert_eq!(subnet_of("203.0.113.77".parse().unwrap()), "203.0.113.0/24");
        assert_eq!(
            subnet_of("2001:db8:1:2:3::9".parse().unwrap()),
            "2001:db8:1:2::/64"
        );
    }
}
