//! The optimizer's controls and state: proposals, experiments (list, show, stop, conclude,
//! approve), the policy and its flags, on-demand cycles, the audit log and adoptions. Reads need
//! a client key when authentication is on; writes need the admin token.

use axum::{
    Json,
    extract::{Path, State},
    http::HeaderMap,
};
use llmopt_core::AuditEntry;
use llmopt_optimizer::{FeatureFlag, Optimizer, OptimizerError, Policy};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    api::{ApiQuery, admin, blocking, parse, read_body, reader},
    error::ApiError,
    state::AppState,
};

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

/// An optimizer error as the API answers it: 404 when nothing is held or in force under the id.
fn optimizer_error(error: llmopt_optimizer::OptimizerError) -> ApiError {
    use llmopt_optimizer::OptimizerError::{NoSuchAdoption, NotAwaitingApproval};
    match error {
        NotAwaitingApproval(_) | NoSuchAdoption(_) => ApiError::not_found(error.to_string()),
        other => ApiError::internal(other.to_string()),
    }
}

/// `POST /api/experiments/{id}/approve` (admin): adopts a winner held in `experiment` mode.
pub async fn approve_experiment(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let optimizer = admin(&state, &headers)?;
    let adoption = blocking(move || optimizer.approve(&id)).await?.map_err(optimizer_error)?;
    Ok(Json(json!(adoption)))
}

/// `POST /api/adoptions/{id}/rollback` (admin): removes an adopted change (its rules and flag)
/// at once, with an audit entry; `{"reason": "…"}` is optional. 404 when no adoption of that
/// experiment id is in force (never adopted, or already rolled back).
pub async fn roll_back_adoption(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Body,
) -> Result<Json<Value>, ApiError> {
    let optimizer = admin(&state, &headers)?;
    let body: ConcludeBody = parse(&read_body(&state, body).await?, "rollback request")?;
    let reason =
        if body.reason.is_empty() { "rolled back through the API".to_owned() } else { body.reason };
    let adoption =
        blocking(move || optimizer.roll_back(&id, &reason)).await?.map_err(optimizer_error)?;
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
    // An on-demand cycle sees every call answered before it was asked for: the collector's
    // pending batch is written first (a store that refuses it is logged; the cycle reads what
    // is stored).
    let collector = state.collector().clone();
    let report = blocking(move || {
        if let Err(error) = collector.flush() {
            tracing::warn!(%error, "records not all written before the cycle");
        }
        optimizer.run_cycle()
    })
    .await?
    .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(json!(report)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    #[serde(default)]
    after: Option<u64>,
    #[serde(default = "default_limit")]
    limit: usize,
    /// The newest this many entries instead of a page after `after`.
    #[serde(default)]
    newest: Option<usize>,
}

/// The most audit entries one `GET /api/audit` returns (page with `after`).
pub const MAX_AUDIT_ENTRIES: usize = 10_000;

fn default_limit() -> usize {
    100
}

/// `GET /api/audit?after=SEQ&limit=N`: the optimizer's decisions, oldest first;
/// `GET /api/audit?newest=N`: the newest N of them, oldest first.
pub async fn audit(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    let optimizer = reader(&state, &headers)?;
    let (limit, what) = match query.newest {
        Some(newest) => (newest, "newest"),
        None => (query.limit, "limit"),
    };
    if !(1..=MAX_AUDIT_ENTRIES).contains(&limit) {
        return Err(ApiError::invalid_request(format!(
            "{what} must be between 1 and {MAX_AUDIT_ENTRIES} entries"
        )));
    }
    if query.newest.is_some() && query.after.is_some() {
        return Err(ApiError::invalid_request("`newest` and `after` cannot be used together"));
    }
    let after = query.after.unwrap_or(0);
    let entries = blocking(move || match query.newest {
        Some(newest) => newest_audit_entries(&optimizer, newest),
        None => optimizer.audit_log(after, limit),
    })
    .await?
    .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(json!({"entries": entries})))
}

/// The newest `count` audit entries, oldest first. The store pages forwards only and its
/// sequence numbers have gaps (sled's id generator), so this searches for the `after` that
/// leaves exactly `count` entries: "at least `count` entries after `seq`" only turns from true
/// to false once as `seq` grows. O(log(newest seq)) reads of at most `count` entries each.
pub(crate) fn newest_audit_entries(
    optimizer: &Optimizer,
    count: usize,
) -> Result<Vec<AuditEntry>, OptimizerError> {
    let enough_after = |seq: u64| -> Result<bool, OptimizerError> {
        Ok(optimizer.audit_log(seq, count)?.len() == count)
    };
    if count == 0 || !enough_after(0)? {
        // Fewer than `count` entries in all: every one of them.
        return optimizer.audit_log(0, count);
    }
    // Invariant: enough entries after `low`, too few after `high`.
    let mut low = 0u64;
    let mut high = 1u64;
    while enough_after(high)? {
        low = high;
        high = high.saturating_mul(2);
        if high == u64::MAX {
            break;
        }
    }
    while high - low > 1 {
        let middle = low + (high - low) / 2;
        if enough_after(middle)? {
            low = middle;
        } else {
            high = middle;
        }
    }
    // At least `count` entries after `low` and fewer after `low + 1`: exactly `count`.
    optimizer.audit_log(low, count)
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
