//! Every kind of change the optimizer can adopt reaches the request path: for each field of
//! `PolicyChange`, the rules an adoption writes (`rules_for`) change what a real call through
//! the gateway does, observed on the answer and its record. The field list is destructured
//! exhaustively, so a new field without a check here does not compile.

use std::time::Duration;

use llmopt_core::{ErrorKind, HEDGED_TAG, Status};
use llmopt_experiments::{PolicyChange, PromptCacheTtl};
use llmopt_gateway::routing::RouteInput;
use llmopt_optimizer::{FeatureFlag, Policy, Scope, cycle::rules_for};
use serde_json::{Value, json};

use crate::support::{
    RunningGateway, SIM_PRICES_WITH_CACHE as PRICES, TestGateway, client, config_text, sim_server,
};

/// Puts in force the rules an adoption of `change` for `model` writes, as the cycle does.
fn adopt(gateway: &TestGateway, model: &str, change: &PolicyChange) {
    let scope = Scope { model: Some(model.to_owned()), ..Scope::default() };
    let rules = rules_for("exp-test", &scope, change, 7_200);
    let mut policy = Policy::default();
    policy.flags.insert(
        "exp-test".to_owned(),
        FeatureFlag { enabled: true, rollout_percent: 100.0, conditions: Default::default() },
    );
    policy.rules = rules;
    gateway.state.optimizer().policy().replace(policy, "test", 0).unwrap();
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
}

async fn chat(gateway: &RunningGateway, body: Value) -> (reqwest::StatusCode, String, String) {
    let response =
        client().post(gateway.url("/v1/chat/completions")).json(&body).send().await.unwrap();
    let status = response.status();
    let (id, cache) = (header(&response, "x-request-id"), header(&response, "x-llmopt-cache"));
    let served = header(&response, "x-llmopt-served-model");
    let _ = response.bytes().await;
    (status, id, format!("{cache}/{served}"))
}

fn ask(model: &str, text: &str) -> Value {
    json!({"model": model, "temperature": 0, "messages": [{"role": "user", "content": text}]})
}

async fn started(
    time_scale: f64,
) -> (RunningGateway, llmopt_llm::sim::SimServer, tempfile::NamedTempFile) {
    let sim = sim_server(time_scale).await;
    let prices = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(prices.path(), PRICES).unwrap();
    let extra = format!(
        "[pricing]\nfile = \"{}\"\n[cache]\nenabled = false\n[routes.large]\nmodels = [\"large\"]\nprovider = \"oai\"\n",
        prices.path().display()
    );
    let gateway = RunningGateway::start(TestGateway::from_toml(&config_text(&sim, &extra))).await;
    (gateway, sim, prices)
}

