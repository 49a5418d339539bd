//! Exact money: integer picodollars.

use std::{
    fmt,
    iter::Sum,
    ops::{Add, AddAssign, Mul, Neg, Sub, SubAssign},
};

use serde::{Deserialize, Serialize};

/// An amount of US dollars as an integer number of picodollars (10⁻¹² USD).
///
/// A price of `$X` per million tokens is `X × 10⁶` picodollars per token, an exact integer for
/// every price published with up to six decimals. `i128` holds about 1.7 × 10¹⁴ dollars, so
/// sums never overflow in practice; arithmetic saturates rather than wrap if they ever would.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Money(pub i128);

pub const PICOS_PER_USD: i128 = 1_000_000_000_000;

impl Money {
    pub const ZERO: Money = Money(0);

    pub const fn from_picos(picos: i128) -> Money {
        Money(picos)
    }

    pub const fn picos(self) -> i128 {
        self.0
    }

    pub const fn from_micros(micros: i64) -> Money {
        Money(micros as i128 * 1_000_000)
    }

    /// Parses a decimal dollar amount such as `"3.75"` or `"0.000001"` exactly.
    /// Returns `None` for anything that is not a plain decimal with at most 12 fractional digits.
    pub fn from_usd_str(text: &str) -> Option<Money> {
        let text = text.trim();
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        if whole.is_empty() && fraction.is_empty() {
            return None;
        }
        if fraction.len() > 12
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !fraction.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let whole: i128 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
        let mut frac_picos: i128 = if fraction.is_empty() { 0 } else { fraction.parse().ok()? };
        for _ in fraction.len()..12 {
            frac_picos *= 10;
        }
        let picos = whole.checked_mul(PICOS_PER_USD)?.checked_add(frac_picos)?;
        Some(Money(if negative { -picos } else { picos }))
    }

    /// Converts a float amount of dollars, rounding to the nearest picodollar. Only for inputs
    /// that arrive as floats (the LiteLLM price map, JSON ingest); never used to add money up.
    pub fn from_usd_f64(usd: f64) -> Option<Money> {
        if !usd.is_finite() {
            return None;
        }
        let picos = (usd * PICOS_PER_USD as f64).round();
        if picos.abs() > 1e36 {
            return None;
        }
        Some(Money(picos as i128))
    }

    /// The amount in dollars as a float, for display and statistics only.
    pub fn as_usd_f64(self) -> f64 {
        self.0 as f64 / PICOS_PER_USD as f64
    }

    pub fn checked_mul_tokens(self, tokens: u64) -> Option<Money> {
        self.0.checked_mul(i128::from(tokens)).map(Money)
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Money {
    /// `$1.234567` with six decimals; exact amounts are in [`Money::picos`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let micros = (abs + 500_000) / 1_000_000;
        write!(f, "{sign}${}.{:06}", micros / 1_000_000, micros % 1_000_000)
    }
}

impl Add for Money {
    type Output = Money;
    fn add(self, rhs: Money) -> Money {
        Money(self.0.saturating_add(rhs.0))
    }
}

impl AddAssign for Money {
    fn add_assign(&mut self, rhs: Money) {
        self.0 = self.0.saturating_add(rhs.0);
    }
}

impl Sub for Money {
    type Output = Money;
    fn sub(self, rhs: Money) -> Money {
        Money(self.0.saturating_sub(rhs.0))
    }
}

impl SubAssign for Money {
    fn sub_assign(&mut self, rhs: Money) {
        self.0 = self.0.saturating_sub(rhs.0);
    }
}

impl Neg for Money {
    type Output = Money;
    fn neg(self) -> Money {
        Money(self.0.saturating_neg())
    }
}

impl Mul<u64> for Money {
    type Output = Money;
    fn mul(self, tokens: u64) -> Money {
        Money(self.0.saturating_mul(i128::from(tokens)))
    }
}

impl Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        iter.fold(Money::ZERO, Add::add)
    }
}

impl<'a> Sum<&'a Money> for Money {
    fn sum<I: Iterator<Item = &'a Money>>(iter: I) -> Money {
        iter.copied().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimal_dollars_exactly() {
        assert_eq!(Money::from_usd_str("3.75"), Some(Money(3_750_000_000_000)));
        assert_eq!(Money::from_usd_str("0.000001"), Some(Money(1_000_000)));
        assert_eq!(Money::from_usd_str("-1"), Some(Money(-PICOS_PER_USD)));
        assert_eq!(Money::from_usd_str(".5"), Some(Money(PICOS_PER_USD / 2)));
        assert_eq!(Money::from_usd_str("1e3"), None);
        assert_eq!(Money::from_usd_str(""), None);
        assert_eq!(Money::from_usd_str("0.0000000000001"), None);
    }

    #[test]
    fn floats_round_to_the_nearest_picodollar() {
        assert_eq!(Money::from_usd_f64(3e-6), Some(Money(3_000_000)));
        assert_eq!(Money::from_usd_f64(1.25e-7), Some(Money(125_000)));
        assert_eq!(Money::from_usd_f64(f64::NAN), None);
    }

    #[test]
    fn a_million_small_amounts_sum_exactly() {
        // 0.1 micro-dollar a million times: a float drifts, picodollars do not.
        let total: Money = std::iter::repeat_n(Money(100_000), 1_000_000).sum();
        assert_eq!(total, Money(100_000_000_000));
        assert_eq!(total.to_string(), "$0.100000");
    }
}
