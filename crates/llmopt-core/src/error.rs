//! The crate-wide error type.

use crate::{
    pricing::PricingError, record::RecordValidationError, store::StoreError, usage::UsageError,
};

/// Any error of `llmopt-core`, by kind.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Pricing(#[from] PricingError),
    #[error(transparent)]
    Usage(#[from] UsageError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    InvalidRecord(#[from] RecordValidationError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
