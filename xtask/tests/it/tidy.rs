//! Architecture checks that read `cargo metadata`, in the manner of rust-analyzer's tidy tests.
//! They fail when the layering of DESIGN.md is broken, when a crate lacks its `//!` doc, or when
//! a manifest leaves the workspace lints.

use std::{
    collections::{BTreeSet, HashMap, HashSet, VecDeque},
    path::PathBuf,
};

use cargo_metadata::{DependencyKind, Metadata, MetadataCommand, PackageId};

/// DESIGN.md "Layering": a crate may depend only on crates on lower floors.
const FLOORS: &[(&str, u8)] = &[
    ("llmopt-core", 1),
    ("llmopt-storage", 2),
    ("llmopt-analytics", 2),
    ("llmopt-llm", 2),
    ("llmopt-collector", 3),
    ("llmopt-experiments", 3),
    ("llmopt-optimizer", 4),
    ("llmopt-gateway", 5),
    ("llm-auto-optimizer", 6),
];

/// Crates that must stay plain libraries: no runtime, storage engine or HTTP, even transitively.
const PURE: &[&str] = &["llmopt-core", "llmopt-analytics"];
const FORBIDDEN_IN_PURE: &[&str] = &["tokio", "sled", "axum", "hyper", "reqwest"];

/// External crates only one workspace crate may depend on directly.
const OWNERS: &[(&str, &str)] = &[
    ("sled", "llmopt-storage"),
    ("tokio-postgres", "llmopt-storage"),
    ("deadpool-postgres", "llmopt-storage"),
    ("postgres", "llmopt-storage"),
    ("redis", "llmopt-gateway"),
    ("reqwest", "llmopt-llm"),
    ("axum", "llmopt-gateway"),
    ("figment", "llmopt-gateway"),
    ("notify", "llmopt-gateway"),
    ("prometheus-client", "llmopt-gateway"),
    ("clap", "llm-auto-optimizer"),
];

/// Tooling crates outside the product's layering.
const TOOLING: &[&str] = &["xtask", "benches"];

fn metadata() -> Metadata {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    MetadataCommand::new().current_dir(&root).exec().expect("cargo metadata runs")
}

fn floor_of(name: &str) -> Option<u8> {
    FLOORS.iter().find(|(crate_name, _)| *crate_name == name).map(|(_, floor)| *floor)
}

/// Checks a metadata graph; returns one line per violation.
pub fn layering_violations(metadata: &Metadata) -> Vec<String> {
    let mut problems = Vec::new();
    let members: HashSet<&PackageId> = metadata.workspace_members.iter().collect();
    for package in metadata.packages.iter().filter(|p| members.contains(&p.id)) {
        let name = package.name.as_str();
        if TOOLING.contains(&name) {
            continue;
        }
        let Some(floor) = floor_of(name) else {
            problems.push(format!("{name} is a workspace member with no floor in DESIGN.md"));
            continue;
        };
        for dependency in &package.dependencies {
            if dependency.kind == DependencyKind::Development {
                continue;
            }
            let dep_name = dependency.name.as_str();
            if let Some(dep_floor) = floor_of(dep_name)
                && dep_floor >= floor
            {
                problems.push(format!(
                    "{name} (floor {floor}) depends on {dep_name} (floor {dep_floor}): only lower floors are allowed"
                ));
            }
            if let Some((_, owner)) = OWNERS.iter().find(|(external, _)| *external == dep_name)
                && *owner != name
            {
                problems.push(format!("{name} depends on {dep_name}, which only {owner} may know"));
            }
        }
    }
    problems.extend(pure_crate_violations(metadata));
    problems
}

/// Walks normal and build dependencies of the pure crates through the resolved graph.
fn pure_crate_violations(metadata: &Metadata) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(resolve) = &metadata.resolve else {
        return vec!["cargo metadata returned no dependency graph".to_owned()];
    };
    let nodes: HashMap<&PackageId, &cargo_metadata::Node> =
        resolve.nodes.iter().map(|node| (&node.id, node)).collect();
    let names: HashMap<&PackageId, &str> =
        metadata.packages.iter().map(|p| (&p.id, p.name.as_str())).collect();
    for pure in PURE {
        let Some(start) = metadata
            .packages
            .iter()
            .find(|p| p.name.as_str() == *pure && metadata.workspace_members.contains(&p.id))
        else {
            problems.push(format!("{pure} is missing from the workspace"));
            continue;
        };
        let mut seen: HashSet<&PackageId> = HashSet::new();
        let mut queue: VecDeque<(&PackageId, Vec<&str>)> =
            VecDeque::from([(&start.id, vec![*pure])]);
        while let Some((id, path)) = queue.pop_front() {
            if !seen.insert(id) {
                continue;
            }
            let Some(node) = nodes.get(id) else { continue };
            for dep in &node.deps {
                let runtime =
                    dep.dep_kinds.iter().any(|kind| kind.kind != DependencyKind::Development);
                if !runtime {
                    continue;
                }
                let dep_name = names.get(&dep.pkg).copied().unwrap_or("?");
                let mut dep_path = path.clone();
                dep_path.push(dep_name);
                if FORBIDDEN_IN_PURE.contains(&dep_name) {
                    problems.push(format!(
                        "{pure} must not depend on {dep_name}: {}",
                        dep_path.join(" -> ")
                    ));
                }
                queue.push_back((&dep.pkg, dep_path));
            }
        }
    }
    problems
}