#[tokio::test]
async fn every_policy_change_field_reaches_the_request_path() {
    // The list of fields: a new one must get its check below.
    let PolicyChange {
        model: _,
        response_cache: _,
        max_tokens_cap: _,
        timeout_ms: _,
        hedge_after_ms: _,
        prompt_cache: _,
    } = PolicyChange::default();

    // `model`: served by the other model (`large` is another name of `sim-large`, which the
    // simulated provider reports), priced as it.
    let (gateway, _sim, _prices) = started(0.0).await;
    let (status, id, outcome) = chat(&gateway, ask("sim-small", "route me")).await;
    assert_eq!((status.as_u16(), outcome.as_str()), (200, "bypass/sim-small"));
    let before = gateway.gateway.record(&id).await;
    assert!(!before.tags.contains_key(llmopt_core::APPLIED_TAG), "no adoption yet");
    assert!(!before.sampled, "temperature 0 is deterministic");
    adopt(
        &gateway.gateway,
        "sim-small",
        &PolicyChange { model: Some("large".into()), ..Default::default() },
    );
    let (status, id, outcome) = chat(&gateway, ask("sim-small", "route me")).await;
    assert_eq!((status.as_u16(), outcome.as_str()), (200, "bypass/sim-large"));
    let routed = gateway.gateway.record(&id).await;
    assert_eq!(routed.served_model.as_str(), "sim-large");
    assert!(routed.cost.unwrap() > before.cost.unwrap(), "priced as the model that served it");
    assert_eq!(routed.tags.get(llmopt_core::APPLIED_TAG).map(String::as_str), Some("exp-test"));

    // `response_cache`: the cache is off in the configuration; the adopted rule turns it on for
    // the scope, with the TTL the proposal simulated (7,200 s here, not `cache.ttl_s`).
    adopt(
        &gateway.gateway,
        "sim-small",
        &PolicyChange { response_cache: Some(true), ..Default::default() },
    );
    let runtime = gateway.gateway.state.runtime();
    let tags = llmopt_core::Tags::new();
    let input = RouteInput {
        protocol: llmopt_core::usage::Protocol::OpenAi,
        model: "sim-small",
        tenant: None,
        tags: &tags,
        request_id: "r-1",
        workload: None,
    };
    let decision = gateway.gateway.state.decide(&runtime, &input).unwrap();
    assert!(decision.cache);
    assert_eq!(decision.cache_ttl, Some(Duration::from_secs(7_200)));
    let (_, _, first) = chat(&gateway, ask("sim-small", "cache me")).await;
    let (_, _, second) = chat(&gateway, ask("sim-small", "cache me")).await;
    assert_eq!((first.as_str(), second.as_str()), ("miss/sim-small", "hit/sim-small"));
    let (_, _, elsewhere) = chat(&gateway, ask("sim-medium", "cache me")).await;
    assert!(elsewhere.starts_with("bypass"), "outside the scope: {elsewhere}");

    // `max_tokens_cap`: a request that set no limit gets the cap, and the answer stops there.
    adopt(
        &gateway.gateway,
        "sim-small",
        &PolicyChange { max_tokens_cap: Some(3), ..Default::default() },
    );
    let (status, id, _) = chat(&gateway, ask("sim-small", "write a long essay")).await;
    assert_eq!(status, 200);
    let capped = gateway.gateway.record(&id).await;
    assert_eq!(capped.max_tokens, Some(3));
    assert!(capped.usage.unwrap().output_tokens <= 3);
    assert!(capped.truncated(), "stop reason {:?}", capped.stop_reason);
    gateway.stop().await;

    // `timeout_ms` and `hedge_after_ms` need an upstream that takes time: real-time latency.
    let (gateway, _sim, _prices) = started(1.0).await;
    adopt(
        &gateway.gateway,
        "sim-small",
        &PolicyChange { timeout_ms: Some(1), ..Default::default() },
    );
    let (status, id, _) = chat(&gateway, ask("sim-small", "too slow")).await;
    assert_eq!(status, 504);
    assert_eq!(gateway.gateway.record(&id).await.status, Status::Error(ErrorKind::Timeout));

    // `hedge_after_ms`: the first attempt has not answered after 1 ms, a second is sent; the
    // record says so and carries both attempts' cost.
    adopt(
        &gateway.gateway,
        "sim-small",
        &PolicyChange { hedge_after_ms: Some(1), ..Default::default() },
    );
    let (status, id, _) = chat(&gateway, ask("sim-small", "hedge me")).await;
    assert_eq!(status, 200);
    let hedged = gateway.gateway.record(&id).await;
    assert_eq!(hedged.tags.get(HEDGED_TAG).map(String::as_str), Some("1"));
    let usage = hedged.usage.unwrap();
    let one_call = usage.input_tokens as i128 * 1_000_000 + usage.output_tokens as i128 * 2_000_000;
    assert_eq!(hedged.cost.unwrap().picos(), 2 * one_call, "the second attempt is charged");
    gateway.stop().await;

    // `prompt_cache`: an Anthropic request with a long shared system prompt. Without the
    // change the provider caches nothing; with it the gateway marks the breakpoint, the first
    // call writes the prefix at the 1-hour price and the next one reads it.
    let (gateway, _sim, _prices) = started(0.0).await;
    let system = "You grade answers to questions about chemistry. ".repeat(200);
    let messages = |question: &str| {
        json!({"model": "sim-large", "max_tokens": 20, "system": system,
               "messages": [{"role": "user", "content": question}]})
    };
    let send = |body: Value| {
        let url = gateway.url("/v1/messages");
        async move {
            let response = client()
                .post(url)
                .header("anthropic-version", "2023-06-01")
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            header(&response, "x-request-id")
        }
    };
    for question in ["q1", "q2"] {
        let usage = gateway.gateway.record(&send(messages(question)).await).await.usage.unwrap();
        assert_eq!(
            usage.cache_read_tokens + usage.cache_write_5m_tokens + usage.cache_write_1h_tokens,
            0
        );
    }
    let hour = PromptCacheTtl::OneHour;
    adopt(
        &gateway.gateway,
        "sim-large",
        &PolicyChange { prompt_cache: Some(hour), ..Default::default() },
    );
    let write = gateway.gateway.record(&send(messages("q3")).await).await;
    let read = gateway.gateway.record(&send(messages("q4")).await).await;
    let (write, read) = (write.usage.unwrap(), read.usage.unwrap());
    assert!(write.cache_write_1h_tokens > 1_000, "{write:?}");
    assert!(read.cache_read_tokens > 1_000 && read.cache_write_1h_tokens == 0, "{read:?}");
    let blocks =
        gateway.gateway.record(&send(messages("q5")).await).await.fingerprints.prefix_blocks;
    assert!(blocks.len() >= 4, "the prefix is fingerprinted on live traffic: {blocks:?}");
    gateway.stop().await;
}
