//! Exact-match response cache, bounded by bytes and by time: moka in the process (first
//! level), and with `cache.backend = "redis"` Redis behind it (second level, shared by every
//! replica: [`RedisCache`]).
//!
//! The key is the core `fingerprint::cache_key` (tenant, provider, served model and every request
//! field that can change the answer) plus the answer's *shape*: a JSON body, an SSE stream, or an
//! SSE stream with the OpenAI usage chunk. The shape is part of the key rather than a conversion
//! because a stream is replayed byte for byte as the provider sent it, so a cached streaming
//! request is answered as a stream, exactly as the first time. Only successful, complete answers
//! are inserted (the caller checks); errors and cut streams never are.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use llmopt_core::{Fingerprint, Money, Usage};
use moka::{Expiry, sync::Cache};
use serde::{Deserialize, Serialize};

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

/// The longest an answer is ever kept, whatever a policy says.
pub const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// An entry of the first level: the answer and how long it may live (the answer's own TTL, the
/// policy's or `cache.ttl_s`, or what is left of it when the answer came from the second level).
#[derive(Debug, Clone)]
struct Stored {
    answer: Arc<CachedAnswer>,
    ttl: Duration,
}

/// Per-entry lifetimes for moka.
struct EntryTtl;

impl Expiry<CacheKey, Stored> for EntryTtl {
    fn expire_after_create(&self, _: &CacheKey, stored: &Stored, _: Instant) -> Option<Duration> {
        Some(stored.ttl)
    }
}

/// The cache and the bounds it was built with (a reload with other bounds builds a new one).
#[derive(Clone)]
pub struct ResponseCache {
    entries: Cache<CacheKey, Stored>,
    /// The shared second level, when `cache.backend = "redis"`.
    shared: Option<Arc<RedisCache>>,
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
            .field("shared", &self.shared)
            .finish()
    }
}

impl ResponseCache {
    pub fn new(ttl: Duration, max_bytes: u64, max_entry_bytes: usize) -> ResponseCache {
        let entries = Cache::builder()
            .max_capacity(max_bytes)
            // Weight = body bytes plus a fixed overhead for the key and metadata.
            .weigher(|_key: &CacheKey, stored: &Stored| {
                u32::try_from(stored.answer.body.len() + 256).unwrap_or(u32::MAX)
            })
            .expire_after(EntryTtl)
            .build();
        ResponseCache { entries, shared: None, ttl, max_bytes, max_entry_bytes }
    }

    /// The same cache with `shared` as its second level.
    pub fn with_shared(mut self, shared: Option<Arc<RedisCache>>) -> ResponseCache {
        self.shared = shared;
        self
    }

    /// The second level, if any.
    pub fn shared(&self) -> Option<&Arc<RedisCache>> {
        self.shared.as_ref()
    }

    /// The first level only (no I/O).
    pub fn get(&self, key: &CacheKey) -> Option<Arc<CachedAnswer>> {
        self.entries.get(key).map(|stored| stored.answer)
    }

    /// The first level, then the second: a second-level hit is kept in the first for what is
    /// left of its lifetime. A second level that fails or is slow is a miss (counted).
    pub async fn lookup(&self, key: &CacheKey) -> Option<Arc<CachedAnswer>> {
        if let Some(answer) = self.get(key) {
            return Some(answer);
        }
        let shared = self.shared.as_ref()?;
        let (answer, ttl_left) = shared.get(key).await?;
        let answer = Arc::new(answer);
        if answer.body.len() <= self.max_entry_bytes {
            let ttl = ttl_left.min(MAX_TTL);
            self.entries.insert(*key, Stored { answer: Arc::clone(&answer), ttl });
        }
        Some(answer)
    }

    /// Stores an answer unless it is larger than the per-entry bound, in both levels (the
    /// second in the background). Returns whether it did.
    pub fn insert(&self, key: CacheKey, answer: CachedAnswer) -> bool {
        if answer.body.len() > self.max_entry_bytes {
            return false;
        }
        let ttl = answer.ttl.min(MAX_TTL);
        let answer = Arc::new(answer);
        if let Some(shared) = &self.shared {
            shared.put(key, Arc::clone(&answer), ttl);
        }
        self.entries.insert(key, Stored { answer, ttl });
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

/// Counters of the shared second level, exported in `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SharedCacheCounters {
    /// Lookups answered by Redis (after a first-level miss).
    pub hits: u64,
    /// Lookups Redis did not have.
    pub misses: u64,
    /// Lookups and writes that failed or timed out (Redis down or slow): each lookup is then a
    /// miss and the request goes on to the provider.
    pub errors: u64,
    /// Rate-limit checks Redis could not answer (down, slow): the replica's own limiter decided
    /// them ([`RedisCache::take_rate`]).
    pub rate_errors: u64,
}

/// How long one Redis command may take before it counts as failed (a lookup is then a miss).
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);
/// After a failed connection attempt, lookups are misses at once for this long.
const REDIS_RECONNECT_PAUSE: Duration = Duration::from_secs(1);
/// Most writes to Redis waiting at once; beyond it a write is skipped (and counted an error)
/// rather than queued without bound behind a slow server.
const REDIS_MAX_PENDING_WRITES: u64 = 1_024;
/// Key prefix; the version changes with the entry encoding.
const REDIS_PREFIX: &str = "llmopt:cache:v1:";
/// Key prefix of the fleet-wide rate limits (one key per virtual key id).
const REDIS_RATE_PREFIX: &str = "llmopt:rate:v1:";

