//! Routing by destination prefix: the longest matching prefix wins; a per-brand table
//! is tried before the global one; the default route catches the rest. Each route
//! lists carriers in order of preference and says how to choose among those that
//! are up: in that order, or by measured quality ([`Select`]).

use std::collections::HashMap;

/// How a route chooses among its carriers that are up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Select {
    /// The first in the list.
    #[default]
    Ordered,
    /// The best recent on-time delivery ratio (see [`crate::quality`]).
    Quality,
}

type Route = (String, Vec<String>, Select);

/// A routing table. Each route names carriers in order of preference.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    default: Vec<String>,
    default_select: Select,
    prefixes: Vec<Route>,
    brands: HashMap<String, Vec<Route>>,
}

impl Routes {
    /// A table with only a default route.
    pub fn new(default: Vec<String>) -> Self {
        Self {
            default,
            ..Default::default()
        }
    }

    /// How the default route chooses.
    pub fn set_default_select(&mut self, s: Select) {
        self.default_select = s;
    }

    /// Add a global prefix route.
    pub fn add_prefix(&mut self, prefix: &str, carriers: Vec<String>) {
        self.add_prefix_with(prefix, carriers, Select::Ordered);
    }

    /// Add a global prefix route choosing by `select`.
    pub fn add_prefix_with(&mut self, prefix: &str, carriers: Vec<String>, select: Select) {
        self.prefixes.push((prefix.to_string(), carriers, select));
        self.prefixes.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
    }

    /// Add a prefix route for one brand (empty prefix: that brand's default).
    pub fn add_brand_prefix(&mut self, brand: &str, prefix: &str, carriers: Vec<String>) {
        self.add_brand_prefix_with(brand, prefix, carriers, Select::Ordered);
    }

    /// Add a prefix route for one brand choosing by `select`.
    pub fn add_brand_prefix_with(
        &mut self,
        brand: &str,
        prefix: &str,
        carriers: Vec<String>,
        select: Select,
    ) {
        let v = self.brands.entry(brand.to_string()).or_default();
        v.push((prefix.to_string(), carriers, select));
        v.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
    }

    /// Every carrier name the table mentions.
    pub fn carriers(&self) -> impl Iterator<Item = &String> {
        self.default
            .iter()
            .chain(self.prefixes.iter().flat_map(|(_, c, _)| c))
            .chain(self.brands.values().flatten().flat_map(|(_, c, _)| c))
    }

    /// Carriers for a destination, in order of preference.
    pub fn carriers_for(&self, brand: &str, dest: &str) -> Option<&[String]> {
        self.route_for(brand, dest).map(|(c, _)| c)
    }

    /// Carriers for a destination, in order of preference, and how to choose.
    pub fn route_for(&self, brand: &str, dest: &str) -> Option<(&[String], Select)> {
        let dest = dest.trim_start_matches('+');
        if let Some(c) = self.brands.get(brand).and_then(|t| longest(t, dest)) {
            return Some(c);
        }
        if let Some(c) = longest(&self.prefixes, dest) {
            return Some(c);
        }
        (!self.default.is_empty()).then_some((self.default.as_slice(), self.default_select))
    }
}

/// The route of the longest prefix in `table` (sorted longest first) matching `dest`.
fn longest<'a>(table: &'a [Route], dest: &str) -> Option<(&'a [String], Select)> {
    table
        .iter()
        .find(|(p, _, _)| dest.starts_with(p.as_str()))
        .map(|(_, c, s)| (c.as_slice(), *s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn longest_prefix_then_brand_then_default() {
        let mut r = Routes::new(v(&["def"]));
        r.add_prefix("44", v(&["uk"]));
        r.add_prefix("447", v(&["ukmobile", "uk"]));
        r.add_brand_prefix("bank", "49", v(&["de-premium"]));
        assert_eq!(
            r.carriers_for("x", "447400900123"),
            Some(&v(&["ukmobile", "uk"])[..])
        );
        assert_eq!(r.carriers_for("x", "+441234"), Some(&v(&["uk"])[..]));
        assert_eq!(r.carriers_for("x", "4915112345678"), Some(&v(&["def"])[..]));
        assert_eq!(
            r.carriers_for("bank", "4915112345678"),
            Some(&v(&["de-premium"])[..])
        );
        assert_eq!(Routes::default().carriers_for("x", "1"), None);
    }
}
