//! Virtual keys: client keys the admin creates and revokes at run time, each with a tenant, an
//! optional budget over a UTC day or month, the models it may ask for, a request rate and an
//! expiry. Only the SHA-256 digest of a key is stored, as for the configuration's keys; the
//! key itself is shown once, when it is made.
//!
//! [`KeyStore`] is the storage seam (in memory here, sled in `llmopt-storage`, one conformance
//! suite for both in [`crate::testsuite`]). Spend is not stored with the key: it is the sum of
//! the costs of the key's records in the current period, which the gateway keeps in memory and
//! rebuilds from the record store when it starts.

use serde::{Deserialize, Serialize};

use crate::{money::Money, pattern::glob_matches, store::StoreError};

const DAY_MS: i64 = 86_400_000;

/// The period a budget applies to, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetPeriod {
    Day,
    #[default]
    Month,
}

impl BudgetPeriod {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetPeriod::Day => "day",
            BudgetPeriod::Month => "month",
        }
    }

    /// Start of the period holding `ts_ms` (UTC midnight, or midnight of the month's first day).
    pub fn start_ms(self, ts_ms: i64) -> i64 {
        let day = ts_ms.div_euclid(DAY_MS);
        match self {
            BudgetPeriod::Day => day * DAY_MS,
            BudgetPeriod::Month => {
                let (year, month, _) = civil_from_days(day);
                days_from_civil(year, month, 1) * DAY_MS
            }
        }
    }

    /// End (exclusive) of the period holding `ts_ms`.
    pub fn end_ms(self, ts_ms: i64) -> i64 {
        let day = ts_ms.div_euclid(DAY_MS);
        match self {
            BudgetPeriod::Day => (day + 1) * DAY_MS,
            BudgetPeriod::Month => {
                let (year, month, _) = civil_from_days(day);
                let (year, month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
                days_from_civil(year, month, 1) * DAY_MS
            }
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day number (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = u32::try_from(day_of_year - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A key made at run time. Never holds the key itself, only its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualKey {
    /// Public identifier (`key_…`), shown in lists, records (tag `llmopt.key`) and metrics.
    pub id: String,
    /// Lowercase hex SHA-256 of the key.
    pub sha256: String,
    pub tenant: String,
    /// Spend allowed per period; `None`: no budget (spend is still counted).
    #[serde(default)]
    pub budget: Option<Money>,
    #[serde(default)]
    pub budget_period: BudgetPeriod,
    /// Model ids or globs the key may ask for; empty: every model.
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    #[serde(default)]
    pub expires_at_ms: Option<i64>,
    pub created_ms: i64,
    #[serde(default)]
    pub revoked_ms: Option<i64>,
}

impl VirtualKey {
    /// Whether the key may ask for `model` (an exact id or a glob of its list matches).
    pub fn allows_model(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|pattern| glob_matches(pattern, model))
    }

    pub fn is_expired(&self, now_ms: i64) -> bool {
        self.expires_at_ms.is_some_and(|at| now_ms >= at)
    }
}

/// Storage of virtual keys. Keys are few and read once at start (the gateway keeps them in
/// memory), so the seam is small: insert, read, list, revoke. A revoked key stays stored with
/// its revocation time, so its id keeps meaning something in records and audits.
pub trait KeyStore: Send + Sync + std::fmt::Debug {
    /// Adds a new key. [`StoreError::Conflict`] when its id or its digest is already stored.
    fn insert(&self, key: &VirtualKey) -> Result<(), StoreError>;
    fn get(&self, id: &str) -> Result<Option<VirtualKey>, StoreError>;
    /// Every key, revoked ones included, ordered by id.
    fn list(&self) -> Result<Vec<VirtualKey>, StoreError>;
    /// Marks the key revoked at `at_ms`. `Ok(false)` when the id is unknown; revoking a revoked
    /// key keeps its first revocation time.
    fn revoke(&self, id: &str, at_ms: i64) -> Result<bool, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-02-29T13:00:00Z (a leap day).
    const LEAP_DAY_1PM: i64 = 1_709_211_600_000;

    #[test]
    fn periods_are_utc_days_and_months() {
        let day = BudgetPeriod::Day;
        assert_eq!(day.start_ms(LEAP_DAY_1PM), 1_709_164_800_000); // 2024-02-29T00:00Z
        assert_eq!(day.end_ms(LEAP_DAY_1PM), 1_709_251_200_000); // 2024-03-01T00:00Z
        let month = BudgetPeriod::Month;
        assert_eq!(month.start_ms(LEAP_DAY_1PM), 1_706_745_600_000); // 2024-02-01T00:00Z
        assert_eq!(month.end_ms(LEAP_DAY_1PM), 1_709_251_200_000); // 2024-03-01T00:00Z
        // December rolls into the next year: 2025-12-31T23:59:59.999Z.
        let new_year_eve = 1_767_225_599_999;
        assert_eq!(month.start_ms(new_year_eve), 1_764_547_200_000); // 2025-12-01T00:00Z
        assert_eq!(month.end_ms(new_year_eve), 1_767_225_600_000); // 2026-01-01T00:00Z
        assert_eq!(month.start_ms(1_767_225_600_000), 1_767_225_600_000);
        // Before the epoch.
        assert_eq!(day.start_ms(-1), -DAY_MS);
        assert_eq!(month.start_ms(-1), -31 * DAY_MS); // 1969-12-01
    }

    #[test]
    fn civil_dates_round_trip_over_four_centuries() {
        for day in (-200_000..200_000).step_by(7) {
            let (year, month, day_of_month) = civil_from_days(day);
            assert_eq!(days_from_civil(year, month, day_of_month), day);
        }
    }

    #[test]
    fn models_are_ids_or_globs() {
        let mut key = VirtualKey {
            id: "key_1".into(),
            sha256: "0".repeat(64),
            tenant: "t".into(),
            budget: None,
            budget_period: BudgetPeriod::Month,
            models: Vec::new(),
            requests_per_minute: None,
            expires_at_ms: Some(10),
            created_ms: 0,
            revoked_ms: None,
        };
        assert!(key.allows_model("anything"));
        key.models = vec!["gpt-4o-mini".into(), "claude-*".into()];
        assert!(key.allows_model("gpt-4o-mini"));
        assert!(key.allows_model("claude-haiku-4-5"));
        assert!(!key.allows_model("gpt-4o"));
        assert!(!key.is_expired(9));
        assert!(key.is_expired(10));
    }
}
