//! The contract with sdk-core: profiles produced by the real SDK `Monitor` (reference, window,
//! sketches, bins, outcomes, groups, reservoir) evaluate correctly — statistics agree with the
//! same numbers computed directly from the raw rows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use neurocloak_core::{
    Batch, Column, ColumnData, FeatureKind, MemorySink, Monitor, MonitorConfig, TaskType,
};
use neurocloak_evaluate::drift::Binning;
use neurocloak_evaluate::performance::PerformanceMetrics;
use neurocloak_evaluate::sketch::WeightedSample;
use neurocloak_evaluate::{
    Baseline, EvalContext, TrustConfig, evaluate_window, stats, trust_score,
};

struct Data {
    income: Vec<f64>,
    age: Vec<f64>,
    city: Vec<&'static str>,
    sex: Vec<&'static str>,
    label: Vec<f64>,
    predicted: Vec<f64>,
    scores: Vec<f64>,
}

fn data(n: usize, shift: f64, seed: u64) -> Data {
    let income = common::normal_samples(n, 50.0 + shift * 10.0, 10.0, seed);
    let age = common::normal_samples(n, 40.0, 12.0, seed + 1);
    let u = common::normal_samples(3 * n, 0.0, 1.0, seed + 2);
    let city = (0..n)
        .map(|i| ["paris", "lyon", "nice"][(u[i].abs() * 1.7) as usize % 3])
        .collect();
    let sex = (0..n)
        .map(|i| if u[n + i] > 0.0 { "F" } else { "M" })
        .collect();
    let mut label = Vec::new();
    let mut predicted = Vec::new();
    let mut scores = Vec::new();
    for i in 0..n {
        let p = 1.0 / (1.0 + (-(income[i] - 50.0) / 8.0).exp());
        label.push(f64::from(u8::from(u[2 * n + i] * 0.3 + p > 0.5)));
        predicted.push(f64::from(u8::from(p >= 0.5)));
        scores.extend([1.0 - p, p]);
    }
    Data {
        income,
        age,
        city,
        sex,
        label,
        predicted,
        scores,
    }
}

fn batch(d: &Data) -> Batch<'_> {
    Batch {
        features: vec![
            Column::new("income", ColumnData::F64(&d.income)),
            Column::new("age", ColumnData::F64(&d.age)),
            Column::new("city", ColumnData::Str(&d.city)),
            Column::new("sex", ColumnData::Str(&d.sex)),
        ],
        predictions: Some(ColumnData::F64(&d.predicted)),
        labels: Some(ColumnData::F64(&d.label)),
        ids: None,
        scores: Some(&d.scores),
        scores_per_row: 2,
        timestamps_ms: None,
    }
}

