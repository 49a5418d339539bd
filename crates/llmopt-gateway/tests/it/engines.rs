//! The gateway on shared engines, against real servers on loopback: `storage.backend =
//! "postgres"` (calls stored, an outage waited out), `cache.backend = "redis"` (an answer cached
//! through one gateway is a hit through another; Redis down is a miss; a key's rate limit holds
//! across gateways and falls back to each one's own when Redis is down), and the errors of
//! engines that are down.

use std::{collections::HashMap, sync::Arc, time::Duration};

use llmopt_core::{Clock, RecordQuery, SystemClock};
use llmopt_gateway::{
    AppState, Error, GatewayInit,
    config::{StorageBackend, StorageSection, from_toml_str},
    server::{OpenStore, open_store_blocking},
    state::SecretSource,
};
use llmopt_storage::test_engines::{TestPostgres, TestRedis};
use serde_json::json;

use crate::support::{RunningGateway, TestGateway, client, config_text, secrets, sim_server};

/// The test secrets plus `extra`.
fn secrets_with(extra: &[(&str, String)]) -> SecretSource {
    let base = secrets();
    let extra: HashMap<String, String> =
        extra.iter().map(|(name, value)| ((*name).to_owned(), value.clone())).collect();
    Arc::new(move |name: &str| extra.get(name).cloned().or_else(|| base(name)))
}

fn postgres_section() -> StorageSection {
    StorageSection { backend: StorageBackend::Postgres, ..StorageSection::default() }
}

/// Polls `done` (a background writer's progress) for up to 20 s.
async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done().await {
        assert!(start.elapsed() < Duration::from_secs(20), "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of an unlabelled metric in the `/metrics` text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name}"))
}

#[test]
fn postgres_without_its_url_or_reachable_server_is_a_clear_error() {
    let error = open_store_blocking(&postgres_section(), &secrets()).unwrap_err();
    assert!(matches!(error, Error::Config(_)), "{error:?}");
    assert!(error.to_string().contains("LLMOPT_POSTGRES_URL"), "{error}");

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("postgresql://llmopt:pg-s3cret@127.0.0.1:{port}/llmopt");
    let error =
        open_store_blocking(&postgres_section(), &secrets_with(&[("LLMOPT_POSTGRES_URL", url)]))
            .unwrap_err();
    let line = format!("error: {error}");
    assert!(
        line.starts_with(&format!("error: cannot connect to PostgreSQL at 127.0.0.1:{port}: ")),
        "{line}"
    );
    assert!(!line.contains("pg-s3cret") && !line.contains('\n'), "{line}");
}

#[test]
fn the_storage_backend_is_configured_by_name() {
    let config = from_toml_str("[storage]\nbackend = \"postgres\"\n").unwrap();
    assert_eq!(config.storage.backend, StorageBackend::Postgres);
    let error = from_toml_str("[storage]\nbackend = \"mysql\"\n").unwrap_err().to_string();
    assert!(error.contains("mysql"), "{error}");
}

#[tokio::test]
async fn calls_reach_postgres_and_wait_out_a_server_restart() {
    let Some(mut server) = TestPostgres::start() else { return };
    let url = server.database_url();
    let sim = sim_server(0.0).await;
    let mut config =
        from_toml_str(&config_text(&sim, "[collector]\nflush_interval_ms = 20\n")).unwrap();
    config.storage = postgres_section();
    let secrets = secrets_with(&[("LLMOPT_POSTGRES_URL", url)]);
    let store = {
        let (section, secrets) = (config.storage.clone(), Arc::clone(&secrets));
        tokio::task::spawn_blocking(move || open_store_blocking(&section, &secrets))
            .await
            .unwrap()
            .unwrap()
    };
    assert!(matches!(store, OpenStore::Postgres(_)));
    let records = store.stores().records;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let state = AppState::build(GatewayInit {
        config,
        stores: store.stores(),
        clock,
        secrets,
        config_source: None,
    })
    .unwrap();
    let gateway = RunningGateway::start(TestGateway {
        state: state.clone(),
        store: Default::default(),
        keys: Default::default(),
    })
    .await;
    let call = |i: usize| {
        let url = gateway.url("/v1/chat/completions");
        async move {
            let body = json!({"model": "sim-small", "messages": [{"role": "user", "content": format!("call {i}")}]});
            let response = client().post(url).json(&body).send().await.unwrap();
            assert_eq!(response.status(), 200);
        }
    };
    let stored = || {
        let records = Arc::clone(&records);
        async move {
            tokio::task::spawn_blocking(move || records.scan(&RecordQuery::range(0, i64::MAX)))
                .await
                .unwrap()
        }
    };
    let metrics = || {
        let url = gateway.url("/metrics");
        async move { client().get(url).send().await.unwrap().text().await.unwrap() }
    };
    for i in 0..5 {
        call(i).await;
    }
    eventually("the first calls are stored", async || {
        stored().await.is_ok_and(|records| records.len() == 5)
    })
    .await;

    // PostgreSQL goes away: calls are still answered, their records wait and are retried.
    let mut server = tokio::task::spawn_blocking(move || {
        server.stop();
        server
    })
    .await
    .unwrap();
    for i in 5..10 {
        call(i).await;
    }
    eventually("the writer retries", async || {
        metric(&metrics().await, "llmopt_collector_write_retries") >= 1.0
    })
    .await;
    assert!(stored().await.is_err(), "the server is down");

    // It comes back: every acknowledged call is stored, none counted lost.
    let _server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .unwrap();
    eventually("the queued calls are stored", async || {
        stored().await.is_ok_and(|records| records.len() == 10)
    })
    .await;
    let text = metrics().await;
    assert_eq!(metric(&text, "llmopt_collector_write_failed_records"), 0.0);
    assert_eq!(metric(&text, "llmopt_collector_retrying_records"), 0.0);
    assert_eq!(metric(&text, "llmopt_collector_dropped"), 0.0);
    gateway.stop().await;
}

