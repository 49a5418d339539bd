//! The record of one LLM call, as the gateway measures it or as an application reports it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    fingerprint::Fingerprint,
    ids::{ModelId, ProviderId, RequestId, TenantId},
    money::Money,
    usage::{Usage, UsageError},
};

/// Free-form labels (`feature=search`, `interactive=false`), sorted so that encodings are stable.
pub type Tags = BTreeMap<String, String>;

/// The current version of the record wire form. Bump it when a field changes meaning; adding a
/// field with a serde default does not need a bump.
pub const RECORD_VERSION: u32 = 1;

/// One LLM call.
///
/// Fields added after version 1 must carry `#[serde(default)]` so older encodings still decode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Wire-form version this record was written with.
    #[serde(default = "default_version")]
    pub v: u32,
    pub id: RequestId,
    /// When the call started, milliseconds since the Unix epoch.
    pub ts_ms: i64,
    #[serde(default)]
    pub tenant: Option<TenantId>,
    pub provider: ProviderId,
    /// The model the client asked for.
    pub requested_model: ModelId,
    /// The model that answered (differs under routing, fallback, or an experiment arm).
    pub served_model: ModelId,
    #[serde(default)]
    pub endpoint: Endpoint,
    #[serde(default)]
    pub tags: Tags,
    pub status: Status,
    /// Total time the client waited, in microseconds.
    pub latency_us: u64,
    /// Time to first token (streams) or to the response head, in microseconds.
    #[serde(default)]
    pub ttft_us: Option<u64>,
    /// Time spent waiting on the upstream provider, in microseconds (latency minus gateway overhead).
    #[serde(default)]
    pub upstream_us: Option<u64>,
    /// `None` when usage is unknown (a stream cut before its usage event): never zero by default.
    #[serde(default)]
    pub usage: Option<Usage>,
    /// `None` when the cost is unknown (usage unknown, or a model with no price).
    #[serde(default)]
    pub cost: Option<Money>,
    /// The call ended before its answer did: the stream was cut upstream, timed out, or the
    /// client left. `usage` and `cost` then count only what the provider had reported by then
    /// (Anthropic: the input side from `message_start` and the output so far), a lower bound
    /// of what the call cost; `usage` stays `None` when nothing was reported (an OpenAI stream
    /// reports usage only in its last chunk). `false` for every complete answer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub incomplete: bool,
    /// The request asked for sampling (`temperature` absent, which means the provider's
    /// default of 1, or above 0): a repeat gets another answer, so a response cache serves it
    /// only where sampled requests may be cached. `false` for deterministic requests and for
    /// records that do not say (ingested, traces, records of schema 2 and older).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sampled: bool,
    /// For cache hits: what the call would have cost at the provider.
    #[serde(default)]
    pub saved_cost: Option<Money>,
    #[serde(default)]
    pub cache: CacheOutcome,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub experiment: Option<ExperimentArm>,
    #[serde(default)]
    pub fingerprints: Fingerprints,
    /// `max_tokens` the upstream request carried (after any cap).
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// `finish_reason` / `stop_reason` (`length` and `max_tokens` mean truncated).
    #[serde(default)]
    pub stop_reason: Option<String>,
    /// Quality feedback joined later by request id.
    #[serde(default)]
    pub feedback: Vec<Feedback>,
}

fn default_version() -> u32 {
    1
}

/// Which API surface a call came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    #[default]
    ChatCompletions,
    Messages,
    /// Reported through `POST /v1/records` by an application that does not proxy.
    External,
    /// `POST /v1/embeddings`.
    Embeddings,
    /// `POST /v1/responses` (OpenAI's Responses API).
    Responses,
}

impl Endpoint {
    pub fn as_str(&self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat_completions",
            Endpoint::Messages => "messages",
            Endpoint::External => "external",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Responses => "responses",
        }
    }
}

/// Outcome of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "error")]
pub enum Status {
    Ok,
    Error(ErrorKind),
}

impl Status {
    pub fn is_ok(&self) -> bool {
        matches!(self, Status::Ok)
    }
}

