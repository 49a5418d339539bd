//! Shared test fixtures: a simulated upstream on a real port, a gateway state over an in-memory
//! store, and a gateway server on a real port.

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use llmopt_core::{
    Clock, KeyStore, MemoryExperimentStore, MemoryKeyStore, MemoryPolicyStore, MemoryRecordStore,
    RecordQuery, RecordStore, RequestId, RequestRecord, SystemClock,
};
use llmopt_gateway::{
    AppState, GatewayInit, Stores,
    config::{Config, ConfigSource, OverflowMode, from_toml_str},
    server::run_server_threads,
    state::SecretSource,
};
use llmopt_llm::sim::{SimConfig, SimEngine, SimServer};
use tokio::sync::oneshot;

pub const TEST_OPENAI_KEY: &str = "sk-test-secret-0123456789";

/// Prices for the simulated models, as a pricing file: `sim-small` as an OpenAI model,
/// `sim-large` as an Anthropic one with cache-read and cache-write prices.
pub const SIM_PRICES_WITH_CACHE: &str = r#"
[models."sim-small"]
provider = "openai"
input = 1.0
output = 2.0
cache_read = 0.5
[models."sim-large"]
provider = "anthropic"
input = 3.0
output = 15.0
cache_read = 0.3
cache_write_5m = 3.75
cache_write_1h = 6.0
"#;

/// A simulated upstream speaking both protocols with no delay (or `time_scale`).
pub async fn sim_server(time_scale: f64) -> SimServer {
    let engine = SimEngine::new(SimConfig { time_scale, ..SimConfig::default() });
    SimServer::start_local(Arc::new(engine)).await.expect("sim server")
}

/// Providers `oai` and `ant` on the simulated server; `sim-small` and every other `sim-*`
/// model go to `oai`, `sim-large` (exact) to `ant`. `extra` is appended.
pub fn config_text(sim: &SimServer, extra: &str) -> String {
    format!(
        r#"
[providers.oai]
kind = "openai"
base_url = "{openai}"
api_key_env = "TEST_OPENAI_KEY"
timeout_ms = 5000

[providers.ant]
kind = "anthropic"
base_url = "{anthropic}"
api_key_env = "TEST_ANTHROPIC_KEY"
timeout_ms = 5000

[routes.oai]
models = ["sim-*"]
provider = "oai"

[routes.ant]
models = ["sim-large"]
provider = "ant"

{extra}
"#,
        openai = sim.openai_base_url(),
        anthropic = sim.anthropic_base_url(),
    )
}

pub fn secrets() -> SecretSource {
    let map: HashMap<String, String> = [
        ("TEST_OPENAI_KEY".to_owned(), TEST_OPENAI_KEY.to_owned()),
        ("TEST_ANTHROPIC_KEY".to_owned(), "sk-ant-test-secret".to_owned()),
        ("TEST_ADMIN_TOKEN".to_owned(), "admin-secret".to_owned()),
    ]
    .into_iter()
    .collect();
    Arc::new(move |name: &str| map.get(name).cloned())
}

/// A gateway over an in-memory store.
pub struct TestGateway {
    pub state: AppState,
    pub store: Arc<MemoryRecordStore>,
    pub keys: Arc<MemoryKeyStore>,
}

impl TestGateway {
    pub fn new(config: Config) -> TestGateway {
        TestGateway::with_source(config, None)
    }

    pub fn with_source(config: Config, source: Option<ConfigSource>) -> TestGateway {
        let store = Arc::new(MemoryRecordStore::new());
        let keys = Arc::new(MemoryKeyStore::new());
        TestGateway::on_stores(config, source, store, keys)
    }

    fn on_stores(
        mut config: Config,
        source: Option<ConfigSource>,
        store: Arc<MemoryRecordStore>,
        keys: Arc<MemoryKeyStore>,
    ) -> TestGateway {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        config.collector.overflow = OverflowMode::Drop;
        let stores = Stores {
            records: store.clone() as Arc<dyn RecordStore>,
            experiments: Arc::new(MemoryExperimentStore::new()),
            policies: Arc::new(MemoryPolicyStore::new()),
            keys: keys.clone() as Arc<dyn KeyStore>,
        };
        let init = GatewayInit { config, stores, clock, secrets: secrets(), config_source: source };
        let state = AppState::build(init).expect("gateway state");
        TestGateway { state, store, keys }
    }

    /// A new gateway over this one's record and key stores, as after a restart (the collector
    /// is flushed first, as a clean shutdown does).
    pub async fn restarted(&self) -> TestGateway {
        let collector = self.state.collector().clone();
        tokio::task::spawn_blocking(move || collector.flush()).await.unwrap().unwrap();
        let config = (*self.state.runtime().config).clone();
        TestGateway::on_stores(config, None, self.store.clone(), self.keys.clone())
    }

    pub fn from_toml(text: &str) -> TestGateway {
        TestGateway::new(from_toml_str(text).expect("config"))
    }

    /// Every record so far (flushes the collector first).
    pub async fn records(&self) -> Vec<RequestRecord> {
        let collector = self.state.collector().clone();
        tokio::task::spawn_blocking(move || collector.flush()).await.unwrap().unwrap();
        self.store.scan(&RecordQuery::range(0, i64::MAX)).unwrap()
    }

    pub async fn record(&self, id: &str) -> RequestRecord {
        let collector = self.state.collector().clone();
        tokio::task::spawn_blocking(move || collector.flush()).await.unwrap().unwrap();
        self.store.get(&RequestId::new(id)).unwrap().unwrap_or_else(|| panic!("no record {id}"))
    }
}

/// A gateway serving on a real loopback port until dropped, on I/O threads as `serve` does.
pub struct RunningGateway {
    pub gateway: TestGateway,
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RunningGateway {
    pub async fn start(gateway: TestGateway) -> RunningGateway {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let state = gateway.state.clone();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            // Two I/O threads, as `serve` runs on a two-core machine: connections are spread
            // over both, so every end-to-end test also crosses threads.
            run_server_threads(listener, 2, state, shutdown, Duration::from_secs(5)).await.unwrap();
        });
        RunningGateway { gateway, addr, stop: Some(stop), task: Some(task) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

impl Drop for RunningGateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}
