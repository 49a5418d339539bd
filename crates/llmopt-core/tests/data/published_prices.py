"""Expected costs for crates/llmopt-core/tests/it/cost.rs, computed with Python's Decimal from
the providers' published prices (USD per million tokens), typed here independently of
config/pricing.toml. Run: python3 published_prices.py > expected_costs.txt"""
from decimal import Decimal as D

# model: (input, output, cache_read, cache_write_5m, cache_write_1h) per published price pages.
# OpenAI and Google have no cache-write charge: their usage below has no writes.
PUBLISHED = {
    "gpt-4o": ("2.50", "10.00", "1.25", None, None),
    # No cached-input discount: cached input bills at the input price.
    "gpt-4o-2024-05-13": ("5.00", "15.00", "5.00", None, None),
    "chatgpt-4o-latest": ("5.00", "15.00", "5.00", None, None),
    "gpt-4o-mini": ("0.15", "0.60", "0.075", None, None),
    "gpt-4.1": ("2.00", "8.00", "0.50", None, None),
    "gpt-4.1-mini": ("0.40", "1.60", "0.10", None, None),
    "gpt-4.1-nano": ("0.10", "0.40", "0.025", None, None),
    "o1": ("15.00", "60.00", "7.50", None, None),
    "o3": ("2.00", "8.00", "0.50", None, None),
    "o3-mini": ("1.10", "4.40", "0.55", None, None),
    "o4-mini": ("1.10", "4.40", "0.275", None, None),
    "gpt-5": ("1.25", "10.00", "0.125", None, None),
    "gpt-5-mini": ("0.25", "2.00", "0.025", None, None),
    "gpt-5-nano": ("0.05", "0.40", "0.005", None, None),
    "gpt-5.1": ("1.25", "10.00", "0.125", None, None),
    "gpt-5.2": ("1.75", "14.00", "0.175", None, None),
    "gpt-5-pro": ("15.00", "120.00", "15.00", None, None),
    # Embeddings: input only, no cached-input discount (OpenAI pricing page, 2025-12-01).
    "text-embedding-3-small": ("0.02", "0", "0.02", None, None),
    "text-embedding-3-large": ("0.13", "0", "0.13", None, None),
    "claude-opus-4-7": ("5", "25", "0.50", "6.25", "10"),
    "claude-opus-4-6": ("5", "25", "0.50", "6.25", "10"),
    "claude-opus-4-5": ("5", "25", "0.50", "6.25", "10"),
    "claude-opus-4-1": ("15", "75", "1.50", "18.75", "30"),
    "claude-opus-4": ("15", "75", "1.50", "18.75", "30"),
    "claude-sonnet-4-6": ("3", "15", "0.30", "3.75", "6"),
    "claude-sonnet-4-5": ("3", "15", "0.30", "3.75", "6"),
    "claude-sonnet-4": ("3", "15", "0.30", "3.75", "6"),
    "claude-3-7-sonnet": ("3", "15", "0.30", "3.75", "6"),
    "claude-3-5-sonnet": ("3", "15", "0.30", "3.75", "6"),
    "claude-haiku-4-5": ("1", "5", "0.10", "1.25", "2"),
    "claude-3-5-haiku": ("0.80", "4", "0.08", "1", "1.6"),
    "claude-3-haiku": ("0.25", "1.25", "0.03", "0.30", "0.50"),
    "gemini-2.5-pro": ("1.25", "10.00", "0.125", None, None),
    "gemini-2.5-flash": ("0.30", "2.50", "0.03", None, None),
    "gemini-2.5-flash-lite": ("0.10", "0.40", "0.01", None, None),
    # Gemini 3 previews: LiteLLM 1.106.2's price map (no Google page kept in the repository).
    "gemini-3.1-pro-preview": ("2.00", "12.00", "0.20", None, None),
    "gemini-3-flash-preview": ("0.50", "3.00", "0.05", None, None),
}
# Long-context tiers (whole request when total input > 200k tokens).
LONG = {
    "claude-sonnet-4-5": ("6", "22.50", "0.60", "7.50", "12"),
    "claude-sonnet-4": ("6", "22.50", "0.60", "7.50", "12"),
    "gemini-2.5-pro": ("2.50", "15.00", "0.25", None, None),
    "gemini-3.1-pro-preview": ("4.00", "18.00", "0.40", None, None),
}
# Models without the batch API's 50 % discount.
NO_BATCH = {"chatgpt-4o-latest"}
M = D(1_000_000)

def cost(prices, uncached, read, w5, w1, out):
    i, o, r, a, b = (D(p) if p is not None else None for p in prices)
    total = uncached * i + read * r + out * o
    if w5: total += w5 * a
    if w1: total += w1 * b
    return total / M

for model, prices in PUBLISHED.items():
    writes = prices[3] is not None
    small = cost(prices, 10_000, 20_000, 1_000 if writes else 0, 2_000 if writes else 0, 5_000)
    batch = small if model in NO_BATCH else small / 2
    line = f'    ("{model}", "{small}", "{batch}"'
    if model in LONG:
        big = cost(LONG[model], 100_000, 200_000, 10_000 if writes else 0, 20_000 if writes else 0, 50_000)
        line += f', Some("{big}")'
    else:
        line += ", None"
    print(line + "),")
