//! Workload clustering: features from records, standardisation, k-means with k chosen by
//! silhouette, and cluster profiles.
//!
//! Design choices:
//! - **Features** are the ones that decide cost and routing: `ln(1 + input tokens)`,
//!   `ln(1 + output tokens)`, the cached share of the input, optionally `ln(1 + latency ms)`, and
//!   one-hot columns for the values of chosen tag keys. Logs, because token counts span four
//!   orders of magnitude and a linear scale would let the longest prompts decide every cluster.
//! - **Standardisation** is scikit-learn's `StandardScaler` (population standard deviation); a
//!   constant column is centred and left unscaled instead of dividing by zero.
//! - **k-means** for the workload clusters is linfa's (`linfa-clustering`), seeded with a
//!   `Xoshiro256Plus`, k-means++ initialisation and several runs; k is the value in the given
//!   range with the highest mean silhouette (computed exactly on at most
//!   [`SILHOUETTE_SAMPLE`] evenly spaced points, since it is quadratic).
//! - **[`lloyd_kmeans`]** is a second, plain implementation of scikit-learn's Lloyd iteration
//!   (same convergence rule: labels unchanged, or squared centre shift ≤ tol × mean feature
//!   variance; a final assignment pass; inertia from the final centres). linfa 0.8 runs a
//!   variant ("m_k-means", which counts the old centre as one more member) and reports the
//!   inertia of the assignment before the last update, so its inertia can only approximately
//!   equal scikit-learn's; `lloyd_kmeans` matches it to rounding, works on a flat row-major
//!   slice and splits the assignment step over threads with `std::thread::scope`. Empty
//!   clusters keep their previous centre (scikit-learn moves them to far points instead).
//! - **Clear errors**: fewer points than k, all points identical, and non-finite features (with
//!   the row and feature name) are errors, not silent NaNs.

use std::collections::{BTreeMap, BTreeSet};

use linfa::{
    DatasetBase,
    traits::{Fit, Predict},
};
use linfa_clustering::{KMeans, KMeansInit};
use llmopt_core::{Money, RequestRecord};
use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256Plus;
use serde::Serialize;

use crate::error::{Error, Result};

/// At most this many points enter the (quadratic) silhouette computation.
pub const SILHOUETTE_SAMPLE: usize = 2_000;

/// Which features to extract.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeatureSpec {
    /// Tag keys whose values become one-hot columns (`key=value`).
    pub tag_keys: Vec<String>,
    /// Adds `ln(1 + latency ms)`.
    pub include_latency: bool,
}

/// One row per record, one column per named feature.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureMatrix {
    pub names: Vec<String>,
    pub values: Array2<f64>,
}

/// Extracts features. Records without usage get NaN token features, which [`cluster_records`]
/// reports as an error naming the row: filter them out first if that is what you want.
pub fn extract_features(records: &[RequestRecord], spec: &FeatureSpec) -> FeatureMatrix {
    let mut names = vec![
        "ln_input_tokens".to_owned(),
        "ln_output_tokens".to_owned(),
        "cached_share".to_owned(),
    ];
    if spec.include_latency {
        names.push("ln_latency_ms".to_owned());
    }
    let mut one_hot: Vec<(String, String)> = Vec::new();
    for key in &spec.tag_keys {
        let values: BTreeSet<&String> = records.iter().filter_map(|r| r.tags.get(key)).collect();
        for value in values {
            one_hot.push((key.clone(), value.clone()));
            names.push(format!("{key}={value}"));
        }
    }
    let mut values = Array2::zeros((records.len(), names.len()));
    for (row, record) in records.iter().enumerate() {
        let (input, output, cached_share) = match &record.usage {
            Some(usage) => (
                (usage.input_tokens as f64).ln_1p(),
                (usage.output_tokens as f64).ln_1p(),
                if usage.input_tokens == 0 {
                    0.0
                } else {
                    usage.cache_read_tokens as f64 / usage.input_tokens as f64
                },
            ),
            None => (f64::NAN, f64::NAN, f64::NAN),
        };
        let mut column = 0;
        for value in [input, output, cached_share] {
            values[[row, column]] = value;
            column += 1;
        }
        if spec.include_latency {
            values[[row, column]] = record.latency_ms().ln_1p();
            column += 1;
        }
        for (key, value) in &one_hot {
            values[[row, column]] = f64::from(u8::from(record.tags.get(key) == Some(value)));
            column += 1;
        }
    }
    FeatureMatrix { names, values }
}

