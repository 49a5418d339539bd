//! Virtual keys and their budgets: `POST /api/keys` (admin: make a key, shown once),
//! `GET /api/keys` (admin: every key without its secret, with its spend), `DELETE /api/keys/{id}`
//! (admin: revoke at once), and `GET /api/budgets` (spend, budget and a projection of the
//! period's end; the admin sees every key, a client key its own tenant's).

use axum::{
    Json,
    body::Body,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use llmopt_core::{BudgetPeriod, Money};
use serde::Deserialize;
use serde_json::{Value, json, value::RawValue};

use crate::{
    api::{authorize, blocking, parse, read_body},
    auth::Access,
    error::ApiError,
    keys::{KeyEntry, KeyError, NewKey},
    state::AppState,
};

/// The most models a key may list, and the longest tenant or model pattern.
const MAX_MODELS: usize = 256;
const MAX_NAME_BYTES: usize = 256;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    tenant: String,
    /// A JSON number or string, read as written (exactly, as a decimal).
    #[serde(default)]
    budget_usd: Option<Box<RawValue>>,
    #[serde(default)]
    budget_period: Option<BudgetPeriod>,
    #[serde(default)]
    models: Vec<String>,
    #[serde(default)]
    requests_per_minute: Option<u32>,
    /// RFC 3339 text, or Unix seconds.
    #[serde(default)]
    expires_at: Option<Value>,
}

/// A dollar amount as written in the JSON text: `12.5` or `"12.5"`, at most 12 decimals, no
/// exponent, not negative. Read from the text so that no float rounding enters a budget.
fn parse_usd(raw: &RawValue) -> Result<Money, ApiError> {
    let text = raw.get().trim();
    let text = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(text);
    match Money::from_usd_str(text) {
        Some(money) if money >= Money::ZERO => Ok(money),
        _ => Err(ApiError::invalid_request(format!(
            "`budget_usd` must be a non-negative decimal amount such as 25 or \"0.50\" (at most \
             12 decimals, no exponent), not {text}"
        ))),
    }
}

fn parse_expiry(value: &Value, now_ms: i64) -> Result<i64, ApiError> {
    let at_ms = match value {
        Value::String(text) => {
            chrono::DateTime::parse_from_rfc3339(text).map(|at| at.timestamp_millis()).map_err(
                |e| ApiError::invalid_request(format!("`expires_at` is not RFC 3339 time: {e}")),
            )?
        }
        Value::Number(number) => number
            .as_i64()
            .and_then(|seconds| seconds.checked_mul(1_000))
            .ok_or_else(|| ApiError::invalid_request("`expires_at` must be whole Unix seconds"))?,
        _ => {
            return Err(ApiError::invalid_request(
                "`expires_at` must be RFC 3339 text or Unix seconds",
            ));
        }
    };
    if at_ms <= now_ms {
        return Err(ApiError::invalid_request("`expires_at` is in the past"));
    }
    Ok(at_ms)
}

fn validate(request: CreateKey, now_ms: i64) -> Result<NewKey, ApiError> {
    let tenant = request.tenant.trim().to_owned();
    if tenant.is_empty() || tenant.len() > MAX_NAME_BYTES {
        return Err(ApiError::invalid_request(format!(
            "`tenant` must be 1 to {MAX_NAME_BYTES} bytes"
        )));
    }
    if request.models.len() > MAX_MODELS {
        return Err(ApiError::invalid_request(format!("at most {MAX_MODELS} `models`")));
    }
    if let Some(model) =
        request.models.iter().find(|m| m.trim().is_empty() || m.len() > MAX_NAME_BYTES)
    {
        return Err(ApiError::invalid_request(format!(
            "model pattern `{model}` must be 1 to {MAX_NAME_BYTES} bytes"
        )));
    }
    if request.requests_per_minute == Some(0) {
        return Err(ApiError::invalid_request("`requests_per_minute` must be at least 1"));
    }
    let budget = request.budget_usd.as_deref().map(parse_usd).transpose()?;
    if request.budget_period.is_some() && budget.is_none() {
        return Err(ApiError::invalid_request("`budget_period` needs a `budget_usd`"));
    }
    let expires_at_ms = request.expires_at.as_ref().map(|v| parse_expiry(v, now_ms)).transpose()?;
    Ok(NewKey {
        tenant,
        budget,
        budget_period: request.budget_period.unwrap_or_default(),
        models: request.models,
        requests_per_minute: request.requests_per_minute,
        expires_at_ms,
    })
}

