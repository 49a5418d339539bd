#!/usr/bin/env python3
"""Reference values for llmopt-experiments, computed independently of the Rust code.

Standard library only (no numpy/scipy), so anyone can rerun it:

    python3 scripts/reference/experiments_reference.py \
        > crates/llmopt-experiments/tests/data/reference.json

What it computes:
- `buckets`: GrowthBook hash v2 (FNV-1a 32 twice) of experiment id + unit id, mod 10,000,
  written from GrowthBook's published description (`fnv32a(str(fnv32a(seed + value))) % 10000`).
- `half_widths`: the normal-mixture confidence-sequence half-width of Howard et al. (2021) in
  GrowthBook's parameterisation, with rho tuned for a given total sample size.
- `welch`: Welch's t statistic, Welch-Satterthwaite degrees of freedom and the two-sided
  p-value, with the Student t CDF from the regularised incomplete beta function (Lentz's
  continued fraction), on real per-request costs.
- `azure_costs`: the same costs (USD) so the Rust test recomputes from the raw values: the
  first 400 requests of the Azure LLM inference trace (conversation service, CC-BY-4.0, Patel et
  al., ISCA 2024) priced at $2.50 / M input and $10.00 / M output tokens; even rows form arm A,
  odd rows arm B.
"""

import csv
import json
import math
import os
import sys

FNV_OFFSET = 0x811C9DC5
FNV_PRIME = 0x01000193


def fnv32a(text: str) -> int:
    h = FNV_OFFSET
    for byte in text.encode("utf-8"):
        h ^= byte
        h = (h * FNV_PRIME) & 0xFFFFFFFF
    return h


def bucket(experiment_id: str, unit_id: str) -> int:
    return fnv32a(str(fnv32a(experiment_id + unit_id))) % 10000


def rho(alpha: float, tuning: float) -> float:
    log_term = -2.0 * math.log(alpha)
    return math.sqrt((log_term + math.log(log_term + 1.0)) / tuning)


def half_width(estimate_variance: float, n: float, alpha: float, tuning: float) -> float:
    r2 = rho(alpha, tuning) ** 2
    s2 = estimate_variance * n
    return math.sqrt(s2 * 2.0 * (n * r2 + 1.0) / (n * n * r2) * math.log(math.sqrt(n * r2 + 1.0) / alpha))


def betacf(a, b, x):
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def betainc(a, b, x):
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    ln_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(1.0 - x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(ln_front) * betacf(a, b, x) / a
    return 1.0 - math.exp(ln_front) * betacf(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    return betainc(df / 2.0, 0.5, df / (df + t * t))


def mean_var(values):
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return n, mean, var


def welch(a, b):
    na, ma, va = mean_var(a)
    nb, mb, vb = mean_var(b)
    ta, tb = va / na, vb / nb
    t = (mb - ma) / math.sqrt(ta + tb)
    df = (ta + tb) ** 2 / (ta * ta / (na - 1) + tb * tb / (nb - 1))
    return {"t": t, "df": df, "p": t_two_sided_p(t, df)}


def azure_costs(path, rows=400):
    costs = []
    with open(path, newline="") as handle:
        for index, row in enumerate(csv.DictReader(handle)):
            if index >= rows:
                break
            context, generated = int(row["ContextTokens"]), int(row["GeneratedTokens"])
            # Exact in picodollars: 2.5e6 and 10e6 picodollars per token.
            picos = context * 2_500_000 + generated * 10_000_000
            costs.append(picos / 1e12)
    return costs


def main():
    experiments = ["exp-cheaper-model", "exp-1", "cap-max-tokens-2026", "é-unicode"]
    units = ["", "0", "1", "2", "user-42", "req-000001", "019a4f3e-8b7c-7d1e-9f00-123456789abc", "日本語"]
    buckets = [[e, u, bucket(e, u)] for e in experiments for u in units]
    fnv = [[s, fnv32a(s)] for s in ["", "a", "foobar", "exp-1user-42"]]

    half_widths = []
    for variance, n, alpha, tuning in [
        (1.0, 200, 0.05, 5000),
        (1.0, 5000, 0.05, 5000),
        (0.25, 20000, 0.05, 5000),
        (2.5e-7, 1234, 0.025, 5000),
        (1.0, 100, 0.01, 1000),
    ]:
        half_widths.append({"estimate_variance": variance / n * 2, "n": n, "alpha": alpha, "tuning": tuning,
                            "half_width": half_width(variance / n * 2, n, alpha, tuning)})

    trace = os.environ.get(
        "AZURE_CONV_TRACE", "/work/shared/data/traces/azure_llm_2023/AzureLLMInferenceTrace_conv.csv")
    costs = azure_costs(trace)
    arm_a, arm_b = costs[0::2], costs[1::2]
    na, ma, va = mean_var(arm_a)
    nb, mb, vb = mean_var(arm_b)
    estimate_variance = va / na + vb / nb
    sequential = {
        "alpha": 0.05, "tuning": 5000,
        "estimate": mb - ma,
        "half_width": half_width(estimate_variance, na + nb, 0.05, 5000),
    }
    small_a, small_b = [1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 4.0, 6.0, 8.0, 10.0, 12.0]
    welch_cases = [
        {"a": small_a, "b": small_b, **welch(small_a, small_b)},
        {"a": arm_a, "b": arm_b, **welch(arm_a, arm_b)},
    ]
    json.dump({
        "generator": "scripts/reference/experiments_reference.py",
        "fnv1a_32": fnv,
        "buckets": buckets,
        "half_widths": half_widths,
        "azure_costs": {"source": "AzureLLMInferenceTrace_conv.csv rows 0..400, $2.50/M in, $10/M out",
                        "arm_a": arm_a, "arm_b": arm_b, "sequential": sequential},
        "welch": welch_cases,
    }, sys.stdout, indent=1)
    sys.stdout.write("\n")
    cross_check_with_scipy(welch_cases)


def cross_check_with_scipy(welch_cases):
    """When scipy is importable, confirm the hand-written t CDF against it (stderr only)."""
    try:
        from scipy import stats
    except ImportError:
        print("scipy not available: Welch p-values not cross-checked", file=sys.stderr)
        return
    for case in welch_cases:
        result = stats.ttest_ind(case["b"], case["a"], equal_var=False)
        assert abs(result.statistic - case["t"]) < 1e-9 * max(1.0, abs(case["t"]))
        assert abs(result.pvalue - case["p"]) < 1e-10
    print("Welch p-values agree with scipy.stats.ttest_ind", file=sys.stderr)


if __name__ == "__main__":
    main()
