//! Compares the evaluations with scipy / scikit-learn / fairlearn on the committed vectors
//! from `oracle/gen_vectors.py` (no Python needed at test time).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;

use neurocloak_evaluate::drift::{
    Binning, DriftConfig, DriftTest, FeatureDriftConfig, column_drift,
};
use neurocloak_evaluate::fairness::{FairnessConfig, evaluate_fairness};
use neurocloak_evaluate::performance::{PerformanceConfig, classification, regression};
use neurocloak_evaluate::sketch::WeightedSample;
use neurocloak_evaluate::stats;
use neurocloak_proto::v1::{
    ClassificationOutcomes, GroupProfile, Outcomes, RegressionOutcomes, ScoreHistogram,
};
use serde_json::Value;

fn vectors() -> Value {
    serde_json::from_str(include_str!("../oracle/vectors.json")).unwrap()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(f).collect()
}

fn ints(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

fn close(got: f64, want: f64, tol: f64, what: &str) {
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got}, want {want} (tol {tol})"
    );
}

#[test]
fn binned_psi_js_chi_square_match_scipy_exactly() {
    let v = vectors();
    for case in v["drift_binned"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (r, c) = (ints(&case["reference"]), ints(&case["current"]));
        let (rf, cf): (Vec<f64>, Vec<f64>) = (
            r.iter().map(|&x| x as f64).collect(),
            c.iter().map(|&x| x as f64).collect(),
        );
        close(stats::psi(&rf, &cf, 1e-4), f(&case["psi"]), 1e-9, name);
        close(
            stats::jensen_shannon(&rf, &cf),
            f(&case["jensen_shannon"]),
            1e-9,
            name,
        );
        let chi = stats::chi_square(&rf, &cf, 1e-4).unwrap();
        let want = &case["chi_square"];
        close(
            chi.statistic,
            f(&want["statistic"]),
            1e-9 * f(&want["statistic"]).max(1.0),
            name,
        );
        close(chi.p_value, f(&want["p_value"]), 1e-9, name);
        assert_eq!(chi.dof, want["dof"].as_u64().unwrap());

        // The same numbers through the column-level API, from wire messages.
        let cfg = DriftConfig {
            min_rows: 1,
            ..Default::default()
        };
        let drift = if case["edges"].is_array() {
            let edges = floats(&case["edges"]);
            let bins = |counts: Vec<u64>| neurocloak_proto::v1::FixedBins {
                edges: edges.clone(),
                counts,
            };
            // KLL content is irrelevant to the binned statistics; give each column one item per bin.
            let col = |counts: &[u64]| {
                let items: Vec<f64> = edges
                    .iter()
                    .copied()
                    .chain([edges[edges.len() - 1] + 1.0])
                    .collect();
                common::numeric_column(
                    &items,
                    common::exact_kll(&items),
                    Some(bins(counts.to_vec())),
                )
            };
            let reference = bins(r.clone());
            column_drift("x", &col(&c), &col(&r), Some(&reference), 5000, &cfg).unwrap()
        } else {
            let labels: Vec<String> = case["labels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l.as_str().unwrap().to_owned())
                .collect();
            let pairs = |counts: &[u64]| -> Vec<(&str, u64)> {
                labels
                    .iter()
                    .map(String::as_str)
                    .zip(counts.iter().copied())
                    .filter(|p| p.1 > 0)
                    .collect()
            };
            column_drift(
                "x",
                &common::categorical_column(&pairs(&c)),
                &common::categorical_column(&pairs(&r)),
                None,
                2000,
                &cfg,
            )
            .unwrap()
        };
        assert_eq!(drift.binning, Binning::Exact, "{name}");
        close(drift.psi.value, f(&case["psi"]), 1e-9, name);
        close(drift.jensen_shannon, f(&case["jensen_shannon"]), 1e-9, name);
        close(
            drift.chi_square.unwrap().p_value,
            f(&want["p_value"]),
            1e-9,
            name,
        );
    }
}

#[test]
fn ks_and_wasserstein_match_scipy_within_the_sketch_bound() {
    let v = vectors();
    for (i, case) in v["ks"].as_array().unwrap().iter().enumerate() {
        let (a, b) = (floats(&case["reference"]), floats(&case["current"]));
        let want_d = f(&case["ks_statistic"]);
        let want_w = f(&case["wasserstein"]);
        // Lossless sketches: exact up to float rounding.
        let (sa, sb) = (
            WeightedSample::from_kll(&common::exact_kll(&a), "a").unwrap(),
            WeightedSample::from_kll(&common::exact_kll(&b), "b").unwrap(),
        );
        let ks = stats::ks(&sa, &sb);
        close(ks.statistic, want_d, 1e-12, "exact D");
        assert_eq!(ks.error_bound, 0.0);
        close(
            ks.p_value,
            f(&case["ks_p_value_stephens"]),
            1e-9,
            "KS p (Stephens)",
        );
        let w = stats::wasserstein(&sa, &sb, f(&case["reference_std"]));
        close(w.distance, want_w, 1e-9, "exact W1");
        close(
            w.normalized,
            want_w / f(&case["reference_std"]),
            1e-9,
            "normed W1",
        );

        // Compacted sketches (k = 64 so that compaction really happens): within ε₁ + ε₂.
        let (ca, cb) = (
            common::compacted_kll(&a, 64, 7 + i as u64),
            common::compacted_kll(&b, 64, 11 + i as u64),
        );
        assert!(ca.levels.len() > 2, "test sketch should be compacted");
        let (sa, sb) = (
            WeightedSample::from_kll(&ca, "a").unwrap(),
            WeightedSample::from_kll(&cb, "b").unwrap(),
        );
        let ks = stats::ks(&sa, &sb);
        assert!(ks.error_bound > 0.0);
        close(ks.statistic, want_d, ks.error_bound, "compacted D");
        let w = stats::wasserstein(&sa, &sb, f(&case["reference_std"]));
        close(w.distance, want_w, w.error_bound, "compacted W1");
    }
}

fn hist(v: &Value) -> Vec<ScoreHistogram> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| ScoreHistogram { counts: ints(h) })
        .collect()
}

