//! `cargo xtask ci`: formatting, clippy with warnings denied, the dependency policy of
//! `deny.toml` (cargo-deny: licences, sources, bans; not advisories, see [`deny`]), the
//! PostgreSQL and Redis servers the shared-state tests start (see [`engines`]), the whole
//! test suite (nextest when installed, cargo test otherwise; doc tests always through cargo
//! test), and the official Python SDKs against a running gateway ([`sdk_check`]).

use anyhow::Result;
use xshell::{Shell, cmd};

pub fn run(args: &[String]) -> Result<()> {
    let sh = Shell::new()?;
    sh.change_dir(project_root());
    cmd!(sh, "cargo fmt --all -- --check").run()?;
    cmd!(sh, "cargo clippy --workspace --all-targets --locked -- -D warnings").run()?;
    deny(&sh)?;
    engines(&sh)?;
    let nextest =
        cmd!(sh, "cargo nextest --version").quiet().ignore_stdout().ignore_stderr().run().is_ok();
    // Chromium (the dashboard's browser test) and protoc (the grpc feature), each installed
    // only when missing; the script is quick when everything is there.
    cmd!(sh, "bash scripts/ci/install-tools.sh").run()?;
    let use_nextest = nextest && !args.iter().any(|a| a == "--no-nextest");
    if use_nextest {
        cmd!(sh, "cargo nextest run --workspace --locked --no-fail-fast").run()?;
        cmd!(sh, "cargo test --workspace --locked --doc").run()?;
    } else {
        cmd!(sh, "cargo test --workspace --locked --no-fail-fast").run()?;
    }
    // The gateway's optional parts, linted and tested with their features in one build: the
    // gRPC API (needs protoc, which scripts/ci/install-tools.sh installs) and OpenTelemetry
    // export (the tests of a module named `otel`).
    cmd!(
        sh,
        "cargo clippy -p llmopt-gateway --features grpc,otel --all-targets --locked -- -D warnings"
    )
    .run()?;
    if use_nextest {
        cmd!(sh, "cargo nextest run -p llmopt-gateway --features grpc,otel --locked grpc otel")
            .run()?;
    } else {
        cmd!(sh, "cargo test -p llmopt-gateway --features grpc,otel --locked -- grpc otel")
            .run()?;
    }
    sdk_check(&sh)?;
    // The analytics example is what an analyst runs first: it must keep working on real traces.
    for trace in [
        "crates/llmopt-analytics/tests/data/traces/azure_conv_head1000.csv",
        "crates/llmopt-analytics/tests/data/traces/mooncake_conversation_head600.jsonl",
    ] {
        cmd!(
            sh,
            "cargo run --quiet --locked -p llmopt-analytics --example trace_report -- {trace}"
        )
        .run()?;
    }
    Ok(())
}

/// The official `openai` and `anthropic` Python SDKs (in the venv scripts/ci/install-tools.sh
/// makes) against a gateway and a local mock of both providers' wire formats:
/// scripts/sdk/check_sdks.py, every route an SDK uses, cross-provider calls included.
fn sdk_check(sh: &Shell) -> Result<()> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| project_root().join("target"), std::path::PathBuf::from);
    let python = target.join("sdk-venv/bin/python");
    let binary = target.join("debug/llm-auto-optimizer");
    cmd!(sh, "cargo build --locked -p llm-auto-optimizer").run()?;
    cmd!(sh, "{python} scripts/sdk/check_sdks.py --bin {binary}").run()?;
    Ok(())
}

/// `cargo deny check licenses sources bans` against `deny.toml`: the gateway holds every
/// provider's key, so what enters the dependency tree is checked on every run.
///
/// Advisories (RustSec) are NOT checked: cargo-deny reads them from a git clone of
/// github.com/RustSec/advisory-db, which this project's machines and CI cannot reach (no registry
/// package ships a copy, and `--offline` only reuses an earlier clone). Where GitHub is reachable,
/// run `cargo deny check advisories` by hand.
fn deny(sh: &Shell) -> Result<()> {
    let installed =
        cmd!(sh, "cargo deny --version").quiet().ignore_stdout().ignore_stderr().run().is_ok();
    if !installed {
        // The README's test command must work on a fresh machine: install it (pinned version,
        // about 3 minutes on two cores) rather than fail.
        eprintln!("cargo-deny is not installed: installing it with scripts/ci/install-tools.sh");
        cmd!(sh, "bash scripts/ci/install-tools.sh").run()?;
    }
    // The inclusion graphs of the duplicate-version warnings run to ~1,700 lines; an error names
    // its crate, and `cargo deny check bans` run by hand shows the graph.
    cmd!(sh, "cargo deny --locked check --hide-inclusion-graph licenses sources bans").run()?;
    Ok(())
}

/// The PostgreSQL and Redis servers the shared-state tests start on loopback: installed by
/// `scripts/ci/install-tools.sh` when missing (apt), unless `LLMOPT_SKIP_ENGINES=1` says to
/// skip those tests on this machine.
fn engines(sh: &Shell) -> Result<()> {
    if std::env::var("LLMOPT_SKIP_ENGINES").is_ok_and(|value| value == "1") {
        eprintln!("LLMOPT_SKIP_ENGINES=1: tests that need PostgreSQL or Redis are skipped");
        return Ok(());
    }
    let postgres =
        cmd!(sh, "initdb --version").quiet().ignore_stdout().ignore_stderr().run().is_ok()
            || std::fs::read_dir("/usr/lib/postgresql")
                .into_iter()
                .flatten()
                .flatten()
                .any(|entry| entry.path().join("bin/initdb").is_file());
    let redis =
        cmd!(sh, "redis-server --version").quiet().ignore_stdout().ignore_stderr().run().is_ok();
    if !(postgres && redis) {
        eprintln!(
            "PostgreSQL or Redis is not installed: installing with scripts/ci/install-tools.sh"
        );
        cmd!(sh, "bash scripts/ci/install-tools.sh").run()?;
    }
    Ok(())
}

/// The layering checks alone (they also run as part of the test suite).
pub fn tidy() -> Result<()> {
    let sh = Shell::new()?;
    sh.change_dir(project_root());
    cmd!(sh, "cargo test --package xtask --test it tidy").run()?;
    Ok(())
}

pub fn project_root() -> std::path::PathBuf {
    let manifest_dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().map(std::path::Path::to_path_buf).unwrap_or(manifest_dir)
}