/// Column means and scales of a standardisation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Standardizer {
    pub means: Vec<f64>,
    /// Population standard deviations; 1 for constant columns.
    pub scales: Vec<f64>,
}

impl Standardizer {
    /// Learns means and scales; fails on a non-finite cell.
    pub fn fit(features: &FeatureMatrix) -> Result<Standardizer> {
        check_features(features)?;
        let n = features.values.nrows() as f64;
        let mut means = Vec::new();
        let mut scales = Vec::new();
        for column in features.values.axis_iter(Axis(1)) {
            let mean = column.sum() / n;
            let variance = column.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
            means.push(mean);
            scales.push(if variance > 0.0 { variance.sqrt() } else { 1.0 });
        }
        Ok(Standardizer { means, scales })
    }

    pub fn transform(&self, values: &Array2<f64>) -> Array2<f64> {
        let mut out = values.clone();
        for (mut column, (mean, scale)) in
            out.axis_iter_mut(Axis(1)).zip(self.means.iter().zip(&self.scales))
        {
            column.mapv_inplace(|v| (v - mean) / scale);
        }
        out
    }

    pub fn inverse_transform(&self, values: &Array2<f64>) -> Array2<f64> {
        let mut out = values.clone();
        for (mut column, (mean, scale)) in
            out.axis_iter_mut(Axis(1)).zip(self.means.iter().zip(&self.scales))
        {
            column.mapv_inplace(|v| v * scale + mean);
        }
        out
    }
}

fn check_features(features: &FeatureMatrix) -> Result<()> {
    for ((row, column), value) in features.values.indexed_iter() {
        if !value.is_finite() {
            return Err(Error::NonFiniteFeature { row, feature: features.names[column].clone() });
        }
    }
    Ok(())
}

/// Mean silhouette (Euclidean) of a labelling, exactly as `sklearn.metrics.silhouette_score`:
/// a point alone in its cluster scores 0.
pub fn silhouette_score(points: ArrayView2<'_, f64>, labels: &[usize]) -> Result<f64> {
    let n = points.nrows();
    if labels.len() != n {
        return Err(Error::InvalidParameter {
            name: "labels",
            reason: "one label per point".into(),
        });
    }
    let clusters = labels.iter().copied().max().map_or(0, |m| m + 1);
    let distinct: BTreeSet<usize> = labels.iter().copied().collect();
    if distinct.len() < 2 || distinct.len() >= n {
        return Err(Error::InvalidParameter {
            name: "labels",
            reason: format!(
                "silhouette needs 2..n−1 clusters, got {} for {n} points",
                distinct.len()
            ),
        });
    }
    let mut sizes = vec![0_usize; clusters];
    for &label in labels {
        sizes[label] += 1;
    }
    let mut total = 0.0;
    let mut sums = vec![0.0; clusters];
    for i in 0..n {
        sums.iter_mut().for_each(|s| *s = 0.0);
        let row_i = points.row(i);
        for j in 0..n {
            if i != j {
                let distance: f64 = row_i
                    .iter()
                    .zip(points.row(j))
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum::<f64>()
                    .sqrt();
                sums[labels[j]] += distance;
            }
        }
        let own = labels[i];
        if sizes[own] == 1 {
            continue;
        }
        let a = sums[own] / (sizes[own] - 1) as f64;
        let b = (0..clusters)
            .filter(|&c| c != own && sizes[c] > 0)
            .map(|c| sums[c] / sizes[c] as f64)
            .fold(f64::INFINITY, f64::min);
        let denominator = a.max(b);
        if denominator > 0.0 {
            total += (b - a) / denominator;
        }
    }
    Ok(total / n as f64)
}

