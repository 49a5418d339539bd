//! The state of one experiment: its lifecycle status and per-arm accumulators. This is the body
//! of its `ExperimentDoc` (schema below) and what `list`/`show` return as JSON.
//!
//! Stored schema, version [`SCHEMA_VERSION`]: `{"schema": 1, "spec": ExperimentSpec, "status":
//! {"state": "draft" | "running" | "paused" | "concluded" | "stopped", …}, "arms": [ArmState],
//! …}`. Fields added later carry serde defaults; a document with a higher `schema` is refused
//! as corrupt rather than misread.

use serde::{Deserialize, Serialize};

use llmopt_core::{Moments, Money, RequestRecord};

use crate::{
    decision::{Action, Comparison, Decision, GuardrailCheck},
    spec::ExperimentSpec,
    spec::Metric,
    stats::bounded::BoundedDifference,
};

/// Version of the stored body. Bump when a field changes meaning.
pub const SCHEMA_VERSION: u32 = 1;

/// Where an experiment is in its life.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ExperimentStatus {
    Draft,
    Running,
    /// Keeps its counts and its scope, but assigns nobody until started again.
    Paused,
    /// Decided, by the engine or by a person; `decision` holds the numbers at that moment.
    Concluded {
        outcome: Outcome,
        reason: String,
        at_ms: i64,
    },
    /// Ended by a person without a verdict.
    Stopped {
        reason: String,
        at_ms: i64,
    },
}

impl ExperimentStatus {
    pub fn name(&self) -> &'static str {
        match self {
            ExperimentStatus::Draft => "draft",
            ExperimentStatus::Running => "running",
            ExperimentStatus::Paused => "paused",
            ExperimentStatus::Concluded { .. } => "concluded",
            ExperimentStatus::Stopped { .. } => "stopped",
        }
    }

    /// Running or paused: holds its scope and counts new records.
    pub fn is_active(&self) -> bool {
        matches!(self, ExperimentStatus::Running | ExperimentStatus::Paused)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Outcome {
    Adopted { arm: String },
    Rejected,
}

/// Whether an arm still receives traffic.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ArmStatus {
    #[default]
    Active,
    /// Taken out (a breached guardrail, or clearly worse on the primary metric). Its units leave
    /// the experiment and get the default policy; its counts are kept for the record.
    Stopped { reason: String, at_ms: i64 },
}

/// One metric's accumulator in one arm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricMoments {
    pub metric: String,
    pub moments: Moments,
}

/// The accumulators of one arm: mergeable, so shards or replicas could be combined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmState {
    pub name: String,
    #[serde(default)]
    pub status: ArmStatus,
    /// Current traffic weight (the spec's under fixed allocation; Thompson's in multi-arm mode).
    pub weight: f64,
    pub requests: u64,
    pub errors: u64,
    /// Total cost of the requests whose cost is known, exact, incomplete requests counted at
    /// the lower bound of the usage they had reported.
    pub cost: Money,
    pub cost_unknown: u64,
    /// Requests counted in `cost` at a lower bound (`incomplete`: a cut or abandoned stream).
    #[serde(default)]
    pub cost_incomplete: u64,
    pub feedback_events: u64,
    /// One entry per tracked metric, in `ExperimentSpec::tracked_metrics` order.
    pub metrics: Vec<MetricMoments>,
    /// A treatment's cost comparison with the control, fed with every record of the
    /// experiment ([`crate::stats::bounded`]); absent on the control and without a cost metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_sequence: Option<BoundedDifference>,
}

impl ArmState {
    pub fn new(name: &str, weight: f64, tracked: &[Metric]) -> ArmState {
        ArmState {
            name: name.to_owned(),
            status: ArmStatus::Active,
            weight,
            requests: 0,
            errors: 0,
            cost: Money::ZERO,
            cost_unknown: 0,
            cost_incomplete: 0,
            feedback_events: 0,
            metrics: tracked
                .iter()
                .map(|metric| MetricMoments { metric: metric.key(), moments: Moments::new() })
                .collect(),
            cost_sequence: None,
        }
    }

    pub fn is_active(&self) -> bool {
        self.status == ArmStatus::Active
    }

    /// The accumulator of `metric_key`, if tracked.
    pub fn moments(&self, metric_key: &str) -> Option<&Moments> {
        self.metrics.iter().find(|entry| entry.metric == metric_key).map(|entry| &entry.moments)
    }

