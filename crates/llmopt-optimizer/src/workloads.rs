//! Workloads discovered from the requests' own content, so that routing works on traffic that
//! carries no tag.
//!
//! Design choices:
//! - **The model is part of the policy.** The fitted [`WorkloadModel`] (IDF weights, centroids,
//!   stable ids) is stored in the live [`Policy`](crate::Policy) beside the rules that name its
//!   ids. A rule scoped to workload `w-3fa9c2` and the model that assigns requests to `w-3fa9c2`
//!   are therefore always read together, persisted together, and loaded alike by every replica.
//! - **A bounded sample, not the store.** Records keep fingerprints, not text, so the content
//!   features the model is fitted on come from a reservoir sample (Algorithm R) of the requests
//!   this process assigned: at most [`WorkloadSettings::sample_size`] feature vectors, each a
//!   few hundred sparse entries.
//! - **Ids survive re-fitting.** A cycle re-fits at most every
//!   [`WorkloadSettings::refit_every_ms`]; the new clusters inherit the ids of the old clusters
//!   they match ([`WorkloadModel::inherit_ids`]), so adopted rules keep their meaning; a cluster
//!   that has no match gets a new id, and rules naming a vanished id simply match nothing.
//! - **Cheap on the request path.** [`Workloads::assign`] featurizes the system prompt and the
//!   last user turn (hashed n-grams) and picks the nearest centroid; the sample is fed with a
//!   `try_lock`, so a contended request skips sampling instead of waiting.

use std::{ops::RangeInclusive, sync::Mutex};

use llmopt_analytics::workload::{ContentFeatures, Featurizer, WorkloadModel, WorkloadText};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

/// The `[optimizer.settings.workloads]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkloadSettings {
    /// Discover workloads from content and route per discovered workload when requests carry
    /// no `workload_tag`.
    pub enabled: bool,
    /// Feature vectors kept for fitting (reservoir sample of the requests seen).
    pub sample_size: usize,
    /// No model is fitted before the sample holds this many requests.
    pub min_samples: usize,
    /// The number of clusters is chosen from the data within this range.
    pub min_clusters: usize,
    pub max_clusters: usize,
    /// A fitted model is re-fitted on the current sample at least this often.
    pub refit_every_ms: i64,
    /// …and sooner while the sample grows: once it holds this many times the requests the
    /// model was fitted on (0: only on `refit_every_ms`). The first fit is made on a small
    /// sample (`min_samples`); re-fitting as it grows lets the number of clusters and their
    /// boundaries follow the data instead of the first few hundred requests.
    pub refit_on_growth: f64,
}

impl Default for WorkloadSettings {
    fn default() -> WorkloadSettings {
        WorkloadSettings {
            enabled: true,
            sample_size: 4_000,
            min_samples: 400,
            min_clusters: 4,
            max_clusters: 32,
            refit_every_ms: 24 * 3_600_000,
            refit_on_growth: 2.0,
        }
    }
}

impl WorkloadSettings {
    /// Whether a model fitted at `fitted_ms` on `fitted_on` sampled requests is due for a
    /// re-fit at `now_ms`, with `sampled` requests in the sample now.
    pub fn refit_due(&self, fitted_ms: i64, fitted_on: usize, now_ms: i64, sampled: usize) -> bool {
        now_ms - fitted_ms >= self.refit_every_ms
            || (self.refit_on_growth > 1.0
                && sampled as f64 >= fitted_on as f64 * self.refit_on_growth)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.min_clusters < 2 || self.min_clusters > self.max_clusters {
            return Err(format!(
                "workloads: need 2 <= min_clusters <= max_clusters (got {} and {})",
                self.min_clusters, self.max_clusters
            ));
        }
        if self.max_clusters > 256 {
            return Err("workloads: max_clusters must be at most 256".to_owned());
        }
        if self.sample_size > 100_000 {
            return Err("workloads: sample_size must be at most 100000".to_owned());
        }
        if self.min_samples < self.max_clusters * 4 || self.min_samples > self.sample_size {
            return Err(format!(
                "workloads: min_samples must be between 4 x max_clusters ({}) and sample_size ({})",
                self.max_clusters * 4,
                self.sample_size
            ));
        }
        if !(self.refit_on_growth == 0.0 || self.refit_on_growth > 1.0)
            || !self.refit_on_growth.is_finite()
        {
            return Err(format!(
                "workloads: refit_on_growth must be 0 (off) or above 1 (got {})",
                self.refit_on_growth
            ));
        }
        if self.refit_every_ms <= 0 {
            return Err("workloads: refit_every_ms must be positive".to_owned());
        }
        Ok(())
    }

    pub fn cluster_range(&self) -> RangeInclusive<usize> {
        self.min_clusters..=self.max_clusters
    }
}

/// The fitted model as the policy stores it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiscoveredWorkloads {
    pub model: WorkloadModel,
    /// When it was fitted (ms since the epoch).
    pub fitted_ms: i64,
    /// Requests in the sample it was fitted on.
    pub fitted_on: usize,
}