/// Seeded k-means via linfa (k-means++, `runs` restarts); returns labels and centres.
pub fn kmeans(
    points: &Array2<f64>,
    k: usize,
    runs: usize,
    seed: u64,
) -> Result<(Vec<usize>, Array2<f64>)> {
    if k == 0 || points.nrows() < k {
        return Err(Error::TooFewValues {
            what: "k-means (points ≥ k)",
            needed: k.max(1),
            got: points.nrows(),
        });
    }
    for ((row, column), value) in points.indexed_iter() {
        if !value.is_finite() {
            return Err(Error::NonFiniteFeature { row, feature: format!("column {column}") });
        }
    }
    let dataset = DatasetBase::from(points.clone());
    let model = KMeans::params_with_rng(k, Xoshiro256Plus::seed_from_u64(seed))
        .n_runs(runs.max(1))
        .max_n_iterations(300)
        .tolerance(1e-6)
        .init_method(KMeansInit::KMeansPlusPlus)
        .fit(&dataset)
        .map_err(|e| Error::KMeans(e.to_string()))?;
    let labels: Array1<usize> = model.predict(points);
    Ok((labels.to_vec(), model.centroids().clone()))
}

/// linfa k-means from given initial centres (for comparison with scikit-learn and the bench).
/// Returns the centres and linfa's inertia (sum of squared distances, not divided by n).
pub fn linfa_kmeans_from(
    points: &Array2<f64>,
    initial_centres: &Array2<f64>,
    max_iterations: u64,
    tolerance: f64,
) -> Result<(Array2<f64>, f64)> {
    let dataset = DatasetBase::from(points.view());
    let model = KMeans::params_with_rng(initial_centres.nrows(), Xoshiro256Plus::seed_from_u64(0))
        .n_runs(1)
        .max_n_iterations(max_iterations)
        .tolerance(tolerance)
        .init_method(KMeansInit::Precomputed(initial_centres.clone()))
        .fit(&dataset)
        .map_err(|e| Error::KMeans(e.to_string()))?;
    Ok((model.centroids().clone(), model.inertia() * points.nrows() as f64))
}

/// Result of [`lloyd_kmeans`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LloydResult {
    /// k × dimensions, row-major.
    pub centres: Vec<f64>,
    pub labels: Vec<u32>,
    /// Sum of squared distances to the assigned (final) centres.
    pub inertia: f64,
    pub iterations: usize,
}

struct ChunkAccumulator {
    sums: Vec<f64>,
    counts: Vec<u64>,
    inertia: f64,
    changed: bool,
}

fn empty_accumulator(k: usize, sums_len: usize) -> ChunkAccumulator {
    ChunkAccumulator { sums: vec![0.0; sums_len], counts: vec![0; k], inertia: 0.0, changed: false }
}

/// The assignment step for any number of dimensions.
fn assign_chunk(
    points: &[f64],
    dimensions: usize,
    centres: &[f64],
    labels: &mut [u32],
    accumulate: bool,
) -> ChunkAccumulator {
    match dimensions {
        // A fixed width lets the compiler unroll the distance loop and keep the point in
        // registers: about twice as fast as the generic loop for the common small widths.
        1 => assign_chunk_fixed::<1>(points, centres, labels, accumulate),
        2 => assign_chunk_fixed::<2>(points, centres, labels, accumulate),
        3 => assign_chunk_fixed::<3>(points, centres, labels, accumulate),
        4 => assign_chunk_fixed::<4>(points, centres, labels, accumulate),
        5 => assign_chunk_fixed::<5>(points, centres, labels, accumulate),
        6 => assign_chunk_fixed::<6>(points, centres, labels, accumulate),
        7 => assign_chunk_fixed::<7>(points, centres, labels, accumulate),
        8 => assign_chunk_fixed::<8>(points, centres, labels, accumulate),
        _ => assign_chunk_generic(points, dimensions, centres, labels, accumulate),
    }
}

/// Centres per block in [`assign_chunk_fixed`]: eight `f64` lanes, two AVX registers.
const CENTRE_BLOCK: usize = 8;

