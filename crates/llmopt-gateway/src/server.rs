//! `serve`: open the store, start the collector, build the runtime, listen, watch the
//! configuration, and shut down gracefully.

use std::{future::Future, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use axum::serve::{Listener, ListenerExt};
use llmopt_core::{Clock, SystemClock};
use llmopt_storage::{PgStore, RetentionReport, SledStore};
use notify::{RecursiveMode, Watcher};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::mpsc,
};

use crate::{
    config::{Config, ConfigSource, POSTGRES_URL_ENV, StorageBackend, StorageSection},
    error::{Error, Result},
    overlay::{CycleGate, spawn_policy_follower, spawn_schedule},
    router,
    state::{AppState, GatewayInit, SecretSource, Stores, environment_secrets},
};

/// Runs the gateway until SIGTERM or SIGINT.
pub async fn serve(source: ConfigSource, config: Config) -> Result<()> {
    // Virtual keys made at run time protect the gateway as configured keys do; a sled store
    // that does not exist yet holds none, and is not created for a refusal.
    let exposure = check_exposure(&config);
    if exposure.is_err()
        && config.storage.backend == crate::config::StorageBackend::Sled
        && !config.storage.path.is_dir()
    {
        return exposure;
    }
    let secrets = environment_secrets();
    let store = open_store(&config.storage, &secrets).await?;
    if let Err(error) = exposure {
        let keys = store.stores().keys;
        let has_virtual_keys = tokio::task::spawn_blocking(move || {
            llmopt_core::KeyStore::list(keys.as_ref()).map(|keys| !keys.is_empty())
        })
        .await
        .map_err(|e| Error::Storage(e.to_string()))?
        .map_err(|e| Error::Storage(format!("virtual keys: {e}")))?;
        if !has_virtual_keys {
            return Err(error);
        }
    }
    tracing::info!(store = %store.describe(), "store open");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let listen = config.server.listen;
    let threads = io_threads(config.server.threads);
    let grace = Duration::from_millis(config.server.shutdown_grace_ms);
    let schedule = config.optimizer.schedule.clone();
    let state = AppState::build(GatewayInit {
        config,
        stores: store.stores(),
        clock: Arc::clone(&clock),
        secrets,
        config_source: Some(source.clone()),
    })?;
    let _schedule = match &schedule {
        Some(schedule) => Some(spawn_schedule(state.clone(), schedule, store.cycle_gate())?),
        None => None,
    };
    // Replicas sharing a store take in each other's policy versions.
    let _policy_follower = match &store {
        OpenStore::Postgres(_) => Some(spawn_policy_follower(state.clone())),
        OpenStore::Sled(_) => None,
    };
    let _watcher = watch_config(&source, state.clone())?;
    spawn_retention(store.clone(), state.runtime().config.storage.clone(), Arc::clone(&clock));
    if open_to_the_network(&state.runtime().config) && !state.runtime().auth.enabled() {
        spawn_open_proxy_warning(listen);
    }
    let listener = TcpListener::bind(listen).await?;
    tracing::info!(address = %listener.local_addr()?, threads, "listening");
    #[cfg(feature = "grpc")]
    let _grpc = {
        let grpc = state.runtime().config.grpc.clone();
        if grpc.enabled {
            let listener = TcpListener::bind(grpc.listen).await?;
            tracing::info!(address = %listener.local_addr()?, "gRPC listening");
            Some(tokio::spawn(crate::grpc::serve(state.clone(), listener, shutdown_signal())))
        } else {
            None
        }
    };
    state.set_ready(true);
    let result =
        run_server_threads(listener, threads, state.clone(), shutdown_signal(), grace).await;
    state.set_ready(false);
    if let Some(telemetry) = state.telemetry()
        && !telemetry.flush(grace).await
    {
        tracing::warn!("OpenTelemetry spans not exported within the shutdown grace");
    }
    if let Err(error) = close_store(state, store).await {
        tracing::error!(%error, "flush at shutdown failed");
    }
    tracing::info!("stopped");
    result
}

/// Whether the gateway would serve a non-loopback address without client keys.
fn open_to_the_network(config: &Config) -> bool {
    !config.server.listen.ip().is_loopback() && config.auth.keys.is_empty()
}

/// Refuses to start an open proxy on the network: without client keys, anyone who reaches a
/// non-loopback address spends the operator's provider keys. `auth.allow_unauthenticated =
/// true` says it is meant (a private network, a proxy in front that authenticates).
pub fn check_exposure(config: &Config) -> Result<()> {
    if open_to_the_network(config) && !config.auth.allow_unauthenticated {
        return Err(Error::Config(format!(
            "refusing to listen on {} without client keys: anyone who can reach it would spend \
             your provider keys. Add keys under [auth] keys (`llm-auto-optimizer config \
             hash-key KEY` prints a digest), listen on 127.0.0.1, or set \
             auth.allow_unauthenticated = true",
            config.server.listen
        )));
    }
    if config.grpc.enabled
        && !config.grpc.listen.ip().is_loopback()
        && config.auth.keys.is_empty()
        && !config.auth.allow_unauthenticated
    {
        return Err(Error::Config(format!(
            "refusing to serve gRPC on {} without client keys (its statistics would be open to \
             the network): add keys under [auth] keys, listen on 127.0.0.1, or set \
             auth.allow_unauthenticated = true",
            config.grpc.listen
        )));
    }
    Ok(())
}

