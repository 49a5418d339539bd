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
//!   normalised stream (scikit-learn's `analyzer="char"`, n = 4: about one token of English; they
//!   catch morphology, code, and languages without spaces that word features miss).
//! - **Groups, each L2-normalised, then weighted**: the last user turn's words, its 4-grams,
//!   the system prompt (all its n-grams, hashed with other seeds so that "translate" in a
//!   system prompt is not "translate" in a question), and one token-count bucket
//!   (`floor(log2(tokens + 1))`). Without per-group normalisation the 4-grams (about four times
//!   as many as words) would decide alone, and a long system prompt would drown the question.
//!   Weights: words 0.5, 4-grams 1, system prompt 1, token bucket 0.3, measured on the MMLU
//!   slice (six subjects × 60 prompts, purity against the subjects, mean of five seeds, k = 6 /
//!   12): all 1 with the bucket at 0.5 gave 0.34 / 0.41; 4-grams alone 0.41 / 0.46; words 0.5,
//!   4-grams 1, bucket 0.3 gave 0.39 / 0.49. Hashed into 1,024 buckets, word bigrams collide
//!   more harmfully than 4-grams (scikit-learn's `HashingVectorizer` + TF-IDF + `KMeans` on
//!   the same prompts: words 1–2 0.35 / 0.42, char 4-grams 0.48 / 0.47), so words weigh half.
//!   The bucket at 0.5 made length the main structure (silhouettes tripled, purity fell).
//!   (These comparisons were measured with the first version of the hashing, FNV-1a words; the
//!   branch-free hashing that replaced it moved the MMLU test's purity within its noise.)
//! - **Sublinear term frequency** (`1 + ln tf`, scikit-learn's `sublinear_tf`), so a word repeated
//!   in a long document does not outweigh the rest; the final vector is L2-normalised.
//! - **Speed**: at most [`HEAD_BYTES`] + [`TAIL_BYTES`] of a text are hashed; one byte-table
//!   lookup and no data-dependent branch per byte (see `hash_segment`), one 32-bit multiply
//!   per 4-gram (it fits in a `u32`), words hashed by rotate-and-xor as they are read, bucket
//!   = high bits of a product scaled to `dims` (no division), counts in zeroed scratch arrays
//!   per call (no allocation per n-gram), `1 + ln c` from a table for small counts. The bench
//!   (`benches/benches/workload.rs`, an 8,000-character prompt and a system prompt): about
//!   19 µs to featurise, 3 µs to assign (k = 32), measured on a shared two-core machine under
//!   load. The earlier per-byte version (FNV words, a branch at every word boundary, all
//!   8,000 bytes) took 46 µs.
//! - **Token count**: when `input_tokens` is unknown (the gateway routes before the provider
//!   has counted), it is estimated as bytes / 4 of the user and system text, so that a model
//!   fitted on counted requests still reads uncounted ones alike.

/// Width of the hashed feature vector used by the product: 1,024 buckets, by measurement.
/// On the MMLU slice (purity against six subjects, mean of five seeds, k = 6 / 12): 1,024
/// buckets 0.39 / 0.49, 2,048 0.40 / 0.50, 4,096 0.44 / 0.53 (scikit-learn, hashed char
/// 4-grams: 0.48 / 0.47 at 1,024, 0.49 / 0.59 at 65,536; its full-vocabulary words 0.47 /
/// 0.54). On all 57 MMLU subjects (3,511 prompts, k chosen in 16–32): 256 buckets 0.27,
/// 1,024 0.28–0.30, 4,096 0.31. Four times the width buys 0.03–0.05 of purity for four times
/// the fit's work and memory (k-means runs on dense rows of this width, and the model keeps
/// k × dims floats twice); 256 merges too many of the n-grams that tell topics apart.
pub const DEFAULT_DIMS: usize = 1024;

