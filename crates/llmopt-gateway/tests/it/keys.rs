//! Virtual keys and budgets through the router: the admin makes, lists and revokes keys; each
//! refusal (unknown, expired, revoked key, model not allowed, budget, rate) in both protocols'
//! error shapes; exact spend against the budget, cache hits at zero, concurrent calls, and the
//! spend rebuilt after a restart. The simulated provider answers on a real port.

use axum::{
    body::Body,
    http::{Request, StatusCode},
};
use http_body_util::BodyExt;
use llmopt_core::{KeyStore, Money, VirtualKey};
use llmopt_gateway::{AppState, router};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::support::{TestGateway, config_text, sim_server};

const ADMIN: &str = "admin-secret";

/// sim-small at 1,000 USD / M input and 2,000 USD / M output: a call costs cents.
const PRICES: &str = r#"
[models."sim-small"]
provider = "openai"
input = 1000.0
output = 2000.0
cache_read = 500.0

[models."sim-large"]
provider = "anthropic"
input = 1000.0
output = 2000.0
"#;

struct Setup {
    gateway: TestGateway,
    _sim: llmopt_llm::sim::SimServer,
    _prices: tempfile::NamedTempFile,
}

async fn setup(extra: &str) -> Setup {
    let sim = sim_server(0.0).await;
    let prices = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(prices.path(), PRICES).unwrap();
    let extra = format!(
        "[auth]\nadmin_token_env = \"TEST_ADMIN_TOKEN\"\n[pricing]\nfile = \"{}\"\n{extra}",
        prices.path().display()
    );
    let gateway = TestGateway::from_toml(&config_text(&sim, &extra));
    Setup { gateway, _sim: sim, _prices: prices }
}

async fn send(
    state: &AppState,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Value,
) -> (StatusCode, Value, http::HeaderMap) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    if path.starts_with("/v1/messages") {
        request = request.header("anthropic-version", "2023-06-01");
    }
    let body = if body.is_null() { String::new() } else { body.to_string() };
    let request =
        request.header("content-type", "application/json").body(Body::from(body)).unwrap();
    let response = router(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value, headers)
}

fn chat(model: &str, content: &str) -> Value {
    json!({"model": model, "max_tokens": 20, "temperature": 0,
           "messages": [{"role": "user", "content": content}]})
}

/// Makes a key as the admin; returns (id, secret).
async fn make_key(state: &AppState, request: Value) -> (String, String) {
    let (status, body, _) = send(state, "POST", "/api/keys", Some(ADMIN), request).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (body["id"].as_str().unwrap().to_owned(), body["key"].as_str().unwrap().to_owned())
}

/// The error's `type` and `code` in the OpenAI shape, and its `type` in the Anthropic shape,
/// checked to be the right shape for the route.
fn openai_error(body: &Value) -> (&str, &str) {
    assert!(body.get("type").is_none(), "OpenAI shape: {body}");
    (body["error"]["type"].as_str().unwrap(), body["error"]["code"].as_str().unwrap())
}

