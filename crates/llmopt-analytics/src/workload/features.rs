//! Content features of a request: hashed n-grams of its text, sublinear term frequency,
//! L2-normalised, sparse.
//!
//! Design choices:
//! - **The hashing trick** (Weinberger et al. 2009; scikit-learn's `HashingVectorizer`) instead
//!   of a vocabulary: the gateway featurises every request with no state learned beforehand, a
//!   model fitted on last week's traffic reads this week's words, and the vector has a fixed
//!   width ([`DEFAULT_DIMS`]). What a vocabulary would add (IDF) is learned at fit time over the
//!   hash buckets instead ([`super::WorkloadModel`]).
//! - **What is hashed**, in one pass over the bytes of the text, normalised on the fly (ASCII
//!   letters lowercased, every digit read as `0` so that "16 eggs" and "25 eggs" look alike,
//!   every other ASCII byte a separator, runs of separators one space, non-ASCII bytes kept so
//!   that other scripts still make n-grams):
//!   word unigrams and bigrams (words are runs of non-separators), and byte 4-grams across the
//!   normalised stream (sklearn's `analyzer="char"`, n = 4: about one token of English; they
//!   catch morphology, code, and languages without spaces that word features miss).
//! - **Groups, each L2-normalised, then weighted**: the last user turn's words, its 4-grams,
//!   the system prompt (all its n-grams, hashed with other seeds so that "translate" in a
//!   system prompt is not "translate" in a question), and one token-count bucket
//!   (`floor(log2(tokens + 1))`). Without per-group normalisation the 4-grams (about four times
//!   as many as words) would decide alone, and a long system prompt would drown the question.
//!   Weights: words 1, 4-grams 1, system prompt 1, token bucket 0.5 (a quarter of the squared
//!   norm of one group: length separates workloads a little, but one long question must not
//!   leave its topic's cluster).
//! - **Sublinear term frequency** (`1 + ln tf`, sklearn's `sublinear_tf`), so a word repeated
//!   in a long document does not outweigh the rest; the final vector is L2-normalised.
//! - **Speed**: one byte-table lookup, one multiply per n-gram (a 4-gram fits in a `u32`; words
//!   hash with FNV-1a as they are read), bucket = high bits of the product scaled to `dims`,
//!   counts in one zeroed scratch array per call (no allocation per n-gram), `1 + ln c` from a
//!   table for small counts. The bench (`benches/benches/workload.rs`) measures featurise +
//!   assign of an 8,000-character prompt.
//! - **Token count**: when `input_tokens` is unknown (the gateway routes before the provider
//!   has counted), it is estimated as bytes / 4 of the user and system text, so that a model
//!   fitted on counted requests still reads uncounted ones alike.

/// Width of the hashed feature vector used by the product. 1,024 buckets: on the MMLU slice
/// (5 subjects, `tests/it/workload.rs`) and RouteLLM's measurement (TF-IDF over a few thousand
/// prompts), clusters are of topics, which a few hundred frequent n-grams decide; 1,024 buckets
/// keep the k-means fit at k × 1,024 floats per iteration and the model at 32 × 1,024 floats,
/// while 256 buckets merged too many frequent n-grams (collisions of the words that separate
/// topics) and 4,096 cost four times the fit and memory for no better purity on the slice.
pub const DEFAULT_DIMS: usize = 1024;

/// Weight of the user turn's word n-grams group.
const WORD_WEIGHT: f32 = 1.0;
/// Weight of the user turn's byte 4-grams group.
const CHAR_WEIGHT: f32 = 1.0;
/// Weight of the system prompt's group.
const SYSTEM_WEIGHT: f32 = 1.0;
/// Weight of the token-count bucket.
const TOKEN_BUCKET_WEIGHT: f32 = 0.5;
/// Counts below this take `1 + ln c` from a table.
const SUBLINEAR_TABLE: usize = 256;

