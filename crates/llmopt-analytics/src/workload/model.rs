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
//!   [`select::MAX_K_CANDIDATES`] values, one k-means++ start each ([`super::select`]), then
//!   one k-means ([`KMEANS_RUNS`] k-means++ starts, at most [`KMEANS_MAX_ITERATIONS`]
//!   iterations) runs on the fit sample with the chosen k. Samples beyond the cap get
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
use crate::cluster::{KMeansSettings, KMeansStart, kmeans_with};
use crate::error::{Error, Result};

/// A fit needs at least this many samples (with fewer, IDF and silhouettes are noise).
pub const MIN_FIT_SAMPLES: usize = 100;
/// At most this many samples (evenly spaced) enter the fit; the rest are only labelled.
pub const MAX_FIT_SAMPLES: usize = 4_000;
/// The largest number of clusters (larger `k_range` ends are cut to it).
pub const MAX_K: usize = 64;
/// A cluster must be able to hold this many samples on average: k ≤ fit samples / this.
pub const MIN_SAMPLES_PER_CLUSTER: usize = 5;
/// k-means++ starts of the final fit (the best inertia wins); each candidate k of the
/// selection gets one start.
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
    /// dims × k: `idf[j] × centroids[c][j]` at `j × k + c` (derived).
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
        let k = ids.len();
        let mut weighted_by_bucket = vec![0.0_f32; dims * k];
        for (cluster, centroid) in centroids.chunks(dims).enumerate() {
            for (bucket, value) in centroid.iter().enumerate() {
                weighted_by_bucket[bucket * k + cluster] = idf[bucket] * value;
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
        let selection = points.select(Axis(0), &selection_rows);
        let distances = unit_distances(selection.view());
        let mut silhouette_by_k = Vec::new();
        let mut best: Option<(f64, usize)> = None;
        for k in k_candidates(k_min, k_max) {
            let fit = kmeans_with(selection.view(), &settings(k, 1, seed))?;
            let Some(score) = silhouette_from_distances(&distances, &fit.labels) else {
                continue;
            };
            silhouette_by_k.push((k, score));
            if best.is_none_or(|(best_score, _)| score > best_score) {
                best = Some((score, k));
            }
        }
        let (_, k) = best.ok_or_else(|| {
            Error::Degenerate(
                "workload clustering: no k in the range gives two non-empty clusters (are the \
                 samples all alike?)"
                    .into(),
            )
        })?;
        let final_fit = kmeans_with(points.view(), &settings(k, KMEANS_RUNS, seed))?;

        let centroids: Vec<f32> = final_fit.centres.iter().map(|v| *v as f32).collect();
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
        let k = self.ids.len();
        let mut dots = [0.0_f32; MAX_K];
        let dots = &mut dots[..k];
        let mut squared_norm = 0.0_f32;
        for &(index, weight) in features.entries() {
            let index = index as usize;
            let Some(idf) = self.idf.get(index) else {
                continue;
            };
            let value = weight * idf;
            squared_norm += value * value;
            let row = &self.weighted_by_bucket[index * k..(index + 1) * k];
            for (dot, centroid) in dots.iter_mut().zip(row) {
                *dot += weight * centroid;
            }
        }
        let scale = if squared_norm > 0.0 { 1.0 / squared_norm.sqrt() } else { 0.0 };
        let mut best = (0, f32::NEG_INFINITY);
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

fn settings(k: usize, runs: usize, seed: u64) -> KMeansSettings {
    KMeansSettings {
        start: KMeansStart::PlusPlus { k, runs, seed },
        max_iterations: KMEANS_MAX_ITERATIONS,
        tolerance: KMEANS_TOLERANCE,
    }
}
