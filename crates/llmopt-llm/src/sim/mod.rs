//! A simulated LLM provider for tests, demos and benchmarks.
//!
//! - **Both wire formats**, in-process ([`SimProvider`], a [`crate::Provider`]) and over HTTP
//!   on 127.0.0.1 ([`SimServer`]); both answer through one [`SimEngine`], so they behave alike
//!   and can share a prompt cache.
//! - **Latency** from a model fitted to measured prefill and decode times
//!   ([`latency`], with the fitted numbers), per simulated model (`large` and `small`),
//!   scaled by [`SimConfig::time_scale`] (0 = no delay, for gateway overhead benchmarks).
//! - **Realistic bodies and usage**: the providers' own JSON and SSE shapes, usage with cached
//!   tokens when a prompt prefix repeats within the cache window ([`cache`]).
//! - **Quality from real labels** ([`quality`]): for a known prompt, the answer is the real
//!   answer of the model the profile stands for, and the header `x-sim-quality-correct` tells
//!   whether it was judged correct.
//! - **Error injection**: 429 with `Retry-After`, 5xx, hangs, cut streams, malformed bodies,
//!   at random rates or scripted ([`SimEngine::script_faults`]).
//! - **Seeded**: a run of the same requests in the same order is reproducible; the content of
//!   an answer depends only on the seed, the model and the messages.

pub mod cache;
pub mod engine;
pub mod latency;
pub mod provider;
pub mod quality;
pub mod server;

pub use engine::{Fault, FaultRates, SimConfig, SimEngine, SimModel, SimReply};
pub use latency::{LatencyModel, LatencySample};
pub use provider::SimProvider;
pub use quality::{QualityLabel, QualityLabels, QualityTier};
pub use server::SimServer;
