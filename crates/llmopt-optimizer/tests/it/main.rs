//! Integration tests of `llmopt-optimizer`.

#![allow(clippy::unwrap_used, reason = "tests stop at the first failure")]

mod cycle;
mod evaluation;
mod policy;
mod quality_budget;
mod strategies;
mod support;
