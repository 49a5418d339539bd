//! A quality signal without client labels: a configured judge model grades a sampled share of
//! answers, and its verdicts join the calls as quality feedback, the same feedback
//! `/v1/feedback` gives, so they feed the same guardrails and routing evidence.
//!
//! Design choices:
//! - **Which calls.** A call is judged when its request id hashes below the share that applies
//!   to it: `[judge] share` for calls an experiment or an adoption measures (an arm, or a change
//!   applied or held out: both arms of a routing test are graded alike), `other_share` for the
//!   rest. Hashing the id makes the choice reproducible and independent of the arm. Cache hits,
//!   errors, cut-off streams and answers longer than `max_answer_bytes` are not judged.
//! - **Off the request path.** The answer is handed to a task after the caller has it; the
//!   judge's own call waits for nothing the caller waits for. At most `max_concurrent` judge
//!   calls run at once; a call that finds them all busy is skipped and counted, so a burst never
//!   queues work without bound.
//! - **Through the gateway's providers**, by the configuration's route for the judge model (not
//!   the optimizer's overlay: the judge is not optimized), in the first protocol the provider
//!   speaks. The grading conversation and the verdict's reading are [`llmopt_llm::judge`]'s.
//! - **Its cost is the optimizer's, and visible.** Every judge call is recorded like any call,
//!   with tenant [`JUDGE_TENANT`] and tag [`llmopt_core::JUDGE_TAG`] naming the graded call: a
//!   client's usage and budget never include it, `/api/usage` (admin) and `/metrics` show it,
//!   and the optimizer leaves these records out of its analysis and reports their count and cost
//!   each cycle.

use std::{sync::Arc, time::Duration};

use llmopt_core::{
    Endpoint, Feedback, FeedbackValue, RequestId, RequestRecord, Status, Tags, usage::Protocol,
};
use llmopt_llm::{
    ChatRequest,
    judge::{JUDGE_SYSTEM_PROMPT, grading_prompt, parse_verdict},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use xxhash_rust::xxh3::xxh3_64;

use crate::{
    routing::RouteInput,
    state::{AppState, Runtime},
};

/// The tenant judge calls are recorded under.
pub const JUDGE_TENANT: &str = "llmopt-optimizer";

/// A judge's reply is one word; room for a few tokens of preamble.
const JUDGE_MAX_TOKENS: u32 = 16;

/// The `[judge]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JudgeConfig {
    /// The judge model, served by the configured routes; `None`: no judge.
    pub model: Option<String>,
    /// Share of the calls an experiment or adoption measures that are graded.
    pub share: f64,
    /// Share of the other calls that are graded: the evidence routing proposals need (the
    /// routing strategy proposes nothing without quality feedback on the traffic it would
    /// route, so a judge-only setup needs some).
    pub other_share: f64,
    /// The feedback metric verdicts are written as (`None`: the optimizer's quality metric).
    pub metric: Option<String>,
    /// Judge calls in flight at most; more are skipped.
    pub max_concurrent: usize,
    /// Longer answers are not graded (their grading prompt would be as long).
    pub max_answer_bytes: usize,
    /// The judge call's own timeout.
    pub timeout_ms: u64,
}

impl Default for JudgeConfig {
    fn default() -> JudgeConfig {
        JudgeConfig {
            model: None,
            share: 0.1,
            other_share: 0.02,
            metric: None,
            max_concurrent: 4,
            max_answer_bytes: 32_768,
            timeout_ms: 30_000,
        }
    }
}

impl JudgeConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.model.as_deref().is_some_and(|m| m.trim().is_empty()) {
            return Err("judge.model must not be empty (leave it out to turn the judge off)".into());
        }
        for (name, share) in [("share", self.share), ("other_share", self.other_share)] {
            if !(0.0..=1.0).contains(&share) {
                return Err(format!("judge.{name} must be between 0 and 1 (got {share})"));
            }
        }
        if self.metric.as_deref().is_some_and(|m| m.trim().is_empty()) {
            return Err("judge.metric must not be empty".into());
        }
        if !(1..=256).contains(&self.max_concurrent) {
            return Err("judge.max_concurrent must be between 1 and 256".into());
        }
        if !(1..=1_048_576).contains(&self.max_answer_bytes) {
            return Err("judge.max_answer_bytes must be between 1 and 1048576".into());
        }
        if self.timeout_ms == 0 {
            return Err("judge.timeout_ms must be positive".into());
        }
        Ok(())
    }

    /// Whether the call with this id is graded; `measured`: an experiment or adoption
    /// measures it.
    pub fn samples(&self, request_id: &str, measured: bool) -> bool {
        if self.model.is_none() {
            return false;
        }
        let share = if measured { self.share } else { self.other_share };
        // The top 53 bits of the id's hash as a uniform number in [0, 1).
        let unit = (xxh3_64(request_id.as_bytes()) >> 11) as f64 / (1u64 << 53) as f64;
        unit < share
    }
}