/// Says so at start and every hour while an open proxy serves the network.
fn spawn_open_proxy_warning(listen: SocketAddr) {
    tokio::spawn(async move {
        let mut every_hour = tokio::time::interval(Duration::from_secs(3600));
        loop {
            every_hour.tick().await;
            tracing::warn!(
                %listen,
                "serving without client keys on a non-loopback address \
                 (auth.allow_unauthenticated = true): anyone who reaches it spends the provider keys"
            );
        }
    });
}

/// The store a gateway runs on, as `storage.backend` chose it.
#[derive(Debug, Clone)]
pub enum OpenStore {
    Sled(SledStore),
    Postgres(PgStore),
}

impl OpenStore {
    /// The three stores of this backend.
    pub fn stores(&self) -> Stores {
        match self {
            OpenStore::Sled(store) => Stores::sled(store),
            OpenStore::Postgres(store) => Stores::postgres(store),
        }
    }

    /// Where it is, for logs: a path, or PostgreSQL's host, port and database (no credentials).
    pub fn describe(&self) -> String {
        match self {
            OpenStore::Sled(store) => store.path().display().to_string(),
            OpenStore::Postgres(store) => store.location().to_string(),
        }
    }

    /// Who runs scheduled optimization cycles: the one leader of the replicas on PostgreSQL,
    /// or this process alone on its sled directory.
    pub fn cycle_gate(&self) -> CycleGate {
        match self {
            OpenStore::Sled(_) => CycleGate::Always,
            OpenStore::Postgres(store) => CycleGate::Leader(store.leadership("optimizer-cycle")),
        }
    }

    /// One retention pass with the section's limits.
    pub fn run_retention(
        &self,
        now_ms: i64,
        section: &StorageSection,
    ) -> std::result::Result<RetentionReport, llmopt_core::StoreError> {
        match self {
            OpenStore::Sled(store) => store.run_retention(now_ms),
            OpenStore::Postgres(store) => {
                store.run_retention(now_ms, section.storage_config().raw_retention)
            }
        }
    }

    /// Makes everything written durable (PostgreSQL commits every batch: nothing to do).
    pub fn flush(&self) -> std::result::Result<(), llmopt_core::StoreError> {
        match self {
            OpenStore::Sled(store) => store.flush(),
            OpenStore::Postgres(_) => Ok(()),
        }
    }
}

/// Opens the store `storage.backend` names, blocking: sled at `storage.path`, or PostgreSQL at
/// the URL in `LLMOPT_POSTGRES_URL` (read through `secrets`, never logged). A PostgreSQL that
/// cannot be reached is one line: `cannot connect to PostgreSQL at HOST:PORT: cause`.
pub fn open_store_blocking(section: &StorageSection, secrets: &SecretSource) -> Result<OpenStore> {
    match section.backend {
        StorageBackend::Sled => SledStore::open(&section.path, section.storage_config())
            .map(OpenStore::Sled)
            .map_err(|e| Error::Storage(e.to_string())),
        StorageBackend::Postgres => {
            let url = secrets(POSTGRES_URL_ENV).ok_or_else(|| {
                Error::Config(format!(
                    "storage.backend = \"postgres\" needs the connection string in \
                     {POSTGRES_URL_ENV} (postgresql://user:password@host:5432/database)"
                ))
            })?;
            PgStore::open(&url).map(OpenStore::Postgres).map_err(|error| match error {
                llmopt_core::StoreError::Io { message, .. }
                    if message.starts_with("cannot connect") =>
                {
                    Error::Unavailable(message)
                }
                other => Error::Storage(other.to_string()),
            })
        }
    }
}

/// [`open_store_blocking`] off the async workers.
pub async fn open_store(section: &StorageSection, secrets: &SecretSource) -> Result<OpenStore> {
    let section = section.clone();
    let secrets = Arc::clone(secrets);
    tokio::task::spawn_blocking(move || open_store_blocking(&section, &secrets))
        .await
        .map_err(|e| Error::Storage(e.to_string()))?
}

/// What a gateway does before it exits, after its server stopped: experiment state
/// checkpointed, the collector's queue written, the store flushed. Every step runs even when an
/// earlier one fails; the first failure is returned.
pub async fn close_store(state: AppState, store: OpenStore) -> Result<()> {
    tokio::task::spawn_blocking(move || {
        let checkpoint = state.optimizer().engine().checkpoint().map_err(|e| e.to_string());
        let collector = state.collector().shutdown().map_err(|e| e.to_string());
        let flush = store.flush().map_err(|e| e.to_string());
        checkpoint.and(collector).and(flush).map_err(Error::Storage)
    })
    .await
    .map_err(|e| Error::Storage(e.to_string()))?
}

