//! Cross-cutting behaviour as decorators: each is a [`crate::Provider`] that wraps an
//! `Arc<dyn Provider>`, so they stack in any order around any provider (HTTP or simulated)
//! without flags inside the clients. A usual stack, outermost first:
//! `Hedge → Retry → RateLimit → Timeout → client`.

pub mod hedge;
pub mod rate_limit;
pub mod retry;
pub mod timeout;

pub use hedge::{Hedge, HedgeConfig, Hedged, hedged_chat};
pub use rate_limit::{RateLimit, RateLimitConfig, RateLimitMode};
pub use retry::{Retry, RetryConfig, is_retryable};
pub use timeout::Timeout;
