#!/usr/bin/env python3
"""scikit-learn's side of the k-means benchmark (`benches/benches/analytics.rs`).

KMeans(algorithm="lloyd", n_init=1) on 1,000,000 × 4 points from the same generator as the Rust
bench (`make_fixtures.blobs`, splitmix64 uniforms around eight centres), k = 8, initial centres =
the first eight points, max_iter=300, tol=1e-4. The Rust bench runs the product's k-means (linfa)
like for like: the same points and initial centres, one run, 300 iterations at most, and this
`tol` translated to linfa's stopping rule (`llmopt_analytics::cluster::sklearn_tolerance`).
Prints one JSON object: the median wall time of `--repeats` fits, the inertia and the iteration
count. With `--write`, also stores it in
`crates/llmopt-analytics/tests/data/kmeans_1m_sklearn.json`, which the Rust bench reads to check
its inertia (the timing there is only what this machine measured when it was written; compare
timings from the same run).
"""

import json
import sys
import time

from make_fixtures import OUT, blobs, versions  # noqa: E402  (re-executes inside the venv)

import numpy as np  # noqa: E402
from sklearn.cluster import KMeans  # noqa: E402

N, SEED, K = 1_000_000, 7, 8


def main():
    repeats = int(sys.argv[sys.argv.index("--repeats") + 1]) if "--repeats" in sys.argv else 5
    points = blobs(N, SEED)
    initial = points[:K].copy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        km = KMeans(n_clusters=K, init=initial, n_init=1, algorithm="lloyd", max_iter=300, tol=1e-4).fit(points)
        times.append(time.perf_counter() - start)
    result = {
        "n": N,
        "seed": SEED,
        "k": K,
        "seconds_median": float(np.median(times)),
        "seconds_all": times,
        "inertia": float(km.inertia_),
        "iterations": int(km.n_iter_),
        "versions": versions(),
    }
    print(json.dumps(result))
    if "--write" in sys.argv:
        (OUT / "kmeans_1m_sklearn.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