// Seeds of the hash families (arbitrary odd 64-bit constants; changing one changes every
// fitted model's meaning, so they are fixed).
const SEED_WORD: u64 = 0x243F_6A88_85A3_08D3;
const SEED_BIGRAM: u64 = 0x1319_8A2E_0370_7345;
const SEED_CHAR: u64 = 0xA409_3822_299F_31D1;
const SEED_SYSTEM: u64 = 0x082E_FA98_EC4E_6C89;
const SEED_TOKENS: u64 = 0x4528_21E6_38D0_1377;
/// Multiplier of the final mix (2^64 / golden ratio).
const MIX: u64 = 0x9E37_79B9_7F4A_7C15;
const FNV_OFFSET: u64 = 0xCBF2_9CE4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01B3;

/// The text a request's workload is recognised by.
#[derive(Debug, Clone, Copy)]
pub struct WorkloadText<'a> {
    pub system: Option<&'a str>,
    pub last_user: &'a str,
    pub input_tokens: Option<u64>,
}

/// Raw content features: hashed word 1-2-grams and byte 4-grams of the last user turn and the
/// system prompt, sublinear term frequency, plus a token-count bucket; sparse and
/// L2-normalised (unless empty).
#[derive(Debug, Clone, PartialEq)]
pub struct ContentFeatures {
    dims: u32,
    /// Sorted by index, indices < `dims`, weights non-zero.
    entries: Vec<(u32, f32)>,
}

impl ContentFeatures {
    /// Number of non-zero entries.
    pub fn nnz(&self) -> usize {
        self.entries.len()
    }

    /// Width of the vector (the featurizer's `dims`).
    pub fn dims(&self) -> usize {
        self.dims as usize
    }

    /// The non-zero `(index, weight)` pairs, sorted by index.
    pub fn entries(&self) -> &[(u32, f32)] {
        &self.entries
    }

    /// Builds features from pairs (sorted and merged here; zero weights dropped, indices must be
    /// below `dims`). Not normalised: what the caller gives is what the model reads.
    pub fn from_entries(dims: usize, mut entries: Vec<(u32, f32)>) -> crate::Result<Self> {
        if dims == 0 || dims > u32::MAX as usize {
            return Err(crate::Error::InvalidParameter {
                name: "dims",
                reason: format!("must be in 1..=2^32−1, got {dims}"),
            });
        }
        if let Some(&(index, _)) = entries.iter().find(|(index, _)| *index as usize >= dims) {
            return Err(crate::Error::InvalidParameter {
                name: "entries",
                reason: format!("index {index} is not below dims {dims}"),
            });
        }
        if let Some(position) = entries.iter().position(|(_, weight)| !weight.is_finite()) {
            return Err(crate::Error::NonFinite {
                what: "content feature weights",
                index: position,
            });
        }
        entries.sort_by_key(|(index, _)| *index);
        let mut merged: Vec<(u32, f32)> = Vec::with_capacity(entries.len());
        for (index, weight) in entries {
            match merged.last_mut() {
                Some((last, sum)) if *last == index => *sum += weight,
                _ => merged.push((index, weight)),
            }
        }
        merged.retain(|(_, weight)| *weight != 0.0);
        Ok(ContentFeatures { dims: dims as u32, entries: merged })
    }

    /// Dot product with another vector of the same width (cosine similarity for two
    /// featurizer outputs, which are unit vectors).
    pub fn dot(&self, other: &ContentFeatures) -> f64 {
        let (mut i, mut j, mut sum) = (0, 0, 0.0_f64);
        while i < self.entries.len() && j < other.entries.len() {
            let (a, wa) = self.entries[i];
            let (b, wb) = other.entries[j];
            match a.cmp(&b) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    sum += f64::from(wa) * f64::from(wb);
                    i += 1;
                    j += 1;
                }
            }
        }
        sum
    }
}

