//! The dashboard's server side: `/ui` serves its embedded files without a key (they hold no
//! data), `/api/stream` is authenticated like the API and sends statistics every second and
//! the loop's events as they are written, and `/api/audit?newest=N` gives the log's tail.
//! The pages themselves are driven in a browser by the binary crate's `dashboard` test.

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use llmopt_core::{
    AuditEntry, Clock, MemoryExperimentStore, MemoryPolicyStore, MemoryRecordStore, PolicyStore,
    RecordStore, SystemClock,
};
use llmopt_gateway::{AppState, GatewayInit, Stores, auth::hash_key, config::from_toml_str};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

use crate::support::{RunningGateway, TestGateway, client, config_text, secrets, sim_server};

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

/// A gateway with two tenants and the admin token whose audit log the test can append to, as
/// the optimizer does.
async fn gateway() -> (RunningGateway, Arc<MemoryPolicyStore>, llmopt_llm::sim::SimServer) {
    let sim = sim_server(0.0).await;
    let config = from_toml_str(&config_text(&sim, &auth_section())).unwrap();
    let records = Arc::new(MemoryRecordStore::new());
    let policies = Arc::new(MemoryPolicyStore::new());
    let stores = Stores {
        records: records.clone() as Arc<dyn RecordStore>,
        experiments: Arc::new(MemoryExperimentStore::new()),
        policies: policies.clone() as Arc<dyn PolicyStore>,
        keys: Arc::new(llmopt_core::MemoryKeyStore::new()),
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let state = AppState::build(GatewayInit {
        config,
        stores,
        clock,
        secrets: secrets(),
        config_source: None,
    })
    .unwrap();
    let gateway = TestGateway { state, store: records, keys: Default::default() };
    (RunningGateway::start(gateway).await, policies, sim)
}

fn audit_entry(kind: &str, subject: &str) -> AuditEntry {
    AuditEntry {
        seq: 0,
        ts_ms: SystemClock.now_ms(),
        kind: kind.to_owned(),
        subject: subject.to_owned(),
        detail: json!({"reason": format!("{kind} in a test")}),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_files_are_served_without_a_key_and_the_data_still_needs_one() {
    let (running, _policies, _sim) = gateway().await;
    let http = client();
    for (path, content_type) in [
        ("/ui", "text/html; charset=utf-8"),
        ("/ui/", "text/html; charset=utf-8"),
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/app.css", "text/css; charset=utf-8"),
        ("/ui/vendor/uplot/uPlot.iife.min.js", "text/javascript; charset=utf-8"),
        ("/ui/vendor/uplot/LICENSE", "text/plain; charset=utf-8"),
    ] {
        let response = http.get(running.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers();
        assert_eq!(headers["content-type"], content_type, "{path}");
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(policy.contains("script-src 'self'") && policy.contains("connect-src 'self'"));
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert!(!response.bytes().await.unwrap().is_empty());
    }
    let missing = http.get(running.url("/ui/secrets.json")).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let body: Value = missing.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("/ui/secrets.json"));
    // The page's data is behind the API's keys as before.
    let stats = http.get(running.url("/api/stats")).send().await.unwrap();
    assert_eq!(stats.status(), StatusCode::UNAUTHORIZED);
    running.stop().await;
}

/// Connects to `/api/stream` with `token` in the query (as the browser does).
async fn connect(
    running: &RunningGateway,
    token: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let url = format!("ws://{}/api/stream?token={token}", running.addr);
    tokio_tungstenite::connect_async(url).await.expect("stream connects").0
}

/// The next text message, parsed; fails after `seconds`.
async fn next_message<S>(socket: &mut S, seconds: u64) -> Value
where
    S: futures::Stream<Item = Result<tungstenite::Message, tungstenite::Error>> + Unpin,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        let message = tokio::time::timeout_at(deadline, socket.next())
            .await
            .expect("a message in time")
            .expect("the stream stays open")
            .expect("a valid frame");
        if let tungstenite::Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

/// The next message of `kind`, skipping others.
async fn next_of<S>(socket: &mut S, kind: &str, seconds: u64) -> Value
where
    S: futures::Stream<Item = Result<tungstenite::Message, tungstenite::Error>> + Unpin,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let message = next_message(socket, left.as_secs().max(1)).await;
        if message["type"] == kind {
            return message;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_is_authenticated_like_the_api() {
    let (running, _policies, _sim) = gateway().await;
    let url = format!("ws://{}/api/stream", running.addr);
    for attempt in [url.clone(), format!("{url}?token=not-a-key")] {
        match tokio_tungstenite::connect_async(attempt.clone()).await {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{attempt}");
                let body: Value = serde_json::from_slice(response.body().as_deref().unwrap())
                    .expect("a JSON error");
                assert!(body["error"]["message"].is_string());
            }
            other => panic!("{attempt}: expected a 401, got {other:?}"),
        }
    }
    // The header works as well as the query (for clients that can set it).
    let mut request = url.as_str().into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {KEY_A}").parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("header key");
    assert_eq!(next_of(&mut socket, "stats", 5).await["type"], "stats");
    // A plain GET is not a WebSocket: a JSON 400, after authentication.
    let plain = client().get(running.url("/api/stream")).bearer_auth(KEY_A).send().await.unwrap();
    assert_eq!(plain.status(), StatusCode::BAD_REQUEST);
    let body: Value = plain.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("WebSocket"), "{body}");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_sends_each_caller_its_statistics_every_second_and_the_admin_the_loops_events() {
    let (running, policies, _sim) = gateway().await;
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
    let mut tenant = connect(&running, KEY_A).await;
    let mut admin = connect(&running, ADMIN).await;

    // Statistics every second: two in a row are taken about a second apart (loosely bounded
    // above: the machine may be busy; the hub's tick is one second).
    let first = next_of(&mut admin, "stats", 5).await;
    let second = next_of(&mut admin, "stats", 5).await;
    let gap =
        second["stats"]["now_ms"].as_i64().unwrap() - first["stats"]["now_ms"].as_i64().unwrap();
    assert!((500..=3_000).contains(&gap), "stats {gap} ms apart");
    let requests = |series: &Value| -> u64 {
        series["windows"].as_array().unwrap().iter().map(|w| w["count"].as_u64().unwrap()).sum()
    };
    let series = second["stats"]["series"].as_array().unwrap();
    let total =
        series.iter().find(|s| s["dimension"] == "total").expect("the admin sees the total");
    assert_eq!(requests(total), 3);
    // The same figures as /api/stats gives the same caller.
    let api: Value = http
        .get(running.url("/api/stats"))
        .bearer_auth(KEY_A)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let own = next_of(&mut tenant, "stats", 5).await;
    assert_eq!(own["stats"]["series"], api["series"], "a client key sees its tenant only");
    let only = own["stats"]["series"].as_array().unwrap();
    assert_eq!(only.len(), 1);
    assert_eq!((&only[0]["dimension"], &only[0]["label"]), (&json!("tenant"), &json!("team-a")));
    assert_eq!(requests(&only[0]), 2);

    // An audit entry written by the loop reaches the admin within about a second, and never
    // the client key.
    let seq = policies.append_audit(&audit_entry("rolled_back", "exp-7")).unwrap();
    let event = next_of(&mut admin, "event", 5).await;
    assert_eq!(event["seq"], seq);
    assert_eq!(event["kind"], "rolled_back");
    assert_eq!(event["subject"], "exp-7");
    assert_eq!(event["reason"], "rolled_back in a test");
    for _ in 0..3 {
        assert_eq!(next_message(&mut tenant, 5).await["type"], "stats");
    }

    // Two clients connected: the gauge says so.
    let metrics =
        http.get(running.url("/metrics")).bearer_auth(ADMIN).send().await.unwrap().text().await;
    let metrics = metrics.unwrap();
    assert!(metrics.contains("llmopt_stream_clients 2"), "{metrics}");
    assert!(metrics.contains("llmopt_stream_dropped_updates_total 0"), "{metrics}");
    running.stop().await;
}

#[tokio::test]
async fn the_audit_logs_newest_entries_come_oldest_first() {
    let sim = sim_server(0.0).await;
    let config = from_toml_str(&config_text(&sim, &auth_section())).unwrap();
    let policies = Arc::new(MemoryPolicyStore::new());
    let stores = Stores {
        records: Arc::new(MemoryRecordStore::new()),
        experiments: Arc::new(MemoryExperimentStore::new()),
        policies: policies.clone() as Arc<dyn PolicyStore>,
        keys: Arc::new(llmopt_core::MemoryKeyStore::new()),
    };
    let state = AppState::build(GatewayInit {
        config,
        stores,
        clock: Arc::new(SystemClock),
        secrets: secrets(),
        config_source: None,
    })
    .unwrap();
    let running = RunningGateway::start(TestGateway {
        state,
        store: Arc::new(MemoryRecordStore::new()),
        keys: Default::default(),
    })
    .await;
    let http = client();
    let get = |query: &str| {
        http.get(running.url(&format!("/api/audit?{query}"))).bearer_auth(ADMIN).send()
    };
    let seqs = |body: &Value| -> Vec<u64> {
        body["entries"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect()
    };
    let empty: Value = get("newest=5").await.unwrap().json().await.unwrap();
    assert_eq!(seqs(&empty), Vec::<u64>::new());
    let mut written = Vec::new();
    for index in 0..37 {
        written
            .push(policies.append_audit(&audit_entry("proposal", &format!("p{index}"))).unwrap());
    }
    for newest in [1, 5, 36, 37, 100] {
        let body: Value = get(&format!("newest={newest}")).await.unwrap().json().await.unwrap();
        let expected = written[written.len().saturating_sub(newest)..].to_vec();
        assert_eq!(seqs(&body), expected, "newest={newest}");
    }
    for bad in ["newest=0", "newest=1000000", "newest=3&after=2"] {
        let response = get(bad).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    running.stop().await;
}
