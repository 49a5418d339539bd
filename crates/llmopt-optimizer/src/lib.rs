//! Optimization strategies, the live policy, and the optimization cycle that proposes,
//! experiments, adopts and rolls back.
//!
//! - [`policy`]: ordered scope → action rules gated by feature flags with deterministic
//!   rollouts, read lock-free on every request and persisted through the core `PolicyStore`.
//! - [`strategy`] and [`strategies`]: the `Strategy` seam and the six strategies (response
//!   cache, provider prompt cache, model routing, `max_tokens` cap, timeout and hedging, batch
//!   pricing). Strategies are pure functions of the records of a window.
//! - [`cycle`]: the loop that runs them, starts experiments within limits, evaluates them, and
//!   adopts winners (model routing within a global quality budget) or rolls them back, writing
//!   every decision with its numbers to the audit log.

pub mod cycle;
pub mod evaluation;
pub mod offline;
pub mod policy;
pub mod strategies;
pub mod strategy;
pub mod workloads;

pub use cycle::{
    Adoption, CycleReport, LoopMetrics, Measurement, Mode, Optimizer, OptimizerConfig,
    OptimizerError, RolledBack, Routing,
};
pub use policy::{
    Action, Admission, Decision, FeatureFlag, FlagConditions, LivePolicy, Policy, PolicyError,
    RequestContext, Rule, Scope,
};
pub use strategy::{
    AnalysisInput, Estimate, Proposal, Risk, Strategy, StrategyKind, StrategySettings,
};
