//! The price catalog and exact cost of a call.
//!
//! Prices are held as integer picodollars per token ([`Money`] per token). The catalog loads
//! from `config/pricing.toml` (USD per million tokens, the way providers publish them) and can
//! import a LiteLLM price map (USD per token), which many teams already maintain.
//!
//! Cost of a call = uncached input × input + cache reads × cache_read + 5-minute writes ×
//! cache_write_5m + 1-hour writes × cache_write_1h + output (reasoning included) × output, each
//! part at its own price, optionally at the batch discount, and at the long-context tier when the
//! call's total input exceeds the tier's threshold.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{money::Money, usage::Usage};

/// The catalog shipped with the binary (`config/pricing.toml`).
pub const BUILTIN_PRICING_TOML: &str = include_str!("../../../config/pricing.toml");

/// Prices of one tier, in picodollars per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierPrices {
    pub input: Money,
    pub output: Money,
    pub cache_read: Money,
    pub cache_write_5m: Money,
    pub cache_write_1h: Money,
}

/// Prices of one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelPrice {
    pub id: String,
    pub provider: String,
    pub base: TierPrices,
    /// Fraction off every part under the batch API, in parts per million (500_000 = half).
    pub batch_discount_ppm: u32,
    pub long_context: Option<(u64, TierPrices)>,
    pub aliases: Vec<String>,
}

/// What a call cost, part by part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CostBreakdown {
    pub uncached_input: Money,
    pub cache_read: Money,
    pub cache_write_5m: Money,
    pub cache_write_1h: Money,
    pub output: Money,
    pub total: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    #[error("unknown model `{model}`{}", suggestion_text(.suggestions))]
    UnknownModel { model: String, suggestions: Vec<String> },
    #[error("invalid price catalog: {0}")]
    InvalidCatalog(String),
}

fn suggestion_text(suggestions: &[String]) -> String {
    if suggestions.is_empty() {
        String::new()
    } else {
        format!("; closest known: {}", suggestions.join(", "))
    }
}

