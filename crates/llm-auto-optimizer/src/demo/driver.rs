//! The demo's client side: it drives the gateway over HTTP as an application would (the
//! OpenAI client of `llmopt-llm` for calls, plain HTTP for feedback), on a simulated clock that
//! advances with the trace's arrival gaps, and sums up each phase from what it saw and what the
//! gateway recorded.

use std::{
    collections::HashSet,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
};

use anyhow::Result;
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use llmopt_core::{ManualClock, Money, RequestRecord, usage::Protocol};
use llmopt_llm::{Anthropic, ChatRequest, OpenAiCompatible, Provider};

use super::{FEW_SHOT_MODEL, STRONG, WEAK, report::PhaseStats, workload::WorkItem};

/// A small HTTP client for the gateway's non-proxy routes.
pub struct ApiClient {
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
    base: String,
}

impl ApiClient {
    pub fn new(base: String) -> ApiClient {
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_nodelay(true);
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(connector);
        ApiClient { client, base }
    }

    async fn post(&self, path: &str, body: serde_json::Value) -> Result<u16> {
        let request = http::Request::post(format!("{}{path}", self.base))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))?;
        let response = self.client.request(request).await?;
        let status = response.status().as_u16();
        // Drain the body so the connection goes back to the pool.
        let _ = response.into_body().collect().await;
        Ok(status)
    }
}

pub struct Driver {
    pub client: OpenAiCompatible,
    /// The Anthropic client, for the few-shot stream (`/v1/messages`).
    pub anthropic: Anthropic,
    /// Prompts on which the weak model has degraded (the scripted drift): it answers them
    /// wrongly from the moment they are added.
    pub degraded: RwLock<HashSet<String>>,
    pub api: ApiClient,
    pub clock: Arc<ManualClock>,
    pub gaps: Vec<i64>,
    pub next_gap: AtomicU64,
    pub concurrency: usize,
}

/// One answered request, as the client saw it.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub served: String,
    pub correct: bool,
    pub ok: bool,
    /// The gateway's request id (`x-request-id`), to find the call's record.
    pub request_id: Option<String>,
}

impl Outcome {
    fn failed() -> Outcome {
        Outcome { served: String::new(), correct: false, ok: false, request_id: None }
    }
}

/// What a replay sends besides the prompts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sends {
    /// Send each answer's real correctness back as quality feedback (`/v1/feedback`).
    pub feedback: bool,
    /// Tag each request with its MMLU subject (`x-llmopt-tags: subject=…`).
    pub subject_tag: bool,
}

impl Driver {
    /// Sends the items in order (at most `concurrency` in flight) and stamps them on the
    /// simulated clock with the trace's gaps; the outcomes come back in the items' order.
    pub async fn replay(
        &self,
        items: &[&WorkItem],
        send: Sends,
        progress: Option<&indicatif::ProgressBar>,
    ) -> Vec<Outcome> {
        futures::stream::iter(items.iter().copied())
            .map(|item| {
                let index = self.next_gap.fetch_add(1, Ordering::Relaxed) as usize;
                self.clock.advance(self.gaps[index % self.gaps.len()]);
                async move {
                    let outcome = self.send_and_grade(item, send).await;
                    if let Some(bar) = progress {
                        bar.inc(1);
                    }
                    outcome
                }
            })
            .buffered(self.concurrency)
            .collect::<Vec<_>>()
            .await
    }

    fn is_degraded(&self, prompt: &str) -> bool {
        self.degraded.read().unwrap_or_else(std::sync::PoisonError::into_inner).contains(prompt)
    }

