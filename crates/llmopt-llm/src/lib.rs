//! Provider clients behind the [`Provider`] trait: OpenAI-compatible, Anthropic and a simulated
//! provider, with retry, rate-limit, timeout and hedging decorators.
//!
//! The only crate that knows reqwest. Design choices:
//! - **Bodies pass through.** A request is its top-level JSON fields kept raw
//!   ([`ChatRequest`]); a whole answer is the provider's body byte for byte; a stream is the
//!   provider's SSE events byte for byte. Usage, model, stop reason and time to first token are
//!   read on the way with the core normalisers ([`llmopt_core::Usage`],
//!   [`llmopt_core::StreamUsage`], [`llmopt_core::SseDecoder`]). A stream cut part way keeps
//!   the usage the provider had reported (Anthropic's `message_start`), a lower bound, and has
//!   usage `None` when it reported none (OpenAI's comes last): unknown, never zero. What a
//!   stream has seen stays readable through its [`StreamProgress`] after the stream is dropped.
//! - **One pooled client per provider**, rustls, `TCP_NODELAY` on (loopback latency otherwise
//!   gains ~40 ms from Nagle meeting delayed ACK), three timeouts ([`Timeouts`]).
//! - **Resilience is decorators** ([`decorators`]), each a `Provider` around an
//!   `Arc<dyn Provider>`, so a policy can stack them per route and tests can use each alone.
//!   They use tokio's clock, so tests run them under paused time without sleeping.
//! - **Typed errors** ([`ProviderError`]) the gateway maps to the caller's protocol; upstream
//!   error bodies are kept so they can pass through.
//! - **A simulated provider** ([`sim`]) that speaks both wire formats in-process and over
//!   HTTP, with latency fitted to measured prefill and decode times, prompt caching, error
//!   injection and answer quality from real benchmark labels, for tests, demos and benches.
//! - **Calls across protocols** ([`translate`]): an OpenAI request served by an Anthropic model
//!   and the reverse, translated both ways, streams included; what cannot be translated is
//!   refused with the field named.
//! - **One grading format** ([`judge`]) for the gateway's judge and the simulated judge model.
//! - **Keys never print** ([`SecretString`]).

pub mod anthropic;
pub mod decorators;
pub mod error;
pub mod http;
pub mod judge;
pub mod openai;
pub mod passthrough;
pub mod provider;
pub mod secret;
pub mod sim;
mod stream;
pub mod translate;

pub use anthropic::{Anthropic, AnthropicConfig};
pub use decorators::{
    Hedge, HedgeConfig, Hedged, RateLimit, RateLimitConfig, RateLimitMode, Retry, RetryConfig,
    Timeout, hedged_chat,
};
pub use error::{Error, Result};
pub use http::{BytesClient, Timeouts};
pub use openai::{OpenAiCompatible, OpenAiConfig};
pub use passthrough::{ApiCall, ApiMethod, ApiResponse, ApiStream};
pub use provider::{
    ChatRequest, ChatResponse, ChatStream, Provider, ProviderError, StreamItem, StreamOutcome,
    StreamProgress,
};
pub use secret::SecretString;
pub use translate::{Translating, Untranslatable};
