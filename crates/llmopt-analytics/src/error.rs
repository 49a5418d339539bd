//! The crate-wide error type.

/// Everything that can be wrong with an analysis input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The method needs more data than it was given.
    #[error("{what} needs at least {needed} values, got {got}")]
    TooFewValues { what: &'static str, needed: usize, got: usize },
    /// A value that must be finite was NaN or infinite.
    #[error("{what}: non-finite value at position {index}")]
    NonFinite { what: &'static str, index: usize },
    /// A feature matrix cell was NaN or infinite.
    #[error("feature `{feature}` of row {row} is not finite")]
    NonFiniteFeature { row: usize, feature: String },
    /// A parameter outside its allowed range.
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParameter { name: &'static str, reason: String },
    /// The data has no spread, so the statistic is undefined (e.g. all points identical).
    #[error("{0}")]
    Degenerate(String),
    /// A trace line that could not be parsed.
    #[error("line {line}: {reason}")]
    Parse { line: usize, reason: String },
    /// Reading the input failed (only for `impl BufRead` inputs).
    #[error("read error at line {line}: {reason}")]
    Read { line: usize, reason: String },
    /// A model missing from the price catalog.
    #[error(transparent)]
    Pricing(#[from] llmopt_core::PricingError),
    /// The clustering library refused the input.
    #[error("k-means: {0}")]
    KMeans(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Checks that every value is finite; names the first offending position.
pub(crate) fn check_finite(what: &'static str, values: &[f64]) -> Result<()> {
    match values.iter().position(|value| !value.is_finite()) {
        Some(index) => Err(Error::NonFinite { what, index }),
        None => Ok(()),
    }
}

pub(crate) fn check_len(what: &'static str, values: &[f64], needed: usize) -> Result<()> {
    if values.len() < needed {
        return Err(Error::TooFewValues { what, needed, got: values.len() });
    }
    Ok(())
}
