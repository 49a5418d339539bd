//! `PgRecordStore`: records in a table partitioned by UTC day.
//!
//! - **Partitions** `llmopt_records_YYYYMMDD` are created before a batch that needs them, under
//!   a transaction advisory lock (two replicas may need the same new day at once); the days
//!   known to exist are cached. If another replica's retention dropped a cached day, the insert
//!   fails with "no partition … found for row" and is retried once after the cache is cleared.
//! - **Batches** are one binary `COPY … FROM STDIN` (no statement to parse or plan, no text to
//!   convert) after one `DELETE … WHERE id = ANY($1)` that takes out stored copies of the
//!   same ids (a duplicate id replaces), in one transaction. Append order among equal
//!   timestamps is kept by `seq` = batch number (a sequence) << 20 | place in the batch.
//! - **Retention** drops every partition that ends at or before the cutoff and deletes the
//!   rows before it in the one partition it falls in.
//! - **Aggregates** are one `GROUP BY` query: exact counts and `numeric` sums, the latency mean,
//!   and quantiles with `percentile_cont`, which interpolates linearly between order statistics
//!   exactly as numpy's default does, so they are exact where sled's sketches are within 1 %.

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    sync::{Arc, Mutex},
};

use bytes::{BufMut, BytesMut};
use llmopt_core::{
    AggregateQuery, AggregateRow, CacheOutcome, Feedback, GroupBy, Money, RecordQuery, RecordStore,
    RequestId, RequestRecord, StoreError, store::join_feedback,
};
use tokio_postgres::{
    binary_copy::BinaryCopyInWriter,
    types::{IsNull, ToSql, Type, to_sql_checked},
};

use super::{Engine, PgLocation, db_error, pool_error};
use crate::{
    Result,
    codec::{decode_record, encode_record},
};

const DAY_MS: i64 = 86_400_000;
/// Most records in one INSERT statement (and per batch number: `seq` keeps 20 bits for the
/// place in the batch).
const CHUNK: usize = 65_536;
/// Key of the advisory lock partition changes take ("llmopt" + 3).
const PARTITION_LOCK: i64 = 0x6c6c_6d6f_7074_0003;

#[derive(Debug)]
pub struct PgRecordStore {
    engine: Arc<Engine>,
    /// Days whose partition this process created or saw.
    known_days: Mutex<HashSet<i64>>,
}

/// `llmopt_records_YYYYMMDD` for a day number since the epoch (proleptic Gregorian, UTC).
fn partition_name(day: i64) -> String {
    // Howard Hinnant's `civil_from_days`.
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    if (0..=9999).contains(&y) {
        format!("llmopt_records_{y:04}{m:02}{d:02}")
    } else {
        // Timestamps far from now (tests, bad clocks) still get a partition.
        format!("llmopt_records_day_{}", day.to_string().replace('-', "m"))
    }
}

