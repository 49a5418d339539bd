"""Reference values for the bounded cost sequence (`src/stats/bounded.rs`), written to
`bounded_reference.json`.

The bets and the confidence sequence come from the `confseq` package of Howard and
Waudby-Smith (PyPI `confseq` 0.0.11): `betting_strategies.lambda_predmix_eb` (the predictable
plug-in bets of Waudby-Smith & Ramdas 2023) and `predmix.predmix_lower_cs` (the empirical-
Bernstein sequence of Howard et al. 2021, Theorem 4, with any predictable bets and centring).
Only the design (the inverse-probability-weighted term around the running mean, and the
mapping to [-1, 1]) is written here, from the formulas in the module documentation, so the
Rust glue (`Experiment::add_record`, `cost::observe`) is checked by an independent program too.
The fallback case (bound = 4 x the largest earlier cost, so the scale changes per record) has
no `confseq` counterpart; it is computed here directly from the formula.

confseq's wheel needs a C++ build (Boost); its Python modules used here do not, so:

    pip download --no-deps confseq==0.0.11 -d /tmp/x && tar xzf /tmp/x/confseq-0.0.11.tar.gz -C /tmp/x
    python -m venv /tmp/venv && /tmp/venv/bin/pip install "numpy<2" scipy multiprocess
    PYTHONPATH=/tmp/x/confseq-0.0.11/src /tmp/venv/bin/python bounded_reference.py
"""

import json
import math
import random

import numpy as np
from confseq.betting_strategies import lambda_predmix_eb
from confseq.predmix import predmix_lower_cs

MAX_BET = 0.9
FALLBACK_BOUND_FACTOR = 4.0
PICOS_PER_USD = 10**12


def draw_costs(seed, n, arms, weights, mean_usd):
    """Records: (arm index, cost in picodollars). Pareto(1.5) costs, bounded at 0.48 USD."""
    rng = random.Random(seed)
    total = sum(weights)
    records = []
    for _ in range(n):
        u = rng.random() * total
        arm = 0
        while u >= weights[arm] and arm < arms - 1:
            u -= weights[arm]
            arm += 1
        factor = 0.8 if arm == 1 else 1.0
        scale = mean_usd / 3.0
        cost = min(scale * rng.paretovariate(1.5) * factor, 0.48)
        records.append((arm, int(round(cost * PICOS_PER_USD))))
    return records


def design_terms(records, weights, treatment, bound):
    """Per record of the whole stream: xi = Z/c in [-1, 1] and the scale c, for `treatment`
    against arm 0. Centre = mean of the earlier costs (any arm), clipped to [0, bound]; the
    bound is the stated one, or 4 x the largest earlier cost. Records before a bound exists
    are skipped (None)."""
    total = sum(weights)
    p_control, p_treatment = weights[0] / total, weights[treatment] / total
    seen_sum, seen_count, seen_max = 0.0, 0, 0.0
    out = []
    for arm, picos in records:
        cost = picos / PICOS_PER_USD
        if bound is not None:
            b = bound
        elif seen_count > 0:
            b = FALLBACK_BOUND_FACTOR * seen_max
        else:
            b = None
        if b is not None and b > 0:
            centre = seen_sum / seen_count if seen_count else 0.0
            centre = min(max(centre, 0.0), b)
            x = min(max(cost, 0.0), b)
            if arm == treatment:
                z = (x - centre) / p_treatment
            elif arm == 0:
                z = -(x - centre) / p_control
            else:
                z = 0.0
            c = b / min(p_control, p_treatment)
            out.append((max(-1.0, min(1.0, z / c)), c, cost > b))
        else:
            out.append(None)
        seen_sum += cost
        seen_count += 1
        seen_max = max(seen_max, cost)
    return out


def bets(xi, alpha, tuning):
    """confseq's plug-in on (xi + 1)/2 in [0, 1] for fixed_n = tuning, mapped back to the xi
    scale (u), aimed at max(t, tuning) records and turned into the bet 1 - 1/(1 + u + u^2/3),
    capped (see the module documentation)."""
    y = (np.asarray(xi) + 1.0) / 2.0
    u = lambda_predmix_eb(y, alpha=alpha / 2, fixed_n=tuning, scale=0.5)
    t = np.arange(1, len(y) + 1)
    u = u * np.sqrt(tuning / np.maximum(t, tuning))
    return np.minimum(1.0 - 1.0 / (1.0 + u + u * u / 3.0), MAX_BET)


