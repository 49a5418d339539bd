//! The compact binary form of a `RequestRecord` and the byte order of keys.
//!
//! A record is one schema byte followed by its fields in a fixed order: integers as LEB128
//! varints (signed ones zig-zagged), strings as a varint length and UTF-8 bytes, options as a
//! presence byte, enums as explicit codes (never `as u8` of the declaration order, so that
//! reordering an enum cannot change stored meaning). A typical record is about a third of its
//! JSON size and decodes without a parser.
//!
//! Evolution: a new schema appends fields and bumps [`SCHEMA_VERSION`]; the decoder keeps
//! reading every older version (fields it lacks take their defaults) and refuses newer ones with
//! a clear error. `tests/data/record_v1.bin` pins version 1, `tests/data/record_v2.bin` version 2.
//!
//! Versions:
//! 1. every field up to `feedback`;
//! 2. one flags byte after `feedback`: bit 0 is `incomplete` (usage and cost are the lower
//!    bound of a cut or abandoned stream). Other bits are refused, not ignored: a writer that
//!    needs one bumps the schema.
//! 3. the flags byte's bit 1 is `sampled` (the request asked for sampling).

use llmopt_core::{
    CacheOutcome, Endpoint, ErrorKind, ExperimentArm, Feedback, FeedbackValue, Fingerprint,
    Fingerprints, ModelId, Money, ProviderId, RequestId, RequestRecord, Status, StoreError,
    TenantId, Usage,
};

/// The schema byte written in front of every record.
pub const SCHEMA_VERSION: u8 = 3;

/// Schema 2's flags byte: the record is `incomplete`.
const FLAG_INCOMPLETE: u8 = 1;
/// Schema 3's flags byte: the request asked for sampling.
const FLAG_SAMPLED: u8 = 2;

/// Encodes a record in the current schema.
pub fn encode_record(record: &RequestRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    encode_record_into(record, &mut out);
    out
}

/// Appends the encoding of `record` to `out` (blocks encode their records back to back).
pub fn encode_record_into(record: &RequestRecord, out: &mut Vec<u8>) {
    let mut w = Writer { out };
    w.u8(SCHEMA_VERSION);
    w.uvar(u64::from(record.v));
    w.str(record.id.as_str());
    w.ivar(record.ts_ms);
    w.opt_str(record.tenant.as_ref().map(TenantId::as_str));
    w.str(record.provider.as_str());
    w.str(record.requested_model.as_str());
    w.str(record.served_model.as_str());
    w.u8(endpoint_code(record.endpoint));
    w.uvar(record.tags.len() as u64);
    for (key, value) in &record.tags {
        w.str(key);
        w.str(value);
    }
    w.u8(status_code(record.status));
    w.uvar(record.latency_us);
    w.opt_uvar(record.ttft_us);
    w.opt_uvar(record.upstream_us);
    match &record.usage {
        None => w.u8(0),
        Some(usage) => {
            w.u8(1);
            w.uvar(usage.input_tokens);
            w.uvar(usage.cache_read_tokens);
            w.uvar(usage.cache_write_5m_tokens);
            w.uvar(usage.cache_write_1h_tokens);
            w.uvar(usage.output_tokens);
            w.uvar(usage.reasoning_tokens);
        }
    }
    w.opt_money(record.cost);
    w.opt_money(record.saved_cost);
    w.u8(cache_code(record.cache));
    w.u8(u8::from(record.stream));
    match &record.experiment {
        None => w.u8(0),
        Some(arm) => {
            w.u8(1);
            w.str(&arm.experiment_id);
            w.str(&arm.arm);
        }
    }
    w.opt_fingerprint(record.fingerprints.request);
    w.opt_fingerprint(record.fingerprints.prefix);
    w.uvar(record.fingerprints.prefix_blocks.len() as u64);
    for block in &record.fingerprints.prefix_blocks {
        w.uvar(*block);
    }
    w.opt_uvar(record.max_tokens.map(u64::from));
    w.opt_str(record.stop_reason.as_deref());
    w.uvar(record.feedback.len() as u64);
    for feedback in &record.feedback {
        w.str(&feedback.metric);
        match feedback.value {
            FeedbackValue::Bool(false) => w.u8(0),
            FeedbackValue::Bool(true) => w.u8(1),
            FeedbackValue::Number(number) => {
                w.u8(2);
                w.out.extend_from_slice(&number.to_le_bytes());
            }
        }
        w.ivar(feedback.ts_ms);
    }
    let mut flags = 0;
    if record.incomplete {
        flags |= FLAG_INCOMPLETE;
    }
    if record.sampled {
        flags |= FLAG_SAMPLED;
    }
    w.u8(flags);
}