/// Byte classes of the normalisation: 0 is a separator, anything else the byte to hash.
static NORMALISE: [u8; 256] = {
    let mut table = [0_u8; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = if b.is_ascii_lowercase() {
            b
        } else if b.is_ascii_uppercase() {
            b.to_ascii_lowercase()
        } else if b.is_ascii_digit() {
            b'0'
        } else if b >= 0x80 {
            b
        } else {
            0
        };
        byte += 1;
    }
    table
};

/// Hashes request text into [`ContentFeatures`] of a fixed width.
#[derive(Debug, Clone)]
pub struct Featurizer {
    dims: usize,
    weights: [f32; 4],
    /// `1 + ln c` for c < [`SUBLINEAR_TABLE`] (entry 0 unused).
    sublinear: Vec<f32>,
}

/// Scratch of one featurisation: counts of the three text groups, and which buckets each
/// touched (so only those are read back).
struct Scratch {
    counts: Vec<u32>,
    touched: [Vec<u32>; 3],
}

const GROUP_WORDS: usize = 0;
const GROUP_CHARS: usize = 1;
const GROUP_SYSTEM: usize = 2;

impl Scratch {
    #[inline(always)]
    fn add(&mut self, group: usize, dims: usize, bucket: usize) {
        let slot = &mut self.counts[group * dims + bucket];
        if *slot == 0 {
            self.touched[group].push(bucket as u32);
        }
        *slot += 1;
    }
}

/// Maps a 64-bit key to a bucket in `0..dims`: multiply, keep the high 32 bits, scale them to
/// `dims` (Lemire's multiply-shift reduction, no division, any `dims`).
#[inline(always)]
fn bucket(key: u64, seed: u64, dims: usize) -> usize {
    let mixed = (key ^ seed).wrapping_mul(MIX);
    (((mixed >> 32) * dims as u64) >> 32) as usize
}

impl Featurizer {
    /// A featurizer of `dims` buckets (at least 1; the product uses [`DEFAULT_DIMS`]).
    pub fn new(dims: usize) -> Featurizer {
        let dims = dims.clamp(1, u32::MAX as usize);
        let sublinear = (0..SUBLINEAR_TABLE)
            .map(|count| if count == 0 { 0.0 } else { 1.0 + (count as f32).ln() })
            .collect();
        Featurizer {
            dims,
            weights: [WORD_WEIGHT, CHAR_WEIGHT, SYSTEM_WEIGHT, TOKEN_BUCKET_WEIGHT],
            sublinear,
        }
    }

    #[doc(hidden)]
    pub fn with_weights(dims: usize, weights: [f32; 4]) -> Featurizer {
        Featurizer { weights, ..Featurizer::new(dims) }
    }

    /// Width of the vectors this featurizer makes.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// The features of one request's text.
    pub fn features(&self, text: &WorkloadText<'_>) -> ContentFeatures {
        let dims = self.dims;
        let mut scratch = Scratch {
            counts: vec![0; 3 * dims],
            touched: [Vec::with_capacity(256), Vec::with_capacity(512), Vec::new()],
        };
        hash_text(&mut scratch, dims, text.last_user.as_bytes(), None);
        let system = text.system.unwrap_or("");
        if !system.is_empty() {
            hash_text(&mut scratch, dims, system.as_bytes(), Some(GROUP_SYSTEM));
        }
        let mut dense = vec![0.0_f32; dims];
        for (group, weight) in [
            (GROUP_WORDS, self.weights[0]),
            (GROUP_CHARS, self.weights[1]),
            (GROUP_SYSTEM, self.weights[2]),
        ] {
            let counts = &scratch.counts[group * dims..(group + 1) * dims];
            let touched = &scratch.touched[group];
            let mut norm2 = 0.0_f32;
            for &index in touched {
                let value = self.sublinear(counts[index as usize]);
                norm2 += value * value;
            }
            if norm2 == 0.0 {
                continue;
            }
            let scale = weight / norm2.sqrt();
            for &index in touched {
                dense[index as usize] += scale * self.sublinear(counts[index as usize]);
            }
        }
        let tokens = text
            .input_tokens
            .unwrap_or_else(|| (text.last_user.len() + system.len()).div_ceil(4) as u64);
        let token_bucket = u64::from(64 - tokens.saturating_add(1).leading_zeros());
        dense[bucket(token_bucket, SEED_TOKENS, dims)] += self.weights[3];

        let norm2: f32 = dense.iter().map(|v| v * v).sum();
        let scale = if norm2 > 0.0 { 1.0 / norm2.sqrt() } else { 0.0 };
        let entries = dense
            .iter()
            .enumerate()
            .filter(|(_, value)| **value != 0.0)
            .map(|(index, value)| (index as u32, value * scale))
            .collect();
        ContentFeatures { dims: dims as u32, entries }
    }

