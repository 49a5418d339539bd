//! What caching would save: a response cache for exact duplicates, and provider prompt caches
//! for shared prompt prefixes.
//!
//! Both are simulations over the records in time order (ties keep their input order), not
//! formulas: a cache with a TTL and a size limit behaves differently from "share of repeated
//! keys" as soon as entries expire or are evicted.
//!
//! - **Response cache**: keyed by tenant and the request fingerprint (`fingerprints.request`,
//!   which covers the model and everything that changes the answer). An entry lives `ttl_ms`
//!   from its write (as moka's time-to-live), is evicted least-recently-used beyond `capacity`
//!   entries, and only successful responses are stored. The saving of a hit is the provider
//!   cost of the call it answers (its `cost`, or `saved_cost` when the record already was a
//!   gateway hit).
//! - **Prompt-prefix cache**: records carry prefix-block fingerprints
//!   (`fingerprints.prefix_blocks`, as the Mooncake traces' `hash_ids`: block `i` equal means the
//!   prompt is identical up to the end of block `i`). A request is served from cache for its
//!   leading blocks that are present and not expired; providers only cache prompts of at least
//!   `min_cached_tokens` (1,024 at OpenAI and Anthropic) and entries are refreshed on use
//!   (about five minutes idle at both). The saving is priced per model with the catalog's
//!   cache-read and cache-write prices, so Anthropic's 1.25× write premium counts against it and
//!   OpenAI's free writes do not.

use std::collections::{BTreeMap, HashMap, HashSet};

use llmopt_core::{CacheOutcome, Money, PriceCatalog, RequestRecord, Usage};
use serde::Serialize;

use crate::error::{Error, Result};

fn time_order(records: &[RequestRecord]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..records.len()).collect();
    order.sort_by_key(|&i| records[i].ts_ms);
    order
}

/// A response cache to simulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ResponseCacheConfig {
    pub ttl_ms: i64,
    /// Maximum number of entries (least recently used are evicted).
    pub capacity: usize,
}

/// Duplicates and the simulated response-cache saving.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DuplicateAnalysis {
    pub requests: u64,
    /// Records that carry a request fingerprint.
    pub fingerprinted: u64,
    /// Records whose key was seen within `ttl_ms` before them (no size limit).
    pub repeats_within_ttl: u64,
    pub repeat_share: f64,
    /// Hits of the simulated cache.
    pub hits: u64,
    pub hit_share: f64,
    pub evictions: u64,
    /// Provider cost of all records (known costs).
    pub cost: Money,
    /// Provider cost the hits would have avoided.
    pub saved: Money,
}

impl DuplicateAnalysis {
    /// Nothing repeated, nothing saved, over `requests` requests.
    pub fn empty(requests: u64) -> DuplicateAnalysis {
        DuplicateAnalysis {
            requests,
            fingerprinted: 0,
            repeats_within_ttl: 0,
            repeat_share: 0.0,
            hits: 0,
            hit_share: 0.0,
            evictions: 0,
            cost: Money::ZERO,
            saved: Money::ZERO,
        }
    }
}

fn provider_cost(record: &RequestRecord) -> Option<Money> {
    if record.cache == CacheOutcome::Hit { record.saved_cost.or(record.cost) } else { record.cost }
}

