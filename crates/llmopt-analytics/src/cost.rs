//! Exact cost breakdowns by model, provider, tenant, tag value and period.
//!
//! Sums are [`Money`] (integer picodollars), so a breakdown adds up exactly to the total and
//! the order records arrive in does not change a single picodollar. Records whose cost is
//! unknown are counted separately rather than treated as free.

use std::collections::BTreeMap;

use llmopt_core::{Money, RequestRecord};
use serde::Serialize;

/// What to group by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum CostDimension {
    /// The model that answered.
    Model,
    Provider,
    /// Tenant id (`""` for records without a tenant).
    Tenant,
    /// Value of one tag key (`""` when the record lacks it).
    Tag(String),
    /// Start of the period (ms since the epoch) in windows of this many milliseconds.
    Period {
        window_ms: i64,
    },
}

impl CostDimension {
    fn key_of(&self, record: &RequestRecord) -> String {
        match self {
            CostDimension::Model => record.served_model.0.clone(),
            CostDimension::Provider => record.provider.0.clone(),
            CostDimension::Tenant => {
                record.tenant.as_ref().map(|t| t.0.clone()).unwrap_or_default()
            }
            CostDimension::Tag(key) => record.tags.get(key).cloned().unwrap_or_default(),
            CostDimension::Period { window_ms } => {
                let window = (*window_ms).max(1);
                (record.ts_ms.div_euclid(window) * window).to_string()
            }
        }
    }
}

/// One group of a breakdown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostRow {
    pub key: String,
    pub requests: u64,
    /// Sum of known costs.
    pub cost: Money,
    /// Records in the group whose cost is unknown.
    pub cost_unknown: u64,
    /// Provider cost avoided by gateway cache hits.
    pub saved: Money,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Share of the total known cost.
    pub share: f64,
}

/// A breakdown: rows sorted by cost (largest first, then key), and the exact total.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostBreakdown {
    pub rows: Vec<CostRow>,
    pub total: Money,
    pub requests: u64,
}

/// Groups records by `dimension`.
pub fn cost_breakdown<'a>(
    records: impl IntoIterator<Item = &'a RequestRecord>,
    dimension: &CostDimension,
) -> CostBreakdown {
    let mut groups: BTreeMap<String, CostRow> = BTreeMap::new();
    for record in records {
        let key = dimension.key_of(record);
        let row = groups.entry(key.clone()).or_insert_with(|| CostRow {
            key,
            requests: 0,
            cost: Money::ZERO,
            cost_unknown: 0,
            saved: Money::ZERO,
            input_tokens: 0,
            output_tokens: 0,
            share: 0.0,
        });
        row.requests += 1;
        match record.cost {
            Some(cost) => row.cost += cost,
            None => row.cost_unknown += 1,
        }
        if let Some(saved) = record.saved_cost {
            row.saved += saved;
        }
        if let Some(usage) = &record.usage {
            row.input_tokens += usage.input_tokens;
            row.output_tokens += usage.output_tokens;
        }
    }
    let total: Money = groups.values().map(|row| row.cost).sum();
    let requests = groups.values().map(|row| row.requests).sum();
    let mut rows: Vec<CostRow> = groups.into_values().collect();
    for row in &mut rows {
        row.share =
            if total.is_zero() { 0.0 } else { row.cost.picos() as f64 / total.picos() as f64 };
    }
    rows.sort_by(|a, b| b.cost.cmp(&a.cost).then_with(|| a.key.cmp(&b.key)));
    CostBreakdown { rows, total, requests }
}

/// Per-period cost in dollars, one value per window from the first to the last record's window
/// (empty windows are zero): the series the forecaster and budget projection take.
pub fn cost_series(records: &[RequestRecord], window_ms: i64) -> Vec<(i64, Money)> {
    let window = window_ms.max(1);
    let mut by_window: BTreeMap<i64, Money> = BTreeMap::new();
    for record in records {
        *by_window.entry(record.ts_ms.div_euclid(window) * window).or_default() +=
            record.cost.unwrap_or(Money::ZERO);
    }
    let (Some(&first), Some(&last)) = (by_window.keys().next(), by_window.keys().next_back())
    else {
        return Vec::new();
    };
    (0..=(last - first) / window)
        .map(|i| {
            let start = first + i * window;
            (start, by_window.get(&start).copied().unwrap_or(Money::ZERO))
        })
        .collect()
}
