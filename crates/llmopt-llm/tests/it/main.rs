//! Integration tests of `llmopt-llm`: the HTTP clients against a scripted local upstream (an
//! in-test axum server) and mockito, the decorators under tokio's paused time, and the
//! simulated provider in-process and over HTTP.

#![allow(
    clippy::unwrap_used,
    reason = "helpers outside #[test] fns panic on broken fixtures, like the tests themselves"
)]

mod anthropic;
mod decorators;
mod openai;
mod sim;
mod upstream;
