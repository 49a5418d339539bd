//! The simulator's core: turns a request body into a planned reply (status, body or timed SSE
//! events), shared by the in-process provider and the HTTP server so both behave the same.
//!
//! Modules: this one holds the configuration and the engine, which plans a reply (faults,
//! prompt cache, latency, headers); `parse` reads a request in either wire format, `answer`
//! makes the answer's text and `wire` writes it (and errors) as each provider would.

mod answer;
mod parse;
mod wire;

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use llmopt_core::{Clock, SystemClock, usage::Protocol};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde_json::Value;
use xxhash_rust::xxh3::xxh3_64;

use self::{
    answer::generate,
    wire::{Answer, anthropic_body, anthropic_events, error_reply, openai_body, openai_events},
};
use super::{
    cache::{self, PromptCache},
    latency::{self, LatencyModel, LatencySample},
    quality::{QualityLabels, QualityTier},
};

/// Output length when the prompt has no known answer: log-normal with the parameters of the
/// `GeneratedTokens` column of the Azure LLM inference trace 2023, conversation service
/// (19,366 requests; mean of ln = 5.019, sd of ln = 0.859, median 129 tokens).
pub const OUTPUT_TOKENS_LN_MEAN: f64 = 5.018996887187218;
pub const OUTPUT_TOKENS_LN_SD: f64 = 0.8590314629019208;

/// One simulated model.
#[derive(Debug, Clone)]
pub struct SimModel {
    /// Names a request may use for it (`model` field); the first is reported back.
    pub names: Vec<String>,
    pub latency: LatencyModel,
    /// Which RouteLLM model's quality labels it answers with.
    pub tier: QualityTier,
    /// A judge: it answers grading requests ([`crate::judge`]) with the verdict the quality
    /// labels give for the graded answer.
    pub judge: bool,
}

impl SimModel {
    pub fn large() -> SimModel {
        SimModel {
            names: vec!["sim-large".to_owned(), "large".to_owned()],
            latency: latency::LARGE,
            tier: QualityTier::Strong,
            judge: false,
        }
    }

    /// `sim-judge`: grades answers from the labels, at the small model's speed.
    pub fn judge() -> SimModel {
        SimModel {
            names: vec!["sim-judge".to_owned()],
            latency: latency::SMALL,
            tier: QualityTier::Strong,
            judge: true,
        }
    }

    pub fn small() -> SimModel {
        SimModel {
            names: vec!["sim-small".to_owned(), "small".to_owned()],
            latency: latency::SMALL,
            tier: QualityTier::Weak,
            judge: false,
        }
    }
}

/// An injected failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 429 with `Retry-After`.
    RateLimited { retry_after: Duration },
    /// An error status: 500, 502, 503, 504 or (Anthropic) 529.
    Status(u16),
    /// Nothing is sent for this long (real time, not scaled), then the answer is given.
    Hang(Duration),
    /// A stream stops half way without its terminal events (a whole answer is not affected).
    CutStream,
    /// 200 with a body that is not JSON.
    MalformedBody,
}

/// Probabilities of random faults, per request.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRates {
    pub rate_limited: f64,
    pub server_error: f64,
    pub hang: f64,
    pub cut_stream: f64,
    pub retry_after: Duration,
    pub hang_for: Duration,
}

impl Default for FaultRates {
    fn default() -> FaultRates {
        FaultRates {
            rate_limited: 0.0,
            server_error: 0.0,
            hang: 0.0,
            cut_stream: 0.0,
            retry_after: Duration::from_secs(1),
            hang_for: Duration::from_secs(30),
        }
    }
}

/// Settings of a simulator.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seeds every random draw: the same requests in the same order give the same answers,
    /// latencies and faults.
    pub seed: u64,
    /// Multiplies every simulated delay: 1.0 is real time, 0.01 a hundred times faster, 0.0 no
    /// delay at all (gateway overhead benchmarks). Injected hangs are not scaled.
    pub time_scale: f64,
    pub models: Vec<SimModel>,
    /// Window of the OpenAI-style automatic prompt cache.
    pub cache_window: Duration,
    pub faults: FaultRates,
    pub quality: Option<Arc<QualityLabels>>,
    /// Time for the prompt cache and `created` fields.
    pub clock: Arc<dyn Clock>,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            seed: 42,
            time_scale: 1.0,
            models: vec![SimModel::large(), SimModel::small(), SimModel::judge()],
            cache_window: Duration::from_secs(300),
            faults: FaultRates::default(),
            quality: Some(Arc::new(QualityLabels::bundled())),
            clock: Arc::new(SystemClock),
        }
    }
}

/// A planned reply. Delays are already scaled by the time scale.
#[derive(Debug, Clone)]
pub enum SimReply {
    Whole {
        status: u16,
        headers: Vec<(String, String)>,
        body: Bytes,
        delay: Duration,
    },
    Stream {
        headers: Vec<(String, String)>,
        /// Each event with the wait before it.
        events: Vec<(Duration, Bytes)>,
        /// The connection breaks after this many events.
        cut_after: Option<usize>,
        /// Wait before the response head (injected hang).
        head_delay: Duration,
    },
}

