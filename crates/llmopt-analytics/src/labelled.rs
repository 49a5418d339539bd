//! Readers for labelled evaluation datasets: prompts with a quality score per model, the
//! ground truth against which routing by workload is measured offline.
//!
//! Two formats, told apart by the first line (a line starting with `{` is JSON):
//! - **JSON lines**: `{"prompt": "...", "scores": {"MODEL": number | bool, ...}}`, a boolean
//!   counting as 0 / 1. Every line scores the same models as the first one, so that a
//!   comparison between models covers the same prompts.
//! - **RouteLLM's response CSVs** (`mmlu_responses/mmlu_*.csv`, `gsm8k/gsm8k_responses.csv`): a
//!   header with a `prompt` column and one column per model holding `True`/`False` or a number;
//!   columns whose name ends in `_response` (the models' answers) and unnamed columns (a
//!   pandas index) are ignored.
//!
//! Design choices:
//! - **The `csv` crate, not hand parsing.** MMLU prompts span lines inside quoted fields, contain
//!   commas, and escape quotes by doubling them (`A ""dished face"" profile`); the GSM8K file
//!   quotes multi-line answers. Splitting on newlines and commas breaks on nearly every row;
//!   `csv` implements RFC 4180 quoting (a small state machine with no dependencies beyond
//!   `csv-core`), checks that every row has the header's number of fields, and reports where
//!   each record starts, which is the line our errors name.
//! - **Errors are one line naming the file and line** (`FILE:LINE: reason`, [`Error::Input`]
//!   with [`InputProblem::Parse`]): a missing or non-numeric score, bad JSON, a row with the
//!   wrong number of fields. A dataset with a hole is refused, not read partly: a silently
//!   skipped row would bias the quality estimate it exists to make.

use std::collections::BTreeMap;
use std::io::{BufRead, Read};
use std::path::Path;

use crate::error::{Error, InputProblem, Result};

/// One prompt and the score of each model on it (1 / 0 for right / wrong, or a grade).
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledPrompt {
    pub prompt: String,
    pub scores: BTreeMap<String, f64>,
}

/// Reads a labelled dataset file (JSON lines or a RouteLLM CSV, detected from the first line).
pub fn read_labelled(path: &Path) -> Result<Vec<LabelledPrompt>> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| Error::Input {
        file: name.clone(),
        line: None,
        problem: InputProblem::CannotOpen(e.to_string()),
    })?;
    read_labelled_from(std::io::BufReader::new(file), &name)
}

/// Reads a labelled dataset from `reader`; `name` is the file name the errors give.
pub fn read_labelled_from(mut reader: impl BufRead, name: &str) -> Result<Vec<LabelledPrompt>> {
    let mut first_line = String::new();
    reader.read_line(&mut first_line).map_err(|e| problem(name, Some(1), unreadable(&e)))?;
    if first_line.is_empty() {
        return Err(problem(name, None, InputProblem::Empty));
    }
    if let Some(rest) = first_line.strip_prefix('\u{feff}') {
        first_line = rest.to_owned();
    }
    let rest = std::io::Cursor::new(first_line.clone().into_bytes()).chain(reader);
    if first_line.trim_start().starts_with('{') {
        read_json_lines(rest, name)
    } else {
        read_csv(rest, name)
    }
}

fn problem(name: &str, line: Option<usize>, problem: InputProblem) -> Error {
    Error::Input { file: name.to_owned(), line, problem }
}

fn parse_error(name: &str, line: usize, reason: String) -> Error {
    problem(name, Some(line), InputProblem::Parse(reason))
}

fn unreadable(error: &std::io::Error) -> InputProblem {
    InputProblem::UnreadableLine(error.to_string())
}

