//! The deployment files against the metrics the gateway really exports (issue 8).
//!
//! A gateway is started on a loopback port in front of the simulated upstream and made to
//! produce every labelled series the alert rules and the dashboard read: a priced call that
//! misses the response cache, the same call again (a hit, so `llmopt_saved_usd`), a streamed
//! call (time to first token), a call for a model no route serves (an error by kind) and an
//! admin configuration reload (reloads by outcome). Then `GET /metrics` is parsed as the text
//! exposition it is: `# TYPE` lines give the metric families and kinds, sample lines the series
//! names and their label names. The test checks the exposition against prometheus-client's
//! naming rules (counters `_total`, histograms `_bucket` / `_sum` / `_count`, gauges as
//! declared), so an unexpected suffix fails here rather than silently in Grafana.
//!
//! Against that text:
//! - every metric name used in a PromQL expression of `deploy/prometheus/*.yml` rules or of
//!   `deploy/grafana/*.json` (panel targets, and `label_values(selector, label)` template
//!   variables) is a series name the exposition has, less the recording rules' own names and
//!   the series Prometheus writes itself (`up`, …);
//! - every label matched in a selector (`metric{label=…}`) is a label of that series in the
//!   exposition, or a target label Prometheus adds at scrape time;
//! - every label an expression groups by (`by (…)`, `without (…)`, the label of
//!   `label_values`) is a label of one of the series the expression reads. Two families get
//!   series only once an optimization cycle has made proposals or decisions, which this test
//!   does not run: their grouping labels are listed in [`UNSAMPLED_FAMILIES`] and the test
//!   only checks that those families are declared;
//! - the dashboard shows every exported family.
//!
//! The YAML, Kubernetes, Dockerfile and promtool checks of the deployment files stay in
//! `xtask/tests/it/deploy.rs`; the PromQL extraction lives here, next to the binary whose
//! output it is checked against.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

use llmopt_gateway::config::ConfigSource;
use serde_json::{Value, json};

use crate::support::{RunningGateway, TestGateway, client, config_text, sim_server};

/// Target labels Prometheus adds at scrape time (`deploy/prometheus/prometheus.yml` sets the
/// job, and `namespace` / `pod` from Kubernetes service discovery).
const TARGET_LABELS: &[&str] = &["job", "instance", "namespace", "pod"];

/// Series Prometheus itself writes for every target.
const PROMETHEUS_SYNTHETIC: &[&str] = &["up", "scrape_duration_seconds", "scrape_samples_scraped"];

/// Families with labels that get no series in this test: the optimizer's proposals and
/// decisions are counted only after a cycle proposes or decides something (hours of records
/// and an experiment). Their labels, as `OptimizerMetrics` declares them.
/// `llmopt_judge_calls` needs a judge configured; `tests/it/judge.rs` samples it.
const UNSAMPLED_FAMILIES: &[(&str, &[&str])] = &[
    ("optimizer_proposals", &["strategy"]),
    ("optimizer_decisions", &["strategy", "outcome"]),
    ("llmopt_judge_calls", &["outcome"]),
];

/// sim-small at 1 USD / M input and 2 USD / M output, so calls have a cost and hits a saving.
const SIM_PRICES: &str = r#"
[models."sim-small"]
provider = "openai"
input = 1.0
output = 2.0
"#;

fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn deploy_dir() -> PathBuf {
    project_root().join("deploy")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()))
}

fn files_with_extensions(dir: &Path, extensions: &[&str]) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("listing {}: {error}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.extension().and_then(|e| e.to_str()).is_some_and(|e| extensions.contains(&e))
        })
        .collect();
    found.sort();
    found
}

// ---------------------------------------------------------------------------------------------
// The exposition.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Info,
    Unknown,
}

/// One `# TYPE` family of the exposition and its samples: series name → label names seen.
#[derive(Debug, Clone)]
struct Family {
    kind: Kind,
    series: BTreeMap<String, BTreeSet<String>>,
}