/// Weight of the user turn's word n-grams group.
const WORD_WEIGHT: f32 = 0.5;
/// Weight of the user turn's byte 4-grams group.
const CHAR_WEIGHT: f32 = 1.0;
/// Weight of the system prompt's group.
const SYSTEM_WEIGHT: f32 = 1.0;
/// Weight of the token-count bucket.
const TOKEN_BUCKET_WEIGHT: f32 = 0.3;
/// Of a text longer than [`HEAD_BYTES`] + [`TAIL_BYTES`], only its first and last bytes are
/// hashed: a workload shows in its opening (instructions, template) and its end (the
/// question); past a few thousand bytes more text moves a sublinear, normalised vector little,
/// while hashing costs ~3 ns per byte. A 100,000-token prompt then costs what a 1,000-token
/// one does on the gateway's hot path. The token bucket still counts the whole text.
pub const HEAD_BYTES: usize = 2_048;
/// See [`HEAD_BYTES`].
pub const TAIL_BYTES: usize = 2_048;
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
    /// `1 + ln c` for c < [`SUBLINEAR_TABLE`] (entry 0 unused).
    sublinear: Vec<f32>,
}

const GROUP_WORDS: usize = 0;
const GROUP_CHARS: usize = 1;
const GROUP_SYSTEM: usize = 2;

