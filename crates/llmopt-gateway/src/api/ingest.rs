//! What applications send besides their calls: quality feedback joined to a call, and batch
//! ingest of calls observed elsewhere (for applications that do not proxy through the gateway).

use axum::{Json, extract::State, http::HeaderMap};
use llmopt_core::{Endpoint, Feedback, FeedbackValue, RequestId, RequestRecord};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    api::{authorize, read_body},
    auth::Access,
    error::ApiError,
    state::AppState,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackBody {
    request_id: String,
    metric: String,
    value: FeedbackValue,
}

/// `POST /v1/feedback`: `{"request_id", "metric", "value": true | 0.8}`.
pub async fn feedback(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Json<Value>, ApiError> {
    let caller = authorize(&state, &headers, Access::Client)?;
    let body = read_body(&state, body).await?;
    let parsed: FeedbackBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid_request(format!("invalid feedback: {e}")))?;
    if parsed.metric.trim().is_empty() {
        return Err(ApiError::invalid_request("`metric` must not be empty"));
    }
    if let FeedbackValue::Number(number) = parsed.value
        && !number.is_finite()
    {
        return Err(ApiError::invalid_request("`value` must be finite"));
    }
    let feedback =
        Feedback { metric: parsed.metric, value: parsed.value, ts_ms: state.clock().now_ms() };
    let id = RequestId::new(parsed.request_id);
    // The collector may ask the store (disk): keep it off the async workers.
    let collector = state.collector().clone();
    let lookup_id = id.clone();
    let joined = feedback.clone();
    let tenant = caller.only_tenant().map(str::to_owned);
    let found = tokio::task::spawn_blocking(move || {
        collector.add_feedback(&lookup_id, tenant.as_deref(), feedback)
    })
    .await
    .map_err(|e| ApiError::internal(format!("feedback task failed: {e}")))?
    .map_err(|e| ApiError::internal(format!("feedback not stored: {e}")))?;
    if !found {
        return Err(ApiError::not_found(format!("no request with id `{id}`")));
    }
    state.on_feedback(&id, &joined);
    Ok(Json(json!({"ok": true, "request_id": id})))
}

/// `POST /v1/records`: a JSON array, or NDJSON (one record per line). Each item is checked
/// alone; the answer lists accepted count and every rejected item with its index and reason.
pub async fn ingest_records(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Json<Value>, ApiError> {
    let caller = authorize(&state, &headers, Access::Client)?;
    // A client key's records are its tenant's, whatever the items say.
    let tenant = caller.only_tenant().map(str::to_owned);
    let body = read_body(&state, body).await?;
    let items = split_items(&body)?;
    let runtime = state.runtime();
    let now_ms = state.clock().now_ms();
    let mut accepted = 0u64;
    let mut rejected = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        let outcome = item
            .and_then(|value| external_record(value, now_ms, tenant.as_deref(), &runtime.catalog))
            .and_then(|record| {
                record.validate(now_ms).map_err(|e| e.to_string())?;
                state.metrics().observe(&record);
                state.collector().record(record).map_err(|e| e.to_string())
            });
        match outcome {
            Ok(()) => accepted += 1,
            Err(reason) => rejected.push(json!({"index": index, "error": reason})),
        }
    }
    Ok(Json(json!({"accepted": accepted, "rejected": rejected})))
}

/// Items of an array or NDJSON body; an unparsable NDJSON line is an item error, not a batch
/// error.
fn split_items(body: &[u8]) -> Result<Vec<Result<Value, String>>, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::invalid_request("request body is not UTF-8"))?;
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        let items: Vec<Value> = serde_json::from_str(trimmed)
            .map_err(|e| ApiError::invalid_request(format!("invalid JSON array: {e}")))?;
        return Ok(items.into_iter().map(Ok).collect());
    }
    Ok(text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}")))
        .collect())
}

/// An ingested item as a record: `model` stands for both models, `id` and `ts_ms` default to a
/// new id and now, the endpoint to `external`, the cost to the catalog's exact cost of `usage`
/// (left unknown when the model has no price). An authenticated caller's tenant wins over the
/// item's.
fn external_record(
    mut value: Value,
    now_ms: i64,
    tenant: Option<&str>,
    catalog: &llmopt_core::PriceCatalog,
) -> Result<RequestRecord, String> {
    let object = value.as_object_mut().ok_or("item is not a JSON object")?;
    if let Some(model) = object.remove("model") {
        object.entry("requested_model").or_insert_with(|| model.clone());
        object.entry("served_model").or_insert(model);
    }
    if !object.contains_key("requested_model")
        && let Some(served) = object.get("served_model").cloned()
    {
        object.insert("requested_model".to_owned(), served);
    }
    object.entry("ts_ms").or_insert_with(|| Value::from(now_ms));
    // A made-up id carries the record's time, as the gateway's own do (the store finds such
    // records by time, without an id index entry).
    let id_time = object.get("ts_ms").and_then(Value::as_i64).unwrap_or(now_ms);
    object.entry("id").or_insert_with(|| Value::from(crate::proxy::request_id_at(id_time)));
    object.entry("endpoint").or_insert_with(|| Value::from("external"));
    object.entry("status").or_insert_with(|| json!({"kind": "ok"}));
    object.entry("latency_us").or_insert_with(|| Value::from(0));
    if let Some(tenant) = tenant {
        object.insert("tenant".to_owned(), Value::from(tenant));
    }
    let mut record: RequestRecord = serde_json::from_value(value).map_err(|e| e.to_string())?;
    if record.endpoint != Endpoint::External {
        record.endpoint = Endpoint::External;
    }
    // Only proxied calls count against a virtual key's budget (rebuilt from this tag on start).
    record.tags.remove(crate::keys::KEY_TAG);
    if record.cost.is_none()
        && let Some(usage) = &record.usage
    {
        record.cost = catalog.cost(record.served_model.as_str(), usage).ok().map(|b| b.total);
    }
    Ok(record)
}