#[test]
fn classification_matches_sklearn() {
    let v = vectors();
    let cfg = PerformanceConfig::default();
    for case in v["classification"].as_array().unwrap() {
        let outcomes = ClassificationOutcomes {
            confusion: ints(&case["confusion"]),
            n_classes: case["n_classes"].as_u64().unwrap() as u32,
            positive_scores: hist(&case["positive_scores"]),
            negative_scores: hist(&case["negative_scores"]),
            log_loss_sum: f(&case["log_loss_sum"]),
            scored: case["scored"].as_u64().unwrap(),
            labelled: case["scored"].as_u64().unwrap(),
            predicted: Vec::new(),
        };
        let m = classification(&outcomes, &cfg).unwrap();
        close(m.accuracy, f(&case["accuracy"]), 1e-12, "accuracy");
        close(
            m.macro_precision,
            f(&case["precision_macro"]),
            1e-12,
            "macro precision",
        );
        close(
            m.macro_recall,
            f(&case["recall_macro"]),
            1e-12,
            "macro recall",
        );
        close(m.macro_f1, f(&case["f1_macro"]), 1e-12, "macro f1");
        close(m.log_loss.unwrap(), f(&case["log_loss"]), 1e-9, "log loss");
        let bound = m.roc_auc_error_bound.unwrap();
        assert!(bound < 0.01, "binning error bound {bound}");
        close(m.roc_auc.unwrap(), f(&case["roc_auc"]), bound, "roc auc");
        if outcomes.n_classes == 2 {
            close(
                m.precision.unwrap(),
                f(&case["precision"]),
                1e-12,
                "precision",
            );
            close(m.recall.unwrap(), f(&case["recall"]), 1e-12, "recall");
            close(m.f1.unwrap(), f(&case["f1"]), 1e-12, "f1");
            close(
                m.expected_calibration_error.unwrap(),
                f(&case["ece"]),
                m.calibration_error_bound.unwrap(),
                "ece",
            );
        }
    }
}

