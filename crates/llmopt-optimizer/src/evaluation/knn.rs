//! The kNN router baselines, on the content features the product's workload discovery uses
//! ([`llmopt_analytics::workload::Featurizer`], cosine similarity of the unit vectors).
//!
//! - **Bandit kNN** gets exactly what the product's learner gets: for every earlier prompt,
//!   only the label of the model it served that prompt with. For prompt `i` it looks at the
//!   most similar earlier prompts, takes the `k` nearest that the strong model answered and
//!   the `k` nearest that the weak model answered, and predicts the quality the weak model
//!   loses as the difference of their mean labels; it serves the weak model when that is at
//!   most the threshold. Exploration rule: with probability ε, or when either model has fewer
//!   than `min_labelled` labelled neighbours, it serves a model drawn uniformly at random
//!   (without exploration a threshold that favours one model never learns about the other).
//!   Its decisions change what it learns, so every threshold is a full replay.
//! - **Full-information kNN** (a reference with more information than any deployed router
//!   has) knows both models' labels of every earlier prompt and predicts from the `k` nearest
//!   earlier prompts; its decisions do not change what it learns, so one pass scores every
//!   prompt and its curve is every threshold at once.
//!
//! The nearest earlier prompts are computed once for all thresholds: the `candidates` most
//! similar earlier prompts of each prompt, by exact cosine over dense vectors.

use llmopt_analytics::workload::ContentFeatures;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::Serialize;

use super::LabelledItem;

/// Settings of the kNN baselines.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KnnSettings {
    /// Labelled neighbours averaged per model.
    pub k: usize,
    /// Most similar earlier prompts kept per prompt (the bandit kNN looks for its `k` labelled
    /// neighbours of each model among them).
    pub candidates: usize,
    /// Fewer labelled neighbours of a model than this: explore.
    pub min_labelled: usize,
    /// Probability of serving a random model regardless of the prediction.
    pub epsilon: f64,
    /// Thresholds on the predicted quality loss swept for the curve.
    pub thresholds: Vec<f64>,
    pub seed: u64,
}

impl Default for KnnSettings {
    fn default() -> KnnSettings {
        KnnSettings {
            k: 10,
            candidates: 128,
            min_labelled: 3,
            epsilon: 0.1,
            // Steps of 0.025 where scores of binary labels concentrate, and both ends.
            thresholds: std::iter::once(-1.0)
                .chain((-20..=20).map(|step| f64::from(step) * 0.025))
                .chain(std::iter::once(1.0))
                .collect(),
            seed: 0x6b6e_6e00,
        }
    }
}

/// Rows compared together: each earlier row is read once per block rather than once per
/// row, so the work is bound by arithmetic, not by streaming the matrix from memory.
const BLOCK: usize = 32;

