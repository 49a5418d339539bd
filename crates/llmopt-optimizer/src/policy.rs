//! The live policy: what the gateway does differently for which requests.
//!
//! A [`Policy`] is an ordered list of [`Rule`]s (scope → action) plus named [`FeatureFlag`]s.
//! For each kind of action the first rule whose scope matches and whose flag lets the request
//! through wins, so a narrow rule placed before a broad one overrides it.
//!
//! [`LivePolicy`] holds the current version behind an `ArcSwap`: the gateway reads it on every
//! request without taking a lock, and a writer (the optimization cycle, an operator through the
//! API) persists a new version through the `PolicyStore` and then swaps it in at once. A restart
//! loads the last saved version.
//!
//! Rollouts are deterministic by unit: a unit (user, session or request id) falls in one of
//! 10,000 buckets by the same hash family as experiment assignment (GrowthBook's hash v2 with
//! the flag name as seed, [`llmopt_experiments::bucket`]), so the same user stays on the same side
//! of a ramp as it widens from 5 % to 50 %, and replicas agree without talking to each other.

use std::{collections::BTreeMap, sync::Arc};

use arc_swap::ArcSwap;
use llmopt_core::{
    Endpoint, PolicyDoc, PolicyStore, RequestRecord, ScopeFilter, ScopeSubject, StoreError, Tags,
};
use serde::{Deserialize, Serialize};

/// Version of the JSON schema of a stored policy body.
pub const POLICY_SCHEMA: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    pub rules: Vec<Rule>,
    #[serde(default)]
    pub flags: BTreeMap<String, FeatureFlag>,
    /// The workloads discovered from content that rules scoped by `workload` refer to (see
    /// [`crate::workloads`]): kept with the rules so both are always read together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workloads: Option<crate::workloads::DiscoveredWorkloads>,
}

/// One change for one scope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub id: String,
    #[serde(default)]
    pub scope: Scope,
    pub action: Action,
    /// The feature flag that gates this rule (on/off, rollout, conditions). No flag: always on.
    #[serde(default)]
    pub flag: Option<String>,
    /// Where the rule came from (`experiment exp-12 adopted`, `operator`), for the audit trail.
    #[serde(default)]
    pub origin: String,
}

/// Which requests a rule applies to. Every set field must match; the model is a `*` pattern
/// ([`llmopt_core::scope`] has the rules, shared with experiment scopes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// Requested model, exact or a pattern with `*` wildcards (`gpt-4o*`).
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub tenant: Option<String>,
    /// A tag key and value the request must carry.
    #[serde(default)]
    pub tag: Option<(String, String)>,
    #[serde(default)]
    pub endpoint: Option<Endpoint>,
    /// A workload the gateway discovered from the requests' content (a cluster id of the
    /// optimizer's `WorkloadModel`; ids survive re-clustering).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
}

/// What a rule changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Serve the request with another model (and optionally another provider).
    RouteModel {
        model: String,
        #[serde(default)]
        provider: Option<String>,
    },
    /// Lower `max_tokens` to at most this (a client asking for less keeps its own value).
    MaxTokensCap { max_tokens: u32 },
    /// Turn the response cache on or off.
    ResponseCache {
        enabled: bool,
        #[serde(default)]
        ttl_seconds: Option<u64>,
        /// Also cache requests with `temperature > 0`.
        #[serde(default)]
        allow_sampling: bool,
    },
    /// Total time budget for the upstream call.
    Timeout { total_ms: u64 },
    /// Send a second request if the first has not answered after this long.
    Hedge { after_ms: u64 },
    /// Mark the prompt's prefix for the provider's prompt cache (`cache_control` breakpoints
    /// after the system prompt and at the end of the conversation) with this lifetime.
    PromptCache { ttl: llmopt_experiments::PromptCacheTtl },
}