    /// Sends few-shot requests over the Anthropic protocol (a shared system prompt per
    /// subject, one question each), stamped on the simulated clock like the main stream.
    /// Returns how many were answered.
    pub async fn replay_few_shot(&self, items: &[(&str, &WorkItem)]) -> usize {
        futures::stream::iter(items.iter().copied())
            .map(|(system, item)| {
                let index = self.next_gap.fetch_add(1, Ordering::Relaxed) as usize;
                self.clock.advance(self.gaps[index % self.gaps.len()]);
                async move {
                    let body = serde_json::json!({
                        "model": FEW_SHOT_MODEL,
                        "max_tokens": 64,
                        "temperature": 0,
                        "system": system,
                        "messages": [{"role": "user", "content": item.prompt}],
                    });
                    let Ok(request) =
                        ChatRequest::from_slice(Protocol::Anthropic, body.to_string().as_bytes())
                    else {
                        return false;
                    };
                    match self.anthropic.chat(request).await {
                        Ok(_) => true,
                        Err(error) => {
                            tracing::warn!(%error, "demo few-shot request failed");
                            false
                        }
                    }
                }
            })
            .buffered(self.concurrency)
            .filter(|ok| std::future::ready(*ok))
            .count()
            .await
    }

    async fn send_and_grade(&self, item: &WorkItem, send: Sends) -> Outcome {
        let body = serde_json::json!({
            "model": STRONG,
            "temperature": 0,
            "messages": [{"role": "user", "content": item.prompt}],
        });
        let mut request =
            match ChatRequest::from_slice(Protocol::OpenAi, body.to_string().as_bytes()) {
                Ok(request) => request,
                Err(_) => return Outcome::failed(),
            };
        if send.subject_tag {
            request.headers.push(("x-llmopt-tags".to_owned(), format!("subject={}", item.subject)));
        }
        match self.client.chat(request).await {
            Ok(response) => {
                let header = |name: &str| {
                    response
                        .headers
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v.clone())
                };
                let served =
                    header("x-llmopt-served-model").or(response.model.clone()).unwrap_or_default();
                let truncated = matches!(response.stop_reason.as_deref(), Some("length"));
                let label = if served.starts_with(WEAK) {
                    item.weak_correct && !self.is_degraded(&item.prompt)
                } else {
                    item.strong_correct
                };
                let correct = label && !truncated;
                let request_id = header("x-request-id");
                if let Some(id) = request_id.as_ref().filter(|_| send.feedback) {
                    let feedback = serde_json::json!({"request_id": id, "metric": "correct", "value": correct});
                    if let Err(error) = self.api.post("/v1/feedback", feedback).await {
                        tracing::warn!(%error, "feedback not sent");
                    }
                }
                Outcome { served, correct, ok: true, request_id }
            }
            Err(error) => {
                tracing::warn!(%error, "demo request failed");
                Outcome::failed()
            }
        }
    }
}

pub fn phase_stats(
    outcomes: &[Outcome],
    records: &[RequestRecord],
    speed: f64,
    seconds: f64,
) -> PhaseStats {
    let n = outcomes.len().max(1) as f64;
    let cost: Money = records.iter().filter_map(|r| r.cost).sum();
    let mut latencies: Vec<f64> = records
        .iter()
        .filter(|r| r.status.is_ok() && r.cache != llmopt_core::CacheOutcome::Hit)
        .map(|r| r.latency_ms() * speed)
        .collect();
    latencies.sort_by(f64::total_cmp);
    let quantile = |q: f64| llmopt_core::store::quantile_sorted(&latencies, q);
    PhaseStats {
        requests: outcomes.len() as u64,
        errors: outcomes.iter().filter(|o| !o.ok).count() as u64,
        cost_usd: cost.as_usd_f64(),
        cost_per_1k_requests_usd: cost.as_usd_f64() * 1_000.0 / n,
        accuracy: outcomes.iter().filter(|o| o.correct).count() as f64 / n,
        weak_share: outcomes.iter().filter(|o| o.served.starts_with(WEAK)).count() as f64 / n,
        cache_hit_share: records
            .iter()
            .filter(|r| r.cache == llmopt_core::CacheOutcome::Hit)
            .count() as f64
            / records.len().max(1) as f64,
        latency_p50_ms: if latencies.is_empty() { 0.0 } else { quantile(0.5) },
        latency_p95_ms: if latencies.is_empty() { 0.0 } else { quantile(0.95) },
        seconds,
    }
}
