//! Integration tests of the binary: its commands run as a user runs them (`analyze`, `demo`,
//! `pricing`, `config check`), on real files and loopback ports. The gateway's own tests live
//! with `llmopt-gateway`.

#![allow(clippy::unwrap_used, reason = "test helpers: a failed unwrap is a failed test")]

mod analyze;
mod cdp;
mod cli;
mod dashboard;
mod demo;
mod evaluate;
mod fleet;
