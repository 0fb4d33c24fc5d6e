//! Time to evaluate one window of 25 features (20 numeric with KLL k = 200 + reference bins,
//! 5 categorical) against a reference profile, and to score it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/common/mod.rs"]
mod common;

use criterion::{Criterion, criterion_group, criterion_main};
use neurocloak_evaluate::{
    Baseline, EvalContext, TrustConfig, evaluate_window, explain, trust_score,
};

fn bench(c: &mut Criterion) {
    let (reference, edges) = common::reference(&common::Scenario {
        seed: 1,
        ..Default::default()
    });
    let window = common::window(
        &common::Scenario {
            seed: 2,
            shift: 0.5,
            shifted: 5,
            ..Default::default()
        },
        Some(&edges),
    );
    let ctx = EvalContext {
        recent_volumes: vec![5000, 5100, 4900],
        ..Default::default()
    };
    // What the collector does: reference importances computed once and stored.
    let stored = EvalContext {
        reference_importances: Some(
            explain::importances(reference.profile.as_ref().unwrap(), &ctx.config.explain)
                .unwrap()
                .1,
        ),
        ..ctx.clone()
    };
    let mut g = c.benchmark_group("evaluate_window_25_features");
    g.bench_function("stored_reference_importances", |b| {
        b.iter(|| evaluate_window(&window, Baseline::Reference(&reference), &stored).unwrap())
    });
    g.bench_function("reference_importances_recomputed", |b| {
        b.iter(|| evaluate_window(&window, Baseline::Reference(&reference), &ctx).unwrap())
    });
    let eval = evaluate_window(&window, Baseline::Reference(&reference), &stored).unwrap();
    let history = [82.0, 80.5, 79.0, 81.0];
    g.bench_function("trust_score", |b| {
        b.iter(|| trust_score(&eval, &TrustConfig::default(), &history).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