#[test]
fn sdk_profiles_evaluate_like_the_raw_data() {
    let sink = Arc::new(MemorySink::new());
    let mut cfg = MonitorConfig::new("demo", "credit", "1");
    cfg.task = TaskType::BinaryClassification;
    cfg.features = Some(vec![
        ("income".into(), FeatureKind::Numeric),
        ("age".into(), FeatureKind::Numeric),
        ("city".into(), FeatureKind::Categorical),
        ("sex".into(), FeatureKind::Categorical),
    ]);
    cfg.sensitive = vec!["sex".into()];
    // One long window so the test cannot straddle a boundary (except at midnight UTC).
    cfg.window = Duration::from_secs(86_400);
    let monitor = Monitor::with_sink(cfg, sink.clone()).unwrap();
    let reference_data = data(20_000, 0.0, 1);
    let reference = monitor
        .set_reference(&batch(&reference_data))
        .unwrap()
        .to_proto();
    let current = data(20_000, 0.5, 99);
    monitor.log_batch(&batch(&current)).unwrap();
    monitor.flush(Duration::from_secs(5)).unwrap();
    let windows = sink.take_windows();
    let window = windows.iter().max_by_key(|w| w.rows).unwrap();
    assert_eq!(
        window.rows,
        20_000,
        "window split across a boundary? {}",
        windows.len()
    );

    let eval = evaluate_window(
        window,
        Baseline::Reference(&reference),
        &EvalContext::default(),
    )
    .unwrap();
    let drift = eval.drift.result().unwrap();
    assert!(drift.skipped.is_empty(), "{:?}", drift.skipped);
    let income = drift
        .features
        .iter()
        .find(|f| f.feature == "income")
        .unwrap();
    let age = drift.features.iter().find(|f| f.feature == "age").unwrap();
    assert!(income.drifted && !age.drifted, "{income:?} {age:?}");
    // Exact bins at the reference deciles: PSI equals the one from the raw values.
    assert_eq!(income.binning, Binning::Exact);
    let edges = &reference.bins["income"].edges;
    let raw = |v: &[f64]| {
        common::bin_counts(v, edges)
            .counts
            .iter()
            .map(|&c| c as f64)
            .collect::<Vec<_>>()
    };
    let psi = stats::psi(&raw(&reference_data.income), &raw(&current.income), 1e-4);
    assert!(
        (income.psi.value - psi).abs() < 1e-9,
        "{} vs {psi}",
        income.psi.value
    );
    // KS from the SDK's compacted sketches is within ε₁+ε₂ of the exact D on the raw rows.
    let exact = |v: &[f64]| WeightedSample::from_kll(&common::exact_kll(v), "raw").unwrap();
    let exact_d = stats::ks(&exact(&reference_data.income), &exact(&current.income)).statistic;
    let ks = income.ks.unwrap();
    assert!(ks.error_bound > 0.0, "20 000 rows should have compacted");
    assert!(
        (ks.statistic - exact_d).abs() <= ks.error_bound,
        "{} vs {exact_d} ± {}",
        ks.statistic,
        ks.error_bound
    );

    let exact_w =
        stats::wasserstein(&exact(&reference_data.income), &exact(&current.income), 1.0).distance;
    let w = income.wasserstein.unwrap();
    assert!(
        (w.distance - exact_w).abs() <= w.error_bound,
        "{} vs {exact_w} ± {}",
        w.distance,
        w.error_bound
    );

    // Performance equals the confusion counts of the raw rows.
    let perf = eval.performance.result().unwrap();
    let PerformanceMetrics::Classification(m) = &perf.current else {
        panic!("{perf:?}")
    };
    let correct = current
        .label
        .iter()
        .zip(&current.predicted)
        .filter(|(a, b)| a == b)
        .count();
    assert_eq!(m.labelled, 20_000);
    assert!((m.accuracy - correct as f64 / 20_000.0).abs() < 1e-12);
    assert!(
        m.roc_auc.unwrap() > 0.8 && m.roc_auc_error_bound.unwrap() < 0.01,
        "{m:?}"
    );

    // Fairness: per-group selection rates equal the raw ones.
    let fair = eval.fairness.result().unwrap();
    let sex = fair
        .attributes
        .iter()
        .find(|a| a.attribute == "sex")
        .unwrap();
    for g in &sex.groups {
        let who = g.group.strip_prefix("sex=").unwrap();
        let idx: Vec<usize> = (0..20_000).filter(|&i| current.sex[i] == who).collect();
        let selected = idx.iter().filter(|&&i| current.predicted[i] == 1.0).count();
        assert!(
            (g.selection_rate.unwrap() - selected as f64 / idx.len() as f64).abs() < 1e-12,
            "{g:?}"
        );
    }

    // Explainability from the SDK's reservoir, and a trust score with income named.
    assert!(
        eval.explainability.result().is_some(),
        "{:?}",
        eval.explainability
    );
    let trust = trust_score(&eval, &TrustConfig::default(), &[]).unwrap();
    assert!(trust.score.is_some());
    assert!(
        trust
            .reasons
            .iter()
            .any(|r| r.text.starts_with("feature `income` drifted")),
        "{:?}",
        trust.reasons
    );
}