/// The day a partition name stands for (the inverse of [`partition_name`]).
fn day_of_partition(name: &str) -> Option<i64> {
    let rest = name.strip_prefix("llmopt_records_")?;
    if let Some(day) = rest.strip_prefix("day_") {
        return day.replace('m', "-").parse().ok();
    }
    if rest.len() != 8 || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (y, m, d): (i64, i64, i64) =
        (rest[..4].parse().ok()?, rest[4..6].parse().ok()?, rest[6..].parse().ok()?);
    // Hinnant's `days_from_civil`.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

fn day_of(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(DAY_MS)
}

fn day_bounds(day: i64) -> (i64, i64) {
    (day.saturating_mul(DAY_MS), day.saturating_add(1).saturating_mul(DAY_MS))
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn parse_money(text: &str) -> Result<Money> {
    let whole = text.split('.').next().unwrap_or(text);
    whole
        .parse::<i128>()
        .map(Money)
        .map_err(|_| StoreError::Encoding(format!("a sum of money PostgreSQL returned: {text}")))
}

/// Whether an insert failed because a row's partition does not exist (dropped by another
/// replica's retention after this one cached it).
fn is_missing_partition(error: &tokio_postgres::Error) -> bool {
    error.as_db_error().is_some_and(|db| {
        db.code() == &tokio_postgres::error::SqlState::CHECK_VIOLATION
            && db.message().starts_with("no partition of relation")
    })
}

/// The columns of one batch, as arrays for `unnest`.
#[derive(Default)]
struct Columns {
    id: Vec<String>,
    ts_ms: Vec<i64>,
    seq: Vec<i64>,
    served_model: Vec<String>,
    provider: Vec<String>,
    tenant: Vec<Option<String>>,
    experiment_id: Vec<Option<String>>,
    tags: Vec<String>,
    ok: Vec<bool>,
    cache_hit: Vec<bool>,
    latency_us: Vec<i64>,
    input_tokens: Vec<Option<i64>>,
    cache_read_tokens: Vec<Option<i64>>,
    cache_write_tokens: Vec<Option<i64>>,
    output_tokens: Vec<Option<i64>>,
    cost: Vec<Option<i128>>,
    saved_cost: Vec<Option<i128>>,
    body: Vec<Vec<u8>>,
}

impl Columns {
    fn push(&mut self, record: &RequestRecord, place: usize) -> Result<()> {
        self.id.push(record.id.as_str().to_owned());
        self.ts_ms.push(record.ts_ms);
        // The batch number is added when the batch is written.
        self.seq.push(place as i64);
        self.served_model.push(record.served_model.0.clone());
        self.provider.push(record.provider.0.clone());
        self.tenant.push(record.tenant.as_ref().map(|tenant| tenant.as_str().to_owned()));
        self.experiment_id.push(record.experiment.as_ref().map(|arm| arm.experiment_id.clone()));
        self.tags.push(
            serde_json::to_string(&record.tags)
                .map_err(|error| StoreError::Encoding(error.to_string()))?,
        );
        self.ok.push(record.status.is_ok());
        self.cache_hit.push(record.cache == CacheOutcome::Hit);
        self.latency_us.push(to_i64(record.latency_us));
        let usage = record.usage.as_ref();
        self.input_tokens.push(usage.map(|u| to_i64(u.input_tokens)));
        self.cache_read_tokens.push(usage.map(|u| to_i64(u.cache_read_tokens)));
        self.cache_write_tokens.push(usage.map(|u| to_i64(u.cache_write_tokens())));
        self.output_tokens.push(usage.map(|u| to_i64(u.output_tokens)));
        self.cost.push(record.cost.map(|cost| cost.0));
        self.saved_cost.push(record.saved_cost.map(|saved| saved.0));
        self.body.push(encode_record(record));
        Ok(())
    }
}

/// A batch is written with `COPY … FROM STDIN (FORMAT binary)`: the server parses no text and
/// plans no statement per batch. The `store_postgres` bench (one collector into a loopback
/// server) puts the server's work at ~11 µs per record, mostly per-row work that COPY does not
/// change (two indexes, `jsonb`, heap and WAL); see ARCHITECTURE.md for the figures.
const COPY: &str = "
    COPY llmopt_records (id, ts_ms, seq, served_model, provider, tenant, experiment_id, tags, ok,
        cache_hit, latency_us, input_tokens, cache_read_tokens, cache_write_tokens,
        output_tokens, cost, saved_cost, body)
    FROM STDIN (FORMAT binary)";

/// The column types of [`COPY`], in its order.
const COPY_TYPES: [Type; 18] = [
    Type::TEXT,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::JSONB,
    Type::BOOL,
    Type::BOOL,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::NUMERIC,
    Type::NUMERIC,
    Type::BYTEA,
];

/// A `jsonb` value in the binary protocol: a version byte (1) and the JSON text.
#[derive(Debug)]
struct Jsonb<'a>(&'a str);

impl ToSql for Jsonb<'_> {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.put_u8(1);
        out.put_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB
    }

    to_sql_checked!();
}

/// An integer as a `numeric` in the binary protocol: digit count, weight (of the first digit,
/// in powers of 10,000), sign, display scale, then base-10,000 digits, most significant first
/// (trailing zero digits may be left out: the weight places the others).
#[derive(Debug)]
struct Numeric(i128);

impl ToSql for Numeric {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        let mut rest = self.0.unsigned_abs();
        let mut digits: Vec<i16> = Vec::with_capacity(10);
        while rest > 0 {
            digits.push((rest % 10_000) as i16);
            rest /= 10_000;
        }
        digits.reverse();
        let weight = digits.len().saturating_sub(1) as i16;
        while digits.last() == Some(&0) {
            digits.pop();
        }
        out.put_i16(digits.len() as i16);
        out.put_i16(weight);
        out.put_u16(if self.0 < 0 { 0x4000 } else { 0 });
        out.put_i16(0);
        for digit in digits {
            out.put_i16(digit);
        }
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }

    to_sql_checked!();
}

