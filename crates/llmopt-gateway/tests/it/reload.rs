//! Hot reload: a valid change applies without a restart, an invalid one is ignored.

use std::path::Path;

use llmopt_gateway::{config::ConfigSource, server::watch_config, state::ReloadEvent};

use crate::support::{TestGateway, config_text, sim_server};

/// Replaces a file atomically, as editors and config management do.
fn replace(path: &Path, text: &str) {
    let temporary = path.with_extension("tmp-write");
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

#[tokio::test]
async fn valid_changes_apply_and_invalid_ones_are_ignored() {
    let sim = sim_server(0.0).await;
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("gateway.toml");
    std::fs::write(&path, config_text(&sim, "")).unwrap();
    let source = ConfigSource { base_file: Some(path.clone()), env_file: None };
    let gateway = TestGateway::with_source(source.load().unwrap(), Some(source.clone()));
    let mut events = gateway.state.subscribe_reloads();
    let _watcher = watch_config(&source, gateway.state.clone()).unwrap().expect("a watcher");
    let before = gateway.state.runtime();
    assert!(!before.config.cache.enabled);

    replace(
        &path,
        &config_text(&sim, "[cache]\nenabled = true\n[aliases]\nquick = \"sim-small\"\n"),
    );
    let event = tokio::time::timeout(std::time::Duration::from_secs(20), events.recv())
        .await
        .expect("a reload event")
        .unwrap();
    assert_eq!(event, ReloadEvent::Applied);
    let after = gateway.state.runtime();
    assert!(after.config.cache.enabled);
    assert_eq!(after.routes.resolve_alias("quick"), "sim-small");
    // The old snapshot is untouched: requests in flight keep it.
    assert!(!before.config.cache.enabled);

    replace(
        &path,
        &config_text(&sim, "[routes.broken]\nmodels = [\"x\"]\nprovider = \"missing\"\n"),
    );
    let event = tokio::time::timeout(std::time::Duration::from_secs(20), events.recv())
        .await
        .expect("a reload event")
        .unwrap();
    match event {
        ReloadEvent::Rejected(reason) => assert!(reason.contains("missing"), "{reason}"),
        ReloadEvent::Applied => panic!("an invalid configuration was applied"),
    }
    assert!(gateway.state.runtime().config.cache.enabled, "the previous configuration stays");
}
