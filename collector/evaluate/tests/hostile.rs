//! Hostile profiles: arbitrary, mismatched or non-finite messages never panic; they end up as
//! `Invalid` / `Insufficient` sections with reasons.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;

use neurocloak_evaluate::{
    Baseline, EvalContext, Section, TrustConfig, evaluate_window, trust_score,
};
use neurocloak_proto::v1::{
    CategoricalProfile, ClassificationOutcomes, ColumnProfile, Counters, FixedBins, FrequentItem,
    FrequentItems, GroupProfile, Kll, KllLevel, Latency, Moments, NumericProfile, Outcomes,
    ReferenceProfile, RegressionOutcomes, Reservoir, SampledRow, ScoreHistogram, Value,
    WindowProfile, value,
};
use proptest::prelude::*;
use prost::Message;

fn any_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => -1e6f64..1e6,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => any::<f64>(),
    ]
}

/// Mostly small counts, sometimes one that overflows any sum.
fn count() -> impl Strategy<Value = u64> {
    prop_oneof![8 => 0u64..200, 1 => Just(u64::MAX), 1 => any::<u64>()]
}

fn kll() -> impl Strategy<Value = Kll> {
    (
        0u32..300,
        0u64..5000,
        proptest::collection::vec(proptest::collection::vec(any_f64(), 0..20), 0..6),
    )
        .prop_map(|(k, n, levels)| Kll {
            k,
            n,
            levels: levels.into_iter().map(|items| KllLevel { items }).collect(),
            ..Default::default()
        })
}

fn column() -> impl Strategy<Value = ColumnProfile> {
    (
        0i32..5,
        (0u64..1000, 0u64..1000, 0u64..50),
        proptest::option::of((
            kll(),
            proptest::option::of((
                proptest::collection::vec(any_f64(), 0..6),
                proptest::collection::vec(count(), 0..8),
            )),
        )),
        proptest::option::of((
            0u64..2000,
            proptest::collection::vec(("[a-c]{0,2}", count()), 0..6),
        )),
        (any_f64(), any_f64()),
    )
        .prop_map(
            |(kind, (count, missing, nan), numeric, cat, (mean, m2))| ColumnProfile {
                kind,
                counters: Some(Counters {
                    count,
                    missing,
                    nan,
                    ..Default::default()
                }),
                numeric: numeric.map(|(kll, bins)| NumericProfile {
                    moments: Some(Moments {
                        n: kll.n,
                        mean,
                        m2,
                        min: mean,
                        max: m2,
                    }),
                    kll: Some(kll),
                    bins: bins.map(|(edges, counts)| FixedBins { edges, counts }),
                }),
                categorical: cat.map(|(total, items)| CategoricalProfile {
                    items: Some(FrequentItems {
                        capacity: 8,
                        total,
                        items: items
                            .into_iter()
                            .map(|(value, count)| FrequentItem { value, count })
                            .collect(),
                        max_error: 0,
                    }),
                    hll: None,
                }),
            },
        )
}

fn classification() -> impl Strategy<Value = ClassificationOutcomes> {
    (
        0u32..5,
        proptest::collection::vec(count(), 0..20),
        proptest::collection::vec(proptest::collection::vec(count(), 0..101), 0..4),
        any_f64(),
        0u64..500,
        proptest::collection::vec(count(), 0..4),
    )
        .prop_map(
            |(n_classes, confusion, hists, log_loss_sum, scored, predicted)| {
                let h: Vec<ScoreHistogram> = hists
                    .into_iter()
                    .map(|counts| ScoreHistogram { counts })
                    .collect();
                ClassificationOutcomes {
                    confusion,
                    n_classes,
                    positive_scores: h.clone(),
                    negative_scores: h,
                    log_loss_sum,
                    scored,
                    labelled: scored,
                    predicted,
                }
            },
        )
}

fn outcomes() -> impl Strategy<Value = Outcomes> {
    (
        proptest::option::of(classification()),
        proptest::option::of((
            0u64..100,
            any_f64(),
            any_f64(),
            any_f64(),
            0u64..200,
            any_f64(),
            any_f64(),
        )),
    )
        .prop_map(|(c, r)| Outcomes {
            classification: c,
            regression: r.map(|(labelled, a, b, c, pct_count, d, e)| RegressionOutcomes {
                labelled,
                sum_abs_error: a,
                sum_sq_error: b,
                sum_abs_pct_error: c,
                pct_count,
                sum_label: d,
                sum_label_sq: e,
            }),
        })
}

fn row() -> impl Strategy<Value = SampledRow> {
    (
        "[a-z]{0,3}",
        proptest::collection::btree_map(
            "f[0-3]",
            prop_oneof![
                any_f64().prop_map(|x| Value {
                    kind: Some(value::Kind::Number(x))
                }),
                "[a-c]{1,2}".prop_map(|t| Value {
                    kind: Some(value::Kind::Text(t))
                }),
                any::<bool>().prop_map(|b| Value {
                    kind: Some(value::Kind::Flag(b))
                }),
                Just(Value { kind: None }),
            ],
            0..4,
        ),
        proptest::option::of(any_f64()),
        proptest::collection::vec(any_f64(), 0..3),
    )
        .prop_map(|(id, features, prediction, scores)| SampledRow {
            id,
            features,
            prediction: prediction.map(|x| Value {
                kind: Some(value::Kind::Number(x)),
            }),
            scores,
            ..Default::default()
        })
}

