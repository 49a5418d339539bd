//! Reports over the stored calls: usage and exact cost per window and group, cost forecasts
//! with a budget projection, and workload clusters.

use axum::{Json, extract::State, http::HeaderMap};
use llmopt_analytics::{
    cluster::{FeatureSpec, cluster_records},
    forecast::{dense_series, fit_auto, project_budget},
};
use llmopt_core::{AggregateQuery, GroupBy, Money, RecordFilter, RecordQuery};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    api::{ApiQuery, auth_error, authorize, blocking},
    auth::Access,
    error::ApiError,
    state::AppState,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// Start, ms since the epoch (default: 24 h ago).
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    /// Window length in ms (default: one hour).
    window_ms: Option<i64>,
    /// `total`, `model`, `provider`, `tenant` or `tag:KEY`.
    group_by: Option<String>,
    model: Option<String>,
    tenant: Option<String>,
}

/// The most windows one report may span: its work and its answer are bounded before it starts
/// (a week of records in one-millisecond windows would otherwise allocate a bucket each).
pub const MAX_WINDOWS: i64 = 10_000;

/// The fewest complete windows since the first call that `/api/forecast` fits a model to;
/// with fewer it answers `horizon_total: null` and `not_enough_history`.
pub const MIN_FORECAST_WINDOWS: usize = 4;

/// Checks a report's time range and window before any work: a 400 that names the limit.
fn check_windows(from_ms: i64, to_ms: i64, window_ms: i64) -> Result<(), ApiError> {
    if window_ms <= 0 {
        return Err(ApiError::invalid_request("window_ms must be positive"));
    }
    let span = to_ms.checked_sub(from_ms).filter(|span| *span >= 0).ok_or_else(|| {
        ApiError::invalid_request(format!("the range [{from_ms}, {to_ms}) is empty or reversed"))
    })?;
    let windows = span / window_ms + i64::from(span % window_ms != 0);
    if windows > MAX_WINDOWS {
        return Err(ApiError::invalid_request(format!(
            "the range spans {windows} windows of {window_ms} ms; at most {MAX_WINDOWS} are \
             allowed: use a longer window_ms or a shorter range"
        )));
    }
    Ok(())
}

fn group_by(text: Option<&str>) -> Result<GroupBy, ApiError> {
    Ok(match text.unwrap_or("model") {
        "total" => GroupBy::Total,
        "model" => GroupBy::Model,
        "provider" => GroupBy::Provider,
        "tenant" => GroupBy::Tenant,
        other => match other.strip_prefix("tag:") {
            Some(key) if !key.is_empty() => GroupBy::Tag(key.to_owned()),
            _ => {
                return Err(ApiError::invalid_request(format!(
                    "group_by `{other}`: expected total, model, provider, tenant or tag:KEY"
                )));
            }
        },
    })
}