#[test]
fn layering_follows_design_md() {
    let problems = layering_violations(&metadata());
    assert!(problems.is_empty(), "layering violations:\n{}", problems.join("\n"));
}

#[test]
fn every_crate_root_has_a_doc_comment() {
    let metadata = metadata();
    let mut missing = BTreeSet::new();
    for package in metadata.workspace_packages() {
        for target in &package.targets {
            let is_root = target.kind.iter().any(|k| {
                matches!(k, cargo_metadata::TargetKind::Lib | cargo_metadata::TargetKind::Bin)
            });
            if !is_root {
                continue;
            }
            let source = std::fs::read_to_string(&target.src_path).unwrap_or_default();
            let first = source.lines().map(str::trim).find(|line| !line.is_empty());
            if !first.is_some_and(|line| line.starts_with("//!")) {
                missing.insert(format!("{} ({})", package.name, target.src_path));
            }
        }
    }
    assert!(missing.is_empty(), "crate roots without a `//!` doc:\n{missing:#?}");
}

#[test]
fn every_member_uses_the_workspace_lints() {
    let metadata = metadata();
    let mut offenders = Vec::new();
    for package in metadata.workspace_packages() {
        let text = std::fs::read_to_string(&package.manifest_path).unwrap_or_default();
        let manifest: toml::Table = text.parse().unwrap_or_default();
        let uses_workspace = manifest
            .get("lints")
            .and_then(|lints| lints.get("workspace"))
            .and_then(toml::Value::as_bool)
            == Some(true);
        if !uses_workspace {
            offenders.push(package.name.to_string());
        }
    }
    assert!(offenders.is_empty(), "members without `[lints] workspace = true`: {offenders:?}");
}

#[test]
fn the_checks_catch_a_runtime_in_the_core() {
    // Take the real graph and pretend llmopt-core depended on tokio: the check must say so.
    let mut metadata = metadata();
    let Some(tokio_id) =
        metadata.packages.iter().find(|p| p.name.as_str() == "tokio").map(|p| p.id.clone())
    else {
        println!("skipped: tokio is not in the graph yet");
        return;
    };
    let core_id = metadata
        .packages
        .iter()
        .find(|p| p.name.as_str() == "llmopt-core")
        .map(|p| p.id.clone())
        .expect("llmopt-core exists");
    let resolve = metadata.resolve.as_mut().expect("graph");
    let core_node = resolve.nodes.iter_mut().find(|n| n.id == core_id).expect("core node");
    let mut fake: cargo_metadata::NodeDep = serde_json::from_value(serde_json::json!({
        "name": "tokio", "pkg": tokio_id.repr,
        "dep_kinds": [{"kind": null, "target": null}]
    }))
    .expect("node dep");
    fake.pkg = tokio_id;
    core_node.deps.push(fake);
    let problems = layering_violations(&metadata);
    assert!(
        problems.iter().any(|p| p.contains("llmopt-core must not depend on tokio")),
        "{problems:#?}"
    );
}

/// Adds a normal dependency `from -> to` to the metadata, as if `from`'s manifest named `to`.
fn add_dependency(metadata: &mut Metadata, from: &str, to: &str) {
    let package = metadata
        .packages
        .iter_mut()
        .find(|p| p.name.as_str() == from)
        .unwrap_or_else(|| panic!("{from} exists"));
    let dependency: cargo_metadata::Dependency = serde_json::from_value(serde_json::json!({
        "name": to, "source": null, "req": "*", "kind": null, "rename": null,
        "optional": false, "uses_default_features": true, "features": [],
        "target": null, "path": null, "registry": null
    }))
    .expect("dependency");
    package.dependencies.push(dependency);
}

#[test]
fn the_checks_catch_an_edge_up_from_the_gateway_or_into_it() {
    // The gateway sits above the optimizer and below the binary: an edge from the gateway to
    // the binary, or from the optimizer to the gateway, breaks the floors.
    let mut metadata = metadata();
    add_dependency(&mut metadata, "llmopt-gateway", "llm-auto-optimizer");
    add_dependency(&mut metadata, "llmopt-optimizer", "llmopt-gateway");
    add_dependency(&mut metadata, "llm-auto-optimizer", "axum");
    let problems = layering_violations(&metadata);
    for expected in [
        "llmopt-gateway (floor 5) depends on llm-auto-optimizer (floor 6)",
        "llmopt-optimizer (floor 4) depends on llmopt-gateway (floor 5)",
        "llm-auto-optimizer depends on axum, which only llmopt-gateway may know",
    ] {
        assert!(problems.iter().any(|p| p.contains(expected)), "{expected}: {problems:#?}");
    }
}
