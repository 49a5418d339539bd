//! Building the bench binaries of every area in one cargo invocation, and the bench names of
//! `benches/Cargo.toml`.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use serde_json::Value;
use xshell::{Shell, cmd};

/// Builds the bench binaries of `areas` in one `cargo bench --no-run`, so that cargo shares the
/// work (dependencies once, the fat-LTO links of several binaries on both cores) instead of one
/// cargo invocation per area; returns each area's executable, from cargo's JSON messages.
///
/// When that build fails, each area is built on its own, so that a bench that does not compile
/// costs its own figures only: it goes to `failed` and the others still run.
pub(super) fn build_benches(
    sh: &Shell,
    areas: &[String],
    failed: &mut Vec<String>,
) -> Vec<(String, PathBuf)> {
    let build = |areas: &[String]| -> (bool, BTreeMap<String, PathBuf>) {
        let bench_flags: Vec<String> =
            areas.iter().flat_map(|area| ["--bench".to_owned(), area.clone()]).collect();
        // Diagnostics are rendered on stderr; stdout carries one JSON message per line.
        let stdout = cmd!(
            sh,
            "cargo bench -p benches --no-run --message-format=json-render-diagnostics {bench_flags...}"
        )
        .ignore_status()
        .read()
        .unwrap_or_default();
        bench_executables(&stdout)
    };
    let (success, mut executables) = build(areas);
    if !success {
        eprintln!("the bench build failed: building each area on its own");
        for area in areas {
            let (success, built) = build(std::slice::from_ref(area));
            match built.get(area) {
                Some(executable) if success => {
                    executables.insert(area.clone(), executable.clone());
                }
                _ => {
                    executables.remove(area);
                    failed.push(area.clone());
                }
            }
        }
    }
    let mut out = Vec::new();
    for area in areas {
        match executables.get(area) {
            Some(executable) => out.push((area.clone(), executable.clone())),
            None if !failed.contains(area) => failed.push(area.clone()),
            None => {}
        }
    }
    out
}

/// From cargo's `--message-format=json` output: whether the build finished successfully, and
/// the executable of every bench target built (target name → path).
pub fn bench_executables(cargo_stdout: &str) -> (bool, BTreeMap<String, PathBuf>) {
    let mut success = false;
    let mut executables = BTreeMap::new();
    for message in cargo_stdout.lines().filter_map(|line| serde_json::from_str::<Value>(line).ok())
    {
        match message["reason"].as_str() {
            Some("build-finished") => success = message["success"].as_bool() == Some(true),
            Some("compiler-artifact") => {
                let is_bench = message["target"]["kind"]
                    .as_array()
                    .is_some_and(|kinds| kinds.iter().any(|kind| kind == "bench"));
                let name = message["target"]["name"].as_str();
                let executable = message["executable"].as_str();
                if let (true, Some(name), Some(executable)) = (is_bench, name, executable) {
                    executables.insert(name.to_owned(), PathBuf::from(executable));
                }
            }
            _ => {}
        }
    }
    (success, executables)
}

/// `[[bench]]` names of `benches/Cargo.toml` whose source file exists.
pub fn declared_benches(root: &Path) -> Result<Vec<String>> {
    let manifest_path = root.join("benches/Cargo.toml");
    let manifest = fs::read_to_string(&manifest_path)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    let mut names = Vec::new();
    for name in bench_names_in_manifest(&manifest) {
        if root.join("benches/benches").join(format!("{name}.rs")).is_file()
            && !names.contains(&name)
        {
            names.push(name);
        }
    }
    Ok(names)
}

/// The `name` of every `[[bench]]` table, by a line scan: xtask stays free of a TOML parser
/// (it compiles in seconds), and bench tables are written one key per line.
pub fn bench_names_in_manifest(manifest: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_bench_table = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bench_table = line.replace(' ', "") == "[[bench]]";
            continue;
        }
        if !in_bench_table {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else { continue };
        if key.trim() == "name" {
            let value = value.split('#').next().unwrap_or_default().trim().trim_matches('"');
            if !value.is_empty() {
                names.push(value.to_owned());
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_bench_names_in_a_manifest() {
        let manifest = r#"
[package]
name = "benches"

[dependencies]
criterion = { workspace = true }

[[bench]]
name = "core"
harness = false

[[ bench ]]
harness = false
name = "gateway"   # the load comparison

[[test]]
name = "not-a-bench"
"#;
        assert_eq!(
            bench_names_in_manifest(manifest),
            vec!["core".to_owned(), "gateway".to_owned()]
        );
    }

    #[test]
    fn finds_bench_executables_in_cargo_json_messages() {
        // Lines as cargo 1.8x prints them (trimmed to the fields read), plus noise.
        let stdout = r#"{"reason":"compiler-artifact","package_id":"path+file:///w/benches#0.1.0","target":{"kind":["lib"],"name":"benches"},"executable":null}
{"reason":"compiler-artifact","target":{"kind":["bench"],"name":"core"},"executable":"/w/target/release/deps/core-0123abcd"}
{"reason":"compiler-artifact","target":{"kind":["bench"],"name":"gateway"},"executable":"/w/target/release/deps/gateway-4567ef01"}
{"reason":"compiler-artifact","target":{"kind":["test"],"name":"it"},"executable":"/w/target/release/deps/it-89"}
not json at all
{"reason":"build-finished","success":true}
"#;
        let (success, executables) = bench_executables(stdout);
        assert!(success);
        assert_eq!(
            executables.into_iter().collect::<Vec<_>>(),
            vec![
                ("core".to_owned(), PathBuf::from("/w/target/release/deps/core-0123abcd")),
                ("gateway".to_owned(), PathBuf::from("/w/target/release/deps/gateway-4567ef01")),
            ]
        );
        let (success, _) = bench_executables("{\"reason\":\"build-finished\",\"success\":false}\n");
        assert!(!success);
        assert!(!bench_executables("").0, "no build-finished message: not a success");
    }
}
