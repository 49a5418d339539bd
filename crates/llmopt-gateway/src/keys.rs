//! Virtual keys at run time: the registry the admin API writes and every proxied call reads.
//!
//! Keys live in the [`KeyStore`] (sled by default) and, for the hot path, in memory: an
//! `ArcSwap` of two maps (by digest, by id) that a call reads without a lock. Creating or
//! revoking a key writes the store first, then swaps or flags the in-memory entry, so a revoked
//! key fails from the next request on. A revoked key stays in the maps (flagged), so its caller
//! gets "revoked", not "unknown".
//!
//! **Spend** is the sum of the exact costs of a key's records in its current budget period
//! (UTC day or month), kept per key in memory ([`Ledger`]) and added when a call's record is
//! made (`AppState::on_record`), every proxied route alike; a cache hit adds zero. On start it is
//! rebuilt from the record store (one aggregate query over the current month grouped by the
//! `llmopt.key` tag that every call made with a virtual key carries), so a restart keeps it.
//! A call whose cost is unknown (no usage, or a model without a price) adds nothing.
//!
//! **Budget bound.** A call is admitted while the key's spend is below its budget, and its cost
//! is added when it ends; nothing is reserved in between. So the spend can pass the budget only
//! through calls already admitted when it was still below: the final spend is below
//! `budget + the costs of the calls in flight when the budget was reached` (tested in
//! `ledger_overshoot_is_bounded_by_the_calls_in_flight`). Every call admitted after that is
//! refused with 429 `budget_exceeded`.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicI64, Ordering},
    },
};

use arc_swap::ArcSwap;
use axum::http::StatusCode;
use llmopt_core::{
    AggregateQuery, BudgetPeriod, Clock, ErrorKind, GroupBy, KeyStore, Money, RecordFilter,
    RecordStore, RequestRecord, StoreError, VirtualKey,
};

use crate::{cache::RedisCache, error::ApiError};

/// The record tag naming the virtual key a call was made with (reserved: clients cannot set
/// `llmopt.*` tags).
pub const KEY_TAG: &str = "llmopt.key";

/// The most keys stored, revoked ones included: bounds memory, `GET /api/keys` and the rebuild.
pub const MAX_KEYS: usize = 10_000;

/// The most keys exported in `/metrics` (active keys, in id order).
pub const MAX_KEY_SERIES: usize = 1_000;

const DAY_MS: i64 = 86_400_000;
const MINUTE_MS: i64 = 60_000;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Spend in one period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ledger {
    pub period: BudgetPeriod,
    pub period_start_ms: i64,
    pub spent: Money,
}

impl Ledger {
    pub fn new(period: BudgetPeriod, now_ms: i64) -> Ledger {
        Ledger { period, period_start_ms: period.start_ms(now_ms), spent: Money::ZERO }
    }

    /// Moves to the period holding `now_ms` if it is a later one (spend starts at zero).
    fn roll(&mut self, now_ms: i64) {
        let start = self.period.start_ms(now_ms);
        if start > self.period_start_ms {
            self.period_start_ms = start;
            self.spent = Money::ZERO;
        }
    }

    /// Adds the cost of a call that started at `ts_ms`; a call of an earlier period adds
    /// nothing to this one.
    pub fn add(&mut self, ts_ms: i64, cost: Money) {
        self.roll(ts_ms);
        if self.period.start_ms(ts_ms) == self.period_start_ms {
            self.spent += cost;
        }
    }

    /// The spend of the period holding `now_ms`.
    pub fn spent_at(&mut self, now_ms: i64) -> Money {
        self.roll(now_ms);
        self.spent
    }
}

/// A token bucket of `requests_per_minute`, in 1/60,000ths of a request so that a refill per
/// millisecond is an integer.
#[derive(Debug)]
struct RateBucket {
    per_minute: i64,
    /// Tokens × 60,000.
    tokens: i64,
    last_ms: i64,
}

