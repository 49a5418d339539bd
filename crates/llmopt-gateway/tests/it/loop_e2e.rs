//! A strategy end to end through the gateway, over real sockets and the simulated provider:
//! traffic with a shared system prompt → `POST /api/optimize` proposes prompt caching and starts
//! an experiment → the winner is adopted with a holdout → the breakpoints act on the request
//! path (cache reads in the records) → the saving is measured against the holdout → an admin
//! rolls it back through the API and the request path is as before.

use llmopt_core::{APPLIED_TAG, HELD_OUT_TAG, RecordQuery, RecordStore};
use llmopt_gateway::auth::hash_key;
use serde_json::{Value, json};

use crate::support::{
    RunningGateway, SIM_PRICES_WITH_CACHE as PRICES, TestGateway, client, config_text, sim_server,
};

const CLIENT: &str = "key-of-team-a";
const ADMIN: &str = "admin-secret";

fn config(sim: &llmopt_llm::sim::SimServer, prices: &std::path::Path) -> String {
    let extra = format!(
        r#"
[pricing]
file = "{prices}"
[auth]
keys = [{{ sha256 = "{key}", tenant = "team-a" }}]
admin_token_env = "TEST_ADMIN_TOKEN"
[optimizer]
mode = "auto"
lookback_ms = 86400000
min_samples_per_arm = 60
experiment_tuning_samples = 400
holdout_share = 0.2
[optimizer.strategies]
response_cache = false
model_routing = false
max_tokens_cap = false
timeout_hedge = false
batch_pricing = false
[optimizer.settings]
min_requests = 40
"#,
        prices = prices.display(),
        key = hash_key(CLIENT),
    );
    config_text(sim, &extra)
}

struct Loop {
    gateway: RunningGateway,
    system: String,
    next: usize,
}

impl Loop {
    /// `count` Anthropic calls sharing a long system prompt, each with its own question.
    async fn traffic(&mut self, count: usize) {
        for _ in 0..count {
            self.next += 1;
            let body = json!({"model": "sim-large", "max_tokens": 16, "temperature": 0,
                              "system": self.system,
                              "messages": [{"role": "user", "content": format!("question {}", self.next)}]});
            let response = client()
                .post(self.gateway.url("/v1/messages"))
                .header("x-api-key", CLIENT)
                .header("anthropic-version", "2023-06-01")
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            let _ = response.bytes().await;
        }
    }

