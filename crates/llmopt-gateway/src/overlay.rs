//! The optimizer's live policy laid over the configuration's routes: adopted rules and running
//! experiments adjust each request's decision ([`OptimizerOverlay::apply`]), finished calls and
//! their feedback are counted in their experiment arms, and cycles run on the configured cron
//! schedule ([`spawn_schedule`]) and on demand (`POST /api/optimize`).

use std::{sync::Arc, time::Duration};

use llmopt_core::{
    Clock, Endpoint, ExperimentArm, Feedback, PriceCatalog, RequestId, RequestRecord,
    usage::Protocol,
};
use llmopt_experiments::{Engine, UnitIds};
use llmopt_optimizer::{
    LivePolicy, Optimizer, OptimizerConfig, Policy, RequestContext, strategies,
};

use crate::{
    routing::{Candidate, RouteDecision, RouteInput},
    state::{AppState, Runtime, Stores},
};

/// Tags that name the unit of assignment when a client sends them (else the request is the unit).
pub const USER_TAG: &str = "user";
pub const SESSION_TAG: &str = "session";

/// The optimizer as the gateway sees it: its live policy and experiments, applied per request.
pub struct OptimizerOverlay {
    optimizer: Arc<Optimizer>,
    /// Request id → experiment arm, for feedback that arrives after the call (bounded).
    arms: moka::sync::Cache<String, ExperimentArm>,
    /// (request id, metric) pairs already counted in an experiment: feedback counts once per
    /// request and metric, so posting it again cannot push a guardrail or a verdict.
    counted: moka::sync::Cache<(String, String), ()>,
    /// The extra load hedges may add (`max_hedge_load`).
    hedges: crate::hedging::HedgeBudget,
}

impl std::fmt::Debug for OptimizerOverlay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OptimizerOverlay")
            .field("optimizer", &self.optimizer)
            .finish_non_exhaustive()
    }
}

impl OptimizerOverlay {
    /// Opens the optimizer over the given stores (experiments and policy are loaded from them).
    pub fn open(
        stores: &Stores,
        catalog: Arc<PriceCatalog>,
        clock: Arc<dyn Clock>,
        config: OptimizerConfig,
    ) -> Result<OptimizerOverlay, String> {
        let engine = Arc::new(
            Engine::open(Arc::clone(&stores.experiments), clock.clone())
                .map_err(|e| format!("experiments: {e}"))?,
        );
        let policy = Arc::new(
            LivePolicy::load(Arc::clone(&stores.policies), Policy::default())
                .map_err(|e| format!("policy: {e}"))?,
        );
        let optimizer = Optimizer::new(
            Arc::clone(&stores.records),
            engine,
            policy,
            Arc::clone(&stores.policies),
            catalog,
            clock,
            strategies::all(),
            config,
        )
        .map_err(|e| e.to_string())?;
        Ok(OptimizerOverlay {
            optimizer: Arc::new(optimizer),
            arms: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_idle(Duration::from_secs(24 * 3600))
                .build(),
            counted: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_idle(Duration::from_secs(24 * 3600))
                .build(),
            hedges: crate::hedging::HedgeBudget::default(),
        })
    }

    pub fn optimizer(&self) -> &Arc<Optimizer> {
        &self.optimizer
    }

    /// Adjusts the configuration's decision for one request: model substitution, `max_tokens`
    /// cap, cache on or off, timeout and experiment arm. `runtime` resolves providers for a
    /// substituted model.
    pub fn apply(&self, runtime: &Runtime, input: &RouteInput<'_>, decision: &mut RouteDecision) {
        // Read in place: cloning the whole configuration on every request is wasted work.
        let environment = self.optimizer.with_config(|config| config.environment.clone());
        let context = RequestContext {
            model: input.model,
            tenant: input.tenant,
            tags: input.tags,
            endpoint: match input.protocol {
                Protocol::OpenAi => Endpoint::ChatCompletions,
                Protocol::Anthropic => Endpoint::Messages,
            },
            unit_id: input
                .tags
                .get(USER_TAG)
                .or_else(|| input.tags.get(SESSION_TAG))
                .map_or(input.request_id, String::as_str),
            environment: &environment,
            workload: input.workload,
        };
        let units = UnitIds {
            request: input.request_id,
            user: input.tags.get(USER_TAG).map(String::as_str),
            session: input.tags.get(SESSION_TAG).map(String::as_str),
        };
        let routing = self.optimizer.route(&context, &units);
        let policy = routing.decision;
        if let Some(model) = &policy.model {
            let substituted = RouteInput { model, ..*input };
            match (&policy.provider, runtime.routes.decide(&substituted)) {
                (Some(provider), _) => {
                    decision
                        .candidates
                        .insert(0, Candidate { provider: provider.clone(), model: model.clone() });
                }
                (None, Some(routed)) => decision.candidates = routed.candidates,
                // No route serves the substitute: keep the client's model rather than fail.
                (None, None) => {
                    tracing::warn!(%model, "policy names a model no route serves; ignored")
                }
            }
        }
        if let Some(cap) = policy.max_tokens_cap {
            decision.max_tokens_cap = Some(decision.max_tokens_cap.map_or(cap, |own| own.min(cap)));
        }
        if let Some(cache) = policy.cache {
            decision.cache = cache.enabled;
            decision.cache_ttl = cache.ttl_seconds.map(Duration::from_secs);
            decision.cache_sampled = cache.allow_sampling;
        }
        if let Some(timeout_ms) = policy.timeout_ms {
            decision.timeout = Some(Duration::from_millis(timeout_ms));
        }
        if let Some(after_ms) = policy.hedge_after_ms {
            decision.hedge_after = Some(Duration::from_millis(after_ms));
        }
        decision.prompt_cache = policy.prompt_cache;
        decision.applied_flags = policy.applied_flags;
        decision.held_out = policy.held_out;
        if let Some(arm) = routing.arm {
            self.arms.insert(input.request_id.to_owned(), arm.clone());
            decision.experiment = Some(arm);
        }
    }

