//! Shared state of the server, and the hot-swappable [`Runtime`] built from configuration.
//!
//! A request loads the current `Arc<Runtime>` once (an `ArcSwap` read: no lock) and uses that
//! snapshot to the end, so a configuration reload never changes providers or routes under a
//! request in flight: new requests see the new runtime, old ones finish with the old one.
//! Process-wide parts (collector, metrics, clock, counters) live beside it in [`Shared`] and
//! survive reloads.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use arc_swap::ArcSwap;
use llmopt_collector::Collector;
use llmopt_core::{
    Clock, ExperimentStore, Feedback, KeyStore, MemoryExperimentStore, MemoryKeyStore,
    MemoryPolicyStore, MemoryRecordStore, PolicyStore, PriceCatalog, RecordStore, RequestId,
    RequestRecord,
};
use llmopt_llm::Provider;
use llmopt_optimizer::Optimizer;
use tokio::sync::broadcast;

use crate::{
    auth::Authenticator,
    cache::{RedisCache, ResponseCache},
    config::{CacheBackend, Config, ConfigSource, REDIS_URL_ENV},
    error::{Error, Result},
    keys::KeyRegistry,
    metrics::Metrics,
    overlay::OptimizerOverlay,
    providers::build_providers,
    routing::{RouteDecision, RouteInput, RouteTable},
    telemetry::Telemetry,
};

/// Reads a secret (an environment variable in production, a map in tests).
pub type SecretSource = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The secret source of production: the process environment.
pub fn environment_secrets() -> SecretSource {
    Arc::new(|name: &str| std::env::var(name).ok().filter(|value| !value.is_empty()))
}

/// The stores a gateway runs on: records, experiments, the policy and the virtual keys. Every
/// replica of a deployment that shares them sees the same calls, experiments and adopted rules.
#[derive(Debug, Clone)]
pub struct Stores {
    pub records: Arc<dyn RecordStore>,
    pub experiments: Arc<dyn ExperimentStore>,
    pub policies: Arc<dyn PolicyStore>,
    pub keys: Arc<dyn KeyStore>,
}

impl Stores {
    /// In-memory stores: tests, benches, and programs that keep nothing.
    pub fn memory() -> Stores {
        Stores {
            records: Arc::new(MemoryRecordStore::new()),
            experiments: Arc::new(MemoryExperimentStore::new()),
            policies: Arc::new(MemoryPolicyStore::new()),
            keys: Arc::new(MemoryKeyStore::new()),
        }
    }

    /// The stores of one PostgreSQL database, shared by every replica.
    pub fn postgres(store: &llmopt_storage::PgStore) -> Stores {
        Stores {
            records: store.records(),
            experiments: store.experiments(),
            policies: store.policy(),
            keys: store.keys(),
        }
    }

    /// The stores of one sled database.
    pub fn sled(store: &llmopt_storage::SledStore) -> Stores {
        Stores {
            records: store.records(),
            experiments: store.experiments(),
            policies: store.policy(),
            keys: store.keys(),
        }
    }
}

/// What a gateway is built from. [`AppState::build`] turns it into a complete state: the
/// collector started on the record store, the runtime built from the configuration, and the
/// optimizer opened on the stores; nothing is installed afterwards.
pub struct GatewayInit {
    pub config: Config,
    pub stores: Stores,
    pub clock: Arc<dyn Clock>,
    pub secrets: SecretSource,
    /// Where `POST /api/config/reload` and the file watcher reload from (`None`: no reload).
    pub config_source: Option<ConfigSource>,
}

impl std::fmt::Debug for GatewayInit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayInit")
            .field("stores", &self.stores)
            .field("config_source", &self.config_source)
            .finish_non_exhaustive()
    }
}

/// Everything built from one configuration.
#[derive(Debug)]
pub struct Runtime {
    pub config: Arc<Config>,
    pub providers: HashMap<String, Arc<dyn Provider>>,
    pub routes: RouteTable,
    pub auth: Authenticator,
    pub cache: ResponseCache,
    pub catalog: Arc<PriceCatalog>,
}

