//! Analytic oracles: N(0,1) vs N(μ,1) has W1 = |μ| and KS D = 2Φ(μ/2) − 1; a linear model's
//! attributions are w_i·(x_i − E[x_i]).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;

use neurocloak_evaluate::explain::{ExplainConfig, Surrogate, SurrogateKind, linear_attributions};
use neurocloak_evaluate::sketch::WeightedSample;
use neurocloak_evaluate::stats;
use neurocloak_proto::v1::{SampledRow, TaskType, Value, value};
use statrs::distribution::{ContinuousCDF, Normal};

fn phi(x: f64) -> f64 {
    Normal::new(0.0, 1.0).unwrap().cdf(x)
}

fn sample(kll: &neurocloak_proto::v1::Kll) -> WeightedSample {
    WeightedSample::from_kll(kll, "test").unwrap()
}

#[test]
fn normal_shift_exact_sketches() {
    let (n, m) = (20_000, 15_000);
    let a = common::normal_grid(n, 0.0, 1.0);
    for mu in [0.0, 0.1, 0.5, 1.0, -2.0] {
        let b = common::normal_grid(m, mu, 1.0);
        let (sa, sb) = (
            sample(&common::exact_kll(&a)),
            sample(&common::exact_kll(&b)),
        );
        let ks = stats::ks(&sa, &sb);
        let want_d = 2.0 * phi(mu.abs() / 2.0) - 1.0;
        // Quantile grids: each empirical CDF is within 1/(2n) of Φ.
        let grid = 0.5 / n as f64 + 0.5 / m as f64;
        assert!(
            (ks.statistic - want_d).abs() <= grid + 1e-12,
            "mu {mu}: D {} vs {want_d}",
            ks.statistic
        );
        assert_eq!(ks.error_bound, 0.0);
        let w = stats::wasserstein(&sa, &sb, 1.0);
        // The grids' truncated tails cost O(sqrt(log n)/n).
        assert!(
            (w.distance - mu.abs()).abs() < 2e-3,
            "mu {mu}: W1 {}",
            w.distance
        );
        assert_eq!(w.error_bound, 0.0);
    }
}

#[test]
fn normal_shift_compacted_sketches_stay_within_their_bound() {
    let n = 50_000;
    let a = common::normal_samples(n, 0.0, 1.0, 1);
    for (i, mu) in [0.0, 0.2, 1.0].into_iter().enumerate() {
        let b = common::normal_samples(n, mu, 1.0, 100 + i as u64);
        // Exact statistics of these very samples, and the sketch estimates.
        let (ea, eb) = (
            sample(&common::exact_kll(&a)),
            sample(&common::exact_kll(&b)),
        );
        let exact_d = stats::ks(&ea, &eb).statistic;
        let exact_w = stats::wasserstein(&ea, &eb, 1.0).distance;
        let (ca, cb) = (
            common::compacted_kll(&a, 200, 3),
            common::compacted_kll(&b, 200, 4),
        );
        assert!(ca.levels.len() > 5, "should be compacted");
        let retained: usize = ca.levels.iter().map(|l| l.items.len()).sum();
        assert!(retained < n / 20, "retained {retained}");
        let (sa, sb) = (sample(&ca), sample(&cb));
        let ks = stats::ks(&sa, &sb);
        // sdk-core's uniform (all-queries, 99 %) bound for k = 200, n = 5·10^4: ≈ 0.062 each.
        assert!(
            ks.error_bound > 0.0 && ks.error_bound < 0.15,
            "bound {}",
            ks.error_bound
        );
        assert!(
            (ks.statistic - exact_d).abs() <= ks.error_bound,
            "D {} vs {exact_d}",
            ks.statistic
        );
        let w = stats::wasserstein(&sa, &sb, 1.0);
        assert!(
            (w.distance - exact_w).abs() <= w.error_bound,
            "W1 {} vs {exact_w}",
            w.distance
        );
        // And against the analytic values, adding the sampling error (DKW at 99.9 %).
        let dkw = (f64::ln(2.0 / 0.001) / (2.0 * n as f64)).sqrt() * 2.0;
        assert!((ks.statistic - (2.0 * phi(mu / 2.0) - 1.0)).abs() <= ks.error_bound + dkw);
        // D = 0.38 for μ = 1 clears the bound; D ≈ 0.08 for μ = 0.2 does not and is flagged.
        assert_eq!(ks.reliable, mu == 1.0, "mu {mu}: {ks:?}");
        if mu == 1.0 {
            assert!(ks.p_value < 1e-6 && ks.p_value_range.1 < 1e-6, "{ks:?}");
        }
    }
}

