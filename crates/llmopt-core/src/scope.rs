//! Which requests a scope covers. The live policy's rules and the experiments each have their
//! own stored scope type (their serde forms differ and are persisted), but both match through
//! [`ScopeFilter::matches`], against a live request or a stored [`RequestRecord`] alike, so a
//! change adopted from an experiment covers exactly the requests the experiment covered, and
//! the optimizer measures it on exactly those records.
//!
//! The semantics: every field the scope sets must match, an empty scope matches everything.
//! - `model`: a [`glob_matches`] pattern over the model the client asked for (`gpt-4o*`); a
//!   pattern without `*` is an exact name.
//! - `tenant`: equal to the request's tenant; a request without a tenant does not match.
//! - `tag`: the request carries that key with that value.
//! - `endpoint`, `cluster`: equal; a request whose endpoint or cluster is not known does not
//!   match. `cluster` is the workload the gateway discovered from the request's content; a
//!   stored record carries it as the reserved tag [`WORKLOAD_TAG`].

use crate::{
    pattern::glob_matches,
    record::{Endpoint, RequestRecord, Tags},
};

/// The tag under which a record carries the workload (cluster) id the gateway assigned it from
/// its content. Reserved: the gateway drops a client's own tag of this name.
pub const WORKLOAD_TAG: &str = "llmopt.workload";

/// The tag under which a record lists the adopted changes (their flags, comma-separated) that
/// applied to it. Reserved like [`WORKLOAD_TAG`].
pub const APPLIED_TAG: &str = "llmopt.applied";

/// The tag under which a record lists the adopted changes whose scope it was in but whose
/// holdout kept it on the policy before them. Reserved like [`WORKLOAD_TAG`].
pub const HELD_OUT_TAG: &str = "llmopt.held_out";

/// The tag of a record whose call was hedged (a second attempt was sent; its cost is in the
/// record's). Reserved like [`WORKLOAD_TAG`].
pub const HEDGED_TAG: &str = "llmopt.hedged";

/// The tag of a judge's call (the gateway grading an answer), naming the call it graded. Such
/// records are the optimizer's own cost, not traffic to optimize. Reserved like
/// [`WORKLOAD_TAG`].
pub const JUDGE_TAG: &str = "llmopt.judge";

/// Writes which adopted changes applied to a request and which held it out (nothing when both
/// are empty, so records outside every adoption carry no extra tags).
pub fn tag_adoptions(tags: &mut Tags, applied: &[String], held_out: &[String]) {
    for (key, flags) in [(APPLIED_TAG, applied), (HELD_OUT_TAG, held_out)] {
        if !flags.is_empty() {
            tags.insert(key.to_owned(), flags.join(","));
        }
    }
}

/// Where an adopted change (named by its flag) stood for a stored record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdoptionSide {
    Applied,
    HeldOut,
}

/// Whether the change named `flag` applied to `record`, held it out, or neither.
pub fn adoption_side(record: &RequestRecord, flag: &str) -> Option<AdoptionSide> {
    let lists = |key: &str| {
        record.tags.get(key).is_some_and(|value| value.split(',').any(|item| item == flag))
    };
    if lists(APPLIED_TAG) {
        Some(AdoptionSide::Applied)
    } else if lists(HELD_OUT_TAG) {
        Some(AdoptionSide::HeldOut)
    } else {
        None
    }
}

/// The constraints of a scope, borrowed from whichever scope type holds them. `None`: any.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScopeFilter<'a> {
    /// A pattern over the requested model, `*` matching any run of characters.
    pub model: Option<&'a str>,
    pub tenant: Option<&'a str>,
    /// A tag key and the value it must have.
    pub tag: Option<(&'a str, &'a str)>,
    pub endpoint: Option<Endpoint>,
    /// A workload cluster id from analytics.
    pub cluster: Option<&'a str>,
}

/// What is known of one request when a scope is matched against it.
#[derive(Debug, Clone, Copy)]
pub struct ScopeSubject<'a> {
    /// The model the client asked for (not the one that served it).
    pub model: &'a str,
    pub tenant: Option<&'a str>,
    pub tags: &'a Tags,
    /// `None`: not known to the caller.
    pub endpoint: Option<Endpoint>,
    /// `None`: not known to the caller.
    pub cluster: Option<&'a str>,
}

