//! The engine: lifecycle, assignment, observation and evaluation over an `ExperimentStore`.
//!
//! Concurrency: `assign` is on the gateway's hot path and reads an immutable routing snapshot
//! (`RwLock<Arc<…>>`, rebuilt when an experiment starts, stops or changes weights), so it never
//! waits for `observe` or for the store. `observe` and the lifecycle calls share one mutex over
//! the experiments; the store is written under it, which keeps the in-memory state and the
//! stored revision in step.
//!
//! Persistence: lifecycle changes are written at once; accumulators are written by `evaluate`
//! (every optimization cycle) and by `checkpoint` (call it on shutdown). A crash loses at most
//! the observations since the last write. That only delays a decision: the lost records are not
//! chosen by their values, so the sequential tests stay valid on what remains. Each write
//! carries the revision last read, so a second process writing the same experiment gets a
//! conflict instead of silently overwriting it.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard, RwLock},
};

use llmopt_core::{Clock, ExperimentArm, ExperimentDoc, ExperimentStore, RequestRecord};

use crate::{
    assignment::{self, Scope, ScopeInputs, Unit, UnitIds},
    decision::{self, Decision},
    error::{Error, Result},
    experiment::{Experiment, ExperimentStatus, Outcome, SCHEMA_VERSION},
    spec::{Allocation, ExperimentSpec, Metric, PolicyChange},
};

/// Where a unit goes: the experiment, its arm, and the policy change to apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub arm: ExperimentArm,
    pub change: PolicyChange,
    pub bucket: u32,
}

#[derive(Debug)]
struct RouteArm {
    name: String,
    change: PolicyChange,
    active: bool,
}

/// The assignment view of one running experiment.
#[derive(Debug)]
struct Route {
    experiment_id: String,
    scope: Scope,
    unit: Unit,
    bounds: Vec<u32>,
    arms: Vec<RouteArm>,
}

#[derive(Debug)]
struct Entry {
    experiment: Experiment,
    tracked: Vec<Metric>,
    revision: u64,
    dirty: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means another thread panicked mid-update of plain counters; they are
    // still usable, so take them rather than propagate the panic to every request.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The experiment engine. Cheap to share (`Arc<Engine>`); every method takes `&self`.
#[derive(Debug)]
pub struct Engine {
    store: Arc<dyn ExperimentStore>,
    clock: Arc<dyn Clock>,
    entries: Mutex<BTreeMap<String, Entry>>,
    routes: RwLock<Arc<Vec<Route>>>,
}

impl Engine {
    /// Loads every stored experiment; running ones resume with their counts.
    pub fn open(store: Arc<dyn ExperimentStore>, clock: Arc<dyn Clock>) -> Result<Engine> {
        let mut entries = BTreeMap::new();
        for doc in store.list()? {
            let experiment = decode(&doc)?;
            let tracked = experiment.spec.tracked_metrics();
            entries.insert(
                doc.id.clone(),
                Entry { experiment, tracked, revision: doc.revision, dirty: false },
            );
        }
        let engine = Engine {
            store,
            clock,
            entries: Mutex::new(entries),
            routes: RwLock::new(Arc::new(Vec::new())),
        };
        engine.rebuild_routes(&lock(&engine.entries));
        Ok(engine)
    }

    /// Stores a new draft.
    pub fn create(&self, spec: ExperimentSpec) -> Result<Experiment> {
        spec.validate()?;
        let mut entries = lock(&self.entries);
        if entries.contains_key(&spec.id) || self.store.get(&spec.id)?.is_some() {
            return Err(Error::AlreadyExists(spec.id));
        }
        let now_ms = self.clock.now_ms();
        let tracked = spec.tracked_metrics();
        let mut entry =
            Entry { experiment: Experiment::new(spec, now_ms), tracked, revision: 0, dirty: true };
        self.write(&mut entry)?;
        let view = entry.experiment.clone();
        entries.insert(view.id().to_owned(), entry);
        Ok(view)
    }

