//! Exact-match response cache (moka), bounded by bytes and by time.
//!
//! The key is the core `fingerprint::cache_key` (tenant, provider, served model and every request
//! field that can change the answer) plus the answer's *shape*: a JSON body, an SSE stream, or an
//! SSE stream with the OpenAI usage chunk. The shape is part of the key rather than a conversion
//! because a stream is replayed byte for byte as the provider sent it, so a cached streaming
//! request is answered as a stream, exactly as the first time. Only successful, complete answers
//! are inserted (the caller checks); errors and cut streams never are.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use llmopt_core::{Fingerprint, Money, Usage};
use moka::sync::Cache;

/// How the answer is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnswerShape {
    Json,
    Sse,
    /// OpenAI stream with `stream_options.include_usage`: carries the usage chunk.
    SseWithUsage,
}

/// Cache key: request fingerprint and shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub fingerprint: Fingerprint,
    pub shape: AnswerShape,
}

/// One cached answer.
#[derive(Debug, Clone)]
pub struct CachedAnswer {
    pub status: u16,
    pub content_type: String,
    pub body: Bytes,
    pub served_model: String,
    pub usage: Option<Usage>,
    pub stop_reason: Option<String>,
    /// What the answer cost at the provider: a hit saves this much.
    pub cost: Option<Money>,
    /// How long this answer may be served: the policy's TTL for its scope (an adopted cache
    /// change carries the TTL its proposal simulated), else `cache.ttl_s`.
    pub ttl: Duration,
}

/// Each entry lives for its own TTL (moka's per-entry expiry), capped at [`MAX_TTL`].
struct PerEntryTtl;

/// The longest an answer is ever kept, whatever a policy says.
pub const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

impl moka::Expiry<CacheKey, Arc<CachedAnswer>> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        answer: &Arc<CachedAnswer>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(answer.ttl.min(MAX_TTL))
    }
}

/// The cache and the bounds it was built with (a reload with other bounds builds a new one).
#[derive(Clone)]
pub struct ResponseCache {
    entries: Cache<CacheKey, Arc<CachedAnswer>>,
    pub ttl: Duration,
    pub max_bytes: u64,
    pub max_entry_bytes: usize,
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache")
            .field("entries", &self.entries.entry_count())
            .field("ttl", &self.ttl)
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

impl ResponseCache {
    pub fn new(ttl: Duration, max_bytes: u64, max_entry_bytes: usize) -> ResponseCache {
        let entries = Cache::builder()
            .max_capacity(max_bytes)
            // Weight = body bytes plus a fixed overhead for the key and metadata.
            .weigher(|_key: &CacheKey, answer: &Arc<CachedAnswer>| {
                u32::try_from(answer.body.len() + 256).unwrap_or(u32::MAX)
            })
            .expire_after(PerEntryTtl)
            .build();
        ResponseCache { entries, ttl, max_bytes, max_entry_bytes }
    }

    pub fn get(&self, key: &CacheKey) -> Option<Arc<CachedAnswer>> {
        self.entries.get(key)
    }

    /// Stores an answer unless it is larger than the per-entry bound. Returns whether it did.
    pub fn insert(&self, key: CacheKey, answer: CachedAnswer) -> bool {
        if answer.body.len() > self.max_entry_bytes {
            return false;
        }
        self.entries.insert(key, Arc::new(answer));
        true
    }

    /// Drops every entry (a cold cache, as after a restart).
    pub fn clear(&self) {
        self.entries.invalidate_all();
        self.entries.run_pending_tasks();
    }

    pub fn entry_count(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }

    pub fn same_bounds(&self, ttl: Duration, max_bytes: u64, max_entry_bytes: usize) -> bool {
        self.ttl == ttl && self.max_bytes == max_bytes && self.max_entry_bytes == max_entry_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(size: usize) -> CachedAnswer {
        CachedAnswer {
            status: 200,
            content_type: "application/json".into(),
            body: Bytes::from(vec![b'x'; size]),
            served_model: "m".into(),
            usage: None,
            stop_reason: None,
            cost: None,
            ttl: Duration::from_secs(60),
        }
    }

    #[test]
    fn shapes_are_separate_entries_and_oversized_answers_are_refused() {
        let cache = ResponseCache::new(Duration::from_secs(60), 1 << 20, 100);
        let json = CacheKey { fingerprint: Fingerprint(7), shape: AnswerShape::Json };
        let sse = CacheKey { fingerprint: Fingerprint(7), shape: AnswerShape::Sse };
        assert!(cache.insert(json, answer(10)));
        assert!(cache.get(&json).is_some());
        assert!(cache.get(&sse).is_none());
        assert!(!cache.insert(sse, answer(101)));
        assert!(cache.get(&sse).is_none());
    }

    #[test]
    fn each_answer_expires_after_its_own_ttl() {
        let cache = ResponseCache::new(Duration::from_secs(60), 1 << 20, 1_000);
        let short = CacheKey { fingerprint: Fingerprint(1), shape: AnswerShape::Json };
        let long = CacheKey { fingerprint: Fingerprint(2), shape: AnswerShape::Json };
        cache.insert(short, CachedAnswer { ttl: Duration::from_millis(1), ..answer(10) });
        cache.insert(long, CachedAnswer { ttl: Duration::from_secs(3_600), ..answer(10) });
        // moka's clock is the real one: a 1 ms entry is gone once 1 ms has passed.
        let inserted = std::time::Instant::now();
        while inserted.elapsed() < Duration::from_millis(2) {
            std::hint::spin_loop();
        }
        assert!(cache.get(&short).is_none(), "expired after its own 1 ms");
        assert!(cache.get(&long).is_some(), "kept for its own hour");
    }
}