#[test]
fn coarse_state_with_every_item_at_level_one() {
    // A valid KLL state after one full compaction: every other sorted item, weight 2.
    let a = common::normal_grid(4000, 0.0, 1.0);
    let b = common::normal_grid(4000, 0.5, 1.0);
    let coarse = |v: &[f64]| neurocloak_proto::v1::Kll {
        k: 200,
        n: v.len() as u64,
        levels: vec![
            neurocloak_proto::v1::KllLevel { items: vec![] },
            neurocloak_proto::v1::KllLevel {
                items: v.iter().copied().step_by(2).collect(),
            },
        ],
        ..Default::default()
    };
    let ks = stats::ks(&sample(&coarse(&a)), &sample(&coarse(&b)));
    let want = 2.0 * phi(0.25) - 1.0;
    assert!(ks.error_bound > 0.0);
    assert!((ks.statistic - want).abs() <= ks.error_bound + 1.0 / 4000.0);
    let w = stats::wasserstein(&sample(&coarse(&a)), &sample(&coarse(&b)), 1.0);
    assert!((w.distance - 0.5).abs() <= w.error_bound + 2e-3);
}

fn num(x: f64) -> Value {
    Value {
        kind: Some(value::Kind::Number(x)),
    }
}

#[test]
fn linear_surrogate_attributions_are_analytic() {
    // Model output y = 1.5 + 2·x1 − 3·x2 + 0.5·x3 (+ a categorical effect of 4 for "blue").
    let w = [2.0, -3.0, 0.5];
    let rows: Vec<SampledRow> = (0..400)
        .map(|i| {
            let f = i as f64;
            let x = [
                (f * 0.37).sin() * 3.0,
                (f * 0.11).cos() * 2.0 + 1.0,
                (f * 0.73).sin() * 5.0 - 2.0,
            ];
            let color = if i % 3 == 0 { "blue" } else { "red" };
            let y = 1.5
                + w[0] * x[0]
                + w[1] * x[1]
                + w[2] * x[2]
                + if color == "blue" { 4.0 } else { 0.0 };
            let mut features: BTreeMap<String, Value> = ["x1", "x2", "x3"]
                .iter()
                .zip(x)
                .map(|(k, v)| ((*k).to_owned(), num(v)))
                .collect();
            features.insert(
                "color".into(),
                Value {
                    kind: Some(value::Kind::Text(color.into())),
                },
            );
            SampledRow {
                id: format!("r{i}"),
                features,
                prediction: Some(num(y)),
                ..Default::default()
            }
        })
        .collect();
    let refs: Vec<&SampledRow> = rows.iter().collect();
    let cfg = ExplainConfig {
        surrogate: SurrogateKind::Linear,
        ..Default::default()
    };
    let s = Surrogate::fit(&refs, TaskType::Regression, &[], 0, &cfg).unwrap();
    let (weights, intercept) = s.linear().unwrap();
    // Columns are sorted by feature name: color (one-hot "blue" vs baseline "red"), x1, x2, x3.
    let want = [4.0, 2.0, -3.0, 0.5];
    for (got, want) in weights.iter().zip(want) {
        assert!((got - want).abs() < 1e-8, "weight {got} vs {want}");
    }
    assert!((intercept - 1.5).abs() < 1e-8);
    let means: Vec<f64> = (0..3)
        .map(|j| {
            rows.iter()
                .map(|r| match r.features[["x1", "x2", "x3"][j]].kind {
                    Some(value::Kind::Number(v)) => v,
                    _ => unreachable!(),
                })
                .sum::<f64>()
                / rows.len() as f64
        })
        .collect();
    let blue_share = rows
        .iter()
        .filter(|r| r.features["color"].kind == Some(value::Kind::Text("blue".into())))
        .count() as f64
        / rows.len() as f64;
    for row in rows.iter().step_by(37) {
        let got = s.attributions(row).unwrap();
        let x: Vec<f64> = ["x1", "x2", "x3"]
            .iter()
            .map(|k| match row.features[*k].kind {
                Some(value::Kind::Number(v)) => v,
                _ => unreachable!(),
            })
            .collect();
        let analytic = linear_attributions(&w, &x, &means);
        for (k, a) in ["x1", "x2", "x3"].iter().zip(&analytic) {
            assert!((got[*k] - a).abs() < 1e-7, "{k}: {} vs {a}", got[*k]);
        }
        let is_blue = f64::from(u8::from(
            row.features["color"].kind == Some(value::Kind::Text("blue".into())),
        ));
        assert!((got["color"] - 4.0 * (is_blue - blue_share)).abs() < 1e-7);
        // Efficiency: attributions sum to f(x) − E[f(x)].
        let y = match row.prediction.as_ref().unwrap().kind {
            Some(value::Kind::Number(v)) => v,
            _ => unreachable!(),
        };
        let mean_y = rows
            .iter()
            .map(|r| match r.prediction.as_ref().unwrap().kind {
                Some(value::Kind::Number(v)) => v,
                _ => unreachable!(),
            })
            .sum::<f64>()
            / rows.len() as f64;
        assert!((got.values().sum::<f64>() - (y - mean_y)).abs() < 1e-7);
    }
    // Permutation importance ranks the large-effect features first and ignores none.
    let imp = s.permutation_importance(1).unwrap();
    assert!(imp["x2"] > imp["x3"], "{imp:?}");
    assert!(imp.values().all(|v| *v > 0.0), "{imp:?}");
}

