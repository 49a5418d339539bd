//! The collector's one error type.

use llmopt_core::{RecordValidationError, StoreError};

pub type Result<T, E = CollectorError> = std::result::Result<T, E>;

/// Why the collector refused or could not finish something. Every refusal is also counted in
/// [`crate::CollectorMetrics`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CollectorError {
    /// The record is malformed (NaN feedback, negative cost, token counts that do not add up, a
    /// timestamp far in the future, …). Counted in `rejected`, never stored.
    #[error("record rejected: {0}")]
    Invalid(#[from] RecordValidationError),
    /// The queue to the writer was full and stayed full for the configured wait (or the policy is
    /// `Drop`). Counted in `dropped`; the record is in the live statistics but not stored.
    #[error("collector queue full ({capacity} records): record dropped")]
    QueueFull { capacity: usize },
    /// `shutdown` already ran.
    #[error("collector is shut down")]
    ShutDown,
    /// The background writer thread is gone (it panicked): nothing more can be stored.
    #[error("collector writer thread is gone")]
    WriterGone,
    /// The store refused a write or a flush.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}
