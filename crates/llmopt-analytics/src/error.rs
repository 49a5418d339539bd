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
    /// An input file of a report (`report::load`) that cannot be used, with where: the file
    /// and, when the problem is on one line, its 1-based number (`FILE:LINE: problem`).
    #[error("{file}{}: {problem}", .line.map_or(String::new(), |line| format!(":{line}")))]
    Input { file: String, line: Option<usize>, problem: InputProblem },
}

/// What is wrong with a report's input file; [`Error::Input`] says where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InputProblem {
    #[error("cannot open the file: {0}")]
    CannotOpen(String),
    #[error("cannot read the file: {0}")]
    CannotRead(String),
    #[error("the file is empty")]
    Empty,
    #[error("the file holds only blank lines")]
    OnlyBlankLines,
    #[error("no requests in the file")]
    NoRequests,
    #[error("binary data (a NUL byte), not a text file")]
    Binary,
    #[error("not UTF-8 text")]
    NotUtf8,
    /// The first line is JSON, but of neither known kind.
    #[error(
        "a JSON object that is neither a request record (no `served_model`) nor a Mooncake trace \
         line (no `input_length`)"
    )]
    UnknownJsonObject,
    /// The first line fits no format (the message names the command's `--format` flag, which
    /// is how a user of `llm-auto-optimizer analyze` forces one).
    #[error(
        "unrecognised format: expected request-record NDJSON, an Azure trace CSV (header \
         `TIMESTAMP,ContextTokens,GeneratedTokens`) or Mooncake JSON lines (use --format to force \
         one)"
    )]
    UnrecognisedFormat,
    /// Reading a line failed (invalid UTF-8 inside the file, an I/O error).
    #[error("cannot read ({0}); is this a text file?")]
    UnreadableLine(String),
    /// A trace line that does not parse (the trace parser's reason).
    #[error("{0}")]
    Parse(String),
    #[error("not a request record: {0}")]
    NotARecord(String),
    #[error("invalid record: {0}")]
    InvalidRecord(llmopt_core::RecordValidationError),
    /// A trace request that makes an invalid record (e.g. a timestamp before 2000); `request`
    /// is its 1-based position among the trace's requests.
    #[error("request {request}: invalid: {error}")]
    InvalidRequest { request: usize, error: llmopt_core::RecordValidationError },
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