/// The judge's concurrency bound, one per process; a reload resizes it (slots in use stay
/// taken until their calls end).
#[derive(Debug)]
pub struct JudgeSlots {
    semaphore: Arc<Semaphore>,
    size: std::sync::Mutex<usize>,
}

impl Default for JudgeSlots {
    fn default() -> JudgeSlots {
        JudgeSlots { semaphore: Arc::new(Semaphore::new(0)), size: std::sync::Mutex::new(0) }
    }
}

impl JudgeSlots {
    pub fn resize(&self, limit: usize) {
        let mut size = self.size.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if limit > *size {
            self.semaphore.add_permits(limit - *size);
        } else {
            // Permits in use now are forgotten as they come back.
            let mut missing = *size - limit;
            missing -= self.semaphore.forget_permits(missing);
            if missing > 0
                && let Ok(runtime) = tokio::runtime::Handle::try_current()
            {
                let semaphore = Arc::clone(&self.semaphore);
                runtime.spawn(async move {
                    if let Ok(permits) =
                        semaphore.acquire_many(u32::try_from(missing).unwrap_or(u32::MAX)).await
                    {
                        permits.forget();
                    }
                });
            }
        }
        *size = limit;
    }

    /// Gradings running now.
    pub fn in_use(&self) -> usize {
        let size = *self.size.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        size.saturating_sub(self.semaphore.available_permits())
    }

    fn try_take(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.semaphore).try_acquire_owned().ok()
    }
}

/// One answer to grade.
#[derive(Debug, Clone)]
pub struct Graded {
    pub request_id: String,
    pub question: String,
    pub answer: String,
}

/// What became of one grading, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JudgeOutcome {
    Correct,
    Incorrect,
    /// The judge answered without a verdict.
    NoVerdict,
    /// The judge call failed, or its verdict could not be joined.
    Failed,
    /// Every slot was busy.
    SkippedBusy,
    /// The answer was longer than `max_answer_bytes`.
    SkippedLong,
}

impl JudgeOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            JudgeOutcome::Correct => "correct",
            JudgeOutcome::Incorrect => "incorrect",
            JudgeOutcome::NoVerdict => "no_verdict",
            JudgeOutcome::Failed => "failed",
            JudgeOutcome::SkippedBusy => "skipped_busy",
            JudgeOutcome::SkippedLong => "skipped_long",
        }
    }
}

/// Grades `graded` in the background (when a slot is free).
pub fn spawn(state: &AppState, runtime: &Arc<Runtime>, graded: Graded) {
    let config = &runtime.config.judge;
    if graded.answer.len() > config.max_answer_bytes {
        state.metrics().judge_outcome(JudgeOutcome::SkippedLong);
        return;
    }
    let Some(permit) = state.judge_slots().try_take() else {
        state.metrics().judge_outcome(JudgeOutcome::SkippedBusy);
        return;
    };
    let (state, runtime) = (state.clone(), Arc::clone(runtime));
    tokio::spawn(async move {
        let outcome = grade(&state, &runtime, graded).await;
        state.metrics().judge_outcome(outcome);
        drop(permit);
    });
}