impl Action {
    fn kind(&self) -> ActionKind {
        match self {
            Action::RouteModel { .. } => ActionKind::Route,
            Action::MaxTokensCap { .. } => ActionKind::MaxTokens,
            Action::ResponseCache { .. } => ActionKind::Cache,
            Action::Timeout { .. } => ActionKind::Timeout,
            Action::Hedge { .. } => ActionKind::Hedge,
            Action::PromptCache { .. } => ActionKind::PromptCache,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum ActionKind {
    Route,
    MaxTokens,
    Cache,
    Timeout,
    Hedge,
    PromptCache,
}

/// A switch for a rule or a strategy: on/off, a deterministic rollout share and conditions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureFlag {
    pub enabled: bool,
    /// Share of units that get the change, 0 to 100.
    #[serde(default = "full_rollout")]
    pub rollout_percent: f64,
    #[serde(default)]
    pub conditions: FlagConditions,
}

fn full_rollout() -> f64 {
    100.0
}

/// Empty lists mean "any".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagConditions {
    #[serde(default)]
    pub environments: Vec<String>,
    #[serde(default)]
    pub tenants: Vec<String>,
    /// `key=value` pairs; the request must carry at least one of them.
    #[serde(default)]
    pub tags: Vec<(String, String)>,
}

/// What the gateway knows about a request when it asks the policy.
#[derive(Debug, Clone, Copy)]
pub struct RequestContext<'a> {
    pub model: &'a str,
    pub tenant: Option<&'a str>,
    pub tags: &'a Tags,
    pub endpoint: Endpoint,
    /// The unit a rollout is stable for: user or session id when the client sends one, else the
    /// request id.
    pub unit_id: &'a str,
    /// Deployment environment from configuration (`production`, `staging`, …).
    pub environment: &'a str,
    /// The workload the gateway assigned from the request's content, when discovery is on.
    pub workload: Option<&'a str>,
}

/// The policy's answer for one request. `None` fields mean "as the client asked".
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Decision {
    pub model: Option<String>,
    pub provider: Option<String>,
    pub max_tokens_cap: Option<u32>,
    pub cache: Option<CacheDecision>,
    pub timeout_ms: Option<u64>,
    pub hedge_after_ms: Option<u64>,
    pub prompt_cache: Option<llmopt_experiments::PromptCacheTtl>,
    /// Ids of the rules that applied, in rule order.
    pub applied_rules: Vec<String>,
    /// Flags of the rules that applied (each once): the adoptions this request is treated by.
    pub applied_flags: Vec<String>,
    /// Flags whose rule matched the request but whose rollout left its unit out (and no other
    /// rule of the same kind applied): the request is in that change's holdout, the comparison
    /// an adoption's saving and guardrails are measured against.
    pub held_out: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CacheDecision {
    pub enabled: bool,
    pub ttl_seconds: Option<u64>,
    pub allow_sampling: bool,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    #[error("invalid policy: {0}")]
    Invalid(String),
    #[error("policy store: {0}")]
    Store(#[from] StoreError),
    #[error("stored policy cannot be read: {0}")]
    Decode(String),
}

/// The bucket (0..10,000) a unit falls in for a flag: the experiments' assignment hash with
/// the flag name in place of the experiment id.
pub fn rollout_bucket(flag: &str, unit_id: &str) -> u32 {
    llmopt_experiments::bucket(flag, unit_id)
}

impl Scope {
    /// The scope's constraints in the form every scope matches through (see
    /// [`llmopt_core::scope`]: the model is a `*` pattern, every set field must match).
    pub fn filter(&self) -> ScopeFilter<'_> {
        ScopeFilter {
            model: self.model.as_deref(),
            tenant: self.tenant.as_deref(),
            tag: self.tag.as_ref().map(|(key, value)| (key.as_str(), value.as_str())),
            endpoint: self.endpoint,
            cluster: self.workload.as_deref(),
        }
    }

    /// Whether a live request is in the scope.
    pub fn matches(&self, request: &RequestContext<'_>) -> bool {
        self.filter().matches(&ScopeSubject {
            model: request.model,
            tenant: request.tenant,
            tags: request.tags,
            endpoint: Some(request.endpoint),
            cluster: request.workload,
        })
    }

    /// Whether a stored record is in the scope, exactly as its request was when live.
    pub fn matches_record(&self, record: &RequestRecord) -> bool {
        self.filter().matches_record(record)
    }
}

/// What a flag says for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The request gets the change.
    Admitted,
    /// The flag is on and its conditions hold, but the unit's bucket lies outside the rollout.
    HeldOut,
    /// The flag is off or its conditions do not hold.
    Excluded,
}

impl FeatureFlag {
    /// Whether a request gets the flagged change.
    pub fn admits(&self, name: &str, request: &RequestContext<'_>) -> bool {
        self.admission(name, request) == Admission::Admitted
    }

