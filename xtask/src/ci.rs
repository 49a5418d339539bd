//! `cargo xtask ci`: formatting, clippy with warnings denied, and the whole test suite
//! (nextest when installed, cargo test otherwise; doc tests always through cargo test).

use anyhow::Result;
use xshell::{Shell, cmd};

pub fn run(args: &[String]) -> Result<()> {
    let sh = Shell::new()?;
    sh.change_dir(project_root());
    cmd!(sh, "cargo fmt --all -- --check").run()?;
    cmd!(sh, "cargo clippy --workspace --all-targets --locked -- -D warnings").run()?;
    let nextest =
        cmd!(sh, "cargo nextest --version").quiet().ignore_stdout().ignore_stderr().run().is_ok();
    if nextest && !args.iter().any(|a| a == "--no-nextest") {
        cmd!(sh, "cargo nextest run --workspace --locked --no-fail-fast").run()?;
        cmd!(sh, "cargo test --workspace --locked --doc").run()?;
    } else {
        cmd!(sh, "cargo test --workspace --locked --no-fail-fast").run()?;
    }
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