impl Family {
    /// The sample names prometheus-client writes for a family of this kind (OpenMetrics).
    fn allowed_series(&self, family: &str) -> Vec<String> {
        let with = |suffixes: &[&str]| suffixes.iter().map(|s| format!("{family}{s}")).collect();
        match self.kind {
            Kind::Counter => with(&["_total", "_created"]),
            Kind::Gauge | Kind::Unknown => with(&[""]),
            Kind::Histogram => with(&["_bucket", "_sum", "_count", "_created"]),
            Kind::Summary => with(&["", "_sum", "_count", "_created"]),
            Kind::Info => with(&["_info"]),
        }
    }

    /// The series names a query may read, whether or not this run produced samples of them
    /// (`_created` is optional and never read by the deploy files).
    fn queryable_series(&self, family: &str) -> Vec<String> {
        self.allowed_series(family).into_iter().filter(|s| !s.ends_with("_created")).collect()
    }
}

/// Parsed `/metrics` text: families by name.
#[derive(Debug)]
struct Exposition {
    families: BTreeMap<String, Family>,
}

impl Exposition {
    fn parse(text: &str) -> Exposition {
        let mut families: BTreeMap<String, Family> = BTreeMap::new();
        let mut current: Option<String> = None;
        for line in text.lines().map(str::trim_end).filter(|line| !line.is_empty()) {
            if let Some(comment) = line.strip_prefix('#') {
                let mut words = comment.split_whitespace();
                if words.next() == Some("TYPE") {
                    let name = words.next().expect("# TYPE has a name").to_owned();
                    let kind = match words.next().expect("# TYPE has a kind") {
                        "counter" => Kind::Counter,
                        "gauge" => Kind::Gauge,
                        "histogram" => Kind::Histogram,
                        "summary" => Kind::Summary,
                        "info" => Kind::Info,
                        "unknown" | "untyped" => Kind::Unknown,
                        other => panic!("unknown metric type `{other}` in `{line}`"),
                    };
                    let previous =
                        families.insert(name.clone(), Family { kind, series: BTreeMap::new() });
                    assert!(previous.is_none(), "family `{name}` declared twice");
                    current = Some(name);
                }
                continue;
            }
            let (series, labels) = parse_sample(line);
            let family_name = current
                .as_ref()
                .unwrap_or_else(|| panic!("sample before any # TYPE line: `{line}`"));
            let family = families.get_mut(family_name).unwrap();
            assert!(
                family.allowed_series(family_name).contains(&series),
                "sample `{series}` under `# TYPE {family_name} {:?}` breaks the exposition rules",
                family.kind
            );
            family.series.entry(series).or_default().extend(labels);
        }
        Exposition { families }
    }

    /// Every series name a query may use, with the label names its samples carry (empty when
    /// this run produced no sample of it).
    fn series(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut out = BTreeMap::new();
        for (name, family) in &self.families {
            for series in family.queryable_series(name) {
                let labels = family.series.get(&series).cloned().unwrap_or_default();
                out.insert(series, labels);
            }
        }
        out
    }

    fn family_of(&self, series: &str) -> Option<(&str, &Family)> {
        self.families
            .iter()
            .find(|(name, family)| family.queryable_series(name).iter().any(|s| s == series))
            .map(|(name, family)| (name.as_str(), family))
    }

    fn has_samples(&self, series: &str) -> bool {
        self.family_of(series).is_some_and(|(_, family)| family.series.contains_key(series))
    }
}

/// `name{a="x",b="y \"q\""} 1.5` → (`name`, {a, b}).
fn parse_sample(line: &str) -> (String, BTreeSet<String>) {
    let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("no value in `{line}`"));
    let name = line[..name_end].to_owned();
    let mut labels = BTreeSet::new();
    if line[name_end..].starts_with('{') {
        let chars: Vec<char> = line[name_end + 1..].chars().collect();
        let mut index = 0;
        loop {
            while index < chars.len() && (chars[index] == ',' || chars[index] == ' ') {
                index += 1;
            }
            if index >= chars.len() || chars[index] == '}' {
                break;
            }
            let start = index;
            while index < chars.len() && chars[index] != '=' {
                index += 1;
            }
            labels.insert(chars[start..index].iter().collect::<String>());
            assert_eq!(chars.get(index + 1), Some(&'"'), "label value not quoted in `{line}`");
            index = skip_string(&chars, index + 1);
        }
    }
    (name, labels)
}