    #[inline(always)]
    fn sublinear(&self, count: u32) -> f32 {
        match self.sublinear.get(count as usize) {
            Some(value) => *value,
            None => 1.0 + (count as f32).ln(),
        }
    }
}

/// One pass over `text`: word unigrams and bigrams, and byte 4-grams of the normalised stream.
/// `group` None: the user turn (words and 4-grams in their own groups); Some: every n-gram into
/// that group, hashed with the system seeds.
fn hash_text(scratch: &mut Scratch, dims: usize, text: &[u8], group: Option<usize>) {
    let (word_group, char_group, salt) = match group {
        Some(group) => (group, group, SEED_SYSTEM),
        None => (GROUP_WORDS, GROUP_CHARS, 0),
    };
    let (seed_word, seed_bigram, seed_char) =
        (SEED_WORD ^ salt, SEED_BIGRAM ^ salt, SEED_CHAR ^ salt);
    // The last four normalised bytes; `filled` counts up to 4 so the first n-gram is whole.
    let mut window: u32 = 0;
    let mut filled = 0_u32;
    let mut previous_was_separator = true;
    let mut word_hash = FNV_OFFSET;
    let mut in_word = false;
    let mut previous_word: Option<u64> = None;
    for &raw in text {
        let byte = NORMALISE[raw as usize];
        if byte == 0 {
            if in_word {
                emit_word(
                    scratch,
                    dims,
                    word_group,
                    word_hash,
                    &mut previous_word,
                    seed_word,
                    seed_bigram,
                );
                in_word = false;
                word_hash = FNV_OFFSET;
            }
            if previous_was_separator {
                continue;
            }
            previous_was_separator = true;
        } else {
            previous_was_separator = false;
            in_word = true;
            word_hash = (word_hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME);
        }
        let normalised = if byte == 0 { b' ' } else { byte };
        window = (window << 8) | u32::from(normalised);
        filled += 1;
        if filled >= 4 {
            scratch.add(char_group, dims, bucket(u64::from(window), seed_char, dims));
        }
    }
    if in_word {
        emit_word(scratch, dims, word_group, word_hash, &mut previous_word, seed_word, seed_bigram);
    }
    // The end of the text is a separator, so "them." and "them" end alike.
    if !previous_was_separator {
        window = (window << 8) | u32::from(b' ');
        filled += 1;
        if filled >= 4 {
            scratch.add(char_group, dims, bucket(u64::from(window), seed_char, dims));
        }
    }
    // A text shorter than one 4-gram still gets its (space-padded) n-gram.
    if (1..4).contains(&filled) {
        scratch.add(char_group, dims, bucket(u64::from(window), seed_char, dims));
    }
}

