//! k-means against scikit-learn (`tests/data/kmeans.json`) and clustering of records.
//!
//! `lloyd_kmeans` from scikit-learn's initial centres must give the same inertia (1e-9
//! relative; only summation order differs), the same iteration count and the same centres. linfa
//! runs a slightly different iteration (see the `cluster` module doc): its inertia is checked
//! only to 1e-3 and the difference is printed.

use llmopt_analytics::{
    Error,
    cluster::{FeatureSpec, cluster_records, kmeans, linfa_kmeans_from, lloyd_kmeans},
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
fn lloyd_matches_scikit_learn_from_the_same_centres() {
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
    let initial = points[..32].to_vec();
    let result = lloyd_kmeans(&points, 4, &initial, 300, 1e-4).unwrap();
    assert_close(result.inertia, num(&data["inertia"]), 1e-9, "inertia");
    assert_eq!(result.iterations as u64, data["iterations"].as_u64().unwrap());
    let expected_centres: Vec<f64> =
        data["centres"].as_array().unwrap().iter().flat_map(f64s).collect();
    assert_all_close(&result.centres, &expected_centres, 1e-9, "centres");
    let expected_labels: Vec<u32> = data["labels_head"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(&result.labels[..expected_labels.len()], &expected_labels[..]);

    let matrix = Array2::from_shape_vec((n, 4), points.clone()).unwrap();
    let initial_matrix = Array2::from_shape_vec((8, 4), initial).unwrap();
    let (_, linfa_inertia) = linfa_kmeans_from(&matrix, &initial_matrix, 300, 1e-4).unwrap();
    println!("linfa inertia {linfa_inertia} vs scikit-learn {}", num(&data["inertia"]));
    assert_close(linfa_inertia, num(&data["inertia"]), 1e-3, "linfa inertia");
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
