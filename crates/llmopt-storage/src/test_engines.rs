//! Real PostgreSQL and Redis servers on loopback for tests (feature `test-engines`): the
//! PostgreSQL stores and the gateway's shared cache are tested against the engines themselves,
//! never a mock (STYLE.md, "External engines").
//!
//! A server runs from a data directory under the system's temporary folder, on a free
//! 127.0.0.1 port, with fsync off. PostgreSQL refuses to run as root, so as root it runs as the
//! `postgres` user (Debian's package creates it) through `setpriv`. `initdb` runs once per
//! machine into a template directory that later servers copy (0.1 s instead of 0.6 s).
//!
//! A server started with [`TestPostgres::start`] stops when the value is dropped; the one of
//! [`TestPostgres::shared`] (one per test process: each test of a binary makes its own
//! database) is stopped by a watchdog when the process ends, since statics are never dropped.
//!
//! When the binaries are missing the tests fail with a message saying how to install them
//! (`scripts/ci/install-tools.sh`), unless `LLMOPT_SKIP_ENGINES=1` is set: then the `start`
//! functions return `None` and a test returns early, saying so.
#![allow(clippy::missing_panics_doc)]

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// Set to `1` to skip tests that need PostgreSQL or Redis when they are not installed.
pub const SKIP_ENV: &str = "LLMOPT_SKIP_ENGINES";

const INSTALL_HINT: &str = "install them with `bash scripts/ci/install-tools.sh` (Debian: \
    apt-get install postgresql redis-server), or set LLMOPT_SKIP_ENGINES=1 to skip the tests \
    that need them";