impl RateBucket {
    fn new(per_minute: u32, now_ms: i64) -> RateBucket {
        let per_minute = i64::from(per_minute.max(1));
        RateBucket { per_minute, tokens: per_minute * MINUTE_MS, last_ms: now_ms }
    }

    /// Takes one request's token, or says in how many milliseconds one will be there.
    fn take(&mut self, now_ms: i64) -> Result<(), i64> {
        let elapsed = now_ms.saturating_sub(self.last_ms).max(0);
        self.tokens = (self.tokens + elapsed.saturating_mul(self.per_minute))
            .min(self.per_minute * MINUTE_MS);
        self.last_ms = self.last_ms.max(now_ms);
        if self.tokens >= MINUTE_MS {
            self.tokens -= MINUTE_MS;
            Ok(())
        } else {
            let missing = MINUTE_MS - self.tokens;
            Err((missing + self.per_minute - 1) / self.per_minute)
        }
    }
}

/// One key in memory: its settings, revocation flag, spend and rate bucket.
#[derive(Debug)]
pub struct KeyEntry {
    pub key: VirtualKey,
    /// `i64::MIN` while active; the revocation time once revoked.
    revoked_ms: AtomicI64,
    ledger: Mutex<Ledger>,
    rate: Option<Mutex<RateBucket>>,
}

impl PartialEq for KeyEntry {
    fn eq(&self, other: &KeyEntry) -> bool {
        self.key.id == other.key.id
    }
}

impl Eq for KeyEntry {}

impl KeyEntry {
    fn new(key: VirtualKey, ledger: Ledger, now_ms: i64) -> KeyEntry {
        let rate = key.requests_per_minute.map(|rpm| Mutex::new(RateBucket::new(rpm, now_ms)));
        KeyEntry {
            revoked_ms: AtomicI64::new(key.revoked_ms.unwrap_or(i64::MIN)),
            key,
            ledger: Mutex::new(ledger),
            rate,
        }
    }

    pub fn revoked_ms(&self) -> Option<i64> {
        let at = self.revoked_ms.load(Ordering::Acquire);
        (at != i64::MIN).then_some(at)
    }

    /// Spend in the period holding `now_ms`, and that period's bounds.
    pub fn spend(&self, now_ms: i64) -> (Money, i64, i64) {
        let mut ledger = lock(&self.ledger);
        let spent = ledger.spent_at(now_ms);
        (spent, ledger.period_start_ms, self.key.budget_period.end_ms(now_ms))
    }

    /// Adds a finished call's cost.
    pub fn add_cost(&self, ts_ms: i64, cost: Money) {
        lock(&self.ledger).add(ts_ms, cost);
    }

