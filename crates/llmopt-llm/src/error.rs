//! The crate-wide error type for everything that is not a provider call (configuration, data
//! files, the simulated server). A failed call is a [`crate::ProviderError`], the kind the gateway
//! maps to the caller's protocol.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A client or decorator was configured with values that cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A data file (latency grid, quality labels) could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A data file was read but does not have the expected shape.
    #[error("bad data in {path}: {detail}")]
    Data { path: PathBuf, detail: String },
    /// The HTTP client could not be built (TLS backend, proxy settings).
    #[error("cannot build HTTP client: {0}")]
    HttpClient(String),
    /// The simulated server could not bind or serve.
    #[error("simulated server: {0}")]
    Server(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
