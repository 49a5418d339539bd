//! Two `serve` processes sharing PostgreSQL and Redis, as a two-replica deployment runs: an
//! answer cached through one is a hit through the other, both replicas' calls are in
//! `/api/usage`, a policy change made through one applies on the other within seconds, and when
//! the replica running the optimization cycles is killed the other takes over.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use llmopt_storage::test_engines::{TestPostgres, TestRedis};
use serde_json::{Value, json};

const ADMIN_TOKEN: &str = "fleet-admin-token";

/// One `serve` process; killed when dropped.
struct Replica {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Replica {
    fn start(dir: &Path, name: &str, postgres_url: &str, redis_url: &str) -> Replica {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                r#"
[server]
listen = "127.0.0.1:{port}"
threads = 1
shutdown_grace_ms = 500

[storage]
backend = "postgres"

[collector]
flush_interval_ms = 50

[auth]
admin_token_env = "FLEET_ADMIN_TOKEN"

[cache]
enabled = true
backend = "redis"

[optimizer]
schedule = "* * * * * *"

[providers.sim]
kind = "simulated"
seed = 42
time_scale = 0.0

[routes.sim]
models = ["sim-*"]
provider = "sim"
"#
            ),
        )
        .unwrap();
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_llm-auto-optimizer"))
            .args(["serve", "--config"])
            .arg(&config)
            .current_dir(dir)
            .env_clear()
            .env("LLMOPT_POSTGRES_URL", postgres_url)
            .env("LLMOPT_REDIS_URL", redis_url)
            .env("FLEET_ADMIN_TOKEN", ADMIN_TOKEN)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Replica { child, base: format!("http://127.0.0.1:{port}"), log }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().unwrap()
}

/// Polls `done` for up to `limit`; returns how long it took.
async fn within(limit: Duration, what: &str, mut done: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed() < limit, "{what} (after {limit:?})");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    start.elapsed()
}

async fn ask(replica: &Replica, content: &str) -> String {
    let body = json!({"model": "sim-small", "temperature": 0, "messages": [{"role": "user", "content": content}]});
    let response = client().post(replica.url("/v1/chat/completions")).json(&body).send().await;
    let response = response.unwrap_or_else(|error| panic!("{error}\n{}", replica.log()));
    assert_eq!(response.status(), 200, "{}", replica.log());
    let outcome = response.headers()["x-llmopt-cache"].to_str().unwrap().to_owned();
    response.bytes().await.unwrap();
    outcome
}

async fn get_json(replica: &Replica, path: &str) -> Value {
    let response = client().get(replica.url(path)).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert!(response.status().is_success(), "{path}: {}", response.status());
    response.json().await.unwrap()
}

async fn leads(replica: &Replica) -> Option<bool> {
    let response =
        client().get(replica.url("/metrics")).bearer_auth(ADMIN_TOKEN).send().await.ok()?;
    let text = response.text().await.ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("llmopt_optimizer_cycle_leader "))
        .map(|value| value.trim() == "1")
}

fn redis_entries(redis: &TestRedis) -> usize {
    let output = Command::new("redis-cli")
        .args(["-p", &redis.port().to_string(), "--raw", "KEYS", "llmopt:cache:*"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).lines().filter(|line| !line.is_empty()).count()
}

#[tokio::test]
async fn two_replicas_share_cache_records_policy_and_the_optimizer() {
    let Some(postgres) = TestPostgres::shared() else { return };
    let Some(redis) = TestRedis::start() else { return };
    let postgres_url = postgres.database_url();
    let dir = tempfile::tempdir().unwrap();
    let first = Replica::start(dir.path(), "first", &postgres_url, &redis.url(0));
    let second = Replica::start(dir.path(), "second", &postgres_url, &redis.url(0));
    for replica in [&first, &second] {
        within(Duration::from_secs(30), "the replica is ready", async || {
            let ready = client().get(replica.url("/ready")).send().await;
            ready.is_ok_and(|response| response.status().is_success())
        })
        .await;
    }

    // An answer cached through one replica is a hit through the other.
    assert_eq!(ask(&first, "what is shared?").await, "miss");
    within(Duration::from_secs(10), "the answer reaches Redis", async || {
        redis_entries(&redis) == 1
    })
    .await;
    assert_eq!(ask(&second, "what is shared?").await, "hit");

    // Both replicas' calls are in /api/usage, from either of them.
    for i in 0..3 {
        ask(&first, &format!("first {i}")).await;
        ask(&second, &format!("second {i}")).await;
    }
    for replica in [&first, &second] {
        within(Duration::from_secs(10), "every call is in /api/usage", async || {
            let usage = get_json(replica, "/api/usage").await;
            let count: u64 = usage["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|row| row["count"].as_u64().unwrap())
                .sum();
            count == 8
        })
        .await;
    }

    // A policy change made through one replica applies on the other within seconds.
    let response = client()
        .put(second.url("/api/policy/flags/fleet-test"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"enabled": true, "rollout_percent": 50.0}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.text().await.unwrap());
    let version = response.json::<Value>().await.unwrap()["version"].as_u64().unwrap();
    let delay =
        within(Duration::from_secs(5), "the policy reaches the other replica", async || {
            get_json(&first, "/api/policy").await["version"].as_u64() == Some(version)
        })
        .await;
    eprintln!("policy version {version} reached the other replica after {delay:?}");

    // Exactly one replica runs the cycles; when it is killed, the other takes over.
    let mut both = [first, second];
    within(Duration::from_secs(15), "one replica leads", async || {
        let (a, b) = (leads(&both[0]).await, leads(&both[1]).await);
        matches!((a, b), (Some(true), Some(false)) | (Some(false), Some(true)))
    })
    .await;
    let leader = if leads(&both[0]).await == Some(true) { 0 } else { 1 };
    let _ = both[leader].child.kill();
    let _ = both[leader].child.wait();
    let follower = &both[1 - leader];
    let takeover = within(Duration::from_secs(15), "the other replica takes over", async || {
        leads(follower).await == Some(true)
    })
    .await;
    eprintln!("takeover after {takeover:?}");
    assert!(follower.log().contains("this replica now runs the optimization cycles"));
}