/// Σ v², in eight partial sums: one running sum is a chain of dependent additions (4 cycles
/// each), which made the sums of three 1,024-wide vectors a good part of the fixed cost.
fn sum_of_squares(values: &[f32]) -> f32 {
    let (lanes, rest) = values.as_chunks::<8>();
    let mut partial = [0.0_f32; 8];
    for lane in lanes {
        for (sum, value) in partial.iter_mut().zip(lane) {
            *sum += value * value;
        }
    }
    partial.iter().sum::<f32>() + rest.iter().map(|v| v * v).sum::<f32>()
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
        Featurizer { dims, sublinear }
    }

    /// Width of the vectors this featurizer makes.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// The features of one request's text.
    pub fn features(&self, text: &WorkloadText<'_>) -> ContentFeatures {
        let dims = self.dims;
        // Counts of the three groups, side by side.
        let mut counts = vec![0_u32; 3 * dims];
        let (words, rest) = counts.split_at_mut(dims);
        let (chars, system_counts) = rest.split_at_mut(dims);
        hash_text(text.last_user.as_bytes(), words, chars, 0);
        let system = text.system.unwrap_or("");
        let has_system = !system.is_empty();
        if has_system {
            // One group: the system prompt's words and 4-grams together, other seeds.
            let mut system_chars = vec![0_u32; dims];
            hash_text(system.as_bytes(), system_counts, &mut system_chars, SEED_SYSTEM);
            system_counts.iter_mut().zip(&system_chars).for_each(|(count, c)| *count += c);
        }
        let mut dense = vec![0.0_f32; dims];
        let mut values = vec![0.0_f32; dims];
        for (group, weight) in
            [(GROUP_WORDS, WORD_WEIGHT), (GROUP_CHARS, CHAR_WEIGHT), (GROUP_SYSTEM, SYSTEM_WEIGHT)]
        {
            if group == GROUP_SYSTEM && !has_system {
                continue;
            }
            let group_counts = &counts[group * dims..(group + 1) * dims];
            for (value, &count) in values.iter_mut().zip(group_counts) {
                *value = self.sublinear(count);
            }
            let norm2 = sum_of_squares(&values);
            if norm2 == 0.0 {
                continue;
            }
            let scale = weight / norm2.sqrt();
            dense.iter_mut().zip(&values).for_each(|(d, v)| *d += scale * v);
        }
        let tokens = text
            .input_tokens
            .unwrap_or_else(|| (text.last_user.len() + system.len()).div_ceil(4) as u64);
        let token_bucket = u64::from(64 - tokens.saturating_add(1).leading_zeros());
        dense[bucket(token_bucket, SEED_TOKENS, dims)] += TOKEN_BUCKET_WEIGHT;

        let norm2 = sum_of_squares(&dense);
        let scale = if norm2 > 0.0 { 1.0 / norm2.sqrt() } else { 0.0 };
        let mut entries = Vec::with_capacity(dims.min(text.last_user.len() + system.len() + 1));
        for (index, value) in dense.iter().enumerate() {
            if *value != 0.0 {
                entries.push((index as u32, value * scale));
            }
        }
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

/// Word unigrams and bigrams of `text` into `words`, byte 4-grams of the normalised stream
/// into `chars`, hashed with the seeds xor `salt`: the whole text up to [`HEAD_BYTES`] +
/// [`TAIL_BYTES`], else its head and its tail (hashed as two texts).
fn hash_text(text: &[u8], words: &mut [u32], chars: &mut [u32], salt: u64) {
    if text.len() <= HEAD_BYTES + TAIL_BYTES {
        hash_segment(text, words, chars, salt);
    } else {
        hash_segment(&text[..HEAD_BYTES], words, chars, salt);
        hash_segment(&text[text.len() - TAIL_BYTES..], words, chars, salt);
    }
}

/// Words buffered before they are counted (a power of two: the index is masked, not checked).
const WORD_BUFFER: usize = 256;

/// One segment: see [`hash_text`].
///
/// The pass over the bytes has no data-dependent branch: a collapsed separator adds 0 to the
/// bucket of the unchanged window, and a word's hash is written at every byte into a buffer
/// whose length grows only where a word ends (counted when the buffer fills and at the end). A
/// branch at every word end, mispredicted about once per word, cost more than the hashing.
/// Words hash by rotate-and-xor (exact up to 8 bytes, folded beyond): a 2-cycle dependency
/// per byte where FNV's multiply made 4; the bucket's multiply mixes them.
fn hash_segment(text: &[u8], words: &mut [u32], chars: &mut [u32], salt: u64) {
    let dims = words.len();
    let (seed_word, seed_bigram, seed_char) =
        (SEED_WORD ^ salt, SEED_BIGRAM ^ salt, (SEED_CHAR ^ salt) as u32);
    let mut buffer = [0_u64; WORD_BUFFER];
    let mut buffered = 0_usize;
    let mut previous_word: Option<u64> = None;
    // The last four normalised bytes. It starts as zeros, so the first bytes of a text make
    // n-grams of their own (`\0\0\0a`: "a text starting with a"), like the padding of
    // scikit-learn's `char_wb`; a text of one byte still has a feature.
    let mut window: u32 = 0;
    // 1 when the previous byte was a separator (the start of the text counts as one).
    let mut previous_separator = 1_u32;
    let mut word_hash = 0_u64;
    for &raw in text {
        let byte = NORMALISE[raw as usize];
        let separator = u32::from(byte == 0);
        // Written at every byte, kept (the count advances) only after a word's last byte.
        buffer[buffered & (WORD_BUFFER - 1)] = word_hash;
        buffered += (separator & (1 - previous_separator)) as usize;
        if buffered == WORD_BUFFER {
            count_words(&buffer, words, &mut previous_word, seed_word, seed_bigram);
            buffered = 0;
        }
        word_hash = if separator == 1 { 0 } else { word_hash.rotate_left(8) ^ u64::from(byte) };
        let keep = 1 - (separator & previous_separator);
        // A separator enters the window as one space (0x20); a collapsed one not at all.
        let normalised = u32::from(byte) | (separator << 5);
        window = if keep == 1 { (window << 8) | normalised } else { window };
        chars[char_bucket(window, seed_char, dims)] += keep;
        previous_separator = separator;
    }
    if previous_separator == 0 {
        buffer[buffered] = word_hash;
        buffered += 1;
        // The end of the text is a separator, so "them." and "them" end alike.
        window = (window << 8) | u32::from(b' ');
        chars[char_bucket(window, seed_char, dims)] += 1;
    }
    count_words(&buffer[..buffered], words, &mut previous_word, seed_word, seed_bigram);
}

/// Counts buffered words and the bigrams they make (with the word before the buffer).
fn count_words(
    hashes: &[u64],
    words: &mut [u32],
    previous_word: &mut Option<u64>,
    seed_word: u64,
    seed_bigram: u64,
) {
    let dims = words.len();
    for &hash in hashes {
        words[bucket(hash, seed_word, dims)] += 1;
        if let Some(previous) = *previous_word {
            let pair = previous.rotate_left(23) ^ hash.wrapping_mul(MIX);
            words[bucket(pair, seed_bigram, dims)] += 1;
        }
        *previous_word = Some(hash);
    }
}

/// A 4-gram's bucket: one 32-bit multiply (the window holds the whole n-gram, so a
/// multiplicative hash of it is enough), then the high bits scaled to `dims`.
#[inline(always)]
fn char_bucket(window: u32, seed: u32, dims: usize) -> usize {
    let mixed = (window ^ seed).wrapping_mul(0x9E37_79B1);
    ((u64::from(mixed) * dims as u64) >> 32) as usize
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
