//! The domain core of LLM Auto-Optimizer: the types every other crate speaks, and nothing else.
//!
//! Design choices:
//! - **No I/O and no async runtime.** Everything here is plain data and pure functions, so that
//!   analytics, tests and replays can use it without tokio, sled or HTTP. The `tidy` test checks
//!   this from `cargo metadata`.
//! - **Exact money.** [`Money`] is an integer number of picodollars (10⁻¹² USD) in an `i128`.
//!   Published prices are at most six decimals of a dollar per million tokens, so every price is
//!   an exact integer number of picodollars per token, every record's cost is exact, and summing a
//!   million records gives exactly the sum of the parts.
//! - **One usage shape.** OpenAI and Anthropic count tokens differently (OpenAI's
//!   `prompt_tokens` includes cached tokens, Anthropic's `input_tokens` excludes them). [`Usage`]
//!   normalises both into one form with total input, cache reads, cache writes and output, and
//!   [`usage`] holds the normalisers for whole responses and for streams. Usage that never
//!   arrived is `None`, never zero.
//! - **Seams are traits.** [`RecordStore`], [`ExperimentStore`], [`PolicyStore`], [`KeyStore`]
//!   and [`Clock`]
//!   are defined here with in-memory implementations; sled-backed stores live in
//!   `llmopt-storage`. Every implementation runs the same conformance suite ([`testsuite`], behind
//!   the `testsuite` feature).
//! - **One meaning per word.** A model pattern ([`pattern`]), a scope matching a request or a
//!   stored record ([`scope`]) and a record's feedback value ([`RequestRecord::feedback_value`])
//!   are defined once here, so the gateway, the policy, the experiments and the optimizer agree.
//! - **A versioned wire form.** Records serialise with a `v` field and every field added later
//!   carries a serde default, so a record written today still decodes after a field is added.

pub mod clock;
pub mod error;
pub mod fingerprint;
pub mod ids;
pub mod keys;
pub mod memory;
pub mod moments;
pub mod money;
pub mod pattern;
pub mod pricing;
pub mod record;
pub mod scope;
pub mod store;
#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;
pub mod usage;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{Error, Result};
pub use fingerprint::Fingerprint;
pub use ids::{ModelId, ProviderId, RequestId, TenantId};
pub use keys::{BudgetPeriod, KeyStore, VirtualKey};
pub use memory::{MemoryExperimentStore, MemoryKeyStore, MemoryPolicyStore, MemoryRecordStore};
pub use moments::Moments;
pub use money::Money;
pub use pattern::glob_matches;
pub use pricing::{CostBreakdown, ModelPrice, PriceCatalog, PricingError};
pub use record::{
    CacheOutcome, Endpoint, ErrorKind, ExperimentArm, Feedback, FeedbackValue, Fingerprints,
    RecordValidationError, RequestRecord, Status, Tags,
};
pub use scope::{
    APPLIED_TAG, AdoptionSide, HEDGED_TAG, HELD_OUT_TAG, JUDGE_TAG, ScopeFilter, ScopeSubject,
    WORKLOAD_TAG, adoption_side, tag_adoptions,
};
pub use store::{
    AggregateQuery, AggregateRow, AuditEntry, ExperimentDoc, ExperimentStore, GroupBy, PolicyDoc,
    PolicyStore, RecordFilter, RecordQuery, RecordStore, StoreError,
};
pub use usage::{Protocol, SseDecoder, SseEvent, StreamUsage, Usage, UsageError};
