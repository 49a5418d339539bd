//! Reading a report's input: format detection from the first line, record NDJSON with
//! validation and repricing, and the Azure and Mooncake traces turned into records. Every problem
//! is an [`Error::Input`] naming the file and, when it is on one line, the line.

use std::{
    fs::File,
    io::{BufRead, BufReader, Read},
    path::Path,
};

use llmopt_core::{PriceCatalog, RequestRecord};
use serde::Serialize;

use crate::{
    error::{Error, InputProblem, Result},
    traces::{TraceFormat, detect_format, parse_azure_csv, parse_mooncake_jsonl, to_records},
};

/// The model trace requests are priced as when the caller names none: the traces carry no
/// model names.
pub const DEFAULT_TRACE_MODEL: &str = "gpt-4o-mini";

/// Where relative Mooncake timestamps are placed: 2024-01-01T00:00:00Z in ms since the epoch
/// (19,723 days × 86,400 s), so that records validate and windows have calendar starts.
pub const MOONCAKE_BASE_MS: i64 = 1_704_067_200_000;

/// How many bytes of a file [`load`] reads to find the first line for format detection.
pub const DETECTION_PREFIX_BYTES: u64 = 1024 * 1024;

/// The input formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InputFormat {
    /// Our `RequestRecord` NDJSON, one record per line.
    Records,
    /// Azure LLM inference trace CSV (`TIMESTAMP,ContextTokens,GeneratedTokens`).
    Azure,
    /// Mooncake trace JSON lines (`timestamp`, `input_length`, `output_length`, `hash_ids`).
    Mooncake,
}

impl InputFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            InputFormat::Records => "records",
            InputFormat::Azure => "azure",
            InputFormat::Mooncake => "mooncake",
        }
    }
}

/// What was read, for the report header.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InputInfo {
    pub file: String,
    pub format: InputFormat,
    pub bytes: u64,
    /// The model trace requests were priced as (`None` for records, which name their models).
    pub priced_as: Option<String>,
    /// Records whose missing cost was computed from their usage and the catalog.
    pub repriced: u64,
}

/// Records read from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedInput {
    pub info: InputInfo,
    /// Oldest first (stable for equal timestamps).
    pub records: Vec<RequestRecord>,
}

/// Records read from one input by [`read`].
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedInput {
    /// Oldest first (stable for equal timestamps); never empty.
    pub records: Vec<RequestRecord>,
    /// The model trace requests were priced as (`None` for records).
    pub priced_as: Option<String>,
    /// Records whose missing cost was computed from their usage and the catalog.
    pub repriced: u64,
}

/// How to turn an input into records.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions<'a> {
    /// The model trace requests are priced as (records name their own); usually
    /// [`DEFAULT_TRACE_MODEL`].
    pub trace_model: &'a str,
    pub catalog: &'a PriceCatalog,
    /// "Now" for the records' validation (timestamps too far in the future are refused).
    pub now_ms: i64,
}

fn problem(file: &str, line: Option<usize>, problem: InputProblem) -> Error {
    Error::Input { file: file.to_owned(), line, problem }
}

/// Reads and validates the records of the file at `path` (oldest first). The format is detected
/// from the first non-empty line unless `format` forces one. `wrap` gets the opened file and
/// returns what is read from it, so a caller can show progress (e.g. indicatif's `wrap_read`);
/// pass `|file| file` otherwise.
///
/// Errors: [`Error::Input`] for the file or one of its lines; [`Error::Pricing`] when the input
/// is a trace and `options.trace_model` is not in the catalog.
pub fn load<R: Read>(
    path: &Path,
    format: Option<InputFormat>,
    options: &ReadOptions<'_>,
    wrap: impl FnOnce(File) -> R,
) -> Result<LoadedInput> {
    let name = path.display().to_string();
    let bytes = std::fs::metadata(path)
        .map_err(|e| problem(&name, None, InputProblem::CannotRead(e.to_string())))?
        .len();
    if bytes == 0 {
        return Err(problem(&name, None, InputProblem::Empty));
    }
    let open = || {
        File::open(path).map_err(|e| problem(&name, None, InputProblem::CannotOpen(e.to_string())))
    };
    let format = match format {
        Some(format) => format,
        None => {
            let mut prefix = Vec::new();
            open()?
                .take(DETECTION_PREFIX_BYTES)
                .read_to_end(&mut prefix)
                .map_err(|e| problem(&name, None, InputProblem::CannotRead(e.to_string())))?;
            detect(&prefix, &name)?
        }
    };
    let parsed = read(BufReader::new(wrap(open()?)), &name, format, options)?;
    Ok(LoadedInput {
        info: InputInfo {
            file: name,
            format,
            bytes,
            priced_as: parsed.priced_as,
            repriced: parsed.repriced,
        },
        records: parsed.records,
    })
}

