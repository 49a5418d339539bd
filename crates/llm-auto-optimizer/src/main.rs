//! The `llm-auto-optimizer` binary: the command line around the gateway library
//! (`llm_auto_optimizer`): `serve`, `config check`, `config hash-key`, `pricing`, `cost`.
//!
//! The gateway itself (configuration, proxy, API, metrics, server loop) lives in the library
//! part of this crate so tests and benches can drive it without a process; this is the only
//! crate that knows axum, figment, clap and the Prometheus text format.

mod cli;

/// mimalloc instead of glibc malloc: the proxy allocates many short-lived buffers per call on
/// every worker thread, where glibc spent a fifth of the gateway's CPU time (perf, gateway
/// bench) and grew per-thread arenas.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