/// A gateway in front of the simulated upstream, after the calls that create every labelled
/// series the deploy files read; returns the `/metrics` text.
async fn rendered_metrics_after_traffic() -> String {
    let sim = sim_server(0.0).await;
    let directory = tempfile::tempdir().unwrap();
    let prices = directory.path().join("prices.toml");
    fs::write(&prices, SIM_PRICES).unwrap();
    let config_path = directory.path().join("gateway.toml");
    let extra = format!(
        "[pricing]\nfile = \"{}\"\n[cache]\nenabled = true\n[auth]\nadmin_token_env = \"TEST_ADMIN_TOKEN\"\n",
        prices.display()
    );
    fs::write(&config_path, config_text(&sim, &extra)).unwrap();
    let source = ConfigSource { base_file: Some(config_path), env_file: None };
    let gateway =
        RunningGateway::start(TestGateway::with_source(source.load().unwrap(), Some(source))).await;
    let http = client();
    let chat = |body: Value| http.post(gateway.url("/v1/chat/completions")).json(&body).send();
    let cacheable = json!({"model": "sim-small", "temperature": 0,
        "messages": [{"role": "user", "content": "Summarise the quarterly report."}]});
    for expected_cache in ["miss", "hit"] {
        let response = chat(cacheable.clone()).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-llmopt-cache"], expected_cache);
        response.bytes().await.unwrap();
    }
    let streamed = json!({"model": "sim-small", "stream": true,
        "messages": [{"role": "user", "content": "Stream a short answer."}]});
    let response = chat(streamed).await.unwrap();
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap();
    let unrouted = json!({"model": "no-such-model", "messages": []});
    assert_eq!(chat(unrouted).await.unwrap().status(), 404);
    let reload = http
        .post(gateway.url("/api/config/reload"))
        .bearer_auth("admin-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(reload.status(), 200, "{}", reload.text().await.unwrap());
    // Records reach the metrics when the call finishes, which the client has seen by now; the
    // collector gauges are read at scrape time.
    let response = http.get(gateway.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    gateway.stop().await;
    text
}

// ---------------------------------------------------------------------------------------------
// The deploy files' PromQL.

fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = read(path);
    serde_norway::Deserializer::from_str(&text)
        .map(|document| {
            let value = <serde_norway::Value as serde::Deserialize>::deserialize(document)
                .unwrap_or_else(|error| panic!("{} does not parse: {error}", path.display()));
            serde_json::to_value(value).unwrap()
        })
        .filter(|value| !value.is_null())
        .collect()
}

/// Rules of every Prometheus rule file in `deploy/prometheus/` (files with `groups`; the
/// scrape config and the rule unit tests have none), with their file name.
fn rules() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for path in files_with_extensions(&deploy_dir().join("prometheus"), &["yml", "yaml"]) {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        for document in yaml_documents(&path) {
            for group in document["groups"].as_array().into_iter().flatten() {
                for rule in group["rules"].as_array().expect("a rule group has rules") {
                    out.push((file.clone(), rule.clone()));
                }
            }
        }
    }
    assert!(!out.is_empty(), "no rules found in deploy/prometheus");
    out
}

fn dashboards() -> Vec<(String, Value)> {
    files_with_extensions(&deploy_dir().join("grafana"), &["json"])
        .into_iter()
        .map(|path| {
            let value = serde_json::from_str(&read(&path))
                .unwrap_or_else(|error| panic!("{} does not parse: {error}", path.display()));
            (path.file_name().unwrap().to_string_lossy().into_owned(), value)
        })
        .collect()
}

