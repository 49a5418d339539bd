//! Checks of the deployment files in `deploy/` (issue 8):
//! - every YAML file parses (all documents), the Grafana dashboard JSON parses;
//! - the Kubernetes manifests hang together: one replica with the Recreate strategy (sled is
//!   single-process), liveness on `/health` and readiness on `/ready`, the PVC, ConfigMap and
//!   Secret the Deployment names exist, the Service reaches the container port, resources are set;
//! - the ConfigMap's `production.toml` only uses keys of `config/default.toml` (the binary refuses
//!   unknown keys at start);
//! - the Dockerfile is multi-stage, runs as a non-root user, has a health check on `/health`, a
//!   data volume, and exposes the port the gateway listens on;
//! - every metric name used in a PromQL expression of the alert rules or the dashboard is one
//!   the binary exports ([`metric_names_used_in_deploy`] against [`metric_names_exported`]),
//!   every label matched in a selector is a label of that metric, and the dashboard shows every
//!   exported metric;
//! - when `promtool` is installed, the rules pass `promtool check rules` and the alert unit tests
//!   of `deploy/prometheus/alerts_test.yml` (skipped with a message otherwise).
//!
//! Where the exported names come from: the binary has no way yet to list its metrics without
//! serving, so [`metric_names_exported`] reads them from the registration code in
//! `crates/llm-auto-optimizer/src/metrics.rs` (`registry.register("name", …, field.clone())`,
//! the field's type in `struct Metrics` for counter / gauge / histogram, the registry prefix),
//! and applies prometheus-client's exposition rules (counters get `_total`, histograms
//! `_bucket` / `_sum` / `_count`). When the binary can render its `/metrics` text from a fresh
//! registry, switch this to parsing that text's `# TYPE` lines.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

use serde_json::Value;

fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn deploy_dir() -> PathBuf {
    project_root().join("deploy")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()))
}

fn files_with_extensions(dir: &Path, extensions: &[&str]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| extensions.contains(&e))
            {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// Every document of a YAML file, as JSON values (easier to walk).
fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = read(path);
    serde_norway::Deserializer::from_str(&text)
        .map(|document| {
            let value = <serde_norway::Value as serde::Deserialize>::deserialize(document)
                .unwrap_or_else(|error| panic!("{} does not parse: {error}", path.display()));
            serde_json::to_value(value)
                .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        })
        .filter(|value| !value.is_null())
        .collect()
}

fn kubernetes_objects() -> Vec<(PathBuf, Value)> {
    files_with_extensions(&deploy_dir().join("k8s"), &["yaml", "yml"])
        .into_iter()
        .flat_map(|path| yaml_documents(&path).into_iter().map(move |doc| (path.clone(), doc)))
        .collect()
}

fn object<'a>(objects: &'a [(PathBuf, Value)], kind: &str) -> Vec<&'a Value> {
    objects.iter().map(|(_, doc)| doc).filter(|doc| doc["kind"] == kind).collect()
}

fn the_one<'a>(objects: &'a [(PathBuf, Value)], kind: &str) -> &'a Value {
    let found = object(objects, kind);
    assert_eq!(found.len(), 1, "expected exactly one {kind} in deploy/k8s");
    found[0]
}

// ---------------------------------------------------------------------------------------------
// Parsing of every file.

#[test]
fn every_yaml_file_in_deploy_parses() {
    let files = files_with_extensions(&deploy_dir(), &["yaml", "yml"]);
    assert!(
        files.len() >= 7,
        "expected the k8s, Prometheus and Grafana YAML files, found {files:?}"
    );
    for path in files {
        let documents = yaml_documents(&path);
        assert!(!documents.is_empty(), "{} has no document", path.display());
    }
}

#[test]
fn every_kubernetes_manifest_names_its_kind_and_api() {
    for (path, doc) in kubernetes_objects() {
        assert!(doc["apiVersion"].is_string(), "{}: no apiVersion", path.display());
        assert!(doc["kind"].is_string(), "{}: no kind", path.display());
        if doc["kind"] != "Kustomization" {
            assert!(doc["metadata"]["name"].is_string(), "{}: no metadata.name", path.display());
        }
    }
}

