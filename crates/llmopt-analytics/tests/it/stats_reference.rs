//! Statistics against scipy and statsmodels (`tests/data/stats.json`).
//!
//! Tolerances: 1e-9 relative for closed forms (t, df, U, z, quantiles, trimmed mean, delta-method
//! bounds); p-values also 1e-9 relative, since statrs' Student t and normal tails are
//! accurate well beyond that at these magnitudes.

use llmopt_analytics::{
    anomaly::robust_z_scores,
    cluster::silhouette_score,
    stats::{
        self, mann_whitney_u, quantiles, relative_difference_ci, trimmed_mean,
        two_proportion_z_test, welch_t_test,
    },
};
use ndarray::Array2;

use crate::support::{assert_all_close, assert_close, f64s, fixture, num};

const CLOSED_FORM: f64 = 1e-9;

#[test]
fn two_sample_tests_match_scipy() {
    let data = fixture("stats.json");
    for case in data["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (a, b) = (f64s(&case["a"]), f64s(&case["b"]));
        let welch = welch_t_test(&a, &b).unwrap();
        assert_close(welch.t, num(&case["welch_t"]), CLOSED_FORM, &format!("{name} Welch t"));
        assert_close(
            welch.degrees_of_freedom,
            num(&case["welch_df"]),
            CLOSED_FORM,
            &format!("{name} Welch df"),
        );
        assert_close(welch.p_value, num(&case["welch_p"]), CLOSED_FORM, &format!("{name} Welch p"));
        let mwu = mann_whitney_u(&a, &b).unwrap();
        assert_close(mwu.u, num(&case["mwu_u"]), CLOSED_FORM, &format!("{name} U"));
        assert_close(
            mwu.p_value,
            num(&case["mwu_p"]),
            CLOSED_FORM,
            &format!("{name} Mann-Whitney p"),
        );
    }
}

#[test]
fn welch_from_streaming_moments_equals_the_slice_version() {
    let data = fixture("stats.json");
    let case = &data["cases"][0];
    let (a, b) = (f64s(&case["a"]), f64s(&case["b"]));
    // Merge moments of two halves, as the collector would across windows.
    let mut left = stats::moments(&a[..70]).unwrap();
    left.merge(&stats::moments(&a[70..]).unwrap());
    let test = stats::welch_t_test_from_moments(&left, &stats::moments(&b).unwrap()).unwrap();
    assert_close(test.t, num(&case["welch_t"]), CLOSED_FORM, "merged Welch t");
}

#[test]
fn descriptive_statistics_match_numpy_and_scipy() {
    let data = fixture("stats.json");
    for case in data["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (a, b) = (f64s(&case["a"]), f64s(&case["b"]));
        let qs = f64s(&case["quantiles"]);
        assert_all_close(
            &quantiles(&a, &qs).unwrap(),
            &f64s(&case["quantiles_a"]),
            CLOSED_FORM,
            &format!("{name} quantiles"),
        );
        assert_close(
            trimmed_mean(&a, 0.1).unwrap(),
            num(&case["trim_mean_a_10"]),
            CLOSED_FORM,
            &format!("{name} trim 10%"),
        );
        assert_close(
            trimmed_mean(&b, 0.25).unwrap(),
            num(&case["trim_mean_b_25"]),
            CLOSED_FORM,
            &format!("{name} trim 25%"),
        );
        let interval = relative_difference_ci(
            &stats::moments(&a).unwrap(),
            &stats::moments(&b).unwrap(),
            0.95,
        )
        .unwrap();
        assert_close(
            interval.estimate,
            num(&case["relative_difference"]),
            CLOSED_FORM,
            &format!("{name} rel diff"),
        );
        assert_close(
            interval.lower,
            num(&case["relative_difference_lower_95"]),
            CLOSED_FORM,
            &format!("{name} lower"),
        );
        assert_close(
            interval.upper,
            num(&case["relative_difference_upper_95"]),
            CLOSED_FORM,
            &format!("{name} upper"),
        );
        assert_all_close(
            &robust_z_scores(&a).unwrap(),
            &f64s(&case["robust_z_a"]),
            CLOSED_FORM,
            &format!("{name} robust z"),
        );
    }
}

#[test]
fn two_proportion_test_matches_statsmodels() {
    let data = fixture("stats.json");
    for case in data["proportions"].as_array().unwrap() {
        let count = |key: &str| case[key].as_u64().unwrap();
        let test = two_proportion_z_test(
            count("successes_a"),
            count("trials_a"),
            count("successes_b"),
            count("trials_b"),
        )
        .unwrap();
        assert_close(test.z, num(&case["z"]), CLOSED_FORM, "proportion z");
        assert_close(test.p_value, num(&case["p"]), CLOSED_FORM, "proportion p");
    }
}

#[test]
fn silhouette_matches_scikit_learn() {
    let data = fixture("stats.json");
    let silhouette = &data["silhouette"];
    let rows: Vec<Vec<f64>> = silhouette["points"].as_array().unwrap().iter().map(f64s).collect();
    let points = Array2::from_shape_vec((rows.len(), 3), rows.concat()).unwrap();
    let labels: Vec<usize> = silhouette["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let score = silhouette_score(points.view(), &labels).unwrap();
    assert_close(score, num(&silhouette["score"]), CLOSED_FORM, "silhouette");
}