    /// The key's model allow-list alone, for `models` (the model asked for and what its alias
    /// names): calls that cost nothing (`/v1/messages/count_tokens`) check only this.
    pub fn allow_model(&self, models: &[&str]) -> Result<(), ApiError> {
        let asked = models.first().copied().unwrap_or_default();
        if !models.iter().any(|model| self.key.allows_model(model)) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorKind::Authentication,
                format!("this key may not use model `{asked}`"),
            )
            .with_type("model_not_allowed"));
        }
        Ok(())
    }

    /// Admits one call for `models` (the model asked for and what its alias names): the model
    /// must be allowed, the spend below the budget, and the rate bucket not empty (checked in
    /// that order, so a refused call does not use up the rate). The rate is this process's own
    /// bucket; see [`KeyEntry::admit_shared`] for a fleet's.
    pub fn admit(&self, models: &[&str], now_ms: i64) -> Result<(), ApiError> {
        self.admit_model_and_budget(models, now_ms)?;
        self.take_local_rate(now_ms)
    }

    /// [`KeyEntry::admit`] with the rate counted in Redis when `shared` is given
    /// (`cache.backend = "redis"`), so that every replica takes from one bucket per key. When
    /// Redis cannot answer, this replica's own bucket decides (the fleet then admits up to
    /// `replicas × requests_per_minute` until Redis is back; counted in
    /// `llmopt_rate_limit_redis_errors`).
    pub async fn admit_shared(
        &self,
        models: &[&str],
        now_ms: i64,
        shared: Option<&Arc<RedisCache>>,
    ) -> Result<(), ApiError> {
        self.admit_model_and_budget(models, now_ms)?;
        let (Some(shared), Some(per_minute)) = (shared, self.key.requests_per_minute) else {
            return self.take_local_rate(now_ms);
        };
        match shared.take_rate(&self.key.id, per_minute, now_ms).await {
            Some(Ok(())) => Ok(()),
            Some(Err(wait_ms)) => Err(self.rate_error(now_ms, wait_ms)),
            None => self.take_local_rate(now_ms),
        }
    }

    fn admit_model_and_budget(&self, models: &[&str], now_ms: i64) -> Result<(), ApiError> {
        self.allow_model(models)?;
        if let Some(budget) = self.key.budget {
            let (spent, _, end_ms) = self.spend(now_ms);
            if spent >= budget {
                let mut error = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    ErrorKind::Gateway,
                    format!(
                        "budget exceeded: this key spent ${:.6} of its ${:.6} {} budget",
                        spent.as_usd_f64(),
                        budget.as_usd_f64(),
                        self.key.budget_period.as_str()
                    ),
                )
                .with_type("budget_exceeded");
                error.retry_after_s = Some(seconds_until(now_ms, end_ms));
                return Err(error);
            }
        }
        Ok(())
    }

    fn take_local_rate(&self, now_ms: i64) -> Result<(), ApiError> {
        match &self.rate {
            Some(rate) => {
                lock(rate).take(now_ms).map_err(|wait_ms| self.rate_error(now_ms, wait_ms))
            }
            None => Ok(()),
        }
    }

    fn rate_error(&self, now_ms: i64, wait_ms: i64) -> ApiError {
        let mut error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Gateway,
            format!(
                "rate limit exceeded: this key may make {} requests per minute",
                self.key.requests_per_minute.unwrap_or_default()
            ),
        )
        .with_type("rate_limit_exceeded");
        error.retry_after_s = Some(seconds_until(now_ms, now_ms + wait_ms));
        error
    }
}

fn seconds_until(now_ms: i64, at_ms: i64) -> u64 {
    u64::try_from((at_ms - now_ms).max(0)).unwrap_or(0).div_ceil(1_000).max(1)
}

#[derive(Debug, Default)]
struct Entries {
    by_digest: HashMap<[u8; 32], Arc<KeyEntry>>,
    by_id: BTreeMap<String, Arc<KeyEntry>>,
}

/// What `POST /api/keys` asks for, validated.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub tenant: String,
    pub budget: Option<Money>,
    pub budget_period: BudgetPeriod,
    pub models: Vec<String>,
    pub requests_per_minute: Option<u32>,
    pub expires_at_ms: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("at most {MAX_KEYS} keys can be stored (revoked ones included)")]
    TooMany,
    #[error("key store: {0}")]
    Store(#[from] StoreError),
}

/// Every virtual key, in memory over the store.
#[derive(Debug)]
pub struct KeyRegistry {
    store: Arc<dyn KeyStore>,
    clock: Arc<dyn Clock>,
    entries: ArcSwap<Entries>,
    /// Serialises creation (count check, store write, map swap).
    write: Mutex<()>,
}

fn digest_of_hex(hex: &str) -> Option<[u8; 32]> {
    let mut bytes = [0u8; 32];
    if hex.len() != 64 {
        return None;
    }
    for (index, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(index * 2..index * 2 + 2)?, 16).ok()?;
    }
    Some(bytes)
}

