//! A code bound to a transaction (PSD2 dynamic linking, RTS Art. 5): the amount,
//! currency and payee the user is shown with the code. The code's stored hash is
//! taken over the code and the transaction's canonical form, so the code
//! authenticates that transaction only: a check must carry the same transaction,
//! and one with another amount or payee is denied (`transaction_mismatch`, counted
//! as a wrong attempt) even with the right code.
//!
//! Canonical form: the amount as a decimal without leading zeros in its whole part
//! nor trailing zeros in its fraction (`025.50` and `25.5` are one amount), the
//! currency upper case, the payee with its surrounding spaces removed and inner
//! runs of spaces made one; joined by newlines. Free of IO.

use otpgw_core::wire::{Reader, put_str};

/// A transaction as given and shown (`{amount}`, `{currency}`, `{payee}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub amount: String,
    pub currency: String,
    pub payee: String,
}

/// Why a transaction is refused (the field, and what it must be).
pub type Invalid = (&'static str, &'static str);

impl Transaction {
    /// A checked transaction.
    pub fn new(amount: &str, currency: &str, payee: &str) -> Result<Self, Invalid> {
        let (whole, frac) = amount.split_once('.').unwrap_or((amount, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty()
            || whole.len() > 15
            || !digits(whole)
            || frac.len() > 4
            || !digits(frac)
            || amount.ends_with('.')
        {
            return Err((
                "transaction.amount",
                "a decimal amount: up to 15 digits, optionally '.' and up to 4 more",
            ));
        }
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(("transaction.currency", "an ISO 4217 code of 3 letters"));
        }
        let payee = payee.split_whitespace().collect::<Vec<_>>().join(" ");
        if payee.is_empty() || payee.chars().count() > 70 || payee.chars().any(char::is_control) {
            return Err(("transaction.payee", "1 to 70 printable characters"));
        }
        Ok(Self {
            amount: amount.to_string(),
            currency: currency.to_ascii_uppercase(),
            payee,
        })
    }

    /// The canonical form (see the module docs).
    pub fn canonical(&self) -> String {
        let (whole, frac) = self
            .amount
            .split_once('.')
            .unwrap_or((self.amount.as_str(), ""));
        let whole = whole.trim_start_matches('0');
        let whole = if whole.is_empty() { "0" } else { whole };
        let frac = frac.trim_end_matches('0');
        let amount = if frac.is_empty() {
            whole.to_string()
        } else {
            format!("{whole}.{frac}")
        };
        format!("{amount}\n{}\n{}", self.currency, self.payee)
    }

    /// What the code's hash is taken over: the code, bound to `tx` when given.
    pub fn bound(code: &str, tx: Option<&Transaction>) -> String {
        match tx {
            Some(t) => format!("{code}\n{}", t.canonical()),
            None => code.to_string(),
        }
    }

    /// Whether a check's transaction is the verification's (both absent, or the
    /// same canonical form).
    pub fn same(kept: Option<&Transaction>, given: Option<&Transaction>) -> bool {
        match (kept, given) {
            (None, None) => true,
            (Some(a), Some(b)) => a.canonical() == b.canonical(),
            _ => false,
        }
    }

    /// `template` with `{amount}`, `{currency}` and `{payee}` filled in.
    pub fn fill(template: &str, tx: Option<&Transaction>) -> String {
        match tx {
            Some(t) => template
                .replace("{amount}", &t.amount)
                .replace("{currency}", &t.currency)
                .replace("{payee}", &t.payee),
            None => template.to_string(),
        }
    }

    /// Append to a stored record.
    pub fn put(&self, b: &mut Vec<u8>) {
        put_str(b, &self.amount);
        put_str(b, &self.currency);
        put_str(b, &self.payee);
    }

    /// Read from a stored record.
    pub fn read(r: &mut Reader<'_>) -> Option<Self> {
        Some(Self {
            amount: r.string()?,
            currency: r.string()?,
            payee: r.string()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_amount_in_several_spellings() {
        let a = Transaction::new("25.00", "eur", "ACME  Ltd ").unwrap();
        let b = Transaction::new("025.0", "EUR", " ACME Ltd").unwrap();
        assert_eq!(a.canonical(), "25\nEUR\nACME Ltd");
        assert!(Transaction::same(Some(&a), Some(&b)));
        let other = Transaction::new("25.01", "EUR", "ACME Ltd").unwrap();
        assert!(!Transaction::same(Some(&a), Some(&other)));
        let payee = Transaction::new("25", "EUR", "ACME Ltd.").unwrap();
        assert!(!Transaction::same(Some(&a), Some(&payee)));
        assert!(!Transaction::same(Some(&a), None), "a check without it");
        assert!(!Transaction::same(None, Some(&a)));
        assert_eq!(
            Transaction::new("0.50", "EUR", "x").unwrap().canonical(),
            "0.5\nEUR\nx"
        );
        assert_ne!(
            Transaction::bound("123456", Some(&a)),
            Transaction::bound("123456", Some(&other))
        );
    }

    #[test]
    fn bad_fields_are_named() {
        for (amount, currency, payee, field) in [
            ("", "EUR", "x", "transaction.amount"),
            ("1e3", "EUR", "x", "transaction.amount"),
            ("25.", "EUR", "x", "transaction.amount"),
            ("-5", "EUR", "x", "transaction.amount"),
            ("1.23456", "EUR", "x", "transaction.amount"),
            ("25", "EURO", "x", "transaction.currency"),
            ("25", "EUR", "  ", "transaction.payee"),
            ("25", "EUR", "a\u{7}b", "transaction.payee"),
        ] {
            assert_eq!(
                Transaction::new(amount, currency, payee).unwrap_err().0,
                field,
                "{amount} {currency} {payee:?}"
            );
        }
    }

    #[test]
    fn templates_show_it() {
        let t = Transaction::new("25.00", "EUR", "ACME Ltd").unwrap();
        assert_eq!(
            Transaction::fill("{code}: pay {amount} {currency} to {payee}", Some(&t)),
            "{code}: pay 25.00 EUR to ACME Ltd"
        );
    }
}