    async fn admin(&self, method: reqwest::Method, path: &str, key: &str) -> (u16, Value) {
        let response =
            client().request(method, self.gateway.url(path)).bearer_auth(key).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn optimize(&self) -> Value {
        let (status, report) = self.admin(reqwest::Method::POST, "/api/optimize", ADMIN).await;
        assert_eq!(status, 200, "{report}");
        report
    }

    async fn records_since(&self, from: usize) -> Vec<llmopt_core::RequestRecord> {
        let collector = self.gateway.gateway.state.collector().clone();
        tokio::task::spawn_blocking(move || collector.flush()).await.unwrap().unwrap();
        let all = self.gateway.gateway.store.scan(&RecordQuery::range(0, i64::MAX)).unwrap();
        all.into_iter().skip(from).collect()
    }
}

#[tokio::test]
async fn prompt_caching_is_proposed_tested_adopted_measured_and_rolled_back_through_the_api() {
    let sim = sim_server(0.0).await;
    let prices = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(prices.path(), PRICES).unwrap();
    let gateway = RunningGateway::start(TestGateway::from_toml(&config(&sim, prices.path()))).await;
    let system = "You answer questions about the rules of chess, briefly. ".repeat(120);
    let mut lp = Loop { gateway, system, next: 0 };

    // Traffic without any breakpoint: the provider caches nothing.
    lp.traffic(60).await;
    let report = lp.optimize().await;
    let proposals = report["proposals"].as_array().unwrap();
    let proposal = proposals
        .iter()
        .find(|p| p["strategy"] == "prompt_cache")
        .unwrap_or_else(|| panic!("{report:#}"));
    assert_eq!(proposal["action"]["kind"], "prompt_cache", "{proposal:#}");
    assert_eq!(report["started"].as_array().unwrap().len(), 1, "{report:#}");
    let experiment = report["started"][0].as_str().unwrap().to_owned();

    // The experiment runs on exact cost until it decides.
    let mut adopted = false;
    for _ in 0..10 {
        lp.traffic(100).await;
        let report = lp.optimize().await;
        if report["adopted"].as_array().unwrap().iter().any(|id| id == experiment.as_str()) {
            adopted = true;
            break;
        }
    }
    assert!(adopted, "prompt caching was not adopted");

    // On the request path: applied calls read the cached prefix, held-out calls do not.
    let from = lp.records_since(0).await.len();
    lp.traffic(150).await;
    let records = lp.records_since(from).await;
    let applied: Vec<_> = records
        .iter()
        .filter(|r| r.tags.get(APPLIED_TAG).is_some_and(|v| v.contains(&experiment)))
        .collect();
    let held_out: Vec<_> = records
        .iter()
        .filter(|r| r.tags.get(HELD_OUT_TAG).is_some_and(|v| v.contains(&experiment)))
        .collect();
    assert_eq!(applied.len() + held_out.len(), 150);
    assert!(held_out.len() >= 10 && applied.len() >= 90, "{} / {}", applied.len(), held_out.len());
    assert!(applied.iter().all(|r| r.usage.unwrap().cache_read_tokens > 1_000));
    assert!(held_out.iter().all(|r| r.usage.unwrap().cache_read_tokens == 0));

    // Measured against the holdout: cheaper, with its interval, the same in /api/adoptions and
    // /metrics.
    lp.optimize().await;
    let (status, adoptions) = lp.admin(reqwest::Method::GET, "/api/adoptions", ADMIN).await;
    assert_eq!(status, 200);
    let adoption = adoptions["adoptions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["experiment_id"] == experiment.as_str())
        .unwrap()
        .clone();
    let measurement = &adoption["measurement"];
    let saving = measurement["saving_usd_per_day"].as_f64().unwrap();
    assert!(saving > 0.0, "{measurement:#}");
    assert!(
        measurement["held_out_cost_per_request"].as_f64().unwrap()
            > measurement["applied_cost_per_request"].as_f64().unwrap()
    );
    let metrics = client()
        .get(lp.gateway.url("/metrics"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let exported: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("optimizer_cost_reduction "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!((exported - saving).abs() <= 1e-9 * saving.abs().max(1.0), "{exported} vs {saving}");

    // Rollback: not by a client key, not for an unknown id, then by the admin.
    let path = format!("/api/adoptions/{experiment}/rollback");
    let (status, body) = lp.admin(reqwest::Method::POST, &path, CLIENT).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) =
        lp.admin(reqwest::Method::POST, "/api/adoptions/exp-9999/rollback", ADMIN).await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("exp-9999"), "{body}");
    let (status, body) = lp.admin(reqwest::Method::POST, &path, ADMIN).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rolled_back"]["cause"], "operator");
    let (status, _) = lp.admin(reqwest::Method::POST, &path, ADMIN).await;
    assert_eq!(status, 404, "rolled back once");
    let (_, audit) = lp.admin(reqwest::Method::GET, "/api/audit?limit=1000", ADMIN).await;
    assert!(
        audit["entries"].as_array().unwrap().iter().any(|e| e["kind"] == "rolled_back"),
        "{audit:#}"
    );
    // The request path is as before: no breakpoints, no cache tokens, no adoption tags.
    let from = lp.records_since(0).await.len();
    lp.traffic(20).await;
    for record in lp.records_since(from).await {
        let usage = record.usage.unwrap();
        assert_eq!(usage.cache_read_tokens + usage.cache_write_5m_tokens, 0, "{usage:?}");
        assert!(!record.tags.contains_key(APPLIED_TAG));
    }
    lp.gateway.stop().await;
}
