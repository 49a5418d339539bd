//! Integration tests of the gateway library: router tests with `oneshot`, end-to-end tests on
//! real loopback ports against the llm crate's simulated server.

#![allow(clippy::unwrap_used, reason = "test helpers: a failed unwrap is a failed test")]
#![allow(clippy::result_large_err, reason = "figment's Jail closures return its own error type")]

mod access;
mod config;
mod cross;
mod dashboard;
mod demo_env;
mod deploy_metrics;
mod endpoints;
mod engines;
#[cfg(feature = "grpc")]
mod grpc;
mod judge;
mod keys;
mod loop_e2e;
#[cfg(feature = "otel")]
mod otel;
mod parsing;
mod policy_changes;
mod proxy;
mod reload;
mod router;
mod streams;
mod support;