    /// Draft or paused → running. Refused if an active experiment's scope overlaps.
    pub fn start(&self, id: &str) -> Result<Experiment> {
        let mut entries = lock(&self.entries);
        let (status, scope) = {
            let entry = entries.get(id).ok_or_else(|| Error::NotFound(id.to_owned()))?;
            (entry.experiment.status.name(), entry.experiment.spec.scope.clone())
        };
        if !matches!(status, "draft" | "paused") {
            return Err(Error::InvalidTransition { id: id.to_owned(), status, action: "start" });
        }
        if let Some(other) = entries.values().find(|other| {
            other.experiment.id() != id
                && other.experiment.status.is_active()
                && other.experiment.spec.scope.overlaps(&scope)
        }) {
            return Err(Error::Overlap {
                id: id.to_owned(),
                other: other.experiment.id().to_owned(),
            });
        }
        let now_ms = self.clock.now_ms();
        self.transition(&mut entries, id, |experiment| {
            experiment.started_ms.get_or_insert(now_ms);
            experiment.status = ExperimentStatus::Running;
            experiment.log(now_ms, if status == "paused" { "resumed" } else { "started" });
        })
    }

    /// Running → paused: no new assignments, counts kept, scope still reserved.
    pub fn pause(&self, id: &str) -> Result<Experiment> {
        let mut entries = lock(&self.entries);
        self.require(&entries, id, &["running"], "pause")?;
        let now_ms = self.clock.now_ms();
        self.transition(&mut entries, id, |experiment| {
            experiment.status = ExperimentStatus::Paused;
            experiment.log(now_ms, "paused");
        })
    }

    /// Stopped by a person, without a verdict.
    pub fn stop(&self, id: &str, reason: &str) -> Result<Experiment> {
        let mut entries = lock(&self.entries);
        self.require(&entries, id, &["draft", "running", "paused"], "stop")?;
        let now_ms = self.clock.now_ms();
        self.transition(&mut entries, id, |experiment| {
            experiment.status =
                ExperimentStatus::Stopped { reason: reason.to_owned(), at_ms: now_ms };
            experiment.log(now_ms, format!("stopped: {reason}"));
        })
    }

    /// Concluded by a person: adopt an arm (`Some`) or reject (`None`). The statistics at this
    /// moment are recorded in `last_decision`.
    pub fn conclude(&self, id: &str, adopt_arm: Option<&str>, reason: &str) -> Result<Experiment> {
        let mut entries = lock(&self.entries);
        self.require(&entries, id, &["running", "paused"], "conclude")?;
        if let Some(arm) = adopt_arm {
            let known =
                entries.get(id).is_some_and(|entry| entry.experiment.arm_index(arm).is_some());
            if !known {
                return Err(Error::UnknownArm { id: id.to_owned(), arm: arm.to_owned() });
            }
        }
        let now_ms = self.clock.now_ms();
        self.transition(&mut entries, id, |experiment| {
            let outcome = match adopt_arm {
                Some(arm) => Outcome::Adopted { arm: arm.to_owned() },
                None => Outcome::Rejected,
            };
            let primary = (1..experiment.arms.len())
                .map(|index| decision::compare_primary(experiment, index))
                .collect();
            let guardrails = (1..experiment.arms.len())
                .flat_map(|index| decision::check_guardrails(experiment, index))
                .collect();
            let action = match &outcome {
                Outcome::Adopted { arm } => decision::Action::Adopt { arm: arm.clone() },
                Outcome::Rejected => decision::Action::Reject,
            };
            experiment.record_decision(Decision {
                experiment_id: experiment.id().to_owned(),
                at_ms: now_ms,
                action,
                reason: format!("concluded by a person: {reason}"),
                primary,
                guardrails,
                weights: experiment.arms.iter().map(|arm| (arm.name.clone(), arm.weight)).collect(),
            });
            experiment.status =
                ExperimentStatus::Concluded { outcome, reason: reason.to_owned(), at_ms: now_ms };
            experiment.log(now_ms, format!("concluded by a person: {reason}"));
        })
    }

    /// Deletes a draft (never one with data).
    pub fn delete_draft(&self, id: &str) -> Result<()> {
        let mut entries = lock(&self.entries);
        self.require(&entries, id, &["draft"], "delete")?;
        self.store.delete(id)?;
        entries.remove(id);
        Ok(())
    }