fn assign_chunk_fixed<const D: usize>(
    points: &[f64],
    centres: &[f64],
    labels: &mut [u32],
    accumulate: bool,
) -> ChunkAccumulator {
    let k = centres.len() / D;
    // Centres transposed into blocks of eight, one array per dimension, so that the distances
    // to eight centres are computed lane by lane (the compiler vectorises the inner loop).
    // Padding centres sit at infinity and are never nearest (points are finite).
    let blocks = k.div_ceil(CENTRE_BLOCK);
    let mut transposed = vec![[[f64::INFINITY; CENTRE_BLOCK]; D]; blocks];
    for (index, centre) in centres.chunks_exact(D).enumerate() {
        for d in 0..D {
            transposed[index / CENTRE_BLOCK][d][index % CENTRE_BLOCK] = centre[d];
        }
    }
    let mut accumulator = empty_accumulator(k, 0);
    let mut sums = vec![[0.0; D]; if accumulate { k } else { 0 }];
    for (chunk, label) in points.chunks_exact(D).zip(labels.iter_mut()) {
        let mut point = [0.0; D];
        point.copy_from_slice(chunk);
        let mut best = 0_usize;
        let mut best_distance = f64::INFINITY;
        for (block_index, block) in transposed.iter().enumerate() {
            let mut distances = [0.0; CENTRE_BLOCK];
            // Same summation order over dimensions as the generic loop: identical results.
            for d in 0..D {
                for lane in 0..CENTRE_BLOCK {
                    let delta = point[d] - block[d][lane];
                    distances[lane] += delta * delta;
                }
            }
            for (lane, &distance) in distances.iter().enumerate() {
                if distance < best_distance {
                    best_distance = distance;
                    best = block_index * CENTRE_BLOCK + lane;
                }
            }
        }
        if *label != best as u32 {
            accumulator.changed = true;
            *label = best as u32;
        }
        accumulator.inertia += best_distance;
        accumulator.counts[best] += 1;
        if accumulate {
            for (sum, value) in sums[best].iter_mut().zip(point) {
                *sum += value;
            }
        }
    }
    accumulator.sums = sums.into_iter().flatten().collect();
    accumulator
}

fn assign_chunk_generic(
    points: &[f64],
    dimensions: usize,
    centres: &[f64],
    labels: &mut [u32],
    accumulate: bool,
) -> ChunkAccumulator {
    let k = centres.len() / dimensions;
    let mut accumulator = empty_accumulator(k, if accumulate { centres.len() } else { 0 });
    for (point, label) in points.chunks_exact(dimensions).zip(labels.iter_mut()) {
        let mut best = 0_usize;
        let mut best_distance = f64::INFINITY;
        for (index, centre) in centres.chunks_exact(dimensions).enumerate() {
            let distance: f64 = point.iter().zip(centre).map(|(p, c)| (p - c) * (p - c)).sum();
            if distance < best_distance {
                best_distance = distance;
                best = index;
            }
        }
        if *label != best as u32 {
            accumulator.changed = true;
            *label = best as u32;
        }
        accumulator.inertia += best_distance;
        accumulator.counts[best] += 1;
        if accumulate {
            let sum = &mut accumulator.sums[best * dimensions..(best + 1) * dimensions];
            for (s, p) in sum.iter_mut().zip(point) {
                *s += p;
            }
        }
    }
    accumulator
}

/// One assignment pass over all points, split across threads; merges the accumulators.
fn assign_all(
    points: &[f64],
    dimensions: usize,
    centres: &[f64],
    labels: &mut [u32],
    accumulate: bool,
    threads: usize,
) -> ChunkAccumulator {
    let n = labels.len();
    let chunk_points = n.div_ceil(threads.max(1)).max(1);
    let partials: Vec<ChunkAccumulator> = std::thread::scope(|scope| {
        let handles: Vec<_> = points
            .chunks(chunk_points * dimensions)
            .zip(labels.chunks_mut(chunk_points))
            .map(|(point_chunk, label_chunk)| {
                scope.spawn(move || {
                    assign_chunk(point_chunk, dimensions, centres, label_chunk, accumulate)
                })
            })
            .collect();
        handles.into_iter().filter_map(|handle| handle.join().ok()).collect()
    });
    let mut total =
        empty_accumulator(centres.len() / dimensions, if accumulate { centres.len() } else { 0 });
    for partial in partials {
        for (t, p) in total.sums.iter_mut().zip(&partial.sums) {
            *t += p;
        }
        for (t, p) in total.counts.iter_mut().zip(&partial.counts) {
            *t += p;
        }
        total.inertia += partial.inertia;
        total.changed |= partial.changed;
    }
    total
}

