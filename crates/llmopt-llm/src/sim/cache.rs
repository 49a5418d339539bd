//! The simulated provider-side prompt cache.
//!
//! - OpenAI-style (automatic): prompts of at least 1,024 tokens are cached in 128-token
//!   blocks; a request reads the longest run of leading blocks seen within the cache window,
//!   counted only when it reaches 1,024 tokens, as OpenAI documents.
//! - Anthropic-style (explicit): each `cache_control` breakpoint whose prefix has at least
//!   1,024 tokens is a cache entry with its own TTL (5 minutes, or 1 hour with `"ttl": "1h"`);
//!   the longest fresh breakpoint is read, the rest up to the last breakpoint is written.
//!
//! Tokens are estimated as one per 4 bytes, so one 128-token block is 512 bytes of prompt text.
//! Entries are keyed by chained hashes (a block's key covers every block before it), so equal
//! keys mean equal prefixes, as with real prefix caches. Time comes from the core `Clock`.

use std::{collections::HashMap, sync::Mutex};

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Bytes per simulated token.
pub const BYTES_PER_TOKEN: u64 = 4;
/// The smallest cacheable prompt (both providers' documented minimum for large models).
pub const MIN_CACHEABLE_TOKENS: u64 = 1024;
/// OpenAI's cache granularity.
pub const BLOCK_TOKENS: u64 = 128;
const BLOCK_BYTES: usize = (BLOCK_TOKENS * BYTES_PER_TOKEN) as usize;
/// Past this many entries, expired ones are dropped.
const PRUNE_ABOVE: usize = 200_000;

/// Estimated tokens of a text.
pub fn tokens_of(text: &str) -> u64 {
    (text.len() as u64).div_ceil(BYTES_PER_TOKEN)
}

/// Expiry times (ms) by prefix key.
#[derive(Debug, Default)]
pub struct PromptCache {
    expires_at_ms: Mutex<HashMap<u64, i64>>,
}

/// What the Anthropic-style lookup found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExplicitCacheResult {
    pub read_tokens: u64,
    pub write_5m_tokens: u64,
    pub write_1h_tokens: u64,
}

/// One `cache_control` breakpoint: the prefix up to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breakpoint {
    pub key: u64,
    pub prefix_tokens: u64,
    pub one_hour: bool,
}

/// Chains a segment onto a prefix key.
pub fn chain(previous: u64, bytes: &[u8]) -> u64 {
    xxh3_64_with_seed(bytes, previous)
}

impl PromptCache {
    pub fn new() -> PromptCache {
        PromptCache::default()
    }

    /// OpenAI-style automatic caching of `prompt_text` (`prompt_tokens` estimated by the
    /// caller, overheads included). Returns the cached tokens and records the prompt.
    pub fn automatic(
        &self,
        prompt_text: &[u8],
        prompt_tokens: u64,
        now_ms: i64,
        window_ms: i64,
    ) -> u64 {
        if prompt_tokens < MIN_CACHEABLE_TOKENS {
            return 0;
        }
        let Ok(mut entries) = self.expires_at_ms.lock() else {
            return 0;
        };
        let mut key = 0u64;
        let mut matched_blocks = 0u64;
        let mut still_matching = true;
        for block in prompt_text.chunks_exact(BLOCK_BYTES) {
            key = chain(key, block);
            let fresh = entries.get(&key).is_some_and(|expiry| *expiry > now_ms);
            if still_matching && fresh {
                matched_blocks += 1;
            } else {
                still_matching = false;
            }
            entries.insert(key, now_ms + window_ms);
        }
        prune(&mut entries, now_ms);
        let cached = matched_blocks * BLOCK_TOKENS;
        if cached < MIN_CACHEABLE_TOKENS { 0 } else { cached.min(prompt_tokens) }
    }

    /// Anthropic-style explicit caching over the request's breakpoints, in prompt order.
    pub fn explicit(&self, breakpoints: &[Breakpoint], now_ms: i64) -> ExplicitCacheResult {
        let cacheable: Vec<&Breakpoint> =
            breakpoints.iter().filter(|b| b.prefix_tokens >= MIN_CACHEABLE_TOKENS).collect();
        let Some(last) = cacheable.last() else {
            return ExplicitCacheResult::default();
        };
        let Ok(mut entries) = self.expires_at_ms.lock() else {
            return ExplicitCacheResult::default();
        };
        let read_tokens = cacheable
            .iter()
            .rev()
            .find(|b| entries.get(&b.key).is_some_and(|expiry| *expiry > now_ms))
            .map_or(0, |b| b.prefix_tokens);
        for breakpoint in &cacheable {
            let ttl_ms = if breakpoint.one_hour { 3_600_000 } else { 300_000 };
            entries.insert(breakpoint.key, now_ms + ttl_ms);
        }
        prune(&mut entries, now_ms);
        let written = last.prefix_tokens.saturating_sub(read_tokens);
        ExplicitCacheResult {
            read_tokens,
            write_5m_tokens: if last.one_hour { 0 } else { written },
            write_1h_tokens: if last.one_hour { written } else { 0 },
        }
    }
}

fn prune(entries: &mut HashMap<u64, i64>, now_ms: i64) {
    if entries.len() > PRUNE_ABOVE {
        entries.retain(|_, expiry| *expiry > now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn automatic_counts_whole_blocks_from_the_start() {
        let cache = PromptCache::new();
        // 1,200 tokens: 9 whole blocks (1,152 tokens) and a partial one.
        let prompt = vec![b'a'; 4800];
        assert_eq!(cache.automatic(&prompt, 1200, 0, 300_000), 0, "first sight: nothing cached");
        assert_eq!(cache.automatic(&prompt, 1200, 1_000, 300_000), 9 * 128);
        // Same start, different tail after block 8: 8 blocks = 1,024 tokens still count.
        let mut changed = prompt.clone();
        changed[8 * 512 + 3] = b'b';
        assert_eq!(cache.automatic(&changed, 1200, 2_000, 300_000), 1024);
        // Past the window nothing is fresh.
        assert_eq!(cache.automatic(&prompt, 1200, 10_000_000, 300_000), 0);
        // Short prompts are never cached.
        let short = vec![b'c'; 2048];
        cache.automatic(&short, 512, 0, 300_000);
        assert_eq!(cache.automatic(&short, 512, 1, 300_000), 0);
    }

    #[test]
    fn explicit_reads_longest_fresh_breakpoint() {
        let cache = PromptCache::new();
        let system = Breakpoint { key: 1, prefix_tokens: 2000, one_hour: false };
        let history = Breakpoint { key: 2, prefix_tokens: 3000, one_hour: false };
        let first = cache.explicit(&[system], 0);
        assert_eq!(
            first,
            ExplicitCacheResult { read_tokens: 0, write_5m_tokens: 2000, write_1h_tokens: 0 }
        );
        let second = cache.explicit(&[system, history], 60_000);
        assert_eq!(
            second,
            ExplicitCacheResult { read_tokens: 2000, write_5m_tokens: 1000, write_1h_tokens: 0 }
        );
        let expired = cache.explicit(&[system], 60_000 + 300_001);
        assert_eq!(expired.read_tokens, 0);
    }
}