/// Panels, including those nested in collapsed rows.
fn all_panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        out.push(panel);
        out.extend(panel["panels"].as_array().into_iter().flatten());
    }
    out
}

/// Every PromQL expression of the rules and the dashboards, with where it is. A template
/// variable `label_values(selector, label)` becomes `count by (label) (selector)`: the same
/// series and the same label, in a form the extractors below read.
fn promql_expressions() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (file, rule) in rules() {
        let name = rule["alert"]
            .as_str()
            .or(rule["record"].as_str())
            .expect("a rule is an alert or a record");
        out.push((format!("{file} {name}"), rule["expr"].as_str().expect("expr").to_owned()));
    }
    for (file, dashboard) in dashboards() {
        for panel in all_panels(&dashboard) {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().expect("every target has a PromQL expr");
                out.push((format!("{file} panel {}", panel["title"]), expr.to_owned()));
            }
        }
        for variable in dashboard["templating"]["list"].as_array().into_iter().flatten() {
            let query = variable["query"]["query"]
                .as_str()
                .or(variable["query"].as_str())
                .unwrap_or_default();
            if let Some(arguments) =
                query.strip_prefix("label_values(").and_then(|rest| rest.strip_suffix(')'))
            {
                let expression = match arguments.rsplit_once(',') {
                    Some((selector, label)) => format!("count by ({}) ({selector})", label.trim()),
                    None => arguments.to_owned(),
                };
                out.push((format!("{file} variable {}", variable["name"]), expression));
            }
        }
    }
    out
}

/// Names the recording rules define (`llmopt:…`): defined in deploy, not exported.
fn recorded_names() -> BTreeSet<String> {
    rules().iter().filter_map(|(_, rule)| rule["record"].as_str().map(str::to_owned)).collect()
}

/// Every metric name the deployment files read from the binary.
fn metric_names_used_in_deploy() -> BTreeSet<String> {
    let recorded = recorded_names();
    promql_expressions()
        .iter()
        .flat_map(|(_, expression)| metric_names_in_promql(expression))
        .filter(|name| !recorded.contains(name) && !PROMETHEUS_SYNTHETIC.contains(&name.as_str()))
        .collect()
}

/// PromQL keywords and modifiers that look like identifiers.
const PROMQL_KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
    "atan2",
];

