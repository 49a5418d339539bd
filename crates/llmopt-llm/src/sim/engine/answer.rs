//! The answer's text: a known answer from the quality labels cut into word pieces, or filler
//! of a length drawn from the Azure trace; stopped at `max_tokens`.

use rand::Rng;
use rand_distr::{Distribution, LogNormal};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::{OUTPUT_TOKENS_LN_MEAN, OUTPUT_TOKENS_LN_SD};
use crate::sim::cache::tokens_of;

/// Generated output split into the pieces a stream sends.
#[derive(Debug, Clone)]
pub(crate) struct Generated {
    pub(super) pieces: Vec<(String, u64)>,
    pub output_tokens: u64,
    pub truncated: bool,
}

impl Generated {
    pub(super) fn text(&self) -> String {
        self.pieces.iter().map(|(piece, _)| piece.as_str()).collect()
    }
}

const FILLER_WORDS: &[&str] = &[
    "the", "answer", "depends", "on", "several", "factors", "first", "we", "consider", "data",
    "model", "request", "result", "because", "value", "each", "step", "shows", "that", "this",
    "approach", "works", "well", "for", "most", "cases", "however", "some", "inputs", "need",
    "careful", "handling", "so", "it", "is", "worth", "checking", "again", "then", "we", "sum",
    "total", "cost", "time", "and", "quality", "of", "output", "in", "practice", "teams", "often",
];

/// Splits a known answer into word pieces (one token per 4 bytes, at least one per piece), or
/// makes filler of a length drawn from the Azure trace followed by `closing_line`; stops at
/// `max_tokens` (so a cap can cut the closing line off, as it cuts a real answer).
pub(super) fn generate(
    known_answer: Option<&str>,
    closing_line: Option<&str>,
    max_tokens: Option<u64>,
    rng: &mut Xoshiro256PlusPlus,
) -> Generated {
    let limit = max_tokens.unwrap_or(u64::MAX).max(1);
    let mut generated = Generated { pieces: Vec::new(), output_tokens: 0, truncated: false };
    let push = |piece: String, generated: &mut Generated| -> bool {
        let tokens = tokens_of(&piece).max(1);
        if generated.output_tokens + tokens > limit {
            generated.truncated = true;
            return false;
        }
        generated.output_tokens += tokens;
        generated.pieces.push((piece, tokens));
        true
    };
    match known_answer {
        Some(text) => {
            for piece in text.trim().split_inclusive(char::is_whitespace) {
                if !push(piece.to_owned(), &mut generated) {
                    break;
                }
            }
        }
        None => {
            let target = LogNormal::new(OUTPUT_TOKENS_LN_MEAN, OUTPUT_TOKENS_LN_SD)
                .map(|d| d.sample(rng))
                .unwrap_or(129.0)
                .round()
                .max(1.0) as u64;
            let mut words = 0;
            while generated.output_tokens < target {
                let word = FILLER_WORDS[rng.gen_range(0..FILLER_WORDS.len())];
                words += 1;
                let piece = if words % 12 == 0 { format!("{word}. ") } else { format!("{word} ") };
                if !push(piece, &mut generated) {
                    return generated;
                }
            }
            if let Some(line) = closing_line {
                push(format!("\n\n{line}"), &mut generated);
            }
        }
    }
    generated
}