/// Decodes a record written by this or any older schema.
pub fn decode_record(bytes: &[u8]) -> Result<RequestRecord, StoreError> {
    let mut r = Reader { bytes, at: 0 };
    let schema = r.u8()?;
    if schema == 0 || schema > SCHEMA_VERSION {
        return Err(StoreError::Encoding(format!(
            "record schema {schema} is not one this version reads (1..={SCHEMA_VERSION}); \
             it was written by a newer version or is not a record"
        )));
    }
    let v = u32::try_from(r.uvar()?).map_err(|_| bad("record version"))?;
    let id = RequestId(r.string()?);
    let ts_ms = r.ivar()?;
    let tenant = r.opt_string()?.map(TenantId);
    let provider = ProviderId(r.string()?);
    let requested_model = ModelId(r.string()?);
    let served_model = ModelId(r.string()?);
    let endpoint = endpoint_from(r.u8()?)?;
    let tag_count = r.len()?;
    let mut tags = llmopt_core::Tags::new();
    for _ in 0..tag_count {
        let key = r.string()?;
        let value = r.string()?;
        tags.insert(key, value);
    }
    let status = status_from(r.u8()?)?;
    let latency_us = r.uvar()?;
    let ttft_us = r.opt_uvar()?;
    let upstream_us = r.opt_uvar()?;
    let usage = match r.u8()? {
        0 => None,
        1 => Some(Usage {
            input_tokens: r.uvar()?,
            cache_read_tokens: r.uvar()?,
            cache_write_5m_tokens: r.uvar()?,
            cache_write_1h_tokens: r.uvar()?,
            output_tokens: r.uvar()?,
            reasoning_tokens: r.uvar()?,
        }),
        _ => return Err(bad("usage presence")),
    };
    let cost = r.opt_money()?;
    let saved_cost = r.opt_money()?;
    let cache = cache_from(r.u8()?)?;
    let stream = match r.u8()? {
        0 => false,
        1 => true,
        _ => return Err(bad("stream flag")),
    };
    let experiment = match r.u8()? {
        0 => None,
        1 => Some(ExperimentArm { experiment_id: r.string()?, arm: r.string()? }),
        _ => return Err(bad("experiment presence")),
    };
    let request = r.opt_fingerprint()?;
    let prefix = r.opt_fingerprint()?;
    let block_count = r.len()?;
    let mut prefix_blocks = Vec::with_capacity(block_count);
    for _ in 0..block_count {
        prefix_blocks.push(r.uvar()?);
    }
    let max_tokens = match r.opt_uvar()? {
        None => None,
        Some(value) => Some(u32::try_from(value).map_err(|_| bad("max_tokens"))?),
    };
    let stop_reason = r.opt_string()?;
    let feedback_count = r.len()?;
    let mut feedback = Vec::with_capacity(feedback_count);
    for _ in 0..feedback_count {
        let metric = r.string()?;
        let value = match r.u8()? {
            0 => FeedbackValue::Bool(false),
            1 => FeedbackValue::Bool(true),
            2 => FeedbackValue::Number(f64::from_le_bytes(r.array::<8>()?)),
            _ => return Err(bad("feedback value")),
        };
        feedback.push(Feedback { metric, value, ts_ms: r.ivar()? });
    }
    let flags = if schema >= 2 { r.u8()? } else { 0 };
    let known = if schema >= 3 { FLAG_INCOMPLETE | FLAG_SAMPLED } else { FLAG_INCOMPLETE };
    if flags & !known != 0 {
        return Err(bad("unknown flags"));
    }
    let (incomplete, sampled) = (flags & FLAG_INCOMPLETE != 0, flags & FLAG_SAMPLED != 0);
    if r.at != bytes.len() {
        return Err(bad("trailing bytes"));
    }
    Ok(RequestRecord {
        v,
        id,
        ts_ms,
        tenant,
        provider,
        requested_model,
        served_model,
        endpoint,
        tags,
        status,
        latency_us,
        ttft_us,
        upstream_us,
        usage,
        cost,
        incomplete,
        sampled,
        saved_cost,
        cache,
        stream,
        experiment,
        fingerprints: Fingerprints { request, prefix, prefix_blocks },
        max_tokens,
        stop_reason,
        feedback,
    })
}

