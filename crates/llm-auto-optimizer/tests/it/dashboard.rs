//! The dashboard in a real browser: a short demo fills a gateway (simulated provider, a few
//! thousand calls, optimization cycles with experiments and adoptions), then headless Chromium
//! signs in with the run's admin token and opens every page. Each page must load, show the
//! figures the API gives for the same data, and log no error; one admin action (roll back)
//! goes through its button; the overview is also checked on a phone-sized screen. Then a
//! client key signs in: the overview shows its tenant's figures only, the loop's pages say they
//! need the admin token and draw no control. Screenshots of every page land in
//! `target/ui-screenshots/`.
//!
//! Needs Chromium (`scripts/ci/install-tools.sh` installs Debian's). Without one the test
//! fails, so CI cannot skip it silently; `LLMOPT_SKIP_BROWSER_TESTS=1` skips it on a machine
//! without a browser, saying so.

use std::path::PathBuf;

use llm_auto_optimizer::demo::{DemoArgs, run_and_keep};
use serde_json::Value;

use crate::cdp::{Browser, find_browser};

const DAY_MS: i64 = 86_400_000;

/// `target/ui-screenshots/`, in the target directory cargo builds into.
fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("ui-screenshots")
}

/// The gateway's API, as the admin.
struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    async fn get(&self, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body = response.text().await.unwrap();
        assert!(status.is_success(), "GET {path}: {status} {body}");
        serde_json::from_str(&body).unwrap()
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9_f64.max(1e-9 * a.abs().max(b.abs()))
}

fn as_f64(value: &Value) -> f64 {
    match value {
        Value::String(text) => text.parse().unwrap_or(f64::NAN),
        other => other.as_f64().unwrap_or(f64::NAN),
    }
}

/// Shows a page (`#/…`) and waits until it has rendered.
async fn open(browser: &Browser, hash: &str, page: &str) {
    browser.eval(&format!("location.hash = {hash:?}; true")).await;
    browser
        .wait_for(
            &format!(
                "document.querySelector('#main').dataset.ready === 'true' && \
                 document.querySelector('#main #view') !== null && \
                 document.querySelector('#main #view').dataset.page === {page:?} && \
                 document.querySelector('#main #view').dataset.hash === {hash:?}"
            ),
            180,
        )
        .await;
    // A figure or field the page failed to fill shows up as one of these words.
    let leaked = browser
        .eval(
            "(document.querySelector('#main #view').innerText.match(/\\b(null|undefined|NaN|Infinity)\\b/g) || []).join(', ')",
        )
        .await;
    assert_eq!(leaked, "", "{hash} shows unfilled values");
}

// The helpers below read the page shown in `#main` (a refresh renders its next version
// off-screen first).

async fn count(browser: &Browser, selector: &str) -> usize {
    let selector = format!("#main {selector}");
    browser.eval(&format!("document.querySelectorAll({selector:?}).length")).await.as_u64().unwrap()
        as usize
}

