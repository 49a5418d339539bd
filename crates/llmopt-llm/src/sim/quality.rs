//! Per-prompt answer quality from real labels: the RouteLLM evaluation files record, for every
//! GSM8K and MMLU prompt, whether Mixtral-8x7B-Instruct (the weak model) and GPT-4-1106-preview
//! (the strong model) answered correctly. The simulator's `small` profile answers with the weak
//! model's outcome and `large` with the strong one's, so quality feedback in demos comes from
//! measurements, not from a random number.
//!
//! Bundled: the first 200 GSM8K prompts with both labels and both responses
//! (`data/routellm_gsm8k_200.jsonl`, Apache-2.0, see `data/README.md`). The whole set loads from
//! a RouteLLM checkout with [`QualityLabels::load_routellm_dir`].

use std::{collections::HashMap, path::Path};

use serde::Deserialize;
use xxhash_rust::xxh3::xxh3_64;

use crate::error::{Error, Result};

/// The bundled slice: 200 GSM8K prompts.
pub const BUNDLED_GSM8K: &str = include_str!("../../data/routellm_gsm8k_200.jsonl");

/// Which model of the RouteLLM pair a simulated model stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QualityTier {
    /// Mixtral-8x7B-Instruct-v0.1.
    Weak,
    /// GPT-4-1106-preview.
    Strong,
}

/// The labels of one prompt.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct QualityLabel {
    pub weak_correct: bool,
    pub strong_correct: bool,
    /// The models' actual answers, when the source has them (GSM8K does, MMLU does not).
    #[serde(default)]
    pub weak_response: Option<String>,
    #[serde(default)]
    pub strong_response: Option<String>,
}

impl QualityLabel {
    pub fn correct(&self, tier: QualityTier) -> bool {
        match tier {
            QualityTier::Weak => self.weak_correct,
            QualityTier::Strong => self.strong_correct,
        }
    }

    pub fn response(&self, tier: QualityTier) -> Option<&str> {
        match tier {
            QualityTier::Weak => self.weak_response.as_deref(),
            QualityTier::Strong => self.strong_response.as_deref(),
        }
    }
}

/// Labels by prompt text (exact after trimming whitespace).
#[derive(Debug, Clone, Default)]
pub struct QualityLabels {
    by_prompt: HashMap<u64, QualityLabel>,
    prompts: Vec<String>,
}

#[derive(Deserialize)]
struct BundledRow {
    prompt: String,
    #[serde(flatten)]
    label: QualityLabel,
}

fn prompt_key(prompt: &str) -> u64 {
    xxh3_64(prompt.trim().as_bytes())
}

impl QualityLabels {
    /// The bundled 200 GSM8K prompts.
    pub fn bundled() -> QualityLabels {
        // The bundled file is checked by a test; a bad line is skipped rather than fatal.
        let mut labels = QualityLabels::default();
        for line in BUNDLED_GSM8K.lines().filter(|line| !line.trim().is_empty()) {
            if let Ok(row) = serde_json::from_str::<BundledRow>(line) {
                labels.insert(row.prompt, row.label);
            }
        }
        labels
    }

    pub fn insert(&mut self, prompt: String, label: QualityLabel) {
        if self.by_prompt.insert(prompt_key(&prompt), label).is_none() {
            self.prompts.push(prompt);
        }
    }

    pub fn get(&self, prompt: &str) -> Option<&QualityLabel> {
        self.by_prompt.get(&prompt_key(prompt))
    }

    /// The prompts, in load order (for demos that replay them).
    pub fn prompts(&self) -> &[String] {
        &self.prompts
    }

    pub fn len(&self) -> usize {
        self.prompts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.prompts.is_empty()
    }

    /// Loads a RouteLLM-format CSV: `prompt, <weak model>, <strong model>[, <weak>_response,
    /// <strong>_response]` with `True`/`False` labels.
    pub fn load_routellm_csv(&mut self, path: &Path) -> Result<usize> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| Error::Io { path: path.to_owned(), source })?;
        let records =
            parse_csv(&text).map_err(|detail| Error::Data { path: path.to_owned(), detail })?;
        let mut loaded = 0;
        for record in records.iter().skip(1) {
            if record.len() < 3 {
                continue;
            }
            let flag = |cell: &str| match cell {
                "True" => Ok(true),
                "False" => Ok(false),
                other => Err(Error::Data {
                    path: path.to_owned(),
                    detail: format!("label is not True/False: {other:?}"),
                }),
            };
            let label = QualityLabel {
                weak_correct: flag(&record[1])?,
                strong_correct: flag(&record[2])?,
                weak_response: record.get(3).cloned(),
                strong_response: record.get(4).cloned(),
            };
            self.insert(record[0].clone(), label);
            loaded += 1;
        }
        Ok(loaded)
    }

    /// Loads `gsm8k/gsm8k_responses.csv` and every `mmlu_responses/mmlu_*.csv` under a RouteLLM
    /// evaluation folder (as in `shared/data/quality/routellm/`).
    pub fn load_routellm_dir(dir: &Path) -> Result<QualityLabels> {
        let mut labels = QualityLabels::default();
        labels.load_routellm_csv(&dir.join("gsm8k").join("gsm8k_responses.csv"))?;
        let mmlu = dir.join("mmlu_responses");
        let entries =
            std::fs::read_dir(&mmlu).map_err(|source| Error::Io { path: mmlu.clone(), source })?;
        let mut files: Vec<_> = entries
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "csv"))
            .collect();
        files.sort();
        for file in files {
            labels.load_routellm_csv(&file)?;
        }
        Ok(labels)
    }
}

