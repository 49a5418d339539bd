//! Pure computation over records and series: statistics, two-sample tests, forecasting,
//! anomalies and change points, workload clustering, cost and cache analysis, tail analysis,
//! loaders for the public LLM trace formats, and the offline [`report`] over a file of calls.
//!
//! Design choices:
//! - **No async runtime and almost no I/O.** Every function takes slices, records or
//!   `impl BufRead` and returns plain data, so the crate works from an evcxr notebook or any
//!   program without tokio, sled or HTTP in the build (the workspace `tidy` test checks this
//!   transitively). The one exception is [`report::load`], which opens the file it is given.
//! - **Reference-checked numbers.** `scripts/reference/make_fixtures.py` computes the same
//!   quantities with numpy, scipy, scikit-learn and statsmodels on fixed inputs (and on the
//!   public traces); the fixtures under `tests/data/` are committed and the integration tests
//!   compare against them with stated tolerances (1e-9 relative for closed forms).
//! - **Conventions follow the reference libraries** where analysts will cross-check: quantiles
//!   are numpy's default "linear" rule, the trimmed mean is `scipy.stats.trim_mean`, Mann–Whitney
//!   U is scipy's asymptotic test with tie and continuity correction, Holt–Winters uses the
//!   statsmodels recursions, and [`cluster::kmeans`] (linfa's) is checked against scikit-learn's
//!   `KMeans` from the same initial centres.
//! - **Exact money.** Cost sums and savings are [`llmopt_core::Money`] (integer picodollars);
//!   floats appear only in shares and statistics.
//! - **Seeded randomness.** Bootstrap and k-means take a seed and use `rand_xoshiro`, so every
//!   result is reproducible.
//! - **One error type** ([`Error`]) whose variants say what was wrong with the input (too few
//!   points, a non-finite value at a position, a malformed trace line with its number).

pub mod anomaly;
pub mod cache;
pub mod cluster;
pub mod cost;
pub mod error;
pub mod forecast;
pub mod labelled;
pub mod report;
pub mod stats;
pub mod tails;
pub mod traces;
pub mod workload;

pub use error::{Error, InputProblem, Result};
pub use llmopt_core::Moments;