/// scikit-learn's Lloyd k-means (`KMeans(algorithm="lloyd", n_init=1, init=centres)`) on a
/// row-major `n × dimensions` slice. `relative_tolerance` is scikit-learn's `tol` (1e-4 there).
pub fn lloyd_kmeans(
    points: &[f64],
    dimensions: usize,
    initial_centres: &[f64],
    max_iterations: usize,
    relative_tolerance: f64,
) -> Result<LloydResult> {
    if dimensions == 0
        || !points.len().is_multiple_of(dimensions)
        || !initial_centres.len().is_multiple_of(dimensions)
    {
        return Err(Error::InvalidParameter {
            name: "dimensions",
            reason: "slices are not whole rows".into(),
        });
    }
    let n = points.len() / dimensions;
    let k = initial_centres.len() / dimensions;
    if k == 0 || n < k {
        return Err(Error::TooFewValues {
            what: "k-means (points ≥ k)", needed: k.max(1), got: n
        });
    }
    crate::error::check_finite("k-means points", points)?;
    // tol × mean of the per-feature (population) variances, as scikit-learn scales it.
    let mut variance_sum = 0.0;
    for column in 0..dimensions {
        let mean = points.iter().skip(column).step_by(dimensions).sum::<f64>() / n as f64;
        variance_sum += points
            .iter()
            .skip(column)
            .step_by(dimensions)
            .map(|v| (v - mean) * (v - mean))
            .sum::<f64>()
            / n as f64;
    }
    let tolerance = relative_tolerance * variance_sum / dimensions as f64;
    let threads =
        std::thread::available_parallelism().map_or(1, |p| p.get()).min(n.div_ceil(50_000)).max(1);
    let mut centres = initial_centres.to_vec();
    let mut labels = vec![u32::MAX; n];
    let mut iterations = 0;
    for _ in 0..max_iterations.max(1) {
        iterations += 1;
        let pass = assign_all(points, dimensions, &centres, &mut labels, true, threads);
        let mut shift = 0.0;
        for cluster in 0..k {
            if pass.counts[cluster] == 0 {
                continue;
            }
            for d in 0..dimensions {
                let updated = pass.sums[cluster * dimensions + d] / pass.counts[cluster] as f64;
                let delta = updated - centres[cluster * dimensions + d];
                shift += delta * delta;
                centres[cluster * dimensions + d] = updated;
            }
        }
        // Labels unchanged: the new centres equal the old ones (scikit-learn's strict
        // convergence).
        if !pass.changed {
            break;
        }
        if shift <= tolerance {
            break;
        }
    }
    let final_pass = assign_all(points, dimensions, &centres, &mut labels, false, threads);
    Ok(LloydResult { centres, labels, inertia: final_pass.inertia, iterations })
}

/// Summary of one workload cluster.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterProfile {
    pub cluster: usize,
    pub size: usize,
    pub share: f64,
    /// Mean of each feature in original (unstandardised) units, in `feature_names` order.
    pub mean_features: Vec<f64>,
    pub cost: Money,
    /// Share of the known cost of all records.
    pub cost_share: f64,
    /// Served model → number of records.
    pub models: BTreeMap<String, usize>,
}

/// The clustering of a set of records.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkloadClusters {
    pub k: usize,
    pub feature_names: Vec<String>,
    /// (k, mean silhouette) for every k tried.
    pub silhouette_by_k: Vec<(usize, f64)>,
    pub labels: Vec<usize>,
    pub profiles: Vec<ClusterProfile>,
}

