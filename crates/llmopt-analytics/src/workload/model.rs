//! The workload model: IDF weights over the hash buckets, k-means centroids, stable ids, and
//! the per-request assignment.
//!
//! Design choices:
//! - **TF-IDF then unit length, then Euclidean k-means** (linfa's, through
//!   [`crate::cluster::kmeans_with`], the crate's one k-means): on unit vectors the squared
//!   distance is `2 − 2 cos`, so this is k-means in cosine geometry, what RouteLLM's measurement
//!   (TF-IDF + k-means) did. IDF is scikit-learn's smooth IDF, `ln((1 + n) / (1 + df)) + 1`,
//!   learned over the fit sample's hash buckets.
//! - **Bounded fit.** At most [`MAX_FIT_SAMPLES`] samples (evenly spaced) enter the fit, k is
//!   chosen by silhouette on at most [`select::SELECTION_SAMPLE`] of them over at most
//!   [`select::MAX_K_CANDIDATES`] values ([`super::select`]), each a k-means of
//!   [`KMEANS_RUNS`] k-means++ starts and at most [`KMEANS_MAX_ITERATIONS`] iterations; then one
//!   more such k-means runs on the whole fit sample with the chosen k (none when the selection
//!   already saw the whole sample). Samples beyond the cap get
//!   their label from [`WorkloadModel::assign_index`].
//! - **Cheap assignment.** The nearest centroid of a unit vector x maximises
//!   `x·c − ‖c‖²/2`. The model keeps, per hash bucket, the k centroid values already multiplied
//!   by that bucket's IDF (a buckets × k matrix, f32), so assigning a request is one pass over
//!   its non-zero features adding `w × row` into k accumulators (contiguous, vectorised), plus
//!   the norm of its TF-IDF vector: no allocation, no IDF-weighted copy of the features, and
//!   no dense vector. The stored form ([`serde`]) keeps only IDF, centroids and ids; the
//!   matrix is rebuilt when a model is read back, and a stored model that does not fit
//!   together (lengths, non-finite values, duplicate ids) fails to deserialise rather than
//!   panicking at the first request.
//! - **k at most [`MAX_K`]** (64): the accumulators live on the stack, and a routing policy with
//!   more workloads per model than that would not get enough traffic per workload to test.

use ndarray::{Array2, Axis};
use serde::{Deserialize, Serialize};

use super::features::ContentFeatures;
use super::ids::{cluster_id, lineage_salt};
use super::select::{self, evenly_spaced, k_candidates, silhouette_from_distances, unit_distances};
use crate::cluster::{KMeansFit, KMeansSettings, KMeansStart, kmeans_with};
use crate::error::{Error, Result};

/// A fit needs at least this many samples (with fewer, IDF and silhouettes are noise).
pub const MIN_FIT_SAMPLES: usize = 100;
/// At most this many samples (evenly spaced) enter the fit; the rest are only labelled.
pub const MAX_FIT_SAMPLES: usize = 4_000;
/// The largest number of clusters (larger `k_range` ends are cut to it).
pub const MAX_K: usize = 64;
/// A cluster must be able to hold this many samples on average: k ≤ fit samples / this.
pub const MIN_SAMPLES_PER_CLUSTER: usize = 5;
/// k-means++ starts of every fit (the best inertia wins). One start made the selection of k
/// follow the luck of the start: on the synthetic four-topic corpus a single start often split
/// one topic and merged two, and the silhouette then preferred k = 5.
pub const KMEANS_RUNS: usize = 3;
/// Iteration limit of each k-means run. On unit TF-IDF vectors the labels settle in 10–40
/// iterations; the limit only bounds the work of a pathological sample.
pub const KMEANS_MAX_ITERATIONS: u64 = 100;
/// linfa's stopping rule (norm of the centroids' move in one iteration, all centroids as one
/// vector); the vectors have unit length, so 1e-4 is a move far below any label change.
pub const KMEANS_TOLERANCE: f64 = 1e-4;

/// Workload clusters learned from a sample of recent requests' features: IDF weights over the
/// hash buckets (computed at fit), k-means centroids (linfa k-means through
/// [`crate::cluster::kmeans_with`], cosine geometry via L2-normalised TF-IDF vectors), the
/// number of clusters chosen from the data, and a stable id per cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "StoredModel", into = "StoredModel")]
pub struct WorkloadModel {
    pub(crate) dims: usize,
    /// Per bucket.
    pub(crate) idf: Vec<f32>,
    /// k × dims, row-major, in TF-IDF space.
    pub(crate) centroids: Vec<f32>,
    pub(crate) ids: Vec<String>,
    /// The id lineage ([`super::ids`]): salt of the permutation and the next unused serial.
    pub(crate) id_salt: u64,
    pub(crate) next_serial: u64,
    /// dims × k (k padded to whole lanes of 8 with zeros): `idf[j] × centroids[c][j]` at
    /// `j × padded k + c` (derived).
    weighted_by_bucket: Vec<f32>,
    /// `‖c‖² / 2` per centroid (derived).
    half_squared_norms: Vec<f32>,
}