fn bad(what: &str) -> StoreError {
    StoreError::Encoding(format!("malformed record: {what}"))
}

fn endpoint_code(endpoint: Endpoint) -> u8 {
    match endpoint {
        Endpoint::ChatCompletions => 0,
        Endpoint::Messages => 1,
        Endpoint::External => 2,
        Endpoint::Embeddings => 3,
        Endpoint::Responses => 4,
    }
}

fn endpoint_from(code: u8) -> Result<Endpoint, StoreError> {
    Ok(match code {
        0 => Endpoint::ChatCompletions,
        1 => Endpoint::Messages,
        2 => Endpoint::External,
        3 => Endpoint::Embeddings,
        4 => Endpoint::Responses,
        _ => return Err(bad("endpoint")),
    })
}

fn cache_code(cache: CacheOutcome) -> u8 {
    match cache {
        CacheOutcome::Bypass => 0,
        CacheOutcome::Miss => 1,
        CacheOutcome::Hit => 2,
    }
}

fn cache_from(code: u8) -> Result<CacheOutcome, StoreError> {
    Ok(match code {
        0 => CacheOutcome::Bypass,
        1 => CacheOutcome::Miss,
        2 => CacheOutcome::Hit,
        _ => return Err(bad("cache outcome")),
    })
}

/// Stable status codes: 0 is success, errors from 1.
fn status_code(status: Status) -> u8 {
    match status {
        Status::Ok => 0,
        Status::Error(kind) => match kind {
            ErrorKind::InvalidRequest => 1,
            ErrorKind::Authentication => 2,
            ErrorKind::NotFound => 3,
            ErrorKind::RateLimited => 4,
            ErrorKind::Timeout => 5,
            ErrorKind::Upstream => 6,
            ErrorKind::Transport => 7,
            ErrorKind::InvalidResponse => 8,
            ErrorKind::ClientDisconnected => 9,
            ErrorKind::Gateway => 10,
        },
    }
}

fn status_from(code: u8) -> Result<Status, StoreError> {
    let kind = match code {
        0 => return Ok(Status::Ok),
        1 => ErrorKind::InvalidRequest,
        2 => ErrorKind::Authentication,
        3 => ErrorKind::NotFound,
        4 => ErrorKind::RateLimited,
        5 => ErrorKind::Timeout,
        6 => ErrorKind::Upstream,
        7 => ErrorKind::Transport,
        8 => ErrorKind::InvalidResponse,
        9 => ErrorKind::ClientDisconnected,
        10 => ErrorKind::Gateway,
        _ => return Err(bad("status")),
    };
    Ok(Status::Error(kind))
}

pub(crate) struct Writer<'a> {
    pub(crate) out: &'a mut Vec<u8>,
}

impl Writer<'_> {
    pub(crate) fn u8(&mut self, value: u8) {
        self.out.push(value);
    }

    pub(crate) fn uvar(&mut self, value: u64) {
        self.uvar128(u128::from(value));
    }

    pub(crate) fn uvar128(&mut self, mut value: u128) {
        while value >= 0x80 {
            self.out.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.out.push(value as u8);
    }

    pub(crate) fn ivar(&mut self, value: i64) {
        self.uvar(((value << 1) ^ (value >> 63)) as u64);
    }

    pub(crate) fn ivar128(&mut self, value: i128) {
        self.uvar128(((value << 1) ^ (value >> 127)) as u128);
    }

    pub(crate) fn bytes(&mut self, value: &[u8]) {
        self.uvar(value.len() as u64);
        self.out.extend_from_slice(value);
    }

    fn str(&mut self, value: &str) {
        self.bytes(value.as_bytes());
    }

    fn opt_str(&mut self, value: Option<&str>) {
        match value {
            None => self.u8(0),
            Some(value) => {
                self.u8(1);
                self.str(value);
            }
        }
    }

    fn opt_uvar(&mut self, value: Option<u64>) {
        match value {
            None => self.u8(0),
            Some(value) => {
                self.u8(1);
                self.uvar(value);
            }
        }
    }

    fn opt_money(&mut self, value: Option<Money>) {
        match value {
            None => self.u8(0),
            Some(money) => {
                self.u8(1);
                self.ivar128(money.0);
            }
        }
    }

    fn opt_fingerprint(&mut self, value: Option<Fingerprint>) {
        match value {
            None => self.u8(0),
            Some(fingerprint) => {
                self.u8(1);
                self.out.extend_from_slice(&fingerprint.0.to_le_bytes());
            }
        }
    }
}

