//! The `llm-auto-optimizer` binary's library part: the commands that are more than a call into
//! a library crate, kept here so the binary's integration tests can call them without a
//! process. [`analyze`] formats the offline report `llmopt-analytics` builds; [`demo`] runs the
//! whole product on loopback through the gateway's public API, as a user's program would.
//! The gateway itself is the `llmopt-gateway` crate.

pub mod analyze;
pub mod demo;