/// A fit with what it saw: the model, each sample's cluster, and the silhouette of every k
/// tried (for reports and for choosing `k_range`).
#[derive(Debug, Clone)]
pub struct WorkloadFit {
    pub model: WorkloadModel,
    /// Cluster index of each sample, in the order given: k-means' label for the samples in
    /// the fit, [`WorkloadModel::assign_index`] for the ones beyond [`MAX_FIT_SAMPLES`].
    pub labels: Vec<usize>,
    /// (k, mean silhouette on the selection subsample), ascending k.
    pub silhouette_by_k: Vec<(usize, f64)>,
    /// Number of samples per cluster.
    pub sizes: Vec<usize>,
}

/// The serialised form.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredModel {
    dims: usize,
    idf: Vec<f32>,
    centroids: Vec<Vec<f32>>,
    ids: Vec<String>,
    id_salt: u64,
    next_serial: u64,
}

impl From<WorkloadModel> for StoredModel {
    fn from(model: WorkloadModel) -> StoredModel {
        let centroids = model.centroids.chunks(model.dims).map(<[f32]>::to_vec).collect();
        StoredModel {
            dims: model.dims,
            idf: model.idf,
            centroids,
            ids: model.ids,
            id_salt: model.id_salt,
            next_serial: model.next_serial,
        }
    }
}

impl TryFrom<StoredModel> for WorkloadModel {
    type Error = String;

    fn try_from(stored: StoredModel) -> Result<WorkloadModel, String> {
        let dims = stored.dims;
        if dims == 0 || stored.idf.len() != dims {
            return Err(format!(
                "workload model: {} IDF weights for {dims} dims",
                stored.idf.len()
            ));
        }
        if stored.idf.iter().any(|v| !v.is_finite() || *v <= 0.0) {
            return Err("workload model: IDF weights must be finite and positive".into());
        }
        let k = stored.centroids.len();
        if k == 0 || k > MAX_K || stored.ids.len() != k {
            return Err(format!(
                "workload model: {k} centroids and {} ids (1..={MAX_K} and equal expected)",
                stored.ids.len()
            ));
        }
        if stored.centroids.iter().any(|c| c.len() != dims || c.iter().any(|v| !v.is_finite())) {
            return Err(format!("workload model: centroids must be {dims} finite values"));
        }
        let distinct: std::collections::BTreeSet<&String> = stored.ids.iter().collect();
        if distinct.len() != k {
            return Err("workload model: duplicate cluster ids".into());
        }
        Ok(WorkloadModel::build(
            dims,
            stored.idf,
            stored.centroids.concat(),
            stored.ids,
            stored.id_salt,
            stored.next_serial,
        ))
    }
}

impl WorkloadModel {
    fn build(
        dims: usize,
        idf: Vec<f32>,
        centroids: Vec<f32>,
        ids: Vec<String>,
        id_salt: u64,
        next_serial: u64,
    ) -> WorkloadModel {
        let stride = padded_k(ids.len());
        let mut weighted_by_bucket = vec![0.0_f32; dims * stride];
        for (cluster, centroid) in centroids.chunks(dims).enumerate() {
            for (bucket, value) in centroid.iter().enumerate() {
                weighted_by_bucket[bucket * stride + cluster] = idf[bucket] * value;
            }
        }
        let half_squared_norms = centroids
            .chunks(dims)
            .map(|centroid| {
                (centroid.iter().map(|v| f64::from(*v) * f64::from(*v)).sum::<f64>() / 2.0) as f32
            })
            .collect();
        WorkloadModel {
            dims,
            idf,
            centroids,
            ids,
            id_salt,
            next_serial,
            weighted_by_bucket,
            half_squared_norms,
        }
    }

