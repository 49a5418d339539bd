//! The closed loop inside the gateway: the optimizer's live policy and running experiments
//! decide each request ([`ClosedLoop`] is the gateway's `PolicyOverlay`), finished calls and
//! their feedback are counted in their experiment arms, and cycles run on the configured cron
//! schedule and on demand (`POST /api/optimize`).

use std::{sync::Arc, time::Duration};

use llmopt_core::{
    Clock, Endpoint, ExperimentArm, ExperimentStore, Feedback, PolicyStore, PriceCatalog,
    RecordStore, RequestId, RequestRecord, usage::Protocol,
};
use llmopt_experiments::{Engine, UnitIds};
use llmopt_optimizer::{
    LivePolicy, Optimizer, OptimizerConfig, Policy, RequestContext, strategies,
};

use crate::{
    routing::{Candidate, RouteDecision, RouteInput, RoutePolicy},
    state::{PolicyOverlay, Runtime},
};

/// Tags that name the unit of assignment when a client sends them (else the request is the unit).
pub const USER_TAG: &str = "user";
pub const SESSION_TAG: &str = "session";

/// The optimizer as the gateway's policy overlay.
pub struct ClosedLoop {
    optimizer: Arc<Optimizer>,
    /// Request id → experiment arm, for feedback that arrives after the call (bounded).
    arms: moka::sync::Cache<String, ExperimentArm>,
}

impl std::fmt::Debug for ClosedLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClosedLoop").field("optimizer", &self.optimizer).finish_non_exhaustive()
    }
}

impl ClosedLoop {
    /// Builds the optimizer over the given stores.
    pub fn open(
        records: Arc<dyn RecordStore>,
        experiments: Arc<dyn ExperimentStore>,
        policies: Arc<dyn PolicyStore>,
        catalog: Arc<PriceCatalog>,
        clock: Arc<dyn Clock>,
        config: OptimizerConfig,
    ) -> anyhow::Result<ClosedLoop> {
        let engine = Arc::new(Engine::open(experiments, clock.clone())?);
        let policy = Arc::new(LivePolicy::load(policies.clone(), Policy::default())?);
        let optimizer = Optimizer::new(
            records,
            engine,
            policy,
            policies,
            catalog,
            clock,
            strategies::all(),
            config,
        )?;
        Ok(ClosedLoop {
            optimizer: Arc::new(optimizer),
            arms: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_idle(Duration::from_secs(24 * 3600))
                .build(),
        })
    }

    pub fn optimizer(&self) -> &Arc<Optimizer> {
        &self.optimizer
    }
}

impl PolicyOverlay for ClosedLoop {
    fn apply(&self, runtime: &Runtime, input: &RouteInput<'_>, decision: &mut RouteDecision) {
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
        }
        if let Some(timeout_ms) = policy.timeout_ms {
            decision.timeout = Some(Duration::from_millis(timeout_ms));
        }
        if let Some(arm) = routing.arm {
            self.arms.insert(input.request_id.to_owned(), arm.clone());
            decision.experiment = Some(arm);
        }
    }

    fn on_record(&self, record: &RequestRecord) {
        if record.experiment.is_some() {
            self.optimizer.observe(record);
        }
    }

    fn on_feedback(&self, id: &RequestId, feedback: &Feedback) {
        if let Some(arm) = self.arms.get(id.as_str()) {
            self.optimizer.observe_feedback(&arm, &feedback.metric, feedback.value.as_f64());
        }
    }
}

/// Runs cycles on a cron schedule until the process ends. Each cycle runs on a blocking thread.
pub fn spawn_schedule(
    optimizer: Arc<Optimizer>,
    schedule: &str,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let cron = croner::Cron::new(schedule)
        .with_seconds_optional()
        .parse()
        .map_err(|e| anyhow::anyhow!("optimizer.schedule `{schedule}`: {e}"))?;
    Ok(tokio::spawn(async move {
        loop {
            let now = chrono_now();
            let Ok(next) = cron.find_next_occurrence(&now, false) else { break };
            let wait = (next - now).to_std().unwrap_or(Duration::from_secs(60));
            tokio::time::sleep(wait).await;
            let optimizer = optimizer.clone();
            match tokio::task::spawn_blocking(move || optimizer.run_cycle()).await {
                Ok(Ok(report)) => tracing::info!(
                    proposals = report.proposals.len(),
                    started = report.started.len(),
                    adopted = report.adopted.len(),
                    "optimization cycle"
                ),
                Ok(Err(error)) => tracing::error!(%error, "optimization cycle failed"),
                Err(error) => tracing::error!(%error, "optimization cycle panicked"),
            }
        }
    }))
}

fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}
