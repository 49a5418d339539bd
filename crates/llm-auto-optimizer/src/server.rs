//! `serve`: open the store, start the collector, build the runtime, listen, watch the
//! configuration, and shut down gracefully.

use std::{future::Future, path::PathBuf, sync::Arc, time::Duration};

use axum::serve::ListenerExt;
use llmopt_collector::{Collector, CollectorConfig, OverflowPolicy};
use llmopt_core::{Clock, SystemClock};
use llmopt_storage::{SledStore, StorageConfig};
use notify::{RecursiveMode, Watcher};
use tokio::{net::TcpListener, sync::mpsc};

use crate::{
    config::{CollectorSection, Config, ConfigSource, OverflowMode, StorageSection},
    error::{Error, Result},
    router,
    state::{AppState, Runtime, environment_secrets},
};

const DAY: Duration = Duration::from_secs(24 * 3600);

pub fn storage_config(section: &StorageSection) -> StorageConfig {
    let days =
        |n: u64| if n == 0 { None } else { Some(DAY * u32::try_from(n).unwrap_or(u32::MAX)) };
    StorageConfig {
        raw_retention: days(section.raw_retention_days),
        aggregate_retention: days(section.aggregate_retention_days),
        aggregate_window: Duration::from_secs(section.aggregate_window_s.max(1)),
        cache_bytes: section.cache_mb.saturating_mul(1024 * 1024),
    }
}

pub fn collector_config(section: &CollectorSection) -> CollectorConfig {
    CollectorConfig {
        queue_capacity: section.queue_capacity,
        batch_size: section.batch_size,
        flush_interval: Duration::from_millis(section.flush_interval_ms.max(1)),
        window: Duration::from_secs(section.window_s.max(1)),
        windows_kept: section.windows_kept.max(1),
        overflow: match section.overflow {
            OverflowMode::Drop => OverflowPolicy::Drop,
            OverflowMode::Block => {
                OverflowPolicy::Block { max_wait: Duration::from_millis(section.block_max_wait_ms) }
            }
        },
        ..CollectorConfig::default()
    }
}

/// Runs the gateway until SIGTERM or SIGINT.
pub async fn serve(source: ConfigSource, config: Config) -> Result<()> {
    let store_path = config.storage.path.clone();
    let storage = storage_config(&config.storage);
    let store = tokio::task::spawn_blocking(move || SledStore::open(&store_path, storage))
        .await
        .map_err(|e| Error::Storage(e.to_string()))?
        .map_err(|e| Error::Storage(e.to_string()))?;
    tracing::info!(path = %config.storage.path.display(), "store open");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let collector =
        Collector::start(store.records(), Arc::clone(&clock), collector_config(&config.collector));
    let listen = config.server.listen;
    let grace = Duration::from_millis(config.server.shutdown_grace_ms);
    let secrets = environment_secrets();
    let runtime = Runtime::build(config, &secrets, None)?;
    let state = AppState::new(
        runtime,
        collector.clone(),
        Arc::clone(&clock),
        secrets,
        Some(source.clone()),
    );
    let runtime = state.runtime();
    let closed_loop = Arc::new(
        crate::closed_loop::ClosedLoop::open(
            store.records(),
            store.experiments(),
            store.policy(),
            runtime.catalog.clone(),
            Arc::clone(&clock),
            runtime.config.optimizer.clone(),
        )
        .map_err(|e| Error::Config(format!("optimizer: {e:#}")))?,
    );
    state.set_closed_loop(closed_loop.clone());
    state.set_records(store.records());
    let _schedule = match &runtime.config.optimizer.schedule {
        Some(schedule) => Some(
            crate::closed_loop::spawn_schedule(closed_loop.optimizer().clone(), schedule)
                .map_err(|e| Error::Config(e.to_string()))?,
        ),
        None => None,
    };
    drop(runtime);
    let _watcher = watch_config(&source, state.clone())?;
    spawn_retention(store.clone(), Arc::clone(&clock));
    let listener = TcpListener::bind(listen).await?;
    tracing::info!(address = %listener.local_addr()?, "listening");
    state.set_ready(true);
    let result = run_server(listener, state.clone(), shutdown_signal(), grace).await;
    state.set_ready(false);
    let flushed = tokio::task::spawn_blocking(move || {
        if let Err(error) = closed_loop.optimizer().engine().checkpoint() {
            tracing::error!(%error, "experiment checkpoint at shutdown failed");
        }
        let collector_result = collector.shutdown();
        let store_result = store.flush();
        (collector_result, store_result)
    })
    .await
    .map_err(|e| Error::Storage(e.to_string()))?;
    if let Err(error) = flushed.0 {
        tracing::error!(%error, "collector flush at shutdown failed");
    }
    if let Err(error) = flushed.1 {
        tracing::error!(%error, "store flush at shutdown failed");
    }
    tracing::info!("stopped");
    result
}