/// Opens the sled store of `[storage]` off the async workers.
pub async fn open_sled(section: &StorageSection) -> Result<SledStore> {
    let path = section.path.clone();
    let storage = section.storage_config();
    tokio::task::spawn_blocking(move || SledStore::open(&path, storage))
        .await
        .map_err(|e| Error::Storage(e.to_string()))?
        .map_err(|e| Error::Storage(e.to_string()))
}

/// What a gateway on sled does before it exits, after its server stopped: experiment state
/// checkpointed, the collector's queue written, the store flushed. Every step runs even when an
/// earlier one fails; the first failure is returned.
pub async fn close_sled(state: AppState, store: SledStore) -> Result<()> {
    close_store(state, OpenStore::Sled(store)).await
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
    let listener = listener.tap_io(set_nodelay);
    serve_listener(listener, state, shutdown, grace).await
}

fn set_nodelay(stream: &mut TcpStream) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY");
    }
}

/// The number of I/O threads `server.threads` asks for (0: one per core).
pub fn io_threads(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// Serves `state` on `threads` I/O threads, each running its own single-threaded tokio
/// runtime, until `shutdown` resolves; then each waits at most `grace` for its requests in
/// flight. An acceptor on the calling runtime hands accepted connections to the threads in
/// turn, and a connection stays on its thread: the server side of a request, its handler and
/// its upstream call run on one thread, with none of the wakeups between workers a
/// work-stealing runtime makes for every request (thread per core, as Envoy's workers and
/// Pingora without work stealing). The gateway bench measured one thread at 57–60 µs of CPU per
/// proxied call against 70–78 µs on tokio's two-worker runtime.
pub async fn run_server_threads(
    listener: TcpListener,
    threads: usize,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> Result<()> {
    let local = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Result<()>>();
    let threads = threads.max(1);
    let mut senders = Vec::with_capacity(threads);
    let mut handles = Vec::with_capacity(threads);
    for index in 0..threads {
        let (sender, receiver) = mpsc::unbounded_channel();
        senders.push(sender);
        let state = state.clone();
        let mut stop = stop_rx.clone();
        let done = done_tx.clone();
        let handle = std::thread::Builder::new()
            .name(format!("llmopt-io-{index}"))
            .spawn(move || {
                let stopped = async move {
                    let _ = stop.wait_for(|stop| *stop).await;
                };
                let result = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(Error::Io)
                    .and_then(|runtime| {
                        let listener = HandedListener { receiver, local };
                        runtime.block_on(serve_listener(listener, state, stopped, grace))
                    });
                let _ = done.send(result);
            })
            .map_err(Error::Io)?;
        handles.push(handle);
    }
    drop(done_tx);
    let acceptor = async move {
        let mut next = 0;
        loop {
            let (mut stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::error!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            set_nodelay(&mut stream);
            match stream.into_std() {
                Ok(stream) => {
                    // A thread that is gone has reported why through `done`.
                    let _ = senders[next].send((stream, peer));
                    next = (next + 1) % senders.len();
                }
                Err(error) => tracing::warn!(%error, "cannot hand over a connection"),
            }
        }
    };
    let early = tokio::select! {
        () = shutdown => None,
        () = acceptor => None,
        result = done_rx.recv() => result,
    };
    // The acceptor is dropped here: no new connections. Then every thread finishes.
    let _ = stop_tx.send(true);
    let mut outcome = match early {
        Some(Err(error)) => Err(error),
        Some(Ok(())) | None => Ok(()),
    };
    while let Some(result) = done_rx.recv().await {
        if outcome.is_ok() {
            outcome = result;
        }
    }
    let _ = tokio::task::spawn_blocking(move || {
        for handle in handles {
            let _ = handle.join();
        }
    })
    .await;
    outcome
}

/// The connections the acceptor hands to one I/O thread, as a listener axum can serve.
struct HandedListener {
    receiver: mpsc::UnboundedReceiver<(std::net::TcpStream, SocketAddr)>,
    local: SocketAddr,
}

impl Listener for HandedListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match self.receiver.recv().await {
                // Registers the socket with this thread's reactor.
                Some((stream, peer)) => match TcpStream::from_std(stream) {
                    Ok(stream) => return (stream, peer),
                    Err(error) => tracing::warn!(%error, "cannot take over a connection"),
                },
                // The acceptor is gone: shutdown has begun, and ends this server.
                None => std::future::pending::<()>().await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// Serves `state` on any listener until `shutdown` resolves, then waits at most `grace`.
async fn serve_listener<L>(
    listener: L,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> Result<()>
where
    L: Listener,
    L::Addr: std::fmt::Debug,
{
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
fn spawn_retention(store: OpenStore, section: StorageSection, clock: Arc<dyn Clock>) {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_secs(3600));
        loop {
            interval.tick().await;
            let (store, section) = (store.clone(), section.clone());
            let now_ms = clock.now_ms();
            match tokio::task::spawn_blocking(move || store.run_retention(now_ms, &section)).await {
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