async fn text(browser: &Browser, selector: &str) -> String {
    let selector = format!("#main {selector}");
    browser
        .eval(&format!("(document.querySelector({selector:?}) || {{textContent: ''}}).textContent"))
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn data_value(browser: &Browser, selector: &str) -> f64 {
    let selector = format!("#main {selector}");
    as_f64(&browser.eval(&format!("document.querySelector({selector:?}).dataset.value")).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_page_shows_the_apis_figures_in_headless_chromium() {
    let Some(chromium) = find_browser() else {
        if std::env::var_os("LLMOPT_SKIP_BROWSER_TESTS").is_some() {
            eprintln!("SKIPPED: no Chromium and LLMOPT_SKIP_BROWSER_TESTS is set");
            return;
        }
        panic!(
            "no Chromium found (set $CHROMIUM, or run scripts/ci/install-tools.sh); \
             LLMOPT_SKIP_BROWSER_TESTS=1 skips this test on a machine without a browser"
        );
    };
    let args = DemoArgs {
        requests: 6_000,
        baseline: 200,
        speed: 20_000.0,
        concurrency: 16,
        seed: 11,
        cycle_every: 750,
        data_dir: None,
        prompts: Some(540),
        progress: false,
        tags: false,
        drift: true,
        judge: false,
    };
    let (_report, gateway) = run_and_keep(&args, &mut Vec::new()).await.expect("the demo runs");
    let api = Api {
        base: gateway.url.clone(),
        token: gateway.admin_token.clone(),
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
    };
    let shots = screenshot_dir();
    let browser = Browser::launch(&chromium, 1280, 800).await;

    // Sign in as a person would: the page asks for the key first.
    browser.navigate(&gateway.dashboard_url()).await;
    browser
        .wait_for("document.querySelector('#login') && document.querySelector('#login').open", 30)
        .await;
    browser
        .eval(&format!(
            "document.querySelector('#token').value = {:?}; \
             document.querySelector('#login-form').requestSubmit(); true",
            gateway.admin_token
        ))
        .await;

    // Overview: the range's totals are those of /api/usage over the same range. The page
    // picks the shortest range holding the last day's traffic (the demo's few simulated
    // minutes: one hour).
    open(&browser, "#/overview", "overview").await;
    let range =
        browser.eval("document.querySelector('.segmented button.active').dataset.range").await;
    assert_eq!(range, "1h", "the shortest range that holds the demo's traffic");
    let stats = api.get("/api/stats").await;
    let now = stats["now_ms"].as_i64().unwrap();
    let usage = api
        .get(&format!(
            "/api/usage?group_by=total&from_ms={}&to_ms={}&window_ms=60000",
            now - DAY_MS / 24,
            now + 1
        ))
        .await;
    let rows = usage["rows"].as_array().unwrap();
    let requests: u64 = rows.iter().map(|row| row["count"].as_u64().unwrap()).sum();
    assert!(requests >= 6_000, "the demo's calls are in the last hour: {requests}");
    assert_eq!(data_value(&browser, "#kpi-requests .value").await, requests as f64);
    let spend = data_value(&browser, "#kpi-spend .value").await;
    assert!(close(spend, usage["total_cost_usd"].as_f64().unwrap()), "spend {spend} vs {usage}");
    let errors: u64 = rows.iter().map(|row| row["errors"].as_u64().unwrap()).sum();
    assert!(close(
        data_value(&browser, "#kpi-errors .value").await,
        errors as f64 / requests as f64
    ));
    let shown = text(&browser, "#kpi-requests .value").await;
    assert_eq!(shown.replace(',', ""), requests.to_string(), "the figure as displayed");
    // The month so far is what /api/usage says, and the projection adds a forecast to it.
    let month_start = {
        use chrono::{Datelike, TimeZone};
        let date = chrono::Utc.timestamp_millis_opt(now).unwrap();
        chrono::Utc
            .with_ymd_and_hms(date.year(), date.month(), 1, 0, 0, 0)
            .unwrap()
            .timestamp_millis()
    };
    browser.wait_for("document.querySelector('#kpi-projection .value') !== null", 60).await;
    let month = api
        .get(&format!(
            "/api/usage?group_by=total&from_ms={month_start}&to_ms={}&window_ms={DAY_MS}",
            now + 1
        ))
        .await;
    let spent = as_f64(
        &browser.eval("document.querySelector('#kpi-projection .value').dataset.spent").await,
    );
    assert!(close(spent, month["total_cost_usd"].as_f64().unwrap()), "spent {spent} vs {month}");
    let projected = data_value(&browser, "#kpi-projection .value").await;
    assert!(projected.is_finite() && projected >= spent, "projection {projected}, spent {spent}");
    // Five charts: traffic, cost, latency, live, forecast; the stream connects and fills the
    // live figures.
    assert_eq!(count(&browser, "#view .uplot").await, 5);
    browser.wait_for("document.querySelector('#live').classList.contains('on')", 30).await;
    browser.wait_for("document.querySelector('#kpi-live .value').textContent !== '–'", 30).await;
    browser.screenshot(&shots.join("overview.png")).await;

    // Experiments: one row per experiment of the API, with its requests per arm.
    open(&browser, "#/experiments", "experiments").await;
    let experiments = api.get("/api/experiments").await;
    let experiments = experiments["experiments"].as_array().unwrap().clone();
    assert!(!experiments.is_empty(), "the demo starts experiments");
    assert_eq!(count(&browser, "#experiments-table tbody tr").await, experiments.len());
    for experiment in &experiments {
        let id = experiment["spec"]["id"].as_str().unwrap();
        let row = text(&browser, &format!("#experiments-table tr[data-id={id:?}]")).await;
        for arm in experiment["arms"].as_array().unwrap() {
            let requests = arm["requests"].as_u64().unwrap();
            let figure = format!("{}: {}", arm["name"].as_str().unwrap(), with_commas(requests));
            assert!(row.contains(&figure), "{id}: `{figure}` in `{row}`");
        }
    }
    browser.screenshot(&shots.join("experiments.png")).await;

    // One experiment with the longest decision history: its interval over time is drawn.
    let chosen =
        experiments.iter().max_by_key(|e| e["history"].as_array().map_or(0, Vec::len)).unwrap();
    let id = chosen["spec"]["id"].as_str().unwrap();
    assert!(chosen["history"].as_array().unwrap().len() >= 2, "a history to draw: {chosen}");
    open(&browser, &format!("#/experiments/{id}"), "experiments").await;
    assert_eq!(
        count(&browser, "#arms-table tbody tr").await,
        chosen["arms"].as_array().unwrap().len()
    );
    assert!(count(&browser, "#view .uplot").await >= 1, "the primary interval's chart");
    let decision = text(&browser, "#decision").await;
    let reason = chosen["last_decision"]["reason"].as_str().unwrap();
    assert!(decision.contains(reason), "`{reason}` in `{decision}`");
    let arm_rows = text(&browser, "#arms-table").await;
    for arm in chosen["arms"].as_array().unwrap() {
        assert!(arm_rows.contains(&with_commas(arm["requests"].as_u64().unwrap())));
    }
    browser.screenshot(&shots.join("experiment.png")).await;

    // Proposals and adoptions: the measured savings are the API's.
    open(&browser, "#/changes", "changes").await;
    let adoptions = api.get("/api/adoptions").await;
    let adopted = adoptions["adoptions"].as_array().unwrap().clone();
    assert!(!adopted.is_empty(), "the demo adopts a change");
    assert_eq!(count(&browser, "#adoptions-table tbody tr").await, adopted.len());
    for adoption in &adopted {
        let id = adoption["experiment_id"].as_str().unwrap();
        if let Some(saving) = adoption["measurement"]["saving_usd_per_day"].as_f64() {
            let shown =
                data_value(&browser, &format!("#adoptions-table tr[data-id={id:?}] td.saving"))
                    .await;
            assert!(close(shown, saving), "{id}: {shown} vs {saving}");
        }
    }
    let proposals = api.get("/api/proposals").await;
    let proposals = proposals["proposals"].as_array().unwrap().len();
    let proposal_rows =
        if proposals == 0 { 0 } else { count(&browser, "#proposals-table tbody tr").await };
    assert_eq!(proposal_rows, proposals);
    let audit = api.get("/api/audit?newest=100").await;
    let audit = audit["entries"].as_array().unwrap().clone();
    assert_eq!(count(&browser, "#audit-table tbody tr").await, audit.len());
    let newest = text(&browser, "#audit-table tbody tr:first-child td:first-child").await;
    assert_eq!(newest, audit.last().unwrap()["seq"].to_string(), "newest first");
    browser.screenshot(&shots.join("changes.png")).await;

    // An admin action through its button: roll back a change in force.
    let in_force =
        adopted.iter().find(|a| a.get("rolled_back").is_none()).expect("a change in force");
    let id = in_force["experiment_id"].as_str().unwrap().to_owned();
    browser
        .eval(&format!(
            "window.confirm = () => true; \
             document.querySelector('#adoptions-table tr[data-id={id:?}] button.action').click(); true"
        ))
        .await;
    let mut rolled_back = Value::Null;
    for _ in 0..100 {
        let adoptions = api.get("/api/adoptions").await;
        let adoption = adoptions["adoptions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["experiment_id"] == id.as_str())
            .cloned()
            .unwrap();
        if adoption.get("rolled_back").is_some() {
            rolled_back = adoption["rolled_back"].clone();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(rolled_back["cause"], "operator", "rolled back by the button: {rolled_back}");
    browser
        .wait_for(
            &format!(
                "(document.querySelector('#adoptions-table tr[data-id={id:?}]') || {{textContent: ''}})\
                 .textContent.includes('rolled back')"
            ),
            30,
        )
        .await;

    // Workloads: one row per cluster of /api/clusters.
    open(&browser, "#/workloads", "workloads").await;
    let clusters = api.get("/api/clusters").await;
    assert_eq!(
        count(&browser, "#clusters-table tbody tr").await,
        clusters["profiles"].as_array().unwrap().len()
    );
    assert_eq!(count(&browser, "#view .uplot").await, 2);
    browser.screenshot(&shots.join("workloads.png")).await;

    // A phone-sized screen: nothing wider than the screen, and the figures still there.
    browser.set_viewport(390, 844, true).await;
    open(&browser, "#/experiments", "experiments").await;
    open(&browser, "#/overview", "overview").await;
    let overflow = browser.eval("document.documentElement.scrollWidth - window.innerWidth").await;
    assert!(overflow.as_f64().unwrap() <= 1.0, "{overflow} px wider than the screen");
    assert_eq!(data_value(&browser, "#kpi-requests .value").await, requests as f64);
    browser.screenshot(&shots.join("overview-narrow.png")).await;

    let errors = browser.console_errors();
    browser.close().await;
    assert!(errors.is_empty(), "the pages logged errors: {errors:#?}");

    as_a_client_key(&chromium, &gateway.dashboard_url(), &api, requests, &shots).await;
    gateway.shutdown().await.unwrap();
}

/// The same dashboard signed in with a client key: it shows that key's tenant only (its
/// figures are what `/api/usage` gives the key), the loop's pages say they need the admin
/// token, and no admin control is drawn. `admin_requests` is what the admin saw.
async fn as_a_client_key(
    chromium: &std::path::Path,
    dashboard: &str,
    admin: &Api,
    admin_requests: u64,
    shots: &std::path::Path,
) {
    // A virtual key of its own tenant, and a few calls made with it.
    let response = admin
        .http
        .post(format!("{}/api/keys", admin.base))
        .bearer_auth(&admin.token)
        .json(&serde_json::json!({"tenant": "team-ui"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let made: Value = response.json().await.unwrap();
    let key = made["key"].as_str().unwrap().to_owned();
    const CALLS: u64 = 25;
    for n in 0..CALLS {
        let response = admin
            .http
            .post(format!("{}/v1/chat/completions", admin.base))
            .bearer_auth(&key)
            .json(&serde_json::json!({"model": "gpt-4o-mini", "max_tokens": 16,
                "messages": [{"role": "user", "content": format!("a question of team-ui, {n}")}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap();
    }
    // An on-demand cycle writes the collector's pending records first: the calls are stored.
    let response = admin
        .http
        .post(format!("{}/api/optimize", admin.base))
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let client = Api { base: admin.base.clone(), token: key.clone(), http: admin.http.clone() };

    let browser = Browser::launch(chromium, 1280, 800).await;
    browser.navigate(dashboard).await;
    browser
        .wait_for("document.querySelector('#login') && document.querySelector('#login').open", 30)
        .await;
    browser
        .eval(&format!(
            "document.querySelector('#token').value = {key:?}; \
             document.querySelector('#login-form').requestSubmit(); true"
        ))
        .await;

    // Overview: the key's own calls, as /api/usage gives them to the key.
    open(&browser, "#/overview", "overview").await;
    let stats = client.get("/api/stats").await;
    let now = stats["now_ms"].as_i64().unwrap();
    let range =
        browser.eval("document.querySelector('.segmented button.active').dataset.range").await;
    let span_ms = match range.as_str() {
        Some("1h") => DAY_MS / 24,
        Some("24h") => DAY_MS,
        other => panic!("range {other:?}"),
    };
    let usage = client
        .get(&format!(
            "/api/usage?group_by=total&from_ms={}&to_ms={}&window_ms=60000",
            now - span_ms,
            now + 1
        ))
        .await;
    let rows = usage["rows"].as_array().unwrap();
    let requests: u64 = rows.iter().map(|row| row["count"].as_u64().unwrap()).sum();
    assert_eq!(requests, CALLS, "the key sees its own calls only: {usage}");
    assert!(requests < admin_requests);
    assert_eq!(data_value(&browser, "#kpi-requests .value").await, requests as f64);
    let spend = data_value(&browser, "#kpi-spend .value").await;
    assert!(close(spend, usage["total_cost_usd"].as_f64().unwrap()), "spend {spend} vs {usage}");
    assert!(spend > 0.0);
    // Another tenant's figures are refused to the key.
    let refused = client
        .http
        .get(format!("{}/api/usage?group_by=total&tenant=other", client.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    // A tenant minutes old has too little history for a forecast: the API answers without
    // one, and the page says so.
    let forecast = client.get("/api/forecast?window_ms=60000&horizon=60&history_ms=7200000").await;
    assert!(forecast["horizon_total"].is_null(), "{forecast}");
    assert!(forecast["not_enough_history"]["needed"].as_u64().unwrap() > 0, "{forecast}");
    browser
        .wait_for(
            "document.querySelector('#main #view').innerText.includes('Not enough history to forecast yet')",
            30,
        )
        .await;
    browser.screenshot(&shots.join("overview-client.png")).await;

    // The loop's pages: a notice that they need the admin token, and no admin control.
    for (hash, page) in [("#/experiments", "experiments"), ("#/changes", "changes")] {
        open(&browser, hash, page).await;
        let notice = text(&browser, ".notice").await;
        assert!(notice.contains("needs the admin token"), "{hash}: `{notice}`");
        assert_eq!(count(&browser, "button.action").await, 0, "{hash} shows admin controls");
    }
    browser.screenshot(&shots.join("changes-client.png")).await;

    // The console holds only the refusals of the admin routes those pages asked for.
    let errors = browser.console_errors();
    browser.close().await;
    let unexpected: Vec<&String> = errors
        .iter()
        .filter(|error| {
            !(error.starts_with("network:")
                && error.contains("403")
                && ["/api/experiments", "/api/adoptions", "/api/proposals", "/api/audit"]
                    .iter()
                    .any(|route| error.contains(route)))
        })
        .collect();
    assert!(unexpected.is_empty(), "the pages logged errors: {unexpected:#?}");
}

fn with_commas(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}
