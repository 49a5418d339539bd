//! Analytics: the product's k-means (linfa, `cluster::kmeans_with`) on 1,000,000 × 4 points,
//! k = 8, against scikit-learn's `KMeans(lloyd, n_init=1)` measured by
//! `scripts/reference/bench_kmeans.py` on the same generated data, like for like: the same
//! initial centres (the first eight points), one run, at most 300 iterations and scikit-learn's
//! `tol=1e-4` translated to linfa's scale (`cluster::sklearn_tolerance`). Then Welch's test,
//! percentiles and a Holt–Winters fit on 10,000 points.
//!
//! Before measuring, the bench checks that the inertia equals scikit-learn's to 1e-6 relative
//! (from `crates/llmopt-analytics/tests/data/kmeans_1m_sklearn.json`).

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use llmopt_analytics::{
    cluster::{KMeansSettings, KMeansStart, kmeans_with, sklearn_tolerance},
    forecast::{Method, fit},
    stats::{quantiles, welch_t_test},
};
use ndarray::Array2;

/// The generator of `scripts/reference/make_fixtures.py` (`blobs`): eight centres plus
/// splitmix64 uniform noise of width 6.
fn blobs(n: usize, seed: u64) -> Vec<f64> {
    const CENTRES: [[f64; 4]; 8] = [
        [0.0, 0.0, 0.0, 0.0],
        [4.0, 0.0, 1.0, 2.0],
        [0.0, 5.0, 2.0, 1.0],
        [5.0, 5.0, 0.0, 3.0],
        [2.0, 2.0, 5.0, 0.0],
        [7.0, 1.0, 4.0, 5.0],
        [1.0, 7.0, 6.0, 4.0],
        [6.0, 6.0, 6.0, 6.0],
    ];
    (0..(n * 4) as u64)
        .map(|i| {
            let mut z = seed.wrapping_add((i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let uniform = (z >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
            CENTRES[(i / 4) as usize % 8][(i % 4) as usize] + (uniform - 0.5) * 6.0
        })
        .collect()
}

fn sklearn_reference() -> Option<serde_json::Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crates/llmopt-analytics/tests/data/kmeans_1m_sklearn.json"
    );
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

fn kmeans(c: &mut Criterion) {
    let points = blobs(1_000_000, 7);
    let matrix = Array2::from_shape_vec((1_000_000, 4), points.clone()).expect("shape");
    let initial = Array2::from_shape_vec((8, 4), points[..32].to_vec()).expect("shape");
    // What `bench_kmeans.py` passes to scikit-learn: init = first 8 points, n_init=1,
    // max_iter=300, tol=1e-4.
    let settings = KMeansSettings {
        start: KMeansStart::Centres(initial),
        max_iterations: 300,
        tolerance: sklearn_tolerance(matrix.view(), 1e-4),
    };
    let fit = kmeans_with(matrix.view(), &settings).expect("k-means runs");
    println!("analytics/kmeans: linfa inertia {:.6}", fit.inertia);
    if let Some(reference) = sklearn_reference() {
        let expected = reference["inertia"].as_f64().unwrap_or(f64::NAN);
        let relative = (fit.inertia - expected).abs() / expected;
        println!(
            "analytics/kmeans: scikit-learn inertia {expected:.6} in {} iterations; linfa differs by {relative:e} (relative)",
            reference["iterations"]
        );
        assert!(relative <= 1e-6, "inertia differs from scikit-learn by {relative:e}");
    }
    let mut group = c.benchmark_group("analytics/kmeans_1m_x4_k8");
    group.sample_size(10);
    group.bench_function("linfa", |b| b.iter(|| kmeans_with(black_box(matrix.view()), &settings)));
    group.finish();
}

fn statistics(c: &mut Criterion) {
    let values = blobs(5_000, 3);
    let (a, b) = values.split_at(10_000);
    c.bench_function("analytics/welch_10k_vs_10k", |bench| {
        bench.iter(|| welch_t_test(black_box(a), black_box(b)))
    });
    let qs = [0.5, 0.9, 0.95, 0.99, 0.999];
    c.bench_function("analytics/percentiles_10k", |bench| {
        bench.iter(|| quantiles(black_box(a), &qs))
    });
    let series: Vec<f64> = (0..10_000)
        .map(|t| {
            let t = t as f64;
            100.0
                + 0.01 * t
                + 10.0 * (2.0 * std::f64::consts::PI * t / 24.0).sin()
                + values[t as usize % values.len()]
        })
        .collect();
    c.bench_function("analytics/holt_winters_additive_fit_10k", |bench| {
        bench.iter(|| fit(Method::HoltWintersAdditive { period: 24 }, black_box(&series)))
    });
}

criterion_group!(benches, kmeans, statistics);
criterion_main!(benches);