/// Serves `state` on `listener` until `shutdown` resolves, then waits at most `grace` for
/// in-flight requests. Accepted sockets get `TCP_NODELAY` (Nagle meeting delayed ACK costs
/// ~40 ms per request on loopback otherwise).
pub async fn run_server(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> Result<()> {
    let listener = listener.tap_io(|stream| {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
    });
    let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
    let not_ready = state.clone();
    let server = axum::serve(listener, router(state)).with_graceful_shutdown(async move {
        shutdown.await;
        not_ready.set_ready(false);
        tracing::info!("shutting down: no new connections, finishing requests in flight");
        let _ = signalled_tx.send(());
    });
    let server = server.into_future();
    tokio::pin!(server);
    let grace_elapsed = async move {
        if signalled_rx.await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = &mut server => result.map_err(Error::Io),
        () = grace_elapsed => {
            tracing::warn!(grace_ms = grace.as_millis() as u64, "grace period over; stopping requests still in flight");
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

/// Deletes records past retention once an hour, off the async workers.
fn spawn_retention(store: SledStore, clock: Arc<dyn Clock>) {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_secs(3600));
        loop {
            interval.tick().await;
            let store = store.clone();
            let now_ms = clock.now_ms();
            match tokio::task::spawn_blocking(move || store.run_retention(now_ms)).await {
                Ok(Ok(report)) => tracing::debug!(?report, "retention pass"),
                Ok(Err(error)) => tracing::warn!(%error, "retention pass failed"),
                Err(error) => tracing::warn!(%error, "retention task failed"),
            }
        }
    });
}

/// Watches the configuration files (through their directories, since editors replace files by
/// renaming) and reloads on a change. A burst of events is folded into one reload after the
/// writes settle. The returned watcher must be kept alive.
pub fn watch_config(
    source: &ConfigSource,
    state: AppState,
) -> Result<Option<notify::RecommendedWatcher>> {
    let files: Vec<PathBuf> =
        source.files().into_iter().map(|file| std::path::absolute(&file).unwrap_or(file)).collect();
    if files.is_empty() {
        return Ok(None);
    }
    let (sender, mut receiver) = mpsc::unbounded_channel::<()>();
    let watched = files.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if matches!(event.kind, notify::EventKind::Access(_)) {
            return;
        }
        let relevant = event.paths.iter().any(|path| {
            let path = std::path::absolute(path).unwrap_or_else(|_| path.clone());
            watched.iter().any(|file| file == &path)
        });
        if relevant {
            let _ = sender.send(());
        }
    })
    .map_err(|e| Error::Config(format!("cannot watch the configuration: {e}")))?;
    let mut directories: Vec<PathBuf> =
        files.iter().filter_map(|f| f.parent().map(PathBuf::from)).collect();
    directories.dedup();
    for directory in &directories {
        watcher
            .watch(directory, RecursiveMode::NonRecursive)
            .map_err(|e| Error::Config(format!("cannot watch `{}`: {e}", directory.display())))?;
    }
    tokio::spawn(async move {
        while receiver.recv().await.is_some() {
            // Let a burst of writes settle, then reload once.
            tokio::time::sleep(Duration::from_millis(100)).await;
            while receiver.try_recv().is_ok() {}
            let reloader = state.clone();
            let _ = tokio::task::spawn_blocking(move || reloader.reload()).await;
        }
    });
    Ok(Some(watcher))
}