fn skipping(what: &str) -> bool {
    let skip = std::env::var(SKIP_ENV).is_ok_and(|value| value == "1");
    if skip {
        eprintln!("{what} not found and {SKIP_ENV}=1: skipping this test");
    } else {
        panic!("{what} not found: {INSTALL_HINT}");
    }
    skip
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

fn unique_dir(kind: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "llmopt-{kind}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

fn run(command: &mut Command, what: &str) {
    let output = command.output().unwrap_or_else(|error| panic!("{what}: {error}"));
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Stops `pid` (with `signal`) and removes `dir` once this process has ended.
fn spawn_watchdog(pid: u32, signal: &str, dir: &Path) {
    let script = format!(
        "while kill -0 {parent} 2>/dev/null; do sleep 0.5; done; kill -{signal} {pid} \
         2>/dev/null; for i in 1 2 3 4 5 6 7 8 9 10; do kill -0 {pid} 2>/dev/null || break; \
         sleep 0.5; done; rm -rf '{dir}'",
        parent = std::process::id(),
        dir = dir.display()
    );
    let _ = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

fn wait_until(deadline: Duration, what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < deadline, "{what} did not start within {deadline:?}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The directory holding `initdb` and `postgres`: `LLMOPT_PG_BIN`, `pg_config --bindir`, or the
/// newest `/usr/lib/postgresql/*/bin` (Debian does not put the server on the PATH).
fn postgres_bin() -> Option<PathBuf> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Ok(dir) = std::env::var("LLMOPT_PG_BIN") {
        return Some(PathBuf::from(dir)).filter(|dir| has_server(dir));
    }
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if has_server(&dir) {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_string_lossy().parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_server(dir))
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir)
}

/// A PostgreSQL server on loopback. Databases are created with [`TestPostgres::database_url`].
#[derive(Debug)]
pub struct TestPostgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres_user: bool,
    child: Option<Child>,
    /// Whether `Drop` stops the server (the shared one is stopped by its watchdog).
    owned: bool,
}

impl TestPostgres {
    /// Starts a server this value owns (stopped on drop). `None` when the binaries are missing
    /// and `LLMOPT_SKIP_ENGINES=1`; panics with an install hint when they are missing otherwise.
    pub fn start() -> Option<TestPostgres> {
        let Some(bin) = postgres_bin() else {
            skipping("PostgreSQL server binaries (initdb, postgres)");
            return None;
        };
        let as_postgres_user = is_root();
        let dir = unique_dir("postgres");
        let data = dir.join("data");
        let template = template_dir(&bin, as_postgres_user);
        run(Command::new("cp").arg("-a").arg(&template).arg(&data), "copying the data template");
        if as_postgres_user {
            run(
                Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir),
                "chown of the test server's directory",
            );
        }
        let mut server = TestPostgres {
            bin,
            dir,
            port: free_port(),
            as_postgres_user,
            child: None,
            owned: true,
        };
        server.launch();
        Some(server)
    }

    /// One server per test process, started on first use and stopped when the process ends.
    pub fn shared() -> Option<&'static TestPostgres> {
        static SHARED: OnceLock<Option<TestPostgres>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                let mut server = TestPostgres::start()?;
                server.owned = false;
                let pid = server.child.as_ref().map(Child::id)?;
                spawn_watchdog(pid, "INT", &server.dir);
                Some(server)
            })
            .as_ref()
    }

    fn command(&self, program: &str) -> Command {
        if self.as_postgres_user {
            let mut command = Command::new("setpriv");
            command
                .args(["--reuid=postgres", "--regid=postgres", "--init-groups", "--"])
                .arg(self.bin.join(program));
            command
        } else {
            Command::new(self.bin.join(program))
        }
    }

    fn launch(&mut self) {
        let log = std::fs::File::create(self.dir.join("server.log")).expect("a log file");
        let mut command = self.command("postgres");
        command
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(&self.dir)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
            .args(["-c", "max_connections=200"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        self.child = Some(command.spawn().expect("postgres starts"));
        let pg_isready = self.bin.join("pg_isready");
        let port = self.port.to_string();
        let log = self.dir.join("server.log");
        wait_until(Duration::from_secs(20), "PostgreSQL", || {
            Command::new(&pg_isready)
                .args(["-q", "-h", "127.0.0.1", "-p", &port, "-U", "postgres"])
                .status()
                .is_ok_and(|status| status.success())
                || {
                    // A server that exited at once will never be ready: say why.
                    let exited = self
                        .child
                        .as_mut()
                        .and_then(|child| child.try_wait().ok().flatten())
                        .is_some();
                    assert!(
                        !exited,
                        "postgres exited: {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                    false
                }
        });
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's main process (its sessions are its children), while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A new, empty database; returns its URL.
    pub fn database_url(&self) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!("t{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        run(
            Command::new(self.bin.join("createdb")).args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                &name,
            ]),
            "createdb",
        );
        self.url_of(&name)
    }

    /// Runs one SQL command with `psql` on `url`; returns its unaligned output.
    pub fn psql(&self, url: &str, sql: &str) -> String {
        let output = Command::new(self.bin.join("psql"))
            .args([url, "-tAq", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("psql runs");
        assert!(output.status.success(), "psql: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// The URL of database `name` on this server.
    pub fn url_of(&self, name: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Stops the server (fast shutdown: sessions are cut, committed data stays).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
            let _ = child.wait();
        }
    }

    /// Starts the stopped server again on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        if self.owned {
            self.stop();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// An `initdb`-made data directory, made once per machine, PostgreSQL version and user.
fn template_dir(bin: &Path, as_postgres_user: bool) -> PathBuf {
    let version = bin
        .parent()
        .and_then(Path::file_name)
        .map_or_else(|| "pg".to_owned(), |name| name.to_string_lossy().into_owned());
    let template = std::env::temp_dir().join(format!("llmopt-pg-template-{version}"));
    if template.join("PG_VERSION").is_file() {
        return template;
    }
    let staging = unique_dir("pg-initdb");
    if as_postgres_user {
        run(
            Command::new("chown").args(["postgres:postgres"]).arg(&staging),
            "chown of the initdb directory",
        );
    }
    let data = staging.join("data");
    let mut initdb = if as_postgres_user {
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid=postgres", "--regid=postgres", "--init-groups", "--"])
            .arg(bin.join("initdb"));
        command
    } else {
        Command::new(bin.join("initdb"))
    };
    run(
        initdb.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        ]),
        "initdb",
    );
    // Another test process may have won the race: either template is as good.
    if std::fs::rename(&data, &template).is_err() && !template.join("PG_VERSION").is_file() {
        panic!("cannot keep the PostgreSQL template at {}", template.display());
    }
    let _ = std::fs::remove_dir_all(&staging);
    template
}

/// A Redis server on loopback, without persistence.
#[derive(Debug)]
pub struct TestRedis {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    owned: bool,
}

impl TestRedis {
    /// Starts a server this value owns (stopped on drop); `None` as for [`TestPostgres::start`].
    pub fn start() -> Option<TestRedis> {
        if !Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
        {
            skipping("redis-server");
            return None;
        }
        let mut server =
            TestRedis { port: free_port(), dir: unique_dir("redis"), child: None, owned: true };
        server.launch();
        Some(server)
    }

    /// One server per test process, stopped when the process ends.
    pub fn shared() -> Option<&'static TestRedis> {
        static SHARED: OnceLock<Option<TestRedis>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                let mut server = TestRedis::start()?;
                server.owned = false;
                let pid = server.child.as_ref().map(Child::id)?;
                spawn_watchdog(pid, "TERM", &server.dir);
                Some(server)
            })
            .as_ref()
    }

    fn launch(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let port = self.port;
        wait_until(Duration::from_secs(10), "Redis", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/DB`.
    pub fn url(&self, db: u8) -> String {
        format!("redis://127.0.0.1:{}/{db}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the stopped server again on the same port (empty: nothing is persisted).
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        if self.owned {
            self.stop();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
