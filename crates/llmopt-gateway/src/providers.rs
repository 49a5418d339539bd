//! Configuration → `Arc<dyn Provider>`: the client for each provider kind, wrapped in the llm
//! crate's decorators (rate limit inside, retry outside, so each retry waits for capacity).
//!
//! Keys are read through the [`SecretSource`] once, into the llm crate's `SecretString`, and go
//! nowhere else. A missing key is not an error: the provider answers 401 and the client sees
//! that error, which is how the default configuration can name both real providers when the
//! operator has only one key.

use std::{collections::HashMap, num::NonZeroU32, sync::Arc, time::Duration};

use llmopt_llm::{
    Anthropic, AnthropicConfig, OpenAiCompatible, OpenAiConfig, Provider, RateLimit,
    RateLimitConfig, RateLimitMode, Retry, RetryConfig, Timeouts,
    sim::{SimConfig, SimProvider},
};

use crate::{
    config::{Config, ProviderConfig, ProviderKind},
    error::{Error, Result},
    state::SecretSource,
};

/// Builds every configured provider.
pub fn build_providers(
    config: &Config,
    secrets: &SecretSource,
) -> Result<HashMap<String, Arc<dyn Provider>>> {
    let mut providers = HashMap::new();
    for (name, provider_config) in &config.providers {
        let provider = build_provider(name, provider_config, secrets)?;
        providers.insert(name.clone(), provider);
    }
    Ok(providers)
}

/// Whether OpenAI-protocol streams ask for usage: on unless the provider turns it off.
fn include_usage(config: &ProviderConfig) -> bool {
    config.include_usage.unwrap_or(true)
}

fn timeouts(config: &ProviderConfig) -> Timeouts {
    let limit = Duration::from_millis(config.timeout_ms);
    Timeouts { connect: Duration::from_secs(5).min(limit), first_byte: limit, total: limit }
}

fn build_provider(
    name: &str,
    config: &ProviderConfig,
    secrets: &SecretSource,
) -> Result<Arc<dyn Provider>> {
    let provider_error = |message: String| Error::Provider { provider: name.to_owned(), message };
    let key = config.api_key_env.as_deref().and_then(|variable| secrets(variable));
    if config.kind != ProviderKind::Simulated
        && key.is_none()
        && let Some(variable) = &config.api_key_env
    {
        tracing::warn!(provider = name, variable = %variable, "provider key variable is unset");
    }
    let base_url = config.base_url.clone().unwrap_or_default();
    let client: Arc<dyn Provider> = match config.kind {
        ProviderKind::Openai => {
            let mut settings = OpenAiConfig::new(name, base_url)
                .with_timeouts(timeouts(config))
                .with_include_usage(include_usage(config));
            if let Some(key) = key {
                settings = settings.with_api_key(key);
            }
            Arc::new(OpenAiCompatible::new(settings).map_err(|e| provider_error(e.to_string()))?)
        }
        ProviderKind::Anthropic => {
            let settings = AnthropicConfig::new(name, base_url, key.unwrap_or_default())
                .with_timeouts(timeouts(config));
            Arc::new(Anthropic::new(settings).map_err(|e| provider_error(e.to_string()))?)
        }
        ProviderKind::Simulated => build_simulated(name, config)?,
    };
    let mut provider = client;
    if let Some(per_minute) = NonZeroU32::new(config.requests_per_minute) {
        provider = Arc::new(RateLimit::new(
            provider,
            RateLimitConfig {
                requests_per_minute: Some(per_minute),
                tokens_per_minute: None,
                mode: RateLimitMode::Wait { max_wait: Duration::from_secs(1) },
            },
        ));
    }
    if config.max_retries > 0 {
        provider = Arc::new(Retry::new(
            provider,
            RetryConfig { max_attempts: config.max_retries + 1, ..RetryConfig::default() },
        ));
    }
    Ok(provider)
}

/// The `simulated` kind: the llm crate's in-process simulator (both protocols, models
/// `sim-large` and `sim-small`, realistic latency, usage and answers), for demos and for trying
/// the gateway without any provider key.
fn build_simulated(name: &str, config: &ProviderConfig) -> Result<Arc<dyn Provider>> {
    if !config.time_scale.is_finite() || config.time_scale < 0.0 {
        return Err(Error::Provider {
            provider: name.to_owned(),
            message: format!("time_scale must be a non-negative number, got {}", config.time_scale),
        });
    }
    let defaults = SimConfig::default();
    let settings = SimConfig {
        seed: config.seed.unwrap_or(defaults.seed),
        time_scale: config.time_scale,
        ..defaults
    };
    Ok(Arc::new(SimProvider::new(name, settings).with_include_usage(include_usage(config))))
}