#[inline(always)]
fn emit_word(
    scratch: &mut Scratch,
    dims: usize,
    group: usize,
    word_hash: u64,
    previous_word: &mut Option<u64>,
    seed_word: u64,
    seed_bigram: u64,
) {
    scratch.add(group, dims, bucket(word_hash, seed_word, dims));
    if let Some(previous) = *previous_word {
        scratch.add(group, dims, bucket(previous.rotate_left(23) ^ word_hash, seed_bigram, dims));
    }
    *previous_word = Some(word_hash);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(text: &str) -> WorkloadText<'_> {
        WorkloadText { system: None, last_user: text, input_tokens: None }
    }

    fn norm(features: &ContentFeatures) -> f64 {
        features.dot(features).sqrt()
    }

    #[test]
    fn deterministic_sparse_sorted_and_unit() {
        let featurizer = Featurizer::new(DEFAULT_DIMS);
        let text = user("Translate the following sentence into French: the cat sleeps.");
        let a = featurizer.features(&text);
        let b = featurizer.features(&text);
        assert_eq!(a, b);
        assert!(a.nnz() > 10 && a.nnz() < 200, "{}", a.nnz());
        assert!(a.entries().windows(2).all(|w| w[0].0 < w[1].0));
        assert!(a.entries().iter().all(|(i, w)| (*i as usize) < DEFAULT_DIMS && *w != 0.0));
        assert!((norm(&a) - 1.0).abs() < 1e-5);
    }

    #[test]
    fn shared_words_are_closer_than_unrelated_text() {
        let featurizer = Featurizer::new(DEFAULT_DIMS);
        let a = featurizer.features(&user("What is the derivative of x squared plus three x?"));
        let b = featurizer.features(&user("Compute the derivative of x cubed minus two x."));
        let c = featurizer.features(&user("Write a haiku about autumn leaves in Kyoto."));
        assert!(a.dot(&b) > a.dot(&c) + 0.2, "{} vs {}", a.dot(&b), a.dot(&c));
    }

    #[test]
    fn normalisation_case_digits_and_punctuation() {
        let featurizer = Featurizer::new(DEFAULT_DIMS);
        let a = featurizer.features(&user("Janet has 16 eggs!  Sell them."));
        let b = featurizer.features(&user("janet has 25 eggs... sell THEM"));
        assert!(a.dot(&b) > 0.999, "{}", a.dot(&b));
    }

    #[test]
    fn system_prompt_and_tokens_count() {
        let featurizer = Featurizer::new(DEFAULT_DIMS);
        let plain = featurizer.features(&user("hello there"));
        let with_system = featurizer.features(&WorkloadText {
            system: Some("You are a helpful translator."),
            last_user: "hello there",
            input_tokens: None,
        });
        assert!(plain.dot(&with_system) < 0.9);
        let long = featurizer.features(&WorkloadText {
            system: None,
            last_user: "hello there",
            input_tokens: Some(100_000),
        });
        assert!(plain.dot(&long) < 0.99 && plain.dot(&long) > 0.8, "{}", plain.dot(&long));
    }

    #[test]
    fn empty_and_tiny_texts() {
        let featurizer = Featurizer::new(64);
        let empty = featurizer.features(&user(""));
        assert_eq!(empty.nnz(), 1, "only the token bucket");
        assert!((norm(&empty) - 1.0).abs() < 1e-6);
        let tiny = featurizer.features(&user("a"));
        assert!(tiny.nnz() >= 2);
        let unicode = featurizer.features(&user("日本語のテキストを翻訳してください"));
        assert!(unicode.nnz() > 5);
    }

    #[test]
    fn from_entries_sorts_merges_and_checks() {
        let f =
            ContentFeatures::from_entries(8, vec![(3, 1.0), (1, 2.0), (3, 0.5), (5, 0.0)]).unwrap();
        assert_eq!(f.entries(), &[(1, 2.0), (3, 1.5)]);
        assert!(ContentFeatures::from_entries(8, vec![(8, 1.0)]).is_err());
        assert!(ContentFeatures::from_entries(8, vec![(0, f32::NAN)]).is_err());
    }
}