/// A gateway over memory stores whose cache has Redis at `redis_url` as its second level.
async fn cached_gateway(sim: &llmopt_llm::sim::SimServer, redis_url: &str) -> RunningGateway {
    let text = config_text(sim, "[cache]\nenabled = true\nbackend = \"redis\"\n");
    let config = from_toml_str(&text).unwrap();
    let secrets = secrets_with(&[("LLMOPT_REDIS_URL", redis_url.to_owned())]);
    let stores = llmopt_gateway::Stores::memory();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let state =
        AppState::build(GatewayInit { config, stores, clock, secrets, config_source: None })
            .unwrap();
    RunningGateway::start(TestGateway {
        state,
        store: Default::default(),
        keys: Default::default(),
    })
    .await
}

async fn ask(gateway: &RunningGateway, content: &str) -> String {
    let body = json!({"model": "sim-small", "temperature": 0, "messages": [{"role": "user", "content": content}]});
    let response =
        client().post(gateway.url("/v1/chat/completions")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let outcome = response.headers()["x-llmopt-cache"].to_str().unwrap().to_owned();
    response.bytes().await.unwrap();
    outcome
}

async fn metrics_of(gateway: &RunningGateway) -> String {
    client().get(gateway.url("/metrics")).send().await.unwrap().text().await.unwrap()
}

/// Entries in the shared cache, read with a Redis client of the test's own.
fn redis_entries(url: &str) -> usize {
    let mut connection = redis::Client::open(url).unwrap().get_connection().unwrap();
    let keys: Vec<String> =
        redis::cmd("KEYS").arg("llmopt:cache:*").query(&mut connection).unwrap();
    keys.len()
}

#[test]
fn the_redis_cache_needs_its_url() {
    let text = "[cache]\nenabled = true\nbackend = \"redis\"\n";
    let config = from_toml_str(text).unwrap();
    let error = llmopt_gateway::Runtime::build(config, &secrets(), None).unwrap_err();
    assert!(error.to_string().contains("LLMOPT_REDIS_URL"), "{error}");
}

#[tokio::test]
async fn an_answer_cached_through_one_gateway_is_a_hit_through_another() {
    let Some(mut redis) = TestRedis::start() else { return };
    let url = redis.url(0);
    let sim = sim_server(0.0).await;
    let first = cached_gateway(&sim, &url).await;
    let second = cached_gateway(&sim, &url).await;

    assert_eq!(ask(&first, "shared question").await, "miss");
    // The write to Redis happens after the answer, in the background.
    let entries_url = url.clone();
    eventually("the answer reaches Redis", async || {
        let url = entries_url.clone();
        tokio::task::spawn_blocking(move || redis_entries(&url)).await.unwrap() == 1
    })
    .await;
    assert_eq!(ask(&second, "shared question").await, "hit", "the other replica's answer");
    assert_eq!(ask(&second, "shared question").await, "hit", "now from its own memory");
    assert_eq!(sim.engine().requests_seen(), 1, "the provider was called once");
    let text = metrics_of(&second).await;
    assert_eq!(metric(&text, "llmopt_cache_redis_hits"), 1.0, "the second hit was in-process");
    assert_eq!(metric(&text, "llmopt_cache_redis_errors"), 0.0);

    // Redis goes away: lookups are misses, the calls are answered, the failures counted.
    let mut redis = tokio::task::spawn_blocking(move || {
        redis.stop();
        redis
    })
    .await
    .unwrap();
    assert_eq!(ask(&second, "asked while Redis is down").await, "miss");
    assert_eq!(ask(&first, "asked again while Redis is down").await, "miss");
    assert!(metric(&metrics_of(&second).await, "llmopt_cache_redis_errors") >= 1.0);
    assert_eq!(sim.engine().requests_seen(), 3);

    // It comes back (empty): sharing resumes once the connection is made again.
    let _redis = tokio::task::spawn_blocking(move || {
        redis.restart();
        redis
    })
    .await
    .unwrap();
    let mut round = 0;
    eventually("sharing resumes after Redis restarts", async || {
        round += 1;
        let question = format!("after the restart {round}");
        ask(&first, &question).await;
        let entries_url = url.clone();
        let written = async || {
            let url = entries_url.clone();
            tokio::task::spawn_blocking(move || redis_entries(&url)).await.unwrap() > 0
        };
        // Give the background write a moment; then the other replica must hit.
        for _ in 0..20 {
            if written().await {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        written().await && ask(&second, &question).await == "hit"
    })
    .await;
    first.stop().await;
    second.stop().await;
}

/// A gateway over `stores` (shared with another) whose rate limits are counted in Redis.
async fn limited_gateway(
    sim: &llmopt_llm::sim::SimServer,
    redis_url: &str,
    stores: llmopt_gateway::Stores,
) -> RunningGateway {
    let extra = "[cache]\nenabled = false\nbackend = \"redis\"\n[auth]\nmetrics_public = true\n";
    let text = config_text(sim, extra);
    let config = from_toml_str(&text).unwrap();
    let secrets = secrets_with(&[("LLMOPT_REDIS_URL", redis_url.to_owned())]);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let state =
        AppState::build(GatewayInit { config, stores, clock, secrets, config_source: None })
            .unwrap();
    RunningGateway::start(TestGateway {
        state,
        store: Default::default(),
        keys: Default::default(),
    })
    .await
}

async fn call_with_key(gateway: &RunningGateway, key: &str) -> reqwest::StatusCode {
    let body = json!({"model": "sim-small", "messages": [{"role": "user", "content": "hi"}]});
    let response = client()
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    response.bytes().await.unwrap();
    status
}

#[tokio::test]
async fn a_rate_limit_counted_in_redis_holds_across_two_gateways() {
    let Some(mut redis) = TestRedis::start() else { return };
    let url = redis.url(0);
    let sim = sim_server(0.0).await;
    const SECRET: &str = "sk-llmopt-shared-limit";
    const PER_MINUTE: u32 = 6;
    let stores = llmopt_gateway::Stores::memory();
    stores
        .keys
        .insert(&llmopt_core::VirtualKey {
            id: "key_shared_limit".into(),
            sha256: llmopt_gateway::auth::hash_key(SECRET),
            tenant: "acme".into(),
            budget: None,
            budget_period: llmopt_core::BudgetPeriod::Month,
            models: Vec::new(),
            requests_per_minute: Some(PER_MINUTE),
            expires_at_ms: None,
            created_ms: SystemClock.now_ms(),
            revoked_ms: None,
        })
        .unwrap();
    let first = limited_gateway(&sim, &url, stores.clone()).await;
    let second = limited_gateway(&sim, &url, stores).await;

    // Both replicas take from one bucket: PER_MINUTE calls in all, then 429 from either.
    for index in 0..PER_MINUTE {
        let gateway = if index % 2 == 0 { &first } else { &second };
        assert_eq!(call_with_key(gateway, SECRET).await, 200, "call {index}");
    }
    assert_eq!(call_with_key(&first, SECRET).await, 429);
    assert_eq!(call_with_key(&second, SECRET).await, 429);
    assert_eq!(metric(&metrics_of(&first).await, "llmopt_rate_limit_redis_errors"), 0.0);

    // Redis goes away: each replica's own bucket decides (it was not drawn on while Redis
    // answered), and the fallbacks are counted.
    let _redis = tokio::task::spawn_blocking(move || {
        redis.stop();
        redis
    })
    .await
    .unwrap();
    assert_eq!(call_with_key(&first, SECRET).await, 200, "the local limiter admits");
    assert!(metric(&metrics_of(&first).await, "llmopt_rate_limit_redis_errors") >= 1.0);
    first.stop().await;
    second.stop().await;
}