/// Metric names in one PromQL expression (Grafana variables such as `$__rate_interval` and
/// `${x}` allowed). Function and aggregation names (identifiers followed by `(`), keywords,
/// label lists of `by (...)` / `on (...)`, label matchers `{...}`, strings, durations and
/// numbers are skipped.
fn metric_names_in_promql(expression: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expression.chars().collect();
    let mut names = BTreeSet::new();
    let mut index = 0;
    // After `by`/`without`/`on`/`ignoring`/`group_*`, the next parenthesised list holds labels.
    let mut label_list_next = false;
    let mut in_label_list = false;
    while index < chars.len() {
        let c = chars[index];
        if c == '"' || c == '\'' || c == '`' {
            index = skip_string(&chars, index);
            continue;
        }
        if c == '{' {
            index = skip_until(&chars, index, '}');
            continue;
        }
        if c == '[' {
            index = skip_until(&chars, index, ']');
            continue;
        }
        if c == '$' {
            index += 1;
            if chars.get(index) == Some(&'{') {
                index = skip_until(&chars, index, '}');
            } else {
                while index < chars.len() && (chars[index].is_alphanumeric() || chars[index] == '_')
                {
                    index += 1;
                }
            }
            continue;
        }
        if c.is_ascii_digit()
            || (c == '.' && chars.get(index + 1).is_some_and(char::is_ascii_digit))
        {
            // Numbers, durations (5m, 1h30m) and exponents (1e6) in one token.
            while index < chars.len()
                && (chars[index].is_ascii_alphanumeric() || chars[index] == '.')
            {
                index += 1;
            }
            continue;
        }
        if c == '(' {
            if label_list_next {
                in_label_list = true;
                label_list_next = false;
            }
            index += 1;
            continue;
        }
        if c == ')' {
            in_label_list = false;
            index += 1;
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = index;
            while index < chars.len()
                && (chars[index].is_ascii_alphanumeric()
                    || chars[index] == '_'
                    || chars[index] == ':')
            {
                index += 1;
            }
            let word: String = chars[start..index].iter().collect();
            let mut lookahead = index;
            while lookahead < chars.len() && chars[lookahead].is_whitespace() {
                lookahead += 1;
            }
            let followed_by_paren = chars.get(lookahead) == Some(&'(');
            // `sum by (le) (...)`: an aggregation whose grouping comes first.
            let next_word: String = chars[lookahead..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                .collect();
            let followed_by_grouping =
                ["by", "without"].contains(&next_word.to_lowercase().as_str());
            let lower = word.to_lowercase();
            if ["by", "without", "on", "ignoring", "group_left", "group_right"]
                .contains(&lower.as_str())
            {
                label_list_next = followed_by_paren;
            } else if in_label_list
                || followed_by_paren
                || followed_by_grouping
                || PROMQL_KEYWORDS.contains(&lower.as_str())
            {
                // a label name, a function or aggregation, or a keyword
            } else {
                names.insert(word);
            }
            continue;
        }
        index += 1;
    }
    names
}

/// Labels listed after `by` / `without` in one expression (`sum by (le, model) (…)`).
fn grouping_labels(expression: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expression.chars().collect();
    let mut labels = BTreeSet::new();
    let mut index = 0;
    while index < chars.len() {
        match chars[index] {
            '"' | '\'' | '`' => index = skip_string(&chars, index),
            '{' => index = skip_until(&chars, index, '}'),
            c if c.is_ascii_alphabetic() || c == '_' => {
                let start = index;
                while index < chars.len()
                    && (chars[index].is_ascii_alphanumeric() || chars[index] == '_')
                {
                    index += 1;
                }
                let word: String = chars[start..index].iter().collect::<String>().to_lowercase();
                let mut lookahead = index;
                while lookahead < chars.len() && chars[lookahead].is_whitespace() {
                    lookahead += 1;
                }
                if (word == "by" || word == "without") && chars.get(lookahead) == Some(&'(') {
                    let end = skip_until(&chars, lookahead, ')');
                    let inside: String = chars[lookahead + 1..end - 1].iter().collect();
                    labels.extend(
                        inside
                            .split(',')
                            .map(str::trim)
                            .filter(|l| !l.is_empty())
                            .map(str::to_owned),
                    );
                    index = end;
                }
            }
            _ => index += 1,
        }
    }
    labels
}

fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut index = start + 1;
    while index < chars.len() {
        if chars[index] == '\\' && quote != '`' {
            index += 2;
            continue;
        }
        if chars[index] == quote {
            return index + 1;
        }
        index += 1;
    }
    index
}

/// Index after the matching `close`, skipping strings inside.
fn skip_until(chars: &[char], start: usize, close: char) -> usize {
    let mut index = start + 1;
    while index < chars.len() {
        match chars[index] {
            '"' | '\'' | '`' => index = skip_string(chars, index),
            c if c == close => return index + 1,
            _ => index += 1,
        }
    }
    index
}

/// Label names matched in selectors, per metric: `metric{a="x", b=~"y"}` → {metric: {a, b}}.
fn selector_labels(expression: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let chars: Vec<char> = expression.chars().collect();
    let mut index = 0;
    while index < chars.len() {
        match chars[index] {
            '"' | '\'' | '`' => index = skip_string(&chars, index),
            '{' => {
                let end = skip_until(&chars, index, '}');
                // The metric name is the identifier right before the brace.
                let mut name_start = index;
                while name_start > 0
                    && (chars[name_start - 1].is_ascii_alphanumeric()
                        || chars[name_start - 1] == '_'
                        || chars[name_start - 1] == ':')
                {
                    name_start -= 1;
                }
                let name: String = chars[name_start..index].iter().collect();
                let inside: String = chars[index + 1..end.saturating_sub(1)].iter().collect();
                let is_variable = name_start > 0 && chars[name_start - 1] == '$';
                if !name.is_empty() && !is_variable {
                    let labels = out.entry(name).or_default();
                    for matcher in split_matchers(&inside) {
                        let label: String = matcher
                            .trim()
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .collect();
                        if !label.is_empty() {
                            labels.insert(label);
                        }
                    }
                }
                index = end;
            }
            _ => index += 1,
        }
    }
    out
}