    /// Adds a record's counts and the value of every tracked metric it carries.
    pub fn add_record(&mut self, record: &RequestRecord, tracked: &[Metric]) {
        self.requests += 1;
        self.errors += u64::from(!record.status.is_ok());
        match record.cost {
            Some(cost) => {
                self.cost += cost;
                self.cost_incomplete += u64::from(record.incomplete);
            }
            None => self.cost_unknown += 1,
        }
        let mut carried_feedback = false;
        for (metric, entry) in tracked.iter().zip(self.metrics.iter_mut()) {
            if let Some(value) = metric.value_of(record) {
                let counted = entry.moments.push(value);
                carried_feedback |= counted && metric.feedback_name().is_some();
            }
        }
        self.feedback_events += u64::from(carried_feedback);
    }

    /// Adds one late feedback value to the matching quality metric(s); `false` if none tracks it.
    pub fn add_feedback(&mut self, metric_name: &str, value: f64, tracked: &[Metric]) -> bool {
        let mut counted = false;
        for (metric, entry) in tracked.iter().zip(self.metrics.iter_mut()) {
            if metric.feedback_name() == Some(metric_name) && entry.moments.push(value) {
                counted = true;
            }
        }
        if counted {
            self.feedback_events += 1;
        }
        counted
    }

    /// Combines another shard's accumulators of the same arm into this one.
    pub fn merge(&mut self, other: &ArmState) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.cost += other.cost;
        self.cost_unknown += other.cost_unknown;
        self.cost_incomplete += other.cost_incomplete;
        self.feedback_events += other.feedback_events;
        for entry in &mut self.metrics {
            if let Some(theirs) = other.moments(&entry.metric) {
                entry.moments.merge(theirs);
            }
        }
        if let Some(theirs) = &other.cost_sequence {
            self.cost_sequence.get_or_insert_with(BoundedDifference::default).merge(theirs);
        }
    }
}

/// A lifecycle event, kept in the document for the audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub at_ms: i64,
    pub what: String,
}

/// One experiment: the stored body and the `show` view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    pub schema: u32,
    pub spec: ExperimentSpec,
    pub status: ExperimentStatus,
    pub created_ms: i64,
    #[serde(default)]
    pub started_ms: Option<i64>,
    pub updated_ms: i64,
    pub arms: Vec<ArmState>,
    /// How many times the engine evaluated it (seeds Thompson sampling reproducibly).
    #[serde(default)]
    pub evaluations: u64,
    /// The latest decision with its numbers; for a concluded experiment, the final one.
    #[serde(default)]
    pub last_decision: Option<Decision>,
    #[serde(default)]
    pub events: Vec<Event>,
    /// The numbers of past decisions, oldest first, at most [`MAX_HISTORY`] of them (thinned,
    /// see [`Experiment::record_decision`]): what a dashboard draws the intervals over time from.
    #[serde(default)]
    pub history: Vec<DecisionPoint>,
}

/// The most decision points an experiment keeps. Every evaluation (one per optimization cycle)
/// adds one; a full history drops every second older point, so it keeps covering the whole
/// life of the experiment at a coarser grain and the stored document stays small.
pub const MAX_HISTORY: usize = 240;

/// One decision's numbers, as kept in [`Experiment::history`]: the primary comparison and the
/// guardrail checks of each treatment, without the reason text and weights of the full
/// [`Decision`] (the latest one is [`Experiment::last_decision`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionPoint {
    pub at_ms: i64,
    #[serde(flatten)]
    pub action: Action,
    pub primary: Vec<Comparison>,
    pub guardrails: Vec<GuardrailCheck>,
}

impl Experiment {
    pub fn new(spec: ExperimentSpec, now_ms: i64) -> Experiment {
        let tracked = spec.tracked_metrics();
        let arms =
            spec.arms.iter().map(|arm| ArmState::new(&arm.name, arm.weight, &tracked)).collect();
        Experiment {
            schema: SCHEMA_VERSION,
            spec,
            status: ExperimentStatus::Draft,
            created_ms: now_ms,
            started_ms: None,
            updated_ms: now_ms,
            arms,
            evaluations: 0,
            last_decision: None,
            events: vec![Event { at_ms: now_ms, what: "created".to_owned() }],
            history: Vec::new(),
        }
    }

    pub fn id(&self) -> &str {
        &self.spec.id
    }

    pub fn arm_index(&self, name: &str) -> Option<usize> {
        self.arms.iter().position(|arm| arm.name == name)
    }

    /// Counts a finished request in arm `arm_index`: its cost in the treatments' cost
    /// sequences (which see every arm's records, in arrival order), then its values in the arm.
    pub fn add_record(&mut self, arm_index: usize, record: &RequestRecord, tracked: &[Metric]) {
        if arm_index >= self.arms.len() {
            return;
        }
        if tracked.contains(&Metric::CostUsd)
            && let Some(cost) = Metric::CostUsd.value_of(record)
        {
            crate::cost::observe(self, arm_index, cost);
        }
        self.arms[arm_index].add_record(record, tracked);
    }