/// The letter of a multiple-choice answer a simulated model gives when its label says it was
/// correct (`gold`) and when it says it was wrong. The labels record correctness, not the
/// answer key, so the key is a stand-in drawn from the prompt's hash; what matters, that a
/// judge can tell a correct answer from a wrong one exactly as the labels do, holds.
pub fn answer_letters(prompt: &str) -> (char, char) {
    const LETTERS: [char; 4] = ['A', 'B', 'C', 'D'];
    let hash = prompt_key(prompt);
    let gold = (hash % 4) as usize;
    let wrong = (gold + 1 + ((hash >> 8) % 3) as usize) % 4;
    (LETTERS[gold], LETTERS[wrong])
}

/// The closing line of a simulated answer to a labelled prompt without recorded responses
/// (MMLU): `Answer: (X)`, with the letter the label implies.
pub fn answer_line(prompt: &str, correct: bool) -> String {
    let (gold, wrong) = answer_letters(prompt);
    format!("Answer: ({})", if correct { gold } else { wrong })
}

impl QualityLabels {
    /// The simulated judge's reply for a question and an answer: `CORRECT` or `INCORRECT` as
    /// the labels say for the model whose answer it is, `UNSURE` when the question is not
    /// labelled or the answer is none the simulator gives. An answer cut off before its end
    /// (a strict prefix of a recorded response, or an MMLU answer without its answer line) is
    /// `INCORRECT`, as a judge would grade a truncated answer.
    pub fn judge(&self, question: &str, answer: &str) -> &'static str {
        let verdict = |correct: bool| if correct { "CORRECT" } else { "INCORRECT" };
        let Some(label) = self.get(question) else { return "UNSURE" };
        let answer = answer.trim();
        let responses: Vec<(&str, bool)> = [QualityTier::Weak, QualityTier::Strong]
            .into_iter()
            .filter_map(|tier| label.response(tier).map(|text| (text.trim(), label.correct(tier))))
            .collect();
        if responses.is_empty() {
            let (gold, _) = answer_letters(question);
            return match answer.rfind("Answer: (") {
                Some(at) => verdict(answer[at + "Answer: (".len()..].starts_with(gold)),
                None => "INCORRECT",
            };
        }
        if let Some((_, correct)) = responses.iter().find(|(text, _)| *text == answer) {
            return verdict(*correct);
        }
        if !answer.is_empty() && responses.iter().any(|(text, _)| text.starts_with(answer)) {
            return "INCORRECT";
        }
        "UNSURE"
    }
}

/// RFC 4180 CSV: comma separated, fields optionally in double quotes, `""` for a quote inside
/// quotes, line breaks allowed inside quotes, `\n` or `\r\n` between records.
pub fn parse_csv(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut records = Vec::new();
    let mut record: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while let Some(ch) = chars.next() {
        if in_quotes {
            match ch {
                '"' if chars.peek() == Some(&'"') => {
                    field.push('"');
                    chars.next();
                }
                '"' => in_quotes = false,
                '\n' => {
                    line += 1;
                    field.push(ch);
                }
                _ => field.push(ch),
            }
            continue;
        }
        match ch {
            '"' if field.is_empty() => in_quotes = true,
            ',' => record.push(std::mem::take(&mut field)),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                line += 1;
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            _ => field.push(ch),
        }
    }
    if in_quotes {
        return Err(format!("unterminated quoted field at end of input (line {line})"));
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_simulated_judge_grades_as_the_labels_say() {
        let mut labels = QualityLabels::default();
        let mmlu = "Which planet is largest? (A) Mars (B) Jupiter (C) Venus (D) Earth";
        let label = |weak, strong| QualityLabel {
            weak_correct: weak,
            strong_correct: strong,
            weak_response: None,
            strong_response: None,
        };
        labels.insert(mmlu.to_owned(), label(false, true));
        let right = format!("filler words\n\n{}", answer_line(mmlu, true));
        let wrong = format!("filler words\n\n{}", answer_line(mmlu, false));
        assert_ne!(right, wrong);
        assert_eq!(labels.judge(mmlu, &right), "CORRECT");
        assert_eq!(labels.judge(mmlu, &wrong), "INCORRECT");
        assert_eq!(labels.judge(mmlu, "filler words cut before the"), "INCORRECT");
        assert_eq!(labels.judge("an unlabelled question", &right), "UNSURE");

        let gsm = "What is 6 times 7?";
        let mut with_responses = label(true, false);
        with_responses.weak_response = Some("6 * 7 = 42. The answer is 42.".to_owned());
        with_responses.strong_response = Some("6 * 7 = 43. The answer is 43.".to_owned());
        labels.insert(gsm.to_owned(), with_responses);
        assert_eq!(labels.judge(gsm, "6 * 7 = 42. The answer is 42."), "CORRECT");
        assert_eq!(labels.judge(gsm, " 6 * 7 = 43. The answer is 43.\n"), "INCORRECT");
        assert_eq!(labels.judge(gsm, "6 * 7 = 42."), "INCORRECT", "cut off");
        assert_eq!(labels.judge(gsm, "Something else entirely"), "UNSURE");
    }

    #[test]
    fn csv_quotes_and_line_breaks() {
        let parsed = parse_csv("a,b\n\"x, \"\"y\"\"\nz\",2\r\nlast,\n").unwrap();
        assert_eq!(
            parsed,
            vec![
                vec!["a".to_owned(), "b".to_owned()],
                vec!["x, \"y\"\nz".to_owned(), "2".to_owned()],
                vec!["last".to_owned(), String::new()],
            ]
        );
        assert!(parse_csv("\"open").is_err());
    }
}
