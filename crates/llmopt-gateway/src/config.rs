//! Configuration: typed sections, figment layering, validation and a secret-free rendering.
//!
//! Layers, later wins: the base file (`--config FILE`, else `./config/default.toml` when it
//! exists, else the copy of `config/default.toml` built into the binary), then
//! `<dir of base>/<env>.toml` when `OPTIMIZER_ENV` names an environment, then `OPTIMIZER_*`
//! environment variables with `__` between levels (`OPTIMIZER_SERVER__LISTEN=0.0.0.0:8080`).
//! Every section denies unknown keys, so a typo is an error that names the key path instead of a
//! setting silently ignored. Secrets are never part of the configuration itself: it names the
//! environment variable that holds them (`api_key_env`, `admin_token_env`), and only the
//! provider wiring reads them.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use figment::{
    Figment,
    providers::{Env, Format, Toml},
};
use serde::{Deserialize, Serialize};

use llmopt_collector::{CollectorConfig, OverflowPolicy};
use llmopt_storage::StorageConfig;

use crate::error::{Error, Result};

/// The default configuration, shipped inside the binary so that `serve` works from any directory.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../../../config/default.toml");

/// Environment variable prefix of configuration overrides.
pub const ENV_PREFIX: &str = "OPTIMIZER_";
/// Names the environment whose file (`config/<env>.toml`) is layered over the base file. Not a
/// configuration key itself, so it is filtered out of the `OPTIMIZER_*` overrides.
pub const ENV_SELECTOR: &str = "OPTIMIZER_ENV";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub storage: StorageSection,
    #[serde(default)]
    pub collector: CollectorSection,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub logging: LoggingConfig,
    #[serde(default)]
    pub cache: CacheConfig,
    #[serde(default)]
    pub pricing: PricingSection,
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Another name for a model: `fast = "gpt-4o-mini"`. Resolved before routing.
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
    /// Routes by name; see [`RouteConfig`] for how a model picks its route.
    #[serde(default)]
    pub routes: BTreeMap<String, RouteConfig>,
    /// The closed loop: mode, schedule, limits and strategy settings
    /// (`llmopt_optimizer::OptimizerConfig`).
    #[serde(default)]
    pub optimizer: llmopt_optimizer::OptimizerConfig,
    /// The gRPC API (`proto/optimizer.proto`); needs a build with the `grpc` feature.
    #[serde(default)]
    pub grpc: GrpcConfig,
    /// A judge model grading a sampled share of answers (`crate::judge`); off by default.
    #[serde(default)]
    pub judge: crate::judge::JudgeConfig,
    /// OpenTelemetry export of one span per proxied call; needs a build with the `otel`
    /// feature (`crate::telemetry`).
    #[serde(default)]
    pub telemetry: TelemetryConfig,
}

/// `[telemetry]`: where and how spans of proxied calls are exported over OTLP/HTTP
/// (protobuf). Read when the gateway starts; a reload does not change it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// The collector's base URL (`http://127.0.0.1:4318`): spans go to `{this}/v1/traces`.
    /// Unset: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as it is) or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (with `/v1/traces`); none of them: nothing is exported.
    pub otlp_endpoint: Option<String>,
    /// Spans waiting for export at most; a span arriving at a full queue is dropped and
    /// counted (`llmopt_otel_dropped_spans_total`), never waited for.
    pub queue_capacity: usize,
    /// Spans per export request at most.
    pub batch_size: usize,
    /// The longest a span waits in a part-filled batch.
    pub flush_interval_ms: u64,
    /// One export request's timeout, retries included.
    pub export_timeout_ms: u64,
}