/// Simulates a response cache over the records.
pub fn duplicate_analysis(
    records: &[RequestRecord],
    config: ResponseCacheConfig,
) -> Result<DuplicateAnalysis> {
    if config.ttl_ms <= 0 || config.capacity == 0 {
        return Err(Error::InvalidParameter {
            name: "cache config",
            reason: "ttl and capacity must be positive".into(),
        });
    }
    type Key = (Option<String>, u128);
    let mut last_seen: HashMap<Key, i64> = HashMap::new();
    // key → (written at, recency stamp); recency stamp → key for LRU eviction.
    let mut entries: HashMap<Key, (i64, u64)> = HashMap::new();
    let mut recency: BTreeMap<u64, Key> = BTreeMap::new();
    let mut stamp = 0_u64;
    let mut analysis = DuplicateAnalysis::empty(records.len() as u64);
    for index in time_order(records) {
        let record = &records[index];
        let cost = provider_cost(record);
        analysis.cost += cost.unwrap_or(Money::ZERO);
        let Some(fingerprint) = record.fingerprints.request else {
            continue;
        };
        analysis.fingerprinted += 1;
        let key: Key = (record.tenant.as_ref().map(|t| t.0.clone()), fingerprint.0);
        if let Some(previous) = last_seen.insert(key.clone(), record.ts_ms)
            && record.ts_ms - previous <= config.ttl_ms
        {
            analysis.repeats_within_ttl += 1;
        }
        stamp += 1;
        match entries.get(&key).copied() {
            Some((written, old_stamp)) if record.ts_ms - written <= config.ttl_ms => {
                analysis.hits += 1;
                analysis.saved += cost.unwrap_or(Money::ZERO);
                recency.remove(&old_stamp);
                recency.insert(stamp, key.clone());
                entries.insert(key, (written, stamp));
            }
            found => {
                if let Some((_, old_stamp)) = found {
                    // Expired: the entry is gone; this call goes to the provider.
                    recency.remove(&old_stamp);
                    entries.remove(&key);
                }
                if record.status.is_ok() {
                    if entries.len() >= config.capacity
                        && let Some((_, evicted)) = recency.pop_first()
                    {
                        entries.remove(&evicted);
                        analysis.evictions += 1;
                    }
                    recency.insert(stamp, key.clone());
                    entries.insert(key, (record.ts_ms, stamp));
                }
            }
        }
    }
    let n = analysis.requests.max(1) as f64;
    analysis.repeat_share = analysis.repeats_within_ttl as f64 / n;
    analysis.hit_share = analysis.hits as f64 / n;
    Ok(analysis)
}

const FIVE_MINUTES_MS: i64 = 5 * 60 * 1_000;

/// How a provider prompt cache behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PrefixCachePolicy {
    /// Tokens per prefix block (512 in the Mooncake traces).
    pub block_tokens: u64,
    /// Prompts shorter than this are neither cached nor served from cache (1,024 at OpenAI and
    /// Anthropic; 0 for the idealised cache).
    pub min_cached_tokens: u64,
    /// Idle time after which a block is gone; `None` for an unlimited cache. A lifetime
    /// beyond five minutes is Anthropic's one-hour cache: its writes are priced as 1-hour
    /// writes (2× input instead of 1.25×).
    pub ttl_ms: Option<i64>,
}

impl PrefixCachePolicy {
    /// An unlimited cache that keeps every block forever: the upper bound of reuse.
    pub fn unlimited(block_tokens: u64) -> PrefixCachePolicy {
        PrefixCachePolicy { block_tokens, min_cached_tokens: 0, ttl_ms: None }
    }

    /// OpenAI and Anthropic defaults: 1,024-token minimum, five minutes idle.
    pub fn provider_default(block_tokens: u64) -> PrefixCachePolicy {
        PrefixCachePolicy { block_tokens, min_cached_tokens: 1024, ttl_ms: Some(FIVE_MINUTES_MS) }
    }
}

/// Prefix reuse over a set of records.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrefixReuse {
    pub policy: PrefixCachePolicy,
    /// Records that carry prefix blocks.
    pub requests: u64,
    pub blocks: u64,
    /// Block ids that already appeared in an earlier request (any position, never forgotten):
    /// the direct count.
    pub blocks_seen_before: u64,
    /// Leading blocks served from the simulated cache.
    pub blocks_reused: u64,
    pub input_tokens: u64,
    /// Input tokens the cache would serve.
    pub cached_tokens: u64,
    /// Input tokens written to the cache.
    pub written_tokens: u64,
    /// `cached_tokens / input_tokens`.
    pub cached_token_share: f64,
    /// `blocks_reused / blocks`.
    pub block_reuse_share: f64,
    /// Per record (in time order): the usage with the cache, for pricing.
    #[serde(skip)]
    pub usages: Vec<Usage>,
}

