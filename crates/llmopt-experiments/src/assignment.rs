//! Deterministic assignment of units (requests, users, sessions) to experiment arms.
//!
//! **The hash.** `bucket(experiment_id, unit_id)` is GrowthBook's hash, version 2:
//!
//! ```text
//! inner  = fnv1a_32(utf8(experiment_id ++ unit_id))
//! outer  = fnv1a_32(utf8(decimal(inner)))
//! bucket = outer mod 10_000
//! ```
//!
//! where `fnv1a_32` is the 32-bit FNV-1a hash (offset basis `0x811c9dc5`, prime `0x01000193`)
//! and `decimal` writes the unsigned integer in base 10 without leading zeros. FNV-1a is a
//! published, frozen algorithm (unlike `std`'s `DefaultHasher`, whose algorithm may change
//! between releases), so replicas, machines and future releases agree without talking to each
//! other. Hashing twice is GrowthBook's fix for FNV's weak mixing of sequential ids; a GrowthBook
//! SDK with `seed = experiment id` and `hashVersion = 2` computes `bucket / 10_000`. Test vectors
//! from an independent Python implementation (`scripts/reference/experiments_reference.py`) pin
//! it in `tests/it/assignment.rs`.
//!
//! **Buckets to arms.** The 10,000 buckets are laid out once per experiment: the first
//! `coverage × 10,000` buckets are in the experiment, split into contiguous ranges by the arm
//! weights; the rest are out of it (they get the default policy and are not counted). Because the
//! layout only depends on the experiment's own specification, a unit keeps its arm for the life
//! of a fixed-weight experiment.
//!
//! **Overlaps are refused, not layered.** Two experiments whose scopes could both match one
//! request cannot be active (running or paused) at the same time; [`Scope::overlaps`] decides it
//! conservatively. Layers would allow more experiments at once, but would let the effects of two
//! policy changes mix in one request; for an optimizer that tests a few proposals at a time,
//! refusing is the simpler guarantee, and a request then belongs to at most one experiment.

use serde::{Deserialize, Serialize};

use llmopt_core::{RequestRecord, ScopeFilter, ScopeSubject, Tags, pattern::globs_may_overlap};

/// The number of hash buckets.
pub const BUCKETS: u32 = 10_000;

const FNV_OFFSET_BASIS: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

/// 32-bit FNV-1a over a sequence of byte slices, as if they were concatenated.
pub fn fnv1a_32(parts: &[&[u8]]) -> u32 {
    let mut hash = FNV_OFFSET_BASIS;
    for part in parts {
        for &byte in *part {
            hash ^= u32::from(byte);
            hash = hash.wrapping_mul(FNV_PRIME);
        }
    }
    hash
}

/// The bucket (0..10,000) of a unit in an experiment; see the module documentation.
pub fn bucket(experiment_id: &str, unit_id: &str) -> u32 {
    let inner = fnv1a_32(&[experiment_id.as_bytes(), unit_id.as_bytes()]);
    // A u32 has at most 10 decimal digits: format into a stack buffer, no allocation per call.
    let mut digits = [0u8; 10];
    let mut position = digits.len();
    let mut rest = inner;
    loop {
        position -= 1;
        digits[position] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    fnv1a_32(&[&digits[position..]]) % BUCKETS
}

/// What a unit of assignment is: every request on its own, or every request of a user or session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    #[default]
    Request,
    User,
    Session,
}

/// The identifiers a request can offer; the experiment's [`Unit`] picks one.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnitIds<'a> {
    pub request: &'a str,
    pub user: Option<&'a str>,
    pub session: Option<&'a str>,
}

impl<'a> UnitIds<'a> {
    pub fn request(request: &'a str) -> UnitIds<'a> {
        UnitIds { request, user: None, session: None }
    }

    /// The id for `unit`; `None` when the request does not carry it (then the request is not
    /// eligible: hashing a placeholder would put every such request in one arm).
    pub fn id_for(&self, unit: Unit) -> Option<&'a str> {
        match unit {
            Unit::Request => Some(self.request),
            Unit::User => self.user.filter(|id| !id.is_empty()),
            Unit::Session => self.session.filter(|id| !id.is_empty()),
        }
    }
}

/// Which requests are eligible. Every set field must match; an empty scope matches everything.
/// The model is a `*` pattern, as in the live policy's scopes ([`llmopt_core::scope`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Scope {
    /// The model the client asked for, exact or a pattern with `*` wildcards (`gpt-4o*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// A tag key and value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<(String, String)>,
    /// A workload cluster id from analytics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
}

/// What the gateway knows about a request when it decides its policy.
#[derive(Debug, Clone, Copy)]
pub struct ScopeInputs<'a> {
    pub model: &'a str,
    pub tenant: Option<&'a str>,
    pub tags: &'a Tags,
    pub cluster: Option<&'a str>,
}