def confseq_interval(xi, c, alpha, tuning):
    """Two-sided sequence in dollars from confseq's lower sequences of xi + 1 and 1 - xi
    (constant scale c): each side at alpha/2, variance increments xi^2 (centring at 0)."""
    xi = np.asarray(xi)
    lam = bets(xi, alpha, tuning)
    psi = lambda l: -np.log(1 - l) - l
    v = xi**2
    lower = predmix_lower_cs(xi + 1.0, v=v, lambdas_fn=lambda _: lam, psi_fn=psi, alpha=alpha / 2)
    upper = predmix_lower_cs(1.0 - xi, v=v, lambdas_fn=lambda _: lam, psi_fn=psi, alpha=alpha / 2)
    estimate = np.cumsum(lam * xi) / np.cumsum(lam)
    # predmix_lower_cs clips its lower bound at 0 (x >= 0): such steps are marked, not compared.
    clipped = (lower <= 0) | (upper <= 0)
    return c * estimate, c * (lower - 1.0), c * (1.0 - upper), clipped


def direct_interval(xi, scales, alpha, tuning):
    """The same sequence from the formula, with a scale per record (fallback bound)."""
    xi, scales = np.asarray(xi), np.asarray(scales)
    lam = bets(xi, alpha, tuning)
    weight = np.cumsum(lam / scales)
    estimate = np.cumsum(lam * xi) / weight
    half = (math.log(2 / alpha) + np.cumsum(xi**2 * (-np.log(1 - lam) - lam))) / weight
    return estimate, estimate - half, estimate + half


def case(name, seed, n, weights, bound, alpha, tuning, every):
    records = draw_costs(seed, n, len(weights), weights, 0.0054)
    primary_alpha = alpha / (len(weights) - 1)
    checkpoints = []
    for treatment in range(1, len(weights)):
        terms = design_terms(records, weights, treatment, bound)
        index = [i for i, term in enumerate(terms) if term is not None]
        xi = [terms[i][0] for i in index]
        scales = [terms[i][1] for i in index]
        clipped = np.cumsum([terms[i][2] for i in index])
        if bound is not None:
            estimate, lower, upper, unusable = confseq_interval(xi, scales[0], primary_alpha, tuning)
            direct = direct_interval(xi, scales, primary_alpha, tuning)
            assert np.allclose(direct[0], estimate, rtol=1e-9)
            ok = ~unusable
            assert np.allclose(direct[1][ok], lower[ok], rtol=1e-9, atol=1e-15)
            assert np.allclose(direct[2][ok], upper[ok], rtol=1e-9, atol=1e-15)
        else:
            estimate, lower, upper = direct_interval(xi, scales, primary_alpha, tuning)
            unusable = np.zeros(len(xi), dtype=bool)
        for k in range(len(xi)):
            record = index[k] + 1
            if record % every == 0 and not unusable[k]:
                checkpoints.append(
                    {
                        "records": record,
                        "arm": treatment,
                        "estimate": float(estimate[k]),
                        "lower": float(lower[k]),
                        "upper": float(upper[k]),
                        "clipped": int(clipped[k]),
                    }
                )
    return {
        "name": name,
        "weights": weights,
        "cost_bound_usd": bound,
        "alpha": alpha,
        "tuning_samples": tuning,
        "records": [[arm, picos] for arm, picos in records],
        "checkpoints": checkpoints,
    }


def main():
    fixture = {
        "generator": "tests/data/bounded_reference.py (confseq 0.0.11)",
        "max_bet": MAX_BET,
        "fallback_bound_factor": FALLBACK_BOUND_FACTOR,
        "cases": [
            # Tuned for 1,000 records: the bets' two regimes (before and after) are both seen.
            case("two arms, stated bound", 1, 3000, [1.0, 1.0], 0.48, 0.05, 1000, 250),
            case("three arms 2:1:1, stated bound", 2, 3000, [2.0, 1.0, 1.0], 0.48, 0.05, 1000, 250),
            case("two arms, fallback bound", 3, 3000, [1.0, 1.0], None, 0.05, 1000, 250),
            # A stated bound below some costs: they count at the bound.
            case("two arms, stated bound too low", 4, 2000, [1.0, 1.0], 0.03, 0.05, 1000, 250),
        ],
    }
    # One record or checkpoint per line: small, and readable in a diff.
    lines = ["{"]
    for key in ("generator", "max_bet", "fallback_bound_factor"):
        lines.append(f' "{key}": {json.dumps(fixture[key])},')
    lines.append(' "cases": [')
    for n, case_ in enumerate(fixture["cases"]):
        lines.append("  {")
        for key in ("name", "weights", "cost_bound_usd", "alpha", "tuning_samples"):
            lines.append(f'   "{key}": {json.dumps(case_[key])},')
        for key in ("records", "checkpoints"):
            rows = ",\n".join("    " + json.dumps(row) for row in case_[key])
            comma = "," if key == "records" else ""
            lines.append(f'   "{key}": [\n{rows}\n   ]{comma}')
        lines.append("  }" + ("," if n + 1 < len(fixture["cases"]) else ""))
    lines.append(" ]")
    lines.append("}")
    text = "\n".join(lines)
    assert json.loads(text) == fixture
    with open("bounded_reference.json", "w") as out:
        out.write(text + "\n")


if __name__ == "__main__":
    main()
