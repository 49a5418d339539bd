//! Logging with tracing: text or JSON, to stdout or to daily-rolling files.
//!
//! Each proxied call runs in a span carrying its request id, so every line a request logs names
//! it. Provider keys never reach a log line: they only exist inside the provider clients as
//! `SecretString`s, which print `[redacted]`.

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::{
    config::{LogFormat, LogOutput, LoggingConfig},
    error::{Error, Result},
};

/// Installs the global subscriber. Keep the guard alive until exit: it flushes buffered lines.
/// `RUST_LOG`, when set, overrides `logging.level`.
pub fn init(config: &LoggingConfig) -> Result<Option<WorkerGuard>> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .map_err(|e| Error::Logging(format!("logging.level `{}`: {e}", config.level)))?;
    let (writer, guard) = match config.output {
        LogOutput::Stdout => tracing_appender::non_blocking(std::io::stdout()),
        LogOutput::File => {
            std::fs::create_dir_all(&config.directory)?;
            let appender = tracing_appender::rolling::daily(&config.directory, "llmopt.log");
            tracing_appender::non_blocking(appender)
        }
    };
    // Colours only for a person at a terminal, never into files or pipes.
    let ansi =
        config.output == LogOutput::Stdout && std::io::IsTerminal::is_terminal(&std::io::stdout());
    let result = match config.format {
        LogFormat::Text => tracing_subscriber::registry()
            .with(filter)
            .with(fmt::layer().with_writer(writer).with_ansi(ansi))
            .try_init(),
        LogFormat::Json => tracing_subscriber::registry()
            .with(filter)
            .with(
                fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(writer),
            )
            .try_init(),
    };
    result.map_err(|e| Error::Logging(e.to_string()))?;
    Ok(Some(guard))
}