/// Two fits are the same when made at the same time on the same sample with the same ids (the
/// centroids follow from those; comparing floats would add nothing).
impl PartialEq for DiscoveredWorkloads {
    fn eq(&self, other: &DiscoveredWorkloads) -> bool {
        self.fitted_ms == other.fitted_ms
            && self.fitted_on == other.fitted_on
            && self.model.ids() == other.model.ids()
    }
}

/// The request-path half: featurize, assign, and feed the sample.
#[derive(Debug)]
pub struct Workloads {
    featurizer: Featurizer,
    sample: Mutex<Reservoir>,
}

#[derive(Debug)]
struct Reservoir {
    capacity: usize,
    items: Vec<ContentFeatures>,
    seen: u64,
    rng: Xoshiro256PlusPlus,
}

impl Reservoir {
    /// Algorithm R: after n offers every offered item is in the sample with probability
    /// capacity / n.
    fn offer(&mut self, features: ContentFeatures) {
        self.seen += 1;
        if self.items.len() < self.capacity {
            self.items.push(features);
            return;
        }
        let slot = self.rng.gen_range(0..self.seen);
        if let Ok(slot) = usize::try_from(slot)
            && slot < self.capacity
        {
            self.items[slot] = features;
        }
    }
}

impl Workloads {
    pub fn new(sample_size: usize, seed: u64) -> Workloads {
        Workloads {
            featurizer: Featurizer::new(llmopt_analytics::workload::DEFAULT_DIMS),
            sample: Mutex::new(Reservoir {
                capacity: sample_size,
                items: Vec::new(),
                seen: 0,
                rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            }),
        }
    }

    /// The request's workload under `model` (`None` before a model is fitted), after offering
    /// its features to the sample.
    pub fn assign(&self, model: Option<&WorkloadModel>, text: &WorkloadText<'_>) -> Option<String> {
        let features = self.featurizer.features(text);
        let id = model.map(|model| model.assign(&features).to_owned());
        if let Ok(mut sample) = self.sample.try_lock() {
            sample.offer(features);
        }
        id
    }

    /// Feature vectors in the sample now.
    pub fn sample_len(&self) -> usize {
        self.sample.lock().unwrap_or_else(std::sync::PoisonError::into_inner).items.len()
    }

    /// A copy of the sample and the number of requests offered so far.
    pub fn sample(&self) -> (Vec<ContentFeatures>, u64) {
        let sample = self.sample.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        (sample.items.clone(), sample.seen)
    }

    /// Resizes the sample (keeping a uniform subset when it shrinks).
    pub fn set_sample_size(&self, capacity: usize) {
        let mut sample = self.sample.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        sample.capacity = capacity;
        sample.items.truncate(capacity);
    }
}

/// Fits a new model on `sample`, ids inherited from `previous`; `None` when the sample is too
/// small or fitting fails (the reason is returned for the audit log).
pub fn refit(
    sample: &[ContentFeatures],
    previous: Option<&WorkloadModel>,
    settings: &WorkloadSettings,
    seed: u64,
) -> Result<(WorkloadModel, usize), String> {
    if sample.len() < settings.min_samples {
        return Err(format!(
            "{} requests sampled, {} needed to discover workloads",
            sample.len(),
            settings.min_samples
        ));
    }
    let mut model = WorkloadModel::fit(sample, settings.cluster_range(), seed)
        .map_err(|e| format!("workload clustering failed: {e}"))?;
    let kept = previous.map_or(0, |previous| model.inherit_ids(previous).len());
    Ok((model, kept))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reservoir_keeps_a_bounded_uniform_sample() {
        let workloads = Workloads::new(100, 7);
        let texts: Vec<String> = (0..10_000).map(|i| format!("question number {i}")).collect();
        for text in &texts {
            let text = WorkloadText { system: None, last_user: text, input_tokens: None };
            assert_eq!(workloads.assign(None, &text), None, "no model, no workload");
        }
        let (sample, seen) = workloads.sample();
        assert_eq!((sample.len(), seen), (100, 10_000));
    }

    #[test]
    fn settings_are_checked() {
        assert!(WorkloadSettings::default().validate().is_ok());
        let bad = WorkloadSettings { min_clusters: 40, ..WorkloadSettings::default() };
        assert!(bad.validate().is_err());
        let small = WorkloadSettings { min_samples: 10, ..WorkloadSettings::default() };
        assert!(small.validate().unwrap_err().contains("min_samples"));
        let growth = WorkloadSettings { refit_on_growth: 0.5, ..WorkloadSettings::default() };
        assert!(growth.validate().unwrap_err().contains("refit_on_growth"));
    }

    #[test]
    fn a_model_is_refitted_as_its_sample_grows_and_when_it_is_old() {
        let settings = WorkloadSettings::default();
        let day = settings.refit_every_ms;
        assert!(!settings.refit_due(0, 400, 1_000, 799));
        assert!(settings.refit_due(0, 400, 1_000, 800), "the sample doubled");
        assert!(!settings.refit_due(0, 4_000, 1_000, 4_000), "a full sample waits for its age");
        assert!(settings.refit_due(0, 4_000, day, 4_000));
        let off = WorkloadSettings { refit_on_growth: 0.0, ..settings };
        assert!(!off.refit_due(0, 400, 1_000, 4_000));
    }
}