impl KeyRegistry {
    /// Loads the stored keys and rebuilds each one's spend in its current period from the
    /// records (one aggregate query over the current UTC month, by day and key).
    pub fn open(
        store: Arc<dyn KeyStore>,
        records: &dyn RecordStore,
        clock: Arc<dyn Clock>,
    ) -> Result<KeyRegistry, StoreError> {
        let now_ms = clock.now_ms();
        let keys = store.list()?;
        let spend = if keys.is_empty() { Vec::new() } else { spend_by_day(records, now_ms)? };
        let mut entries = Entries::default();
        for key in keys {
            let Some(digest) = digest_of_hex(&key.sha256) else {
                return Err(StoreError::Encoding(format!("key `{}`: malformed digest", key.id)));
            };
            let mut ledger = Ledger::new(key.budget_period, now_ms);
            for (day_start, key_id, cost) in &spend {
                if *key_id == key.id {
                    ledger.add(*day_start, *cost);
                }
            }
            let entry = Arc::new(KeyEntry::new(key, ledger, now_ms));
            entries.by_digest.insert(digest, Arc::clone(&entry));
            entries.by_id.insert(entry.key.id.clone(), entry);
        }
        Ok(KeyRegistry {
            store,
            clock,
            entries: ArcSwap::from_pointee(entries),
            write: Mutex::new(()),
        })
    }

    /// Whether any virtual key was ever made (revoked ones count: revoking the last key must
    /// not open the gateway).
    pub fn any(&self) -> bool {
        !self.entries.load().by_id.is_empty()
    }

    /// The key with this digest.
    pub fn by_digest(&self, digest: &[u8; 32]) -> Option<Arc<KeyEntry>> {
        self.entries.load().by_digest.get(digest).cloned()
    }

    pub fn by_id(&self, id: &str) -> Option<Arc<KeyEntry>> {
        self.entries.load().by_id.get(id).cloned()
    }

