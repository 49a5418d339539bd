"""Writes litellm_dated_prices.json: the prices LiteLLM's map gives the dated OpenAI and
Anthropic model ids (`-YYYYMMDD`, `@YYYYMMDD`, `-YYYY-MM-DD`) whose undated id is in
config/pricing.toml, for crates/llmopt-core/tests/it/cost.rs. A dated id resolves to its
undated id unless the catalog lists it itself, so each must cost what LiteLLM says it costs.

Source: shared/data/reference/litellm_model_prices.json (LiteLLM's
model_prices_and_context_window.json, litellm 1.106.2), USD per token, written here as USD per
million tokens with Decimal (exact). `differs_from_undated` marks ids whose price is not their
undated id's in that same map (those need their own catalog entry).

Run from the repository root:
    python3 crates/llmopt-core/tests/data/litellm_dated_prices.py \
        > crates/llmopt-core/tests/data/litellm_dated_prices.json
"""
import json
import re
import sys
import tomllib
from decimal import Decimal

ROOT = "."
litellm = json.load(open(f"{ROOT}/../shared/data/reference/litellm_model_prices.json"))
catalog = tomllib.load(open(f"{ROOT}/config/pricing.toml", "rb"))["models"]
DATED = re.compile(r"^(.*?)(?:[-@]\d{8}|-\d{4}-\d{2}-\d{2})$")


def per_million(value):
    if value is None:
        return None
    return format(Decimal(repr(value)) * 1_000_000, "f").rstrip("0").rstrip(".") or "0"


def prices(entry):
    input_ = per_million(entry.get("input_cost_per_token"))
    batch = entry.get("input_cost_per_token_batches")
    discount = "0"
    if batch is not None and entry.get("input_cost_per_token"):
        discount = format(
            1 - Decimal(repr(batch)) / Decimal(repr(entry["input_cost_per_token"])), "f"
        ).rstrip("0").rstrip(".") or "0"
    return {
        "input": input_,
        "output": per_million(entry.get("output_cost_per_token")),
        # LiteLLM leaves out a cache price the provider does not offer: reads bill as input.
        "cache_read": per_million(entry.get("cache_read_input_token_cost")) or input_,
        "batch_discount": discount,
    }


rows = []
for model_id, entry in sorted(litellm.items()):
    if not isinstance(entry, dict) or entry.get("litellm_provider") not in ("openai", "anthropic"):
        continue
    if entry.get("mode") not in ("chat", "responses"):
        continue
    match = DATED.match(model_id)
    if not match or match.group(1) not in catalog:
        continue
    undated = litellm.get(match.group(1))
    own = prices(entry)
    differs = undated is not None and {k: own[k] for k in ("input", "output", "cache_read")} != {
        k: prices(undated)[k] for k in ("input", "output", "cache_read")
    }
    rows.append({"id": model_id, "undated": match.group(1), **own, "differs_from_undated": differs})

json.dump(
    {
        "source": "shared/data/reference/litellm_model_prices.json (litellm 1.106.2), "
        "written by litellm_dated_prices.py; USD per million tokens",
        "models": rows,
    },
    sys.stdout,
    indent=1,
)
print()