fn rows_with(target: impl Fn(&[f64]) -> f64) -> Vec<SampledRow> {
    (0..300)
        .map(|i| {
            let f = i as f64;
            let x = [
                (f * 0.37).sin() * 3.0,
                (f * 0.11).cos() * 2.0,
                (f * 0.73).sin(),
            ];
            let features = ["x1", "x2", "x3"]
                .iter()
                .zip(x)
                .map(|(k, v)| ((*k).to_owned(), num(v)))
                .collect();
            SampledRow {
                id: format!("r{i}"),
                features,
                prediction: Some(num(target(&x))),
                ..Default::default()
            }
        })
        .collect()
}

#[test]
fn tree_surrogate_captures_what_a_line_cannot() {
    // y = x1²: no linear signal at all, a depth-6 tree fits it.
    let rows = rows_with(|x| x[0] * x[0]);
    let refs: Vec<&SampledRow> = rows.iter().collect();
    let fit = |kind| {
        let cfg = ExplainConfig {
            surrogate: kind,
            ..Default::default()
        };
        let s = Surrogate::fit(&refs, TaskType::Regression, &[], 0, &cfg).unwrap();
        (s.linear().is_some(), s.permutation_importance(3).unwrap())
    };
    let (is_linear, tree) = fit(SurrogateKind::DecisionTree);
    assert!(!is_linear);
    assert!(
        tree["x1"] > 0.5 && tree["x1"] > 10.0 * tree["x2"].max(tree["x3"]),
        "{tree:?}"
    );
    let (_, line) = fit(SurrogateKind::Linear);
    assert!(
        line["x1"] < 0.2,
        "a line should explain little of x1²: {line:?}"
    );
}

#[test]
fn attribution_drift_follows_a_change_of_driver() {
    use neurocloak_evaluate::explain::{attribution_drift, shares};
    let fit = |rows: &[SampledRow]| {
        let refs: Vec<&SampledRow> = rows.iter().collect();
        let s = Surrogate::fit(
            &refs,
            TaskType::Regression,
            &[],
            0,
            &ExplainConfig::default(),
        )
        .unwrap();
        s.permutation_importance(5).unwrap()
    };
    let before = fit(&rows_with(|x| 3.0 * x[0] + 0.2 * x[1]));
    let same = fit(&rows_with(|x| 3.0 * x[0] + 0.2 * x[1] + 1.0));
    let after = fit(&rows_with(|x| 0.2 * x[0] + 3.0 * x[1]));
    assert!(attribution_drift(&same, &before) < 0.01);
    let moved = attribution_drift(&after, &before);
    assert!(
        moved > 0.8,
        "{moved}: {:?} vs {:?}",
        shares(&after),
        shares(&before)
    );
}