    /// Every key, in id order.
    pub fn all(&self) -> Vec<Arc<KeyEntry>> {
        self.entries.load().by_id.values().cloned().collect()
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Makes a key: returns its entry and the key itself (shown once, never stored).
    pub fn create(&self, new: NewKey) -> Result<(Arc<KeyEntry>, String), KeyError> {
        let _guard = lock(&self.write);
        let current = self.entries.load_full();
        if current.by_id.len() >= MAX_KEYS {
            return Err(KeyError::TooMany);
        }
        // 244 random bits (two v4 UUIDs) from the operating system's generator.
        let secret =
            format!("sk-llmopt-{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        let id = format!("key_{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
        let now_ms = self.clock.now_ms();
        let key = VirtualKey {
            id,
            sha256: crate::auth::hash_key(&secret),
            tenant: new.tenant,
            budget: new.budget,
            budget_period: new.budget_period,
            models: new.models,
            requests_per_minute: new.requests_per_minute,
            expires_at_ms: new.expires_at_ms,
            created_ms: now_ms,
            revoked_ms: None,
        };
        self.store.insert(&key)?;
        let digest = crate::auth::digest(&secret);
        let entry = Arc::new(KeyEntry::new(key, Ledger::new(new.budget_period, now_ms), now_ms));
        let mut entries =
            Entries { by_digest: current.by_digest.clone(), by_id: current.by_id.clone() };
        entries.by_digest.insert(digest, Arc::clone(&entry));
        entries.by_id.insert(entry.key.id.clone(), Arc::clone(&entry));
        self.entries.store(Arc::new(entries));
        Ok((entry, secret))
    }

    /// Revokes a key at once: stored first, then flagged in memory. `Ok(None)`: unknown id.
    pub fn revoke(&self, id: &str) -> Result<Option<Arc<KeyEntry>>, KeyError> {
        let Some(entry) = self.by_id(id) else { return Ok(None) };
        let now_ms = self.clock.now_ms();
        if !self.store.revoke(id, now_ms)? {
            return Ok(None);
        }
        let _ = entry.revoked_ms.compare_exchange(
            i64::MIN,
            now_ms,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        Ok(Some(entry))
    }

    /// Takes in the keys other replicas made or revoked in a shared store (polled with the
    /// policy, `overlay::spawn_policy_follower`): new keys are added (their spend here starts at
    /// zero: each process counts the calls it serves), revocations flagged. Returns how many
    /// keys changed.
    pub fn refresh(&self) -> Result<usize, StoreError> {
        let stored = self.store.list()?;
        let _guard = lock(&self.write);
        let current = self.entries.load_full();
        let mut changed = 0;
        let mut added = Vec::new();
        for key in stored {
            match current.by_id.get(&key.id) {
                Some(entry) => {
                    if let Some(at) = key.revoked_ms
                        && entry
                            .revoked_ms
                            .compare_exchange(i64::MIN, at, Ordering::AcqRel, Ordering::Acquire)
                            .is_ok()
                    {
                        changed += 1;
                    }
                }
                None => added.push(key),
            }
        }
        if added.is_empty() {
            return Ok(changed);
        }
        let now_ms = self.clock.now_ms();
        let mut entries =
            Entries { by_digest: current.by_digest.clone(), by_id: current.by_id.clone() };
        for key in added {
            let Some(digest) = digest_of_hex(&key.sha256) else {
                tracing::warn!(key = %key.id, "a stored key with a malformed digest is skipped");
                continue;
            };
            let ledger = Ledger::new(key.budget_period, now_ms);
            let entry = Arc::new(KeyEntry::new(key, ledger, now_ms));
            entries.by_digest.insert(digest, Arc::clone(&entry));
            entries.by_id.insert(entry.key.id.clone(), entry);
            changed += 1;
        }
        self.entries.store(Arc::new(entries));
        Ok(changed)
    }

    /// Counts a finished call against its key's spend.
    pub fn on_record(&self, record: &RequestRecord) {
        if let (Some(id), Some(cost)) = (record.tags.get(KEY_TAG), record.cost)
            && let Some(entry) = self.by_id(id)
        {
            entry.add_cost(record.ts_ms, cost);
        }
    }
}

/// (day start, key id, cost) of every key's records since the start of the current UTC month.
fn spend_by_day(
    records: &dyn RecordStore,
    now_ms: i64,
) -> Result<Vec<(i64, String, Money)>, StoreError> {
    let query = AggregateQuery {
        from_ms: BudgetPeriod::Month.start_ms(now_ms),
        // Records stamped up to now, and a little after (a clock a few ms ahead elsewhere).
        to_ms: BudgetPeriod::Day.end_ms(now_ms),
        window_ms: DAY_MS,
        group_by: GroupBy::Tag(KEY_TAG.to_owned()),
        filter: RecordFilter::default(),
    };
    Ok(records
        .aggregate(&query)?
        .into_iter()
        .filter(|row| !row.group.is_empty())
        .map(|row| (row.window_start_ms, row.group, row.cost))
        .collect())
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;

    const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00Z

    #[test]
    fn ledger_counts_each_period_alone() {
        let mut ledger = Ledger::new(BudgetPeriod::Day, T0 + 1_000);
        ledger.add(T0 + 2_000, Money::from_micros(5));
        ledger.add(T0 - 1, Money::from_micros(100)); // yesterday's call ends today
        assert_eq!(ledger.spent_at(T0 + 3_000), Money::from_micros(5));
        assert_eq!(ledger.spent_at(T0 + DAY_MS), Money::ZERO, "a new day starts at zero");
        ledger.add(T0 + 5_000, Money::from_micros(7)); // a call from the day before
        assert_eq!(ledger.spent_at(T0 + DAY_MS), Money::ZERO);
    }

    #[test]
    fn rate_bucket_allows_the_rate_and_refills() {
        let mut bucket = RateBucket::new(2, T0);
        assert!(bucket.take(T0).is_ok());
        assert!(bucket.take(T0).is_ok());
        assert_eq!(bucket.take(T0), Err(30_000), "one token comes back every 30 s");
        assert_eq!(bucket.take(T0 + 29_999), Err(1));
        assert!(bucket.take(T0 + 30_000).is_ok());
        assert!(bucket.take(T0 + 10 * MINUTE_MS).is_ok());
        assert!(bucket.take(T0 + 10 * MINUTE_MS).is_ok());
        assert!(bucket.take(T0 + 10 * MINUTE_MS).is_err(), "never more than a minute's worth");
    }

    fn entry(budget_micros: i64) -> KeyEntry {
        let key = VirtualKey {
            id: "key_1".into(),
            sha256: "0".repeat(64),
            tenant: "t".into(),
            budget: Some(Money::from_micros(budget_micros)),
            budget_period: BudgetPeriod::Month,
            models: Vec::new(),
            requests_per_minute: None,
            expires_at_ms: None,
            created_ms: T0,
            revoked_ms: None,
        };
        KeyEntry::new(key, Ledger::new(BudgetPeriod::Month, T0), T0)
    }

    /// Random interleavings of admissions and completions: the spend never passes the budget by
    /// more than the costs of the calls in flight when it first reached the budget, and no call
    /// is admitted once it has.
    #[test]
    fn ledger_overshoot_is_bounded_by_the_calls_in_flight() {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(20);
        for _ in 0..500 {
            let budget = rng.gen_range(1..2_000);
            let key = entry(budget);
            let mut in_flight: Vec<Money> = Vec::new();
            // The costs of the calls in flight when the spend reached the budget.
            let mut allowance: Option<Money> = None;
            for _ in 0..200 {
                if rng.gen_bool(0.5) {
                    match key.admit(&["m"], T0) {
                        Ok(()) => {
                            assert!(allowance.is_none(), "admitted after the budget was reached");
                            in_flight.push(Money::from_micros(rng.gen_range(0..300)));
                        }
                        Err(error) => {
                            assert!(allowance.is_some(), "refused below the budget");
                            assert_eq!(error.status, StatusCode::TOO_MANY_REQUESTS);
                        }
                    }
                } else if !in_flight.is_empty() {
                    let index = rng.gen_range(0..in_flight.len());
                    let cost = in_flight.swap_remove(index);
                    key.add_cost(T0, cost);
                    if allowance.is_none() && key.spend(T0).0 >= Money::from_micros(budget) {
                        allowance = Some(cost + in_flight.iter().copied().sum::<Money>());
                    }
                }
            }
            for cost in in_flight.drain(..) {
                key.add_cost(T0, cost);
            }
            let limit = Money::from_micros(budget) + allowance.unwrap_or(Money::ZERO);
            assert!(key.spend(T0).0 <= limit, "overshoot beyond the calls in flight");
        }
    }

    #[test]
    fn a_replica_takes_in_keys_made_and_revoked_by_another() {
        let store: Arc<dyn KeyStore> = Arc::new(llmopt_core::MemoryKeyStore::new());
        let records = llmopt_core::MemoryRecordStore::new();
        let clock: Arc<dyn Clock> = Arc::new(llmopt_core::ManualClock::new(T0));
        let open = || KeyRegistry::open(Arc::clone(&store), &records, Arc::clone(&clock)).unwrap();
        let (first, second) = (open(), open());
        let new = NewKey {
            tenant: "acme".into(),
            budget: None,
            budget_period: BudgetPeriod::Month,
            models: Vec::new(),
            requests_per_minute: Some(10),
            expires_at_ms: None,
        };
        let (entry, secret) = first.create(new).unwrap();
        let digest = crate::auth::digest(&secret);
        assert!(second.by_digest(&digest).is_none());
        assert_eq!(second.refresh().unwrap(), 1);
        assert_eq!(second.by_digest(&digest).unwrap().key.id, entry.key.id);
        assert_eq!(second.refresh().unwrap(), 0, "nothing new");
        first.revoke(&entry.key.id).unwrap();
        assert!(second.by_id(&entry.key.id).unwrap().revoked_ms().is_none());
        assert_eq!(second.refresh().unwrap(), 1);
        assert_eq!(second.by_id(&entry.key.id).unwrap().revoked_ms(), Some(T0));
    }
}