fn rfc3339(ms: i64) -> Value {
    chrono::DateTime::from_timestamp_millis(ms).map_or(Value::Null, |at| {
        Value::from(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    })
}

fn usd(money: Money) -> f64 {
    money.as_usd_f64()
}

/// A key as listed: never its secret.
fn describe(entry: &KeyEntry, now_ms: i64) -> Value {
    let key = &entry.key;
    let (spent, period_start, period_end) = entry.spend(now_ms);
    let status = if entry.revoked_ms().is_some() {
        "revoked"
    } else if key.is_expired(now_ms) {
        "expired"
    } else {
        "active"
    };
    json!({
        "id": key.id,
        "tenant": key.tenant,
        "status": status,
        "budget_usd": key.budget.map(usd),
        "budget_period": key.budget_period.as_str(),
        "models": key.models,
        "requests_per_minute": key.requests_per_minute,
        "expires_at": key.expires_at_ms.map_or(Value::Null, rfc3339),
        "created_at": rfc3339(key.created_ms),
        "revoked_at": entry.revoked_ms().map_or(Value::Null, rfc3339),
        "spend_usd": usd(spent),
        "period_start": rfc3339(period_start),
        "period_end": rfc3339(period_end),
    })
}

fn key_error(error: KeyError) -> ApiError {
    match error {
        KeyError::TooMany => {
            ApiError::new(StatusCode::CONFLICT, llmopt_core::ErrorKind::Gateway, error.to_string())
        }
        KeyError::Store(error) => ApiError::internal(format!("key store: {error}")),
    }
}

/// `POST /api/keys` (admin): makes a key; the answer (201) is the only place its secret appears.
pub async fn create_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, Access::AdminWrite)?;
    let body = read_body(&state, body).await?;
    let request: CreateKey = parse(&body, "key request")?;
    let keys = state.keys().clone();
    let new = validate(request, keys.now_ms())?;
    let (entry, secret) = blocking(move || keys.create(new)).await?.map_err(key_error)?;
    let mut answer = describe(&entry, state.keys().now_ms());
    if let Some(object) = answer.as_object_mut() {
        object.insert("key".to_owned(), Value::from(secret));
    }
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// `GET /api/keys` (admin): every key (at most `keys::MAX_KEYS`), without secrets.
pub async fn list_keys(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers, Access::AdminRead)?;
    let now_ms = state.keys().now_ms();
    let keys: Vec<Value> = state.keys().all().iter().map(|entry| describe(entry, now_ms)).collect();
    Ok(Json(json!({ "keys": keys })))
}

/// `DELETE /api/keys/{id}` (admin): revokes the key; its next request fails.
pub async fn revoke_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers, Access::AdminWrite)?;
    let keys = state.keys().clone();
    let wanted = id.clone();
    match blocking(move || keys.revoke(&wanted)).await?.map_err(key_error)? {
        Some(entry) => Ok(Json(describe(&entry, state.keys().now_ms()))),
        None => Err(ApiError::not_found(format!("no key `{id}`"))),
    }
}

/// `GET /api/budgets`: for each active key with a budget, its spend in the current period, the
/// budget, what is left, and the spend projected at the period's end at the period's run rate
/// so far (`spend × period length ÷ time elapsed`: a linear projection, no interval). The admin
/// sees every key; a client key sees its own tenant's.
pub async fn budgets(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let caller = authorize(&state, &headers, Access::Client)?;
    let now_ms = state.keys().now_ms();
    let rows: Vec<Value> = state
        .keys()
        .all()
        .iter()
        .filter(|entry| entry.revoked_ms().is_none() && !entry.key.is_expired(now_ms))
        .filter(|entry| caller.only_tenant().is_none_or(|tenant| tenant == entry.key.tenant))
        .filter_map(|entry| {
            let budget = entry.key.budget?;
            let (spent, start, end) = entry.spend(now_ms);
            let elapsed = i128::from((now_ms - start).max(1));
            let projected = Money(spent.0.saturating_mul(i128::from(end - start)) / elapsed);
            Some(json!({
                "id": entry.key.id,
                "tenant": entry.key.tenant,
                "budget_period": entry.key.budget_period.as_str(),
                "period_start": rfc3339(start),
                "period_end": rfc3339(end),
                "spend_usd": usd(spent),
                "budget_usd": usd(budget),
                "remaining_usd": usd(if budget > spent { budget - spent } else { Money::ZERO }),
                "projected_period_end_usd": usd(projected),
                "projected_over_budget": projected > budget,
            }))
        })
        .collect();
    Ok(Json(json!({
        "projection": "linear: spend so far x period length / time elapsed in the period",
        "budgets": rows,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn budgets_are_read_exactly_as_written() {
        assert_eq!(parse_usd(&raw("0.1")).unwrap(), Money(100_000_000_000));
        assert_eq!(parse_usd(&raw("\"12.000001\"")).unwrap(), Money::from_micros(12_000_001));
        assert_eq!(parse_usd(&raw("25")).unwrap(), Money::from_micros(25_000_000));
        for bad in ["1e-3", "-1", "\"ten\"", "null", "0.0000000000001"] {
            assert!(parse_usd(&raw(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn expiry_is_rfc3339_or_unix_seconds_in_the_future() {
        let now = 1_767_225_600_000;
        assert_eq!(parse_expiry(&json!("2026-01-02T00:00:00Z"), now).unwrap(), now + 86_400_000);
        assert_eq!(parse_expiry(&json!(1_767_225_601), now).unwrap(), now + 1_000);
        assert!(parse_expiry(&json!("2025-01-01T00:00:00Z"), now).is_err());
        assert!(parse_expiry(&json!("tomorrow"), now).is_err());
        assert!(parse_expiry(&json!(1.5), now).is_err());
    }
}