prop_compose! {
    fn profile()(
        features in proptest::collection::btree_map("f[0-3]", column(), 0..4),
        prediction in proptest::option::of(column()),
        outcomes in proptest::option::of(outcomes()),
        groups in proptest::collection::btree_map("[a-z=&]{0,6}", (0u64..200, proptest::option::of(outcomes())), 0..4),
        hdr in proptest::collection::vec(any::<u8>(), 0..64),
        rows in proptest::collection::vec(row(), 0..70),
        task in 0i32..5,
        counts in (0u64..10_000, 0u64..100),
    ) -> WindowProfile {
        WindowProfile {
            schema: Some(neurocloak_proto::v1::Schema { task, ..Default::default() }),
            rows: counts.0,
            errors: counts.1,
            features,
            prediction,
            outcomes,
            groups: groups.into_iter().map(|(k, (count, outcomes))| (k, GroupProfile { count, outcomes })).collect(),
            latency: Some(Latency { hdr_v2: hdr }),
            reservoir: Some(Reservoir { capacity: 64, seen: rows.len() as u64, rows }),
            ..Default::default()
        }
    }
}

fn ctx() -> EvalContext {
    let mut ctx = EvalContext {
        recent_volumes: vec![10, 0, 30],
        ..Default::default()
    };
    ctx.config.drift.min_rows = 1;
    ctx.config.performance.min_labelled = 1;
    ctx.config.fairness.min_group_size = 1;
    ctx.config.explain.min_rows = 5;
    ctx
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_profiles_never_panic(current in profile(), baseline in profile(), history in proptest::collection::vec(any_f64(), 0..4)) {
        let ctx = ctx();
        let reference = ReferenceProfile {
            profile: Some(baseline.clone()),
            bins: baseline.features.iter().filter_map(|(k, c)| c.numeric.as_ref()?.bins.clone().map(|b| (k.clone(), b))).collect(),
            ..Default::default()
        };
        for b in [Baseline::Window(&baseline), Baseline::Reference(&reference), Baseline::None] {
            let e = evaluate_window(&current, b, &ctx).unwrap();
            let t = trust_score(&e, &TrustConfig::default(), &history).unwrap();
            if let Some(s) = t.score {
                prop_assert!((0.0..=100.0).contains(&s), "score {s}");
            }
            // NaN / ±inf would serialise as JSON null and not load back: outputs stay finite.
            let json = serde_json::to_string(&e).unwrap();
            let back: neurocloak_evaluate::WindowEvaluation = serde_json::from_str(&json)
                .unwrap_or_else(|err| panic!("{err}: …{}", &json[err.column().saturating_sub(300)..(err.column() + 20).min(json.len())]));
            prop_assert_eq!(&back.rows, &e.rows);
            let t_json = serde_json::to_string(&t).unwrap();
            let _: neurocloak_evaluate::TrustScore = serde_json::from_str(&t_json).unwrap();
        }
    }

    #[test]
    fn corrupted_wire_bytes_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let good = common::window(&common::Scenario { rows: 300, numeric: 3, categorical: 2, ..Default::default() }, None);
        let mut bytes = good.encode_to_vec();
        for (at, b) in flips {
            let i = at % bytes.len();
            bytes[i] ^= b | 1;
        }
        if let Ok(bad) = WindowProfile::decode(bytes.as_slice()) {
            let e = evaluate_window(&bad, Baseline::Window(&good), &ctx()).unwrap();
            trust_score(&e, &TrustConfig::default(), &[]).unwrap();
        }
    }
}

#[test]
fn malformed_parts_are_reported_not_dropped() {
    let good = common::window(
        &common::Scenario {
            rows: 400,
            numeric: 2,
            categorical: 1,
            ..Default::default()
        },
        None,
    );
    let mut bad = good.clone();
    let col = bad.features.get_mut("num_00").unwrap();
    col.numeric.as_mut().unwrap().kll.as_mut().unwrap().levels[0]
        .items
        .push(f64::NAN);
    bad.outcomes
        .as_mut()
        .unwrap()
        .classification
        .as_mut()
        .unwrap()
        .confusion
        .pop();
    bad.latency = Some(Latency {
        hdr_v2: vec![1, 2, 3, 4, 5],
    });
    let e = evaluate_window(&bad, Baseline::Window(&good), &EvalContext::default()).unwrap();
    let d = e.drift.result().unwrap();
    let skipped = d.skipped.iter().find(|s| s.feature == "num_00").unwrap();
    assert!(
        skipped.invalid && skipped.reason.contains("not finite"),
        "{skipped:?}"
    );
    assert!(
        matches!(&e.performance, Section::Invalid { reason } if reason.contains("confusion")),
        "{:?}",
        e.performance
    );
    assert!(e.operations.result().unwrap().latency_error.is_some());
    // Oversized or absurd configuration is an error, not a silent default.
    let mut ctx = EvalContext::default();
    ctx.config.drift.p_value_threshold = f64::NAN;
    assert!(evaluate_window(&good, Baseline::None, &ctx).is_err());
    let probe = EvalContext {
        perturbation_stability: Some(f64::NAN),
        ..EvalContext::default()
    };
    assert!(evaluate_window(&good, Baseline::None, &probe).is_err());
    let mut t = TrustConfig::default();
    t.weights
        .insert(neurocloak_evaluate::Component::Drift, -1.0);
    assert!(trust_score(&e, &t, &[]).is_err());
    let _ = BTreeMap::<String, f64>::new();
}
