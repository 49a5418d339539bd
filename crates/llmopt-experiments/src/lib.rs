//! The A/B experiment engine: stable hash assignment, per-arm mergeable accumulators,
//! anytime-valid sequential tests for the primary metric, guardrails, and the experiment
//! lifecycle persisted through the core `ExperimentStore`.
//!
//! Design choices:
//! - **Valid when watched continuously.** An optimizer evaluates its experiments on every
//!   cycle. A fixed-horizon t-test checked that often declares false winners several times more
//!   often than its nominal α (the A/A simulation in `tests/it/simulation.rs` measures it).
//!   Every interval here is a confidence sequence (Howard et al. 2021, the normal-mixture form
//!   GrowthBook uses; see [`stats`]), valid at every sample size at once, so stopping at the
//!   first significant look keeps the false-positive rate at α.
//! - **Cost per call is bounded, not normal.** Its distribution is heavy-tailed and differs
//!   between arms (a cheaper model that sometimes writes much longer answers), where the normal
//!   mixture's plug-in variance declares false winners. Cost is compared with an
//!   empirical-Bernstein sequence for bounded observations on a design-based difference
//!   ([`stats::bounded`]): exact for every distribution within the bound, unaffected by drift
//!   of both arms, pinned against the `confseq` package. `SIMULATIONS.md` has the numbers.
//! - **Guardrails are non-inferiority tests** on the same sequences: a treatment is stopped the
//!   moment its degradation is shown to exceed the allowance, and adopted only once every
//!   guardrail is shown within it ([`decision`]).
//! - **Sufficient statistics only.** Each arm keeps counts, exact cost ([`llmopt_core::Money`])
//!   and mergeable Welford moments ([`llmopt_core::Moments`]) per tracked metric; records and
//!   late feedback update them in O(1), and a decision never rereads raw records.
//! - **Cut streams are not dropped.** A record whose stream was cut or abandoned counts at the
//!   exact cost of the usage it had reported (a lower bound), and a cost experiment guards the
//!   share of such inexact costs per arm, so an arm cannot look cheaper by losing more of its
//!   answers ([`spec::Metric::CostUsd`] explains the method and its bound).
//! - **Stable assignment.** A documented hash (GrowthBook's FNV-1a v2) of experiment id and unit
//!   id into 10,000 buckets ([`assignment`]): replicas agree without talking. Overlapping
//!   experiments are refused at start rather than layered.
//! - **Persistence through the seam.** The engine owns the versioned JSON schema of each
//!   `ExperimentDoc` body ([`experiment`]) and writes it with optimistic revisions; a new engine
//!   over the same store resumes every running experiment with its counts.
//! - **Time is a parameter.** Lifecycle timestamps come from a [`llmopt_core::Clock`];
//!   `evaluate` takes the evaluation time, so tests and replays drive time.
//!
//! Limits: the analysis treats requests as independent; with `unit = user` or `session` and
//! many requests per unit the intervals are too narrow (a per-unit aggregation is future work).
//! In Thompson (multi-arm) mode the split changes over time, which can bias the comparison if
//! the metric drifts over time too.

pub mod assignment;
mod cost;
pub mod decision;
pub mod engine;
pub mod error;
pub mod experiment;
pub mod spec;
pub mod stats;

pub use assignment::{BUCKETS, Scope, ScopeInputs, Unit, UnitIds, bucket};
pub use decision::{
    Action, Comparison, Decision, GuardrailCheck, GuardrailVerdict, StopCause, Verdict,
};
pub use engine::{Assignment, Engine};
pub use error::{Error, Result};
pub use experiment::{
    ArmState, ArmStatus, DecisionPoint, Experiment, ExperimentStatus, MAX_HISTORY, Outcome,
    SCHEMA_VERSION,
};
pub use spec::{
    Allocation, ArmSpec, Degradation, ExperimentSpec, Guardrail, Metric, PolicyChange,
    PromptCacheTtl,
};
pub use stats::{ArmSummary, Interval, ValueKind};