    /// Makes `decision` the latest one and adds its numbers to the history. A full history
    /// first drops every second point but its newest, halving its grain.
    pub(crate) fn record_decision(&mut self, decision: Decision) {
        if self.history.len() >= MAX_HISTORY {
            let newest = self.history.len() - 1;
            let mut index = 0;
            self.history.retain(|_| {
                let keep = index % 2 == 0 || index == newest;
                index += 1;
                keep
            });
        }
        self.history.push(DecisionPoint {
            at_ms: decision.at_ms,
            action: decision.action.clone(),
            primary: decision.primary.clone(),
            guardrails: decision.guardrails.clone(),
        });
        self.last_decision = Some(decision);
    }

    pub(crate) fn log(&mut self, at_ms: i64, what: impl Into<String>) {
        self.updated_ms = at_ms;
        self.events.push(Event { at_ms, what: what.into() });
    }
}

#[cfg(test)]
mod tests {
    use llmopt_core::{ErrorKind, Status as RecordStatus};

    use super::*;
    use crate::spec::PolicyChange;

    fn decision_at(at_ms: i64) -> Decision {
        Decision {
            experiment_id: "e".into(),
            at_ms,
            action: Action::Continue,
            reason: String::new(),
            primary: Vec::new(),
            guardrails: Vec::new(),
            weights: Vec::new(),
        }
    }

    #[test]
    fn the_decision_history_stays_bounded_and_spans_the_whole_life() {
        let spec = ExperimentSpec::ab(
            "e",
            PolicyChange::default(),
            PolicyChange::default(),
            Metric::CostUsd,
            1,
        );
        let mut experiment = Experiment::new(spec, 0);
        for at_ms in 0..1_000 {
            experiment.record_decision(decision_at(at_ms));
            assert!(experiment.history.len() <= MAX_HISTORY);
        }
        let times: Vec<i64> = experiment.history.iter().map(|point| point.at_ms).collect();
        assert_eq!(times.first(), Some(&0), "the first decision is kept");
        assert_eq!(times.last(), Some(&999), "the newest decision is kept");
        assert!(times.windows(2).all(|pair| pair[0] < pair[1]), "oldest first: {times:?}");
        assert!(times.len() > MAX_HISTORY / 2, "thinning halves, never empties: {}", times.len());
        assert_eq!(experiment.last_decision.map(|d| d.at_ms), Some(999));
    }

    #[test]
    fn merged_shards_equal_one_arm_fed_everything() {
        let tracked =
            vec![Metric::CostUsd, Metric::ErrorRate, Metric::Quality { name: "ok".into() }];
        let records: Vec<RequestRecord> = (0..100i128)
            .map(|index| {
                let mut record = RequestRecord::new(format!("r{index}"), 0, "openai", "m");
                record.cost = (index % 7 != 0).then_some(Money(1_000 + index * 37));
                if index % 10 == 0 {
                    record.status = RecordStatus::Error(ErrorKind::Timeout);
                }
                record
            })
            .collect();
        let mut whole = ArmState::new("a", 1.0, &tracked);
        let mut left = ArmState::new("a", 1.0, &tracked);
        let mut right = ArmState::new("a", 1.0, &tracked);
        for (index, record) in records.iter().enumerate() {
            whole.add_record(record, &tracked);
            if index < 37 { &mut left } else { &mut right }.add_record(record, &tracked);
        }
        assert!(whole.add_feedback("ok", 1.0, &tracked));
        assert!(right.add_feedback("ok", 1.0, &tracked));
        left.merge(&right);
        assert_eq!(left.requests, 100);
        assert_eq!(left.errors, 10);
        assert_eq!(left.cost_unknown, 15);
        assert_eq!(left.cost, whole.cost);
        // Σ over index not divisible by 7 of (1000 + 37·index), computed by hand: 85 records,
        // index sum 4950 − 7·(0+1+…+14) = 4950 − 735 = 4215.
        assert_eq!(whole.cost, Money(85 * 1_000 + 37 * 4_215));
        for (merged, single) in left.metrics.iter().zip(&whole.metrics) {
            assert_eq!(merged.moments.count, single.moments.count);
            assert!((merged.moments.mean - single.moments.mean).abs() < 1e-12);
            assert!(
                (merged.moments.m2 - single.moments.m2).abs() < 1e-6 * single.moments.m2.max(1.0)
            );
        }
        assert_eq!(left.feedback_events, 1);
    }
}
