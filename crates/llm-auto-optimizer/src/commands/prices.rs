//! `pricing` and `cost`: the price catalog as a table (or JSON, or compared with a LiteLLM map),
//! and one call priced part by part.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use llmopt_core::{PriceCatalog, Usage, pricing::ModelPrice};

/// The arguments of `cost` (its command-line flags).
#[derive(Debug, Clone, clap::Args)]
pub struct CostArgs {
    #[arg(long)]
    pub model: String,
    /// All input tokens, cached and cache-written included.
    #[arg(long)]
    pub input: u64,
    #[arg(long, default_value_t = 0)]
    pub output: u64,
    /// Input tokens read from the provider cache.
    #[arg(long, default_value_t = 0)]
    pub cached: u64,
    #[arg(long, default_value_t = 0)]
    pub cache_write_5m: u64,
    #[arg(long, default_value_t = 0)]
    pub cache_write_1h: u64,
    /// Price under the provider's batch API.
    #[arg(long)]
    pub batch: bool,
    #[arg(long)]
    pub json: bool,
}

/// `cost`: exact cost of one call from its token counts.
pub fn cost(catalog: &PriceCatalog, args: CostArgs) -> Result<()> {
    let CostArgs { model, input, output, cached, cache_write_5m, cache_write_1h, batch, json } =
        args;
    let usage = Usage {
        input_tokens: input,
        cache_read_tokens: cached,
        cache_write_5m_tokens: cache_write_5m,
        cache_write_1h_tokens: cache_write_1h,
        output_tokens: output,
        reasoning_tokens: 0,
    };
    usage.validate().context("token counts")?;
    let price = catalog.resolve(&model)?;
    let cost = price.cost(&usage, batch);
    if json {
        println!(
            "{}",
            serde_json::json!({
                "model": price.id, "batch": batch, "usage": usage,
                "cost_picodollars": cost.total.picos().to_string(),
                "cost_usd": cost.total.as_usd_f64(),
                "breakdown_picodollars": {
                    "uncached_input": cost.uncached_input.picos().to_string(),
                    "cache_read": cost.cache_read.picos().to_string(),
                    "cache_write_5m": cost.cache_write_5m.picos().to_string(),
                    "cache_write_1h": cost.cache_write_1h.picos().to_string(),
                    "output": cost.output.picos().to_string(),
                }
            })
        );
    } else {
        println!("{} ({}){}", price.id, price.provider, if batch { ", batch" } else { "" });
        println!(
            "  uncached input {:>9} tokens  {}",
            usage.uncached_input_tokens(),
            cost.uncached_input
        );
        println!("  cache read     {:>9} tokens  {}", usage.cache_read_tokens, cost.cache_read);
        println!(
            "  cache write 5m {:>9} tokens  {}",
            usage.cache_write_5m_tokens, cost.cache_write_5m
        );
        println!(
            "  cache write 1h {:>9} tokens  {}",
            usage.cache_write_1h_tokens, cost.cache_write_1h
        );
        println!("  output         {:>9} tokens  {}", usage.output_tokens, cost.output);
        println!(
            "  total                           {}  ({} picodollars)",
            cost.total,
            cost.total.picos()
        );
    }
    Ok(())
}

/// USD per million tokens, from picodollars per token, without trailing zeros.
fn per_million(price: llmopt_core::Money) -> String {
    // picodollars per token × 10⁶ tokens = picodollars per million = micro-dollars × 10⁶.
    let micros = price.picos();
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
        .trim_end_matches('0')
        .trim_end_matches('.')
        .to_owned()
}

/// `pricing`: the catalog, one model, or the comparison with a LiteLLM map.
pub fn pricing(
    catalog: &PriceCatalog,
    model: Option<&str>,
    compare_litellm: Option<PathBuf>,
    json: bool,
) -> Result<()> {
    let models: Vec<&ModelPrice> = match model {
        Some(id) => vec![catalog.resolve(id)?],
        None => catalog.models().collect(),
    };
    if let Some(path) = compare_litellm {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read LiteLLM map `{}`", path.display()))?;
        let (litellm, report) = PriceCatalog::from_litellm_json(&text)
            .with_context(|| format!("`{}`", path.display()))?;
        println!("LiteLLM map: {} models imported, {} skipped", report.imported, report.skipped);
        let mut differences = 0;
        for ours in &models {
            let theirs = std::iter::once(ours.id.as_str())
                .chain(ours.aliases.iter().map(String::as_str))
                .find_map(|id| litellm.resolve(id).ok().filter(|m| m.id == id));
            match theirs {
                None => println!("  {:<28} not in the LiteLLM map", ours.id),
                Some(theirs) if theirs.base == ours.base => {}
                Some(theirs) => {
                    differences += 1;
                    println!(
                        "  {:<28} differs: ours {:?} / LiteLLM {:?}",
                        ours.id, ours.base, theirs.base
                    );
                }
            }
        }
        println!("{differences} price differences");
        return Ok(());
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&models)?);
        return Ok(());
    }
    if models.is_empty() {
        bail!("the price catalog is empty");
    }
    println!(
        "{:<22} {:<10} {:>8} {:>8} {:>10} {:>9} {:>9} {:>6}",
        "model (USD / 1M tok)",
        "provider",
        "input",
        "output",
        "cache rd",
        "write 5m",
        "write 1h",
        "batch"
    );
    for price in models {
        println!(
            "{:<22} {:<10} {:>8} {:>8} {:>10} {:>9} {:>9} {:>5}%",
            price.id,
            price.provider,
            per_million(price.base.input),
            per_million(price.base.output),
            per_million(price.base.cache_read),
            per_million(price.base.cache_write_5m),
            per_million(price.base.cache_write_1h),
            price.batch_discount_ppm / 10_000,
        );
    }
    Ok(())
}