/// The simulator. Cheap to share: `Arc<SimEngine>` serves an in-process provider and an HTTP
/// server at once.
#[derive(Debug)]
pub struct SimEngine {
    config: SimConfig,
    cache: PromptCache,
    sequence: AtomicU64,
    scripted: Mutex<VecDeque<Option<Fault>>>,
}

impl SimEngine {
    pub fn new(config: SimConfig) -> SimEngine {
        SimEngine {
            config,
            cache: PromptCache::new(),
            sequence: AtomicU64::new(0),
            scripted: Mutex::new(VecDeque::new()),
        }
    }

    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Queues faults for the next requests, in order (`None` = a normal answer); they take
    /// precedence over the random rates. For tests and demos that need an exact sequence.
    pub fn script_faults(&self, faults: impl IntoIterator<Item = Option<Fault>>) {
        if let Ok(mut queue) = self.scripted.lock() {
            queue.extend(faults);
        }
    }

    /// Requests answered so far.
    pub fn requests_seen(&self) -> u64 {
        self.sequence.load(Ordering::SeqCst)
    }

    pub(crate) fn scale(&self, milliseconds: f64) -> Duration {
        let scaled = milliseconds * self.config.time_scale;
        if scaled.is_finite() && scaled > 0.0 {
            Duration::from_secs_f64(scaled / 1000.0)
        } else {
            Duration::ZERO
        }
    }

    fn find_model(&self, name: &str) -> Option<&SimModel> {
        self.config.models.iter().find(|model| model.names.iter().any(|n| n == name))
    }