/// Extracts features, standardises them, runs k-means for every k in `k_range` and keeps the k
/// with the best silhouette.
pub fn cluster_records(
    records: &[RequestRecord],
    spec: &FeatureSpec,
    k_range: std::ops::RangeInclusive<usize>,
    seed: u64,
) -> Result<WorkloadClusters> {
    let features = extract_features(records, spec);
    let standardizer = Standardizer::fit(&features)?;
    let standardized = standardizer.transform(&features.values);
    let n = standardized.nrows();
    let k_min = (*k_range.start()).max(2);
    if n <= k_min {
        return Err(Error::TooFewValues {
            what: "clustering (points > k)",
            needed: k_min + 1,
            got: n,
        });
    }
    let distinct_rows: BTreeSet<Vec<u64>> = standardized
        .rows()
        .into_iter()
        .map(|row| row.iter().map(|v| v.to_bits()).collect())
        .take(10_000)
        .collect();
    if distinct_rows.len() < 2 {
        return Err(Error::Degenerate("clustering: every point is identical".into()));
    }
    // Evenly spaced sample for the silhouette.
    let stride = n.div_ceil(SILHOUETTE_SAMPLE).max(1);
    let sample_rows: Vec<usize> = (0..n).step_by(stride).collect();
    let sample = standardized.select(Axis(0), &sample_rows);
    let mut silhouette_by_k = Vec::new();
    let mut best: Option<(f64, usize, Vec<usize>)> = None;
    for k in k_min..=(*k_range.end()).min(n - 1) {
        if k > distinct_rows.len() {
            break;
        }
        let (labels, _) = kmeans(&standardized, k, 3, seed)?;
        let sample_labels: Vec<usize> = sample_rows.iter().map(|&i| labels[i]).collect();
        let Ok(score) = silhouette_score(sample.view(), &sample_labels) else {
            continue;
        };
        silhouette_by_k.push((k, score));
        if best.as_ref().is_none_or(|(best_score, _, _)| score > *best_score) {
            best = Some((score, k, labels));
        }
    }
    let (_, k, labels) = best.ok_or_else(|| {
        Error::Degenerate("clustering: no k in the range gives two non-empty clusters".into())
    })?;
    let total_cost: Money = records.iter().filter_map(|r| r.cost).sum();
    let profiles = (0..k)
        .map(|cluster| {
            let members: Vec<usize> = (0..n).filter(|&i| labels[i] == cluster).collect();
            let mean_features = (0..features.names.len())
                .map(|column| {
                    members.iter().map(|&i| features.values[[i, column]]).sum::<f64>()
                        / members.len().max(1) as f64
                })
                .collect();
            let cost: Money = members.iter().filter_map(|&i| records[i].cost).sum();
            let mut models = BTreeMap::new();
            for &i in &members {
                *models.entry(records[i].served_model.0.clone()).or_insert(0) += 1;
            }
            ClusterProfile {
                cluster,
                size: members.len(),
                share: members.len() as f64 / n as f64,
                mean_features,
                cost,
                cost_share: if total_cost.is_zero() {
                    0.0
                } else {
                    cost.picos() as f64 / total_cost.picos() as f64
                },
                models,
            }
        })
        .collect();
    Ok(WorkloadClusters { k, feature_names: features.names, silhouette_by_k, labels, profiles })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silhouette_of_two_tight_pairs() {
        // Points 0, 1 and 10, 11 on a line: a = 1, b = 10 (mean of 10 and 9 for point 1 …).
        let points = ndarray::array![[0.0], [1.0], [10.0], [11.0]];
        let score = silhouette_score(points.view(), &[0, 0, 1, 1]).unwrap();
        // s(0) = (10.5 − 1)/10.5, s(1) = (9.5 − 1)/9.5, symmetric for the other pair.
        let expected = ((9.5 / 10.5) + (8.5 / 9.5)) / 2.0;
        assert!((score - expected).abs() < 1e-15);
    }

    #[test]
    fn fixed_width_and_generic_assignment_agree() {
        let points: Vec<f64> = (0..400).map(|i| ((i * 7919) % 113) as f64 / 10.0).collect();
        let centres: Vec<f64> = points[..12].to_vec();
        let mut labels_fixed = vec![u32::MAX; 100];
        let mut labels_generic = vec![u32::MAX; 100];
        let fixed = assign_chunk_fixed::<4>(&points, &centres, &mut labels_fixed, true);
        let generic = assign_chunk_generic(&points, 4, &centres, &mut labels_generic, true);
        assert_eq!(labels_fixed, labels_generic);
        assert_eq!(fixed.sums, generic.sums);
        assert_eq!(fixed.counts, generic.counts);
        assert_eq!(fixed.inertia, generic.inertia);
        // Ten dimensions take the generic path end to end.
        let wide: Vec<f64> =
            (0..200).map(|i| f64::from(i / 100) * 10.0 + f64::from(i % 3)).collect();
        let result =
            lloyd_kmeans(&wide, 10, &[&wide[..10], &wide[190..]].concat(), 50, 1e-4).unwrap();
        assert_eq!(result.labels, [vec![0; 10], vec![1; 10]].concat());
    }

    #[test]
    fn lloyd_converges_on_two_blobs() {
        let points = [0.0, 0.0, 0.0, 1.0, 10.0, 10.0, 10.0, 11.0];
        let result = lloyd_kmeans(&points, 2, &[0.0, 0.0, 1.0, 1.0], 100, 1e-4).unwrap();
        assert_eq!(result.labels, vec![0, 0, 1, 1]);
        assert_eq!(result.centres, vec![0.0, 0.5, 10.0, 10.5]);
        assert!((result.inertia - 1.0).abs() < 1e-12);
    }
}