    /// The experiment and arm for a request, if a running experiment's scope matches and the
    /// unit's bucket is covered by an active arm. Lock-free with respect to `observe`.
    pub fn assign(&self, inputs: &ScopeInputs<'_>, units: &UnitIds<'_>) -> Option<Assignment> {
        let routes = self.routes.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        // Overlaps are refused at start, so at most one route matches.
        let route = routes.iter().find(|route| route.scope.matches(inputs))?;
        let unit_id = units.id_for(route.unit)?;
        let bucket = assignment::bucket(&route.experiment_id, unit_id);
        let arm_index = assignment::arm_of_bucket(&route.bounds, bucket)?;
        let arm = &route.arms[arm_index];
        arm.active.then(|| Assignment {
            arm: ExperimentArm {
                experiment_id: route.experiment_id.clone(),
                arm: arm.name.clone(),
            },
            change: arm.change.clone(),
            bucket,
        })
    }

    /// Counts a finished request in its arm. `false` when the record belongs to no active
    /// experiment (or to an arm it does not know). Call once per record.
    pub fn observe(&self, record: &RequestRecord) -> bool {
        let Some(assigned) = &record.experiment else {
            return false;
        };
        let mut entries = lock(&self.entries);
        let Some(entry) = entries.get_mut(&assigned.experiment_id) else {
            return false;
        };
        if !entry.experiment.status.is_active() {
            return false;
        }
        let Some(arm_index) = entry.experiment.arm_index(&assigned.arm) else {
            return false;
        };
        entry.experiment.add_record(arm_index, record, &entry.tracked);
        entry.dirty = true;
        true
    }

    /// Counts quality feedback that arrived after its request was observed.
    pub fn observe_feedback(&self, assigned: &ExperimentArm, metric: &str, value: f64) -> bool {
        let mut entries = lock(&self.entries);
        let Some(entry) = entries.get_mut(&assigned.experiment_id) else {
            return false;
        };
        if !entry.experiment.status.is_active() {
            return false;
        }
        let Some(arm_index) = entry.experiment.arm_index(&assigned.arm) else {
            return false;
        };
        let counted = entry.experiment.arms[arm_index].add_feedback(metric, value, &entry.tracked);
        entry.dirty |= counted;
        counted
    }

    /// Evaluates every running experiment at `now_ms`, applies the decisions (arm stops,
    /// conclusions, new weights), persists, and returns them. See [`crate::decision`].
    pub fn evaluate(&self, now_ms: i64) -> Result<Vec<Decision>> {
        let mut entries = lock(&self.entries);
        let mut all = Vec::new();
        for entry in entries.values_mut() {
            if entry.experiment.status != ExperimentStatus::Running {
                continue;
            }
            let decisions = decision::evaluate(&mut entry.experiment, now_ms);
            entry.dirty = true;
            all.extend(decisions);
        }
        self.write_dirty(&mut entries)?;
        self.rebuild_routes(&entries);
        Ok(all)
    }

    /// Writes every experiment with unsaved observations.
    pub fn checkpoint(&self) -> Result<()> {
        let mut entries = lock(&self.entries);
        self.write_dirty(&mut entries)
    }

    /// Every experiment, ordered by id.
    pub fn list(&self) -> Vec<Experiment> {
        lock(&self.entries).values().map(|entry| entry.experiment.clone()).collect()
    }

    pub fn show(&self, id: &str) -> Result<Experiment> {
        lock(&self.entries)
            .get(id)
            .map(|entry| entry.experiment.clone())
            .ok_or_else(|| Error::NotFound(id.to_owned()))
    }

    fn require(
        &self,
        entries: &BTreeMap<String, Entry>,
        id: &str,
        allowed: &[&str],
        action: &'static str,
    ) -> Result<()> {
        let entry = entries.get(id).ok_or_else(|| Error::NotFound(id.to_owned()))?;
        let status = entry.experiment.status.name();
        if allowed.contains(&status) {
            Ok(())
        } else {
            Err(Error::InvalidTransition { id: id.to_owned(), status, action })
        }
    }

