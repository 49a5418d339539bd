//! `/api` routes of the closed loop and the reports: proposals, experiments (list, show, stop,
//! conclude, approve), the policy and its flags, on-demand cycles, the audit log, adoptions,
//! usage and cost aggregates, forecasts and workload clusters. Reads need a client key when
//! authentication is on; writes need the admin token.

use std::{collections::BTreeMap, sync::Arc};

use axum::{
    Json,
    extract::{Path, Query, State},
    http::HeaderMap,
};
use llmopt_analytics::{
    cluster::{FeatureSpec, cluster_records},
    forecast::{fit_auto, project_budget},
};
use llmopt_core::{AggregateQuery, GroupBy, Money, RecordFilter, RecordQuery};
use llmopt_optimizer::{FeatureFlag, Optimizer, Policy};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    api::{auth_error, read_body},
    error::ApiError,
    state::AppState,
};

fn optimizer(state: &AppState) -> Result<Arc<Optimizer>, ApiError> {
    state
        .closed_loop()
        .map(|closed_loop| closed_loop.optimizer().clone())
        .ok_or_else(|| ApiError::not_found("the optimizer is not running in this process"))
}

fn reader(state: &AppState, headers: &HeaderMap) -> Result<Arc<Optimizer>, ApiError> {
    state.runtime().auth.authenticate(headers).map_err(auth_error)?;
    optimizer(state)
}

fn admin(state: &AppState, headers: &HeaderMap) -> Result<Arc<Optimizer>, ApiError> {
    state.runtime().auth.authorize_admin(headers).map_err(auth_error)?;
    optimizer(state)
}

fn experiment_error(error: llmopt_experiments::Error) -> ApiError {
    use llmopt_experiments::Error as E;
    match error {
        E::NotFound(_) => ApiError::not_found(error.to_string()),
        E::UnknownArm { .. }
        | E::InvalidSpec { .. }
        | E::InvalidTransition { .. }
        | E::Overlap { .. }
        | E::AlreadyExists(_) => ApiError::new(
            axum::http::StatusCode::CONFLICT,
            llmopt_core::ErrorKind::InvalidRequest,
            error.to_string(),
        ),
        other => ApiError::internal(other.to_string()),
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::internal(format!("task failed: {e}")))
}

/// `GET /api/proposals`: the last cycle's proposals, best saving first.
pub async fn proposals(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let optimizer = reader(&state, &headers)?;
    Ok(Json(json!({"proposals": optimizer.proposals()})))
}

/// `GET /api/experiments`.
pub async fn experiments(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let optimizer = reader(&state, &headers)?;
    Ok(Json(json!({"experiments": optimizer.engine().list()})))
}

/// `GET /api/experiments/{id}`.
pub async fn experiment(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let optimizer = reader(&state, &headers)?;
    let experiment = optimizer.engine().show(&id).map_err(experiment_error)?;
    Ok(Json(json!(experiment)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConcludeBody {
    #[serde(default)]
    arm: Option<String>,
    #[serde(default)]
    reason: String,
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ApiError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) { b"{}".as_slice() } else { body };
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_request(format!("invalid {what}: {e}")))
}

/// `POST /api/experiments/{id}/stop` (admin): `{"reason": "…"}`.
pub async fn stop_experiment(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Body,
) -> Result<Json<Value>, ApiError> {
    let optimizer = admin(&state, &headers)?;
    let body: ConcludeBody = parse(&read_body(&state, body).await?, "stop request")?;
    let reason =
        if body.reason.is_empty() { "stopped through the API".to_owned() } else { body.reason };
    let experiment =
        blocking(move || optimizer.engine().stop(&id, &reason)).await?.map_err(experiment_error)?;
    Ok(Json(json!(experiment)))
}

/// `POST /api/experiments/{id}/conclude` (admin): `{"arm": "treatment" | null, "reason": "…"}`.
pub async fn conclude_experiment(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Body,
) -> Result<Json<Value>, ApiError> {
    let optimizer = admin(&state, &headers)?;
    let body: ConcludeBody = parse(&read_body(&state, body).await?, "conclude request")?;
    let reason =
        if body.reason.is_empty() { "concluded through the API".to_owned() } else { body.reason };
    let experiment =
        blocking(move || optimizer.engine().conclude(&id, body.arm.as_deref(), &reason))
            .await?
            .map_err(experiment_error)?;
    Ok(Json(json!(experiment)))
}

/// `POST /api/experiments/{id}/approve` (admin): adopts a winner held in `experiment` mode.
pub async fn approve_experiment(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let optimizer = admin(&state, &headers)?;
    let adoption = blocking(move || optimizer.approve(&id)).await?.map_err(|e| match e {
        llmopt_optimizer::OptimizerError::NotAwaitingApproval(_) => {
            ApiError::not_found(e.to_string())
        }
        other => ApiError::internal(other.to_string()),
    })?;
    Ok(Json(json!(adoption)))
}

/// `GET /api/policy`: the policy in force and its version.
pub async fn policy(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let optimizer = reader(&state, &headers)?;
    let current = optimizer.policy().current();
    Ok(Json(json!({"version": current.version, "policy": current.policy})))
}

/// `PUT /api/policy` (admin): replaces the policy (validated; the old one stays on error).
pub async fn replace_policy(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Json<Value>, ApiError> {
    let optimizer = admin(&state, &headers)?;
    let policy: Policy = parse(&read_body(&state, body).await?, "policy")?;
    let now_ms = state.clock().now_ms();
    let version =
        blocking(move || optimizer.policy().replace(policy, "replaced through the API", now_ms))
            .await?
            .map_err(|e| ApiError::invalid_request(e.to_string()))?;
    Ok(Json(json!({"version": version})))
}

/// `PUT /api/policy/flags/{name}` (admin): creates or changes one flag (switch off, ramp).
pub async fn set_flag(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: axum::body::Body,
) -> Result<Json<Value>, ApiError> {
    let optimizer = admin(&state, &headers)?;
    let flag: FeatureFlag = parse(&read_body(&state, body).await?, "flag")?;
    let now_ms = state.clock().now_ms();
    let version = blocking(move || {
        optimizer.policy().update(&format!("flag {name} set through the API"), now_ms, |policy| {
            policy.flags.insert(name.clone(), flag);
        })
    })
    .await?
    .map_err(|e| ApiError::invalid_request(e.to_string()))?;
    Ok(Json(json!({"version": version})))
}

/// `POST /api/optimize` (admin): runs one cycle now and returns what it did.
pub async fn optimize(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let optimizer = admin(&state, &headers)?;
    let report = blocking(move || optimizer.run_cycle())
        .await?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(json!(report)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    #[serde(default)]
    after: u64,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    100
}

/// `GET /api/audit?after=SEQ&limit=N`: the optimizer's decisions, oldest first.
pub async fn audit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    let optimizer = reader(&state, &headers)?;
    let limit = query.limit.min(10_000);
    let entries = blocking(move || optimizer.audit_log(query.after, limit))
        .await?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(json!({"entries": entries})))
}

/// `GET /api/adoptions`: adopted changes with their measured savings.
pub async fn adoptions(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let optimizer = reader(&state, &headers)?;
    Ok(Json(json!({
        "adoptions": optimizer.adoptions(),
        "quality_budget_used": optimizer.quality_budget_used(),
        "pending_approval": optimizer.pending_approvals(),
    })))
}

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
    Query(query): Query<UsageQuery>,
) -> Result<Json<Value>, ApiError> {
    state.runtime().auth.authenticate(&headers).map_err(auth_error)?;
    let now = state.clock().now_ms();
    let aggregate = AggregateQuery {
        from_ms: query.from_ms.unwrap_or(now - 86_400_000),
        to_ms: query.to_ms.unwrap_or(now + 1),
        window_ms: query.window_ms.unwrap_or(3_600_000),
        group_by: group_by(query.group_by.as_deref())?,
        filter: RecordFilter {
            model: query.model,
            tenant: query.tenant,
            ..RecordFilter::default()
        },
    };
    aggregate.validate().map_err(|e| ApiError::invalid_request(e.to_string()))?;
    let records = optimizer_records(&state)?;
    let rows = blocking(move || records.aggregate(&aggregate))
        .await?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let total: Money = rows.iter().map(|row| row.cost).sum();
    Ok(Json(
        json!({"rows": rows, "total_cost_usd": total.as_usd_f64(), "total_cost_picodollars": total.picos().to_string()}),
    ))
}

