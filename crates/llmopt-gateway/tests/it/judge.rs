//! The judge end to end: calls answered by the simulated models are graded by the simulated
//! judge through the gateway's own providers, the verdicts join the graded calls as quality
//! feedback and match the real labels, and the judge's calls are recorded as the optimizer's.

use std::time::Duration;

use llmopt_core::{FeedbackValue, JUDGE_TAG, RequestRecord};
use llmopt_llm::sim::QualityLabels;
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
