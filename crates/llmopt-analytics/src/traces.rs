//! Loaders for the public LLM trace formats, as pure parsers over text.
//!
//! - **Azure LLM inference trace** (Patel et al., Splitwise, ISCA 2024): CSV with the header
//!   `TIMESTAMP,ContextTokens,GeneratedTokens` and timestamps like `2023-11-16 18:15:46.6805900`
//!   (UTC, up to seven fractional digits; kept to the millisecond).
//! - **Mooncake trace** (Qin et al., FAST 2025): JSON lines with `timestamp` (relative, ms),
//!   `input_length`, `output_length` and `hash_ids` (ids of 512-token prompt-prefix blocks).
//!
//! Both parse into [`TraceRequest`], a light struct, and [`to_records`] turns those into core
//! [`RequestRecord`]s (with prefix blocks as `fingerprints.prefix_blocks` and an exact cost when
//! the model is in the catalog). Errors carry the 1-based line number. Parsing takes
//! `impl BufRead`, so a file, a slice of bytes or a decompressor all work; nothing here opens
//! files.

use std::io::BufRead;

use llmopt_core::{PriceCatalog, RequestRecord, Usage};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Tokens per `hash_ids` block in the Mooncake traces.
pub const MOONCAKE_BLOCK_TOKENS: u64 = 512;

/// One request of a trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceRequest {
    /// Milliseconds: since the Unix epoch (Azure) or since the start of the trace (Mooncake).
    pub ts_ms: i64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Prefix-block ids (Mooncake `hash_ids`); empty for Azure.
    pub prefix_blocks: Vec<u64>,
}