pub(crate) struct Reader<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) at: usize,
}

impl Reader<'_> {
    pub(crate) fn u8(&mut self) -> Result<u8, StoreError> {
        let byte = *self.bytes.get(self.at).ok_or_else(|| bad("truncated"))?;
        self.at += 1;
        Ok(byte)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        let end = self.at.checked_add(N).ok_or_else(|| bad("truncated"))?;
        let slice = self.bytes.get(self.at..end).ok_or_else(|| bad("truncated"))?;
        self.at = end;
        let mut array = [0; N];
        array.copy_from_slice(slice);
        Ok(array)
    }

    pub(crate) fn uvar128(&mut self) -> Result<u128, StoreError> {
        let mut value: u128 = 0;
        let mut shift = 0;
        loop {
            let byte = self.u8()?;
            if shift >= 128 {
                return Err(bad("varint too long"));
            }
            value |= u128::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
            shift += 7;
        }
    }

    pub(crate) fn uvar(&mut self) -> Result<u64, StoreError> {
        u64::try_from(self.uvar128()?).map_err(|_| bad("varint exceeds 64 bits"))
    }

    pub(crate) fn ivar(&mut self) -> Result<i64, StoreError> {
        let raw = self.uvar()?;
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    pub(crate) fn ivar128(&mut self) -> Result<i128, StoreError> {
        let raw = self.uvar128()?;
        Ok(((raw >> 1) as i128) ^ -((raw & 1) as i128))
    }

    /// A length that must fit in what is left (so a corrupt length cannot allocate gigabytes).
    fn len(&mut self) -> Result<usize, StoreError> {
        let len = usize::try_from(self.uvar()?).map_err(|_| bad("length"))?;
        if len > self.bytes.len() - self.at {
            return Err(bad("length beyond the end"));
        }
        Ok(len)
    }

    pub(crate) fn bytes(&mut self) -> Result<&[u8], StoreError> {
        let len = self.len()?;
        let slice = &self.bytes[self.at..self.at + len];
        self.at += len;
        Ok(slice)
    }

    fn string(&mut self) -> Result<String, StoreError> {
        let bytes = self.bytes()?;
        String::from_utf8(bytes.to_vec()).map_err(|_| bad("string is not UTF-8"))
    }

    fn opt_string(&mut self) -> Result<Option<String>, StoreError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.string()?)),
            _ => Err(bad("string presence")),
        }
    }

    fn opt_uvar(&mut self) -> Result<Option<u64>, StoreError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.uvar()?)),
            _ => Err(bad("integer presence")),
        }
    }

    fn opt_money(&mut self) -> Result<Option<Money>, StoreError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(Money(self.ivar128()?))),
            _ => Err(bad("money presence")),
        }
    }

    fn opt_fingerprint(&mut self) -> Result<Option<Fingerprint>, StoreError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(Fingerprint(u128::from_le_bytes(self.array::<16>()?)))),
            _ => Err(bad("fingerprint presence")),
        }
    }
}

/// The format byte in front of every block of records.
pub const BLOCK_FORMAT: u8 = 1;

/// One record's place in a block: enough to find a record by id or time without decoding the
/// others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockEntry {
    /// 64 bits of the xxh3 fingerprint of the request id ([`id_hash`]).
    pub id_hash: u64,
    pub ts_ms: i64,
    /// Byte range of the encoded record inside the block.
    pub start: usize,
    pub end: usize,
}

/// The hash of a request id that blocks keep in their header.
pub fn id_hash(id: &str) -> u64 {
    Fingerprint::of_bytes(id.as_bytes()).0 as u64
}