async fn grade(state: &AppState, runtime: &Runtime, graded: Graded) -> JudgeOutcome {
    let config = &runtime.config.judge;
    let Some(model) = config.model.as_deref() else { return JudgeOutcome::Failed };
    let tags = Tags::new();
    let input = RouteInput {
        protocol: Protocol::OpenAi,
        model,
        tenant: None,
        tags: &tags,
        request_id: &graded.request_id,
        workload: None,
    };
    let Some(decision) = runtime.routes.decide(&input) else {
        tracing::warn!(model, "no route serves the judge model");
        return JudgeOutcome::Failed;
    };
    let Some((candidate, provider)) = decision.candidates.iter().find_map(|candidate| {
        runtime.providers.get(&candidate.provider).map(|provider| (candidate, provider))
    }) else {
        tracing::warn!(model, "the judge model's route has no configured provider");
        return JudgeOutcome::Failed;
    };
    let protocol =
        if provider.speaks(Protocol::OpenAi) { Protocol::OpenAi } else { Protocol::Anthropic };
    let body = grading_body(protocol, &candidate.model, &graded.question, &graded.answer);
    let request = match ChatRequest::from_slice(protocol, body.to_string().as_bytes()) {
        Ok(request) => request,
        Err(error) => {
            tracing::warn!(%error, "judge request not built");
            return JudgeOutcome::Failed;
        }
    };
    let clock = Arc::clone(state.clock());
    let ts_ms = clock.now_ms();
    let started = std::time::Instant::now();
    let timeout = Duration::from_millis(config.timeout_ms);
    let answer = tokio::time::timeout(timeout, provider.chat(request)).await;
    let mut record = RequestRecord::new(
        crate::proxy::request_id_at(ts_ms),
        ts_ms,
        candidate.provider.as_str(),
        candidate.model.as_str(),
    );
    record.requested_model = model.to_owned().into();
    record.tenant = Some(JUDGE_TENANT.to_owned().into());
    record.endpoint = match protocol {
        Protocol::OpenAi => Endpoint::ChatCompletions,
        Protocol::Anthropic => Endpoint::Messages,
    };
    record.tags.insert(llmopt_core::JUDGE_TAG.to_owned(), graded.request_id.clone());
    record.max_tokens = Some(JUDGE_MAX_TOKENS);
    record.latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let reply = match answer {
        Ok(Ok(answer)) if (200..300).contains(&answer.status) => {
            if let Some(served) = &answer.model {
                record.served_model = served.clone().into();
            }
            record.usage = answer.usage;
            record.cost = answer.usage.as_ref().and_then(|usage| {
                [record.served_model.as_str(), candidate.model.as_str()]
                    .iter()
                    .find_map(|m| runtime.catalog.cost(m, usage).ok())
                    .map(|breakdown| breakdown.total)
            });
            record.stop_reason = answer.stop_reason.clone();
            answer_text(protocol, &answer.body)
        }
        Ok(Ok(answer)) => {
            record.status = Status::Error(crate::error::kind_of_status(answer.status));
            None
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "judge call failed");
            record.status = Status::Error(crate::proxy::provider_error_kind(&error));
            None
        }
        Err(_) => {
            record.status = Status::Error(llmopt_core::ErrorKind::Timeout);
            None
        }
    };
    let failed = record.status != Status::Ok;
    state.metrics().observe(&record);
    state.on_record(&record);
    if let Err(error) = state.collector().record(record) {
        tracing::warn!(%error, "judge record not collected");
    }
    if failed {
        return JudgeOutcome::Failed;
    }
    let Some(verdict) = reply.as_deref().and_then(parse_verdict) else {
        return JudgeOutcome::NoVerdict;
    };
    let metric = config
        .metric
        .clone()
        .unwrap_or_else(|| state.optimizer().config().settings.quality_metric.clone());
    let feedback = Feedback { metric, value: FeedbackValue::Bool(verdict), ts_ms: clock.now_ms() };
    let id = RequestId::new(graded.request_id);
    let collector = state.collector().clone();
    let (lookup, joined) = (id.clone(), feedback.clone());
    let found =
        tokio::task::spawn_blocking(move || collector.add_feedback(&lookup, None, joined)).await;
    match found {
        Ok(Ok(true)) => {
            state.on_feedback(&id, &feedback);
            if verdict { JudgeOutcome::Correct } else { JudgeOutcome::Incorrect }
        }
        other => {
            tracing::warn!(request_id = %id, ?other, "judge verdict not joined");
            JudgeOutcome::Failed
        }
    }
}

