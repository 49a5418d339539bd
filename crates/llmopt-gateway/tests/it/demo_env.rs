//! The keyless environment shows the loop: `config/default.toml` with `config/demo.toml` layered
//! over it, loaded as `serve` loads them under `OPTIMIZER_ENV=demo`, behind a real HTTP server.
//! Traffic a newcomer would send (calls to `sim-large` at temperature 0, 85 % exact repeats,
//! quality feedback) leads `POST /api/optimize` to propose the response cache and routing to
//! `sim-small` at the stand-in prices, to start an experiment, and to adopt its winner.

use std::path::Path;

use futures::StreamExt;
use llmopt_gateway::config::{Config, ConfigSource};
use serde_json::{Value, json};

use crate::support::{RunningGateway, TestGateway, client};

const ADMIN: &str = "admin-secret";

/// The configuration of `OPTIMIZER_ENV=demo serve`, with the test's admin token variable.
fn demo_config() -> Config {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let source = ConfigSource {
        base_file: Some(root.join("config/default.toml")),
        env_file: Some(root.join("config/demo.toml")),
    };
    let mut config = source.load().expect("config/default.toml + config/demo.toml");
    config.auth.admin_token_env = Some("TEST_ADMIN_TOKEN".to_owned());
    config
}

/// The prompt of call `n`: 15 % are new, 85 % repeat one of 40 common questions.
fn prompt(n: usize) -> String {
    if n % 20 < 3 {
        format!("a question asked once, number {n}")
    } else {
        format!("common question {}", (n * 7_919) % 40)
    }
}

/// Sends calls `from..to` to `sim-large` with quality feedback (nine in ten correct), eight at
/// a time.
async fn traffic(running: &RunningGateway, from: usize, to: usize) {
    let http = client();
    let mut calls = futures::stream::iter(from..to)
        .map(|n| {
            let http = http.clone();
            let url = running.url("/v1/chat/completions");
            let feedback = running.url("/v1/feedback");
            async move {
                let response = http
                    .post(url)
                    .json(&json!({"model": "sim-large", "temperature": 0, "max_tokens": 64,
                                  "messages": [{"role": "user", "content": prompt(n)}]}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
                let _ = response.bytes().await.unwrap();
                let response = http
                    .post(feedback)
                    .json(&json!({"request_id": id, "metric": "correct", "value": n % 10 != 0}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
            }
        })
        .buffer_unordered(8);
    while calls.next().await.is_some() {}
}

async fn optimize(running: &RunningGateway) -> Value {
    let response =
        client().post(running.url("/api/optimize")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_to_the_keyless_gateway_leads_to_proposals_an_experiment_and_an_adoption() {
    let config = demo_config();
    assert_eq!(config.optimizer.mode, llmopt_optimizer::Mode::Auto, "the demo's loop acts");
    let running = RunningGateway::start(TestGateway::new(config)).await;

    traffic(&running, 0, 400).await;
    let report = optimize(&running).await;
    let proposals = report["proposals"].as_array().unwrap();
    let cache = proposals
        .iter()
        .find(|p| p["strategy"] == "response_cache" && p["scope"]["model"] == "sim-large")
        .unwrap_or_else(|| panic!("no response-cache proposal: {report:#}"));
    assert!(cache["saving"]["usd_per_day"].as_f64().unwrap() > 0.0, "{cache:#}");
    let started = report["started"].as_array().unwrap();
    assert_eq!(started.len(), 1, "one experiment on sim-large at a time: {report:#}");
    let experiment = started[0].as_str().unwrap().to_owned();
    // The first cycle also discovered the traffic's workloads; calls from now on carry them,
    // and routing to sim-small is proposed per workload (never for the whole model).
    assert!(!report["workloads"].is_null(), "{report:#}");

    traffic(&running, 400, 800).await;
    let report = optimize(&running).await;
    let routing = report["proposals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["strategy"] == "model_routing")
        .unwrap_or_else(|| panic!("no routing proposal: {report:#}"))
        .clone();
    assert_eq!(routing["action"]["model"], "sim-small", "{routing:#}");
    assert!(!routing["scope"]["workload"].is_null(), "{routing:#}");
    if report["adopted"].as_array().unwrap().iter().any(|id| id == experiment.as_str()) {
        return assert_adopted(&running, &experiment).await;
    }

    // The experiment runs on the traffic that follows, and its winner is adopted.
    let mut adopted = false;
    for round in 0..8 {
        traffic(&running, 800 + round * 200, 1_000 + round * 200).await;
        let report = optimize(&running).await;
        if report["adopted"].as_array().unwrap().iter().any(|id| id == experiment.as_str()) {
            adopted = true;
            break;
        }
    }
    assert!(adopted, "experiment {experiment} was not adopted");
    assert_adopted(&running, &experiment).await;
}

/// `/api/adoptions` lists the adopted experiment.
async fn assert_adopted(running: &RunningGateway, experiment: &str) {
    let response =
        client().get(running.url("/api/adoptions")).bearer_auth(ADMIN).send().await.unwrap();
    let adoptions: Value = response.json().await.unwrap();
    assert!(
        adoptions["adoptions"].as_array().unwrap().iter().any(|a| a["experiment_id"] == experiment),
        "{adoptions:#}"
    );
}
