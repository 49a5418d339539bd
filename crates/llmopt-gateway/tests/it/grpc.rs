//! The gRPC API (feature `grpc`): the same access rules as the JSON API, a cycle on demand, and
//! live statistics streamed per caller as `/api/stats` gives them.

use futures::StreamExt;
use llmopt_gateway::{
    auth::hash_key,
    grpc::{
        pb::{
            RunOptimizationRequest, StreamMetricsRequest,
            optimizer_service_client::OptimizerServiceClient,
        },
        serve,
    },
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tonic::{Code, Request, transport::Channel};

use crate::support::{RunningGateway, TestGateway, client, config_text, sim_server};

const KEY_A: &str = "key-of-team-a";
const KEY_B: &str = "key-of-team-b";
const ADMIN: &str = "admin-secret";

fn with_key<T>(message: T, key: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(key) = key {
        request.metadata_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
    }
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_api_runs_cycles_for_the_admin_and_streams_each_caller_its_statistics() {
    let sim = sim_server(0.0).await;
    let auth = format!(
        "[auth]\nkeys = [{{ sha256 = \"{}\", tenant = \"team-a\" }}, {{ sha256 = \"{}\", tenant = \"team-b\" }}]\nadmin_token_env = \"TEST_ADMIN_TOKEN\"\n",
        hash_key(KEY_A),
        hash_key(KEY_B)
    );
    let running = RunningGateway::start(TestGateway::from_toml(&config_text(&sim, &auth))).await;
    let http = client();
    for key in [KEY_A, KEY_A, KEY_B] {
        let response = http
            .post(running.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&json!({"model": "sim-small", "messages": [{"role": "user", "content": key}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(running.gateway.state.clone(), listener, async {
        let _ = stopped.await;
    }));
    let channel =
        Channel::from_shared(format!("http://{address}")).unwrap().connect().await.unwrap();
    let mut grpc = OptimizerServiceClient::new(channel);

    // RunOptimization: the admin token only.
    let refused = grpc.run_optimization(with_key(RunOptimizationRequest {}, None)).await;
    assert_eq!(refused.unwrap_err().code(), Code::Unauthenticated);
    let refused = grpc.run_optimization(with_key(RunOptimizationRequest {}, Some(KEY_A))).await;
    assert_eq!(refused.unwrap_err().code(), Code::PermissionDenied);
    let cycle = grpc
        .run_optimization(with_key(RunOptimizationRequest {}, Some(ADMIN)))
        .await
        .unwrap()
        .into_inner();
    let report: Value = serde_json::from_str(&cycle.report_json).unwrap();
    assert_eq!(report["proposals"].as_array().unwrap().len() as u32, cycle.proposals);
    assert_eq!(report["started"].as_array().unwrap().len() as u32, cycle.experiments_started);

    // StreamMetrics: a client key gets its tenant's series, the admin every series.
    let bad =
        grpc.stream_metrics(with_key(StreamMetricsRequest { interval_ms: 5 }, Some(KEY_A))).await;
    assert_eq!(bad.unwrap_err().code(), Code::InvalidArgument);
    let refused =
        grpc.stream_metrics(with_key(StreamMetricsRequest { interval_ms: 0 }, None)).await;
    assert_eq!(refused.unwrap_err().code(), Code::Unauthenticated);
    let mut tenant = grpc
        .stream_metrics(with_key(StreamMetricsRequest { interval_ms: 200 }, Some(KEY_A)))
        .await
        .unwrap()
        .into_inner();
    for _ in 0..2 {
        let snapshot = tenant.next().await.unwrap().unwrap();
        assert!(!snapshot.windows.is_empty());
        assert!(snapshot.windows.iter().all(|w| w.dimension == "tenant" && w.label == "team-a"));
        assert_eq!(snapshot.windows.iter().map(|w| w.count).sum::<u64>(), 2);
    }
    let mut admin = grpc
        .stream_metrics(with_key(StreamMetricsRequest { interval_ms: 0 }, Some(ADMIN)))
        .await
        .unwrap()
        .into_inner();
    let snapshot = admin.next().await.unwrap().unwrap();
    let total: u64 =
        snapshot.windows.iter().filter(|w| w.dimension == "total").map(|w| w.count).sum();
    assert_eq!(total, 3);
    assert!(snapshot.windows.iter().all(|w| w.latency_p99_ms > 0.0), "measured latencies");

    drop((tenant, admin, grpc));
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    running.stop().await;
}