/// The grading request in `protocol`'s shape.
fn grading_body(protocol: Protocol, model: &str, question: &str, answer: &str) -> Value {
    let prompt = grading_prompt(question, answer);
    match protocol {
        Protocol::OpenAi => {
            let mut body = json!({
                "model": model,
                "messages": [
                    {"role": "system", "content": JUDGE_SYSTEM_PROMPT},
                    {"role": "user", "content": prompt},
                ],
                "temperature": 0,
            });
            let field = if crate::proxy::takes_max_completion_tokens(model) {
                "max_completion_tokens"
            } else {
                "max_tokens"
            };
            body[field] = json!(JUDGE_MAX_TOKENS);
            body
        }
        Protocol::Anthropic => json!({
            "model": model,
            "system": JUDGE_SYSTEM_PROMPT,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": JUDGE_MAX_TOKENS,
            "temperature": 0,
        }),
    }
}

/// The text of a whole answer: OpenAI's first choice's message content, or Anthropic's text
/// blocks joined.
pub fn answer_text(protocol: Protocol, body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    match protocol {
        Protocol::OpenAi => {
            value.pointer("/choices/0/message/content").and_then(Value::as_str).map(str::to_owned)
        }
        Protocol::Anthropic => {
            let blocks = value.get("content")?.as_array()?;
            let text: String = blocks
                .iter()
                .filter(|block| block.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|block| block.get("text").and_then(Value::as_str))
                .collect();
            Some(text)
        }
    }
}

/// The text of a streamed answer, from its SSE bytes: OpenAI's first choice's content deltas,
/// or Anthropic's text deltas.
pub fn stream_text(protocol: Protocol, sse: &[u8]) -> Option<String> {
    let mut decoder = llmopt_core::SseDecoder::new();
    let mut text = String::new();
    for event in decoder.push(sse) {
        if event.data.as_slice() == b"[DONE]" {
            continue;
        }
        let Ok(value) = serde_json::from_slice::<Value>(&event.data) else { continue };
        let piece = match protocol {
            Protocol::OpenAi => value.pointer("/choices/0/delta/content"),
            Protocol::Anthropic => (value.get("type").and_then(Value::as_str)
                == Some("content_block_delta"))
            .then(|| value.pointer("/delta/text"))
            .flatten(),
        };
        if let Some(piece) = piece.and_then(Value::as_str) {
            text.push_str(piece);
        }
    }
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_follows_the_share_that_applies() {
        let config = JudgeConfig {
            model: Some("judge".into()),
            share: 0.5,
            other_share: 0.0,
            ..JudgeConfig::default()
        };
        let ids: Vec<String> = (0..10_000).map(|i| format!("req-{i}")).collect();
        let measured = ids.iter().filter(|id| config.samples(id, true)).count();
        assert!((4_700..=5_300).contains(&measured), "{measured} of 10000 at share 0.5");
        assert_eq!(ids.iter().filter(|id| config.samples(id, false)).count(), 0);
        let off = JudgeConfig { model: None, share: 1.0, ..config };
        assert!(!off.samples("req-1", true), "no model, no judge");
    }

    #[test]
    fn answers_are_read_in_both_shapes() {
        let openai = br#"{"choices":[{"message":{"role":"assistant","content":"It is 4."}}]}"#;
        assert_eq!(answer_text(Protocol::OpenAi, openai).as_deref(), Some("It is 4."));
        let anthropic = br#"{"content":[{"type":"thinking","thinking":"hm"},{"type":"text","text":"It "},{"type":"text","text":"is 4."}]}"#;
        assert_eq!(answer_text(Protocol::Anthropic, anthropic).as_deref(), Some("It is 4."));
        let openai_sse = b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"It \"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"is 4.\"}}]}\n\ndata: [DONE]\n\n";
        assert_eq!(stream_text(Protocol::OpenAi, openai_sse).as_deref(), Some("It is 4."));
        let anthropic_sse = b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"It is 4.\"}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        assert_eq!(stream_text(Protocol::Anthropic, anthropic_sse).as_deref(), Some("It is 4."));
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(JudgeConfig::default().validate().is_ok());
        let bad = JudgeConfig { share: 1.5, ..JudgeConfig::default() };
        assert!(bad.validate().unwrap_err().contains("judge.share"));
        let empty = JudgeConfig { model: Some(" ".into()), ..JudgeConfig::default() };
        assert!(empty.validate().is_err());
    }
}