impl Runtime {
    /// Builds providers, routes, auth, cache and prices. `previous`: the runtime being
    /// replaced, whose cache is kept when its bounds did not change.
    pub fn build(
        config: Config,
        secrets: &SecretSource,
        previous: Option<&Runtime>,
    ) -> Result<Runtime> {
        let providers = build_providers(&config, secrets)?;
        let routes = RouteTable::from_config(&config);
        let admin_token = config.auth.admin_token_env.as_deref().and_then(|name| secrets(name));
        let auth = Authenticator::new(&config.auth, admin_token.as_deref());
        let ttl = Duration::from_secs(config.cache.ttl_s);
        let shared = match config.cache.backend {
            CacheBackend::Memory => None,
            CacheBackend::Redis => {
                let url = secrets(REDIS_URL_ENV).ok_or_else(|| {
                    Error::Config(format!(
                        "cache.backend = \"redis\" needs the URL in {REDIS_URL_ENV} \
                         (redis://host:6379/0)"
                    ))
                })?;
                match previous.and_then(|previous| previous.cache.shared()) {
                    Some(shared) if shared.is_for(&url) => Some(Arc::clone(shared)),
                    _ => Some(RedisCache::new(&url).map_err(Error::Config)?),
                }
            }
        };
        let cache = match previous {
            Some(previous)
                if previous.cache.same_bounds(
                    ttl,
                    config.cache.max_bytes,
                    config.cache.max_entry_bytes,
                ) =>
            {
                previous.cache.clone()
            }
            _ => ResponseCache::new(ttl, config.cache.max_bytes, config.cache.max_entry_bytes),
        }
        .with_shared(shared);
        let mut catalog = PriceCatalog::builtin();
        if let Some(file) = &config.pricing.file {
            let text = std::fs::read_to_string(file)
                .map_err(|e| Error::Config(format!("pricing.file `{}`: {e}", file.display())))?;
            let extra = PriceCatalog::from_toml_str(&text)
                .map_err(|e| Error::Config(format!("pricing.file `{}`: {e}", file.display())))?;
            catalog.merge(extra).map_err(|e| Error::Config(format!("pricing.file: {e}")))?;
        }
        catalog
            .merge(config.pricing.inline_catalog()?)
            .map_err(|e| Error::Config(format!("pricing.models: {e}")))?;
        Ok(Runtime {
            config: Arc::new(config),
            providers,
            routes,
            auth,
            cache,
            catalog: Arc::new(catalog),
        })
    }
}

/// Starts OpenTelemetry export when `[telemetry]` or the OTLP variables name an endpoint.
fn start_telemetry(
    config: &crate::config::TelemetryConfig,
    secrets: &SecretSource,
    metrics: &Metrics,
) -> Result<Option<Telemetry>> {
    let Some(endpoint) = crate::telemetry::traces_endpoint(config, &|name: &str| secrets(name))
    else {
        return Ok(None);
    };
    #[cfg(feature = "otel")]
    {
        Telemetry::start(config, endpoint, metrics.otel().clone()).map(Some)
    }
    #[cfg(not(feature = "otel"))]
    {
        let _ = metrics;
        tracing::warn!(
            %endpoint,
            "an OTLP endpoint is set, but this binary was built without the `otel` feature: \
             no spans are exported"
        );
        Ok(None)
    }
}

/// What happened to a configuration change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadEvent {
    Applied,
    Rejected(String),
}