/// A fleet-wide token bucket in one atomic step: GCRA (the generic cell rate algorithm), which
/// keeps one number per limit, the "theoretical arrival time" `tat` of the next request, in
/// microseconds. A request at `now` is admitted when `max(tat, now) + interval` is at most
/// `burst` ahead of `now`; it then moves `tat` there. With `interval = 60 s / rpm` and `burst
/// = 60 s` this is the replica's own bucket (`keys::RateBucket`): `rpm` requests at once, then
/// one per interval. The key expires when the bucket would be full again, so idle limits leave
/// nothing behind. Returns 0 when admitted, else the microseconds until a request would be.
/// `now` comes from the caller's clock (replicas' clocks differ by milliseconds at most: a few
/// milliseconds of refill). Lua numbers are doubles: microseconds since 1970 are below 2^53.
const RATE_SCRIPT: &str = r"
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local next_tat = tat + interval
if next_tat - now > burst then
  return next_tat - now - burst
end
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1)
return 0
";

/// The encoded head of a Redis entry; the body follows it.
#[derive(Serialize, Deserialize)]
struct EntryHead {
    status: u16,
    content_type: String,
    served_model: String,
    usage: Option<Usage>,
    stop_reason: Option<String>,
    cost: Option<Money>,
}

fn encode_entry(answer: &CachedAnswer) -> Option<Vec<u8>> {
    let head = serde_json::to_vec(&EntryHead {
        status: answer.status,
        content_type: answer.content_type.clone(),
        served_model: answer.served_model.clone(),
        usage: answer.usage,
        stop_reason: answer.stop_reason.clone(),
        cost: answer.cost,
    })
    .ok()?;
    let mut bytes = Vec::with_capacity(4 + head.len() + answer.body.len());
    bytes.extend_from_slice(&u32::try_from(head.len()).ok()?.to_be_bytes());
    bytes.extend_from_slice(&head);
    bytes.extend_from_slice(&answer.body);
    Some(bytes)
}

fn decode_entry(bytes: &[u8]) -> Option<CachedAnswer> {
    let length = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let head: EntryHead = serde_json::from_slice(bytes.get(4..4 + length)?).ok()?;
    Some(CachedAnswer {
        status: head.status,
        content_type: head.content_type,
        body: Bytes::copy_from_slice(bytes.get(4 + length..)?),
        served_model: head.served_model,
        usage: head.usage,
        stop_reason: head.stop_reason,
        cost: head.cost,
        // Set by the caller from the entry's remaining lifetime in Redis.
        ttl: Duration::ZERO,
    })
}

fn redis_key(key: &CacheKey) -> String {
    let shape = match key.shape {
        AnswerShape::Json => "json",
        AnswerShape::Sse => "sse",
        AnswerShape::SseWithUsage => "sse-usage",
    };
    format!("{REDIS_PREFIX}{:032x}:{shape}", key.fingerprint.0)
}

/// The shared second level: Redis through redis-rs's `ConnectionManager` (one multiplexed
/// connection that reconnects by itself), driven by a small runtime of its own. The gateway's
/// I/O threads each run their own single-threaded runtime; a connection driven by one of them
/// would stall whenever that thread is busy and die with it, so every command is spawned on
/// this runtime and its answer awaited from whichever thread asked.
///
/// Redis is a cache here, never a dependency: a lookup that fails, times out or finds Redis
/// down is a miss (counted), and the call goes on to the provider.
pub struct RedisCache {
    client: redis::Client,
    /// The URL it was made from (it may hold a password: compared, never shown).
    url: String,
    /// host:port/db, for logs (never a password).
    location: String,
    connection: tokio::sync::Mutex<Connection>,
    hits: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
    rate_errors: AtomicU64,
    pending_writes: Arc<AtomicU64>,
    runtime: Option<tokio::runtime::Runtime>,
}

