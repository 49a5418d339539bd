#!/usr/bin/env python3
"""Reference values for llmopt-analytics, computed with numpy, scipy, scikit-learn and statsmodels.

Run from anywhere: `python3 scripts/reference/make_fixtures.py`. The script creates
`scripts/reference/.venv` (gitignored) on first use, installs the pinned packages from PyPI into
it, re-runs itself inside it, and writes JSON fixtures to
`crates/llmopt-analytics/tests/data/`. The Rust tests read only those fixtures; Python is needed
only to regenerate them.

Inputs are fixed: seeded synthetic samples and series, and the public traces in
`../shared/data/traces/` (relative to the workspace root) when present.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
VENV = HERE / ".venv"
OUT = ROOT / "crates" / "llmopt-analytics" / "tests" / "data"
TRACES = ROOT.parent / "shared" / "data" / "traces"
PACKAGES = ["numpy==2.4.6", "scipy==1.17.1", "scikit-learn==1.9.1", "statsmodels==0.15.0"]


def ensure_venv():
    """Re-executes this script inside the local virtual environment, creating it if needed."""
    python = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *PACKAGES], check=True)
    os.execv(str(python), [str(python), *sys.argv])


ensure_venv()

import numpy as np  # noqa: E402
import scipy  # noqa: E402
import sklearn  # noqa: E402
import statsmodels  # noqa: E402
import statsmodels.api as sm  # noqa: E402
from scipy import stats  # noqa: E402
from sklearn.cluster import KMeans  # noqa: E402
from sklearn.metrics import silhouette_score  # noqa: E402
from statsmodels.stats.proportion import proportions_ztest  # noqa: E402
from statsmodels.tsa.exponential_smoothing.initialization import _initialization_simple  # noqa: E402
from statsmodels.tsa.holtwinters import ExponentialSmoothing  # noqa: E402

QUANTILES = [0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0]


def versions():
    return {
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "statsmodels": statsmodels.__version__,
    }


def write(name, payload):
    payload = {"generated_by": "scripts/reference/make_fixtures.py", "versions": versions(), **payload}
    path = OUT / name
    path.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")


def floats(values):
    return [float(v) for v in values]


def stats_fixture():
    rng = np.random.default_rng(20251122)
    cases = []
    pairs = {
        # Latency-like samples: skewed, different variances and sizes.
        "lognormal_unequal": (rng.lognormal(5.0, 0.6, 180), rng.lognormal(5.1, 0.9, 240)),
        "normal_small": (rng.normal(10.0, 2.0, 12), rng.normal(12.5, 4.0, 9)),
        # Integer ratings: many ties, exercises the tie correction.
        "ratings_with_ties": (rng.integers(1, 6, 150).astype(float), rng.integers(2, 7, 130).astype(float)),
        "nearly_equal": (rng.normal(100.0, 15.0, 500), rng.normal(100.5, 15.0, 500)),
    }
    for name, (a, b) in pairs.items():
        a = np.round(a, 6)
        b = np.round(b, 6)
        welch = stats.ttest_ind(a, b, equal_var=False)
        mwu = stats.mannwhitneyu(a, b, use_continuity=True, alternative="two-sided", method="asymptotic")
        mean_a, mean_b = a.mean(), b.mean()
        var_mean_a, var_mean_b = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
        ratio = mean_b / mean_a
        se = np.sqrt(var_mean_b / mean_a**2 + ratio**2 * var_mean_a / mean_a**2)
        z = stats.norm.ppf(0.975)
        cases.append({
            "name": name,
            "a": floats(a),
            "b": floats(b),
            "welch_t": float(welch.statistic),
            "welch_df": float(welch.df),
            "welch_p": float(welch.pvalue),
            "mwu_u": float(mwu.statistic),
            "mwu_p": float(mwu.pvalue),
            "quantiles": QUANTILES,
            "quantiles_a": floats(np.quantile(a, QUANTILES)),
            "trim_mean_a_10": float(stats.trim_mean(a, 0.1)),
            "trim_mean_b_25": float(stats.trim_mean(b, 0.25)),
            "relative_difference": float(ratio - 1),
            "relative_difference_lower_95": float(ratio - 1 - z * se),
            "relative_difference_upper_95": float(ratio - 1 + z * se),
            "robust_z_a": floats((a - np.median(a)) / stats.median_abs_deviation(a, scale="normal")),
        })
    proportions = []
    for successes_a, trials_a, successes_b, trials_b in [(45, 500, 30, 480), (812, 1000, 790, 1000), (3, 40, 9, 41)]:
        z_stat, p_value = proportions_ztest([successes_a, successes_b], [trials_a, trials_b])
        proportions.append({
            "successes_a": successes_a, "trials_a": trials_a,
            "successes_b": successes_b, "trials_b": trials_b,
            "z": float(z_stat), "p": float(p_value),
        })
    # Silhouette of a fixed labelling (scikit-learn, Euclidean).
    points = np.round(np.concatenate([rng.normal(c, 0.8, (40, 3)) for c in (0.0, 2.0, 5.0)]), 6)
    labels = np.repeat([0, 1, 2], 40)
    labels[::7] = (labels[::7] + 1) % 3  # a few misassigned points
    write("stats.json", {
        "cases": cases,
        "proportions": proportions,
        "silhouette": {
            "points": [floats(p) for p in points],
            "labels": [int(x) for x in labels],
            "score": float(silhouette_score(points, labels)),
        },
    })


def seasonal_series(n, period, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    season = 10.0 * np.sin(2 * np.pi * t / period) + 4.0 * np.cos(4 * np.pi * t / period)
    return np.round(100.0 + 0.5 * t + season * (1 + t / n) + rng.normal(0, 2.0, n), 6)


def azure_per_minute_requests():
    path = TRACES / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv"
    if not path.exists():
        return None
    import csv
    from datetime import datetime, timezone
    counts = {}
    with path.open() as handle:
        for row in csv.DictReader(handle):
            stamp = datetime.strptime(row["TIMESTAMP"][:26], "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=timezone.utc)
            minute = int(stamp.timestamp() // 60)
            counts[minute] = counts.get(minute, 0) + 1
    first, last = min(counts), max(counts)
    return [float(counts.get(m, 0)) for m in range(first, last + 1)]


def smoothing_case(name, series, trend, seasonal, period, horizon):
    # statsmodels' "simple" initial states, passed as known values so that only the smoothing
    # parameters are fitted (the Rust side uses the same rule).
    level, initial_trend, seasons = _initialization_simple(series, trend, seasonal or False, period)
    model = ExponentialSmoothing(
        series, trend=trend, seasonal=seasonal, seasonal_periods=period,
        initialization_method="known", initial_level=level, initial_trend=initial_trend,
        initial_seasonal=seasons,
    )
    fit = model.fit()
    params = fit.params
    return {
        "name": name,
        "series": floats(series),
        "trend": trend,
        "seasonal": seasonal,
        "period": period,
        "alpha": float(params["smoothing_level"]),
        "beta": float(params["smoothing_trend"]) if trend else 0.0,
        "gamma": float(params["smoothing_seasonal"]) if seasonal else 0.0,
        "initial_level": float(params["initial_level"]),
        "initial_trend": float(params["initial_trend"]) if trend else 0.0,
        "initial_seasons": floats(params["initial_seasons"]) if seasonal else [],
        "sse": float(fit.sse),
        "fitted": floats(fit.fittedvalues),
        "forecast": floats(fit.forecast(horizon)),
        # Seasonal states after each observation (`season[t]` is the factor for t + m). Needed
        # because statsmodels 0.15 forecasts horizons h ≡ 0 (mod m) with the factor of one
        # season earlier (statsmodels issue #9538, fixed by PR #10230); the Rust side uses the
        # final factor, as Hyndman & Athanasopoulos write it, and the test corrects for that.
        "season": floats(fit.season) if seasonal else [],
    }


def forecast_fixture():
    series = seasonal_series(120, 12, 7)
    cases = [
        smoothing_case("holt_trend", np.round(50 + 0.8 * np.arange(80) + np.random.default_rng(3).normal(0, 3, 80), 6), "add", None, None, 10),
        smoothing_case("hw_additive", series, "add", "add", 12, 24),
        smoothing_case("hw_multiplicative", series, "add", "mul", 12, 24),
    ]
    azure = azure_per_minute_requests()
    if azure is not None:
        cases.append(smoothing_case("azure_conv_requests_per_minute_holt", np.array(azure), "add", None, None, 10))
    # Linear trend with OLS prediction intervals.
    y = np.round(20 + 1.5 * np.arange(40) + np.random.default_rng(11).normal(0, 4, 40), 6)
    x = sm.add_constant(np.arange(40.0))
    ols = sm.OLS(y, x).fit()
    future = sm.add_constant(np.arange(40.0, 52.0))
    frame = ols.get_prediction(future).summary_frame(alpha=0.05)
    linear = {
        "series": floats(y),
        "intercept": float(ols.params[0]),
        "slope": float(ols.params[1]),
        "forecast": floats(frame["mean"]),
        "lower_95": floats(frame["obs_ci_lower"]),
        "upper_95": floats(frame["obs_ci_upper"]),
    }
    write("forecast.json", {"smoothing": cases, "linear": linear})


def splitmix_uniform(count, seed):
    """splitmix64 outputs (seed + 1, seed + 2, …) as floats in [0, 1): same as the Rust bench."""
    with np.errstate(over="ignore"):
        state = np.uint64(seed) + np.arange(1, count + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        z = state
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


BLOB_CENTRES = np.array([
    [0.0, 0.0, 0.0, 0.0], [4.0, 0.0, 1.0, 2.0], [0.0, 5.0, 2.0, 1.0], [5.0, 5.0, 0.0, 3.0],
    [2.0, 2.0, 5.0, 0.0], [7.0, 1.0, 4.0, 5.0], [1.0, 7.0, 6.0, 4.0], [6.0, 6.0, 6.0, 6.0],
])


def blobs(n, seed):
    """n × 4 points around eight centres with uniform noise of width 6 (overlapping clusters)."""
    noise = splitmix_uniform(n * 4, seed).reshape(n, 4)
    return BLOB_CENTRES[np.arange(n) % 8] + (noise - 0.5) * 6.0


def kmeans_fixture():
    points = blobs(5000, 42)
    initial = points[:8].copy()
    tol = 1e-4
    km = KMeans(n_clusters=8, init=initial, n_init=1, algorithm="lloyd", max_iter=300, tol=tol).fit(points)
    write("kmeans.json", {
        "generator": "blobs(n=5000, seed=42): BLOB_CENTRES[i % 8] + (splitmix64 uniform − 0.5) × 6; initial centres = first 8 points",
        "n": 5000,
        "seed": 42,
        "max_iter": 300,
        "tol": tol,
        # What scikit-learn compares the squared centre shift with (sklearn.cluster._kmeans._tolerance).
        "tol_squared_shift": float(np.mean(np.var(points, axis=0)) * tol),
        "first_point": floats(points[0]),
        "last_point": floats(points[-1]),
        "inertia": float(km.inertia_),
        "iterations": int(km.n_iter_),
        "centres": [floats(c) for c in km.cluster_centers_],
        "labels_head": [int(x) for x in km.labels_[:50]],
    })


def read_jsonl(path):
    with path.open() as handle:
        return [json.loads(line) for line in handle if line.strip()]


def traces_fixture():
    payload = {}
    for name, path in [
        ("mooncake_conversation", TRACES / "mooncake_conversation" / "conversation_trace.jsonl"),
        ("mooncake_synthetic", TRACES / "mooncake_synthetic" / "synthetic_trace.jsonl"),
    ]:
        if not path.exists():
            continue
        rows = read_jsonl(path)
        seen = set()
        blocks = reused = 0
        input_tokens = cached_tokens = 0
        for row in rows:
            ids = row["hash_ids"]
            blocks += len(ids)
            reused += sum(1 for block in ids if block in seen)
            leading = 0
            for block in ids:
                if block not in seen:
                    break
                leading += 1
            input_tokens += row["input_length"]
            cached_tokens += min(leading * 512, row["input_length"])
            seen.update(ids)
        outputs = np.array([row["output_length"] for row in rows], dtype=float)
        payload[name] = {
            "requests": len(rows),
            "blocks": blocks,
            "blocks_seen_before": reused,
            "input_tokens": input_tokens,
            "cached_tokens_unlimited": cached_tokens,
            "output_quantiles": floats(np.quantile(outputs, QUANTILES)),
        }
    azure = TRACES / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv"
    if azure.exists():
        import csv
        with azure.open() as handle:
            rows = list(csv.DictReader(handle))
        context = np.array([float(r["ContextTokens"]) for r in rows])
        generated = np.array([float(r["GeneratedTokens"]) for r in rows])
        payload["azure_conv"] = {
            "requests": len(rows),
            "context_sum": int(context.sum()),
            "generated_sum": int(generated.sum()),
            "context_quantiles": floats(np.quantile(context, QUANTILES)),
            "generated_quantiles": floats(np.quantile(generated, QUANTILES)),
            "generated_trim_mean_10": float(stats.trim_mean(generated, 0.1)),
        }
    payload["quantiles"] = QUANTILES
    write("traces.json", payload)


FIXTURES = {"stats": stats_fixture, "forecast": forecast_fixture, "kmeans": kmeans_fixture, "traces": traces_fixture}


if __name__ == "__main__":
    # `make_fixtures.py [NAME ...]`: only the named fixtures (stats, forecast, kmeans, traces).
    names = sys.argv[1:] or list(FIXTURES)
    unknown = [name for name in names if name not in FIXTURES]
    if unknown:
        sys.exit(f"unknown fixtures {unknown}; choose from {list(FIXTURES)}")
    OUT.mkdir(parents=True, exist_ok=True)
    for name in names:
        FIXTURES[name]()