/// Simulates a prompt-prefix cache over the records that carry prefix blocks.
pub fn prefix_reuse(records: &[RequestRecord], policy: PrefixCachePolicy) -> Result<PrefixReuse> {
    if policy.block_tokens == 0 {
        return Err(Error::InvalidParameter {
            name: "block_tokens",
            reason: "must be positive".into(),
        });
    }
    let mut seen: HashSet<u64> = HashSet::new();
    let mut last_used: HashMap<u64, i64> = HashMap::new();
    let mut reuse = PrefixReuse {
        policy,
        requests: 0,
        blocks: 0,
        blocks_seen_before: 0,
        blocks_reused: 0,
        input_tokens: 0,
        cached_tokens: 0,
        written_tokens: 0,
        cached_token_share: 0.0,
        block_reuse_share: 0.0,
        usages: Vec::new(),
    };
    for index in time_order(records) {
        let record = &records[index];
        let blocks = &record.fingerprints.prefix_blocks;
        if blocks.is_empty() {
            continue;
        }
        let usage = record.usage.unwrap_or_default();
        let input = usage.input_tokens;
        reuse.requests += 1;
        reuse.blocks += blocks.len() as u64;
        reuse.input_tokens += input;
        reuse.blocks_seen_before += blocks.iter().filter(|id| seen.contains(id)).count() as u64;
        let alive = |id: &u64| match (last_used.get(id), policy.ttl_ms) {
            (Some(_), None) => true,
            (Some(&used), Some(ttl)) => record.ts_ms - used <= ttl,
            (None, _) => false,
        };
        let cacheable = input >= policy.min_cached_tokens;
        let matched =
            if cacheable { blocks.iter().take_while(|id| alive(id)).count() as u64 } else { 0 };
        let cached = (matched * policy.block_tokens).min(input);
        let written = if cacheable {
            (blocks.len() as u64 * policy.block_tokens).min(input) - cached
        } else {
            0
        };
        reuse.blocks_reused += matched;
        reuse.cached_tokens += cached;
        reuse.written_tokens += written;
        if cacheable {
            for &id in blocks {
                last_used.insert(id, record.ts_ms);
            }
        }
        seen.extend(blocks.iter().copied());
        let one_hour = policy.ttl_ms.is_some_and(|ttl| ttl > FIVE_MINUTES_MS);
        reuse.usages.push(Usage {
            input_tokens: input,
            cache_read_tokens: cached,
            cache_write_5m_tokens: if one_hour { 0 } else { written },
            cache_write_1h_tokens: if one_hour { written } else { 0 },
            output_tokens: usage.output_tokens,
            ..Usage::default()
        });
    }
    reuse.cached_token_share = if reuse.input_tokens == 0 {
        0.0
    } else {
        reuse.cached_tokens as f64 / reuse.input_tokens as f64
    };
    reuse.block_reuse_share =
        if reuse.blocks == 0 { 0.0 } else { reuse.blocks_reused as f64 / reuse.blocks as f64 };
    Ok(reuse)
}

/// The saving of a prompt cache for one model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrefixCacheSaving {
    pub model: String,
    pub provider: String,
    /// Cost with no prompt cache at all.
    pub cost_without_cache: Money,
    /// Cost with cache reads at the read price and cache writes at the write price.
    pub cost_with_cache: Money,
    pub saving: Money,
    pub saving_share: f64,
}

/// Prices the simulated reuse under each model's cache pricing.
pub fn prefix_cache_savings(
    reuse: &PrefixReuse,
    catalog: &PriceCatalog,
    models: &[&str],
) -> Result<Vec<PrefixCacheSaving>> {
    models
        .iter()
        .map(|&model| {
            let price = catalog.resolve(model)?;
            let mut without = Money::ZERO;
            let mut with = Money::ZERO;
            for usage in &reuse.usages {
                let plain = Usage {
                    input_tokens: usage.input_tokens,
                    output_tokens: usage.output_tokens,
                    ..Usage::default()
                };
                without += price.cost(&plain, false).total;
                with += price.cost(usage, false).total;
            }
            let saving = without - with;
            Ok(PrefixCacheSaving {
                model: price.id.clone(),
                provider: price.provider.clone(),
                cost_without_cache: without,
                cost_with_cache: with,
                saving,
                saving_share: if without.is_zero() {
                    0.0
                } else {
                    saving.picos() as f64 / without.picos() as f64
                },
            })
        })
        .collect()
}