    /// Plans the reply to one request body.
    pub fn reply(&self, protocol: Protocol, body: &[u8]) -> SimReply {
        let sequence = self.sequence.fetch_add(1, Ordering::SeqCst);
        let body_hash = xxh3_64(body);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(
            self.config.seed ^ body_hash ^ sequence.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        let value: Value = match serde_json::from_slice(body) {
            Ok(value @ Value::Object(_)) => value,
            _ => {
                return error_reply(
                    protocol,
                    400,
                    "invalid_request_error",
                    "body is not a JSON object",
                    &[],
                );
            }
        };
        let parsed = match self.parse(protocol, &value) {
            Ok(parsed) => parsed,
            Err(reply) => return reply,
        };
        let fault = self.next_fault(&mut rng, parsed.stream);
        let head_delay = match fault {
            Some(Fault::Hang(duration)) => duration,
            _ => Duration::ZERO,
        };
        match fault {
            Some(Fault::RateLimited { retry_after }) => {
                let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
                let mut headers = vec![("retry-after".to_owned(), seconds.to_string())];
                if protocol == Protocol::OpenAi {
                    headers
                        .push(("retry-after-ms".to_owned(), retry_after.as_millis().to_string()));
                }
                let message = "Rate limit reached for requests (simulated)";
                return error_reply(protocol, 429, "rate_limit_error", message, &headers);
            }
            Some(Fault::Status(status)) => {
                let (kind, message) = match status {
                    529 => ("overloaded_error", "Overloaded (simulated)"),
                    _ => {
                        ("api_error", "The server had an error processing your request (simulated)")
                    }
                };
                return error_reply(protocol, status, kind, message, &[]);
            }
            _ => {}
        }

        let now_ms = self.config.clock.now_ms();
        let usage = match protocol {
            Protocol::OpenAi => {
                let cached = self.cache.automatic(
                    &parsed.prompt_text,
                    parsed.prompt_tokens,
                    now_ms,
                    i64::try_from(self.config.cache_window.as_millis()).unwrap_or(i64::MAX),
                );
                cache::ExplicitCacheResult { read_tokens: cached, ..Default::default() }
            }
            Protocol::Anthropic => self.cache.explicit(&parsed.breakpoints, now_ms),
        };
        let uncached_prompt = parsed.prompt_tokens.saturating_sub(usage.read_tokens);
        let latency = parsed.model.latency.sample(uncached_prompt, &mut rng);

        let quality = self.config.quality.as_deref();
        let (label, known_answer, closing_line) = match parsed.last_user_text.as_deref() {
            Some(text) if parsed.model.judge => {
                let verdict = crate::judge::split_grading_prompt(text)
                    .zip(quality)
                    .map_or("UNSURE", |((question, answer), labels)| {
                        labels.judge(question, answer)
                    });
                (None, Some(verdict.to_owned()), None)
            }
            Some(text) => {
                let label = quality.and_then(|q| q.get(text));
                let known = label.and_then(|l| l.response(parsed.model.tier)).map(str::to_owned);
                // Without a recorded response (MMLU), the answer closes with the letter the
                // label implies, so a judge can grade it.
                let closing = label
                    .filter(|_| known.is_none())
                    .map(|l| super::quality::answer_line(text, l.correct(parsed.model.tier)));
                (label, known, closing)
            }
            None => (None, None, None),
        };
        // The answer depends on the model and the conversation only, like a temperature-0
        // model: the same prompt streamed or not gets the same text.
        let content_key = xxh3_64(
            format!(
                "{}\n{}",
                parsed.model_name,
                value.get("messages").map(Value::to_string).unwrap_or_default()
            )
            .as_bytes(),
        );
        let mut content_rng = Xoshiro256PlusPlus::seed_from_u64(self.config.seed ^ content_key);
        let generated = generate(
            known_answer.as_deref(),
            closing_line.as_deref(),
            parsed.max_tokens,
            &mut content_rng,
        );

        let mut headers = vec![
            (
                "content-type".to_owned(),
                if parsed.stream { "text/event-stream" } else { "application/json" }.to_owned(),
            ),
            ("x-sim-model-tier".to_owned(), format!("{:?}", parsed.model.tier).to_lowercase()),
        ];
        let request_id = format!("{:016x}{:08x}", rng.r#gen::<u64>(), rng.r#gen::<u32>());
        headers.push(match protocol {
            Protocol::OpenAi => ("x-request-id".to_owned(), format!("req_sim{request_id}")),
            Protocol::Anthropic => ("request-id".to_owned(), format!("req_sim{request_id}")),
        });
        if let Some(label) = label {
            headers.push((
                "x-sim-quality-correct".to_owned(),
                label.correct(parsed.model.tier).to_string(),
            ));
            headers.push(("x-sim-quality-source".to_owned(), "routellm".to_owned()));
        }
        let answer = Answer {
            id: request_id,
            model: parsed.model.names.first().cloned().unwrap_or(parsed.model_name.clone()),
            created: now_ms / 1000,
            generated,
            prompt_tokens: parsed.prompt_tokens,
            cache: usage,
            include_usage: parsed.include_usage,
        };
        if fault == Some(Fault::MalformedBody) {
            return SimReply::Whole {
                status: 200,
                headers,
                body: Bytes::from_static(b"{\"id\": \"chatcmpl-sim\", \"choices\": [tru"),
                delay: head_delay,
            };
        }
        if parsed.stream {
            let events = match protocol {
                Protocol::OpenAi => openai_events(&answer),
                Protocol::Anthropic => anthropic_events(&answer),
            };
            let timed = self.time_events(events, &latency);
            let cut_after = (fault == Some(Fault::CutStream)).then_some(timed.len() / 2);
            SimReply::Stream { headers, events: timed, cut_after, head_delay }
        } else {
            let body = match protocol {
                Protocol::OpenAi => openai_body(&answer),
                Protocol::Anthropic => anthropic_body(&answer),
            };
            let total = latency.total_ms(answer.generated.output_tokens.max(1));
            SimReply::Whole {
                status: 200,
                headers,
                body: Bytes::from(body.to_string()),
                delay: head_delay + self.scale(total),
            }
        }
    }

    /// Spreads events over time: everything up to the first content event arrives at the time
    /// to first token; after it, each token costs the per-token time. A content event carrying
    /// k tokens (a word piece) is sent when its first token is ready at the start and its last
    /// token later, so the first content event arrives exactly at the time to first token and
    /// the last at `ttft + (n − 1) · t`, as with one token per event.
    fn time_events(
        &self,
        events: Vec<(u64, Bytes)>,
        latency: &LatencySample,
    ) -> Vec<(Duration, Bytes)> {
        let mut first_content_seen = false;
        let mut owed_tokens = 0u64;
        events
            .into_iter()
            .map(|(tokens, bytes)| {
                let wait_ms = if tokens == 0 {
                    0.0
                } else if !first_content_seen {
                    first_content_seen = true;
                    owed_tokens = tokens - 1;
                    latency.time_to_first_token_ms
                } else {
                    let due = owed_tokens + tokens;
                    owed_tokens = 0;
                    latency.ms_per_output_token * due as f64
                };
                (self.scale(wait_ms), bytes)
            })
            .collect()
    }

    fn next_fault(&self, rng: &mut Xoshiro256PlusPlus, stream: bool) -> Option<Fault> {
        if let Some(fault) = self.scripted.lock().ok().and_then(|mut queue| queue.pop_front()) {
            return fault;
        }
        let rates = &self.config.faults;
        let draw: f64 = rng.r#gen();
        let mut threshold = rates.rate_limited;
        if draw < threshold {
            return Some(Fault::RateLimited { retry_after: rates.retry_after });
        }
        threshold += rates.server_error;
        if draw < threshold {
            return Some(Fault::Status(500));
        }
        threshold += rates.hang;
        if draw < threshold {
            return Some(Fault::Hang(rates.hang_for));
        }
        threshold += rates.cut_stream;
        if stream && draw < threshold {
            return Some(Fault::CutStream);
        }
        None
    }
}