/// Process-wide state.
#[derive(Debug)]
pub struct Shared {
    runtime: ArcSwap<Runtime>,
    overlay: OptimizerOverlay,
    records: Arc<dyn RecordStore>,
    keys: Arc<KeyRegistry>,
    responses: crate::proxy::responses::ResponseOwners,
    pub collector: Collector,
    pub metrics: Metrics,
    pub clock: Arc<dyn Clock>,
    pub secrets_source: SecretSourceDebug,
    pub config_source: Option<ConfigSource>,
    in_flight: AtomicUsize,
    ready: AtomicBool,
    reload_events: broadcast::Sender<ReloadEvent>,
    stream: crate::api::stream::StreamHub,
    judge_slots: crate::judge::JudgeSlots,
    /// The OpenTelemetry exporter, when an endpoint is configured (`crate::telemetry`).
    telemetry: Option<Telemetry>,
}

/// A [`SecretSource`] that prints nothing.
#[derive(Clone)]
pub struct SecretSourceDebug(pub SecretSource);

impl std::fmt::Debug for SecretSourceDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretSource")
    }
}

/// The state handlers share: a cheap clone of one `Arc`.
#[derive(Debug, Clone)]
pub struct AppState(pub Arc<Shared>);

impl AppState {
    /// Starts the collector, builds the runtime and opens the optimizer: a state every handler
    /// can use as it is.
    pub fn build(init: GatewayInit) -> Result<AppState> {
        let GatewayInit { config, stores, clock, secrets, config_source } = init;
        let collector = Collector::start(
            Arc::clone(&stores.records),
            Arc::clone(&clock),
            config.collector.collector_config(),
        );
        let keys = Arc::new(
            KeyRegistry::open(
                Arc::clone(&stores.keys),
                stores.records.as_ref(),
                Arc::clone(&clock),
            )
            .map_err(|e| Error::Storage(format!("virtual keys: {e}")))?,
        );
        let mut runtime = Runtime::build(config, &secrets, None)?;
        runtime.auth.attach_keys(Arc::clone(&keys));
        let overlay = OptimizerOverlay::open(
            &stores,
            Arc::clone(&runtime.catalog),
            Arc::clone(&clock),
            runtime.config.optimizer.clone(),
        )
        .map_err(|e| Error::Config(format!("optimizer: {e}")))?;
        let (reload_events, _) = broadcast::channel(16);
        let judge_slots = crate::judge::JudgeSlots::default();
        judge_slots.resize(runtime.config.judge.max_concurrent);
        let metrics = Metrics::new();
        let telemetry = start_telemetry(&runtime.config.telemetry, &secrets, &metrics)?;
        Ok(AppState(Arc::new(Shared {
            runtime: ArcSwap::from_pointee(runtime),
            overlay,
            records: stores.records,
            keys,
            responses: Default::default(),
            collector,
            metrics,
            clock,
            secrets_source: SecretSourceDebug(secrets),
            config_source,
            in_flight: AtomicUsize::new(0),
            ready: AtomicBool::new(true),
            reload_events,
            stream: crate::api::stream::StreamHub::default(),
            judge_slots,
            telemetry,
        })))
    }

    /// The OpenTelemetry exporter; `None` when export is off (no endpoint, or a build without
    /// the `otel` feature), and then no exporter thread exists.
    pub fn telemetry(&self) -> Option<&Telemetry> {
        self.0.telemetry.as_ref()
    }