/// `GET /api/usage`: requests, tokens, exact cost and latency per window and group, from the store.
pub async fn usage(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<UsageQuery>,
) -> Result<Json<Value>, ApiError> {
    let caller = authorize(&state, &headers, Access::Client)?;
    let tenant = caller.report_tenant(query.tenant).map_err(auth_error)?;
    let now = state.clock().now_ms();
    let aggregate = AggregateQuery {
        from_ms: query.from_ms.unwrap_or(now.saturating_sub(86_400_000)),
        to_ms: query.to_ms.unwrap_or(now.saturating_add(1)),
        window_ms: query.window_ms.unwrap_or(3_600_000),
        group_by: group_by(query.group_by.as_deref())?,
        filter: RecordFilter { model: query.model, tenant, ..RecordFilter::default() },
    };
    aggregate.validate().map_err(|e| ApiError::invalid_request(e.to_string()))?;
    check_windows(aggregate.from_ms, aggregate.to_ms, aggregate.window_ms)?;
    let records = state.records().clone();
    let rows = blocking(move || records.aggregate(&aggregate))
        .await?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let total: Money = rows.iter().map(|row| row.cost).sum();
    Ok(Json(
        json!({"rows": rows, "total_cost_usd": total.as_usd_f64(), "total_cost_picodollars": total.picos().to_string()}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForecastQuery {
    /// Window of the cost series, ms (default one hour).
    window_ms: Option<i64>,
    /// Windows to forecast (default 24).
    horizon: Option<usize>,
    /// History to fit on, ms (default 7 days).
    history_ms: Option<i64>,
    /// Budget for the forecast horizon in USD: adds the probability of going over it.
    budget_usd: Option<f64>,
    /// The admin's choice of tenant (a client key always forecasts its own).
    tenant: Option<String>,
}

/// `GET /api/forecast`: cost per window, the best of linear / Holt / Holt–Winters by hold-out
/// error, with 95 % intervals and an optional budget projection.
pub async fn forecast(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<ForecastQuery>,
) -> Result<Json<Value>, ApiError> {
    let caller = authorize(&state, &headers, Access::Client)?;
    let tenant = caller.report_tenant(query.tenant.clone()).map_err(auth_error)?;
    let window_ms = query.window_ms.unwrap_or(3_600_000);
    let horizon = query.horizon.unwrap_or(24);
    if !(1..=MAX_WINDOWS as usize).contains(&horizon) {
        return Err(ApiError::invalid_request(format!(
            "horizon must be between 1 and {MAX_WINDOWS} windows"
        )));
    }
    if let Some(budget) = query.budget_usd
        && !(budget.is_finite() && budget >= 0.0)
    {
        return Err(ApiError::invalid_request("budget_usd must be a non-negative number"));
    }
    let now = state.clock().now_ms();
    let from = now.saturating_sub(query.history_ms.unwrap_or(7 * 86_400_000));
    check_windows(from, now, window_ms)?;
    let records = state.records().clone();
    let result = blocking(move || -> Result<Value, String> {
        let rows = records
            .aggregate(&AggregateQuery {
                from_ms: from,
                to_ms: now,
                window_ms,
                group_by: GroupBy::Total,
                filter: RecordFilter { tenant, ..RecordFilter::default() },
            })
            .map_err(|e| e.to_string())?;
        // Dense series: windows without traffic cost zero.
        let first = rows.first().map_or(now, |row| row.window_start_ms);
        let points = rows.iter().map(|row| (row.window_start_ms, row.cost.as_usd_f64()));
        let series: Vec<f64> =
            dense_series(points, window_ms, first, now).into_iter().map(|(_, cost)| cost).collect();
        // Too little history to fit (a tenant's first minutes): an answer without a forecast,
        // not an error, so a new tenant's dashboard says so instead of failing.
        if series.len() < MIN_FORECAST_WINDOWS {
            return Ok(json!({"window_ms": window_ms, "history": series, "method": null,
                             "forecast": [], "budget": null, "horizon_total": null,
                             "not_enough_history": {"windows": series.len(),
                                                    "needed": MIN_FORECAST_WINDOWS}}));
        }
        // Daily seasonality when the windows divide a day and there are three days of history.
        let period = (86_400_000 % window_ms == 0)
            .then(|| (86_400_000 / window_ms) as usize)
            .filter(|&period| period >= 2 && series.len() >= 3 * period);
        let holdout = (series.len() / 5).max(1);
        let fitted = fit_auto(&series, period, holdout).map_err(|e| e.to_string())?;
        let forecast = fitted.model.forecast(horizon, 0.95).map_err(|e| e.to_string())?;
        let budget = query
            .budget_usd
            .map(|budget| {
                let budget = Money::from_usd_f64(budget).unwrap_or(Money::ZERO);
                project_budget(&fitted.model, Money::ZERO, horizon, budget)
            })
            .transpose()
            .map_err(|e| e.to_string())?;
        // The horizon's total with its 95 % interval: the forecast errors' covariance across
        // windows is in `project_budget`'s variance, so this is not the sum of the per-window
        // bounds (which would overstate it).
        let total = project_budget(&fitted.model, Money::ZERO, horizon, Money::ZERO)
            .map_err(|e| e.to_string())?;
        let horizon_total = json!({
            "projected_usd": total.projected_remaining_usd,
            "lower_usd": total.lower_usd,
            "upper_usd": total.upper_usd,
            "confidence": 0.95,
        });
        Ok(json!({"window_ms": window_ms, "history": series, "method": fitted.model.method,
                  "candidates": fitted.scores, "forecast": forecast, "budget": budget,
                  "horizon_total": horizon_total}))
    })
    .await?
    .map_err(|message| ApiError::invalid_request(format!("cannot forecast: {message}")))?;
    Ok(Json(result))
}

/// `GET /api/clusters`: workload clusters of the last day's records (k by silhouette).
pub async fn clusters(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let caller = authorize(&state, &headers, Access::Client)?;
    let tenant = caller.only_tenant().map(str::to_owned);
    let records = state.records().clone();
    let now = state.clock().now_ms();
    let result = blocking(move || -> Result<Value, String> {
        let mut query = RecordQuery::range(now - 86_400_000, now + 1);
        query.filter.tenant = tenant;
        // Bounded work: at most this many records are read and clustered.
        query.limit = Some(200_000);
        let mut records = records.scan(&query).map_err(|e| e.to_string())?;
        // Calls whose usage never arrived (errors, cut streams) have no token features to be
        // placed by; they are left out rather than fail the whole clustering.
        records.retain(|record| record.usage.is_some());
        let clusters = cluster_records(&records, &FeatureSpec::default(), 2..=8, 42)
            .map_err(|e| e.to_string())?;
        Ok(json!(clusters))
    })
    .await?
    .map_err(|message| ApiError::invalid_request(format!("cannot cluster: {message}")))?;
    Ok(Json(result))
}