impl Scope {
    /// The scope's constraints in the form every scope matches through (see
    /// [`llmopt_core::scope`]: the model is a `*` pattern, every set field must match).
    pub fn filter(&self) -> ScopeFilter<'_> {
        ScopeFilter {
            model: self.model.as_deref(),
            tenant: self.tenant.as_deref(),
            tag: self.tag.as_ref().map(|(key, value)| (key.as_str(), value.as_str())),
            endpoint: None,
            cluster: self.cluster.as_deref(),
        }
    }

    /// Whether a live request is eligible.
    pub fn matches(&self, inputs: &ScopeInputs<'_>) -> bool {
        self.filter().matches(&ScopeSubject {
            model: inputs.model,
            tenant: inputs.tenant,
            tags: inputs.tags,
            endpoint: None,
            cluster: inputs.cluster,
        })
    }

    /// Whether a stored record is in the scope, exactly as its request was when live (a record
    /// has no cluster, so a scope with a cluster matches no record).
    pub fn matches_record(&self, record: &RequestRecord) -> bool {
        self.filter().matches_record(record)
    }

    /// Whether some request could match both scopes: true unless a field set in both differs
    /// (or both constrain the same tag key to different values); two model patterns differ
    /// when no model could match both ([`globs_may_overlap`]). Conservative: two different
    /// clusters are assumed disjoint, a cluster and a model are assumed to overlap.
    pub fn overlaps(&self, other: &Scope) -> bool {
        fn differ(left: &Option<String>, right: &Option<String>) -> bool {
            matches!((left, right), (Some(l), Some(r)) if l != r)
        }
        let tags_differ = matches!(
            (&self.tag, &other.tag),
            (Some((lk, lv)), Some((rk, rv))) if lk == rk && lv != rv
        );
        let models_differ = matches!(
            (&self.model, &other.model),
            (Some(left), Some(right)) if !globs_may_overlap(left, right)
        );
        !(models_differ
            || differ(&self.tenant, &other.tenant)
            || differ(&self.cluster, &other.cluster)
            || tags_differ)
    }
}

/// Splits the first `coverage × BUCKETS` buckets into contiguous ranges proportional to
/// `weights`; returns the exclusive upper bucket of each arm. Rounding is done on the cumulative
/// sums, so the ranges always tile the covered buckets exactly.
pub fn bucket_bounds(weights: &[f64], coverage: f64) -> Vec<u32> {
    let covered = (coverage.clamp(0.0, 1.0) * f64::from(BUCKETS)).round();
    let total: f64 = weights.iter().map(|w| w.max(0.0)).sum();
    let mut cumulative = 0.0;
    weights
        .iter()
        .map(|weight| {
            cumulative += weight.max(0.0);
            let share = if total > 0.0 { cumulative / total } else { 0.0 };
            (share * covered).round() as u32
        })
        .collect()
}

/// The arm index of `bucket` under `bounds` (from [`bucket_bounds`]), `None` when uncovered.
pub fn arm_of_bucket(bounds: &[u32], bucket: u32) -> Option<usize> {
    bounds.iter().position(|&upper| bucket < upper)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_published_vectors() {
        // From the FNV reference test suite (Noll): "" and "a" and "foobar".
        assert_eq!(fnv1a_32(&[b""]), 0x811c_9dc5);
        assert_eq!(fnv1a_32(&[b"a"]), 0xe40c_292c);
        assert_eq!(fnv1a_32(&[b"foobar"]), 0xbf9c_f968);
        assert_eq!(fnv1a_32(&[b"foo", b"bar"]), 0xbf9c_f968);
    }

    #[test]
    fn bounds_tile_the_covered_buckets() {
        assert_eq!(bucket_bounds(&[1.0, 1.0], 1.0), vec![5_000, 10_000]);
        assert_eq!(bucket_bounds(&[1.0, 1.0, 1.0], 1.0), vec![3_333, 6_667, 10_000]);
        assert_eq!(bucket_bounds(&[0.9, 0.1], 0.5), vec![4_500, 5_000]);
        assert_eq!(arm_of_bucket(&[4_500, 5_000], 4_499), Some(0));
        assert_eq!(arm_of_bucket(&[4_500, 5_000], 4_500), Some(1));
        assert_eq!(arm_of_bucket(&[4_500, 5_000], 5_000), None);
    }

    #[test]
    fn scopes_overlap_unless_a_field_contradicts() {
        let any = Scope::default();
        let mini = Scope { model: Some("gpt-4o-mini".into()), ..Scope::default() };
        let big = Scope { model: Some("gpt-4o".into()), ..Scope::default() };
        let search = Scope { tag: Some(("feature".into(), "search".into())), ..Scope::default() };
        let chat = Scope { tag: Some(("feature".into(), "chat".into())), ..Scope::default() };
        assert!(any.overlaps(&mini));
        assert!(!mini.overlaps(&big));
        assert!(mini.overlaps(&search));
        assert!(!search.overlaps(&chat));
        let family = Scope { model: Some("gpt-4o*".into()), ..Scope::default() };
        let other_family = Scope { model: Some("claude-*".into()), ..Scope::default() };
        assert!(family.overlaps(&mini));
        assert!(family.overlaps(&big));
        assert!(!family.overlaps(&other_family));
    }

    #[test]
    fn a_request_and_its_record_match_alike() {
        let mut record = RequestRecord::new("r1", 1_700_000_000_000, "openai", "gpt-4o-mini");
        record.tags.insert("feature".into(), "search".into());
        let inputs =
            ScopeInputs { model: "gpt-4o-mini", tenant: None, tags: &record.tags, cluster: None };
        for (scope, expected) in [
            (Scope::default(), true),
            (Scope { model: Some("gpt-4o-mini".into()), ..Scope::default() }, true),
            (Scope { model: Some("gpt-4o*".into()), ..Scope::default() }, true),
            (Scope { model: Some("gpt-4o".into()), ..Scope::default() }, false),
            (Scope { tag: Some(("feature".into(), "chat".into())), ..Scope::default() }, false),
            (Scope { tenant: Some("acme".into()), ..Scope::default() }, false),
            (Scope { cluster: Some("3".into()), ..Scope::default() }, false),
        ] {
            assert_eq!(scope.matches(&inputs), expected, "{scope:?}");
            assert_eq!(scope.matches_record(&record), expected, "{scope:?}");
        }
    }
}