    /// The current runtime snapshot.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.0.runtime.load_full()
    }

    pub fn collector(&self) -> &Collector {
        &self.0.collector
    }

    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.0.clock
    }

    /// The record store reports read (usage, forecast, clusters).
    pub fn records(&self) -> &Arc<dyn RecordStore> {
        &self.0.records
    }

    /// The virtual keys made at run time, with their spend.
    pub fn keys(&self) -> &Arc<KeyRegistry> {
        &self.0.keys
    }

    /// Who made each stored response of the Responses API (`proxy::responses`).
    pub fn response_owners(&self) -> &crate::proxy::responses::ResponseOwners {
        &self.0.responses
    }

    /// The optimizer: live policy, experiments and cycles.
    pub fn optimizer(&self) -> &Arc<Optimizer> {
        self.0.overlay.optimizer()
    }

    /// The decision for one request: configuration routes, then the live policy.
    pub fn decide(&self, runtime: &Runtime, input: &RouteInput<'_>) -> Option<RouteDecision> {
        let mut decision = runtime.routes.decide(input)?;
        self.0.overlay.apply(runtime, input, &mut decision);
        Some(decision)
    }

    /// The producer of `/api/stream`'s updates.
    pub fn stream_hub(&self) -> &crate::api::stream::StreamHub {
        &self.0.stream
    }

    /// The optimizer's overlay (hedge budget, experiment counts).
    pub fn overlay(&self) -> &OptimizerOverlay {
        &self.0.overlay
    }

    /// Hands a finished call's record to the live policy (before the collector takes it).
    pub fn on_record(&self, record: &RequestRecord) {
        self.0.keys.on_record(record);
        self.0.overlay.on_record(record);
    }

    /// Hands joined feedback to the live policy.
    pub fn on_feedback(&self, id: &RequestId, feedback: &Feedback) {
        self.0.overlay.on_feedback(id, feedback);
    }

    pub fn judge_slots(&self) -> &crate::judge::JudgeSlots {
        &self.0.judge_slots
    }

    pub fn set_ready(&self, ready: bool) {
        self.0.ready.store(ready, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.0.ready.load(Ordering::SeqCst)
    }

    /// Counts a request in flight if under `limit`; the guard releases it.
    pub fn try_enter(&self, limit: usize) -> Option<InFlightGuard> {
        let previous = self.0.in_flight.fetch_add(1, Ordering::AcqRel);
        if previous >= limit {
            self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        self.0.metrics.in_flight().inc();
        Some(InFlightGuard(self.clone()))
    }

    pub fn in_flight(&self) -> usize {
        self.0.in_flight.load(Ordering::Acquire)
    }

    pub fn subscribe_reloads(&self) -> broadcast::Receiver<ReloadEvent> {
        self.0.reload_events.subscribe()
    }

    /// Replaces the runtime with one built from `config`. Sections that need a restart
    /// (server, storage, collector, logging) are reported, not applied.
    pub fn apply_config(&self, config: Config) -> Result<()> {
        let current = self.runtime();
        let mut runtime = Runtime::build(config, &self.0.secrets_source.0, Some(&current))?;
        runtime.auth.attach_keys(Arc::clone(&self.0.keys));
        let old = &current.config;
        let new = &runtime.config;
        if old.server != new.server
            || old.grpc != new.grpc
            || old.storage != new.storage
            || old.collector != new.collector
            || old.logging != new.logging
        {
            tracing::warn!(
                "configuration change in server, grpc, storage, collector or logging needs a \
                 restart; the rest is applied"
            );
        }
        if old.optimizer != new.optimizer {
            self.optimizer()
                .set_config(new.optimizer.clone())
                .map_err(|e| Error::Config(e.to_string()))?;
        }
        if old.judge.max_concurrent != new.judge.max_concurrent {
            self.0.judge_slots.resize(new.judge.max_concurrent);
        }
        self.0.runtime.store(Arc::new(runtime));
        Ok(())
    }

    /// Loads the configuration files again and applies them; an invalid configuration is logged
    /// and ignored, and the old one stays.
    pub fn reload(&self) -> ReloadEvent {
        let outcome = match &self.0.config_source {
            None => Err(Error::Config("no configuration source to reload from".to_owned())),
            Some(source) => source.load().and_then(|config| self.apply_config(config)),
        };
        let event = match outcome {
            Ok(()) => {
                tracing::info!("configuration reloaded");
                ReloadEvent::Applied
            }
            Err(error) => {
                tracing::error!(%error, "configuration change rejected; keeping the previous one");
                ReloadEvent::Rejected(error.to_string())
            }
        };
        self.0.metrics.count_reload(event == ReloadEvent::Applied);
        let _ = self.0.reload_events.send(event.clone());
        event
    }
}

/// Releases one in-flight slot on drop.
#[derive(Debug)]
pub struct InFlightGuard(AppState);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.0.metrics.in_flight().dec();
    }
}