fn read_json_lines(reader: impl BufRead, name: &str) -> Result<Vec<LabelledPrompt>> {
    let mut prompts: Vec<LabelledPrompt> = Vec::new();
    let mut first: Option<usize> = None;
    for (index, line) in reader.lines().enumerate() {
        let number = index + 1;
        let line = line.map_err(|e| problem(name, Some(number), unreadable(&e)))?;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| parse_error(name, number, format!("bad JSON: {e}")))?;
        let prompt = match value.get("prompt") {
            Some(serde_json::Value::String(prompt)) => prompt.clone(),
            Some(_) => return Err(parse_error(name, number, "`prompt` is not a string".into())),
            None => return Err(parse_error(name, number, "no `prompt`".into())),
        };
        let Some(serde_json::Value::Object(raw_scores)) = value.get("scores") else {
            return Err(parse_error(name, number, "no `scores` object".into()));
        };
        let mut scores = BTreeMap::new();
        for (model, score) in raw_scores {
            let score = match score {
                serde_json::Value::Bool(b) => f64::from(u8::from(*b)),
                serde_json::Value::Number(n) => {
                    n.as_f64().filter(|v| v.is_finite()).ok_or_else(|| {
                        parse_error(name, number, format!("score of `{model}` is not finite"))
                    })?
                }
                serde_json::Value::Null => {
                    return Err(parse_error(name, number, format!("missing score for `{model}`")));
                }
                other => {
                    return Err(parse_error(
                        name,
                        number,
                        format!("non-numeric score for `{model}`: {other}"),
                    ));
                }
            };
            scores.insert(model.clone(), score);
        }
        if scores.is_empty() {
            return Err(parse_error(name, number, "`scores` is empty".into()));
        }
        match first {
            None => first = Some(number),
            Some(first_number) => {
                let expected = &prompts[0].scores;
                if let Some(model) = expected.keys().find(|m| !scores.contains_key(*m)) {
                    return Err(parse_error(name, number, format!("missing score for `{model}`")));
                }
                if let Some(model) = scores.keys().find(|m| !expected.contains_key(*m)) {
                    return Err(parse_error(
                        name,
                        number,
                        format!("score for `{model}`, a model line {first_number} does not score"),
                    ));
                }
            }
        }
        prompts.push(LabelledPrompt { prompt, scores });
    }
    Ok(prompts)
}

fn read_csv(reader: impl Read, name: &str) -> Result<Vec<LabelledPrompt>> {
    let mut csv_reader =
        csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(reader);
    let headers = csv_reader.headers().map_err(|e| csv_error(name, &e, 1))?.clone();
    let prompt_column = headers.iter().position(|h| h.trim() == "prompt").ok_or_else(|| {
        parse_error(name, 1, "no `prompt` column (expected JSON lines or a RouteLLM CSV)".into())
    })?;
    let model_columns: Vec<(usize, String)> = headers
        .iter()
        .enumerate()
        .filter(|(column, header)| {
            let header = header.trim();
            *column != prompt_column && !header.is_empty() && !header.ends_with("_response")
        })
        .map(|(column, header)| (column, header.trim().to_owned()))
        .collect();
    if model_columns.is_empty() {
        return Err(parse_error(name, 1, "no model score column beside `prompt`".into()));
    }
    let mut prompts = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        let line_guess = csv_reader.position().line() as usize;
        match csv_reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(csv_error(name, &e, line_guess)),
        }
        let line = record.position().map_or(line_guess, |p| p.line() as usize);
        let mut scores = BTreeMap::new();
        for (column, model) in &model_columns {
            let cell = record.get(*column).unwrap_or("").trim();
            let score = match cell {
                "" => return Err(parse_error(name, line, format!("missing score for `{model}`"))),
                "True" | "true" | "TRUE" => 1.0,
                "False" | "false" | "FALSE" => 0.0,
                _ => cell.parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| {
                    parse_error(name, line, format!("non-numeric score for `{model}`: `{cell}`"))
                })?,
            };
            scores.insert(model.clone(), score);
        }
        let prompt = record.get(prompt_column).unwrap_or("").to_owned();
        prompts.push(LabelledPrompt { prompt, scores });
    }
    Ok(prompts)
}