impl<'a> ScopeSubject<'a> {
    /// A stored record as a subject: its requested model, tenant, tags, endpoint and the
    /// workload it was assigned ([`WORKLOAD_TAG`]).
    pub fn of_record(record: &'a RequestRecord) -> ScopeSubject<'a> {
        ScopeSubject {
            model: record.requested_model.as_str(),
            tenant: record.tenant.as_ref().map(|tenant| tenant.as_str()),
            tags: &record.tags,
            endpoint: Some(record.endpoint),
            cluster: record.tags.get(WORKLOAD_TAG).map(String::as_str),
        }
    }
}

impl ScopeFilter<'_> {
    /// Whether the request is in the scope; see the module documentation.
    pub fn matches(&self, subject: &ScopeSubject<'_>) -> bool {
        self.model.is_none_or(|pattern| glob_matches(pattern, subject.model))
            && self.tenant.is_none_or(|tenant| subject.tenant == Some(tenant))
            && self.tag.is_none_or(|(key, value)| {
                subject.tags.get(key).is_some_and(|carried| carried == value)
            })
            && self.endpoint.is_none_or(|endpoint| subject.endpoint == Some(endpoint))
            && self.cluster.is_none_or(|cluster| subject.cluster == Some(cluster))
    }

    /// Whether the stored record is in the scope, as the same request would be when live.
    pub fn matches_record(&self, record: &RequestRecord) -> bool {
        self.matches(&ScopeSubject::of_record(record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> RequestRecord {
        let mut record = RequestRecord::new("r1", 1_700_000_000_000, "openai", "gpt-4o-mini");
        record.tenant = Some("acme".into());
        record.tags.insert("feature".into(), "search".into());
        record.served_model = "gpt-4o".into();
        record
    }

    #[test]
    fn every_set_field_must_match() {
        let record = record();
        let table = [
            (ScopeFilter::default(), true),
            (ScopeFilter { model: Some("gpt-4o-mini"), ..ScopeFilter::default() }, true),
            (ScopeFilter { model: Some("gpt-4o*"), ..ScopeFilter::default() }, true),
            // The requested model counts, not the served one.
            (ScopeFilter { model: Some("gpt-4o"), ..ScopeFilter::default() }, false),
            (ScopeFilter { tenant: Some("acme"), ..ScopeFilter::default() }, true),
            (ScopeFilter { tenant: Some("other"), ..ScopeFilter::default() }, false),
            (ScopeFilter { tag: Some(("feature", "search")), ..ScopeFilter::default() }, true),
            (ScopeFilter { tag: Some(("feature", "chat")), ..ScopeFilter::default() }, false),
            (ScopeFilter { tag: Some(("team", "search")), ..ScopeFilter::default() }, false),
            (
                ScopeFilter { endpoint: Some(Endpoint::ChatCompletions), ..ScopeFilter::default() },
                true,
            ),
            (ScopeFilter { endpoint: Some(Endpoint::Messages), ..ScopeFilter::default() }, false),
            // A record without a workload tag matches no cluster.
            (ScopeFilter { cluster: Some("3"), ..ScopeFilter::default() }, false),
            (
                ScopeFilter {
                    model: Some("gpt-*"),
                    tenant: Some("acme"),
                    tag: Some(("feature", "search")),
                    ..ScopeFilter::default()
                },
                true,
            ),
        ];
        for (filter, expected) in table {
            assert_eq!(filter.matches_record(&record), expected, "{filter:?}");
        }
    }

    #[test]
    fn a_live_request_matches_like_its_record() {
        let record = record();
        let live = ScopeSubject {
            model: "gpt-4o-mini",
            tenant: Some("acme"),
            tags: &record.tags,
            endpoint: Some(Endpoint::ChatCompletions),
            cluster: Some("3"),
        };
        let filter =
            ScopeFilter { model: Some("*-mini"), tenant: Some("acme"), ..ScopeFilter::default() };
        assert!(filter.matches(&live));
        assert!(filter.matches_record(&record));
        let no_tenant = ScopeSubject { tenant: None, ..live };
        assert!(!filter.matches(&no_tenant));
        assert!(ScopeFilter { cluster: Some("3"), ..ScopeFilter::default() }.matches(&live));
        // The record of that request carries its workload as the reserved tag.
        let mut tagged = record.clone();
        tagged.tags.insert(WORKLOAD_TAG.to_owned(), "3".to_owned());
        assert!(
            ScopeFilter { cluster: Some("3"), ..ScopeFilter::default() }.matches_record(&tagged)
        );
        assert!(
            !ScopeFilter { cluster: Some("4"), ..ScopeFilter::default() }.matches_record(&tagged)
        );
    }
}