    /// Fits on `samples` (at least [`MIN_FIT_SAMPLES`], all of one width); k is chosen within
    /// `k_range` (cut to 2..=[`MAX_K`] and to fit samples / [`MIN_SAMPLES_PER_CLUSTER`]) by the
    /// mean silhouette on an evenly spaced subsample ([`super::select`]); deterministic for a
    /// seed.
    pub fn fit(
        samples: &[ContentFeatures],
        k_range: std::ops::RangeInclusive<usize>,
        seed: u64,
    ) -> Result<WorkloadModel> {
        Ok(Self::fit_report(samples, k_range, seed)?.model)
    }

    /// [`WorkloadModel::fit`], also returning each sample's label and the silhouettes.
    pub fn fit_report(
        samples: &[ContentFeatures],
        k_range: std::ops::RangeInclusive<usize>,
        seed: u64,
    ) -> Result<WorkloadFit> {
        let n = samples.len();
        if n < MIN_FIT_SAMPLES {
            return Err(Error::TooFewValues {
                what: "workload clustering (samples)",
                needed: MIN_FIT_SAMPLES,
                got: n,
            });
        }
        let dims = samples[0].dims();
        if let Some(position) = samples.iter().position(|s| s.dims() != dims) {
            return Err(Error::InvalidParameter {
                name: "samples",
                reason: format!(
                    "sample {position} has {} dims, sample 0 has {dims}: one featurizer expected",
                    samples[position].dims()
                ),
            });
        }
        if k_range.start() > k_range.end() {
            return Err(Error::InvalidParameter {
                name: "k_range",
                reason: format!("empty range {}..={}", k_range.start(), k_range.end()),
            });
        }
        let fit_rows = evenly_spaced(n, MAX_FIT_SAMPLES);
        let n_fit = fit_rows.len();
        let k_min = (*k_range.start()).max(2);
        let k_max = (*k_range.end()).min(MAX_K).min(n_fit / MIN_SAMPLES_PER_CLUSTER);
        if k_max < k_min {
            return Err(Error::TooFewValues {
                what: "workload clustering (samples per cluster)",
                needed: k_min * MIN_SAMPLES_PER_CLUSTER,
                got: n_fit,
            });
        }

        // Smooth IDF over the fit sample's buckets.
        let mut document_frequency = vec![0_u32; dims];
        for &row in &fit_rows {
            for &(index, _) in samples[row].entries() {
                document_frequency[index as usize] += 1;
            }
        }
        let idf: Vec<f64> = document_frequency
            .iter()
            .map(|&df| ((1.0 + n_fit as f64) / (1.0 + f64::from(df))).ln() + 1.0)
            .collect();
        let mut points = Array2::<f64>::zeros((n_fit, dims));
        for (mut point, &row) in points.axis_iter_mut(Axis(0)).zip(&fit_rows) {
            for &(index, weight) in samples[row].entries() {
                point[index as usize] = f64::from(weight) * idf[index as usize];
            }
            let norm = point.dot(&point).sqrt();
            if norm > 0.0 {
                point.mapv_inplace(|v| v / norm);
            }
        }

        // Choose k on the selection subsample.
        let selection_rows = evenly_spaced(n_fit, select::SELECTION_SAMPLE);
        let selection_is_everything = selection_rows.len() == n_fit;
        let selection = points.select(Axis(0), &selection_rows);
        let distances = unit_distances(selection.view());
        let mut silhouette_by_k = Vec::new();
        let mut best: Option<(f64, usize, Option<KMeansFit>)> = None;
        for k in k_candidates(k_min, k_max) {
            let fit = kmeans_with(selection.view(), &settings(k, seed))?;
            let Some(score) = silhouette_from_distances(&distances, &fit.labels) else {
                continue;
            };
            silhouette_by_k.push((k, score));
            if best.as_ref().is_none_or(|(best_score, _, _)| score > *best_score) {
                best = Some((score, k, selection_is_everything.then_some(fit)));
            }
        }
        let (_, k, selection_fit) = best.ok_or_else(|| {
            Error::Degenerate(
                "workload clustering: no k in the range gives two non-empty clusters (are the \
                 samples all alike?)"
                    .into(),
            )
        })?;
        // The selection's fit is the final one when the selection saw every fit sample.
        let final_fit = match selection_fit {
            Some(fit) => fit,
            None => kmeans_with(points.view(), &settings(k, seed))?,
        };

        // linfa's update leaves a bucket no member has decaying geometrically towards 0 (the old
        // centre counts as a member), down to subnormal floats, which made assignment several
        // times slower (subnormal arithmetic is microcode on x86): such values are 0.
        let centroids: Vec<f32> = final_fit
            .centres
            .iter()
            .map(|v| if v.abs() < NEGLIGIBLE { 0.0 } else { *v as f32 })
            .collect();
        let id_salt = lineage_salt(seed, &centroids);
        let ids = (0..k as u64).map(|serial| cluster_id(serial, id_salt)).collect();
        let idf = idf.iter().map(|v| *v as f32).collect();
        let model = WorkloadModel::build(dims, idf, centroids, ids, id_salt, k as u64);

        let mut labels = vec![usize::MAX; n];
        for (&row, &label) in fit_rows.iter().zip(&final_fit.labels) {
            labels[row] = label;
        }
        for (row, label) in labels.iter_mut().enumerate() {
            if *label == usize::MAX {
                *label = model.assign_index(&samples[row]);
            }
        }
        let mut sizes = vec![0; k];
        for &label in &labels {
            sizes[label] += 1;
        }
        Ok(WorkloadFit { model, labels, silhouette_by_k, sizes })
    }

