//! Integration tests of `llmopt-optimizer`.

mod cycle;
mod policy;
mod strategies;
mod support;