/// The filter part of scans and aggregates: `$1` from, `$2` to, `$3`..`$8` filter values
/// (a NULL parameter matches everything).
const WHERE: &str = "
    WHERE ts_ms >= $1 AND ts_ms < $2
      AND ($3::text IS NULL OR served_model = $3)
      AND ($4::text IS NULL OR provider = $4)
      AND ($5::text IS NULL OR tenant = $5)
      AND ($6::text IS NULL OR tags ->> $6 = $7)
      AND ($8::text IS NULL OR experiment_id = $8)";

/// Owned parameters of [`WHERE`].
struct FilterParams {
    from_ms: i64,
    to_ms: i64,
    model: Option<String>,
    provider: Option<String>,
    tenant: Option<String>,
    tag_key: Option<String>,
    tag_value: Option<String>,
    experiment_id: Option<String>,
}

impl FilterParams {
    fn new(from_ms: i64, to_ms: i64, filter: &llmopt_core::RecordFilter) -> FilterParams {
        FilterParams {
            from_ms,
            to_ms,
            model: filter.model.clone(),
            provider: filter.provider.clone(),
            tenant: filter.tenant.clone(),
            tag_key: filter.tag.as_ref().map(|(key, _)| key.clone()),
            tag_value: filter.tag.as_ref().map(|(_, value)| value.clone()),
            experiment_id: filter.experiment_id.clone(),
        }
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.from_ms,
            &self.to_ms,
            &self.model,
            &self.provider,
            &self.tenant,
            &self.tag_key,
            &self.tag_value,
            &self.experiment_id,
        ]
    }
}

impl PgRecordStore {
    pub(super) fn new(engine: Arc<Engine>) -> PgRecordStore {
        PgRecordStore { engine, known_days: Mutex::new(HashSet::new()) }
    }

