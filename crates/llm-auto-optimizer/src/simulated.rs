//! The `simulated` provider kind: the llm crate's in-process simulator (both protocols, models
//! `sim-large` and `sim-small`, realistic latency, usage and answers), for demos and for trying
//! the gateway without any provider key.

use std::sync::Arc;

use llmopt_llm::{
    Provider,
    sim::{SimConfig, SimProvider},
};

use crate::{
    config::ProviderConfig,
    error::{Error, Result},
};

pub fn build(name: &str, config: &ProviderConfig) -> Result<Arc<dyn Provider>> {
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
    Ok(Arc::new(SimProvider::new(name, settings)))
}