/// What went wrong, in kinds an operator can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request was invalid (4xx other than 401/403/404/408/429).
    InvalidRequest,
    Authentication,
    NotFound,
    RateLimited,
    Timeout,
    /// The provider answered 5xx (or 529 overloaded).
    Upstream,
    /// Connection failed or was reset.
    Transport,
    /// The provider's answer could not be understood.
    InvalidResponse,
    /// The client went away before the answer was complete.
    ClientDisconnected,
    /// Refused by the gateway itself (limits, authentication, policy).
    Gateway,
}

impl ErrorKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::Authentication => "authentication",
            ErrorKind::NotFound => "not_found",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Upstream => "upstream",
            ErrorKind::Transport => "transport",
            ErrorKind::InvalidResponse => "invalid_response",
            ErrorKind::ClientDisconnected => "client_disconnected",
            ErrorKind::Gateway => "gateway",
        }
    }
}

/// Whether the gateway's response cache answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheOutcome {
    /// The cache was not consulted (off for this route, or the request is not cacheable).
    #[default]
    Bypass,
    Miss,
    Hit,
}

impl CacheOutcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            CacheOutcome::Bypass => "bypass",
            CacheOutcome::Miss => "miss",
            CacheOutcome::Hit => "hit",
        }
    }
}

/// The experiment and arm a call was assigned to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ExperimentArm {
    pub experiment_id: String,
    pub arm: String,
}

/// Hashes of the request used by cache and prefix analysis.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Fingerprints {
    /// Everything that changes the answer (the response-cache key without the tenant).
    #[serde(default)]
    pub request: Option<Fingerprint>,
    /// The prompt prefix: system prompt, tools and every message but the last.
    #[serde(default)]
    pub prefix: Option<Fingerprint>,
    /// Fingerprints of consecutive prefix blocks (as in the Mooncake traces' `hash_ids`): equal
    /// ids mean an identical prefix up to and including that block.
    #[serde(default)]
    pub prefix_blocks: Vec<u64>,
}

/// A quality signal for a call, sent by the application after the fact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feedback {
    /// Metric name, e.g. `correct`, `thumbs_up`, `rating`.
    pub metric: String,
    pub value: FeedbackValue,
    #[serde(default)]
    pub ts_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FeedbackValue {
    Bool(bool),
    Number(f64),
}

impl FeedbackValue {
    /// `true` → 1, `false` → 0, numbers as they are.
    pub fn as_f64(&self) -> f64 {
        match self {
            FeedbackValue::Bool(true) => 1.0,
            FeedbackValue::Bool(false) => 0.0,
            FeedbackValue::Number(value) => *value,
        }
    }
}