    fn known_days(&self) -> std::sync::MutexGuard<'_, HashSet<i64>> {
        self.known_days.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Creates the partitions of `days` that this process has not seen yet.
    fn ensure_partitions(&self, days: BTreeSet<i64>) -> Result<()> {
        let missing: Vec<i64> = {
            let known = self.known_days();
            days.into_iter().filter(|day| !known.contains(day)).collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        let location = self.engine.location().clone();
        let created = missing.clone();
        self.engine.run(move |pool| async move {
            let mut client = pool.get().await.map_err(|error| pool_error(&location, error))?;
            let db = |error: tokio_postgres::Error| db_error(&location, &error);
            let transaction = client.transaction().await.map_err(db)?;
            transaction
                .execute("SELECT pg_advisory_xact_lock($1)", &[&PARTITION_LOCK])
                .await
                .map_err(db)?;
            for day in created {
                let (from, to) = day_bounds(day);
                transaction
                    .batch_execute(&format!(
                        "CREATE TABLE IF NOT EXISTS \"{}\" PARTITION OF llmopt_records \
                         FOR VALUES FROM ({from}) TO ({to})",
                        partition_name(day)
                    ))
                    .await
                    .map_err(db)?;
            }
            transaction.commit().await.map_err(db)
        })?;
        self.known_days().extend(missing);
        Ok(())
    }

    /// One transaction: take out stored copies of the batch's ids, insert the batch.
    fn insert(&self, records: &[RequestRecord]) -> Result<std::result::Result<(), InsertError>> {
        let mut columns = Columns::default();
        for (place, record) in records.iter().enumerate() {
            columns.push(record, place)?;
        }
        let location = self.engine.location().clone();
        self.engine.run(move |pool| async move {
            let mut client = pool.get().await.map_err(|error| pool_error(&location, error))?;
            let db = |error: tokio_postgres::Error| db_error(&location, &error);
            let transaction = client.transaction().await.map_err(db)?;
            let batch: i64 = transaction
                .query_one("SELECT nextval('llmopt_record_batches')", &[])
                .await
                .map_err(db)?
                .get(0);
            let delete = transaction
                .prepare_cached("DELETE FROM llmopt_records WHERE id = ANY($1::text[])")
                .await
                .map_err(db)?;
            transaction.execute(&delete, &[&columns.id]).await.map_err(db)?;
            let c = &columns;
            let copied = async {
                let sink = transaction.copy_in(COPY).await?;
                let writer = BinaryCopyInWriter::new(sink, &COPY_TYPES);
                let mut writer = std::pin::pin!(writer);
                for row in 0..c.id.len() {
                    let seq = (batch << 20) | c.seq[row];
                    let cost = c.cost[row].map(Numeric);
                    let saved_cost = c.saved_cost[row].map(Numeric);
                    let values: [&(dyn ToSql + Sync); 18] = [
                        &c.id[row],
                        &c.ts_ms[row],
                        &seq,
                        &c.served_model[row],
                        &c.provider[row],
                        &c.tenant[row],
                        &c.experiment_id[row],
                        &Jsonb(&c.tags[row]),
                        &c.ok[row],
                        &c.cache_hit[row],
                        &c.latency_us[row],
                        &c.input_tokens[row],
                        &c.cache_read_tokens[row],
                        &c.cache_write_tokens[row],
                        &c.output_tokens[row],
                        &cost,
                        &saved_cost,
                        &c.body[row],
                    ];
                    writer.as_mut().write(&values).await?;
                }
                writer.finish().await
            };
            match copied.await {
                Ok(_) => {}
                Err(error) if is_missing_partition(&error) => {
                    return Ok(Err(InsertError::MissingPartition));
                }
                Err(error) => return Err(db(error)),
            }
            transaction.commit().await.map_err(db)?;
            Ok(Ok(()))
        })
    }

    fn partitions(&self) -> Result<Vec<(i64, String)>> {
        let location = self.engine.location().clone();
        self.engine.run(move |pool| async move {
            let client = pool.get().await.map_err(|error| pool_error(&location, error))?;
            let rows = client
                .query(
                    "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                     WHERE i.inhparent = 'llmopt_records'::regclass",
                    &[],
                )
                .await
                .map_err(|error| db_error(&location, &error))?;
            Ok(rows
                .iter()
                .filter_map(|row| {
                    let name: String = row.get(0);
                    day_of_partition(&name).map(|day| (day, name))
                })
                .collect())
        })
    }

    fn location(&self) -> PgLocation {
        self.engine.location().clone()
    }
}

enum InsertError {
    MissingPartition,
}

fn decode_rows(rows: &[tokio_postgres::Row]) -> Result<Vec<RequestRecord>> {
    rows.iter().map(|row| decode_record(row.get::<_, &[u8]>(0))).collect()
}

impl RecordStore for PgRecordStore {
    fn append(&self, records: &[RequestRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        // Within a batch too, a later record with the same id replaces an earlier one.
        let mut last_of_id: BTreeMap<&str, usize> = BTreeMap::new();
        for (index, record) in records.iter().enumerate() {
            last_of_id.insert(record.id.as_str(), index);
        }
        let deduplicated: Vec<RequestRecord> = if last_of_id.len() == records.len() {
            records.to_vec()
        } else {
            let keep: HashSet<usize> = last_of_id.into_values().collect();
            records
                .iter()
                .enumerate()
                .filter(|(index, _)| keep.contains(index))
                .map(|(_, record)| record.clone())
                .collect()
        };
        for chunk in deduplicated.chunks(CHUNK) {
            let days: BTreeSet<i64> = chunk.iter().map(|record| day_of(record.ts_ms)).collect();
            self.ensure_partitions(days.clone())?;
            if let Err(InsertError::MissingPartition) = self.insert(chunk)? {
                // Another replica's retention dropped a day this one had cached.
                self.known_days().clear();
                self.ensure_partitions(days)?;
                if let Err(InsertError::MissingPartition) = self.insert(chunk)? {
                    return Err(self.engine.io("a partition for the batch vanished twice"));
                }
            }
        }
        Ok(())
    }

    fn scan(&self, query: &RecordQuery) -> Result<Vec<RequestRecord>> {
        query.validate()?;
        let filter = FilterParams::new(query.from_ms, query.to_ms, &query.filter);
        let limit = query.limit.map(|limit| i64::try_from(limit).unwrap_or(i64::MAX));
        let location = self.location();
        self.engine.run(move |pool| async move {
            let client = pool.get().await.map_err(|error| pool_error(&location, error))?;
            let db = |error: tokio_postgres::Error| db_error(&location, &error);
            let statement = client
                .prepare_cached(&format!(
                    "SELECT body FROM llmopt_records {WHERE} ORDER BY ts_ms, seq LIMIT $9"
                ))
                .await
                .map_err(db)?;
            let mut params = filter.params();
            params.push(&limit);
            let rows = client.query(&statement, &params).await.map_err(db)?;
            decode_rows(&rows)
        })
    }

    fn get(&self, id: &RequestId) -> Result<Option<RequestRecord>> {
        let location = self.location();
        let id = id.as_str().to_owned();
        self.engine.run(move |pool| async move {
            let client = pool.get().await.map_err(|error| pool_error(&location, error))?;
            let db = |error: tokio_postgres::Error| db_error(&location, &error);
            let statement = client
                .prepare_cached("SELECT body FROM llmopt_records WHERE id = $1 LIMIT 1")
                .await
                .map_err(db)?;
            let rows = client.query(&statement, &[&id]).await.map_err(db)?;
            Ok(decode_rows(&rows)?.into_iter().next())
        })
    }

    fn add_feedback(&self, id: &RequestId, feedback: Feedback) -> Result<bool> {
        let location = self.location();
        let id = id.as_str().to_owned();
        self.engine.run(move |pool| async move {
            let mut client = pool.get().await.map_err(|error| pool_error(&location, error))?;
            let db = |error: tokio_postgres::Error| db_error(&location, &error);
            let transaction = client.transaction().await.map_err(db)?;
            // The row is locked until the transaction ends: two replicas joining feedback to
            // one record both land.
            let row = transaction
                .query_opt(
                    "SELECT ts_ms, seq, body FROM llmopt_records WHERE id = $1 LIMIT 1 FOR UPDATE",
                    &[&id],
                )
                .await
                .map_err(db)?;
            let Some(row) = row else { return Ok(false) };
            let (ts_ms, seq): (i64, i64) = (row.get(0), row.get(1));
            let mut record = decode_record(row.get::<_, &[u8]>(2))?;
            join_feedback(&mut record, feedback);
            transaction
                .execute(
                    "UPDATE llmopt_records SET body = $1 WHERE id = $2 AND ts_ms = $3 AND seq = $4",
                    &[&encode_record(&record), &id, &ts_ms, &seq],
                )
                .await
                .map_err(db)?;
            transaction.commit().await.map_err(db)?;
            Ok(true)
        })
    }

    fn aggregate(&self, query: &AggregateQuery) -> Result<Vec<AggregateRow>> {
        query.validate()?;
        let group = match &query.group_by {
            GroupBy::Total => "''",
            GroupBy::Model => "served_model",
            GroupBy::Provider => "provider",
            GroupBy::Tenant => "coalesce(tenant, '')",
            GroupBy::Tag(_) => "coalesce(tags ->> $10, '')",
        };
        let tag_key = match &query.group_by {
            GroupBy::Tag(key) => Some(key.clone()),
            _ => None,
        };
        let sql = format!(
            "SELECT ts_ms - ((ts_ms % $9) + $9) % $9 AS window_start, {group} AS grp,
                count(*), count(*) FILTER (WHERE NOT ok), count(*) FILTER (WHERE cache_hit),
                coalesce(sum(input_tokens), 0)::int8, coalesce(sum(cache_read_tokens), 0)::int8,
                coalesce(sum(cache_write_tokens), 0)::int8, coalesce(sum(output_tokens), 0)::int8,
                coalesce(sum(cost), 0)::text, count(*) FILTER (WHERE cost IS NULL),
                coalesce(sum(saved_cost), 0)::text, avg(latency_us)::float8,
                percentile_cont(ARRAY[0.5, 0.95, 0.99]::float8[])
                    WITHIN GROUP (ORDER BY latency_us::float8)
             FROM llmopt_records {WHERE}
             GROUP BY 1, 2"
        );
        let filter = FilterParams::new(query.from_ms, query.to_ms, &query.filter);
        let window_ms = query.window_ms;
        let location = self.location();
        let mut rows = self.engine.run(move |pool| async move {
            let client = pool.get().await.map_err(|error| pool_error(&location, error))?;
            let db = |error: tokio_postgres::Error| db_error(&location, &error);
            let statement = client.prepare_cached(&sql).await.map_err(db)?;
            let mut params = filter.params();
            params.push(&window_ms);
            if let Some(tag_key) = &tag_key {
                params.push(tag_key);
            }
            let rows = client.query(&statement, &params).await.map_err(db)?;
            rows.iter()
                .map(|row| {
                    let quantiles: Vec<f64> = row.get(13);
                    let quantile = |index: usize| quantiles.get(index).copied().unwrap_or(f64::NAN);
                    Ok(AggregateRow {
                        window_start_ms: row.get(0),
                        group: row.get(1),
                        count: to_u64(row.get(2)),
                        errors: to_u64(row.get(3)),
                        cache_hits: to_u64(row.get(4)),
                        input_tokens: to_u64(row.get(5)),
                        cache_read_tokens: to_u64(row.get(6)),
                        cache_write_tokens: to_u64(row.get(7)),
                        output_tokens: to_u64(row.get(8)),
                        cost: parse_money(row.get(9))?,
                        cost_unknown: to_u64(row.get(10)),
                        saved_cost: parse_money(row.get(11))?,
                        latency_mean_ms: row.get::<_, f64>(12) / 1000.0,
                        latency_p50_ms: quantile(0) / 1000.0,
                        latency_p95_ms: quantile(1) / 1000.0,
                        latency_p99_ms: quantile(2) / 1000.0,
                    })
                })
                .collect::<Result<Vec<_>>>()
        })?;
        // Window, then group in byte order, as the other stores answer.
        rows.sort_by(|a, b| {
            (a.window_start_ms, a.group.as_bytes()).cmp(&(b.window_start_ms, b.group.as_bytes()))
        });
        Ok(rows)
    }

    fn delete_before(&self, before_ms: i64) -> Result<u64> {
        let partitions = self.partitions()?;
        let whole: Vec<(i64, String)> =
            partitions.into_iter().filter(|(day, _)| day_bounds(*day).1 <= before_ms).collect();
        let location = self.location();
        let dropped: Vec<i64> = whole.iter().map(|(day, _)| *day).collect();
        let deleted = self.engine.run(move |pool| async move {
            let mut client = pool.get().await.map_err(|error| pool_error(&location, error))?;
            let db = |error: tokio_postgres::Error| db_error(&location, &error);
            let transaction = client.transaction().await.map_err(db)?;
            transaction
                .execute("SELECT pg_advisory_xact_lock($1)", &[&PARTITION_LOCK])
                .await
                .map_err(db)?;
            let mut deleted: u64 = 0;
            for (_, name) in &whole {
                // Another replica may have dropped it meanwhile.
                let exists: bool = transaction
                    .query_one("SELECT to_regclass($1) IS NOT NULL", &[name])
                    .await
                    .map_err(db)?
                    .get(0);
                if !exists {
                    continue;
                }
                let rows: i64 = transaction
                    .query_one(&format!("SELECT count(*) FROM \"{name}\""), &[])
                    .await
                    .map_err(db)?
                    .get(0);
                transaction.batch_execute(&format!("DROP TABLE \"{name}\"")).await.map_err(db)?;
                deleted += to_u64(rows);
            }
            // The partition the cutoff falls in loses its older rows only.
            deleted += transaction
                .execute("DELETE FROM llmopt_records WHERE ts_ms < $1", &[&before_ms])
                .await
                .map_err(db)?;
            transaction.commit().await.map_err(db)?;
            Ok(deleted)
        })?;
        let mut known = self.known_days();
        for day in dropped {
            known.remove(&day);
        }
        Ok(deleted)
    }

    fn count(&self) -> Result<u64> {
        let location = self.location();
        self.engine.run(move |pool| async move {
            let client = pool.get().await.map_err(|error| pool_error(&location, error))?;
            let row = client
                .query_one("SELECT count(*) FROM llmopt_records", &[])
                .await
                .map_err(|error| db_error(&location, &error))?;
            Ok(to_u64(row.get(0)))
        })
    }

    /// Every append is a committed transaction: nothing to do.
    fn flush(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_are_dates_and_parse_back() {
        // 2026-01-01 is day 20454.
        assert_eq!(partition_name(20_454), "llmopt_records_20260101");
        assert_eq!(partition_name(0), "llmopt_records_19700101");
        assert_eq!(partition_name(-1), "llmopt_records_19691231");
        for day in [-800_000, -1, 0, 20_454, 20_513, 2_932_896, 9_000_000] {
            assert_eq!(day_of_partition(&partition_name(day)), Some(day), "day {day}");
        }
        assert_eq!(day_of(-1), -1);
        assert_eq!(day_of_partition("llmopt_records_time"), None);
    }

    #[test]
    fn money_sums_parse_exactly() {
        assert_eq!(parse_money("0").unwrap(), Money(0));
        let big = i128::MAX / 3;
        assert_eq!(parse_money(&big.to_string()).unwrap(), Money(big));
        assert!(parse_money("x").is_err());
    }
}
