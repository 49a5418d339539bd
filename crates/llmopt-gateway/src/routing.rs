//! Which provider answers which model: the configuration's part of the decision per request.
//!
//! [`RouteTable`] is built from configuration: aliases, then the best-matching route (exact id,
//! else the glob with the most literal characters, else the first route name), then its fallback
//! chain. Its [`RouteDecision`] (candidates, `max_tokens` cap, cache on or off, timeout) is what
//! the configuration alone implies; the optimizer's live policy
//! ([`crate::overlay::OptimizerOverlay`]) then adjusts it (model substitution, caps, cache,
//! timeout, experiment arm). `AppState::decide` composes the two.

use std::time::Duration;

use llmopt_core::{ExperimentArm, PriceCatalog, Tags, glob_matches, usage::Protocol};

use crate::config::Config;

/// One provider/model pair to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub provider: String,
    pub model: String,
}

/// What the policy decided for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteDecision {
    /// The primary candidate first, then fallbacks in order.
    pub candidates: Vec<Candidate>,
    pub max_tokens_cap: Option<u32>,
    pub cache: bool,
    /// How long an answer stored now may be served (`None`: `cache.ttl_s`).
    pub cache_ttl: Option<Duration>,
    /// Cache requests that ask for sampling (`temperature` absent or above 0) too.
    pub cache_sampled: bool,
    /// `None`: the provider's own timeout.
    pub timeout: Option<Duration>,
    /// Send a second attempt of a whole (non-streamed) call when the first has not answered
    /// after this long.
    pub hedge_after: Option<Duration>,
    /// Insert prompt-cache breakpoints with this lifetime (Anthropic protocol).
    pub prompt_cache: Option<llmopt_experiments::PromptCacheTtl>,
    pub experiment: Option<ExperimentArm>,
    /// The adopted changes (their flags) that applied, and those whose holdout kept this
    /// request out: written into its record so each change is measured against its holdout.
    pub applied_flags: Vec<String>,
    pub held_out: Vec<String>,
}

/// What a policy may look at.
#[derive(Debug, Clone, Copy)]
pub struct RouteInput<'a> {
    pub protocol: Protocol,
    pub model: &'a str,
    pub tenant: Option<&'a str>,
    pub tags: &'a Tags,
    pub request_id: &'a str,
    /// The workload discovered from the request's content, if any.
    pub workload: Option<&'a str>,
}

#[derive(Debug, Clone)]
struct CompiledRoute {
    name: String,
    patterns: Vec<String>,
    provider: String,
    fallbacks: Vec<(String, Option<String>)>,
    cache: Option<bool>,
    max_tokens_cap: Option<u32>,
    timeout: Option<Duration>,
}

/// Routes compiled from configuration.
#[derive(Debug, Clone)]
pub struct RouteTable {
    aliases: Vec<(String, String)>,
    routes: Vec<CompiledRoute>,
    cache_default: bool,
}

impl RouteTable {
    pub fn from_config(config: &Config) -> RouteTable {
        let routes = config
            .routes
            .iter()
            .map(|(name, route)| CompiledRoute {
                name: name.clone(),
                patterns: route.models.clone(),
                provider: route.provider.clone(),
                fallbacks: route
                    .fallbacks
                    .iter()
                    .map(|f| (f.provider.clone(), f.model.clone()))
                    .collect(),
                cache: route.cache,
                max_tokens_cap: route.max_tokens_cap,
                timeout: route.timeout_ms.map(Duration::from_millis),
            })
            .collect();
        RouteTable {
            aliases: config.aliases.iter().map(|(a, t)| (a.clone(), t.clone())).collect(),
            routes,
            cache_default: config.cache.enabled,
        }
    }

    /// The model an alias stands for (or the model itself).
    pub fn resolve_alias<'a>(&'a self, model: &'a str) -> &'a str {
        self.aliases.iter().find(|(alias, _)| alias == model).map_or(model, |(_, t)| t.as_str())
    }

    /// The route serving `model` (after alias resolution) and its name.
    fn route_for(&self, model: &str) -> Option<&CompiledRoute> {
        // Score: exact match beats any glob; among globs more literal characters win; ties go
        // to the route whose name sorts first (routes are in name order).
        let mut best: Option<(usize, &CompiledRoute)> = None;
        for route in &self.routes {
            for pattern in &route.patterns {
                let score = if pattern == model {
                    usize::MAX
                } else if glob_matches(pattern, model) {
                    pattern.chars().filter(|c| *c != '*').count()
                } else {
                    continue;
                };
                if best.is_none_or(|(best_score, _)| score > best_score) {
                    best = Some((score, route));
                }
            }
        }
        best.map(|(_, route)| route)
    }

