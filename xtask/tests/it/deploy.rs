//! Checks of the deployment files in `deploy/` as files (issue 8):
//! - every YAML file parses (all documents), the Grafana dashboard JSON parses with unique
//!   panel ids;
//! - the Kubernetes manifests hang together: one replica with the Recreate strategy (sled is
//!   single-process), liveness on `/health` and readiness on `/ready`, the PVC, ConfigMap and
//!   Secret the Deployment names exist, the Service reaches the container port, resources are set;
//! - the ConfigMap's `production.toml` only uses keys of `config/default.toml` (the binary refuses
//!   unknown keys at start);
//! - the Dockerfile is multi-stage, runs as a non-root user, has a health check on `/health`, a
//!   data volume, and exposes the port the gateway listens on;
//! - the alert rules cover what issue 8 asks for (error rate, latency, budget projection,
//!   collector drops), each with a severity and a summary, and `prometheus.yml` loads them;
//! - when `promtool` is installed, the rules pass `promtool check rules` and the alert unit tests
//!   of `deploy/prometheus/alerts_test.yml` (skipped with a message otherwise).
//!
//! Whether the metric names and labels the rules and the dashboard read are ones the binary
//! exports is checked elsewhere, against the real thing: `deploy_metrics` in the binary crate's
//! integration tests (`crates/llm-auto-optimizer/tests/it/deploy_metrics.rs`) starts a gateway,
//! sends calls through it, and parses its `/metrics` text. That needs the binary's library, which
//! xtask does not build.

use std::{
    collections::BTreeSet,
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
fn the_production_overlays_only_use_known_keys() {
    let defaults: toml::Table =
        read(&project_root().join("config/default.toml")).parse().expect("default.toml");
    let mut known = BTreeSet::new();
    key_paths(&defaults, "", &mut known);
    for overlay in ["k8s/production.toml", "k8s-fleet/production.toml"] {
        let table: toml::Table = read(&deploy_dir().join(overlay)).parse().expect(overlay);
        let mut used = BTreeSet::new();
        key_paths(&table, "", &mut used);
        assert!(!used.is_empty());
        let unknown: Vec<&String> = used.difference(&known).collect();
        assert!(unknown.is_empty(), "{overlay} keys missing from config/default.toml: {unknown:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Several replicas: deploy/k8s-fleet and deploy/compose.yaml.

fn fleet_objects() -> Vec<(PathBuf, Value)> {
    files_with_extensions(&deploy_dir().join("k8s-fleet"), &["yaml", "yml"])
        .into_iter()
        .flat_map(|path| yaml_documents(&path).into_iter().map(move |doc| (path.clone(), doc)))
        .collect()
}

#[test]
fn the_fleet_runs_two_replicas_on_the_engines_named_in_a_secret() {
    let objects = fleet_objects();
    let deployment = the_one(&objects, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(deployment["spec"]["strategy"]["type"], "RollingUpdate");
    assert!(object(&objects, "PersistentVolumeClaim").is_empty(), "no embedded store");
    let container = gateway_container(deployment);
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/ready");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/health");
    // The engines' URLs come from a Secret that the Deployment requires and whose example
    // names both variables the gateway reads.
    let secret = yaml_documents(&deploy_dir().join("k8s-fleet/secret.example.yaml")).remove(0);
    let refs: Vec<&Value> = container["envFrom"]
        .as_array()
        .expect("envFrom")
        .iter()
        .map(|source| &source["secretRef"])
        .collect();
    let engines = refs
        .iter()
        .find(|secret_ref| secret_ref["name"] == secret["metadata"]["name"])
        .expect("the Deployment reads the engines' Secret");
    assert_ne!(engines["optional"], true, "without the URLs the gateway must not start");
    for key in ["LLMOPT_POSTGRES_URL", "LLMOPT_REDIS_URL"] {
        assert!(secret["stringData"].get(key).is_some(), "the Secret example names {key}");
    }
    let overlay: toml::Table =
        read(&deploy_dir().join("k8s-fleet/production.toml")).parse().expect("production.toml");
    assert_eq!(overlay["storage"]["backend"].as_str(), Some("postgres"));
    assert_eq!(overlay["cache"]["backend"].as_str(), Some("redis"));
    let kustomization = the_one(&objects, "Kustomization");
    let resources: Vec<&str> =
        kustomization["resources"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    for file in &resources {
        assert!(deploy_dir().join("k8s-fleet").join(file).is_file(), "{file} is listed");
    }
    assert!(!resources.contains(&"secret.example.yaml"), "re-applying never blanks the URLs");
    let budget = the_one(&objects, "PodDisruptionBudget");
    assert_eq!(budget["spec"]["minAvailable"], 1);
}

#[test]
fn compose_runs_two_gateways_on_postgres_and_redis_with_prometheus_and_grafana() {
    let compose = yaml_documents(&deploy_dir().join("compose.yaml")).remove(0);
    let services = compose["services"].as_object().expect("services");
    for name in ["postgres", "redis", "gateway-1", "gateway-2", "prometheus", "grafana"] {
        assert!(services.contains_key(name), "compose has {name}");
    }
    for gateway in ["gateway-1", "gateway-2"] {
        let service = &services[gateway];
        let environment = &service["environment"];
        assert_eq!(environment["OPTIMIZER_STORAGE__BACKEND"], "postgres", "{gateway}");
        assert_eq!(environment["OPTIMIZER_CACHE__BACKEND"], "redis", "{gateway}");
        let postgres_url = environment["LLMOPT_POSTGRES_URL"].as_str().expect("postgres URL");
        assert!(postgres_url.contains("@postgres:5432/"), "{postgres_url}");
        assert_eq!(environment["LLMOPT_REDIS_URL"], "redis://redis:6379/0");
        for engine in ["postgres", "redis"] {
            assert_eq!(service["depends_on"][engine]["condition"], "service_healthy");
        }
        // No keys configured: published on loopback only.
        for port in service["ports"].as_array().expect("ports") {
            assert!(port.as_str().is_some_and(|p| p.starts_with("127.0.0.1:")), "{port}");
        }
    }
    let prometheus =
        yaml_documents(&deploy_dir().join("prometheus/prometheus.compose.yml")).remove(0);
    let job = &prometheus["scrape_configs"][0];
    assert_eq!(job["job_name"], "llm-auto-optimizer");
    assert_eq!(
        job["static_configs"][0]["targets"],
        serde_json::json!(["gateway-1:8080", "gateway-2:8080"])
    );
    // Every file compose mounts exists.
    for service in services.values() {
        for volume in service["volumes"].as_array().into_iter().flatten() {
            let source = volume.as_str().expect("short volume syntax").split(':').next().unwrap();
            if source.starts_with("./") {
                assert!(deploy_dir().join(source).exists(), "compose mounts {source}");
            }
        }
    }
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
// Prometheus rules and the Grafana dashboard as files (their PromQL is checked against the
// rendered `/metrics` in `crates/llm-auto-optimizer/tests/it/deploy_metrics.rs`).

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
