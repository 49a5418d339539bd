"""Reference fit of the simulated provider's latency model (run with plain python3, no numpy).

Reads the Splitwise perf model (batch size 1, tensor parallelism 8, H100-80GB) and fits
prefill_ms = a + b*n + c*n^2 by ordinary least squares over every measured row, and the mean
per-output-token time. The Rust tests re-fit from the same CSV and compare with these numbers.
"""
import csv, statistics, sys
from collections import defaultdict

path = sys.argv[1] if len(sys.argv) > 1 else "perf_model.csv"
rows = list(csv.DictReader(open(path)))

def solve3(m, v):
    # Gaussian elimination with partial pivoting on a 3x3 system.
    a = [row[:] + [v[i]] for i, row in enumerate(m)]
    for col in range(3):
        pivot = max(range(col, 3), key=lambda r: abs(a[r][col]))
        a[col], a[pivot] = a[pivot], a[col]
        for r in range(3):
            if r != col:
                f = a[r][col] / a[col][col]
                a[r] = [x - f * y for x, y in zip(a[r], a[col])]
    return [a[i][3] / a[i][i] for i in range(3)]

for model in ["bloom-176b", "llama2-70b"]:
    sel = [r for r in rows if r["model"] == model and r["hardware"] == "h100-80gb"
           and r["tensor_parallel"] == "8" and r["batch_size"] == "1"]
    n = [float(r["prompt_size"]) for r in sel]
    p = [float(r["prompt_time"]) for r in sel]
    t = [float(r["token_time"]) for r in sel]
    xs = [[1.0, x, x * x] for x in n]
    ata = [[sum(row[i] * row[j] for row in xs) for j in range(3)] for i in range(3)]
    atb = [sum(row[i] * y for row, y in zip(xs, p)) for i in range(3)]
    coef = solve3(ata, atb)
    groups_p, groups_t = defaultdict(list), defaultdict(list)
    for r in sel:
        key = (r["prompt_size"], r["token_size"])
        groups_p[key].append(float(r["prompt_time"]))
        groups_t[key].append(float(r["token_time"]))
    cv_p = statistics.mean(statistics.stdev(v) / statistics.mean(v) for v in groups_p.values())
    cv_t = statistics.mean(statistics.stdev(v) / statistics.mean(v) for v in groups_t.values())
    print(model, "rows", len(sel))
    print("  prefill_ms = %.17g + %.17g*n + %.17g*n^2" % tuple(coef))
    print("  token_ms mean %.17g" % statistics.mean(t))
    print("  cv prefill %.6f cv token %.6f" % (cv_p, cv_t))
    for s in [128, 512, 2048, 8192]:
        print("  predicted prefill at", s, "=", round(coef[0] + coef[1] * s + coef[2] * s * s, 2))