    /// The models the routes serve, with the provider serving each: every exact id of a
    /// route, every model of `catalog` that a glob route serves, and every alias whose model is
    /// served. Sorted by id, each once.
    pub fn served_models(&self, catalog: &PriceCatalog) -> Vec<(String, String)> {
        let mut served = std::collections::BTreeMap::new();
        for route in &self.routes {
            for pattern in &route.patterns {
                let ids: Vec<&str> = if pattern.contains('*') {
                    catalog
                        .models()
                        .map(|price| price.id.as_str())
                        .filter(|id| glob_matches(pattern, id))
                        .collect()
                } else {
                    vec![pattern.as_str()]
                };
                for id in ids {
                    if self.route_for(id).is_some_and(|serving| serving.name == route.name) {
                        served.insert(id.to_owned(), route.provider.clone());
                    }
                }
            }
        }
        for (alias, target) in &self.aliases {
            if let Some(route) = self.route_for(target) {
                served.insert(alias.clone(), route.provider.clone());
            }
        }
        served.into_iter().collect()
    }

    /// Name of the route serving `model`, for diagnostics.
    pub fn route_name(&self, model: &str) -> Option<&str> {
        self.route_for(self.resolve_alias(model)).map(|r| r.name.as_str())
    }

    /// The configuration's decision; `None` when no route serves the model. Cheap and
    /// non-blocking: it runs on every call.
    pub fn decide(&self, input: &RouteInput<'_>) -> Option<RouteDecision> {
        let model = self.resolve_alias(input.model);
        let route = self.route_for(model)?;
        let mut candidates =
            vec![Candidate { provider: route.provider.clone(), model: model.to_owned() }];
        for (provider, fallback_model) in &route.fallbacks {
            candidates.push(Candidate {
                provider: provider.clone(),
                model: fallback_model.clone().unwrap_or_else(|| model.to_owned()),
            });
        }
        Some(RouteDecision {
            candidates,
            max_tokens_cap: route.max_tokens_cap,
            cache: route.cache.unwrap_or(self.cache_default),
            cache_ttl: None,
            cache_sampled: false,
            timeout: route.timeout,
            hedge_after: None,
            prompt_cache: None,
            experiment: None,
            applied_flags: Vec::new(),
            held_out: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DEFAULT_CONFIG_TOML, from_toml_str};

    fn decide(table: &RouteTable, model: &str) -> Option<RouteDecision> {
        let tags = Tags::new();
        table.decide(&RouteInput {
            protocol: Protocol::OpenAi,
            model,
            tenant: None,
            tags: &tags,
            request_id: "r",
            workload: None,
        })
    }

    #[test]
    fn default_routes_send_models_to_their_provider() {
        let table = RouteTable::from_config(&from_toml_str(DEFAULT_CONFIG_TOML).unwrap());
        for (model, provider) in [
            ("gpt-4o-mini", "openai"),
            ("o1", "openai"),
            ("o3-mini", "openai"),
            ("o4-mini", "openai"),
            ("claude-sonnet-4-5", "anthropic"),
        ] {
            assert_eq!(decide(&table, model).unwrap().candidates[0].provider, provider, "{model}");
        }
        assert!(decide(&table, "llama-3").is_none());
    }

    #[test]
    fn exact_and_longer_patterns_win_and_aliases_resolve() {
        let config = from_toml_str(
            r#"
            [providers.a]
            kind = "openai"
            base_url = "http://a"
            [providers.b]
            kind = "openai"
            base_url = "http://b"
            [aliases]
            fast = "gpt-4o-mini"
            [routes.broad]
            models = ["gpt-*"]
            provider = "a"
            [routes.narrow]
            models = ["gpt-4o*"]
            provider = "b"
            fallbacks = [{ provider = "a", model = "gpt-4.1-nano" }]
            max_tokens_cap = 100
            cache = true
            [routes.exact]
            models = ["gpt-4o-mini"]
            provider = "a"
            "#,
        )
        .unwrap();
        let table = RouteTable::from_config(&config);
        let narrow = decide(&table, "gpt-4o").unwrap();
        assert_eq!(
            narrow.candidates,
            vec![
                Candidate { provider: "b".into(), model: "gpt-4o".into() },
                Candidate { provider: "a".into(), model: "gpt-4.1-nano".into() },
            ]
        );
        assert_eq!(narrow.max_tokens_cap, Some(100));
        assert!(narrow.cache);
        let exact = decide(&table, "fast").unwrap();
        assert_eq!(
            exact.candidates[0],
            Candidate { provider: "a".into(), model: "gpt-4o-mini".into() }
        );
        assert!(!exact.cache);
        assert_eq!(decide(&table, "gpt-5").unwrap().candidates[0].provider, "a");
    }
}
