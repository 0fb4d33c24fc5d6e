#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Property tests: merging the profiles of two halves of a stream equals profiling the whole
//! stream (exactly for counters, bins, frequent items below capacity, confusion counts and HLL
//! registers; within floating-point tolerance for moments; within the documented bound for
//! KLL); wire round trips are lossless; the same input gives the same bytes.

mod common;

use neurocloak_core::profile::{ColumnProfile, WindowProfile, merge_parts};
use neurocloak_core::sketch::{FixedBins, FrequentItems, Hll, Kll, Moments};
use neurocloak_core::{FeatureKind, Monitor, Prediction, TaskType, Value};
use neurocloak_proto as pb;
use proptest::prelude::*;
use prost::Message;

fn number() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => -1e6f64..1e6,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(5e-324),
        1 => Just(-0.0),
    ]
}

fn word() -> impl Strategy<Value = String> {
    "[a-f]{0,2}"
}

#[derive(Debug, Clone)]
struct Row {
    x: f64,
    c: String,
    b: bool,
    sex: bool,
    pred: u8,
    label: Option<u8>,
    score: f64,
    id: u32,
}

fn row() -> impl Strategy<Value = Row> {
    (
        number(),
        word(),
        any::<bool>(),
        any::<bool>(),
        0u8..3,
        proptest::option::of(0u8..3),
        0.0f64..=1.0,
        any::<u32>(),
    )
        .prop_map(|(x, c, b, sex, pred, label, score, id)| Row {
            x,
            c,
            b,
            sex,
            pred,
            label,
            score,
            id,
        })
}

const CLASSES: [&str; 3] = ["a", "b", "c"];

fn record(m: &Monitor, rows: &[Row]) {
    for (i, r) in rows.iter().enumerate() {
        let id = r.id.to_string();
        let rest = (1.0 - r.score) / 2.0;
        let scores = [r.score, rest, rest];
        m.log(
            &[
                ("x", Value::Number(r.x)),
                ("c", Value::Text(&r.c)),
                ("b", Value::Bool(r.b)),
                ("sex", Value::Text(if r.sex { "F" } else { "M" })),
            ],
            &Prediction {
                id: Some(&id),
                // Explicit event times: the recording clock would differ between runs.
                timestamp_ms: Some(1_700_000_000_000 + i as i64),
                prediction: Value::Text(CLASSES[r.pred as usize]),
                label: r
                    .label
                    .map_or(Value::Missing, |l| Value::Number(f64::from(l))),
                scores: &scores,
            },
        )
        .unwrap();
    }
}

fn profile(rows: &[Row]) -> WindowProfile {
    let (m, sink) = common::monitor(|c| {
        c.task = TaskType::MulticlassClassification;
        c.classes = CLASSES.iter().map(|s| (*s).to_owned()).collect();
        c.sensitive = vec!["sex".into()];
        c.features = Some(vec![
            ("x".into(), FeatureKind::Numeric),
            ("c".into(), FeatureKind::Categorical),
            ("b".into(), FeatureKind::Boolean),
            ("sex".into(), FeatureKind::Categorical),
        ]);
        c.hash_sample_rate = 0.5;
    });
    m.set_reference_edges([("x".to_owned(), vec![-1e5, 0.0, 1e5])].into())
        .unwrap();
    record(&m, rows);
    common::flushed_or_empty(&m, &sink)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
}

