//! Who can do what, route by route: every route without a key, with another tenant's key, with
//! a client key where the admin token is needed, and with one bad input each. Two tenant keys
//! and an admin token; the simulated provider answers the proxied calls.

use std::{cell::Cell, sync::Arc};

use axum::{
    body::Body,
    http::{Request, StatusCode},
};
use http_body_util::BodyExt;
use llmopt_core::{Clock, SystemClock};
use llmopt_experiments::{Degradation, ExperimentSpec, Guardrail, Metric, PolicyChange};
use llmopt_gateway::{
    AppState, GatewayInit, Stores, auth::hash_key, config::from_toml_str, router,
};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::support::{TestGateway, config_text, secrets, sim_server};

const KEY_A: &str = "key-of-team-a";
const KEY_B: &str = "key-of-team-b";
const ADMIN: &str = "admin-secret";

fn auth_section() -> String {
    format!(
        "[auth]\nkeys = [{{ sha256 = \"{}\", tenant = \"team-a\" }}, {{ sha256 = \"{}\", tenant = \"team-b\" }}]\nadmin_token_env = \"TEST_ADMIN_TOKEN\"\n",
        hash_key(KEY_A),
        hash_key(KEY_B)
    )
}

async fn gateway() -> (TestGateway, llmopt_llm::sim::SimServer) {
    let sim = sim_server(0.0).await;
    let gateway = TestGateway::from_toml(&config_text(&sim, &auth_section()));
    (gateway, sim)
}

async fn send(
    state: &AppState,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let request = request
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap();
    let response = router(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value)
}

fn chat(model: &str) -> String {
    json!({"model": model, "temperature": 0, "messages": [{"role": "user", "content": "hi"}]})
        .to_string()
}

/// Every route but the two probes, with a body that would be accepted.
fn routes() -> Vec<(&'static str, String, String)> {
    let feedback = json!({"request_id": "unknown", "metric": "correct", "value": true});
    let record = json!([{"model": "gpt-4o", "provider": "openai", "usage": {"input_tokens": 10, "output_tokens": 5}}]);
    vec![
        ("POST", "/v1/chat/completions".into(), chat("sim-small")),
        ("POST", "/v1/messages".into(), chat("sim-large")),
        ("POST", "/v1/feedback".into(), feedback.to_string()),
        ("POST", "/v1/records".into(), record.to_string()),
        ("GET", "/api/stats".into(), String::new()),
        ("GET", "/api/usage".into(), String::new()),
        ("GET", "/api/forecast".into(), String::new()),
        ("GET", "/api/clusters".into(), String::new()),
        ("GET", "/metrics".into(), String::new()),
        ("GET", "/api/config".into(), String::new()),
        ("POST", "/api/config/reload".into(), String::new()),
        ("GET", "/api/proposals".into(), String::new()),
        ("GET", "/api/experiments".into(), String::new()),
        ("GET", "/api/experiments/exp-1".into(), String::new()),
        ("POST", "/api/experiments/exp-1/stop".into(), "{}".into()),
        ("POST", "/api/experiments/exp-1/conclude".into(), "{}".into()),
        ("POST", "/api/experiments/exp-1/approve".into(), String::new()),
        ("GET", "/api/policy".into(), String::new()),
        ("PUT", "/api/policy".into(), json!({"rules": []}).to_string()),
        ("PUT", "/api/policy/flags/f".into(), json!({"enabled": false}).to_string()),
        ("POST", "/api/optimize".into(), String::new()),
        ("GET", "/api/audit".into(), String::new()),
        ("GET", "/api/adoptions".into(), String::new()),
        ("POST", "/api/adoptions/exp-1/rollback".into(), "{}".into()),
    ]
}

/// Routes only the admin may use.
const ADMIN_ONLY: &[&str] = &[
    "/metrics",
    "/api/config",
    "/api/config/reload",
    "/api/proposals",
    "/api/experiments",
    "/api/experiments/exp-1",
    "/api/experiments/exp-1/stop",
    "/api/experiments/exp-1/conclude",
    "/api/experiments/exp-1/approve",
    "/api/policy",
    "/api/policy/flags/f",
    "/api/optimize",
    "/api/audit",
    "/api/adoptions",
    "/api/adoptions/exp-1/rollback",
];