/// Why a record was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RecordValidationError {
    #[error("field `{field}` must not be empty")]
    Empty { field: &'static str },
    #[error("timestamp {ts_ms} is {ahead_ms} ms in the future (more than the allowed skew)")]
    FutureTimestamp { ts_ms: i64, ahead_ms: i64 },
    #[error("timestamp {ts_ms} is before 2000-01-01")]
    AncientTimestamp { ts_ms: i64 },
    #[error("time to first token ({ttft_us} µs) exceeds the latency ({latency_us} µs)")]
    TtftAfterEnd { ttft_us: u64, latency_us: u64 },
    #[error("usage: {0}")]
    Usage(#[from] UsageError),
    #[error("negative cost")]
    NegativeCost,
    #[error("feedback `{metric}` has a non-finite value")]
    NonFiniteFeedback { metric: String },
}

/// How far in the future a timestamp may be before a record is refused (clock skew allowance).
pub const MAX_FUTURE_SKEW_MS: i64 = 5 * 60 * 1000;

impl RequestRecord {
    /// A successful record with the fields every record needs; the rest default.
    pub fn new(
        id: impl Into<RequestId>,
        ts_ms: i64,
        provider: impl Into<ProviderId>,
        model: impl Into<ModelId>,
    ) -> RequestRecord {
        let model = model.into();
        RequestRecord {
            v: RECORD_VERSION,
            id: id.into(),
            ts_ms,
            tenant: None,
            provider: provider.into(),
            requested_model: model.clone(),
            served_model: model,
            endpoint: Endpoint::ChatCompletions,
            tags: Tags::new(),
            status: Status::Ok,
            latency_us: 0,
            ttft_us: None,
            upstream_us: None,
            usage: None,
            cost: None,
            incomplete: false,
            sampled: false,
            saved_cost: None,
            cache: CacheOutcome::Bypass,
            stream: false,
            experiment: None,
            fingerprints: Fingerprints::default(),
            max_tokens: None,
            stop_reason: None,
            feedback: Vec::new(),
        }
    }

    /// Checks what can be checked without a price catalog. `now_ms` bounds future timestamps.
    pub fn validate(&self, now_ms: i64) -> Result<(), RecordValidationError> {
        if self.id.0.is_empty() {
            return Err(RecordValidationError::Empty { field: "id" });
        }
        if self.provider.0.is_empty() {
            return Err(RecordValidationError::Empty { field: "provider" });
        }
        if self.served_model.0.is_empty() {
            return Err(RecordValidationError::Empty { field: "served_model" });
        }
        if self.ts_ms < 946_684_800_000 {
            return Err(RecordValidationError::AncientTimestamp { ts_ms: self.ts_ms });
        }
        let ahead_ms = self.ts_ms.saturating_sub(now_ms);
        if ahead_ms > MAX_FUTURE_SKEW_MS {
            return Err(RecordValidationError::FutureTimestamp { ts_ms: self.ts_ms, ahead_ms });
        }
        if let Some(ttft_us) = self.ttft_us
            && ttft_us > self.latency_us
        {
            return Err(RecordValidationError::TtftAfterEnd {
                ttft_us,
                latency_us: self.latency_us,
            });
        }
        if let Some(usage) = &self.usage {
            usage.validate()?;
        }
        if self.cost.is_some_and(|cost| cost.0 < 0) || self.saved_cost.is_some_and(|c| c.0 < 0) {
            return Err(RecordValidationError::NegativeCost);
        }
        for feedback in &self.feedback {
            if let FeedbackValue::Number(value) = feedback.value
                && !value.is_finite()
            {
                return Err(RecordValidationError::NonFiniteFeedback {
                    metric: feedback.metric.clone(),
                });
            }
        }
        Ok(())
    }

    /// Truncated by the output limit (`length` for OpenAI, `max_tokens` for Anthropic).
    pub fn truncated(&self) -> bool {
        matches!(self.stop_reason.as_deref(), Some("length" | "max_tokens"))
    }

    /// The cost is known and complete: neither unknown (`None`) nor the lower bound of an
    /// incomplete call.
    pub fn cost_is_exact(&self) -> bool {
        self.cost.is_some() && !self.incomplete
    }

    pub fn latency_ms(&self) -> f64 {
        self.latency_us as f64 / 1000.0
    }

    /// The value of the latest feedback of `metric` (booleans as 0 and 1); `None` when none
    /// arrived. Feedback is appended in arrival order, so a correction sent later wins.
    pub fn feedback_value(&self, metric: &str) -> Option<f64> {
        self.feedback
            .iter()
            .rev()
            .find(|feedback| feedback.metric == metric)
            .map(|feedback| feedback.value.as_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_feedback_of_a_metric_wins() {
        let mut record = RequestRecord::new("r1", 1_700_000_000_000, "openai", "gpt-4o-mini");
        assert_eq!(record.feedback_value("correct"), None);
        for (metric, value) in [
            ("correct", FeedbackValue::Bool(false)),
            ("rating", FeedbackValue::Number(4.0)),
            ("correct", FeedbackValue::Bool(true)),
        ] {
            record.feedback.push(Feedback { metric: metric.to_owned(), value, ts_ms: 0 });
        }
        assert_eq!(record.feedback_value("correct"), Some(1.0));
        assert_eq!(record.feedback_value("rating"), Some(4.0));
        assert_eq!(record.feedback_value("thumbs_up"), None);
    }
}