/// Splits `a="x,y", b=~"z"` on the commas outside strings.
fn split_matchers(inside: &str) -> Vec<String> {
    let chars: Vec<char> = inside.chars().collect();
    let (mut parts, mut start, mut index) = (Vec::new(), 0, 0);
    while index < chars.len() {
        match chars[index] {
            '"' | '\'' | '`' => index = skip_string(&chars, index),
            ',' => {
                parts.push(chars[start..index].iter().collect());
                index += 1;
                start = index;
            }
            _ => index += 1,
        }
    }
    parts.push(chars[start..].iter().collect());
    parts
}

// ---------------------------------------------------------------------------------------------
// The checks.

#[tokio::test]
async fn the_deploy_files_read_only_metrics_and_labels_the_gateway_exports() {
    let exposition = Exposition::parse(&rendered_metrics_after_traffic().await);
    let series = exposition.series();
    assert!(exposition.families.len() >= 20, "only {} families", exposition.families.len());

    // Names.
    let used = metric_names_used_in_deploy();
    assert!(used.len() >= 10, "too few names found, is the extraction broken? {used:?}");
    let missing: Vec<&String> = used.iter().filter(|name| !series.contains_key(*name)).collect();
    assert!(
        missing.is_empty(),
        "names used in deploy/ that /metrics does not have: {missing:?}\nit has: {:?}",
        series.keys().collect::<Vec<_>>()
    );

    let unsampled: BTreeMap<&str, &[&str]> = UNSAMPLED_FAMILIES.iter().copied().collect();
    for family in unsampled.keys() {
        assert!(exposition.families.contains_key(*family), "`{family}` is not declared at all");
    }
    let mut unchecked = BTreeSet::new();
    for (place, expression) in promql_expressions() {
        // Selector labels: on the series itself.
        for (metric, labels) in selector_labels(&expression) {
            let Some(known) = series.get(&metric) else { continue };
            for label in labels.iter().filter(|l| !TARGET_LABELS.contains(&l.as_str())) {
                assert!(
                    exposition.has_samples(&metric),
                    "{place}: matches `{label}` on `{metric}`, which has no sample in /metrics \
                     (the test must create one)"
                );
                assert!(
                    known.contains(label),
                    "{place}: `{metric}` has no label `{label}` (it has {known:?})"
                );
            }
        }
        // Grouping labels: on one of the series the expression reads.
        let read: Vec<String> = metric_names_in_promql(&expression)
            .into_iter()
            .filter(|name| series.contains_key(name))
            .collect();
        for label in grouping_labels(&expression) {
            if TARGET_LABELS.contains(&label.as_str()) || read.is_empty() {
                continue;
            }
            let sampled: Vec<&String> =
                read.iter().filter(|name| exposition.has_samples(name)).collect();
            if sampled.is_empty() {
                let declared = read.iter().any(|name| {
                    exposition.family_of(name).is_some_and(|(family, _)| {
                        unsampled.get(family).is_some_and(|labels| labels.contains(&label.as_str()))
                    })
                });
                assert!(
                    declared,
                    "{place}: groups by `{label}` over {read:?}, which have no sample in /metrics \
                     and are not in UNSAMPLED_FAMILIES"
                );
                unchecked.insert(label.clone());
                continue;
            }
            assert!(
                sampled.iter().any(|name| series[*name].contains(&label)),
                "{place}: groups by `{label}`, a label none of {sampled:?} has"
            );
        }
    }
    // The allow-list is only for what is really unsampled here: the optimizer's and judge's labels.
    assert_eq!(unchecked, BTreeSet::from(["outcome".to_owned(), "strategy".to_owned()]));

    // The dashboard shows every family.
    let dashboard_names: BTreeSet<String> = promql_expressions()
        .iter()
        .filter(|(place, _)| place.contains(" panel ") || place.contains(" variable "))
        .flat_map(|(_, expression)| metric_names_in_promql(expression))
        .collect();
    for (name, family) in &exposition.families {
        let shown = family.queryable_series(name).iter().any(|s| dashboard_names.contains(s));
        assert!(shown, "no dashboard panel shows `{name}`");
    }
}

