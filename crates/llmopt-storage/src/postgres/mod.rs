//! PostgreSQL implementations of the three store seams, for several gateway replicas sharing
//! one database (DESIGN.md, "Scale").
//!
//! Design choices:
//! - **tokio-postgres with a deadpool pool, on a runtime the store owns.** The seams are
//!   synchronous (the collector's writer is a plain thread, the gateway calls stores inside
//!   `spawn_blocking`), so each call is spawned on a small runtime owned by [`PgStore`] and the
//!   calling thread waits for its answer on a channel. Unlike the blocking `postgres` crate
//!   (which runs its own `block_on` and panics when called from inside any tokio runtime), this
//!   is safe from every thread, async workers included. deadpool replaces broken connections
//!   by itself, so the store recovers when the server comes back without being reopened.
//! - **Numbered migrations** (`migrations/postgres/NNNN_name.sql`, [`migrations`]) run at open
//!   under an advisory lock (replicas starting together apply them once) and are recorded in
//!   `llmopt_schema_migrations`; a database migrated by a newer build is refused with an error
//!   that says so.
//! - **Records** ([`records`]) live in a table partitioned by UTC day, partitions created on
//!   demand; a batch is one multi-row `INSERT … SELECT FROM unnest(…)` in one transaction.
//!   Retention drops whole partitions. Aggregates are SQL `GROUP BY` over raw records, with
//!   exact sums (`numeric`) and exact interpolated quantiles (`percentile_cont`).
//! - **The connection string** is the caller's (the gateway reads it from
//!   `LLMOPT_POSTGRES_URL`); errors and `Debug` name only host, port and database, never the
//!   user or password.

mod docs;
mod migrations;
mod records;

use std::{
    future::Future,
    str::FromStr,
    sync::{Arc, mpsc},
    time::Duration,
};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use llmopt_core::StoreError;
use tokio_postgres::NoTls;

pub use self::{
    docs::{PgExperimentStore, PgKeyStore, PgPolicyStore},
    migrations::SCHEMA_VERSION as PG_SCHEMA_VERSION,
    records::PgRecordStore,
};
use crate::Result;

/// Most connections one process opens.
const POOL_SIZE: usize = 8;
/// How long a call waits for a connection (from the pool, or a new one) before it fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the store is, for messages: `host:port/database`, never credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgLocation {
    pub host_port: String,
    pub database: String,
}

impl std::fmt::Display for PgLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "postgresql://{}/{}", self.host_port, self.database)
    }
}

fn location_of(config: &tokio_postgres::Config) -> PgLocation {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let database = config
        .get_dbname()
        .or(config.get_user())
        .map_or_else(|| "postgres".to_owned(), str::to_owned);
    PgLocation { host_port: format!("{host}:{port}"), database }
}

/// The connection pool and the runtime that drives it, shared by the three stores.
pub(crate) struct Engine {
    pool: Pool,
    /// For connections outside the pool (the leadership session).
    config: tokio_postgres::Config,
    location: PgLocation,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("location", &self.location.to_string()).finish()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which tokio forbids inside another runtime (a gateway
        // dropping its state in an async test): let its threads end in the background.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Engine {
    /// Runs `work` on the store's runtime and waits for it on the calling thread.
    pub(crate) fn run<T, F>(&self, work: impl FnOnce(Pool) -> F) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        let Some(runtime) = &self.runtime else {
            return Err(self.io("the store is closed"));
        };
        let (sender, receiver) = mpsc::sync_channel(1);
        let future = work(self.pool.clone());
        runtime.spawn(async move {
            let _ = sender.send(future.await);
        });
        receiver.recv().map_err(|_| self.io("the store's runtime stopped"))?
    }

    pub(crate) fn io(&self, message: impl std::fmt::Display) -> StoreError {
        StoreError::Io { path: self.location.to_string(), message: message.to_string() }
    }

    pub(crate) fn location(&self) -> &PgLocation {
        &self.location
    }
}

/// Maps errors of a pooled call to the core's kinds (every server or connection error is `Io`:
/// the caller can retry it).
pub(crate) fn pool_error(location: &PgLocation, error: deadpool_postgres::PoolError) -> StoreError {
    let message = match error {
        deadpool_postgres::PoolError::Backend(error) => describe(&error),
        deadpool_postgres::PoolError::Timeout(_) => {
            format!(
                "no connection to PostgreSQL at {} within {CONNECT_TIMEOUT:?}",
                location.host_port
            )
        }
        other => other.to_string(),
    };
    StoreError::Io { path: location.to_string(), message }
}

pub(crate) fn db_error(location: &PgLocation, error: &tokio_postgres::Error) -> StoreError {
    StoreError::Io { path: location.to_string(), message: describe(error) }
}

/// A tokio-postgres error with its cause (`Display` alone says only "error connecting to
/// server" or "db error").
pub(crate) fn describe(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{} ({})", db.message(), db.code().code());
    }
    match std::error::Error::source(error) {
        Some(source) => format!("{error}: {source}"),
        None => error.to_string(),
    }
}

/// One PostgreSQL database and the stores over it.
#[derive(Debug, Clone)]
pub struct PgStore {
    engine: Arc<Engine>,
    records: Arc<PgRecordStore>,
    experiments: Arc<PgExperimentStore>,
    policy: Arc<PgPolicyStore>,
    keys: Arc<PgKeyStore>,
}

