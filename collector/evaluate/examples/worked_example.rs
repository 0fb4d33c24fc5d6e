//! Prints the trust score of a synthetic window with some drift, a fairness gap and unseen
//! categories — the worked example in docs/trust-score.md.
//! Run: cargo run -p neurocloak-evaluate --example worked_example
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/common/mod.rs"]
mod common;

use neurocloak_evaluate::{Baseline, EvalContext, TrustConfig, evaluate_window, trust_score};

fn main() {
    let (reference, edges) = common::reference(&common::Scenario {
        seed: 1,
        ..Default::default()
    });
    let scenario = common::Scenario {
        seed: 2,
        shift: 0.6,
        shifted: 4,
        unseen: 0.03,
        bias: 0.25,
        ..Default::default()
    };
    let window = common::window(&scenario, Some(&edges));
    let ctx = EvalContext {
        recent_volumes: vec![5200, 5100, 4900, 5000, 5300],
        ..Default::default()
    };
    let eval = evaluate_window(&window, Baseline::Reference(&reference), &ctx).unwrap();
    let trust = trust_score(&eval, &TrustConfig::default(), &[88.0, 86.5, 84.0, 83.0]).unwrap();
    println!("{}", serde_json::to_string_pretty(&trust).unwrap());
    let d = eval.drift.result().unwrap();
    println!("drift: {} of {} features drifted", d.drifted, d.evaluated);
    for f in d.features.iter().filter(|f| f.drifted) {
        println!("  {}: {}", f.feature, f.describe());
    }
    if let Some(p) = eval.performance.result() {
        println!(
            "primary metric: {:?} (baseline {:?})",
            p.current.primary(),
            p.baseline.as_ref().and_then(|b| b.primary())
        );
    }
    for a in &eval.fairness.result().unwrap().attributes {
        println!(
            "fairness {}: DP ratio {:?}, EOdds diff {:?}",
            a.attribute, a.demographic_parity_ratio, a.equalized_odds_difference
        );
    }
    let r = eval.robustness.result().unwrap();
    println!("ood: {:?}", r.ood.as_ref().map(|o| o.share));
    if let Some(x) = eval.explainability.result() {
        println!(
            "fidelity {:.3}, attribution drift {:?}",
            x.fidelity, x.attribution_drift
        );
    }
    let o = eval.operations.result().unwrap();
    println!(
        "ops: error rate {:?}, p99 {:?}, volume ratio {:?}",
        o.error_rate,
        o.latency.as_ref().map(|l| l.p99),
        o.volume.as_ref().and_then(|v| v.ratio)
    );
}
