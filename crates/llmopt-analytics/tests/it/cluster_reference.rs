//! k-means against scikit-learn (`tests/data/kmeans.json`) and clustering of records.
//!
//! The product's k-means (linfa, `kmeans_with`) runs like for like with the fixture's
//! `KMeans(algorithm="lloyd", n_init=1, init=first 8 points, max_iter=300, tol=1e-4)`: the same
//! points, the same initial centres, one run, the same iteration limit and scikit-learn's
//! tolerance translated to linfa's scale. It must reach the same labels, centres and inertia;
//! the tolerances are what linfa's iteration (see the `cluster` module doc) leaves between them.

use llmopt_analytics::{
    Error,
    cluster::{
        FeatureSpec, KMeansSettings, KMeansStart, cluster_records, kmeans, kmeans_with,
        sklearn_tolerance,
    },
};
use llmopt_core::{Money, RequestRecord, Usage};
use ndarray::Array2;

use crate::support::{assert_all_close, assert_close, f64s, fixture, num};

/// The generator of `scripts/reference/make_fixtures.py` (`blobs`): splitmix64 uniforms.
pub fn blobs(n: usize, seed: u64) -> Vec<f64> {
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
    let mut out = Vec::with_capacity(n * 4);
    for i in 0..(n * 4) as u64 {
        let mut z = seed.wrapping_add((i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let uniform = (z >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
        let point = (i / 4) as usize;
        out.push(CENTRES[point % 8][(i % 4) as usize] + (uniform - 0.5) * 6.0);
    }
    out
}

#[test]
fn linfa_matches_scikit_learn_from_the_same_centres() {
    let data = fixture("kmeans.json");
    let n = data["n"].as_u64().unwrap() as usize;
    let points = blobs(n, data["seed"].as_u64().unwrap());
    assert_all_close(&points[..4], &f64s(&data["first_point"]), 1e-15, "generator first point");
    assert_all_close(
        &points[points.len() - 4..],
        &f64s(&data["last_point"]),
        1e-15,
        "generator last point",
    );
    let matrix = Array2::from_shape_vec((n, 4), points.clone()).unwrap();
    // scikit-learn's stop, `‖shift‖² ≤ tol × mean variance`, on linfa's `‖shift‖ < tolerance`.
    let tolerance = sklearn_tolerance(matrix.view(), num(&data["tol"]));
    assert_close(tolerance * tolerance, num(&data["tol_squared_shift"]), 1e-12, "tolerance");
    let settings = KMeansSettings {
        start: KMeansStart::Centres(Array2::from_shape_vec((8, 4), points[..32].to_vec()).unwrap()),
        max_iterations: data["max_iter"].as_u64().unwrap(),
        tolerance,
    };
    let fit = kmeans_with(matrix.view(), &settings).unwrap();

    let expected_labels: Vec<usize> = data["labels_head"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(&fit.labels[..expected_labels.len()], &expected_labels[..]);
    let expected_centres: Vec<f64> =
        data["centres"].as_array().unwrap().iter().flat_map(f64s).collect();
    let centres: Vec<f64> = fit.centres.iter().copied().collect();
    let largest_gap =
        centres.iter().zip(&expected_centres).map(|(a, e)| (a - e).abs()).fold(0.0, f64::max);
    let relative_inertia = (fit.inertia - num(&data["inertia"])).abs() / num(&data["inertia"]);
    println!(
        "linfa vs scikit-learn from the same centres: inertia {} vs {} (relative \
         {relative_inertia:e}), largest centre gap {largest_gap:e}",
        fit.inertia, data["inertia"]
    );
    // scikit-learn's centres are the means of its clusters. linfa's m_k-means update moves a
    // centre c to (n·mean + c) / (n + 1): once the labels hold, its gap to the mean after a move
    // of length `shift` is shift / n, and linfa stops on a move below the tolerance.
    let mut sizes = [0_usize; 8];
    for &label in &fit.labels {
        sizes[label] += 1;
    }
    let gap_bound = tolerance / *sizes.iter().min().unwrap() as f64;
    assert!(largest_gap <= gap_bound, "centres differ by {largest_gap:e} > {gap_bound:e}");
    // At a minimum the inertia moves with the square of the centres' gaps: 1e-5 gaps on
    // ~600-point clusters change it by ~1e-8 relative.
    assert_close(fit.inertia, num(&data["inertia"]), 1e-7, "inertia");
}

fn record(index: usize, input: u64, output: u64, model: &str, feature: &str) -> RequestRecord {
    let mut record =
        RequestRecord::new(format!("r{index}"), 1_700_000_000_000 + index as i64, "openai", model);
    record.usage = Some(Usage { input_tokens: input, output_tokens: output, ..Usage::default() });
    record.cost = Some(Money::from_micros((input + 4 * output) as i64));
    record.tags.insert("feature".into(), feature.into());
    record
}

#[test]
fn two_workloads_are_found_and_profiled() {
    // Short chat turns on a small model, long summaries on a large one.
    let mut records = Vec::new();
    for i in 0..60 {
        records.push(record(
            i,
            100 + (i as u64 % 7) * 10,
            50 + (i as u64 % 5) * 5,
            "gpt-4o-mini",
            "chat",
        ));
    }
    for i in 60..100 {
        records.push(record(
            i,
            8_000 + (i as u64 % 9) * 300,
            400 + (i as u64 % 4) * 20,
            "gpt-4o",
            "summarise",
        ));
    }
    let spec = FeatureSpec { tag_keys: vec!["feature".into()], include_latency: false };
    let clusters = cluster_records(&records, &spec, 2..=5, 7).unwrap();
    assert_eq!(clusters.k, 2, "{:?}", clusters.silhouette_by_k);
    assert_eq!(
        clusters.feature_names,
        vec![
            "ln_input_tokens",
            "ln_output_tokens",
            "cached_share",
            "feature=chat",
            "feature=summarise"
        ]
    );
    let mut sizes: Vec<usize> = clusters.profiles.iter().map(|p| p.size).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, vec![40, 60]);
    let large = clusters.profiles.iter().find(|p| p.size == 40).unwrap();
    assert_eq!(large.models.get("gpt-4o"), Some(&40));
    let total: Money = records.iter().filter_map(|r| r.cost).sum();
    let large_cost: Money = records[60..].iter().filter_map(|r| r.cost).sum();
    assert_eq!(large.cost, large_cost);
    assert!((large.cost_share - large_cost.picos() as f64 / total.picos() as f64).abs() < 1e-12);
    // Reproducible with the same seed.
    assert_eq!(cluster_records(&records, &spec, 2..=5, 7).unwrap().labels, clusters.labels);
}

#[test]
fn bad_inputs_give_clear_errors() {
    let spec = FeatureSpec::default();
    let same: Vec<RequestRecord> = (0..10).map(|i| record(i, 100, 10, "m", "x")).collect();
    assert!(matches!(cluster_records(&same, &spec, 2..=4, 1), Err(Error::Degenerate(_))));
    let few: Vec<RequestRecord> =
        (0..2).map(|i| record(i, 100 * (i as u64 + 1), 10, "m", "x")).collect();
    assert!(matches!(cluster_records(&few, &spec, 2..=4, 1), Err(Error::TooFewValues { .. })));
    let mut with_unknown = same.clone();
    with_unknown[3].usage = None;
    assert_eq!(
        cluster_records(&with_unknown, &spec, 2..=4, 1),
        Err(Error::NonFiniteFeature { row: 3, feature: "ln_input_tokens".into() })
    );
    let points = Array2::from_shape_vec((2, 1), vec![1.0, 2.0]).unwrap();
    assert!(matches!(kmeans(&points, 3, 1, 1), Err(Error::TooFewValues { .. })));
}