fn optimizer_records(state: &AppState) -> Result<Arc<dyn llmopt_core::RecordStore>, ApiError> {
    state.records().ok_or_else(|| ApiError::not_found("no record store in this process"))
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
}

/// `GET /api/forecast`: cost per window, the best of linear / Holt / Holt–Winters by hold-out
/// error, with 95 % intervals and an optional budget projection.
pub async fn forecast(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<ForecastQuery>,
) -> Result<Json<Value>, ApiError> {
    state.runtime().auth.authenticate(&headers).map_err(auth_error)?;
    let window_ms = query.window_ms.unwrap_or(3_600_000);
    let horizon = query.horizon.unwrap_or(24).clamp(1, 10_000);
    if window_ms <= 0 {
        return Err(ApiError::invalid_request("window_ms must be positive"));
    }
    if let Some(budget) = query.budget_usd
        && !(budget.is_finite() && budget >= 0.0)
    {
        return Err(ApiError::invalid_request("budget_usd must be a non-negative number"));
    }
    let now = state.clock().now_ms();
    let from = now - query.history_ms.unwrap_or(7 * 86_400_000);
    let records = optimizer_records(&state)?;
    let result = blocking(move || -> Result<Value, String> {
        let rows = records
            .aggregate(&AggregateQuery {
                from_ms: from,
                to_ms: now,
                window_ms,
                group_by: GroupBy::Total,
                filter: RecordFilter::default(),
            })
            .map_err(|e| e.to_string())?;
        // Dense series: windows without traffic cost zero.
        let first = rows.first().map_or(now, |row| row.window_start_ms);
        let count = ((now - first) / window_ms).max(0) as usize;
        let mut series = vec![0.0; count];
        let by_window: BTreeMap<i64, f64> =
            rows.iter().map(|r| (r.window_start_ms, r.cost.as_usd_f64())).collect();
        for (index, value) in series.iter_mut().enumerate() {
            *value = by_window.get(&(first + index as i64 * window_ms)).copied().unwrap_or(0.0);
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
        Ok(json!({"window_ms": window_ms, "history": series, "method": fitted.model.method,
                  "candidates": fitted.scores, "forecast": forecast, "budget": budget}))
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
    state.runtime().auth.authenticate(&headers).map_err(auth_error)?;
    let records = optimizer_records(&state)?;
    let now = state.clock().now_ms();
    let result = blocking(move || -> Result<Value, String> {
        let mut query = RecordQuery::range(now - 86_400_000, now + 1);
        query.limit = Some(200_000);
        let records = records.scan(&query).map_err(|e| e.to_string())?;
        let clusters = cluster_records(&records, &FeatureSpec::default(), 2..=8, 42)
            .map_err(|e| e.to_string())?;
        Ok(json!(clusters))
    })
    .await?
    .map_err(|message| ApiError::invalid_request(format!("cannot cluster: {message}")))?;
    Ok(Json(result))
}