fn anthropic_error(body: &Value) -> &str {
    assert_eq!(body["type"], "error", "Anthropic shape: {body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    body["error"]["type"].as_str().unwrap()
}

#[tokio::test]
async fn the_admin_makes_lists_and_revokes_keys_and_no_one_else_can() {
    let setup = setup("").await;
    let state = &setup.gateway.state;
    let request = json!({"tenant": "team-a", "budget_usd": "1.50", "budget_period": "day",
                         "models": ["sim-*"], "requests_per_minute": 100,
                         "expires_at": "2099-01-01T00:00:00Z"});
    // Nobody but the admin token may make, list or revoke keys.
    for key in [None, Some("not-a-key")] {
        let (status, body, _) = send(state, "POST", "/api/keys", key, request.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["error"]["type"], "authentication_error");
        let (status, _, _) = send(state, "GET", "/api/keys", key, Value::Null).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (id, secret) = make_key(state, request.clone()).await;
    assert!(secret.starts_with("sk-llmopt-") && secret.len() > 60, "{secret}");
    assert!(id.starts_with("key_"));
    for (method, path) in [("POST", "/api/keys"), ("GET", "/api/keys"), ("DELETE", "/api/keys/x")] {
        let (status, body, _) = send(state, method, path, Some(&secret), request.clone()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path} as a client key: {body}");
        assert_eq!(body["error"]["type"], "permission_error");
    }

    let (status, listed, _) = send(state, "GET", "/api/keys", Some(ADMIN), Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    let text = listed.to_string();
    assert!(!text.contains(&secret), "the secret is shown once");
    assert!(!text.contains(&llmopt_gateway::auth::hash_key(&secret)), "nor its digest");
    let key = &listed["keys"][0];
    assert_eq!(
        (&key["id"], &key["tenant"], &key["status"], &key["budget_period"]),
        (&json!(id), &json!("team-a"), &json!("active"), &json!("day"))
    );
    assert_eq!(key["budget_usd"], 1.5);
    assert_eq!(key["spend_usd"], 0.0);
    assert_eq!(key["models"], json!(["sim-*"]));
    assert_eq!(key["expires_at"], "2099-01-01T00:00:00.000Z");

    // The key works, and its calls are billed to its tenant and named by its id.
    let (status, _, headers) =
        send(state, "POST", "/v1/chat/completions", Some(&secret), chat("sim-small", "hi")).await;
    assert_eq!(status, StatusCode::OK);
    let request_id = headers["x-request-id"].to_str().unwrap().to_owned();
    let record = setup.gateway.record(&request_id).await;
    assert_eq!(record.tenant.as_ref().map(|t| t.as_str()), Some("team-a"));
    assert_eq!(record.tags.get("llmopt.key"), Some(&id));

    // Revoked at once: the next request fails, in each protocol's shape.
    let (status, revoked, _) =
        send(state, "DELETE", &format!("/api/keys/{id}"), Some(ADMIN), Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(revoked["status"], "revoked");
    let (status, body, _) =
        send(state, "POST", "/v1/chat/completions", Some(&secret), chat("sim-small", "hi")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(openai_error(&body), ("authentication_error", "key_revoked"));
    let (status, body, _) =
        send(state, "POST", "/v1/messages", Some(&secret), chat("sim-large", "hi")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(anthropic_error(&body), "authentication_error");
    assert!(body["error"]["message"].as_str().unwrap().contains("revoked"));
    let (status, _, _) =
        send(state, "DELETE", "/api/keys/key_unknown", Some(ADMIN), Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Revoking the last key does not open the gateway.
    let (status, _, _) =
        send(state, "POST", "/v1/chat/completions", None, chat("sim-small", "hi")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn bad_key_requests_are_json_400s() {
    let setup = setup("").await;
    let state = &setup.gateway.state;
    let bad = [
        json!({}),
        json!({"tenant": ""}),
        json!({"tenant": "a", "budget_usd": 1e-13}),
        json!({"tenant": "a", "budget_usd": -1}),
        json!({"tenant": "a", "budget_usd": "lots"}),
        json!({"tenant": "a", "budget_usd": 1, "budget_period": "week"}),
        json!({"tenant": "a", "budget_period": "day"}),
        json!({"tenant": "a", "requests_per_minute": 0}),
        json!({"tenant": "a", "expires_at": "2001-01-01T00:00:00Z"}),
        json!({"tenant": "a", "expires_at": "soon"}),
        json!({"tenant": "a", "models": [""]}),
        json!({"tenant": "a", "models": vec!["m"; 257]}),
        json!({"tenant": "a", "surprise": true}),
        json!("not an object"),
    ];
    for request in bad {
        let (status, body, _) =
            send(state, "POST", "/api/keys", Some(ADMIN), request.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{request}: {body}");
        assert_eq!(body["error"]["type"], "invalid_request_error", "{request}");
    }
    let (status, listed, _) = send(state, "GET", "/api/keys", Some(ADMIN), Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["keys"], json!([]), "nothing was made");
}

#[tokio::test]
async fn every_refusal_in_both_protocol_shapes() {
    let setup = setup("").await;
    let gateway = &setup.gateway;
    let state = &gateway.state;
    let (_, limited) =
        make_key(state, json!({"tenant": "t", "models": ["sim-small", "sim-large"]})).await;
    let (_, broke) = make_key(state, json!({"tenant": "t", "budget_usd": 0})).await;
    let (_, slow) = make_key(state, json!({"tenant": "t", "requests_per_minute": 2})).await;
    // An expired key: stored directly with a past expiry, loaded as after a restart.
    let expired_secret = "sk-expired-key";
    gateway
        .keys
        .insert(&VirtualKey {
            id: "key_expired".into(),
            sha256: llmopt_gateway::auth::hash_key(expired_secret),
            tenant: "t".into(),
            budget: None,
            budget_period: Default::default(),
            models: Vec::new(),
            requests_per_minute: None,
            expires_at_ms: Some(1_000),
            created_ms: 0,
            revoked_ms: None,
        })
        .unwrap();
    let restarted = gateway.restarted().await;
    let state = &restarted.state;

    let cases: [(&str, &str, &str, StatusCode, &str, &str); 5] = [
        // (key, OpenAI model, Anthropic model, status, type, OpenAI code)
        (
            "sk-unknown",
            "sim-small",
            "sim-large",
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid_api_key",
        ),
        (
            expired_secret,
            "sim-small",
            "sim-large",
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "key_expired",
        ),
        (
            &limited,
            "sim-other",
            "sim-other",
            StatusCode::FORBIDDEN,
            "model_not_allowed",
            "model_not_allowed",
        ),
        (
            &broke,
            "sim-small",
            "sim-large",
            StatusCode::TOO_MANY_REQUESTS,
            "budget_exceeded",
            "budget_exceeded",
        ),
        (
            &slow,
            "sim-small",
            "sim-large",
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
            "rate_limit_exceeded",
        ),
    ];
    // The rate-limited key uses up its two requests first.
    for _ in 0..2 {
        let (status, body, _) =
            send(state, "POST", "/v1/chat/completions", Some(&slow), chat("sim-small", "a")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    for (key, openai_model, anthropic_model, status, error_type, code) in cases {
        let (got, body, headers) =
            send(state, "POST", "/v1/chat/completions", Some(key), chat(openai_model, "a")).await;
        assert_eq!(got, status, "{body}");
        let openai_type =
            if status == StatusCode::UNAUTHORIZED { "authentication_error" } else { error_type };
        assert_eq!(openai_error(&body), (openai_type, code));
        if status == StatusCode::TOO_MANY_REQUESTS {
            let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
            assert!(retry >= 1, "{code}: Retry-After {retry}");
        }
        let (got, body, _) =
            send(state, "POST", "/v1/messages", Some(key), chat(anthropic_model, "a")).await;
        assert_eq!(got, status, "{body}");
        assert_eq!(anthropic_error(&body), error_type);
    }
    // A model the key may use still works for it.
    let (status, _, _) =
        send(state, "POST", "/v1/messages", Some(&limited), chat("sim-large", "a")).await;
    assert_eq!(status, StatusCode::OK);
}

/// The spend of `key_id`'s records, from the store.
async fn spend_of(gateway: &TestGateway, key_id: &str) -> (Money, usize) {
    let records = gateway.records().await;
    let mine: Vec<_> = records
        .iter()
        .filter(|r| r.tags.get("llmopt.key").map(String::as_str) == Some(key_id))
        .collect();
    (mine.iter().filter_map(|r| r.cost).sum(), mine.len())
}

fn as_usd_text(money: Money) -> String {
    let picos = money.0;
    format!("{}.{:012}", picos / 1_000_000_000_000, picos % 1_000_000_000_000)
}

#[tokio::test]
async fn the_budget_is_enforced_with_exact_spend_and_survives_a_restart() {
    let setup = setup("[cache]\nenabled = true\n").await;
    let gateway = &setup.gateway;
    let state = &gateway.state;
    // Learn what one call costs (with an unlimited key), then give a key 2.5 calls' worth.
    let (probe_id, probe) = make_key(state, json!({"tenant": "probe"})).await;
    let (status, _, _) =
        send(state, "POST", "/v1/chat/completions", Some(&probe), chat("sim-small", "q0")).await;
    assert_eq!(status, StatusCode::OK);
    let (one_call, _) = spend_of(gateway, &probe_id).await;
    assert!(one_call > Money::ZERO);
    let budget = Money(one_call.0 * 5 / 2);
    let (id, secret) = make_key(
        state,
        json!({"tenant": "team-a", "budget_usd": as_usd_text(budget), "budget_period": "month"}),
    )
    .await;

    // A cache hit costs nothing: the same request twice counts once.
    let mut admitted = 0;
    for (index, prompt) in ["q0", "q0", "q1", "q2", "q3", "q4", "q5"].iter().enumerate() {
        let (spent_before, _) = spend_of(gateway, &id).await;
        let (status, body, headers) =
            send(state, "POST", "/v1/chat/completions", Some(&secret), chat("sim-small", prompt))
                .await;
        if spent_before < budget {
            assert_eq!(status, StatusCode::OK, "call {index} below the budget: {body}");
            admitted += 1;
            if index == 1 {
                assert_eq!(headers["x-llmopt-cache"], "hit");
            }
        } else {
            assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "call {index} over the budget");
            assert_eq!(openai_error(&body), ("budget_exceeded", "budget_exceeded"));
        }
    }
    let (spent, calls) = spend_of(gateway, &id).await;
    assert!(spent >= budget && admitted < 7, "the budget was reached: {spent:?} of {budget:?}");
    assert_eq!(calls, 7, "refusals are recorded too (at no cost)");

    // What the gateway reports is the records' exact sum.
    let (status, budgets, _) = send(state, "GET", "/api/budgets", Some(ADMIN), Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    let row =
        budgets["budgets"].as_array().unwrap().iter().find(|r| r["id"] == id).unwrap().clone();
    assert_eq!(row["spend_usd"], spent.as_usd_f64());
    assert_eq!(row["budget_usd"], budget.as_usd_f64());
    assert!(row["projected_period_end_usd"].as_f64().unwrap() >= spent.as_usd_f64());
    // A client key sees its own tenant's budgets only.
    let (status, own, _) = send(state, "GET", "/api/budgets", Some(&probe), Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(own["budgets"], json!([]), "the probe key has no budget and sees no other tenant");

    let (status, metrics, _) = send(state, "GET", "/metrics", Some(ADMIN), Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    let metrics = metrics.as_str().unwrap().to_owned();
    let series = format!("llmopt_key_spend_usd{{key=\"{id}\",tenant=\"team-a\"}} ");
    assert!(metrics.contains(&series), "{metrics}");
    assert!(metrics.contains(&format!("llmopt_key_budget_usd{{key=\"{id}\",tenant=\"team-a\"}} ")));

    // After a restart the spend is rebuilt from the records: still refused, same figures.
    let restarted = gateway.restarted().await;
    let state = &restarted.state;
    let (status, body, _) =
        send(state, "POST", "/v1/chat/completions", Some(&secret), chat("sim-small", "q9")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let (_, budgets, _) = send(state, "GET", "/api/budgets", Some(ADMIN), Value::Null).await;
    let row =
        budgets["budgets"].as_array().unwrap().iter().find(|r| r["id"] == id).unwrap().clone();
    assert_eq!(row["spend_usd"], spent.as_usd_f64());
}

/// Calls admitted together all run (the budget is checked when a call starts); once they end
/// over the budget, the next one is refused. The overshoot is at most the calls in flight.
#[tokio::test]
async fn concurrent_calls_overshoot_by_at_most_the_calls_in_flight() {
    let setup = setup("").await;
    let gateway = &setup.gateway;
    let state = &gateway.state;
    let (probe_id, probe) = make_key(state, json!({"tenant": "probe"})).await;
    send(state, "POST", "/v1/chat/completions", Some(&probe), chat("sim-small", "c")).await;
    let (one_call, _) = spend_of(gateway, &probe_id).await;
    let budget = Money(one_call.0 / 2);
    let (id, secret) =
        make_key(state, json!({"tenant": "t", "budget_usd": as_usd_text(budget)})).await;
    const IN_FLIGHT: usize = 8;
    let calls = (0..IN_FLIGHT).map(|_| {
        send(state, "POST", "/v1/chat/completions", Some(&secret), chat("sim-small", "c"))
    });
    let results = futures::future::join_all(calls).await;
    let admitted = results.iter().filter(|(status, _, _)| *status == StatusCode::OK).count();
    assert!(admitted >= 1);
    let (spent, _) = spend_of(gateway, &id).await;
    assert!(spent >= budget);
    assert!(
        spent <= budget + Money(one_call.0 * IN_FLIGHT as i128),
        "overshoot beyond the calls in flight: {spent:?}"
    );
    let (status, body, _) =
        send(state, "POST", "/v1/chat/completions", Some(&secret), chat("sim-small", "c")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
}

#[tokio::test]
async fn models_lists_what_the_routes_serve_filtered_by_the_key() {
    let setup = setup("[aliases]\nfast = \"sim-small\"\nbig = \"sim-large\"\n").await;
    let state = &setup.gateway.state;
    let (_, all) = make_key(state, json!({"tenant": "t"})).await;
    let (_, small_only) = make_key(state, json!({"tenant": "t", "models": ["sim-small"]})).await;
    let ids = |body: &Value| -> Vec<String> {
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, body, _) = send(state, "GET", "/v1/models", Some(&all), Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["object"], "list");
    // sim-small through the `sim-*` glob (it is in the price catalog), sim-large exactly, and
    // both aliases; the glob itself is not a model.
    assert_eq!(ids(&body), ["big", "fast", "sim-large", "sim-small"]);
    let large = body["data"].as_array().unwrap().iter().find(|m| m["id"] == "sim-large").unwrap();
    assert_eq!((&large["object"], &large["owned_by"]), (&json!("model"), &json!("ant")));

    let (status, body, _) = send(state, "GET", "/v1/models", Some(&small_only), Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&body), ["fast", "sim-small"], "the key's models, and aliases naming them");

    // The Anthropic SDK's shape when it says its version.
    let request = Request::builder()
        .uri("/v1/models")
        .header("x-api-key", &small_only)
        .header("anthropic-version", "2023-06-01")
        .body(Body::empty())
        .unwrap();
    let response = router(state.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(ids(&body), ["fast", "sim-small"]);
    assert_eq!(body["data"][0]["type"], "model");
    assert_eq!(
        (&body["has_more"], &body["first_id"], &body["last_id"]),
        (&json!(false), &json!("fast"), &json!("sim-small"))
    );
    let request = Request::builder()
        .uri("/v1/models")
        .header("anthropic-version", "2023-06-01")
        .body(Body::empty())
        .unwrap();
    let response = router(state.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(anthropic_error(&body), "authentication_error");
    let (status, body, _) = send(state, "GET", "/v1/models", Some(ADMIN), Value::Null).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "the admin token is not a client key: {body}");
}

/// On the embedded store, as `serve` runs: keys and spend outlive the process.
#[tokio::test]
async fn keys_and_spend_survive_a_restart_on_sled() {
    use std::sync::Arc;

    use llmopt_core::{Clock, SystemClock};
    use llmopt_gateway::{GatewayInit, Stores, server::close_sled};
    use llmopt_storage::{SledStore, StorageConfig};

    let sim = sim_server(0.0).await;
    let prices = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(prices.path(), PRICES).unwrap();
    let extra = format!(
        "[auth]\nadmin_token_env = \"TEST_ADMIN_TOKEN\"\n[pricing]\nfile = \"{}\"\n",
        prices.path().display()
    );
    let config = llmopt_gateway::config::from_toml_str(&config_text(&sim, &extra)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    let open = |config: llmopt_gateway::config::Config| {
        let store = SledStore::open(&path, StorageConfig::default()).unwrap();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let init = GatewayInit {
            config,
            stores: Stores::sled(&store),
            clock,
            secrets: crate::support::secrets(),
            config_source: None,
        };
        (AppState::build(init).unwrap(), store)
    };

    let (state, store) = open(config.clone());
    // A budget below one call: the first call is admitted, the second refused.
    let (id, secret) =
        make_key(&state, json!({"tenant": "team-a", "budget_usd": "0.000001"})).await;
    let (status, _, _) =
        send(&state, "POST", "/v1/chat/completions", Some(&secret), chat("sim-small", "a")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) =
        send(&state, "POST", "/v1/chat/completions", Some(&secret), chat("sim-small", "b")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let (_, before, _) = send(&state, "GET", "/api/keys", Some(ADMIN), Value::Null).await;
    let spend = before["keys"][0]["spend_usd"].as_f64().unwrap();
    assert!(spend > 0.000001);
    close_sled(state, store).await.unwrap();

    let (state, store) = open(config);
    let (_, after, _) = send(&state, "GET", "/api/keys", Some(ADMIN), Value::Null).await;
    assert_eq!(after["keys"][0]["id"], json!(id));
    assert_eq!(after["keys"][0]["spend_usd"].as_f64().unwrap(), spend, "spend rebuilt");
    let (status, body, _) =
        send(&state, "POST", "/v1/chat/completions", Some(&secret), chat("sim-small", "c")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(openai_error(&body), ("budget_exceeded", "budget_exceeded"));
    close_sled(state, store).await.unwrap();
}
