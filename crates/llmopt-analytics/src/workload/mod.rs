//! Workloads discovered from a request's own content, for routing untagged traffic.
//!
//! A routing decision ("send this workload to the cheaper model") needs a workload that the
//! gateway can recognise on every request without the client's help. This module learns
//! workloads from the text of recent requests and recognises them again:
//!
//! 1. [`Featurizer::features`] turns a request's last user turn and system prompt into
//!    [`ContentFeatures`]: hashed word 1–2-grams and byte 4-grams, sublinear term frequency, a
//!    token-count bucket, sparse and L2-normalised ([`features`] explains the choices).
//! 2. [`WorkloadModel::fit`] learns IDF weights over the hash buckets and k-means clusters
//!    (linfa, through [`crate::cluster::kmeans_with`]) of a sample of such features, with k
//!    chosen by silhouette within a range ([`select`]), in bounded work ([`model`]).
//! 3. [`WorkloadModel::assign`] gives a request the stable id of its nearest cluster; the
//!    gateway calls it on every request, so it is a sparse pass over the request's features
//!    and k accumulators (`benches/benches/workload.rs`: featurise + assign of an
//!    8,000-character prompt, k = 32).
//! 4. [`WorkloadModel::inherit_ids`] carries ids across re-fits, so a routing rule adopted for
//!    `w-3fa9c2` keeps meaning the same traffic after the next optimization cycle ([`ids`]).
//!
//! Why content and not tags: RouteLLM's MMLU labels, clustered on the prompt text alone
//! (TF-IDF and k-means, k = 16–32, 3,420 prompts), let a router avoid about half of the strong
//! model's calls at ~95 % of its quality on held-out prompts; a client tag is often missing
//! and, when present, names an application rather than a kind of question.

pub mod features;
pub mod ids;
pub mod model;
pub mod select;

#[cfg(test)]
mod tests;

pub use features::{ContentFeatures, DEFAULT_DIMS, Featurizer, WorkloadText};
pub use ids::INHERIT_MIN_SIMILARITY;
pub use model::{MAX_FIT_SAMPLES, MAX_K, MIN_FIT_SAMPLES, WorkloadFit, WorkloadModel};