/// Detects the format from the first non-empty line of `prefix` (the start of the input named
/// `name`); a line cut at the end of the prefix is fine.
pub fn detect(prefix: &[u8], name: &str) -> Result<InputFormat> {
    for (index, raw_line) in prefix.split(|&b| b == b'\n').enumerate() {
        let line_number = index + 1;
        if raw_line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let at_line = |kind| problem(name, Some(line_number), kind);
        if raw_line.contains(&0) {
            return Err(at_line(InputProblem::Binary));
        }
        // A line cut at the end of the prefix may end inside a UTF-8 character.
        let text = match std::str::from_utf8(raw_line) {
            Ok(text) => text,
            Err(e) if e.error_len().is_none() => {
                std::str::from_utf8(&raw_line[..e.valid_up_to()]).unwrap_or_default()
            }
            Err(_) => return Err(at_line(InputProblem::NotUtf8)),
        };
        return match detect_format(text) {
            Some(TraceFormat::AzureCsv) => Ok(InputFormat::Azure),
            Some(TraceFormat::MooncakeJsonl) if text.contains("\"input_length\"") => {
                Ok(InputFormat::Mooncake)
            }
            Some(TraceFormat::MooncakeJsonl) if text.contains("\"served_model\"") => {
                Ok(InputFormat::Records)
            }
            Some(TraceFormat::MooncakeJsonl) => Err(at_line(InputProblem::UnknownJsonObject)),
            None => Err(at_line(InputProblem::UnrecognisedFormat)),
        };
    }
    Err(problem(name, None, InputProblem::OnlyBlankLines))
}

/// Reads an input of a known format into records, oldest first: record NDJSON is validated and
/// records without a cost are priced from their usage; trace requests become records priced as
/// `options.trace_model` (Mooncake's relative times placed at [`MOONCAKE_BASE_MS`]). `name` is
/// what errors call the input.
pub fn read(
    reader: impl BufRead,
    name: &str,
    format: InputFormat,
    options: &ReadOptions<'_>,
) -> Result<ParsedInput> {
    let (mut records, priced_as, repriced) = match format {
        InputFormat::Records => {
            let (records, repriced) = read_records(reader, name, options)?;
            (records, None, repriced)
        }
        InputFormat::Azure | InputFormat::Mooncake => {
            let model = options.trace_model;
            let price = options.catalog.resolve(model)?;
            let (requests, base_ms) = if format == InputFormat::Azure {
                (parse_azure_csv(reader), 0)
            } else {
                (parse_mooncake_jsonl(reader), MOONCAKE_BASE_MS)
            };
            let requests = requests.map_err(|e| located(name, e))?;
            let records =
                to_records(&requests, base_ms, &price.provider, model, Some(options.catalog));
            for (index, record) in records.iter().enumerate() {
                // Trace lines map 1:1 to requests after blank lines; the index is the request.
                record.validate(options.now_ms).map_err(|error| {
                    problem(name, None, InputProblem::InvalidRequest { request: index + 1, error })
                })?;
            }
            (records, Some(model.to_owned()), 0)
        }
    };
    if records.is_empty() {
        return Err(problem(name, None, InputProblem::NoRequests));
    }
    records.sort_by_key(|record| record.ts_ms);
    Ok(ParsedInput { records, priced_as, repriced })
}

/// A trace parser's error, placed in the file.
fn located(name: &str, error: Error) -> Error {
    match error {
        Error::Parse { line, reason } => problem(name, Some(line), InputProblem::Parse(reason)),
        Error::Read { line, reason } => {
            problem(name, Some(line), InputProblem::UnreadableLine(reason))
        }
        other => problem(name, None, InputProblem::Parse(other.to_string())),
    }
}

/// Parses record NDJSON, validating each record and pricing those whose cost is missing.
fn read_records(
    reader: impl BufRead,
    name: &str,
    options: &ReadOptions<'_>,
) -> Result<(Vec<RequestRecord>, u64)> {
    let mut records = Vec::new();
    let mut repriced = 0;
    for (index, line) in reader.lines().enumerate() {
        let at_line = |kind| problem(name, Some(index + 1), kind);
        let line = line.map_err(|e| at_line(InputProblem::UnreadableLine(e.to_string())))?;
        if line.trim().is_empty() {
            continue;
        }
        let mut record: RequestRecord = serde_json::from_str(&line)
            .map_err(|e| at_line(InputProblem::NotARecord(e.to_string())))?;
        record.validate(options.now_ms).map_err(|e| at_line(InputProblem::InvalidRecord(e)))?;
        if record.cost.is_none()
            && let Some(usage) = &record.usage
            && let Ok(breakdown) = options.catalog.cost(&record.served_model.0, usage)
        {
            record.cost = Some(breakdown.total);
            repriced += 1;
        }
        records.push(record);
    }
    Ok((records, repriced))
}

#[cfg(test)]
mod tests {
    use llmopt_core::{Money, Usage};

    use super::*;