    /// The nearest cluster's stable id. Cheap: see [`WorkloadModel::assign_index`].
    pub fn assign(&self, features: &ContentFeatures) -> &str {
        &self.ids[self.assign_index(features)]
    }

    /// The nearest cluster's index (Euclidean distance of the unit TF-IDF vector to the
    /// centroids, as k-means assigns). Buckets at or beyond the model's width (features of
    /// another featurizer) are ignored; empty features go to the centroid of least norm.
    pub fn assign_index(&self, features: &ContentFeatures) -> usize {
        // The accumulators' width as a constant, so that they live in vector registers.
        match padded_k(self.ids.len()) {
            8 => self.nearest::<8>(features),
            16 => self.nearest::<16>(features),
            24 => self.nearest::<24>(features),
            32 => self.nearest::<32>(features),
            40 => self.nearest::<40>(features),
            48 => self.nearest::<48>(features),
            56 => self.nearest::<56>(features),
            _ => self.nearest::<MAX_K>(features),
        }
    }

    fn nearest<const STRIDE: usize>(&self, features: &ContentFeatures) -> usize {
        let (rows, _) = self.weighted_by_bucket.as_chunks::<STRIDE>();
        let dots = accumulate(rows, features.entries());
        // The norm of the TF-IDF vector, in a pass of its own.
        let squared_norm: f32 = features
            .entries()
            .iter()
            .filter_map(|&(index, weight)| Some(weight * self.idf.get(index as usize)?))
            .map(|value| value * value)
            .sum();
        let scale = if squared_norm > 0.0 { 1.0 / squared_norm.sqrt() } else { 0.0 };
        let mut best = (0, f32::NEG_INFINITY);
        // `half_squared_norms` has k entries: the zip stops before the padding lanes.
        for (cluster, (dot, half_norm)) in dots.iter().zip(&self.half_squared_norms).enumerate() {
            let score = dot * scale - half_norm;
            if score > best.1 {
                best = (cluster, score);
            }
        }
        best.0
    }

    /// Number of clusters.
    pub fn k(&self) -> usize {
        self.ids.len()
    }

    /// Stable id of each cluster, by index.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// Width of the features the model reads.
    pub fn dims(&self) -> usize {
        self.dims
    }
}

/// `Σ weight × rows[index]` over the entries, as one array value: written so (a function
/// returning the whole array) the compiler vectorises the lanes; inside `nearest`, with the
/// accumulators read lane by lane afterwards, it made scalar code 8 times slower.
#[inline(never)]
fn accumulate<const STRIDE: usize>(
    rows: &[[f32; STRIDE]],
    entries: &[(u32, f32)],
) -> [f32; STRIDE] {
    let mut dots = [0.0_f32; STRIDE];
    for &(index, weight) in entries {
        if let Some(row) = rows.get(index as usize) {
            for lane in 0..STRIDE {
                dots[lane] += weight * row[lane];
            }
        }
    }
    dots
}

/// Centroid values below this are 0 (far below any weight a member contributes, ≥ 1e-4).
const NEGLIGIBLE: f64 = 1e-12;

/// Width of the accumulator lanes of [`WorkloadModel::assign_index`].
const LANES: usize = 8;

/// k rounded up to whole lanes (MAX_K is a multiple of them).
fn padded_k(k: usize) -> usize {
    k.div_ceil(LANES) * LANES
}

fn settings(k: usize, seed: u64) -> KMeansSettings {
    KMeansSettings {
        start: KMeansStart::PlusPlus { k, runs: KMEANS_RUNS, seed },
        max_iterations: KMEANS_MAX_ITERATIONS,
        tolerance: KMEANS_TOLERANCE,
    }
}
