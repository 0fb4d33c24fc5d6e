//! End to end: evaluate_window over SDK-shaped profiles, then the trust score.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Scenario;
use neurocloak_evaluate::{
    Baseline, Component, EvalContext, Section, TrustConfig, WindowEvaluation, evaluate_window,
    trust_score,
};

fn evaluate(current: &Scenario, reference: &Scenario) -> WindowEvaluation {
    let (r, edges) = common::reference(reference);
    let w = common::window(current, Some(&edges));
    let ctx = EvalContext {
        recent_volumes: vec![5000, 5100, 4900, 5050],
        ..Default::default()
    };
    evaluate_window(&w, Baseline::Reference(&r), &ctx).unwrap()
}

fn base() -> Scenario {
    Scenario {
        seed: 1,
        ..Default::default()
    }
}

fn current() -> Scenario {
    Scenario {
        seed: 2,
        ..Default::default()
    }
}

#[test]
fn healthy_window_scores_high_with_every_component() {
    let e = evaluate(&current(), &base());
    let d = e.drift.result().unwrap();
    assert_eq!(d.evaluated, 25, "{:?}", d.skipped);
    assert_eq!(
        d.drifted,
        0,
        "{:#?}",
        d.features.iter().filter(|f| f.drifted).collect::<Vec<_>>()
    );
    assert!(!d.dataset_drift);
    let t = trust_score(&e, &TrustConfig::default(), &[90.0, 91.0]).unwrap();
    for c in &t.components {
        assert!(c.score.is_some(), "{c:?}");
    }
    assert!(t.score.unwrap() > 80.0, "{t:#?}");
    let json = serde_json::to_string(&e).unwrap();
    let back: WindowEvaluation = serde_json::from_str(&json).unwrap();
    assert_eq!(back, e);
    serde_json::to_string(&t).unwrap();
}

#[test]
fn drift_is_found_named_and_lowers_trust() {
    let healthy = evaluate(&current(), &base());
    let drifted = evaluate(
        &Scenario {
            shift: 0.8,
            shifted: 15,
            ..current()
        },
        &base(),
    );
    let d = drifted.drift.result().unwrap();
    assert_eq!(
        d.drifted,
        15,
        "{:?}",
        d.features
            .iter()
            .map(|f| (&f.feature, f.score))
            .collect::<Vec<_>>()
    );
    assert!(d.dataset_drift, "15 of 25 ≥ 50 %");
    let shifted = d.features.iter().find(|f| f.feature == "num_00").unwrap();
    assert!(
        shifted.psi.value > 0.25 && shifted.ks.unwrap().reliable,
        "{shifted:?}"
    );
    let cfg = TrustConfig::default();
    let (h, t) = (
        trust_score(&healthy, &cfg, &[]).unwrap(),
        trust_score(&drifted, &cfg, &[]).unwrap(),
    );
    assert!(t.score.unwrap() < h.score.unwrap());
    let text: Vec<&str> = t.reasons.iter().map(|r| r.text.as_str()).collect();
    assert!(
        text.iter()
            .any(|r| r.starts_with("feature `num_") && r.contains("drifted: Wasserstein")),
        "{text:?}"
    );
}

#[test]
fn worse_inputs_never_raise_the_score() {
    let cfg = TrustConfig::default();
    let score = |s: Scenario| {
        trust_score(&evaluate(&s, &base()), &cfg, &[])
            .unwrap()
            .score
            .unwrap()
    };
    let mut last = score(current());
    for worse in [
        Scenario {
            unseen: 0.1,
            ..current()
        },
        Scenario {
            unseen: 0.1,
            bias: 0.4,
            ..current()
        },
        Scenario {
            unseen: 0.1,
            bias: 0.4,
            noise: 0.3,
            ..current()
        },
        Scenario {
            unseen: 0.1,
            bias: 0.4,
            noise: 0.3,
            shift: 1.0,
            shifted: 5,
            ..current()
        },
    ] {
        let now = score(worse);
        assert!(now <= last + 1e-9, "{now} > {last}");
        last = now;
    }
    assert!(last < 70.0, "{last}");
}

#[test]
fn without_baseline_components_are_left_out_not_guessed() {
    let w = common::window(&current(), None);
    let e = evaluate_window(&w, Baseline::None, &EvalContext::default()).unwrap();
    assert!(matches!(e.drift, Section::Insufficient { .. }));
    let t = trust_score(&e, &TrustConfig::default(), &[]).unwrap();
    let drift = t
        .components
        .iter()
        .find(|c| c.component == Component::Drift)
        .unwrap();
    assert!(drift.score.is_none() && drift.effective_weight == 0.0 && drift.left_out.is_some());
    let total: f64 = t.components.iter().map(|c| c.effective_weight).sum();
    assert!((total - 1.0).abs() < 1e-12, "weights renormalised: {total}");
}

/// A robustness probe compares the model with itself, so it is scored even without a baseline;
/// only the out-of-distribution share needs one.
#[test]
fn a_probe_is_scored_without_a_baseline() {
    let w = common::window(&current(), None);
    let robustness = |e: &WindowEvaluation| {
        let t = trust_score(e, &TrustConfig::default(), &[]).unwrap();
        t.components
            .into_iter()
            .find(|c| c.component == Component::Robustness)
            .unwrap()
    };
    let none = evaluate_window(&w, Baseline::None, &EvalContext::default()).unwrap();
    assert!(matches!(none.robustness, Section::Insufficient { .. }));
    assert!(robustness(&none).score.is_none());

    let probed = |stability: f64| {
        let ctx = EvalContext {
            perturbation_stability: Some(stability),
            ..Default::default()
        };
        evaluate_window(&w, Baseline::None, &ctx).unwrap()
    };
    let (stable, shaky) = (probed(1.0), probed(0.6));
    let r = shaky.robustness.result().unwrap();
    assert_eq!(r.perturbation_stability, Some(0.6));
    assert!(r.ood.is_none());
    let (hi, lo) = (robustness(&stable), robustness(&shaky));
    assert!(hi.score.unwrap() > lo.score.unwrap(), "{hi:?} {lo:?}");
}

#[test]
fn trailing_window_baseline_uses_sketch_bins() {
    let b = common::window(&base(), None);
    let w = common::window(
        &Scenario {
            shift: 1.0,
            shifted: 2,
            ..current()
        },
        None,
    );
    let e = evaluate_window(&w, Baseline::Window(&b), &EvalContext::default()).unwrap();
    let d = e.drift.result().unwrap();
    assert_eq!(d.drifted, 2);
    assert!(
        d.features
            .iter()
            .filter(|f| f.numeric)
            .all(|f| f.binning == neurocloak_evaluate::drift::Binning::FromSketch)
    );
}

#[test]
fn drifted_features_are_named_ahead_of_drifted_predictions() {
    let e = evaluate(
        &Scenario {
            shift: 0.8,
            shifted: 3,
            bias: 0.4,
            ..current()
        },
        &base(),
    );
    let d = e.drift.result().unwrap();
    assert!(
        d.prediction.as_ref().is_some_and(|p| p.drifted),
        "the scenario must drift the predictions too: {:?}",
        d.prediction
    );
    let t = trust_score(&e, &TrustConfig::default(), &[]).unwrap();
    let first_drift = t
        .reasons
        .iter()
        .find(|r| r.component == Component::Drift)
        .unwrap();
    assert!(
        first_drift.text.starts_with("feature `num_0"),
        "{:?}",
        t.reasons
    );
}