    fn options(catalog: &PriceCatalog) -> ReadOptions<'_> {
        // 2025-06-01 UTC: after every timestamp below.
        ReadOptions { trace_model: DEFAULT_TRACE_MODEL, catalog, now_ms: 1_748_736_000_000 }
    }

    fn message(result: Result<impl std::fmt::Debug>) -> String {
        result.expect_err("an error").to_string()
    }

    #[test]
    fn detects_each_format_from_its_first_line() {
        let detect = |bytes: &[u8]| detect(bytes, "in");
        assert_eq!(
            detect(b"\n  \nTIMESTAMP,ContextTokens,GeneratedTokens\n"),
            Ok(InputFormat::Azure)
        );
        assert_eq!(detect(b"{\"timestamp\": 0, \"input_length\": 3}"), Ok(InputFormat::Mooncake));
        assert_eq!(detect(b"{\"id\": \"a\", \"served_model\": \"m\"}\n"), Ok(InputFormat::Records));
        assert!(message(detect(b"\n{\"x\": 1}\n")).starts_with("in:2: a JSON object that is"));
        assert!(message(detect(b"hello\n")).starts_with("in:1: unrecognised format: "));
        assert_eq!(message(detect(b"\n \n")), "in: the file holds only blank lines");
        assert_eq!(message(detect(b"ab\0c\n")), "in:1: binary data (a NUL byte), not a text file");
        assert_eq!(message(detect(b"\xff\xfe\n")), "in:1: not UTF-8 text");
        // A prefix cut inside a character (the first byte of "é") still detects.
        assert_eq!(detect(b"TIMESTAMP,ContextTokens,GeneratedTokens \xc3"), Ok(InputFormat::Azure));
    }

    #[test]
    fn records_are_validated_priced_and_sorted() {
        let catalog = PriceCatalog::builtin();
        let mut late = RequestRecord::new("b", 1_740_787_260_000, "openai", "gpt-4o-mini");
        late.usage = Some(Usage { input_tokens: 10, output_tokens: 2, ..Usage::default() });
        let mut early = RequestRecord::new("a", 1_740_787_200_000, "openai", "gpt-4o-mini");
        early.cost = Some(Money::from_picos(7));
        let text = format!(
            "{}\n\n{}\n",
            serde_json::to_string(&late).unwrap(),
            serde_json::to_string(&early).unwrap()
        );
        let parsed = read(text.as_bytes(), "in", InputFormat::Records, &options(&catalog)).unwrap();
        assert_eq!(parsed.priced_as, None);
        assert_eq!(parsed.repriced, 1);
        let ids: Vec<&str> = parsed.records.iter().map(|r| r.id.0.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        // 10 × 150,000 + 2 × 600,000 picodollars at gpt-4o-mini's list prices.
        assert_eq!(parsed.records[1].cost, Some(Money::from_picos(2_700_000)));

        let mut negative = early.clone();
        negative.cost = Some(Money::from_picos(-1));
        let text = format!(
            "{}\n{}\n",
            serde_json::to_string(&early).unwrap(),
            serde_json::to_string(&negative).unwrap()
        );
        let read_text =
            |text: &str| read(text.as_bytes(), "in", InputFormat::Records, &options(&catalog));
        assert_eq!(message(read_text(&text)), "in:2: invalid record: negative cost");
        assert!(
            message(read_text("{\"served_model\": 3}\n"))
                .starts_with("in:1: not a request record: ")
        );
        assert_eq!(message(read_text("\n\n")), "in: no requests in the file");
    }

    #[test]
    fn traces_become_priced_records_and_keep_their_line_numbers() {
        let catalog = PriceCatalog::builtin();
        let mooncake = concat!(
            "{\"timestamp\": 5, \"input_length\": 10, \"output_length\": 2, \"hash_ids\": [1]}\n",
            "{\"timestamp\": 0, \"input_length\": 4, \"output_length\": 1}\n"
        );
        let parsed =
            read(mooncake.as_bytes(), "m", InputFormat::Mooncake, &options(&catalog)).unwrap();
        assert_eq!(parsed.priced_as.as_deref(), Some(DEFAULT_TRACE_MODEL));
        let times: Vec<i64> = parsed.records.iter().map(|r| r.ts_ms).collect();
        assert_eq!(times, [MOONCAKE_BASE_MS, MOONCAKE_BASE_MS + 5]);
        assert_eq!(parsed.records[1].fingerprints.prefix_blocks, [1]);

        let azure = concat!(
            "TIMESTAMP,ContextTokens,GeneratedTokens\n",
            "2023-11-16 18:15:46.68,374,44\n",
            "2023-11-16 18:15:50.99,x,109\n"
        );
        let error = read(azure.as_bytes(), "a.csv", InputFormat::Azure, &options(&catalog));
        assert_eq!(message(error), "a.csv:3: ContextTokens `x` is not a non-negative integer");
        // A trace timestamp before 2000 makes an invalid record, named by its request.
        let old = "TIMESTAMP,ContextTokens,GeneratedTokens\n1999-01-01 00:00:00,1,1\n";
        let error = read(old.as_bytes(), "a.csv", InputFormat::Azure, &options(&catalog));
        assert!(message(error).starts_with("a.csv: request 1: invalid: timestamp"));
        let unknown = ReadOptions { trace_model: "no-such-model", ..options(&catalog) };
        assert!(matches!(
            read(azure.as_bytes(), "a.csv", InputFormat::Azure, &unknown),
            Err(Error::Pricing(_))
        ));
    }
}