    /// Whether a request gets the flagged change, and if not, why.
    pub fn admission(&self, name: &str, request: &RequestContext<'_>) -> Admission {
        if !self.enabled {
            return Admission::Excluded;
        }
        let conditions = &self.conditions;
        let environment_ok = conditions.environments.is_empty()
            || conditions.environments.iter().any(|e| e == request.environment);
        let tenant_ok = conditions.tenants.is_empty()
            || request.tenant.is_some_and(|t| conditions.tenants.iter().any(|c| c == t));
        let tag_ok = conditions.tags.is_empty()
            || conditions.tags.iter().any(|(k, v)| request.tags.get(k) == Some(v));
        if !(environment_ok && tenant_ok && tag_ok) {
            return Admission::Excluded;
        }
        let threshold = (self.rollout_percent * 100.0).round() as u32;
        if rollout_bucket(name, request.unit_id) < threshold {
            Admission::Admitted
        } else {
            Admission::HeldOut
        }
    }
}

impl Policy {
    /// Checks what serde cannot: unique rule ids, known flags, sane numbers.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let mut ids = std::collections::HashSet::new();
        for rule in &self.rules {
            if rule.id.is_empty() || !ids.insert(rule.id.as_str()) {
                return Err(PolicyError::Invalid(format!(
                    "rule id `{}` is empty or repeated",
                    rule.id
                )));
            }
            if let Some(flag) = &rule.flag
                && !self.flags.contains_key(flag)
            {
                return Err(PolicyError::Invalid(format!(
                    "rule `{}` names flag `{flag}`, which is not defined",
                    rule.id
                )));
            }
            match &rule.action {
                Action::RouteModel { model, .. } if model.is_empty() => {
                    return Err(PolicyError::Invalid(format!("rule `{}`: empty model", rule.id)));
                }
                Action::MaxTokensCap { max_tokens: 0 } => {
                    return Err(PolicyError::Invalid(format!(
                        "rule `{}`: max_tokens cap of 0",
                        rule.id
                    )));
                }
                Action::Timeout { total_ms: 0 } | Action::Hedge { after_ms: 0 } => {
                    return Err(PolicyError::Invalid(format!("rule `{}`: zero duration", rule.id)));
                }
                _ => {}
            }
        }
        for (name, flag) in &self.flags {
            if !(0.0..=100.0).contains(&flag.rollout_percent) {
                return Err(PolicyError::Invalid(format!(
                    "flag `{name}`: rollout_percent must be within 0..=100, got {}",
                    flag.rollout_percent
                )));
            }
        }
        Ok(())
    }

    /// What to do with one request.
    pub fn decide(&self, request: &RequestContext<'_>) -> Decision {
        let mut decision = Decision::default();
        let mut decided: Vec<ActionKind> = Vec::with_capacity(6);
        for rule in &self.rules {
            let kind = rule.action.kind();
            if decided.contains(&kind) || !rule.scope.matches(request) {
                continue;
            }
            if let Some(flag_name) = &rule.flag {
                // A rule whose flag is missing stays off: fail closed.
                let admission = self
                    .flags
                    .get(flag_name)
                    .map_or(Admission::Excluded, |flag| flag.admission(flag_name, request));
                match admission {
                    Admission::Admitted => {
                        if !decision.applied_flags.contains(flag_name) {
                            decision.applied_flags.push(flag_name.clone());
                        }
                    }
                    Admission::HeldOut => {
                        if !decision.held_out.contains(flag_name) {
                            decision.held_out.push(flag_name.clone());
                        }
                        continue;
                    }
                    Admission::Excluded => continue,
                }
            }
            decided.push(kind);
            decision.applied_rules.push(rule.id.clone());
            match &rule.action {
                Action::RouteModel { model, provider } => {
                    decision.model = Some(model.clone());
                    decision.provider = provider.clone();
                }
                Action::MaxTokensCap { max_tokens } => decision.max_tokens_cap = Some(*max_tokens),
                Action::ResponseCache { enabled, ttl_seconds, allow_sampling } => {
                    decision.cache = Some(CacheDecision {
                        enabled: *enabled,
                        ttl_seconds: *ttl_seconds,
                        allow_sampling: *allow_sampling,
                    });
                }
                Action::Timeout { total_ms } => decision.timeout_ms = Some(*total_ms),
                Action::Hedge { after_ms } => decision.hedge_after_ms = Some(*after_ms),
                Action::PromptCache { ttl } => decision.prompt_cache = Some(*ttl),
            }
        }
        decision
    }
}

