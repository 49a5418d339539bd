//! Choosing k: silhouette of candidate k-means fits on an evenly spaced subsample.
//!
//! Design choices:
//! - **Silhouette** (Rousseeuw 1987), the criterion [`crate::cluster`] already uses for
//!   workload clustering, in the geometry of the fit: Euclidean distance between unit TF-IDF
//!   vectors, `sqrt(2 − 2 cos)`. It needs no held-out split and no penalty constant, and it is
//!   scale-free, so one rule serves 300 samples and 4,000.
//! - **Bounded work.** At most [`SELECTION_SAMPLE`] points (evenly spaced over the sample, which
//!   is in arrival order, so every period is represented) and at most [`MAX_K_CANDIDATES`] values
//!   of k (every k of a short range, else geometrically spaced values including both ends, since
//!   the silhouette changes less between 24 and 25 clusters than between 2 and 3). The
//!   distances are computed once (one S × S Gram product) and shared by all candidates, so the
//!   selection costs MAX_K_CANDIDATES k-means fits on S points plus O(S²) per candidate.

use ndarray::{Array2, ArrayView2};

/// At most this many points enter the selection of k (fits and silhouettes).
pub const SELECTION_SAMPLE: usize = 1_000;

/// At most this many values of k are tried.
pub const MAX_K_CANDIDATES: usize = 8;

/// Evenly spaced indices: `count` of `0..n` (all of them when `n ≤ count`).
pub(crate) fn evenly_spaced(n: usize, count: usize) -> Vec<usize> {
    if n <= count {
        return (0..n).collect();
    }
    (0..count).map(|i| i * n / count).collect()
}

/// The values of k to try in `k_min..=k_max`: all of them when there are at most
/// [`MAX_K_CANDIDATES`], else that many geometrically spaced, both ends included.
pub(crate) fn k_candidates(k_min: usize, k_max: usize) -> Vec<usize> {
    if k_max < k_min {
        return Vec::new();
    }
    if k_max - k_min < MAX_K_CANDIDATES {
        return (k_min..=k_max).collect();
    }
    let ratio = (k_max as f64 / k_min as f64).powf(1.0 / (MAX_K_CANDIDATES - 1) as f64);
    let mut candidates: Vec<usize> = (0..MAX_K_CANDIDATES)
        .map(|i| ((k_min as f64) * ratio.powi(i as i32)).round() as usize)
        .map(|k| k.clamp(k_min, k_max))
        .collect();
    candidates[0] = k_min;
    candidates[MAX_K_CANDIDATES - 1] = k_max;
    candidates.dedup();
    candidates
}

/// Pairwise Euclidean distances of unit (or zero) rows, from their Gram matrix.
pub(crate) fn unit_distances(points: ArrayView2<'_, f64>) -> Array2<f64> {
    let gram = points.dot(&points.t());
    let norms: Vec<f64> = gram.diag().to_vec();
    let mut distances = gram;
    for ((i, j), value) in distances.indexed_iter_mut() {
        *value = (norms[i] + norms[j] - 2.0 * *value).max(0.0).sqrt();
    }
    distances
}

/// Mean silhouette of a labelling from precomputed distances (scikit-learn's
/// `silhouette_score(metric="precomputed")`: a point alone in its cluster scores 0). None when
/// fewer than two clusters are non-empty.
pub(crate) fn silhouette_from_distances(distances: &Array2<f64>, labels: &[usize]) -> Option<f64> {
    let clusters = labels.iter().copied().max().map_or(0, |m| m + 1);
    let mut sizes = vec![0_usize; clusters];
    for &label in labels {
        sizes[label] += 1;
    }
    if sizes.iter().filter(|&&size| size > 0).count() < 2 {
        return None;
    }
    // A point's distance to itself is 0, so its own sum needs no correction.
    Some(crate::cluster::mean_silhouette(labels, &sizes, |i, sums| {
        for (j, distance) in distances.row(i).iter().enumerate() {
            sums[labels[j]] += distance;
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_cover_short_ranges_and_space_long_ones() {
        assert_eq!(k_candidates(2, 6), vec![2, 3, 4, 5, 6]);
        assert_eq!(k_candidates(2, 9), (2..=9).collect::<Vec<_>>());
        let long = k_candidates(4, 64);
        assert_eq!(long.len(), MAX_K_CANDIDATES);
        assert_eq!((long[0], long[long.len() - 1]), (4, 64));
        assert!(long.windows(2).all(|w| w[0] < w[1]), "{long:?}");
        assert!(k_candidates(5, 4).is_empty());
    }

    #[test]
    fn evenly_spaced_indices() {
        assert_eq!(evenly_spaced(3, 5), vec![0, 1, 2]);
        assert_eq!(evenly_spaced(10, 4), vec![0, 2, 5, 7]);
    }

    #[test]
    fn silhouette_matches_the_euclidean_one() {
        // Unit vectors on a circle: two tight pairs.
        let angles = [0.0_f64, 0.1, 1.5, 1.6];
        let points =
            Array2::from_shape_fn(
                (4, 2),
                |(i, j)| if j == 0 { angles[i].cos() } else { angles[i].sin() },
            );
        let labels = [0, 0, 1, 1];
        let distances = unit_distances(points.view());
        let ours = silhouette_from_distances(&distances, &labels).unwrap();
        let reference = crate::cluster::silhouette_score(points.view(), &labels).unwrap();
        assert!((ours - reference).abs() < 1e-12, "{ours} vs {reference}");
        assert!(silhouette_from_distances(&distances, &[0, 0, 0, 0]).is_none());
    }
}