impl Default for TelemetryConfig {
    fn default() -> TelemetryConfig {
        TelemetryConfig {
            otlp_endpoint: None,
            queue_capacity: 4_096,
            batch_size: 512,
            flush_interval_ms: 2_000,
            export_timeout_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// Serve `OptimizerService` (`RunOptimization`, `StreamMetrics`) beside the HTTP listener.
    pub enabled: bool,
    pub listen: SocketAddr,
}

impl Default for GrpcConfig {
    fn default() -> GrpcConfig {
        GrpcConfig { enabled: false, listen: SocketAddr::from(([127, 0, 0, 1], 50051)) }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// How long shutdown waits for in-flight requests before it stops them.
    pub shutdown_grace_ms: u64,
    /// I/O threads serving connections, each a single-threaded runtime; 0: one per core.
    pub threads: usize,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            shutdown_grace_ms: 10_000,
            threads: 0,
        }
    }
}

/// The environment variable holding the PostgreSQL connection string (`storage.backend =
/// "postgres"`). A secret: never part of the configuration, never logged.
pub const POSTGRES_URL_ENV: &str = "LLMOPT_POSTGRES_URL";
/// The environment variable holding the Redis URL (`cache.backend = "redis"`).
pub const REDIS_URL_ENV: &str = "LLMOPT_REDIS_URL";

/// Where records, experiments and the policy live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageBackend {
    /// The embedded sled store at `storage.path`: one process.
    #[default]
    Sled,
    /// PostgreSQL at `LLMOPT_POSTGRES_URL`, shared by every replica.
    Postgres,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    pub backend: StorageBackend,
    /// sled only.
    pub path: PathBuf,
    pub raw_retention_days: u64,
    /// sled only (PostgreSQL aggregates are computed from raw records).
    pub aggregate_retention_days: u64,
    /// sled only.
    pub aggregate_window_s: u64,
    /// sled's page cache, MiB: most of the process's memory besides the proxy itself.
    pub cache_mb: u64,
}