#[derive(Default)]
struct Connection {
    manager: Option<redis::aio::ConnectionManager>,
    failed_at: Option<Instant>,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache").field("location", &self.location).finish_non_exhaustive()
    }
}

impl Drop for RedisCache {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which tokio forbids inside another runtime.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl RedisCache {
    /// Prepares the client for `url` (`redis://[:password@]host:port/db`) and starts
    /// connecting in the background; never waits for the server. Errors do not repeat the URL.
    pub fn new(url: &str) -> Result<Arc<RedisCache>, String> {
        let client = redis::Client::open(url).map_err(|error| {
            format!("the Redis URL is malformed ({:?}): expected redis://host:6379/0", error.kind())
        })?;
        let info = client.get_connection_info();
        let location = format!("{}/{}", info.addr, info.redis.db);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("llmopt-redis")
            .enable_all()
            .build()
            .map_err(|error| format!("cannot start the Redis client's runtime: {error}"))?;
        let cache = Arc::new(RedisCache {
            client,
            url: url.to_owned(),
            location,
            connection: tokio::sync::Mutex::new(Connection::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            rate_errors: AtomicU64::new(0),
            pending_writes: Arc::new(AtomicU64::new(0)),
            runtime: Some(runtime),
        });
        // Connect now so that the first lookups find a connection, and say at start when the
        // server cannot be reached (the gateway serves anyway).
        let connecting = Arc::clone(&cache);
        cache.spawn(async move {
            if let Err(error) = connecting.connection().await {
                tracing::warn!(
                    redis = %connecting.location,
                    %error,
                    "Redis cannot be reached: the shared cache is skipped (misses) until it answers"
                );
            }
        });
        Ok(cache)
    }

    /// Whether it was made from `url` (a reload keeps the connection when the URL is the same).
    pub fn is_for(&self, url: &str) -> bool {
        self.url == url
    }

    /// Where it is: `host:port/db`.
    pub fn location(&self) -> &str {
        &self.location
    }

    pub fn counters(&self) -> SharedCacheCounters {
        SharedCacheCounters {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            rate_errors: self.rate_errors.load(Ordering::Relaxed),
        }
    }

    /// Takes one request from the fleet-wide limit `name` of `per_minute` requests a minute
    /// (one Redis round trip, [`RATE_SCRIPT`]): `Some(Ok(()))` admitted, `Some(Err(wait_ms))`
    /// refused for that long; `None` when Redis could not answer within [`REDIS_TIMEOUT`]
    /// (counted in `rate_errors`), and the caller decides with its own limiter.
    pub async fn take_rate(
        self: &Arc<Self>,
        name: &str,
        per_minute: u32,
        now_ms: i64,
    ) -> Option<Result<(), i64>> {
        const MINUTE_US: i64 = 60_000_000;
        let this = Arc::clone(self);
        let key = format!("{REDIS_RATE_PREFIX}{name}");
        let now_us = now_ms.saturating_mul(1_000);
        let interval_us = MINUTE_US / i64::from(per_minute.max(1));
        let answer = self.spawn(async move {
            let mut connection = this.connection().await?;
            let mut eval = redis::cmd("EVAL");
            eval.arg(RATE_SCRIPT).arg(1).arg(&key).arg(now_us).arg(interval_us).arg(MINUTE_US);
            let command = eval.query_async::<i64>(&mut connection);
            match tokio::time::timeout(REDIS_TIMEOUT, command).await {
                Ok(Ok(wait_us)) => Ok(wait_us),
                Ok(Err(error)) => Err(error.to_string()),
                Err(_) => Err(format!("no answer within {REDIS_TIMEOUT:?}")),
            }
        })?;
        match answer.await {
            Ok(Ok(0)) => Some(Ok(())),
            Ok(Ok(wait_us)) => Some(Err(((wait_us + 999) / 1_000).max(1))),
            Ok(Err(error)) => {
                self.rate_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(redis = %self.location, %error, "shared rate limit unavailable");
                None
            }
            Err(_) => {
                self.rate_errors.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    fn spawn<F>(&self, future: F) -> Option<tokio::task::JoinHandle<F::Output>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime.as_ref().map(|runtime| runtime.spawn(future))
    }

    /// The connection, made on first use; after a failed attempt, none for a second (lookups
    /// are misses at once instead of each waiting for a connection timeout).
    async fn connection(&self) -> Result<redis::aio::ConnectionManager, String> {
        // Someone else connecting: do not queue behind them.
        let mut slot = self.connection.try_lock().map_err(|_| "connecting".to_owned())?;
        if let Some(manager) = &slot.manager {
            return Ok(manager.clone());
        }
        if slot.failed_at.is_some_and(|at| at.elapsed() < REDIS_RECONNECT_PAUSE) {
            return Err("unreachable (retrying every second)".to_owned());
        }
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(REDIS_TIMEOUT)
            .set_response_timeout(REDIS_TIMEOUT)
            .set_number_of_retries(1)
            .set_max_delay(100);
        match tokio::time::timeout(
            REDIS_TIMEOUT * 2,
            redis::aio::ConnectionManager::new_with_config(self.client.clone(), config),
        )
        .await
        {
            Ok(Ok(manager)) => {
                slot.failed_at = None;
                slot.manager = Some(manager.clone());
                Ok(manager)
            }
            Ok(Err(error)) => {
                slot.failed_at = Some(Instant::now());
                Err(error.to_string())
            }
            Err(_) => {
                slot.failed_at = Some(Instant::now());
                Err(format!("no connection within {:?}", REDIS_TIMEOUT * 2))
            }
        }
    }

    /// The entry and what is left of its lifetime; `None` on a miss or any failure.
    async fn get(self: &Arc<Self>, key: &CacheKey) -> Option<(CachedAnswer, Duration)> {
        let this = Arc::clone(self);
        let key = redis_key(key);
        let found = self.spawn(async move {
            let mut connection = this.connection().await?;
            let mut pipeline = redis::pipe();
            pipeline.cmd("GET").arg(&key).cmd("PTTL").arg(&key);
            let command = pipeline.query_async::<(Option<Vec<u8>>, i64)>(&mut connection);
            match tokio::time::timeout(REDIS_TIMEOUT, command).await {
                Ok(Ok(found)) => Ok(found),
                Ok(Err(error)) => Err(error.to_string()),
                Err(_) => Err(format!("no answer within {REDIS_TIMEOUT:?}")),
            }
        })?;
        match found.await {
            Ok(Ok((Some(bytes), ttl_ms))) if ttl_ms > 0 => match decode_entry(&bytes) {
                Some(mut answer) => {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    let ttl = Duration::from_millis(ttl_ms.unsigned_abs());
                    answer.ttl = ttl;
                    Some((answer, ttl))
                }
                None => {
                    self.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(redis = %self.location, "undecodable shared cache entry");
                    None
                }
            },
            Ok(Ok(_)) => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
            Ok(Err(error)) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(redis = %self.location, %error, "shared cache lookup failed");
                None
            }
            Err(_) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Writes an entry in the background (`SET … PX ttl`).
    fn put(self: &Arc<Self>, key: CacheKey, answer: Arc<CachedAnswer>, ttl: Duration) {
        let Some(bytes) = encode_entry(&answer) else { return };
        if self.pending_writes.fetch_add(1, Ordering::AcqRel) >= REDIS_MAX_PENDING_WRITES {
            self.pending_writes.fetch_sub(1, Ordering::AcqRel);
            self.errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let this = Arc::clone(self);
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let spawned = self.spawn(async move {
            let outcome = match this.connection().await {
                Ok(mut connection) => {
                    let mut set = redis::cmd("SET");
                    set.arg(redis_key(&key)).arg(bytes).arg("PX").arg(ttl_ms);
                    let command = set.query_async::<()>(&mut connection);
                    match tokio::time::timeout(REDIS_TIMEOUT, command).await {
                        Ok(result) => result.map_err(|error| error.to_string()),
                        Err(_) => Err(format!("no answer within {REDIS_TIMEOUT:?}")),
                    }
                }
                Err(error) => Err(error),
            };
            if let Err(error) = outcome {
                this.errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(redis = %this.location, %error, "shared cache write failed");
            }
            this.pending_writes.fetch_sub(1, Ordering::AcqRel);
        });
        if spawned.is_none() {
            self.pending_writes.fetch_sub(1, Ordering::AcqRel);
        }
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
    fn redis_entries_round_trip_and_garbage_is_refused() {
        let mut original = answer(10);
        original.usage = Some(Usage { input_tokens: 3, output_tokens: 4, ..Usage::default() });
        original.cost = Some(Money(1_234));
        original.stop_reason = Some("stop".into());
        let decoded = decode_entry(&encode_entry(&original).unwrap()).unwrap();
        assert_eq!(decoded.body, original.body);
        assert_eq!((decoded.usage, decoded.cost), (original.usage, original.cost));
        assert_eq!(decoded.stop_reason, original.stop_reason);
        assert!(decode_entry(b"\0\0\0\x09{\"a\"").is_none());
        assert!(decode_entry(b"").is_none());
        let key = CacheKey { fingerprint: Fingerprint(255), shape: AnswerShape::Sse };
        assert_eq!(redis_key(&key), "llmopt:cache:v1:000000000000000000000000000000ff:sse");
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
