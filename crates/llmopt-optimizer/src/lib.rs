//! Optimization strategies, the live policy, and the optimization cycle that proposes,
//! experiments, adopts and rolls back.
//!
//! Today this crate holds the live policy ([`policy`]): ordered scope → action rules gated by
//! feature flags with deterministic rollouts, read lock-free on every request and persisted
//! through the core `PolicyStore`. Strategies and the cycle arrive with the closed-loop issue.

pub mod policy;

pub use policy::{
    Action, Decision, FeatureFlag, FlagConditions, LivePolicy, Policy, PolicyError, RequestContext,
    Rule, Scope,
};