fn csv_error(name: &str, error: &csv::Error, line_guess: usize) -> Error {
    let line = error.position().map_or(line_guess, |p| p.line() as usize);
    match error.kind() {
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
            parse_error(name, line, format!("a row of {len} fields, the header has {expected_len}"))
        }
        csv::ErrorKind::Utf8 { .. } => problem(name, Some(line), InputProblem::NotUtf8),
        csv::ErrorKind::Io(e) => problem(name, Some(line), unreadable(e)),
        _ => parse_error(name, line, error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Vec<LabelledPrompt>> {
        read_labelled_from(text.as_bytes(), "data.txt")
    }

    fn message(text: &str) -> String {
        match read(text) {
            Ok(prompts) => panic!("expected an error, read {prompts:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn json_lines_with_booleans_and_numbers() {
        let prompts = read(concat!(
            r#"{"prompt": "2+2?", "scores": {"small": true, "large": 0.75}}"#,
            "\n\n",
            r#"{"prompt": "capital of France?", "scores": {"small": false, "large": 1}}"#,
            "\n"
        ))
        .unwrap();
        assert_eq!(prompts.len(), 2);
        assert_eq!(prompts[0].prompt, "2+2?");
        assert_eq!(prompts[0].scores["small"], 1.0);
        assert_eq!(prompts[0].scores["large"], 0.75);
        assert_eq!(prompts[1].scores["small"], 0.0);
    }

    #[test]
    fn json_line_errors_name_file_and_line() {
        let first = r#"{"prompt": "a", "scores": {"m": 1, "n": 0}}"#;
        let cases = [
            (
                format!("{first}\n{{\"prompt\": \"b\", \"scores\": {{\"m\": 1}}}}"),
                "data.txt:2: missing score for `n`",
            ),
            (
                format!("{first}\n{{\"prompt\": \"b\", \"scores\": {{\"m\": \"x\", \"n\": 1}}}}"),
                "data.txt:2: non-numeric score for `m`: \"x\"",
            ),
            (
                format!("{first}\n{{\"prompt\": \"b\", \"scores\": {{\"m\": null, \"n\": 1}}}}"),
                "data.txt:2: missing score for `m`",
            ),
            (format!("{first}\n\n{{\"prompt\": \"b\""), "data.txt:3: bad JSON"),
            (format!("{first}\n{{\"scores\": {{\"m\": 1, \"n\": 1}}}}"), "data.txt:2: no `prompt`"),
            (
                format!(
                    "{first}\n{{\"prompt\": \"b\", \"scores\": {{\"m\": 1, \"n\": 1, \"o\": 1}}}}"
                ),
                "data.txt:2: score for `o`",
            ),
        ];
        for (text, expected) in cases {
            let message = message(&text);
            assert!(message.starts_with(expected), "{message} (expected {expected})");
            assert!(!message.contains('\n'), "{message}");
        }
    }

    #[test]
    fn routellm_csv_with_multi_line_quoted_prompts() {
        let text = "prompt,small,large,small_response,large_response\n\
                    \"A \"\"dished face\"\" profile, with\nA. one\nB. two\nAnswer:\",True,False,\"x\ny\",z\n\
                    plain question,0.5,1,a,b\n";
        let prompts = read(text).unwrap();
        assert_eq!(prompts.len(), 2);
        assert_eq!(prompts[0].prompt, "A \"dished face\" profile, with\nA. one\nB. two\nAnswer:");
        assert_eq!(
            prompts[0].scores,
            BTreeMap::from([("small".to_owned(), 1.0), ("large".to_owned(), 0.0)])
        );
        assert_eq!(prompts[1].scores["small"], 0.5);
    }

    #[test]
    fn csv_errors_name_file_and_line() {
        let header = "prompt,small,large\n";
        let multi = "\"two\nlines\",True,True\n";
        let cases = [
            (format!("{header}{multi}q,True\n"), "data.txt:4: a row of 2 fields, the header has 3"),
            (format!("{header}{multi}q,True,\n"), "data.txt:4: missing score for `large`"),
            (
                format!("{header}q,maybe,True\n"),
                "data.txt:2: non-numeric score for `small`: `maybe`",
            ),
            ("question,small\nq,True\n".to_owned(), "data.txt:1: no `prompt` column"),
            ("prompt,small_response\nq,a\n".to_owned(), "data.txt:1: no model score column"),
        ];
        for (text, expected) in cases {
            let message = message(&text);
            assert!(message.starts_with(expected), "{message} (expected {expected})");
        }
        assert_eq!(message(""), "data.txt: the file is empty");
    }

    #[test]
    fn bom_and_crlf() {
        let prompts = read("\u{feff}prompt,m\r\nq,True\r\n").unwrap();
        assert_eq!(
            prompts,
            vec![LabelledPrompt {
                prompt: "q".into(),
                scores: BTreeMap::from([("m".to_owned(), 1.0)])
            }]
        );
    }
}
