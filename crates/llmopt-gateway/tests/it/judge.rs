//! The judge end to end: calls answered by the simulated models are graded by the simulated
//! judge through the gateway's own providers, the verdicts join the graded calls as quality
//! feedback and match the real labels, and the judge's calls are recorded as the optimizer's.

use std::{sync::Arc, time::Duration};

use llmopt_core::{FeedbackValue, JUDGE_TAG, RequestRecord};
use llmopt_llm::sim::{QualityLabels, SimConfig, SimEngine, SimModel, SimServer};
use serde_json::{Value, json};

use crate::support::{RunningGateway, TestGateway, client, config_text, sim_server};

const JUDGED: &str = r#"
[judge]
model = "sim-judge"
share = 1.0
other_share = 1.0

[pricing]
file = "PRICES"
"#;

const PRICES: &str = r#"
[models."sim-small"]
provider = "openai"
input = 1.0
output = 2.0
[models."sim-large"]
provider = "anthropic"
input = 3.0
output = 15.0
[models."sim-judge"]
provider = "openai"
input = 0.5
output = 1.5
"#;

/// The judge's verdict on `id`, once both the graded record and its feedback are stored.
async fn verdict(gateway: &RunningGateway, id: &str) -> (bool, Vec<RequestRecord>) {
    let wait = async {
        loop {
            let records = gateway.gateway.records().await;
            let graded = records.iter().find(|r| r.id.as_str() == id);
            if let Some(feedback) =
                graded.and_then(|r| r.feedback.iter().find(|f| f.metric == "correct"))
            {
                let FeedbackValue::Bool(value) = feedback.value else {
                    panic!("a boolean verdict")
                };
                let judge_calls = records
                    .into_iter()
                    .filter(|r| r.tags.get(JUDGE_TAG).is_some_and(|graded| graded == id))
                    .collect();
                break (value, judge_calls);
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), wait).await.expect("a verdict for the call")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_judge_grades_answers_as_the_labels_do_and_its_calls_are_charged_to_the_optimizer() {
    let sim = sim_server(0.0).await;
    let prices = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(prices.path(), PRICES).unwrap();
    let extra = JUDGED.replace("PRICES", &prices.path().display().to_string());
    let gateway = RunningGateway::start(TestGateway::from_toml(&config_text(&sim, &extra))).await;
    // A GSM8K prompt the strong model answered correctly and the weak one did not.
    let labels = QualityLabels::bundled();
    let prompt = labels
        .prompts()
        .iter()
        .find(|p| labels.get(p).is_some_and(|l| l.strong_correct && !l.weak_correct))
        .expect("a prompt that separates the models")
        .clone();
    let http = client();
    let send = async |path: &str, body: Value| -> String {
        let response = http
            .post(gateway.url(path))
            .header("authorization", "Bearer anything")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
        response.bytes().await.unwrap();
        id
    };
    // The weak model, whole answer, OpenAI protocol.
    let weak = send(
        "/v1/chat/completions",
        json!({"model": "sim-small", "temperature": 0,
               "messages": [{"role": "user", "content": prompt}]}),
    )
    .await;
    // The strong model, streamed, Anthropic protocol.
    let strong = send(
        "/v1/messages",
        json!({"model": "sim-large", "max_tokens": 2048, "stream": true,
               "messages": [{"role": "user", "content": prompt}]}),
    )
    .await;
    // The strong model cut off by a small max_tokens: graded incorrect, as a judge grades a
    // truncated answer.
    let cut = send(
        "/v1/messages",
        json!({"model": "sim-large", "max_tokens": 8,
               "messages": [{"role": "user", "content": prompt}]}),
    )
    .await;

    let (weak_verdict, weak_judge) = verdict(&gateway, &weak).await;
    let (strong_verdict, strong_judge) = verdict(&gateway, &strong).await;
    let (cut_verdict, _) = verdict(&gateway, &cut).await;
    assert!(!weak_verdict, "the weak model's answer is wrong by the labels");
    assert!(strong_verdict, "the strong model's answer is right by the labels");
    assert!(!cut_verdict, "a cut-off answer is not correct");

    // Each grading is one recorded call of the judge model, billed to the optimizer.
    for judge_calls in [&weak_judge, &strong_judge] {
        assert_eq!(judge_calls.len(), 1);
        let call = &judge_calls[0];
        assert_eq!(call.served_model.as_str(), "sim-judge");
        assert_eq!(call.tenant.as_ref().map(|t| t.as_str()), Some("llmopt-optimizer"));
        assert!(call.cost.is_some_and(|c| c.0 > 0), "the judge's call is priced");
        assert!(call.feedback.is_empty(), "a judge call is never itself graded");
    }
    // A grading's outcome is counted once its verdict is joined, so the last count may land
    // just after the verdict became visible: wait for it (bounded) rather than read once.
    let counted = async {
        loop {
            let metrics =
                http.get(gateway.url("/metrics")).send().await.unwrap().text().await.unwrap();
            if metrics.contains(r#"llmopt_judge_calls_total{outcome="incorrect"} 2"#) {
                break metrics;
            }
            tokio::task::yield_now().await;
        }
    };
    let metrics = tokio::time::timeout(Duration::from_secs(20), counted)
        .await
        .expect("the judge's outcomes counted");
    assert!(metrics.contains(r#"llmopt_judge_calls_total{outcome="correct"} 1"#), "{metrics}");
    gateway.stop().await;
}

#[test]
fn a_judge_model_without_a_route_is_refused() {
    let text = "[routes.a]\nmodels = [\"gpt-4o\"]\nprovider = \"p\"\n[providers.p]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:1\"\n[judge]\nmodel = \"judge-x\"\n";
    let error = llmopt_gateway::config::from_toml_str(text).unwrap_err().to_string();
    assert!(error.contains("judge.model `judge-x` is served by no route"), "{error}");
    let text = "[judge]\nmodel = \"sim-judge\"\nshare = 2\n";
    let error = llmopt_gateway::config::from_toml_str(text).unwrap_err().to_string();
    assert!(error.contains("judge.share must be between 0 and 1"), "{error}");
}

/// Routing learned from the judge alone: no client sends feedback. Requests tagged `easy` are
/// GSM8K prompts both simulated models answer correctly, `hard` ones only the strong model
/// does. The judge grades both arms; routing is adopted for `easy` and not for `hard`, acts on
/// the request path with its holdout, and an admin rolls it back through the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_is_learned_from_the_judges_verdicts_alone() {
    // The strong model under a name of its own, served over the OpenAI protocol like sim-small.
    let models = vec![
        SimModel { names: vec!["oai-large".into()], ..SimModel::large() },
        SimModel::small(),
        SimModel::judge(),
    ];
    let engine = SimEngine::new(SimConfig { time_scale: 0.0, models, ..SimConfig::default() });
    let sim = SimServer::start_local(Arc::new(engine)).await.unwrap();
    let prices = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        prices.path(),
        format!(
            "{PRICES}\n[models.\"oai-large\"]\nprovider = \"openai\"\ninput = 3.0\noutput = 15.0\n"
        ),
    )
    .unwrap();
    let extra = format!(
        r#"
[routes.large]
models = ["oai-large"]
provider = "oai"
[cache]
enabled = false
[auth]
admin_token_env = "TEST_ADMIN_TOKEN"
[judge]
model = "sim-judge"
share = 1.0
other_share = 0.25
max_concurrent = 64
[pricing]
file = "{prices}"
[optimizer]
mode = "auto"
lookback_ms = 86400000
max_running_experiments = 4
min_samples_per_arm = 200
holdout_share = 0.2
[optimizer.strategies]
response_cache = false
prompt_cache = false
max_tokens_cap = false
timeout_hedge = false
batch_pricing = false
[optimizer.settings]
min_requests = 100
workload_tag = "task"
routing_pairs = [["oai-large", "sim-small"]]
[optimizer.workloads]
enabled = false
"#,
        prices = prices.path().display()
    );
    let gateway = RunningGateway::start(TestGateway::from_toml(&config_text(&sim, &extra))).await;
    let labels = QualityLabels::bundled();
    let pick = |weak: bool| -> Vec<String> {
        labels
            .prompts()
            .iter()
            .filter(|p| labels.get(p).is_some_and(|l| l.strong_correct && l.weak_correct == weak))
            .cloned()
            .collect()
    };
    let (easy, hard) = (pick(true), pick(false));
    assert!(easy.len() >= 20 && hard.len() >= 20, "{} easy, {} hard", easy.len(), hard.len());
    let http = client();
    let mut sent = 0usize;
    // `count` calls to `oai-large`, alternating easy and hard; returns (task, served model, in
    // an experiment arm).
    let mut traffic = async |count: usize| -> Vec<(&'static str, String, bool)> {
        let calls = (0..count).map(|_| {
            sent += 1;
            let (task, prompts) =
                if sent.is_multiple_of(2) { ("easy", &easy) } else { ("hard", &hard) };
            let prompt = prompts[sent / 2 % prompts.len()].clone();
            let http = http.clone();
            let url = gateway.url("/v1/chat/completions");
            async move {
                let response = http
                    .post(url)
                    .header("x-llmopt-tags", format!("task={task}"))
                    .json(&json!({"model": "oai-large", "temperature": 0,
                                  "messages": [{"role": "user", "content": prompt}]}))
                    .send()
                    .await
                    .unwrap();
                let status = response.status();
                assert_eq!(status, 200, "{}", response.text().await.unwrap());
                let served =
                    response.headers()["x-llmopt-served-model"].to_str().unwrap().to_owned();
                let in_experiment = response.headers().contains_key("x-llmopt-experiment-arm");
                response.bytes().await.unwrap();
                (task, served, in_experiment)
            }
        });
        futures::future::join_all(calls).await
    };
    let optimize = async || -> Value {
        // The judge grades in the background: let its gradings land before the cycle reads.
        let state = gateway.gateway.state.clone();
        let wait = async {
            while state.judge_slots().in_use() > 0 {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(20), wait).await.expect("the judge keeps up");
        let response = client()
            .post(gateway.url("/api/optimize"))
            .bearer_auth("admin-secret")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    };

    traffic(400).await;
    let first = optimize().await;
    assert_eq!(first["started"].as_array().unwrap().len(), 2, "one experiment per task: {first:#}");
    let mut adopted = Vec::new();
    for _ in 0..20 {
        traffic(500).await;
        let report = optimize().await;
        adopted.extend(
            report["adopted"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()),
        );
        if !adopted.is_empty() {
            break;
        }
    }
    assert_eq!(adopted.len(), 1, "routing adopted for one task");
    let id = adopted[0].clone();
    let (_, adoptions) = {
        let response = client()
            .get(gateway.url("/api/adoptions"))
            .bearer_auth("admin-secret")
            .send()
            .await
            .unwrap();
        ((), response.json::<Value>().await.unwrap())
    };
    let adoption = adoptions["adoptions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["experiment_id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(adoption["scope"]["tag"], json!(["task", "easy"]), "{adoption:#}");

    // On the request path: easy calls go to the weak model but for the holdout; hard ones never.
    // (`hard` may still be under test: its calls reach the weak model only as its experiment's
    // treatment, never by an adoption.)
    let served = traffic(400).await;
    let weak = |task: &str| {
        served
            .iter()
            .filter(|(t, s, in_experiment)| *t == task && s == "sim-small" && !in_experiment)
            .count()
    };
    assert_eq!(weak("hard"), 0);
    assert!(
        (120..=190).contains(&weak("easy")),
        "{} of 200 easy calls routed (20 % held out)",
        weak("easy")
    );

    // Rolled back by the admin: everything is served as asked again.
    let response = client()
        .post(gateway.url(&format!("/api/adoptions/{id}/rollback")))
        .bearer_auth("admin-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let served = traffic(100).await;
    assert!(served.iter().all(|(_, s, in_experiment)| s == "oai-large" || *in_experiment));
    let metrics = client()
        .get(gateway.url("/metrics"))
        .bearer_auth("admin-secret")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("llmopt_judge_calls_total{outcome=\"incorrect\"}"),
        "the weak arm of `hard` was graded wrong"
    );
    gateway.stop().await;
}