#[test]
fn regression_matches_sklearn() {
    let v = vectors();
    for case in v["regression"].as_array().unwrap() {
        let r = RegressionOutcomes {
            labelled: case["labelled"].as_u64().unwrap(),
            sum_abs_error: f(&case["sum_abs_error"]),
            sum_sq_error: f(&case["sum_sq_error"]),
            sum_abs_pct_error: f(&case["sum_abs_pct_error"]),
            pct_count: case["pct_count"].as_u64().unwrap(),
            sum_label: f(&case["sum_label"]),
            sum_label_sq: f(&case["sum_label_sq"]),
        };
        let m = regression(&r, &PerformanceConfig::default()).unwrap();
        close(m.mae, f(&case["mae"]), 1e-12, "mae");
        close(m.rmse, f(&case["rmse"]), 1e-12, "rmse");
        close(m.mape.unwrap(), f(&case["mape"]), 1e-12, "mape");
        // R² from running sums loses a few digits to cancellation (Σy² − (Σy)²/n).
        close(m.r2.unwrap(), f(&case["r2"]), 1e-9, "r2");
    }
}

#[test]
fn fairness_matches_fairlearn() {
    let v = vectors();
    for case in v["fairness"].as_array().unwrap() {
        let groups: BTreeMap<String, GroupProfile> = case["groups"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, g)| {
                let c = ClassificationOutcomes {
                    confusion: ints(&g["confusion"]),
                    n_classes: 2,
                    predicted: ints(&g["predicted"]),
                    ..Default::default()
                };
                let outcomes = Outcomes {
                    classification: Some(c),
                    regression: None,
                };
                (
                    k.clone(),
                    GroupProfile {
                        count: g["count"].as_u64().unwrap(),
                        outcomes: Some(outcomes),
                    },
                )
            })
            .collect();
        let report = evaluate_fairness(
            &groups,
            &FairnessConfig {
                min_group_size: 1,
                ..Default::default()
            },
        )
        .unwrap();
        let expected = case["expected"].as_object().unwrap();
        assert_eq!(report.attributes.len(), expected.len());
        for a in &report.attributes {
            let want = &expected[&a.attribute];
            let name = &a.attribute;
            close(
                a.demographic_parity_difference.unwrap(),
                f(&want["demographic_parity_difference"]),
                1e-12,
                name,
            );
            close(
                a.demographic_parity_ratio.unwrap(),
                f(&want["demographic_parity_ratio"]),
                1e-12,
                name,
            );
            close(
                a.equalized_odds_difference.unwrap(),
                f(&want["equalized_odds_difference"]),
                1e-12,
                name,
            );
            close(
                a.equal_opportunity_difference.unwrap(),
                f(&want["equal_opportunity_difference"]),
                1e-12,
                name,
            );
            for g in &a.groups {
                let w = &want["groups"][&g.group];
                close(
                    g.selection_rate.unwrap(),
                    f(&w["selection_rate"]),
                    1e-12,
                    &g.group,
                );
                close(g.true_positive_rate.unwrap(), f(&w["tpr"]), 1e-12, &g.group);
                close(
                    g.false_positive_rate.unwrap(),
                    f(&w["fpr"]),
                    1e-12,
                    &g.group,
                );
            }
        }
    }
}