/// Per prompt, the indices of the most similar earlier prompts, most similar first.
pub fn nearest_earlier(
    features: &[ContentFeatures],
    candidates: usize,
    threads: usize,
) -> Vec<Vec<u32>> {
    let n = features.len();
    if candidates == 0 {
        return vec![Vec::new(); n];
    }
    let dims = features.first().map_or(0, ContentFeatures::dims).max(1);
    let mut dense = vec![0.0_f32; n * dims];
    for (row, f) in dense.chunks_exact_mut(dims).zip(features) {
        for &(index, weight) in f.entries() {
            row[index as usize] = weight;
        }
    }
    let threads = threads.max(1);
    let blocks = n.div_ceil(BLOCK);
    let parts: Vec<Vec<(usize, Vec<u32>)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|part| {
                let dense = &dense;
                // Interleaved blocks: block b costs about b, so this balances the parts.
                scope.spawn(move || {
                    (part..blocks)
                        .step_by(threads)
                        .flat_map(|block| {
                            nearest_in_block(
                                dense,
                                dims,
                                block * BLOCK,
                                ((block + 1) * BLOCK).min(n),
                                candidates,
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
    });
    let mut lists: Vec<Vec<u32>> = vec![Vec::new(); n];
    for (i, list) in parts.into_iter().flatten() {
        lists[i] = list;
    }
    lists
}

/// The nearest earlier rows of rows `first..end`.
fn nearest_in_block(
    dense: &[f32],
    dims: usize,
    first: usize,
    end: usize,
    candidates: usize,
) -> Vec<(usize, Vec<u32>)> {
    let row = |i: usize| &dense[i * dims..(i + 1) * dims];
    let mut similar: Vec<Vec<(f32, u32)>> = (first..end).map(Vec::with_capacity).collect();
    for j in 0..end.saturating_sub(1) {
        let earlier = row(j);
        for i in (j + 1).max(first)..end {
            similar[i - first].push((dot(row(i), earlier), j as u32));
        }
    }
    // Most similar first; among equals the earlier prompt, so the order is deterministic.
    let order = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    (first..end)
        .zip(similar)
        .map(|(i, mut list)| {
            if list.len() > candidates {
                list.select_nth_unstable_by(candidates - 1, order);
                list.truncate(candidates);
            }
            list.sort_unstable_by(order);
            (i, list.into_iter().map(|(_, j)| j).collect())
        })
        .collect()
}

/// Dot product in 16 independent lanes over fixed-size chunks (no bounds checks in the loop),
/// which the compiler keeps in vector registers.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut lanes = [0.0_f32; LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a_chunks.remainder().iter().zip(b_chunks.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        let (Ok(x), Ok(y)) = (<&[f32; LANES]>::try_from(x), <&[f32; LANES]>::try_from(y)) else {
            continue;
        };
        for ((sum, x), y) in lanes.iter_mut().zip(x).zip(y) {
            *sum += x * y;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// One bandit-kNN replay at `threshold`: per prompt, whether it served the weak model.
pub fn bandit_replay(
    items: &[LabelledItem],
    nearest: &[Vec<u32>],
    threshold: f64,
    settings: &KnnSettings,
) -> Vec<bool> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(settings.seed);
    let mut served_weak: Vec<bool> = Vec::with_capacity(items.len());
    for neighbours in nearest.iter().take(items.len()) {
        let (mut strong, mut weak) = (Labels::default(), Labels::default());
        for &j in neighbours {
            let j = j as usize;
            let labels = if served_weak[j] { &mut weak } else { &mut strong };
            if labels.count < settings.k {
                labels.add(if served_weak[j] { items[j].weak } else { items[j].strong });
            }
            if strong.count >= settings.k && weak.count >= settings.k {
                break;
            }
        }
        let explore = rng.gen_bool(settings.epsilon.clamp(0.0, 1.0))
            || strong.count < settings.min_labelled
            || weak.count < settings.min_labelled;
        let choice =
            if explore { rng.gen_bool(0.5) } else { strong.mean() - weak.mean() <= threshold };
        served_weak.push(choice);
    }
    served_weak
}

/// Full-information kNN: per prompt, the predicted quality the weak model loses (mean strong
/// label minus mean weak label of its `k` nearest earlier prompts; 0 with none).
pub fn full_information_scores(items: &[LabelledItem], nearest: &[Vec<u32>], k: usize) -> Vec<f64> {
    nearest
        .iter()
        .take(items.len())
        .map(|neighbours| {
            let used = &neighbours[..neighbours.len().min(k)];
            if used.is_empty() {
                return 0.0;
            }
            let gap: f64 =
                used.iter().map(|&j| items[j as usize].strong - items[j as usize].weak).sum();
            gap / used.len() as f64
        })
        .collect()
}

#[derive(Debug, Default, Clone, Copy)]
struct Labels {
    count: usize,
    sum: f64,
}

impl Labels {
    fn add(&mut self, label: f64) {
        self.count += 1;
        self.sum += label;
    }

    fn mean(&self) -> f64 {
        if self.count == 0 { 0.0 } else { self.sum / self.count as f64 }
    }
}

#[cfg(test)]
mod tests {
    use llmopt_analytics::workload::{DEFAULT_DIMS, Featurizer, WorkloadText};

    use super::*;

    #[test]
    fn nearest_earlier_prompts_are_the_similar_ones() {
        let texts = [
            "the cat sat on the mat",
            "stock prices fell sharply",
            "a cat sat on a mat",
            "prices of stocks fell",
        ];
        let featurizer = Featurizer::new(DEFAULT_DIMS);
        let features: Vec<_> = texts
            .iter()
            .map(|t| {
                featurizer.features(&WorkloadText {
                    system: None,
                    last_user: t,
                    input_tokens: None,
                })
            })
            .collect();
        let nearest = nearest_earlier(&features, 2, 2);
        assert_eq!(nearest[0], Vec::<u32>::new());
        assert_eq!(nearest[1], vec![0]);
        assert_eq!(nearest[2][0], 0);
        assert_eq!(nearest[3][0], 1);
        let a = [1.0_f32; 37];
        assert!((dot(&a, &a) - 37.0).abs() < 1e-4);
    }
}