#[test]
fn the_grafana_dashboard_parses_with_unique_panel_ids() {
    let dashboard = grafana_dashboard();
    assert!(dashboard["title"].is_string() && dashboard["uid"].is_string());
    let mut ids = BTreeSet::new();
    for panel in all_panels(&dashboard) {
        let id = panel["id"].as_i64().expect("every panel has a numeric id");
        assert!(ids.insert(id), "panel id {id} is used twice");
    }
    assert!(ids.len() > 10);
}

// ---------------------------------------------------------------------------------------------
// Kubernetes manifests.

#[test]
fn one_replica_per_volume_with_the_recreate_strategy() {
    let objects = kubernetes_objects();
    let deployment = the_one(&objects, "Deployment");
    // sled is single-process: two pods on one data directory must never run at once.
    assert_eq!(deployment["spec"]["replicas"], 1);
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
    let pvc = the_one(&objects, "PersistentVolumeClaim");
    assert_eq!(pvc["spec"]["accessModes"], serde_json::json!(["ReadWriteOnce"]));
    let claims: Vec<&Value> = deployment["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .filter_map(|volume| volume.get("persistentVolumeClaim"))
        .collect();
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0]["claimName"], pvc["metadata"]["name"]);
}

fn gateway_container(deployment: &Value) -> &Value {
    let containers =
        deployment["spec"]["template"]["spec"]["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1, "one container: the gateway");
    &containers[0]
}

fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"].as_array()?.iter().find(|e| e["name"] == name)?["value"].as_str()
}

#[test]
fn probes_resources_and_security_are_set() {
    let objects = kubernetes_objects();
    let deployment = the_one(&objects, "Deployment");
    let container = gateway_container(deployment);
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/health");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/ready");
    assert_eq!(container["startupProbe"]["httpGet"]["path"], "/health");
    for key in ["requests", "limits"] {
        assert!(container["resources"][key]["memory"].is_string(), "resources.{key}.memory");
    }
    assert!(container["resources"]["requests"]["cpu"].is_string());
    let pod_security = &deployment["spec"]["template"]["spec"]["securityContext"];
    assert_eq!(pod_security["runAsNonRoot"], true);
    assert!(pod_security["runAsUser"].as_i64().is_some_and(|uid| uid > 0));
    assert_eq!(container["securityContext"]["allowPrivilegeEscalation"], false);
}

#[test]
fn the_service_reaches_the_port_the_gateway_listens_on() {
    let objects = kubernetes_objects();
    let deployment = the_one(&objects, "Deployment");
    let container = gateway_container(deployment);
    let listen = env_value(container, "OPTIMIZER_SERVER__LISTEN").expect("listen address set");
    let listen_port: i64 =
        listen.rsplit(':').next().and_then(|p| p.parse().ok()).expect("listen port");
    let port = container["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| p["name"] == "http")
        .expect("a port named http");
    assert_eq!(port["containerPort"], listen_port);
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        assert_eq!(container[probe]["httpGet"]["port"], "http", "{probe} uses the named port");
    }
    let service = the_one(&objects, "Service");
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "http");
    let pod_labels =
        deployment["spec"]["template"]["metadata"]["labels"].as_object().expect("pod labels");
    for (key, value) in service["spec"]["selector"].as_object().expect("selector") {
        assert_eq!(pod_labels.get(key), Some(value), "service selector {key} matches the pods");
    }
    let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/port"], listen_port.to_string());
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
}