/// All known models and their aliases.
#[derive(Debug, Clone, Default)]
pub struct PriceCatalog {
    models: BTreeMap<String, ModelPrice>,
    /// alias (lowercase) → canonical id
    aliases: HashMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlCatalog {
    #[serde(default)]
    models: BTreeMap<String, TomlModel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlModel {
    provider: String,
    input: f64,
    output: f64,
    cache_read: Option<f64>,
    cache_write_5m: Option<f64>,
    cache_write_1h: Option<f64>,
    #[serde(default)]
    batch_discount: f64,
    #[serde(default)]
    aliases: Vec<String>,
    long_context: Option<TomlTier>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlTier {
    threshold: u64,
    input: f64,
    output: f64,
    cache_read: Option<f64>,
    cache_write_5m: Option<f64>,
    cache_write_1h: Option<f64>,
}

/// USD per million tokens → picodollars per token, exact for up to six decimals.
fn per_million(id: &str, field: &str, usd_per_million: f64) -> Result<Money, PricingError> {
    if !usd_per_million.is_finite() || usd_per_million < 0.0 {
        return Err(PricingError::InvalidCatalog(format!(
            "model `{id}`: `{field}` must be a non-negative number, got {usd_per_million}"
        )));
    }
    Ok(Money((usd_per_million * 1e6).round() as i128))
}

fn tier(
    id: &str,
    input: f64,
    output: f64,
    cache_read: Option<f64>,
    cache_write_5m: Option<f64>,
    cache_write_1h: Option<f64>,
) -> Result<TierPrices, PricingError> {
    let input = per_million(id, "input", input)?;
    let output = per_million(id, "output", output)?;
    let cache_read = cache_read.map(|p| per_million(id, "cache_read", p)).transpose()?;
    let write_5m = cache_write_5m.map(|p| per_million(id, "cache_write_5m", p)).transpose()?;
    let write_1h = cache_write_1h.map(|p| per_million(id, "cache_write_1h", p)).transpose()?;
    let write_5m = write_5m.unwrap_or(input);
    Ok(TierPrices {
        input,
        output,
        cache_read: cache_read.unwrap_or(input),
        cache_write_5m: write_5m,
        cache_write_1h: write_1h.unwrap_or(write_5m),
    })
}

impl PriceCatalog {
    /// The catalog shipped in `config/pricing.toml`.
    pub fn builtin() -> PriceCatalog {
        // The shipped file is checked by tests; a failure here is a build defect.
        PriceCatalog::from_toml_str(BUILTIN_PRICING_TOML).unwrap_or_default()
    }

    /// Parses a catalog in the `pricing.toml` format.
    pub fn from_toml_str(text: &str) -> Result<PriceCatalog, PricingError> {
        let parsed: TomlCatalog =
            toml::from_str(text).map_err(|e| PricingError::InvalidCatalog(e.to_string()))?;
        let mut catalog = PriceCatalog::default();
        for (id, model) in parsed.models {
            if !(0.0..=1.0).contains(&model.batch_discount) {
                return Err(PricingError::InvalidCatalog(format!(
                    "model `{id}`: batch_discount must be between 0 and 1"
                )));
            }
            let base = tier(
                &id,
                model.input,
                model.output,
                model.cache_read,
                model.cache_write_5m,
                model.cache_write_1h,
            )?;
            let long_context = model
                .long_context
                .map(|t| {
                    tier(&id, t.input, t.output, t.cache_read, t.cache_write_5m, t.cache_write_1h)
                        .map(|prices| (t.threshold, prices))
                })
                .transpose()?;
            catalog.insert(ModelPrice {
                id: id.clone(),
                provider: model.provider,
                base,
                batch_discount_ppm: (model.batch_discount * 1e6).round() as u32,
                long_context,
                aliases: model.aliases,
            })?;
        }
        Ok(catalog)
    }

    /// Imports a LiteLLM price map (`model_prices_and_context_window.json`): USD per token for
    /// input, output, cache read, cache creation (5 minutes) and cache creation above one hour,
    /// batch prices, and `_above_200k_tokens` tiers. Entries without per-token input and output
    /// prices (images, audio, embeddings priced otherwise) are skipped and counted.
    pub fn from_litellm_json(text: &str) -> Result<(PriceCatalog, LiteLlmImport), PricingError> {
        let map: serde_json::Map<String, Value> = serde_json::from_str(text)
            .map_err(|e| PricingError::InvalidCatalog(format!("LiteLLM map: {e}")))?;
        let mut catalog = PriceCatalog::default();
        let mut report = LiteLlmImport::default();
        for (id, entry) in &map {
            if id == "sample_spec" {
                continue;
            }
            let price = |field: &str| entry.get(field).and_then(Value::as_f64);
            let (Some(input), Some(output)) =
                (price("input_cost_per_token"), price("output_cost_per_token"))
            else {
                report.skipped += 1;
                continue;
            };
            let to_money = |usd: f64| Money::from_usd_f64(usd).filter(|m| m.0 >= 0);
            let (Some(input_m), Some(output_m)) = (to_money(input), to_money(output)) else {
                report.skipped += 1;
                continue;
            };
            let cache_read = price("cache_read_input_token_cost").and_then(to_money);
            let write_5m = price("cache_creation_input_token_cost").and_then(to_money);
            let write_1h = price("cache_creation_input_token_cost_above_1hr").and_then(to_money);
            let write_5m = write_5m.unwrap_or(input_m);
            let base = TierPrices {
                input: input_m,
                output: output_m,
                cache_read: cache_read.unwrap_or(input_m),
                cache_write_5m: write_5m,
                cache_write_1h: write_1h.unwrap_or(write_5m),
            };
            let batch_discount_ppm = match price("input_cost_per_token_batches").and_then(to_money)
            {
                Some(batch) if input_m.0 > 0 && batch.0 <= input_m.0 => {
                    (1_000_000 - batch.0 * 1_000_000 / input_m.0) as u32
                }
                _ => 0,
            };
            let long_context = match (
                price("input_cost_per_token_above_200k_tokens").and_then(to_money),
                price("output_cost_per_token_above_200k_tokens").and_then(to_money),
            ) {
                (Some(li), Some(lo)) => {
                    let lr = price("cache_read_input_token_cost_above_200k_tokens")
                        .and_then(to_money)
                        .unwrap_or(li);
                    let lw = price("cache_creation_input_token_cost_above_200k_tokens")
                        .and_then(to_money)
                        .unwrap_or(li);
                    Some((
                        200_000,
                        TierPrices {
                            input: li,
                            output: lo,
                            cache_read: lr,
                            cache_write_5m: lw,
                            cache_write_1h: lw,
                        },
                    ))
                }
                _ => None,
            };
            let provider =
                entry.get("litellm_provider").and_then(Value::as_str).unwrap_or("").to_owned();
            catalog.insert(ModelPrice {
                id: id.clone(),
                provider,
                base,
                batch_discount_ppm,
                long_context,
                aliases: Vec::new(),
            })?;
            report.imported += 1;
        }
        Ok((catalog, report))
    }

    fn insert(&mut self, model: ModelPrice) -> Result<(), PricingError> {
        let id = model.id.clone();
        for alias in &model.aliases {
            let key = alias.to_ascii_lowercase();
            if let Some(other) = self.aliases.get(&key)
                && other != &id
            {
                return Err(PricingError::InvalidCatalog(format!(
                    "alias `{alias}` names both `{other}` and `{id}`"
                )));
            }
            self.aliases.insert(key, id.clone());
        }
        self.models.insert(id, model);
        Ok(())
    }

    /// Adds every model of `other`, replacing models with the same id (user overrides win).
    pub fn merge(&mut self, other: PriceCatalog) -> Result<(), PricingError> {
        for model in other.models.into_values() {
            self.insert(model)?;
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.models.len()
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    pub fn models(&self) -> impl Iterator<Item = &ModelPrice> {
        self.models.values()
    }

    /// Finds a model by id, alias, dated snapshot id, `-latest` id or provider-prefixed id.
    pub fn resolve(&self, model: &str) -> Result<&ModelPrice, PricingError> {
        for candidate in candidates(model) {
            if let Some(found) = self.models.get(&candidate) {
                return Ok(found);
            }
            if let Some(found) = self.aliases.get(&candidate).and_then(|id| self.models.get(id)) {
                return Ok(found);
            }
        }
        Err(PricingError::UnknownModel {
            model: model.to_owned(),
            suggestions: self.closest(model, 3),
        })
    }

    /// The `n` known ids closest to `model` (Jaro–Winkler similarity).
    pub fn closest(&self, model: &str, n: usize) -> Vec<String> {
        let needle = model.to_ascii_lowercase();
        let mut scored: Vec<(f64, &String)> = self
            .models
            .keys()
            .map(|id| (strsim::jaro_winkler(&needle, &id.to_ascii_lowercase()), id))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        scored.into_iter().take(n).map(|(_, id)| id.clone()).collect()
    }

    /// The exact cost of a call.
    pub fn cost(&self, model: &str, usage: &Usage) -> Result<CostBreakdown, PricingError> {
        Ok(self.resolve(model)?.cost(usage, false))
    }

    /// The exact cost of a call made through the provider's batch API.
    pub fn batch_cost(&self, model: &str, usage: &Usage) -> Result<CostBreakdown, PricingError> {
        Ok(self.resolve(model)?.cost(usage, true))
    }
}

impl ModelPrice {
    /// Prices that apply to a call with this usage (the long-context tier when over threshold).
    pub fn tier_for(&self, usage: &Usage) -> &TierPrices {
        match &self.long_context {
            Some((threshold, prices)) if usage.input_tokens > *threshold => prices,
            _ => &self.base,
        }
    }

    pub fn cost(&self, usage: &Usage, batch: bool) -> CostBreakdown {
        let prices = self.tier_for(usage);
        let discount = |price: Money| {
            if batch && self.batch_discount_ppm > 0 {
                // Exact for every published price (multiples of 1/100 000 of a cent).
                Money(price.0 * i128::from(1_000_000 - self.batch_discount_ppm) / 1_000_000)
            } else {
                price
            }
        };
        let uncached_input = discount(prices.input) * usage.uncached_input_tokens();
        let cache_read = discount(prices.cache_read) * usage.cache_read_tokens;
        let cache_write_5m = discount(prices.cache_write_5m) * usage.cache_write_5m_tokens;
        let cache_write_1h = discount(prices.cache_write_1h) * usage.cache_write_1h_tokens;
        let output = discount(prices.output) * usage.output_tokens;
        CostBreakdown {
            uncached_input,
            cache_read,
            cache_write_5m,
            cache_write_1h,
            output,
            total: uncached_input + cache_read + cache_write_5m + cache_write_1h + output,
        }
    }
}

/// Summary of a LiteLLM import.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LiteLlmImport {
    pub imported: usize,
    pub skipped: usize,
}

/// Ids to try for a requested model, most specific first.
fn candidates(model: &str) -> Vec<String> {
    let mut out = Vec::with_capacity(6);
    let lower = model.trim().to_ascii_lowercase();
    out.push(lower.clone());
    let unprefixed = match lower.rsplit_once('/') {
        Some((_, rest)) => rest.to_owned(),
        None => lower.clone(),
    };
    if unprefixed != lower {
        out.push(unprefixed.clone());
    }
    let mut stripped = unprefixed.clone();
    if let Some(rest) = stripped.strip_suffix("-latest") {
        stripped = rest.to_owned();
    }
    stripped = strip_date_suffix(&stripped);
    if stripped != unprefixed {
        out.push(stripped);
    }
    out
}

/// Removes `-YYYYMMDD`, `@YYYYMMDD` or `-YYYY-MM-DD` from the end of an id.
fn strip_date_suffix(id: &str) -> String {
    let bytes = id.as_bytes();
    let digits = |range: std::ops::Range<usize>| bytes[range].iter().all(u8::is_ascii_digit);
    let n = bytes.len();
    if n > 9 && matches!(bytes[n - 9], b'-' | b'@') && digits(n - 8..n) {
        return id[..n - 9].to_owned();
    }
    if n > 11
        && bytes[n - 11] == b'-'
        && digits(n - 10..n - 6)
        && bytes[n - 6] == b'-'
        && digits(n - 5..n - 3)
        && bytes[n - 3] == b'-'
        && digits(n - 2..n)
    {
        return id[..n - 11].to_owned();
    }
    id.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dated_and_prefixed_ids_resolve() {
        let catalog = PriceCatalog::builtin();
        assert!(catalog.len() >= 20);
        for id in [
            "claude-sonnet-4-5",
            "claude-sonnet-4-5-20250929",
            "anthropic/claude-sonnet-4-5",
            "claude-sonnet-4-5@20250929",
        ] {
            assert_eq!(catalog.resolve(id).map(|m| m.id.as_str()), Ok("claude-sonnet-4-5"), "{id}");
        }
        assert_eq!(catalog.resolve("gpt-4o-2024-08-06").map(|m| m.id.as_str()), Ok("gpt-4o"));
        assert_eq!(catalog.resolve("GPT-4o-mini").map(|m| m.id.as_str()), Ok("gpt-4o-mini"));
        assert_eq!(
            catalog.resolve("claude-3-5-haiku-latest").map(|m| m.id.as_str()),
            Ok("claude-3-5-haiku")
        );
    }

    #[test]
    fn unknown_models_name_the_closest_ids() {
        let catalog = PriceCatalog::builtin();
        let Err(PricingError::UnknownModel { model, suggestions }) = catalog.resolve("gpt-4o-mni")
        else {
            panic!("expected an unknown-model error");
        };
        assert_eq!(model, "gpt-4o-mni");
        assert_eq!(suggestions.first().map(String::as_str), Some("gpt-4o-mini"));
        let message = catalog.resolve("gpt-4o-mni").unwrap_err().to_string();
        assert!(message.contains("closest known: gpt-4o-mini"), "{message}");
    }

    #[test]
    fn bad_catalogs_are_refused_with_the_reason() {
        let negative = "[models.x]\nprovider='p'\ninput=-1.0\noutput=1.0\n";
        assert!(
            PriceCatalog::from_toml_str(negative).unwrap_err().to_string().contains("non-negative")
        );
        let unknown_key = "[models.x]\nprovider='p'\ninput=1.0\noutput=1.0\ncolour=1\n";
        assert!(
            PriceCatalog::from_toml_str(unknown_key).unwrap_err().to_string().contains("colour")
        );
        let nan = "[models.x]\nprovider='p'\ninput=nan\noutput=1.0\n";
        assert!(PriceCatalog::from_toml_str(nan).is_err());
    }
}