#[tokio::test]
async fn every_route_but_the_probes_needs_a_key_and_admin_routes_need_the_token() {
    let (gateway, _sim) = gateway().await;
    let state = &gateway.state;
    for probe in ["/health", "/ready"] {
        assert_eq!(send(state, "GET", probe, None, "").await.0, StatusCode::OK, "{probe}");
    }
    for (method, path, body) in routes() {
        let (status, answer) = send(state, method, &path, None, &body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} without a key: {answer}");
        assert!(answer.get("error").is_some(), "{method} {path}: a JSON error, got {answer}");
        let (status, _) = send(state, method, &path, Some("not-a-key"), &body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} with a wrong key");

        let (status, answer) = send(state, method, &path, Some(KEY_A), &body).await;
        if ADMIN_ONLY.contains(&path.as_str()) {
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path} with a client key");
            let (status, answer) = send(state, method, &path, Some(ADMIN), &body).await;
            assert!(
                status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                "{method} {path} as admin: {status} {answer}"
            );
        } else {
            assert!(
                status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                "{method} {path} with a client key: {status} {answer}"
            );
        }
    }
    // The admin token is not a client key: proxied calls are billed to a tenant.
    let (status, _) =
        send(state, "POST", "/v1/chat/completions", Some(ADMIN), &chat("sim-small")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_client_key_reads_and_acts_on_its_own_tenant_only() {
    let (gateway, _sim) = gateway().await;
    let state = &gateway.state;
    let mut ids = Vec::new();
    for key in [KEY_A, KEY_A, KEY_B] {
        let request = Request::post("/v1/chat/completions")
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json")
            .body(Body::from(chat("sim-small")))
            .unwrap();
        let response = router(state.clone()).oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        ids.push(response.headers()["x-request-id"].to_str().unwrap().to_owned());
    }
    gateway.records().await;

    // Usage: a client key gets its own tenant's calls, and is refused another's.
    let requests_in = |answer: &Value| -> u64 {
        answer["rows"].as_array().unwrap().iter().map(|row| row["count"].as_u64().unwrap()).sum()
    };
    let (status, answer) = send(state, "GET", "/api/usage?group_by=tenant", Some(KEY_A), "").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(requests_in(&answer), 2);
    assert!(answer["rows"].as_array().unwrap().iter().all(|row| row["group"] == "team-a"));
    let (status, answer) = send(state, "GET", "/api/usage?tenant=team-b", Some(KEY_A), "").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("own tenant"));
    // The admin reads every tenant, or the one it names (today a client key's 401).
    let (_, answer) = send(state, "GET", "/api/usage?group_by=tenant", Some(ADMIN), "").await;
    assert_eq!(requests_in(&answer), 3);
    let (_, answer) = send(state, "GET", "/api/usage?tenant=team-b", Some(ADMIN), "").await;
    assert_eq!(requests_in(&answer), 1);
    let (status, _) = send(state, "GET", "/api/forecast?tenant=team-b", Some(KEY_A), "").await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Live statistics: only the caller's tenant series.
    let (status, answer) = send(state, "GET", "/api/stats", Some(KEY_B), "").await;
    assert_eq!(status, StatusCode::OK);
    let series = answer["series"].as_array().unwrap();
    assert!(!series.is_empty());
    assert!(series.iter().all(|s| s["label"] == "team-b"), "{series:?}");

    // Feedback: another tenant's request reads as unknown; the owner's is idempotent.
    let feedback = |id: &str, value: bool| {
        json!({"request_id": id, "metric": "correct", "value": value}).to_string()
    };
    let (status, _) =
        send(state, "POST", "/v1/feedback", Some(KEY_B), &feedback(&ids[0], true)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for value in [true, true, false] {
        let (status, answer) =
            send(state, "POST", "/v1/feedback", Some(KEY_A), &feedback(&ids[0], value)).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    let record = gateway.record(&ids[0]).await;
    assert_eq!(record.feedback.len(), 1, "one value per metric");
    assert_eq!(record.feedback[0].value.as_f64(), 0.0, "the latest wins");

    // Ingest: a client key's records are its tenant's whatever the item says.
    let item = json!([{"model": "gpt-4o", "provider": "openai", "tenant": "team-b", "usage": {"input_tokens": 1, "output_tokens": 1}}]);
    let (status, answer) = send(state, "POST", "/v1/records", Some(KEY_A), &item.to_string()).await;
    assert_eq!((status, answer["accepted"].as_u64()), (StatusCode::OK, Some(1)), "{answer}");
    let ingested = gateway.records().await;
    let external = ingested.iter().find(|r| r.endpoint == llmopt_core::Endpoint::External).unwrap();
    assert_eq!(external.tenant.as_ref().map(|t| t.as_str()), Some("team-a"));
}

#[tokio::test]
async fn bad_inputs_get_a_json_400_that_says_the_limit() {
    let (gateway, _sim) = gateway().await;
    let state = &gateway.state;
    let cases: &[(&str, &str, &str, &str)] = &[
        ("GET", "/api/usage?window_ms=1", "", "at most 10000"),
        ("GET", "/api/usage?group_by=colour", "", "group_by"),
        ("GET", "/api/usage?unknown=1", "", "unknown"),
        ("GET", "/api/forecast?window_ms=1", "", "at most 10000"),
        ("GET", "/api/forecast?horizon=0", "", "horizon"),
        ("GET", "/api/forecast?window_ms=-5", "", "window_ms"),
        ("GET", "/api/audit?limit=1000000", "", "limit"),
        ("POST", "/v1/feedback", "{\"request_id\": 1}", "invalid feedback"),
        ("POST", "/v1/records", "[1, ", "invalid JSON array"),
        ("PUT", "/api/policy", "{\"rules\": 3}", "policy"),
        ("PUT", "/api/policy/flags/f", "[]", "flag"),
        ("POST", "/api/experiments/exp-1/conclude", "{\"arm\": 5}", ""),
        ("POST", "/v1/chat/completions", "{\"model\": ", "JSON"),
    ];
    for (method, path, body, says) in cases {
        let key = if path.starts_with("/api/policy")
            || path.starts_with("/api/audit")
            || path.starts_with("/api/experiments")
        {
            ADMIN
        } else {
            KEY_A
        };
        let (status, answer) = send(state, method, path, Some(key), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {path}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{method} {path}: `{message}` should say `{says}`");
    }
}

#[tokio::test]
async fn experiments_can_be_listed_shown_stopped_and_concluded_by_the_admin() {
    let (gateway, _sim) = gateway().await;
    let state = &gateway.state;
    let engine = state.optimizer().engine().clone();
    for id in ["exp-stop", "exp-conclude"] {
        let spec = ExperimentSpec::ab(
            id,
            PolicyChange::default(),
            PolicyChange { model: Some("sim-large".into()), ..PolicyChange::default() },
            Metric::CostUsd,
            86_400_000,
        );
        let mut spec = spec;
        spec.scope.tenant = Some(id.to_owned());
        engine.create(spec).unwrap();
        engine.start(id).unwrap();
    }
    let (status, answer) = send(state, "GET", "/api/experiments", Some(ADMIN), "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["experiments"].as_array().unwrap().len(), 2);
    let (status, answer) = send(state, "GET", "/api/experiments/exp-stop", Some(ADMIN), "").await;
    assert_eq!((status, answer["status"]["state"].as_str()), (StatusCode::OK, Some("running")));
    let (status, answer) = send(
        state,
        "POST",
        "/api/experiments/exp-stop/stop",
        Some(ADMIN),
        "{\"reason\": \"test\"}",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"]["state"], "stopped");
    let (status, _) = send(
        state,
        "POST",
        "/api/experiments/exp-conclude/conclude",
        Some(ADMIN),
        "{\"arm\": \"nope\"}",
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "an unknown arm");
    let (status, answer) = send(
        state,
        "POST",
        "/api/experiments/exp-conclude/conclude",
        Some(ADMIN),
        "{\"arm\": null, \"reason\": \"keep control\"}",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, _) = send(state, "GET", "/api/experiments/missing", Some(ADMIN), "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) =
        send(state, "POST", "/api/experiments/exp-stop/approve", Some(ADMIN), "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing awaits approval");
    let (status, answer) = send(state, "GET", "/api/audit?limit=10", Some(ADMIN), "").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

thread_local! {
    /// Set on the test's thread to make the clock panic there (and nowhere else).
    static PANIC_ON_THIS_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// The system clock, except that it panics on a thread that asked for it.
#[derive(Debug)]
struct PanickingClock;

impl Clock for PanickingClock {
    fn now_ms(&self) -> i64 {
        assert!(!PANIC_ON_THIS_THREAD.with(Cell::get), "injected panic");
        SystemClock.now_ms()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_panicking_handler_answers_500_in_the_callers_shape_and_the_gateway_keeps_serving() {
    let sim = sim_server(0.0).await;
    let config = from_toml_str(&config_text(&sim, "")).unwrap();
    let state = AppState::build(GatewayInit {
        config,
        stores: Stores::memory(),
        clock: Arc::new(PanickingClock),
        secrets: secrets(),
        config_source: None,
    })
    .unwrap();
    PANIC_ON_THIS_THREAD.with(|flag| flag.set(true));
    let (openai_status, openai) =
        send(&state, "POST", "/v1/chat/completions", None, &chat("sim-small")).await;
    let (anthropic_status, anthropic) =
        send(&state, "POST", "/v1/messages", None, &chat("sim-large")).await;
    PANIC_ON_THIS_THREAD.with(|flag| flag.set(false));
    assert_eq!(openai_status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(openai["error"]["type"], "server_error", "{openai}");
    assert_eq!(anthropic_status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        (anthropic["type"].as_str(), anthropic["error"]["type"].as_str()),
        (Some("error"), Some("api_error")),
        "{anthropic}"
    );
    // Still serving, and the panics are counted.
    let (status, _) = send(&state, "POST", "/v1/chat/completions", None, &chat("sim-small")).await;
    assert_eq!(status, StatusCode::OK);
    let (_, metrics) = send(&state, "GET", "/metrics", None, "").await;
    assert!(metrics.as_str().unwrap().contains("llmopt_handler_panics_total 2"), "{metrics}");
}

#[tokio::test]
async fn client_chosen_model_names_cannot_grow_the_metrics_without_bound() {
    let sim = sim_server(0.0).await;
    let gateway = TestGateway::from_toml(&config_text(&sim, ""));
    let state = &gateway.state;
    let extra = llmopt_gateway::metrics::MAX_MODEL_SERIES + 50;
    for index in 0..extra {
        // No route serves these models: each call is refused and labelled with its model.
        let (status, _) =
            send(state, "POST", "/v1/chat/completions", None, &chat(&format!("made-up-{index}")))
                .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let (_, metrics) = send(state, "GET", "/metrics", None, "").await;
    let text = metrics.as_str().unwrap();
    let named =
        (0..extra).filter(|index| text.contains(&format!("model=\"made-up-{index}\""))).count();
    assert!(named <= llmopt_gateway::metrics::MAX_MODEL_SERIES, "{named} model series");
    assert!(text.contains("model=\"other\""), "the rest are counted as other");
}

#[tokio::test]
async fn repeated_feedback_counts_once_in_an_experiment() {
    let (gateway, _sim) = gateway().await;
    let state = &gateway.state;
    let engine = state.optimizer().engine().clone();
    let mut spec = ExperimentSpec::ab(
        "exp-feedback",
        PolicyChange::default(),
        PolicyChange { response_cache: Some(false), ..PolicyChange::default() },
        Metric::CostUsd,
        86_400_000,
    );
    spec.scope.tenant = Some("team-a".to_owned());
    spec.guardrails = vec![Guardrail {
        metric: Metric::Quality { name: "correct".into() },
        max_degradation: Degradation::Absolute(0.1),
    }];
    engine.create(spec).unwrap();
    engine.start("exp-feedback").unwrap();
    let request = Request::post("/v1/chat/completions")
        .header("authorization", format!("Bearer {KEY_A}"))
        .header("content-type", "application/json")
        .body(Body::from(chat("sim-small")))
        .unwrap();
    let response = router(state.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().contains_key("x-llmopt-experiment-arm"), "assigned to an arm");
    let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    for value in [true, true, false] {
        let body = json!({"request_id": id, "metric": "correct", "value": value}).to_string();
        let (status, answer) = send(state, "POST", "/v1/feedback", Some(KEY_A), &body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    let (_, experiment) =
        send(state, "GET", "/api/experiments/exp-feedback", Some(ADMIN), "").await;
    let counted: u64 = experiment["arms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|arm| arm["feedback_events"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, 1, "one observation per request and metric: {experiment}");
}