#[test]
fn the_config_map_and_secret_the_deployment_names_exist() {
    let objects = kubernetes_objects();
    let deployment = the_one(&objects, "Deployment");
    let kustomization = the_one(&objects, "Kustomization");
    let k8s = deploy_dir().join("k8s");
    for resource in kustomization["resources"].as_array().expect("resources") {
        let file = resource.as_str().expect("resource path");
        assert!(k8s.join(file).is_file(), "kustomization lists {file}, which does not exist");
    }
    let generator = &kustomization["configMapGenerator"][0];
    let config_map_name = generator["name"].as_str().expect("generated ConfigMap name");
    assert_eq!(
        kustomization["generatorOptions"]["disableNameSuffixHash"], true,
        "hot reload needs a fixed name"
    );
    let config_volume = deployment["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v.get("configMap").is_some())
        .expect("a ConfigMap volume");
    assert_eq!(config_volume["configMap"]["name"], config_map_name);
    // The binary layers ./config/<OPTIMIZER_ENV>.toml over the defaults: the mount, the working
    // directory and the environment must agree with the generated file name.
    let container = gateway_container(deployment);
    let env_name = env_value(container, "OPTIMIZER_ENV").expect("OPTIMIZER_ENV set");
    let files: Vec<&str> =
        generator["files"].as_array().expect("files").iter().filter_map(Value::as_str).collect();
    assert!(
        files.contains(&format!("{env_name}.toml").as_str()),
        "ConfigMap holds {env_name}.toml: {files:?}"
    );
    let working_dir = container["workingDir"].as_str().expect("workingDir");
    let mount = container["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .find(|m| m["name"] == config_volume["name"])
        .expect("config mount");
    assert_eq!(mount["mountPath"], format!("{working_dir}/config"));

    let secret_path = k8s.join("secret.example.yaml");
    let secret = yaml_documents(&secret_path).remove(0);
    let secret_ref = &container["envFrom"][0]["secretRef"];
    assert_eq!(secret_ref["name"], secret["metadata"]["name"]);
    let keys: BTreeSet<&str> =
        secret["stringData"].as_object().expect("stringData").keys().map(String::as_str).collect();
    // The variables config/default.toml names for the provider keys and the admin token.
    let defaults: toml::Table =
        read(&project_root().join("config/default.toml")).parse().expect("default.toml");
    let mut wanted = BTreeSet::new();
    for provider in defaults["providers"].as_table().expect("providers").values() {
        if let Some(variable) = provider.get("api_key_env").and_then(toml::Value::as_str) {
            wanted.insert(variable);
        }
    }
    if let Some(variable) = defaults["auth"].get("admin_token_env").and_then(toml::Value::as_str) {
        wanted.insert(variable);
    }
    assert!(
        wanted.contains("OPENAI_API_KEY") && wanted.contains("ANTHROPIC_API_KEY"),
        "{wanted:?}"
    );
    assert_eq!(keys, wanted, "the Secret carries exactly the variables config/default.toml names");
    assert!(
        !kustomization["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .any(|r| r == "secret.example.yaml"),
        "re-applying the kustomization must never blank real keys"
    );
}

/// Dotted key paths of a TOML table (`cache.ttl_s`), tables included.
fn key_paths(table: &toml::Table, prefix: &str, out: &mut BTreeSet<String>) {
    for (key, value) in table {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        if let toml::Value::Table(inner) = value {
            key_paths(inner, &path, out);
        }
        out.insert(path);
    }
}

#[test]
fn the_production_overlay_only_uses_known_keys() {
    let defaults: toml::Table =
        read(&project_root().join("config/default.toml")).parse().expect("default.toml");
    let overlay: toml::Table =
        read(&deploy_dir().join("k8s/production.toml")).parse().expect("production.toml");
    let (mut known, mut used) = (BTreeSet::new(), BTreeSet::new());
    key_paths(&defaults, "", &mut known);
    key_paths(&overlay, "", &mut used);
    assert!(!used.is_empty());
    let unknown: Vec<&String> = used.difference(&known).collect();
    assert!(
        unknown.is_empty(),
        "production.toml keys missing from config/default.toml: {unknown:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Dockerfile (no docker engine here, so it is read, not built).

#[test]
fn the_dockerfile_is_multi_stage_non_root_and_checks_health() {
    let text = read(&deploy_dir().join("Dockerfile"));
    let instructions: Vec<String> = text
        .replace("\\\n", " ")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect();
    let starting = |word: &str| -> Vec<&String> {
        instructions.iter().filter(|line| line.split_whitespace().next() == Some(word)).collect()
    };
    assert!(starting("FROM").len() >= 2, "multi-stage: a builder and a runtime");
    let user = starting("USER")
        .last()
        .map(|line| line.split_whitespace().nth(1).unwrap_or_default().to_owned());
    let user = user.expect("a USER instruction");
    assert!(!["root", "0", "0:0"].contains(&user.as_str()), "runs as {user}");
    let healthcheck = starting("HEALTHCHECK");
    assert!(healthcheck.len() == 1 && healthcheck[0].contains("/health"), "{healthcheck:?}");
    assert_eq!(starting("VOLUME").len(), 1);
    let listen = instructions
        .iter()
        .flat_map(|line| line.split_whitespace())
        .find_map(|word| word.strip_prefix("OPTIMIZER_SERVER__LISTEN="))
        .expect("the image sets the listen address");
    let port = listen.rsplit(':').next().expect("port");
    assert!(starting("EXPOSE").iter().any(|line| line.split_whitespace().nth(1) == Some(port)));
    assert!(healthcheck[0].contains(&format!(":{port}/health")));
}

// ---------------------------------------------------------------------------------------------
// Metric names: PromQL in the rules and the dashboard against what the binary exports.

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

/// Series Prometheus itself writes for every target.
const PROMETHEUS_SYNTHETIC: &[&str] = &["up", "scrape_duration_seconds", "scrape_samples_scraped"];

/// Metric names in one PromQL expression (Grafana variables such as `$__rate_interval` and
/// `${x}` allowed). Function and aggregation names (identifiers followed by `(`), keywords,
/// label lists of `by (...)` / `on (...)`, label matchers `{...}`, strings, durations and
/// numbers are skipped.
pub fn metric_names_in_promql(expression: &str) -> BTreeSet<String> {
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

fn alert_rules() -> Vec<Value> {
    let documents = yaml_documents(&deploy_dir().join("prometheus/alerts.yml"));
    documents[0]["groups"]
        .as_array()
        .expect("rule groups")
        .iter()
        .flat_map(|group| group["rules"].as_array().expect("rules").clone())
        .collect()
}

fn grafana_dashboard() -> Value {
    let path = deploy_dir().join("grafana/llm-auto-optimizer.json");
    serde_json::from_str(&read(&path))
        .unwrap_or_else(|error| panic!("{} does not parse: {error}", path.display()))
}

/// Panels, including those nested in collapsed rows.
fn all_panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        out.push(panel);
        if let Some(nested) = panel["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

/// Every PromQL expression of the alert rules and the dashboard (panel targets, and the
/// selector inside `label_values(selector, label)` of template variables).
fn promql_expressions() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for rule in alert_rules() {
        let name = rule["alert"]
            .as_str()
            .or(rule["record"].as_str())
            .expect("a rule is an alert or a record");
        out.push((format!("alerts.yml {name}"), rule["expr"].as_str().expect("expr").to_owned()));
    }
    let dashboard = grafana_dashboard();
    for panel in all_panels(&dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("every target has a PromQL expr");
            out.push((format!("dashboard panel {}", panel["title"]), expr.to_owned()));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().expect("templating") {
        let query =
            variable["query"]["query"].as_str().or(variable["query"].as_str()).unwrap_or_default();
        if let Some(arguments) =
            query.strip_prefix("label_values(").and_then(|rest| rest.strip_suffix(')'))
        {
            let selector =
                arguments.rsplit_once(',').map(|(selector, _)| selector).unwrap_or(arguments);
            out.push((format!("dashboard variable {}", variable["name"]), selector.to_owned()));
        }
    }
    out
}

/// Names the recording rules of `alerts.yml` define (`llmopt:…`): defined in deploy, not
/// exported by the binary.
fn recorded_names() -> BTreeSet<String> {
    alert_rules().iter().filter_map(|rule| rule["record"].as_str().map(str::to_owned)).collect()
}

/// Every metric name the deployment files read from the binary: names in PromQL expressions of
/// the alert rules and the Grafana dashboard, less the recording rules' own names and the
/// series Prometheus writes itself (`up`, …).
pub fn metric_names_used_in_deploy() -> BTreeSet<String> {
    let recorded = recorded_names();
    promql_expressions()
        .iter()
        .flat_map(|(_, expression)| metric_names_in_promql(expression))
        .filter(|name| !recorded.contains(name) && !PROMETHEUS_SYNTHETIC.contains(&name.as_str()))
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// One registered metric family: its name in the exposition (before suffixes), kind and labels.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Family {
    name: String,
    kind: MetricKind,
    labels: BTreeSet<String>,
}

/// Reads the registrations of `metrics.rs` (see the module docs for why from source).
fn exported_families() -> Vec<Family> {
    let path = project_root().join("crates/llm-auto-optimizer/src/metrics.rs");
    let source = read(&path);
    let prefix = source
        .split("Registry::with_prefix(\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .map(|prefix| format!("{prefix}_"))
        .unwrap_or_default();
    // Field types of every struct of the file (`Metrics`, `OptimizerMetrics`, …): `field: Type`,
    // and the fields of every struct as its label set (used only for `Family<XLabels, …>`).
    let mut field_types: BTreeMap<String, String> = BTreeMap::new();
    let mut label_sets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for chunk in source.split("struct ").skip(1) {
        let Some((name, rest)) = chunk.split_once('{') else { continue };
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let body = rest.split("\n}").next().unwrap_or_default();
        let mut labels = BTreeSet::new();
        for line in body.lines().map(str::trim) {
            if line.starts_with("//") || line.starts_with('#') {
                continue;
            }
            let Some((field, ty)) = line.trim_end_matches(',').split_once(':') else { continue };
            let field = field.trim().trim_start_matches("pub ").trim();
            if field.is_empty() || !field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            field_types.insert(field.to_owned(), ty.trim().to_owned());
            labels.insert(field.to_owned());
        }
        label_sets.insert(name.to_owned(), labels);
    }
    let mut families = Vec::new();
    for call in source.split("registry.register(").skip(1) {
        // "name", "help", field.clone()
        let mut strings = call.split('"');
        let name = strings.nth(1).expect("registered name");
        // The metric argument after the help string: `field.clone()` or `self.x.field.clone()`.
        let after_help = call.splitn(5, '"').nth(4).expect("help string");
        let argument = after_help.split(".clone()").next().unwrap_or_default();
        let argument = argument.split(')').next().unwrap_or_default();
        let field: String = argument
            .trim_start_matches(|c: char| c == ',' || c.is_whitespace())
            .rsplit('.')
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        let ty = field_types.get(field.as_str()).unwrap_or_else(|| {
            panic!("registered metric `{name}` uses field `{field}`, not found in a struct")
        });
        let kind = if ty.contains("Histogram") {
            MetricKind::Histogram
        } else if ty.contains("Counter") {
            MetricKind::Counter
        } else if ty.contains("Gauge") {
            MetricKind::Gauge
        } else {
            panic!("metric `{name}` has a type this test does not know: {ty}")
        };
        let labels = label_sets
            .iter()
            .filter(|(set, _)| ty.contains(&format!("<{set},")) || ty.contains(&format!("<{set}>")))
            .flat_map(|(_, labels)| labels.clone())
            .collect();
        families.push(Family { name: format!("{prefix}{name}"), kind, labels });
    }
    assert!(
        families.len() >= 10,
        "read only {} metric registrations from {}",
        families.len(),
        path.display()
    );
    families
}

/// Series names as prometheus-client writes them: counters `_total`, histograms
/// `_bucket` / `_sum` / `_count`, gauges as registered; with each family's labels (`le` on
/// buckets).
fn metric_names_exported() -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for family in exported_families() {
        match family.kind {
            MetricKind::Counter => {
                out.insert(format!("{}_total", family.name), family.labels);
            }
            MetricKind::Gauge => {
                out.insert(family.name, family.labels);
            }
            MetricKind::Histogram => {
                let mut bucket_labels = family.labels.clone();
                bucket_labels.insert("le".to_owned());
                out.insert(format!("{}_bucket", family.name), bucket_labels);
                out.insert(format!("{}_sum", family.name), family.labels.clone());
                out.insert(format!("{}_count", family.name), family.labels);
            }
        }
    }
    out
}

#[test]
fn every_metric_name_in_the_rules_and_dashboard_is_exported() {
    let exported = metric_names_exported();
    let used = metric_names_used_in_deploy();
    assert!(used.len() >= 10, "too few names found, is the extraction broken? {used:?}");
    let missing: Vec<&String> = used.iter().filter(|name| !exported.contains_key(*name)).collect();
    assert!(
        missing.is_empty(),
        "names used in deploy/ that the binary does not export: {missing:?}\nexported: {:?}",
        exported.keys().collect::<Vec<_>>()
    );
}

#[test]
fn every_label_matched_in_a_selector_belongs_to_its_metric() {
    let exported = metric_names_exported();
    // Target labels Prometheus adds at scrape time (prometheus.yml sets namespace and pod).
    let target_labels = ["job", "instance", "namespace", "pod"];
    for (place, expression) in promql_expressions() {
        for (metric, labels) in selector_labels(&expression) {
            let Some(known) = exported.get(&metric) else { continue };
            for label in labels {
                assert!(
                    known.contains(&label) || target_labels.contains(&label.as_str()),
                    "{place}: `{metric}` has no label `{label}` (it has {known:?})"
                );
            }
        }
    }
}

#[test]
fn the_dashboard_shows_every_exported_metric() {
    let dashboard_names: BTreeSet<String> = promql_expressions()
        .iter()
        .filter(|(place, _)| place.starts_with("dashboard"))
        .flat_map(|(_, expression)| metric_names_in_promql(expression))
        .collect();
    for family in exported_families() {
        let shown = dashboard_names.iter().any(|name| {
            name.strip_prefix(&family.name)
                .is_some_and(|suffix| ["", "_total", "_bucket", "_sum", "_count"].contains(&suffix))
        });
        assert!(shown, "no dashboard panel shows `{}`", family.name);
    }
}

#[test]
fn the_alert_rules_cover_what_issue_8_asks_for() {
    let rules = alert_rules();
    let expressions: Vec<(&str, &str)> = rules
        .iter()
        .filter_map(|rule| Some((rule["alert"].as_str()?, rule["expr"].as_str()?)))
        .collect();
    let uses = |needle: &str| expressions.iter().any(|(_, expr)| expr.contains(needle));
    assert!(uses("llmopt_errors_total"), "an error-rate alert");
    assert!(
        uses("llmopt_request_duration_seconds_bucket")
            || uses("llmopt_gateway_overhead_seconds_bucket"),
        "a latency alert"
    );
    assert!(uses("llmopt:cost_usd:projected_month"), "a budget-projection alert");
    assert!(uses("llmopt_collector_dropped"), "a collector-drop alert");
    for rule in &rules {
        if rule["alert"].is_string() {
            assert!(rule["labels"]["severity"].is_string(), "{} has a severity", rule["alert"]);
            assert!(rule["annotations"]["summary"].is_string(), "{} has a summary", rule["alert"]);
        }
    }
    let prometheus = yaml_documents(&deploy_dir().join("prometheus/prometheus.yml")).remove(0);
    for file in prometheus["rule_files"].as_array().expect("rule_files") {
        let file = file.as_str().expect("path");
        assert!(
            deploy_dir().join("prometheus").join(file).is_file(),
            "prometheus.yml loads {file}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The extractor itself, on expressions whose answer is known by hand.

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
}

// ---------------------------------------------------------------------------------------------
// promtool, when installed: the rules parse as Prometheus parses them, and the alert unit
// tests of deploy/prometheus/alerts_test.yml (values worked out by hand) pass.

#[test]
fn promtool_checks_and_tests_the_rules_when_installed() {
    let prometheus_dir = deploy_dir().join("prometheus");
    let run = |args: &[&str]| {
        std::process::Command::new("promtool").args(args).current_dir(&prometheus_dir).output()
    };
    let Ok(version) = run(&["--version"]) else {
        println!("skipped: promtool is not installed (apt-get install prometheus provides it)");
        return;
    };
    assert!(version.status.success());
    for args in [&["check", "rules", "alerts.yml"][..], &["test", "rules", "alerts_test.yml"][..]] {
        let output = run(args).expect("promtool runs");
        assert!(
            output.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
