//! The command line as a user runs it: exit codes and one-line errors.

use std::process::Command;

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_llm-auto-optimizer"))
}

fn fresh_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("llmopt-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn optimize_runs_one_cycle_on_the_configured_store() {
    let dir = fresh_dir("optimize");
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!("[storage]\npath = {:?}\n", dir.join("store").display().to_string()),
    )
    .unwrap();
    let output = binary().args(["optimize", "--json", "--config"]).arg(&config).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["records_read"], 0);
    assert!(report["proposals"].as_array().unwrap().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn serve_refuses_to_be_an_open_proxy_on_the_network() {
    let dir = fresh_dir("exposure");
    let config = dir.join("config.toml");
    let store = dir.join("store").display().to_string();
    std::fs::write(
        &config,
        format!("[server]\nlisten = \"0.0.0.0:0\"\n[storage]\npath = {store:?}\n"),
    )
    .unwrap();
    let output = binary().args(["serve", "--config"]).arg(&config).env_clear().output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("refusing to listen on 0.0.0.0:0 without client keys"), "{stderr}");
    assert!(!dir.join("store").exists(), "refused before the store is opened");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_input_is_one_line_and_a_non_zero_exit() {
    let cases: [&[&str]; 4] = [
        &["analyze", "/nonexistent/trace.jsonl"],
        &["demo", "--requests", "0"],
        &["cost", "--model", "gpt-4o-mni", "--input", "5"],
        &["cost", "--model", "gpt-4o", "--input", "5", "--cached", "9"],
    ];
    for args in cases {
        let output = binary().args(args).output().unwrap();
        assert!(!output.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    }
}

#[test]
fn config_check_prints_the_effective_config_with_secrets_masked() {
    let output = Command::new(env!("CARGO_BIN_EXE_llm-auto-optimizer"))
        .args(["config", "check"])
        .current_dir(std::env::temp_dir())
        // Other tests of this binary change the process environment (figment's Jail).
        .env_clear()
        .env("OPENAI_API_KEY", "sk-live-do-not-print-42")
        .env("OPTIMIZER_PROVIDERS__OPENAI__BASE_URL", "http://127.0.0.1:9999/v1")
        .output()
        .expect("run the binary");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("http://127.0.0.1:9999/v1"), "{stdout}");
    assert!(stdout.contains("***** (from OPENAI_API_KEY)"), "{stdout}");
    assert!(!stdout.contains("sk-live-do-not-print-42"), "{stdout}");

    let bad = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bad.path(), "[server]\nlisen = 1\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_llm-auto-optimizer"))
        .args(["config", "check"])
        .arg(bad.path())
        .env_clear()
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("lisen"));
}

#[test]
fn serve_on_a_postgres_that_is_down_is_one_line_without_the_password() {
    let dir = fresh_dir("postgres-down");
    let config = dir.join("config.toml");
    std::fs::write(&config, "[storage]\nbackend = \"postgres\"\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let output = binary()
        .args(["serve", "--config"])
        .arg(&config)
        .env_clear()
        .env(
            "LLMOPT_POSTGRES_URL",
            format!("postgresql://llmopt:pw-s3cret@127.0.0.1:{port}/llmopt"),
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with(&format!("error: cannot connect to PostgreSQL at 127.0.0.1:{port}: ")),
        "{stderr}"
    );
    assert!(!stderr.contains("pw-s3cret"), "{stderr}");
    // Without the URL, the message names the variable to set.
    let output = binary().args(["serve", "--config"]).arg(&config).env_clear().output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("LLMOPT_POSTGRES_URL"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