#[test]
fn configured_tests_decide_with_their_thresholds() {
    // Same data, three configurations: the decision follows the configured test/threshold.
    let a = common::normal_grid(2000, 0.0, 1.0);
    let b = common::normal_grid(2000, 0.15, 1.0);
    let col = |v: &[f64]| common::numeric_column(v, common::exact_kll(v), None);
    let mut cfg = DriftConfig::default();
    let d = column_drift("x", &col(&b), &col(&a), None, 2000, &cfg).unwrap();
    assert_eq!(d.test, DriftTest::Wasserstein); // > 1000 reference rows
    assert!(d.drifted, "W1/std = 0.15 > 0.1");
    cfg.features.insert(
        "x".into(),
        FeatureDriftConfig {
            threshold: Some(0.2),
            ..Default::default()
        },
    );
    assert!(
        !column_drift("x", &col(&b), &col(&a), None, 2000, &cfg)
            .unwrap()
            .drifted
    );
    cfg.features.insert(
        "x".into(),
        FeatureDriftConfig {
            test: Some(DriftTest::Ks),
            ..Default::default()
        },
    );
    let d = column_drift("x", &col(&b), &col(&a), None, 2000, &cfg).unwrap();
    assert_eq!(d.test, DriftTest::Ks);
    assert!(d.drifted && d.score < 0.05, "p = {}", d.score);
    let small = column_drift("x", &col(&b), &col(&a), None, 500, &DriftConfig::default()).unwrap();
    assert_eq!(small.test, DriftTest::Ks);
}

#[test]
fn benjamini_hochberg_tempers_a_lone_borderline_feature() {
    use neurocloak_evaluate::drift::evaluate_drift;
    use neurocloak_proto::v1::WindowProfile;
    // n = m = 800 (≤ 1000: KS decides). `x` shifted by 0.18 σ gives p ≈ 0.03; three unchanged
    // features give p = 1. Alone it drifts; across 4 tests its BH q ≈ 0.12 does not.
    let base = common::normal_grid(800, 0.0, 1.0);
    let moved = common::normal_grid(800, 0.18, 1.0);
    let col = |v: &[f64]| common::numeric_column(v, common::exact_kll(v), None);
    let profile = |x: &[f64]| WindowProfile {
        rows: 800,
        features: [
            ("x", x),
            ("a", &base[..]),
            ("b", &base[..]),
            ("c", &base[..]),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), col(v)))
        .collect(),
        ..Default::default()
    };
    let (current, reference) = (profile(&moved), profile(&base));
    let plain = evaluate_drift(
        &current,
        &reference,
        &BTreeMap::new(),
        &DriftConfig::default(),
    )
    .unwrap();
    let x = plain.features.iter().find(|f| f.feature == "x").unwrap();
    assert_eq!(x.test, DriftTest::Ks);
    assert!(
        x.drifted && x.score > 0.01 && x.score < 0.05,
        "p = {}",
        x.score
    );
    let cfg = DriftConfig {
        benjamini_hochberg: true,
        ..Default::default()
    };
    let adjusted = evaluate_drift(&current, &reference, &BTreeMap::new(), &cfg).unwrap();
    let x = adjusted.features.iter().find(|f| f.feature == "x").unwrap();
    let q = x.adjusted_p_value.unwrap();
    assert!(
        (q - (x.score * 4.0).min(1.0)).abs() < 1e-12,
        "q = {q}, p = {}",
        x.score
    );
    assert!(!x.drifted && adjusted.drifted == 0);
    assert!(x.describe().contains(&format!("p={q:.3}")));
}

#[test]
fn configuration_loads_from_partial_json() {
    // What a project stores: only the overrides; everything else keeps its default.
    let cfg: neurocloak_evaluate::EvalConfig = serde_json::from_str(
        r#"{"drift": {"numeric_test": "psi", "features": {"age": {"test": "ks", "threshold": 0.01},
                      "id": {"ignore": true}}},
            "fairness": {"min_group_size": 100}}"#,
    )
    .unwrap();
    assert_eq!(cfg.drift.numeric_test, Some(DriftTest::Psi));
    assert_eq!(cfg.drift.features["age"].threshold, Some(0.01));
    assert!(cfg.drift.features["id"].ignore);
    assert_eq!(cfg.drift.p_value_threshold, 0.05);
    assert_eq!(cfg.fairness.min_group_size, 100);
    assert!(cfg.validate().is_ok());
    let trust: neurocloak_evaluate::TrustConfig = serde_json::from_str(
        r#"{"weights": {"drift": 0.5}, "p99_latency": {"full_at": 50000, "zero_at": 500000}}"#,
    )
    .unwrap();
    assert_eq!(
        trust.weights.len(),
        1,
        "weights given replace the default map"
    );
    assert!(trust.validate().is_ok());
}