    /// Applies `change` to a copy, writes it, and only then replaces the in-memory state, so a
    /// failed write leaves the engine as it was.
    fn transition(
        &self,
        entries: &mut BTreeMap<String, Entry>,
        id: &str,
        change: impl FnOnce(&mut Experiment),
    ) -> Result<Experiment> {
        let entry = entries.get_mut(id).ok_or_else(|| Error::NotFound(id.to_owned()))?;
        let mut updated = Entry {
            experiment: entry.experiment.clone(),
            tracked: entry.tracked.clone(),
            revision: entry.revision,
            dirty: true,
        };
        change(&mut updated.experiment);
        self.write(&mut updated)?;
        *entry = updated;
        let view = entry.experiment.clone();
        self.rebuild_routes(entries);
        Ok(view)
    }

    fn write(&self, entry: &mut Entry) -> Result<()> {
        let body = serde_json::to_value(&entry.experiment).map_err(|error| Error::Corrupt {
            id: entry.experiment.id().to_owned(),
            message: format!("cannot encode: {error}"),
        })?;
        let doc = ExperimentDoc {
            id: entry.experiment.id().to_owned(),
            status: entry.experiment.status.name().to_owned(),
            revision: entry.revision,
            // Checkpoints change counts without a lifecycle event: stamp the write time.
            updated_ms: self.clock.now_ms().max(entry.experiment.updated_ms),
            body,
        };
        entry.revision = self.store.put(&doc)?;
        entry.dirty = false;
        Ok(())
    }

    fn write_dirty(&self, entries: &mut BTreeMap<String, Entry>) -> Result<()> {
        for entry in entries.values_mut().filter(|entry| entry.dirty) {
            self.write(entry)?;
        }
        Ok(())
    }

    fn rebuild_routes(&self, entries: &BTreeMap<String, Entry>) {
        let routes: Vec<Route> = entries
            .values()
            .filter(|entry| entry.experiment.status == ExperimentStatus::Running)
            .map(|entry| {
                let experiment = &entry.experiment;
                let weights: Vec<f64> = match experiment.spec.allocation {
                    // Fixed: the spec's weights, so stopping an arm moves no other unit.
                    Allocation::Fixed => {
                        experiment.spec.arms.iter().map(|arm| arm.weight).collect()
                    }
                    Allocation::Thompson { .. } => {
                        experiment.arms.iter().map(|arm| arm.weight).collect()
                    }
                };
                Route {
                    experiment_id: experiment.id().to_owned(),
                    scope: experiment.spec.scope.clone(),
                    unit: experiment.spec.unit,
                    bounds: assignment::bucket_bounds(&weights, experiment.spec.coverage),
                    arms: experiment
                        .spec
                        .arms
                        .iter()
                        .zip(&experiment.arms)
                        .map(|(spec, state)| RouteArm {
                            name: spec.name.clone(),
                            change: spec.change.clone(),
                            active: state.is_active(),
                        })
                        .collect(),
                }
            })
            .collect();
        *self.routes.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(routes);
    }
}

/// Decodes a stored body, refusing newer schemas and realigning accumulators with the spec.
fn decode(doc: &ExperimentDoc) -> Result<Experiment> {
    let corrupt = |message: String| Error::Corrupt { id: doc.id.clone(), message };
    let schema = doc.body.get("schema").and_then(serde_json::Value::as_u64).unwrap_or(0);
    if schema == 0 || schema > u64::from(SCHEMA_VERSION) {
        return Err(corrupt(format!("schema {schema} (this version reads 1..={SCHEMA_VERSION})")));
    }
    let mut experiment: Experiment =
        serde_json::from_value(doc.body.clone()).map_err(|error| corrupt(error.to_string()))?;
    if experiment.spec.id != doc.id {
        return Err(corrupt(format!("body is for experiment `{}`", experiment.spec.id)));
    }
    if experiment.arms.len() != experiment.spec.arms.len() {
        return Err(corrupt("arm states do not match the spec's arms".to_owned()));
    }
    let tracked = experiment.spec.tracked_metrics();
    for arm in &mut experiment.arms {
        let mut aligned = crate::experiment::ArmState::new(&arm.name, arm.weight, &tracked);
        for entry in &mut aligned.metrics {
            if let Some(stored) = arm.moments(&entry.metric) {
                entry.moments = *stored;
            }
        }
        arm.metrics = aligned.metrics;
    }
    Ok(experiment)
}