/// Encodes a block: the format byte, the entry count, one header entry per record (id hash as
/// 8 little-endian bytes, timestamp, length), then the encoded records back to back. Entries
/// are `(id_hash, ts_ms, encoded record)`.
pub fn encode_block(entries: &[(u64, i64, &[u8])]) -> Vec<u8> {
    let bodies: usize = entries.iter().map(|(_, _, body)| body.len()).sum();
    let mut out = Vec::with_capacity(bodies + entries.len() * 16 + 8);
    let mut w = Writer { out: &mut out };
    w.u8(BLOCK_FORMAT);
    w.uvar(entries.len() as u64);
    for (hash, ts_ms, body) in entries {
        w.out.extend_from_slice(&hash.to_le_bytes());
        w.ivar(*ts_ms);
        w.uvar(body.len() as u64);
    }
    for (_, _, body) in entries {
        out.extend_from_slice(body);
    }
    out
}

/// The header of a block: where each record is, checked against the block's length.
pub fn decode_block_header(bytes: &[u8]) -> Result<Vec<BlockEntry>, StoreError> {
    let mut r = Reader { bytes, at: 0 };
    let format = r.u8()?;
    if format != BLOCK_FORMAT {
        return Err(StoreError::Encoding(format!(
            "block format {format} is not one this version reads ({BLOCK_FORMAT})"
        )));
    }
    let count = usize::try_from(r.uvar()?).map_err(|_| bad("block count"))?;
    // Each header entry takes at least 10 bytes: a corrupt count cannot allocate much.
    if count > bytes.len() / 10 {
        return Err(bad("block count beyond the end"));
    }
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let id_hash = u64::from_le_bytes(r.array::<8>()?);
        let ts_ms = r.ivar()?;
        let len = usize::try_from(r.uvar()?).map_err(|_| bad("block entry length"))?;
        entries.push(BlockEntry { id_hash, ts_ms, start: 0, end: len });
    }
    let mut at = r.at;
    for entry in &mut entries {
        let end = at.checked_add(entry.end).filter(|end| *end <= bytes.len());
        let end = end.ok_or_else(|| bad("block entry beyond the end"))?;
        entry.start = at;
        entry.end = end;
        at = end;
    }
    Ok(entries)
}

/// The number of records in a block, reading only its first bytes.
pub fn block_len(bytes: &[u8]) -> Result<u64, StoreError> {
    let mut r = Reader { bytes, at: 0 };
    if r.u8()? != BLOCK_FORMAT {
        return Err(bad("block format"));
    }
    r.uvar()
}

/// The millisecond timestamp a UUIDv7 request id carries (the gateway's ids), if `id` is one.
/// A record whose id carries its own timestamp needs no id index entry: its block is found by
/// time.
pub fn uuid_v7_ms(id: &str) -> Option<i64> {
    let bytes = id.as_bytes();
    if bytes.len() != 36 || bytes[14] != b'7' {
        return None;
    }
    for (index, byte) in bytes.iter().enumerate() {
        let ok = match index {
            8 | 13 | 18 | 23 => *byte == b'-',
            _ => byte.is_ascii_hexdigit(),
        };
        if !ok {
            return None;
        }
    }
    let high = u64::from_str_radix(&id[..8], 16).ok()?;
    let low = u64::from_str_radix(&id[9..13], 16).ok()?;
    i64::try_from(high << 16 | low).ok()
}

/// Record keys: the timestamp with its sign bit flipped (so negative times sort first) and a
/// unique sequence, both big-endian, so byte order is time order and a time range is one key
/// range.
pub type RecordKey = [u8; 16];

pub fn record_key(ts_ms: i64, seq: u64) -> RecordKey {
    let mut key = [0; 16];
    key[..8].copy_from_slice(&time_bytes(ts_ms));
    key[8..].copy_from_slice(&seq.to_be_bytes());
    key
}

pub fn time_bytes(ts_ms: i64) -> [u8; 8] {
    ((ts_ms as u64) ^ (1 << 63)).to_be_bytes()
}

