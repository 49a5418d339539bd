//! Stable cluster ids and their inheritance across re-fits.
//!
//! Design choices:
//! - **An id is a serial number in a lineage, permuted**: `w-` and six hex digits of a
//!   bijection of the 24-bit serial keyed by the lineage's salt. A fresh fit starts a lineage
//!   (salt from the seed and the fitted centroids, serials 0..k); [`WorkloadModel::inherit_ids`]
//!   continues the previous model's lineage, and its new clusters take the next serials. Since
//!   the permutation is a bijection and serials only grow, an id is never given to a second
//!   cluster in a lineage (for 2^24 clusters), unlike hashes of (seed, index), which repeat
//!   whenever a later fit uses the same seed. The permutation only keeps ids short and
//!   unlike each other (`w-3fa9c2`, not `w-000003`), so that an id in a log is not mistaken for
//!   a cluster index.
//! - **Matching** compares centroids in one space: the previous model's TF-IDF space (the new
//!   centroid's IDF weighting is divided out and the previous one applied), each model's
//!   centroids minus their mean, L2-normalised. The two fits learned different IDF weights,
//!   hence the common space; and the centroids of one corpus share a large common part (the
//!   template of MMLU questions, a product's common words), so that raw centroids of different
//!   topics had cosines of 0.5–0.9 on the MMLU slice and nothing told them apart. What a
//!   cluster has beyond the average is what names it. Pairs with cosine at least
//!   [`INHERIT_MIN_SIMILARITY`] are matched greedily, best first, one-to-one (ties by index, so
//!   the result is deterministic).

use std::collections::BTreeMap;

use super::model::WorkloadModel;

/// Centroids at least this similar (cosine of the centred centroids, in the previous model's
/// TF-IDF space) may share an id. Measured: re-fits of the synthetic topics on a new sample
/// match at 0.85–0.90 and different topics stay below 0.3; on the MMLU slice (weak structure,
/// `tests/it/workload.rs`) a cluster found again matches at 0.65–0.95, while a cluster split or
/// merged by the re-fit scores 0.3–0.56 against its parts. 0.6 keeps an id only for a cluster
/// found again, not for a part of it.
pub const INHERIT_MIN_SIMILARITY: f64 = 0.6;

const MASK24: u64 = (1 << 24) - 1;

/// A bijection of 24-bit values keyed by `salt` (add, multiply by odd constants, xor-shift:
/// each step is invertible modulo 2^24).
fn permute24(serial: u64, salt: u64) -> u64 {
    let mut x = (serial.wrapping_add(salt)) & MASK24;
    x = x.wrapping_mul(0x9E_3779) & MASK24;
    x ^= x >> 12;
    x = x.wrapping_mul(0x85_EBCB) & MASK24;
    x ^= x >> 11;
    x = x.wrapping_mul(0xC2_B2AF) & MASK24;
    x ^= x >> 13;
    x
}

/// The id of a serial in a lineage.
pub(crate) fn cluster_id(serial: u64, salt: u64) -> String {
    format!("w-{:06x}", permute24(serial, salt))
}

/// A lineage salt from the fit's seed and what it fitted (FNV-1a over the seed and the centroid
/// bits), so that two fresh fits of different data with the same seed start different lineages.
pub(crate) fn lineage_salt(seed: u64, centroids: &[f32]) -> u64 {
    let mut hash: u64 = 0xCBF2_9CE4_8422_2325;
    let mut feed = |value: u64| {
        for byte in value.to_le_bytes() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01B3);
        }
    };
    feed(seed);
    for value in centroids {
        feed(u64::from(value.to_bits()));
    }
    hash & MASK24
}

impl WorkloadModel {
    /// After a re-fit: clusters that match a cluster of `previous` (centroid cosine similarity
    /// at least [`INHERIT_MIN_SIMILARITY`] in `previous`'s TF-IDF space, one-to-one, best
    /// matches first) take its id, so adopted routing rules keep their meaning across
    /// optimization cycles; new clusters get new ids of `previous`'s lineage (never an id that
    /// lineage gave before). Returns the mapping old id → new id for the ids kept (the same
    /// string on both sides: the map says which old clusters survive). Models of different
    /// widths share no id.
    pub fn inherit_ids(&mut self, previous: &WorkloadModel) -> BTreeMap<String, String> {
        let k = self.k();
        let mut pairs: Vec<(f64, usize, usize)> = Vec::new();
        if previous.dims == self.dims {
            let new_centroids = self.centered_centroids_in_space_of(previous);
            let old_centroids = previous.centered_centroids_in_space_of(previous);
            for (old, old_centroid) in old_centroids.iter().enumerate() {
                for (new, centroid) in new_centroids.iter().enumerate() {
                    let similarity: f64 =
                        old_centroid.iter().zip(centroid).map(|(a, b)| a * b).sum();
                    if similarity >= INHERIT_MIN_SIMILARITY {
                        pairs.push((similarity, new, old));
                    }
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let mut new_ids: Vec<Option<String>> = vec![None; k];
        let mut old_taken = vec![false; previous.k()];
        let mut kept = BTreeMap::new();
        for (_, new, old) in pairs {
            if new_ids[new].is_some() || old_taken[old] {
                continue;
            }
            old_taken[old] = true;
            let id = previous.ids[old].clone();
            kept.insert(id.clone(), id.clone());
            new_ids[new] = Some(id);
        }
        let mut next_serial = previous.next_serial;
        let ids = new_ids
            .into_iter()
            .map(|id| {
                id.unwrap_or_else(|| {
                    loop {
                        let candidate = cluster_id(next_serial, previous.id_salt);
                        next_serial += 1;
                        // Defensive: a previous model built by hand (deserialised) might hold an
                        // id that is not of its lineage.
                        if !previous.ids.contains(&candidate) {
                            break candidate;
                        }
                    }
                })
            })
            .collect();
        self.ids = ids;
        self.id_salt = previous.id_salt;
        self.next_serial = next_serial;
        kept
    }

    /// The centroids of `self` moved into `space`'s TF-IDF weighting, each minus their mean,
    /// L2-normalised.
    fn centered_centroids_in_space_of(&self, space: &WorkloadModel) -> Vec<Vec<f64>> {
        let moved: Vec<Vec<f64>> = self
            .centroids
            .chunks(self.dims)
            .map(|row| {
                let mut moved: Vec<f64> = row
                    .iter()
                    .zip(&self.idf)
                    .zip(&space.idf)
                    .map(|((value, own_idf), space_idf)| {
                        f64::from(*value) / f64::from(*own_idf) * f64::from(*space_idf)
                    })
                    .collect();
                normalise(&mut moved);
                moved
            })
            .collect();
        let mut mean = vec![0.0; self.dims];
        for row in &moved {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += v / moved.len() as f64;
            }
        }
        moved
            .into_iter()
            .map(|mut row| {
                row.iter_mut().zip(&mean).for_each(|(v, m)| *v -= m);
                normalise(&mut row);
                row
            })
            .collect()
    }
}

fn normalise(vector: &mut [f64]) {
    let norm = vector.iter().map(|v| v * v).sum::<f64>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|v| *v /= norm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_is_a_bijection() {
        let mut seen = vec![false; 1 << 24];
        for serial in 0..1_u64 << 24 {
            let id = permute24(serial, 12_345) as usize;
            assert!(!seen[id], "serial {serial} repeats {id}");
            seen[id] = true;
        }
        assert_eq!(cluster_id(0, 7).len(), 8);
        assert!(cluster_id(0, 7).starts_with("w-"));
    }
}