/// A stored policy body: the schema version beside the policy.
#[derive(Debug, Serialize, Deserialize)]
struct StoredPolicy {
    schema: u32,
    policy: Policy,
}

/// The current policy, readable without locks, persisted on every change.
#[derive(Debug)]
pub struct LivePolicy {
    current: ArcSwap<Versioned>,
    store: Arc<dyn PolicyStore>,
    /// Serialises writers so versions stay strictly increasing; readers never take it.
    write_lock: std::sync::Mutex<()>,
}

/// A policy with its version number.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned {
    pub version: u64,
    pub policy: Policy,
}

impl LivePolicy {
    /// Loads the last saved policy, or starts from `initial` (version 0, not saved) when none was.
    pub fn load(store: Arc<dyn PolicyStore>, initial: Policy) -> Result<LivePolicy, PolicyError> {
        let current = match store.load()? {
            Some(doc) => {
                let stored: StoredPolicy = serde_json::from_value(doc.body)
                    .map_err(|e| PolicyError::Decode(e.to_string()))?;
                if stored.schema > POLICY_SCHEMA {
                    return Err(PolicyError::Decode(format!(
                        "policy schema {} is newer than this version understands ({POLICY_SCHEMA})",
                        stored.schema
                    )));
                }
                Versioned { version: doc.version, policy: stored.policy }
            }
            None => {
                initial.validate()?;
                Versioned { version: 0, policy: initial }
            }
        };
        Ok(LivePolicy {
            current: ArcSwap::from_pointee(current),
            store,
            write_lock: std::sync::Mutex::new(()),
        })
    }

    /// Takes in a newer version another process saved to the shared store (replicas on
    /// PostgreSQL poll this). Returns the version now in force when it changed, `None` when the
    /// store holds nothing newer.
    pub fn refresh(&self) -> Result<Option<u64>, PolicyError> {
        // The version first (cheap on PostgreSQL); the document only when it changed.
        if self.store.current_version()? <= self.current.load().version {
            return Ok(None);
        }
        let Some(doc) = self.store.load()? else { return Ok(None) };
        if doc.version <= self.current.load().version {
            return Ok(None);
        }
        let stored: StoredPolicy =
            serde_json::from_value(doc.body).map_err(|e| PolicyError::Decode(e.to_string()))?;
        if stored.schema > POLICY_SCHEMA {
            return Err(PolicyError::Decode(format!(
                "policy schema {} is newer than this version understands ({POLICY_SCHEMA})",
                stored.schema
            )));
        }
        // Under the writer lock, so that a concurrent local write and this swap cannot
        // interleave; the version check is repeated inside it.
        let _writer = self.write_lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if doc.version <= self.current.load().version {
            return Ok(None);
        }
        self.current.store(Arc::new(Versioned { version: doc.version, policy: stored.policy }));
        Ok(Some(doc.version))
    }

    /// The policy in force. Lock-free; cheap enough for every request.
    pub fn current(&self) -> Arc<Versioned> {
        self.current.load_full()
    }

    /// Decides for one request against the policy in force.
    pub fn decide(&self, request: &RequestContext<'_>) -> Decision {
        self.current.load().policy.decide(request)
    }

    /// Validates, persists and swaps in a new policy; returns its version. On any error the
    /// policy in force stays as it was.
    pub fn replace(&self, policy: Policy, reason: &str, now_ms: i64) -> Result<u64, PolicyError> {
        policy.validate()?;
        let _writer = self.write_lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let version = self.current.load().version + 1;
        let body =
            serde_json::to_value(StoredPolicy { schema: POLICY_SCHEMA, policy: policy.clone() })
                .map_err(|e| PolicyError::Decode(e.to_string()))?;
        self.store.save(&PolicyDoc {
            version,
            updated_ms: now_ms,
            reason: reason.to_owned(),
            body,
        })?;
        self.current.store(Arc::new(Versioned { version, policy }));
        Ok(version)
    }

    /// Applies `change` to a copy of the policy in force and replaces it.
    pub fn update(
        &self,
        reason: &str,
        now_ms: i64,
        change: impl FnOnce(&mut Policy),
    ) -> Result<u64, PolicyError> {
        let mut next = self.current.load().policy.clone();
        change(&mut next);
        self.replace(next, reason, now_ms)
    }
}
