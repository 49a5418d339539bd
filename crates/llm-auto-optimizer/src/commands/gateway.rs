//! The commands around the gateway: `serve`, `optimize` (one cycle on a store the gateway is not
//! running on) and `config check`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use llmopt_core::PriceCatalog;
use llmopt_gateway::config::ConfigSource;

/// `serve`: the gateway until SIGTERM or SIGINT.
pub fn serve(config_file: Option<PathBuf>) -> Result<()> {
    let source = ConfigSource::discover(config_file.as_deref());
    let config = source.load()?;
    let _log_guard = llmopt_gateway::logging::init(&config.logging)?;
    // Connections are served by the I/O threads `serve` starts (`server.threads`); this
    // runtime only accepts them and runs background work, for which one worker is enough.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("llmopt-control")
        .build()
        .context("cannot start the async runtime")?;
    let grace = std::time::Duration::from_millis(config.server.shutdown_grace_ms);
    let served = runtime.block_on(llmopt_gateway::server::serve(source, config));
    // Blocking work still running (a report's query) is not waited for beyond the grace
    // period and a second: every query's work is bounded, but shutdown must not depend on it.
    runtime.shutdown_timeout(grace + std::time::Duration::from_secs(1));
    served?;
    Ok(())
}

/// `optimize`: one optimization cycle now.
pub fn optimize(config_file: Option<PathBuf>, json: bool) -> Result<()> {
    use std::sync::Arc;
    let source = ConfigSource::discover(config_file.as_deref());
    let config = source.load()?;
    let store = llmopt_gateway::server::open_store_blocking(
        &config.storage,
        &llmopt_gateway::state::environment_secrets(),
    )
    .with_context(|| match config.storage.backend {
        llmopt_gateway::config::StorageBackend::Sled => format!(
            "cannot open the store at `{}` (is the gateway running on it?)",
            config.storage.path.display()
        ),
        llmopt_gateway::config::StorageBackend::Postgres => "cannot open the store".to_owned(),
    })?;
    let clock: Arc<dyn llmopt_core::Clock> = Arc::new(llmopt_core::SystemClock);
    let overlay = llmopt_gateway::overlay::OptimizerOverlay::open(
        &store.stores(),
        Arc::new(PriceCatalog::builtin()),
        clock,
        config.optimizer.clone(),
    )
    .map_err(anyhow::Error::msg)?;
    let optimizer = overlay.optimizer();
    let report = optimizer.run_cycle()?;
    optimizer.engine().checkpoint()?;
    store.flush()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "cycle at {} ms: {} records read, {} proposals, {} experiments started, {} adopted, {} rejected",
        report.at_ms,
        report.records_read,
        report.proposals.len(),
        report.started.len(),
        report.adopted.len(),
        report.rejected.len()
    );
    for proposal in &report.proposals {
        println!("{}", llm_auto_optimizer::demo::proposal_line(proposal));
    }
    Ok(())
}

/// `config check`: validates the layered configuration and prints it with secrets masked.
pub fn check_config(file: Option<PathBuf>) -> Result<()> {
    let source = ConfigSource::discover(file.as_deref());
    let config = source.load()?;
    println!("# configuration is valid");
    match &source.base_file {
        Some(path) => println!("# base file: {}", path.display()),
        None => println!("# base file: built-in default"),
    }
    if let Some(path) = &source.env_file {
        println!("# environment file: {}", path.display());
    }
    print!("{}", config.render_masked()?);
    Ok(())
}