fn lines(reader: impl BufRead) -> impl Iterator<Item = (usize, Result<String>)> {
    reader.lines().enumerate().map(|(index, line)| {
        let number = index + 1;
        (number, line.map_err(|e| Error::Read { line: number, reason: e.to_string() }))
    })
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Parses `YYYY-MM-DD HH:MM:SS[.fffffff]` (UTC) to milliseconds since the epoch.
pub fn parse_timestamp_ms(text: &str) -> Option<i64> {
    let (date, time) = text.trim().split_once([' ', 'T'])?;
    let mut date_parts = date.split('-');
    let year: i64 = date_parts.next()?.parse().ok()?;
    let month: i64 = date_parts.next()?.parse().ok()?;
    let day: i64 = date_parts.next()?.parse().ok()?;
    if date_parts.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let (clock, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut clock_parts = clock.split(':');
    let hour: i64 = clock_parts.next()?.parse().ok()?;
    let minute: i64 = clock_parts.next()?.parse().ok()?;
    let second: i64 = clock_parts.next()?.parse().ok()?;
    if clock_parts.next().is_some() || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Milliseconds: the first three fractional digits (truncated, so order is preserved).
    let millis: i64 = format!("{fraction:0<3}")[..3].parse().ok()?;
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second;
    Some(seconds * 1_000 + millis)
}

/// Parses an Azure trace CSV (header required).
pub fn parse_azure_csv(reader: impl BufRead) -> Result<Vec<TraceRequest>> {
    let mut requests = Vec::new();
    let mut saw_header = false;
    for (number, line) in lines(reader) {
        let line = line?;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if !saw_header {
            if line.replace(' ', "") != "TIMESTAMP,ContextTokens,GeneratedTokens" {
                return Err(Error::Parse {
                    line: number,
                    reason: format!(
                        "expected header `TIMESTAMP,ContextTokens,GeneratedTokens`, got `{line}`"
                    ),
                });
            }
            saw_header = true;
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != 3 {
            return Err(Error::Parse {
                line: number,
                reason: format!("expected 3 fields, got {}", fields.len()),
            });
        }
        let ts_ms = parse_timestamp_ms(fields[0]).ok_or_else(|| Error::Parse {
            line: number,
            reason: format!("bad timestamp `{}`", fields[0]),
        })?;
        let count = |field: &str, name: &str| {
            field.trim().parse::<u64>().map_err(|_| Error::Parse {
                line: number,
                reason: format!("{name} `{field}` is not a non-negative integer"),
            })
        };
        requests.push(TraceRequest {
            ts_ms,
            input_tokens: count(fields[1], "ContextTokens")?,
            output_tokens: count(fields[2], "GeneratedTokens")?,
            prefix_blocks: Vec::new(),
        });
    }
    if !saw_header {
        return Err(Error::Parse { line: 1, reason: "empty input: no header".into() });
    }
    Ok(requests)
}

#[derive(Deserialize)]
struct MooncakeLine {
    timestamp: i64,
    input_length: u64,
    output_length: u64,
    #[serde(default)]
    hash_ids: Vec<u64>,
}

/// Parses a Mooncake trace (JSON lines).
pub fn parse_mooncake_jsonl(reader: impl BufRead) -> Result<Vec<TraceRequest>> {
    let mut requests = Vec::new();
    for (number, line) in lines(reader) {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: MooncakeLine = serde_json::from_str(&line)
            .map_err(|e| Error::Parse { line: number, reason: e.to_string() })?;
        requests.push(TraceRequest {
            ts_ms: parsed.timestamp,
            input_tokens: parsed.input_length,
            output_tokens: parsed.output_length,
            prefix_blocks: parsed.hash_ids,
        });
    }
    Ok(requests)
}

/// Which format a trace file is in, by a look at its first line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TraceFormat {
    AzureCsv,
    MooncakeJsonl,
}

pub fn detect_format(first_line: &str) -> Option<TraceFormat> {
    let line = first_line.trim_start();
    if line.starts_with('{') {
        Some(TraceFormat::MooncakeJsonl)
    } else if line.starts_with("TIMESTAMP") {
        Some(TraceFormat::AzureCsv)
    } else {
        None
    }
}

/// Turns trace requests into records. `base_ms` is added to every timestamp (use it for the
/// relative Mooncake times); the cost is exact when `model` is in `catalog`.
pub fn to_records(
    requests: &[TraceRequest],
    base_ms: i64,
    provider: &str,
    model: &str,
    catalog: Option<&PriceCatalog>,
) -> Vec<RequestRecord> {
    let price = catalog.and_then(|catalog| catalog.resolve(model).ok());
    requests
        .iter()
        .enumerate()
        .map(|(index, request)| {
            let mut record = RequestRecord::new(
                format!("trace-{index}"),
                base_ms + request.ts_ms,
                provider,
                model,
            );
            let usage = Usage {
                input_tokens: request.input_tokens,
                output_tokens: request.output_tokens,
                ..Usage::default()
            };
            record.cost = price.map(|price| price.cost(&usage, false).total);
            record.usage = Some(usage);
            record.fingerprints.prefix_blocks = request.prefix_blocks.clone();
            record
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_milliseconds() {
        // 2023-11-16 00:00:00 UTC = 1700092800 s (date -u -d 2023-11-16 +%s).
        assert_eq!(parse_timestamp_ms("2023-11-16 00:00:00"), Some(1_700_092_800_000));
        assert_eq!(parse_timestamp_ms("2023-11-16 18:15:46.6805900"), Some(1_700_158_546_680));
        assert_eq!(parse_timestamp_ms("1970-01-01 00:00:00.5"), Some(500));
        assert_eq!(parse_timestamp_ms("2023-13-16 00:00:00"), None);
    }

    #[test]
    fn errors_name_the_line() {
        let text = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,374,44\n2023-11-16 18:15:50.99,x,109\n";
        assert_eq!(
            parse_azure_csv(text.as_bytes()),
            Err(Error::Parse {
                line: 3,
                reason: "ContextTokens `x` is not a non-negative integer".into()
            })
        );
        let jsonl = "{\"timestamp\": 0, \"input_length\": 10, \"output_length\": 2, \"hash_ids\": [1]}\n{\"timestamp\": 5}\n";
        assert!(matches!(
            parse_mooncake_jsonl(jsonl.as_bytes()),
            Err(Error::Parse { line: 2, .. })
        ));
    }
}
