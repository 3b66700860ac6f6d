//! Brands allowed to bind, with their credentials and message defaults.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use otpgw_core::Class;

/// One brand.
#[derive(Clone)]
pub struct BrandConfig {
    /// The `system_id` it binds with.
    pub system_id: Arc<str>,
    pub password: String,
    /// Class for messages whose `priority_flag` is 0 (1 and above are always OTP).
    pub default_class: Class,
    /// Lifetime of an OTP-class message without a `validity_period`.
    pub otp_lifetime: Duration,
    /// Lifetime of a bulk message without a `validity_period`.
    pub bulk_lifetime: Duration,
}

impl std::fmt::Debug for BrandConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrandConfig")
            .field("system_id", &self.system_id)
            .field("password", &"<redacted>")
            .field("default_class", &self.default_class)
            .finish_non_exhaustive()
    }
}

impl BrandConfig {
    /// A brand with OTP as default class, 10 minutes OTP and 24 hours bulk lifetime.
    pub fn new(system_id: &str, password: &str) -> Self {
        Self {
            system_id: system_id.into(),
            password: password.into(),
            default_class: Class::Otp,
            otp_lifetime: Duration::from_secs(600),
            bulk_lifetime: Duration::from_secs(86_400),
        }
    }
}

/// The brands, by `system_id`.
#[derive(Debug, Clone, Default)]
pub struct Brands {
    by_id: HashMap<String, Arc<BrandConfig>>,
}

impl Brands {
    /// From a list of brands.
    pub fn new(list: impl IntoIterator<Item = BrandConfig>) -> Self {
        Self {
            by_id: list
                .into_iter()
                .map(|b| (b.system_id.to_string(), Arc::new(b)))
                .collect(),
        }
    }

    /// The brand these credentials belong to, or `None` whatever was wrong (unknown
    /// system_id or wrong password are not told apart).
    pub fn authenticate(&self, system_id: &str, password: &str) -> Option<Arc<BrandConfig>> {
        let b = self.by_id.get(system_id)?;
        constant_time_eq(b.password.as_bytes(), password.as_bytes()).then(|| b.clone())
    }
}

/// Compare without an early exit on the first differing byte (credentials, tokens).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authenticates_only_exact_credentials() {
        let b = Brands::new([BrandConfig::new("bank", "s3cret")]);
        assert!(b.authenticate("bank", "s3cret").is_some());
        assert!(b.authenticate("bank", "s3cre").is_none());
        assert!(b.authenticate("bank", "s3cret1").is_none());
        assert!(b.authenticate("bonk", "s3cret").is_none());
        assert!(!format!("{:?}", BrandConfig::new("x", "s3cret")).contains("s3cret"));
    }
}