impl Default for StorageSection {
    fn default() -> StorageSection {
        StorageSection {
            backend: StorageBackend::Sled,
            path: PathBuf::from("./data/llmopt"),
            raw_retention_days: 30,
            aggregate_retention_days: 400,
            aggregate_window_s: 60,
            cache_mb: 2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverflowMode {
    /// Drop the record (counted) when the queue is full: the response is never delayed.
    Drop,
    /// Wait up to `block_max_wait_ms` for room, then drop.
    Block,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectorSection {
    pub queue_capacity: usize,
    pub batch_size: usize,
    pub flush_interval_ms: u64,
    pub window_s: u64,
    pub windows_kept: usize,
    pub overflow: OverflowMode,
    pub block_max_wait_ms: u64,
    /// How long a batch the store refused is retried before it is counted lost.
    pub write_retry_s: u64,
}

impl Default for CollectorSection {
    fn default() -> CollectorSection {
        CollectorSection {
            queue_capacity: 65_536,
            batch_size: 512,
            flush_interval_ms: 200,
            window_s: 60,
            windows_kept: 60,
            overflow: OverflowMode::Drop,
            block_max_wait_ms: 5,
            write_retry_s: 300,
        }
    }
}

const DAY: Duration = Duration::from_secs(24 * 3600);

impl StorageSection {
    /// The store's settings from this section.
    pub fn storage_config(&self) -> StorageConfig {
        let days =
            |n: u64| if n == 0 { None } else { Some(DAY * u32::try_from(n).unwrap_or(u32::MAX)) };
        StorageConfig {
            raw_retention: days(self.raw_retention_days),
            aggregate_retention: days(self.aggregate_retention_days),
            aggregate_window: Duration::from_secs(self.aggregate_window_s.max(1)),
            cache_bytes: self.cache_mb.saturating_mul(1024 * 1024),
        }
    }
}

impl CollectorSection {
    /// The collector's settings from this section.
    pub fn collector_config(&self) -> CollectorConfig {
        CollectorConfig {
            queue_capacity: self.queue_capacity,
            batch_size: self.batch_size,
            flush_interval: Duration::from_millis(self.flush_interval_ms.max(1)),
            window: Duration::from_secs(self.window_s.max(1)),
            windows_kept: self.windows_kept.max(1),
            overflow: match self.overflow {
                OverflowMode::Drop => OverflowPolicy::Drop,
                OverflowMode::Block => OverflowPolicy::Block {
                    max_wait: Duration::from_millis(self.block_max_wait_ms),
                },
            },
            write_retry: Duration::from_secs(self.write_retry_s),
            ..CollectorConfig::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub max_body_bytes: usize,
    pub max_header_bytes: usize,
    pub max_concurrent_requests: usize,
}

impl Default for LimitsConfig {
    fn default() -> LimitsConfig {
        LimitsConfig {
            max_body_bytes: 8 * 1024 * 1024,
            max_header_bytes: 64 * 1024,
            max_concurrent_requests: 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Gateway API keys, stored as SHA-256 hex digests; when any is set, every `/v1/*` call
    /// must present one (`Authorization: Bearer` or `x-api-key`).
    pub keys: Vec<ApiKeyConfig>,
    /// Environment variable holding the admin token for `/api/*` writes. Unset or empty
    /// variable: admin writes are refused.
    pub admin_token_env: Option<String>,
    /// Serve `/metrics` without a key (for a Prometheus that cannot send a bearer token).
    pub metrics_public: bool,
    /// Start without client keys on a non-loopback address: an open proxy that spends the
    /// operator's provider keys for anyone who can reach it. Refused unless set explicitly.
    pub allow_unauthenticated: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Lowercase hex SHA-256 of the key (`llm-auto-optimizer config hash-key`).
    pub sha256: String,
    pub tenant: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogOutput {
    Stdout,
    /// Daily-rolling files in `logging.directory`.
    File,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    pub level: String,
    pub format: LogFormat,
    pub output: LogOutput,
    pub directory: PathBuf,
}

impl Default for LoggingConfig {
    fn default() -> LoggingConfig {
        LoggingConfig {
            level: "info".to_owned(),
            format: LogFormat::Text,
            output: LogOutput::Stdout,
            directory: PathBuf::from("./data/logs"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Default for routes that do not say.
    pub enabled: bool,
    /// `memory`: this process only; `redis`: a shared second level behind it (and rate limits
    /// shared by the fleet).
    pub backend: CacheBackend,
    pub ttl_s: u64,
    /// Total size of cached bodies.
    pub max_bytes: u64,
    /// Larger answers are not cached.
    pub max_entry_bytes: usize,
    /// Cache requests with `temperature > 0` (or no temperature, which means the provider's
    /// default of 1) too. Off: only deterministic-looking requests are cached.
    pub allow_nonzero_temperature: bool,
}

/// Where cached answers live besides this process's memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheBackend {
    /// moka in this process only.
    #[default]
    Memory,
    /// moka in front (first level) and Redis at `LLMOPT_REDIS_URL` behind it, shared by every
    /// replica (second level). Virtual keys' rate limits are then counted in Redis too, for the
    /// whole fleet.
    Redis,
}

impl Default for CacheConfig {
    fn default() -> CacheConfig {
        CacheConfig {
            enabled: false,
            backend: CacheBackend::Memory,
            ttl_s: 300,
            max_bytes: 64 * 1024 * 1024,
            max_entry_bytes: 1024 * 1024,
            allow_nonzero_temperature: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PricingSection {
    /// A `pricing.toml`-format file merged over the built-in catalog.
    pub file: Option<PathBuf>,
    /// Prices written in the configuration itself, in the same format as a `[models."id"]`
    /// table of `pricing.toml` (`[pricing.models."sim-large"]`), merged after `file`.
    pub models: BTreeMap<String, toml::Value>,
}

impl PricingSection {
    /// The inline `models` as a catalog (empty when there are none).
    pub fn inline_catalog(&self) -> Result<llmopt_core::PriceCatalog> {
        if self.models.is_empty() {
            return Ok(llmopt_core::PriceCatalog::default());
        }
        let models: toml::Table =
            self.models.iter().map(|(id, price)| (id.clone(), price.clone())).collect();
        let mut root = toml::Table::new();
        root.insert("models".to_owned(), toml::Value::Table(models));
        let text =
            toml::to_string(&root).map_err(|e| Error::Config(format!("pricing.models: {e}")))?;
        llmopt_core::PriceCatalog::from_toml_str(&text)
            .map_err(|e| Error::Config(format!("pricing.models: {e}")))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// OpenAI or any OpenAI-compatible server (vLLM, …): `POST {base_url}/chat/completions`.
    Openai,
    /// Anthropic Messages API: `POST {base_url}/v1/messages`.
    Anthropic,
    /// The in-process simulated provider, speaking both protocols; no key needed.
    Simulated,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Whole-request timeout (non-streaming) / time to the response head (streaming).
    #[serde(default = "default_provider_timeout_ms")]
    pub timeout_ms: u64,
    /// Retries of retryable failures (429, 5xx, transport) before the fallback chain moves on.
    #[serde(default)]
    pub max_retries: u32,
    /// Client-side request rate limit; 0 = none.
    #[serde(default)]
    pub requests_per_minute: u32,
    /// Simulated provider: seed of its random latencies and answers.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Simulated provider: multiplies its delays (1 = real time, 0 = none).
    #[serde(default = "default_time_scale")]
    pub time_scale: f64,
    /// OpenAI protocol (kinds `openai` and `simulated`): ask for usage in every stream
    /// (`stream_options.include_usage`), hidden from clients that did not ask, so that every
    /// stream is priced. Absent = on. Off for servers that refuse the option; their streams then
    /// have unknown usage unless the client asks. Refused for `anthropic`, whose streams always
    /// carry usage.
    #[serde(default)]
    pub include_usage: Option<bool>,
}

fn default_time_scale() -> f64 {
    1.0
}

fn default_provider_timeout_ms() -> u64 {
    600_000
}

/// A route sends every model matching one of its patterns to a provider.
///
/// Patterns are exact ids or globs with `*`. When several routes match, an exact pattern wins,
/// then the glob with the most literal characters, then the route name in order: independent of
/// file order, so an environment override cannot reorder routes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub models: Vec<String>,
    pub provider: String,
    /// Tried in order when the provider fails with a retryable error (429, 5xx, timeout,
    /// transport). `model` absent = the same model.
    #[serde(default)]
    pub fallbacks: Vec<FallbackConfig>,
    /// Response cache on/off for this route; absent = `cache.enabled`.
    #[serde(default)]
    pub cache: Option<bool>,
    /// Upper bound on `max_tokens` sent upstream.
    #[serde(default)]
    pub max_tokens_cap: Option<u32>,
    /// Overrides the provider's `timeout_ms`.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackConfig {
    pub provider: String,
    #[serde(default)]
    pub model: Option<String>,
}

/// Where a configuration came from, so that the same layers can be loaded again on a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSource {
    /// `None`: the built-in default.
    pub base_file: Option<PathBuf>,
    pub env_file: Option<PathBuf>,
}

impl ConfigSource {
    /// Picks the files: `explicit`, else `./config/default.toml` when present, else built-in;
    /// plus `<dir>/<OPTIMIZER_ENV>.toml` when that variable is set.
    pub fn discover(explicit: Option<&Path>) -> ConfigSource {
        let base_file = match explicit {
            Some(path) => Some(path.to_path_buf()),
            None => Some(PathBuf::from("config/default.toml")).filter(|path| path.is_file()),
        };
        let env_name = std::env::var(ENV_SELECTOR).ok().filter(|name| !name.trim().is_empty());
        let env_file = env_name.map(|name| {
            let directory = base_file
                .as_deref()
                .and_then(Path::parent)
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("config"));
            directory.join(format!("{name}.toml"))
        });
        ConfigSource { base_file, env_file }
    }

    /// Files to watch for hot reload.
    pub fn files(&self) -> Vec<PathBuf> {
        self.base_file.iter().chain(self.env_file.iter()).cloned().collect()
    }

    /// Loads and validates the layered configuration.
    pub fn load(&self) -> Result<Config> {
        let mut figment = match &self.base_file {
            Some(path) => {
                if !path.is_file() {
                    return Err(Error::Config(format!(
                        "configuration file `{}` does not exist",
                        path.display()
                    )));
                }
                Figment::from(Toml::file(path))
            }
            None => Figment::from(Toml::string(DEFAULT_CONFIG_TOML)),
        };
        if let Some(env_file) = &self.env_file {
            if !env_file.is_file() {
                return Err(Error::Config(format!(
                    "{ENV_SELECTOR} names `{}`, which does not exist",
                    env_file.display()
                )));
            }
            figment = figment.merge(Toml::file(env_file));
        }
        figment = figment.merge(environment_overrides());
        load_figment(figment)
    }
}

/// `OPTIMIZER_A__B=v` → `a.b = v`, except the environment selector.
fn environment_overrides() -> Env {
    Env::prefixed(ENV_PREFIX).split("__").filter(|key| !key.as_str().eq_ignore_ascii_case("env"))
}

/// Extracts and validates; errors carry the key path and the file.
pub fn load_figment(figment: Figment) -> Result<Config> {
    let config: Config = figment.extract().map_err(|error| {
        let messages: Vec<String> = error.into_iter().map(|e| e.to_string()).collect();
        Error::Config(messages.join("; "))
    })?;
    config.validate()?;
    Ok(config)
}

/// Parses one TOML text alone (tests, `config check` of a file with no environment).
pub fn from_toml_str(text: &str) -> Result<Config> {
    load_figment(Figment::from(Toml::string(text)))
}

impl Config {
    /// Cross-field checks serde cannot express.
    pub fn validate(&self) -> Result<()> {
        let mut problems = Vec::new();
        if let Err(problem) = self.judge.validate() {
            problems.push(problem);
        }
        if let Some(model) = self.judge.model.as_deref()
            && crate::routing::RouteTable::from_config(self).route_name(model).is_none()
        {
            problems.push(format!("judge.model `{model}` is served by no route under [routes]"));
        }
        if self.grpc.enabled && !cfg!(feature = "grpc") {
            problems.push(
                "grpc.enabled = true needs a binary built with the `grpc` feature \
                 (cargo build --features grpc)"
                    .to_owned(),
            );
        }
        if let Err(error) = self.pricing.inline_catalog() {
            problems.push(error.to_string());
        }
        if self.telemetry.otlp_endpoint.is_some() && !cfg!(feature = "otel") {
            problems.push(
                "telemetry.otlp_endpoint needs a binary built with the `otel` feature \
                 (cargo build --features otel)"
                    .to_owned(),
            );
        }
        if self.telemetry.queue_capacity == 0
            || self.telemetry.batch_size == 0
            || self.telemetry.flush_interval_ms == 0
            || self.telemetry.export_timeout_ms == 0
        {
            problems.push(
                "telemetry.queue_capacity, batch_size, flush_interval_ms and export_timeout_ms \
                 must be positive"
                    .to_owned(),
            );
        }
        if let Some(endpoint) = &self.telemetry.otlp_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            problems.push(format!(
                "telemetry.otlp_endpoint `{endpoint}` must start with http:// or https://"
            ));
        }
        if self.server.threads > 1_024 {
            problems.push(format!(
                "server.threads must be between 0 (one per core) and 1024 (got {})",
                self.server.threads
            ));
        }
        if !(1..=65_536).contains(&self.storage.cache_mb) {
            problems.push(format!(
                "storage.cache_mb must be between 1 and 65536 (got {})",
                self.storage.cache_mb
            ));
        }
        for (name, provider) in &self.providers {
            if provider.kind != ProviderKind::Simulated {
                match &provider.base_url {
                    None => problems.push(format!("providers.{name}.base_url is required")),
                    Some(url) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                        problems.push(format!(
                            "providers.{name}.base_url `{url}` must start with http:// or https://"
                        ));
                    }
                    Some(_) => {}
                }
            }
            if provider.timeout_ms == 0 {
                problems.push(format!("providers.{name}.timeout_ms must be positive"));
            }
            if provider.kind == ProviderKind::Anthropic && provider.include_usage.is_some() {
                problems.push(format!(
                    "providers.{name}.include_usage applies to OpenAI-protocol providers only \
                     (Anthropic streams always carry usage)"
                ));
            }
        }
        for (name, route) in &self.routes {
            if route.models.is_empty() {
                problems.push(format!("routes.{name}.models must list at least one pattern"));
            }
            for pattern in &route.models {
                if pattern.is_empty() {
                    problems.push(format!("routes.{name}.models has an empty pattern"));
                }
            }
            if !self.providers.contains_key(&route.provider) {
                problems.push(format!(
                    "routes.{name}.provider `{}` is not a configured provider",
                    route.provider
                ));
            }
            for (index, fallback) in route.fallbacks.iter().enumerate() {
                if !self.providers.contains_key(&fallback.provider) {
                    problems.push(format!(
                        "routes.{name}.fallbacks[{index}].provider `{}` is not a configured provider",
                        fallback.provider
                    ));
                }
            }
            if route.max_tokens_cap == Some(0) {
                problems.push(format!("routes.{name}.max_tokens_cap must be positive"));
            }
        }
        for (alias, target) in &self.aliases {
            if self.aliases.contains_key(target) {
                problems.push(format!("aliases.{alias} points at another alias `{target}`"));
            }
        }
        for (index, key) in self.auth.keys.iter().enumerate() {
            if key.sha256.len() != 64 || !key.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                problems.push(format!("auth.keys[{index}].sha256 must be 64 hex digits"));
            }
            if key.tenant.is_empty() {
                problems.push(format!("auth.keys[{index}].tenant must not be empty"));
            }
        }
        if self.limits.max_body_bytes == 0 || self.limits.max_concurrent_requests == 0 {
            problems.push("limits must be positive".to_owned());
        }
        if self.cache.ttl_s == 0 {
            problems.push("cache.ttl_s must be positive".to_owned());
        }
        if self.collector.queue_capacity == 0 || self.collector.batch_size == 0 {
            problems.push("collector.queue_capacity and batch_size must be positive".to_owned());
        }
        if let Some(file) = &self.pricing.file
            && !file.is_file()
        {
            problems.push(format!("pricing.file `{}` does not exist", file.display()));
        }
        if problems.is_empty() { Ok(()) } else { Err(Error::Config(problems.join("; "))) }
    }

    /// The effective configuration as TOML with every secret replaced by a mask: the
    /// environment variables a secret comes from are named, with whether they are set.
    pub fn render_masked(&self) -> Result<String> {
        let mut value = toml::Value::try_from(self)
            .map_err(|e| Error::Config(format!("cannot render configuration: {e}")))?;
        if let Some(providers) = value.get_mut("providers").and_then(toml::Value::as_table_mut) {
            for (name, provider) in providers.iter_mut() {
                let Some(table) = provider.as_table_mut() else { continue };
                let status = match self.providers.get(name).and_then(|p| p.api_key_env.as_deref()) {
                    Some(variable) => secret_status(variable),
                    None => "(none)".to_owned(),
                };
                table.insert("api_key".to_owned(), toml::Value::String(status));
            }
        }
        if let Some(auth) = value.get_mut("auth").and_then(toml::Value::as_table_mut) {
            let status = match self.auth.admin_token_env.as_deref() {
                Some(variable) => secret_status(variable),
                None => "(none)".to_owned(),
            };
            auth.insert("admin_token".to_owned(), toml::Value::String(status));
            // Key digests are not secrets, but they are not needed to read a config either.
            if let Some(keys) = auth.get_mut("keys").and_then(toml::Value::as_array_mut) {
                for key in keys.iter_mut().filter_map(toml::Value::as_table_mut) {
                    if let Some(toml::Value::String(digest)) = key.get_mut("sha256") {
                        let head: String = digest.chars().take(8).collect();
                        *digest = format!("{head}…");
                    }
                }
            }
        }
        toml::to_string_pretty(&value)
            .map_err(|e| Error::Config(format!("cannot render configuration: {e}")))
    }

    pub fn provider_timeout(&self, provider: &str) -> Duration {
        Duration::from_millis(self.providers.get(provider).map_or(600_000, |p| p.timeout_ms))
    }
}

/// `***** (from OPENAI_API_KEY)` when set, `(unset: OPENAI_API_KEY)` otherwise.
fn secret_status(variable: &str) -> String {
    match std::env::var(variable) {
        Ok(value) if !value.is_empty() => format!("***** (from {variable})"),
        _ => format!("(unset: {variable})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_default_is_valid_and_routes_the_real_providers() {
        let config = from_toml_str(DEFAULT_CONFIG_TOML).expect("default config");
        let openai = &config.providers["openai"];
        assert_eq!(openai.kind, ProviderKind::Openai);
        assert_eq!(openai.base_url.as_deref(), Some("https://api.openai.com/v1"));
        assert_eq!(openai.api_key_env.as_deref(), Some("OPENAI_API_KEY"));
        let anthropic = &config.providers["anthropic"];
        assert_eq!(anthropic.base_url.as_deref(), Some("https://api.anthropic.com"));
        assert_eq!(anthropic.api_key_env.as_deref(), Some("ANTHROPIC_API_KEY"));
        assert_eq!(config.storage.path, PathBuf::from("./data/llmopt"));
        assert!(!config.cache.enabled, "the cache is off by default");
    }

    #[test]
    fn unknown_keys_are_errors_with_their_path() {
        let error = from_toml_str("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n").unwrap_err();
        let text = error.to_string();
        assert!(text.contains("lisen"), "{text}");
        assert!(text.contains("server"), "{text}");
        let error =
            from_toml_str("[providers.x]\nkind = \"openai\"\nbase_url = \"http://a\"\nkey = 1\n")
                .unwrap_err()
                .to_string();
        assert!(error.contains("providers.x") && error.contains("key"), "{error}");
    }

    #[test]
    fn routes_must_name_configured_providers() {
        let error = from_toml_str("[routes.r]\nmodels = [\"m\"]\nprovider = \"nope\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("routes.r.provider `nope`"), "{error}");
    }
}