pub fn time_from_bytes(bytes: [u8; 8]) -> i64 {
    (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64
}

/// Prefix of a secondary-index key: the indexed value's length (so that `gpt-4` and `gpt-4o`
/// never share a prefix) and its bytes; the record key follows.
pub fn index_prefix(value: &str) -> Vec<u8> {
    let mut prefix = Vec::with_capacity(value.len() + 4 + 16);
    prefix.extend_from_slice(&(value.len() as u32).to_be_bytes());
    prefix.extend_from_slice(value.as_bytes());
    prefix
}

pub fn index_key(value: &str, key: &RecordKey) -> Vec<u8> {
    let mut index_key = index_prefix(value);
    index_key.extend_from_slice(key);
    index_key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_time_then_sequence() {
        let times = [i64::MIN, -5, -1, 0, 1, 1_767_225_600_000, i64::MAX];
        let keys: Vec<RecordKey> = times.iter().map(|&t| record_key(t, 0)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert!(record_key(10, 1) < record_key(10, 2));
        assert!(record_key(10, u64::MAX) < record_key(11, 0));
        for t in times {
            assert_eq!(time_from_bytes(time_bytes(t)), t);
        }
    }

    #[test]
    fn varints_match_hand_encoded_bytes() {
        let mut out = Vec::new();
        let mut w = Writer { out: &mut out };
        w.uvar(300); // 0b1_0010_1100 → 0xAC 0x02 (the protobuf documentation's example)
        w.ivar(-1); // zig-zag → 1
        w.ivar(1); // zig-zag → 2
        assert_eq!(out, [0xAC, 0x02, 0x01, 0x02]);
        let mut r = Reader { bytes: &out, at: 0 };
        assert_eq!(r.uvar().unwrap(), 300);
        assert_eq!(r.ivar().unwrap(), -1);
        assert_eq!(r.ivar().unwrap(), 1);
    }

    #[test]
    fn minimal_record_has_a_hand_checked_layout() {
        let record = RequestRecord::new("r1", 1, "p", "m");
        let bytes = encode_record(&record);
        let expected: Vec<u8> = vec![
            3, // schema
            1, // v
            2, b'r', b'1', // id
            2,    // ts 1 zig-zagged
            0,    // no tenant
            1, b'p', 1, b'm', 1, b'm', // provider, requested, served
            0,    // chat completions
            0,    // no tags
            0,    // ok
            0, 0, 0, // latency 0, no ttft, no upstream
            0, 0, 0, // no usage, cost, saved cost
            0, 0, // bypass, not streamed
            0, // no experiment
            0, 0, 0, // no fingerprints, no blocks
            0, 0, // no max_tokens, no stop reason
            0, // no feedback
            0, // flags: complete, not sampled
        ];
        assert_eq!(bytes, expected);
        assert_eq!(decode_record(&bytes).unwrap(), record);
    }

    #[test]
    fn the_incomplete_flag_is_the_last_byte_and_version_one_lacks_it() {
        let mut record = RequestRecord::new("r1", 1, "p", "m");
        record.incomplete = true;
        let mut bytes = encode_record(&record);
        assert_eq!(bytes.last(), Some(&FLAG_INCOMPLETE));
        assert_eq!(decode_record(&bytes).unwrap(), record);
        // The same record in schema 1: no flags byte, and it decodes as complete.
        bytes.pop();
        bytes[0] = 1;
        let old = decode_record(&bytes).unwrap();
        assert!(!old.incomplete);
        assert_eq!(old, RequestRecord { incomplete: false, ..record.clone() });
        // Unknown flag bits are refused, and the sampled bit before schema 3.
        let mut unknown = encode_record(&record);
        *unknown.last_mut().unwrap() = 0b100;
        assert!(decode_record(&unknown).is_err());
        let mut early = encode_record(&record);
        early[0] = 2;
        *early.last_mut().unwrap() = FLAG_SAMPLED;
        assert!(decode_record(&early).is_err());
        let sampled = RequestRecord { sampled: true, ..record.clone() };
        assert_eq!(decode_record(&encode_record(&sampled)).unwrap(), sampled);
    }

    #[test]
    fn truncated_newer_and_garbage_bytes_are_errors_not_panics() {
        let record = llmopt_core::testsuite::full_record(3, 1_767_225_600_000, "m", "t");
        let bytes = encode_record(&record);
        for cut in 0..bytes.len() {
            assert!(decode_record(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut newer = bytes.clone();
        newer[0] = SCHEMA_VERSION + 1;
        let error = decode_record(&newer).unwrap_err();
        assert!(error.to_string().contains("newer"), "{error}");
        let mut trailing = bytes;
        trailing.push(0);
        assert!(decode_record(&trailing).is_err());
        // A huge length must not allocate: 0xFF… varint then nothing.
        assert!(decode_record(&[1, 1, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
    }
}
