//! The fraud settings: per `[[brand]]` (`fraud_mode`, `allowed_number_types`,
//! `allowed_countries`, `max_per_country_per_day`, caps per end-user address,
//! network and device) and `[verify.fraud]` (the conversion guard), checked here
//! and turned into [`BrandFraud`] and [`GuardConfig`].

use std::time::Duration;

use serde::Deserialize;

use otpgw_accept::fraud::{BrandFraud, FraudMode};
use otpgw_accept::number::Kind;
use otpgw_verify::guard::GuardConfig;

use super::brand::Brand;

pub(super) fn d_mode() -> String {
    "block".into()
}
pub(super) fn d_types() -> Vec<String> {
    vec!["mobile".into(), "fixed_line_or_mobile".into()]
}
pub(super) fn d_per_ip() -> u32 {
    BrandFraud::default().per_ip_per_hour
}
pub(super) fn d_per_subnet() -> u32 {
    BrandFraud::default().per_subnet_per_hour
}
pub(super) fn d_per_device() -> u32 {
    BrandFraud::default().per_device_per_hour
}

/// Problems of brand `i`'s fraud settings.
pub(super) fn brand_problems(i: usize, b: &Brand, p: &mut Vec<String>) {
    if FraudMode::parse(&b.fraud_mode).is_none() {
        p.push(format!(
            "brand[{i}].fraud_mode: {:?} must be \"block\", \"shadow\" or \"off\"",
            b.fraud_mode
        ));
    }
    for t in &b.allowed_number_types {
        if Kind::parse(t).is_none() {
            let all: Vec<_> = Kind::ALL.iter().map(|k| k.label()).collect();
            p.push(format!(
                "brand[{i}].allowed_number_types: {t:?} is not one of {}",
                all.join(", ")
            ));
        }
    }
    if b.allowed_number_types.is_empty() {
        p.push(format!(
            "brand[{i}].allowed_number_types: must list at least one type"
        ));
    }
    let iso = |c: &str| c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase());
    for c in b
        .allowed_countries
        .iter()
        .chain(b.max_per_country_per_day.keys())
    {
        if !iso(c) {
            p.push(format!(
                "brand[{i}]: country {c:?} must be an ISO 3166 code of two capital letters (\"GB\")"
            ));
        }
    }
    if b.max_per_country_per_day.values().any(|n| *n == 0)
        || b.max_per_ip_per_hour == 0
        || b.max_per_subnet_per_hour == 0
        || b.max_per_device_per_hour == 0
    {
        p.push(format!(
            "brand[{i}]: the verification caps per country, ip, subnet and device must be at least 1"
        ));
    }
}

/// Brand `b`'s fraud policy (its settings checked).
pub(super) fn brand_fraud(b: &Brand) -> BrandFraud {
    BrandFraud {
        mode: FraudMode::parse(&b.fraud_mode).unwrap_or(FraudMode::Block),
        allowed_types: b
            .allowed_number_types
            .iter()
            .filter_map(|t| Kind::parse(t))
            .collect(),
        allowed_countries: b.allowed_countries.clone(),
        per_country_per_day: b.max_per_country_per_day.clone(),
        per_ip_per_hour: b.max_per_ip_per_hour,
        per_subnet_per_hour: b.max_per_subnet_per_hour,
        per_device_per_hour: b.max_per_device_per_hour,
    }
}

/// `[verify.fraud]`: the conversion guard.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardCfg {
    /// Codes younger than this are not judged (their users may be typing).
    #[serde(default = "d_grace")]
    pub grace_secs: u64,
    /// How far back codes are judged.
    #[serde(default = "d_window")]
    pub window_secs: u64,
    /// Judged codes a prefix needs before it can be blocked.
    #[serde(default = "d_min_samples")]
    pub min_samples: u32,
    /// Blocked below this share of the rest of the brand's approval ratio.
    #[serde(default = "d_ratio")]
    pub ratio: f64,
    /// The first block; each renewal doubles it up to `max_block_secs`.
    #[serde(default = "d_block")]
    pub block_secs: u64,
    #[serde(default = "d_max_block")]
    pub max_block_secs: u64,
    /// While probing, one request in this many passes.
    #[serde(default = "d_probe_every")]
    pub probe_every: u32,
    /// Probes judged before a block is lifted or renewed.
    #[serde(default = "d_probe_samples")]
    pub probe_samples: u32,
}

impl Default for GuardCfg {
    fn default() -> Self {
        Self {
            grace_secs: d_grace(),
            window_secs: d_window(),
            min_samples: d_min_samples(),
            ratio: d_ratio(),
            block_secs: d_block(),
            max_block_secs: d_max_block(),
            probe_every: d_probe_every(),
            probe_samples: d_probe_samples(),
        }
    }
}

fn d_grace() -> u64 {
    GuardConfig::default().grace.as_secs()
}
fn d_window() -> u64 {
    GuardConfig::default().window.as_secs()
}
fn d_min_samples() -> u32 {
    GuardConfig::default().min_samples
}
fn d_ratio() -> f64 {
    GuardConfig::default().ratio
}
fn d_block() -> u64 {
    GuardConfig::default().block.as_secs()
}
fn d_max_block() -> u64 {
    GuardConfig::default().max_block.as_secs()
}
fn d_probe_every() -> u32 {
    GuardConfig::default().probe_every
}
fn d_probe_samples() -> u32 {
    GuardConfig::default().probe_samples
}

impl GuardCfg {
    /// Problems of `[verify.fraud]`.
    pub(super) fn problems(&self, p: &mut Vec<String>) {
        if !(60..=86_400).contains(&self.window_secs) || self.grace_secs * 2 > self.window_secs {
            p.push(
                "verify.fraud: window_secs must be 60 to 86400 and at least twice grace_secs"
                    .into(),
            );
        }
        if !(self.ratio > 0.0 && self.ratio <= 1.0) {
            p.push("verify.fraud.ratio: must be above 0 and at most 1".into());
        }
        if self.min_samples == 0 || self.probe_samples == 0 || self.probe_every < 2 {
            p.push(
                "verify.fraud: min_samples and probe_samples at least 1, probe_every at least 2"
                    .into(),
            );
        }
        if self.block_secs == 0 || self.block_secs > self.max_block_secs {
            p.push("verify.fraud: need 1 <= block_secs <= max_block_secs".into());
        }
    }

    /// The guard's settings (its prefix digits are `[verify] prefix_digits`).
    pub fn guard(&self, prefix_digits: usize) -> GuardConfig {
        GuardConfig {
            prefix_digits,
            window: Duration::from_secs(self.window_secs),
            grace: Duration::from_secs(self.grace_secs),
            min_samples: self.min_samples,
            ratio: self.ratio,
            block: Duration::from_secs(self.block_secs),
            max_block: Duration::from_secs(self.max_block_secs),
            probe_every: self.probe_every,
            probe_samples: self.probe_samples,
            ..GuardConfig::default()
        }
    }
}