    /// Forgets the experiment arm given to a request that was then served without it.
    pub fn forget(&self, request_id: &str) {
        self.arms.invalidate(request_id);
    }

    /// Counts a call whose scope has an adopted hedge delay.
    pub fn hedge_eligible(&self) {
        self.hedges.eligible();
    }

    /// Whether a hedge may be sent now, within `max_hedge_load` (counts it when it may).
    pub fn may_hedge(&self) -> bool {
        let max_load = self.optimizer.with_config(|config| config.settings.max_hedge_load);
        self.hedges.try_hedge(max_load)
    }

    /// Sees every finished call's record before the collector takes it (experiment counts).
    pub fn on_record(&self, record: &RequestRecord) {
        if record.experiment.is_some() {
            self.optimizer.observe(record);
        }
    }

    /// Sees quality feedback that was joined to a stored call. The experiment counts the first
    /// value of each (request, metric); the record keeps the latest (`join_feedback`).
    pub fn on_feedback(&self, id: &RequestId, feedback: &Feedback) {
        let Some(arm) = self.arms.get(id.as_str()) else { return };
        let first = self
            .counted
            .entry((id.as_str().to_owned(), feedback.metric.clone()))
            .or_insert(())
            .is_fresh();
        if first {
            self.optimizer.observe_feedback(&arm, &feedback.metric, feedback.value.as_f64());
        }
    }
}

/// Who runs the scheduled cycles.
#[derive(Debug, Clone)]
pub enum CycleGate {
    /// This process, whenever the schedule says (it is alone on its store).
    Always,
    /// The one replica of a fleet holding the PostgreSQL leadership; the others skip their
    /// turn and take over on the next one after the leader goes.
    Leader(llmopt_storage::postgres::PgLeadership),
}

impl CycleGate {
    /// Whether this process runs the cycle now (blocking: may ask PostgreSQL).
    fn leads(&self) -> bool {
        match self {
            CycleGate::Always => true,
            CycleGate::Leader(leadership) => match leadership.try_lead() {
                Ok(leads) => leads,
                Err(error) => {
                    tracing::warn!(%error, "cannot tell which replica leads; skipping this cycle");
                    false
                }
            },
        }
    }
}

/// Runs cycles on a cron schedule until the process ends, when `gate` says this process leads.
/// Each cycle runs on a blocking thread.
pub fn spawn_schedule(
    state: AppState,
    schedule: &str,
    gate: CycleGate,
) -> crate::Result<tokio::task::JoinHandle<()>> {
    let cron = croner::Cron::new(schedule)
        .with_seconds_optional()
        .parse()
        .map_err(|e| crate::Error::Config(format!("optimizer.schedule `{schedule}`: {e}")))?;
    Ok(tokio::spawn(async move {
        let mut led = false;
        loop {
            let now = chrono_now();
            let Ok(next) = cron.find_next_occurrence(&now, false) else { break };
            let wait = (next - now).to_std().unwrap_or(Duration::from_secs(60));
            tokio::time::sleep(wait).await;
            let optimizer = state.optimizer().clone();
            let this_turn = gate.clone();
            let outcome = tokio::task::spawn_blocking(move || {
                if !this_turn.leads() {
                    return None;
                }
                Some(optimizer.run_cycle())
            })
            .await;
            let leads = matches!(outcome, Ok(Some(_)));
            state.metrics().set_cycle_leader(leads);
            if leads != led && matches!(gate, CycleGate::Leader(_)) {
                if leads {
                    tracing::info!("this replica now runs the optimization cycles");
                } else {
                    tracing::info!("another replica runs the optimization cycles");
                }
            }
            led = leads;
            match outcome {
                Ok(Some(Ok(report))) => tracing::info!(
                    proposals = report.proposals.len(),
                    started = report.started.len(),
                    adopted = report.adopted.len(),
                    "optimization cycle"
                ),
                Ok(Some(Err(error))) => tracing::error!(%error, "optimization cycle failed"),
                Ok(None) => {}
                Err(error) => tracing::error!(%error, "optimization cycle panicked"),
            }
        }
    }))
}

/// How often a replica on a shared store looks for a policy version another replica saved.
pub const POLICY_POLL: Duration = Duration::from_secs(1);

/// Takes in policy versions other replicas save (adoptions and rollbacks by the leader, policy
/// writes through any replica's API) and the virtual keys they make or revoke, every
/// [`POLICY_POLL`]: one indexed query and one read of the keys table each time.
pub fn spawn_policy_follower(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(POLICY_POLL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let optimizer = state.optimizer().clone();
            match tokio::task::spawn_blocking(move || optimizer.policy().refresh()).await {
                Ok(Ok(Some(version))) => {
                    tracing::info!(version, "policy version saved by another replica now applies");
                }
                Ok(Ok(None)) => {}
                Ok(Err(error)) => tracing::warn!(%error, "cannot read the shared policy"),
                Err(error) => tracing::warn!(%error, "policy refresh task failed"),
            }
            let keys = Arc::clone(state.keys());
            match tokio::task::spawn_blocking(move || keys.refresh()).await {
                Ok(Ok(0)) => {}
                Ok(Ok(changed)) => {
                    tracing::info!(changed, "virtual keys made or revoked by another replica");
                }
                Ok(Err(error)) => tracing::warn!(%error, "cannot read the shared keys"),
                Err(error) => tracing::warn!(%error, "key refresh task failed"),
            }
        }
    })
}

fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}
