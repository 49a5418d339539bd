//! The crate's one error type, by kinds a caller can act on.

use llmopt_core::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("experiment `{0}` not found")]
    NotFound(String),
    #[error("experiment `{0}` already exists")]
    AlreadyExists(String),
    /// The specification is inconsistent (no treatment arm, weights that do not add up, …).
    #[error("invalid experiment `{id}`: {message}")]
    InvalidSpec { id: String, message: String },
    /// The lifecycle does not allow this action in the current state.
    #[error("experiment `{id}` is {status}: cannot {action}")]
    InvalidTransition { id: String, status: &'static str, action: &'static str },
    /// Starting this experiment would let two experiments claim the same requests.
    #[error("experiment `{id}` overlaps the scope of active experiment `{other}`")]
    Overlap { id: String, other: String },
    #[error("experiment `{id}` has no arm `{arm}`")]
    UnknownArm { id: String, arm: String },
    /// A stored document this version cannot read (corrupt, or written by a newer schema).
    #[error("stored experiment `{id}` is unreadable: {message}")]
    Corrupt { id: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