// ---------------------------------------------------------------------------------------------
// The parsers themselves, on inputs whose answer is known by hand.

#[test]
fn the_exposition_parser_reads_types_series_and_labels() {
    let text = "# HELP a Calls.\n# TYPE a counter\na_total{model=\"x\",status=\"ok\"} 3\n\
                a_total{model=\"q\\\"{,}\",status=\"error\"} 1\n\
                # TYPE d_seconds histogram\nd_seconds_sum 0.5\nd_seconds_count 2\n\
                d_seconds_bucket{le=\"0.1\"} 1\nd_seconds_bucket{le=\"+Inf\"} 2\n\
                # TYPE g gauge\ng 7\n# TYPE empty counter\n# EOF\n";
    let exposition = Exposition::parse(text);
    let series = exposition.series();
    let labels = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<BTreeSet<_>>();
    assert_eq!(series["a_total"], labels(&["model", "status"]));
    assert_eq!(series["d_seconds_bucket"], labels(&["le"]));
    assert_eq!(series["d_seconds_sum"], labels(&[]));
    assert_eq!(series["g"], labels(&[]));
    assert!(series.contains_key("empty_total") && !exposition.has_samples("empty_total"));
    assert!(!series.contains_key("a") && !series.contains_key("d_seconds"));
    assert_eq!(exposition.family_of("d_seconds_count").map(|(name, _)| name), Some("d_seconds"));
}

#[test]
#[should_panic(expected = "breaks the exposition rules")]
fn a_counter_sample_without_total_is_refused() {
    Exposition::parse("# TYPE a counter\na 3\n");
}

#[test]
fn the_promql_extractor_finds_metrics_and_nothing_else() {
    let names =
        |expression: &str| metric_names_in_promql(expression).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"histogram_quantile(0.99, sum by (le, model) (rate(a_seconds_bucket{job="x", model=~"$model"}[$__rate_interval])))"#
        ),
        vec!["a_seconds_bucket"]
    );
    assert_eq!(
        names("sum(rate(a_total[5m])) / sum(rate(b_total[5m] offset 1h)) > 0.05 and on() c:rule"),
        vec!["a_total", "b_total", "c:rule"]
    );
    assert_eq!(
        names("sum without (instance) (g) * 1e6 + vector(1000) * scalar(days_in_month())"),
        vec!["g"]
    );
    assert_eq!(names("topk by (model) (3, m) / count without(x)(n)"), vec!["m", "n"]);
    assert_eq!(
        names(r#"x{a="by (y)", b='z}'} unless ignoring(k) group_left(m) w"#),
        vec!["w", "x"]
    );
    assert_eq!(names("${metric} + $var + .5"), Vec::<String>::new());
    let labels = selector_labels(r#"rate(a_total{job="x", kind=~"a|b,c"}[5m]) / b{}"#);
    assert_eq!(labels["a_total"], BTreeSet::from(["job".to_owned(), "kind".to_owned()]));
    assert!(labels["b"].is_empty());
    assert_eq!(
        grouping_labels(
            r#"sum by (le, model) (x{a="by (z)"}) / count without(pod)(y) and on(k) w"#
        ),
        BTreeSet::from(["le".to_owned(), "model".to_owned(), "pod".to_owned()])
    );
}