fn assert_column_matches(name: &str, merged: &ColumnProfile, whole: &ColumnProfile) {
    assert_eq!(merged.counters, whole.counters, "{name} counters");
    assert_eq!(merged.categorical, whole.categorical, "{name} items / HLL");
    match (&merged.numeric, &whole.numeric) {
        (Some(a), Some(b)) => {
            assert_eq!(a.bins, b.bins, "{name} bins");
            let (ma, mb) = (a.moments, b.moments);
            assert_eq!((ma.n(), ma.min(), ma.max()), (mb.n(), mb.min(), mb.max()));
            assert!(
                close(ma.mean(), mb.mean()),
                "{name} mean {} vs {}",
                ma.mean(),
                mb.mean()
            );
            assert!(
                close(ma.m2(), mb.m2()),
                "{name} m2 {} vs {}",
                ma.m2(),
                mb.m2()
            );
            assert_eq!(a.kll.n(), b.kll.n());
        }
        (None, None) => {}
        _ => panic!("{name}: numeric part on one side only"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn merge_of_halves_equals_whole(rows in proptest::collection::vec(row(), 0..300), cut in 0usize..300) {
        let cut = cut.min(rows.len());
        let whole = profile(&rows);
        let merged = merge_parts(&[profile(&rows[..cut]).to_proto(), profile(&rows[cut..]).to_proto()]).unwrap();
        let merged = WindowProfile::from_proto(&merged).unwrap();
        prop_assert_eq!(merged.parts, 2);
        prop_assert_eq!(merged.rows, whole.rows);
        if rows.is_empty() {
            return Ok(());
        }
        for (name, col) in &whole.features {
            assert_column_matches(name, &merged.features[name], col);
        }
        assert_column_matches("prediction", merged.prediction.as_ref().unwrap(), whole.prediction.as_ref().unwrap());
        assert_column_matches("label", merged.label.as_ref().unwrap(), whole.label.as_ref().unwrap());
        let (mo, wo) = (merged.outcomes.as_ref().unwrap(), whole.outcomes.as_ref().unwrap());
        let (mc, wc) = (mo.classification.as_ref().unwrap(), wo.classification.as_ref().unwrap());
        prop_assert_eq!(&mc.confusion, &wc.confusion);
        prop_assert_eq!(&mc.predicted, &wc.predicted);
        prop_assert_eq!(&mc.positive_scores, &wc.positive_scores);
        prop_assert_eq!(&mc.negative_scores, &wc.negative_scores);
        prop_assert_eq!((mc.scored, mc.labelled), (wc.scored, wc.labelled));
        prop_assert!(close(mc.log_loss_sum, wc.log_loss_sum));
        prop_assert_eq!(merged.groups.keys().collect::<Vec<_>>(), whole.groups.keys().collect::<Vec<_>>());
        for (k, g) in &whole.groups {
            prop_assert_eq!(merged.groups[k].count, g.count);
            let (a, b) = (&merged.groups[k].outcomes, &g.outcomes);
            prop_assert_eq!(&a.classification.as_ref().unwrap().confusion, &b.classification.as_ref().unwrap().confusion);
        }
        let mut ids_m: Vec<_> = merged.predictions.iter().map(|p| p.id.clone()).collect();
        let mut ids_w: Vec<_> = whole.predictions.iter().map(|p| p.id.clone()).collect();
        ids_m.sort();
        ids_w.sort();
        prop_assert_eq!(ids_m, ids_w);
        prop_assert_eq!(merged.hash_sampled.len(), whole.hash_sampled.len());
        let res = merged.reservoir.as_ref().unwrap();
        prop_assert_eq!(res.seen(), rows.len() as u64);
        prop_assert_eq!(res.rows().len(), rows.len().min(256));
    }

    #[test]
    fn wire_round_trip_is_lossless(rows in proptest::collection::vec(row(), 0..200)) {
        let bytes = profile(&rows).to_proto().encode_to_vec();
        let decoded = pb::WindowProfile::decode(bytes.as_slice()).unwrap();
        let again = WindowProfile::from_proto(&decoded).unwrap().to_proto().encode_to_vec();
        prop_assert!(bytes == again, "round trip changed the bytes");
    }

    #[test]
    fn same_input_gives_same_bytes(rows in proptest::collection::vec(row(), 0..200)) {
        let a = profile(&rows).to_proto().encode_to_vec();
        let b = profile(&rows).to_proto().encode_to_vec();
        prop_assert!(a == b, "same input, different bytes");
    }

    #[test]
    fn sketch_merges_equal_concatenation(
        a in proptest::collection::vec(-1e3f64..1e3, 0..3000),
        b in proptest::collection::vec(-1e3f64..1e3, 0..3000),
        words in proptest::collection::vec("[a-z]{1,3}", 0..400),
        cut in 0usize..400,
    ) {
        let all: Vec<f64> = a.iter().chain(&b).copied().collect();
        let (mut ma, mut mb, mut mw) = (Moments::default(), Moments::default(), Moments::default());
        ma.push_slice(&a);
        mb.push_slice(&b);
        mw.push_slice(&all);
        ma.merge(&mb);
        prop_assert_eq!(ma.n(), mw.n());
        prop_assert!(close(ma.mean(), mw.mean()));
        prop_assert!(close(ma.m2(), mw.m2()));

        let edges = vec![-500.0, 0.0, 250.0];
        let mut ba = FixedBins::new(edges.clone()).unwrap();
        let mut bb = FixedBins::new(edges.clone()).unwrap();
        let mut bw = FixedBins::new(edges).unwrap();
        ba.push_slice(&a);
        bb.push_slice(&b);
        bw.push_slice(&all);
        ba.merge(&bb).unwrap();
        prop_assert_eq!(ba, bw);

        let (mut ka, mut kb, mut kw) = (Kll::default(), Kll::default(), Kll::default());
        ka.update_slice(&a);
        kb.update_slice(&b);
        kw.update_slice(&all);
        ka.merge(&kb).unwrap();
        prop_assert_eq!(ka.n(), kw.n());
        let mut sorted = all.clone();
        sorted.sort_unstable_by(f64::total_cmp);
        let bound = ka.uniform_rank_error_bound(0.01);
        let view = ka.sorted_view();
        for &x in view.values() {
            let exact = sorted.partition_point(|v| *v <= x) as f64 / sorted.len() as f64;
            prop_assert!((view.rank(x) - exact).abs() <= bound, "rank error above {}", bound);
        }

        let cut = cut.min(words.len());
        let (mut fa, mut fb, mut fw) = (FrequentItems::new(512), FrequentItems::new(512), FrequentItems::new(512));
        let (mut ha, mut hb, mut hw) = (Hll::default(), Hll::default(), Hll::default());
        for (i, w) in words.iter().enumerate() {
            let (f, h) = if i < cut { (&mut fa, &mut ha) } else { (&mut fb, &mut hb) };
            f.update(w);
            h.update(w.as_bytes());
            fw.update(w);
            hw.update(w.as_bytes());
        }
        fa.merge(&fb).unwrap();
        ha.merge(&hb).unwrap();
        prop_assert_eq!(fa.to_proto(), fw.to_proto());
        prop_assert_eq!(fa.max_error(), 0);
        prop_assert_eq!(ha, hw);
    }
}

/// Merging is checked against the identity and window: parts of different models or windows
/// are refused.
#[test]
fn merge_refuses_other_models_and_windows() {
    let p = profile(&[]).to_proto();
    let mut other = p.clone();
    other.identity.as_mut().unwrap().version = "v2".into();
    assert!(merge_parts(&[p.clone(), other]).is_err());
    let mut other = p.clone();
    other.window_start_ms += 60_000;
    assert!(merge_parts(&[p.clone(), other]).is_err());
    assert!(merge_parts(&[]).is_err());
}