impl PgStore {
    /// Connects to `url` (`postgresql://user:password@host:port/database` or key=value form),
    /// runs pending migrations and opens the stores. Errors name the host, port and database,
    /// never the credentials: `cannot connect to PostgreSQL at 127.0.0.1:5432: …`.
    pub fn open(url: &str) -> Result<PgStore> {
        let mut config = tokio_postgres::Config::from_str(url).map_err(|error| StoreError::Io {
            path: "postgresql".to_owned(),
            // The parser's message quotes no part of the string, but say only what kind of
            // mistake it is, to be sure no secret reaches a log.
            message: format!("the PostgreSQL connection string is malformed: {error}"),
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("llm-auto-optimizer");
        }
        let location = location_of(&config);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("llmopt-postgres")
            .enable_all()
            .build()
            .map_err(|error| StoreError::Io {
                path: location.to_string(),
                message: format!("cannot start the PostgreSQL client's runtime: {error}"),
            })?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|error| StoreError::Io {
                path: location.to_string(),
                message: format!("cannot build the PostgreSQL pool: {error}"),
            })?;
        let engine = Arc::new(Engine { pool, config, location, runtime: Some(runtime) });
        // The first connection tells a server that is down apart from everything after it.
        engine.run({
            let location = engine.location().clone();
            move |pool| async move {
                pool.get().await.map(drop).map_err(|error| {
                    let cause = match error {
                        deadpool_postgres::PoolError::Backend(error) => describe(&error),
                        other => other.to_string(),
                    };
                    StoreError::Io {
                        path: location.to_string(),
                        message: format!(
                            "cannot connect to PostgreSQL at {}: {cause}",
                            location.host_port
                        ),
                    }
                })
            }
        })?;
        migrations::run(&engine)?;
        Ok(PgStore {
            records: Arc::new(PgRecordStore::new(Arc::clone(&engine))),
            experiments: Arc::new(PgExperimentStore::new(Arc::clone(&engine))),
            policy: Arc::new(PgPolicyStore::new(Arc::clone(&engine))),
            keys: Arc::new(PgKeyStore::new(Arc::clone(&engine))),
            engine,
        })
    }

    pub fn records(&self) -> Arc<PgRecordStore> {
        Arc::clone(&self.records)
    }

    pub fn experiments(&self) -> Arc<PgExperimentStore> {
        Arc::clone(&self.experiments)
    }

    pub fn policy(&self) -> Arc<PgPolicyStore> {
        Arc::clone(&self.policy)
    }

    /// Virtual keys, shared by every replica.
    pub fn keys(&self) -> Arc<PgKeyStore> {
        Arc::clone(&self.keys)
    }

    /// Host, port and database (no credentials), for logs.
    pub fn location(&self) -> &PgLocation {
        self.engine.location()
    }

    /// The leadership of one fleet-wide task (the optimization cycle): at most one process
    /// holds it at a time.
    pub fn leadership(&self, task: &str) -> PgLeadership {
        PgLeadership {
            engine: Arc::clone(&self.engine),
            key: leadership_key(task),
            session: Arc::new(tokio::sync::Mutex::new(None)),
        }
    }

    /// Deletes raw records older than `raw_retention` before `now_ms` (whole day partitions are
    /// dropped). Aggregates are computed from raw records, so they go with them.
    pub fn run_retention(
        &self,
        now_ms: i64,
        raw_retention: Option<Duration>,
    ) -> Result<crate::RetentionReport> {
        let mut report = crate::RetentionReport::default();
        if let Some(age) = raw_retention {
            let before = now_ms.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX));
            report.raw_deleted = llmopt_core::RecordStore::delete_before(&*self.records, before)?;
        }
        Ok(report)
    }
}

/// The advisory-lock key of a named task: "llmopt" in the high bytes, an FNV-1a hash of the
/// name in the low ones, so that other programs' locks in the same database do not collide.
fn leadership_key(task: &str) -> i64 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in task.bytes() {
        hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
    }
    (0x6c6c_6d6f_i64 << 32) | i64::from(hash)
}

/// Leadership of a fleet-wide task through a PostgreSQL session advisory lock, held on a
/// connection of its own (outside the pool) for as long as this process leads.
///
/// A lock rather than a lease row with an expiry: the server releases it the moment the
/// holder's session ends (the process exits or is killed, its connection breaks, the server
/// restarts), so a successor takes over on its next attempt, with no clock to trust and no
/// expiry to tune. A leader that loses its connection loses the lock with it and finds out on
/// its next [`PgLeadership::try_lead`].
#[derive(Debug, Clone)]
pub struct PgLeadership {
    engine: Arc<Engine>,
    key: i64,
    session: Arc<tokio::sync::Mutex<Option<tokio_postgres::Client>>>,
}

impl PgLeadership {
    /// Whether this process leads now: keeps a lock it holds (checking that its session is
    /// alive), or tries to take it. `Ok(false)`: another process leads.
    pub fn try_lead(&self) -> Result<bool> {
        let (config, location) = (self.engine.config.clone(), self.engine.location().clone());
        let (key, session) = (self.key, Arc::clone(&self.session));
        self.engine.run(move |_pool| async move {
            let mut session = session.lock().await;
            if let Some(client) = session.as_ref() {
                if client.simple_query("SELECT 1").await.is_ok() {
                    return Ok(true);
                }
                // The session is gone, and the lock with it.
                *session = None;
            }
            let (client, connection) =
                config.connect(NoTls).await.map_err(|error| StoreError::Io {
                    path: location.to_string(),
                    message: format!(
                        "cannot connect to PostgreSQL at {}: {}",
                        location.host_port,
                        describe(&error)
                    ),
                })?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            let locked: bool = client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
                .await
                .map_err(|error| db_error(&location, &error))?
                .get(0);
            if locked {
                *session = Some(client);
            }
            Ok(locked)
        })
    }

    /// Gives the leadership up (closing its session).
    pub fn resign(&self) {
        let session = Arc::clone(&self.session);
        let _ = self.engine.run(move |_pool| async move {
            session.lock().await.take();
            Ok(())
        });
    }
}
