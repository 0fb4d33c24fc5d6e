#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Bad input never panics: it is counted (or, in strict mode, rejected with a typed error), and
//! hostile wire messages are refused by `from_proto`.

mod common;

use neurocloak_core::profile::WindowProfile;
use neurocloak_core::sketch::{FixedBins, FrequentItems, Hll, Kll, Latency, Moments};
use neurocloak_core::{
    Batch, Column, ColumnData, CoreError, DataIssue, FeatureKind, Prediction, TaskType, Value,
};
use neurocloak_proto as pb;
use prost::Message;

fn no_pred() -> Prediction<'static> {
    Prediction::default()
}

#[test]
fn weird_numbers_are_counted_not_sketched() {
    let (m, sink) = common::monitor(|_| {});
    for x in [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        5e-324,
        -0.0,
        f64::MAX,
        1.0,
    ] {
        m.log(&[("x", Value::Number(x))], &no_pred()).unwrap();
    }
    let w = common::flushed(&m, &sink);
    let x = &w.features["x"];
    assert_eq!(x.kind, FeatureKind::Numeric);
    let c = x.counters;
    assert_eq!((c.count, c.nan, c.pos_inf, c.neg_inf), (7, 1, 1, 1));
    let n = x.numeric.as_ref().unwrap();
    assert_eq!(n.moments.n(), 4);
    assert_eq!(n.kll.n(), 4);
    assert_eq!(n.moments.max(), Some(f64::MAX));
    assert!(n.moments.mean().is_finite());
}

#[test]
fn empty_and_huge_strings_are_truncated_and_counted() {
    let (m, sink) = common::monitor(|c| c.max_string_len = 1024);
    let huge = "é".repeat(512 * 1024); // 1 MiB of two-byte characters
    for s in ["", huge.as_str(), "short"] {
        m.log(&[("c", Value::Text(s))], &no_pred()).unwrap();
    }
    let w = common::flushed(&m, &sink);
    let col = &w.features["c"];
    assert_eq!(col.counters.count, 3);
    assert_eq!(col.counters.truncated, 1);
    let items = &col.categorical.as_ref().unwrap().items;
    assert_eq!(items.count_of(""), 1);
    let kept = items.items();
    let long = kept.iter().find(|(v, _)| v.len() > 5).unwrap();
    assert_eq!(
        long.0.len(),
        1024,
        "cut at a character boundary within the limit"
    );
    // Nothing in the shipped profile is anywhere near the input size.
    assert!(w.to_proto().encoded_len() < 64 * 1024);
}

#[test]
fn missing_extra_and_changing_features_are_counted() {
    let (m, sink) = common::monitor(|_| {});
    m.log(&[("a", 1.0.into()), ("b", "x".into())], &no_pred())
        .unwrap();
    // b missing, c extra, a with the wrong type, then a schema that changed completely.
    m.log(&[("a", "oops".into()), ("c", 3.0.into())], &no_pred())
        .unwrap();
    m.log(&[("b", Value::Missing), ("a", 2.0.into())], &no_pred())
        .unwrap();
    m.log(&[("z1", 1.0.into()), ("z2", 2.0.into())], &no_pred())
        .unwrap();
    m.log(&[("a", true.into()), ("b", 7.0.into())], &no_pred())
        .unwrap();
    let w = common::flushed(&m, &sink);
    assert_eq!(w.rows, 5);
    let a = w.features["a"].counters;
    let b = w.features["b"].counters;
    assert_eq!((a.count, a.missing, a.type_mismatch), (5, 1, 2));
    assert_eq!((b.count, b.missing, b.type_mismatch), (5, 3, 1));
    // Rows 2 and 4 had extra or absent features (row 3 is complete: an explicit missing value).
    assert_eq!(w.extra_features, 2);
    assert!(
        !w.features.contains_key("z1"),
        "the schema is fixed once known"
    );
}

#[test]
fn indexed_rows_of_the_wrong_length_are_counted() {
    let (m, sink) = common::monitor(|c| {
        c.features = Some(vec![
            ("a".into(), FeatureKind::Numeric),
            ("b".into(), FeatureKind::Boolean),
        ]);
    });
    m.log_indexed(&[1.0.into()], &no_pred()).unwrap();
    m.log_indexed(&[1.0.into(), true.into(), 3.0.into()], &no_pred())
        .unwrap();
    m.log_indexed(&[], &no_pred()).unwrap();
    let w = common::flushed(&m, &sink);
    assert_eq!(w.features["b"].counters.missing, 2);
    assert_eq!(w.features["a"].counters.missing, 1);
    assert_eq!(w.extra_features, 3);
}

#[test]
fn invalid_outcomes_are_counted() {
    let (m, sink) = common::monitor(|c| c.task = TaskType::BinaryClassification);
    let bad = [
        Prediction {
            prediction: Value::Text("maybe"),
            ..Prediction::default()
        },
        Prediction {
            prediction: 1.0.into(),
            scores: &[1.5],
            ..Prediction::default()
        },
        Prediction {
            prediction: 0.5.into(),
            label: Value::Number(f64::NAN),
            ..Prediction::default()
        },
    ];
    for p in &bad {
        m.log(&[("x", 1.0.into())], p).unwrap();
    }
    // A bad prediction with bad scores is one bad value, so the window stays valid.
    let both = Prediction {
        prediction: Value::Text("maybe"),
        scores: &[f64::NAN],
        ..Prediction::default()
    };
    m.log(&[("x", 1.0.into())], &both).unwrap();
    let w = common::flushed(&m, &sink);
    let pc = w.prediction.as_ref().unwrap().counters;
    assert_eq!((pc.count, pc.type_mismatch), (4, 4));
    assert_eq!(w.label.as_ref().unwrap().counters.type_mismatch, 1);
    let cls = w.outcomes.unwrap().classification.unwrap();
    assert_eq!(cls.predicted, vec![0, 1]);
    assert_eq!(cls.scored, 0);
}

/// A row, the feature strict mode must blame, and the issue.
type Case<'a> = (Vec<(&'a str, Value<'a>)>, &'a str, DataIssue);

#[test]
fn strict_mode_rejects_with_typed_errors() {
    let (m, sink) = common::monitor(|c| {
        c.strict = true;
        c.features = Some(vec![
            ("a".into(), FeatureKind::Numeric),
            ("c".into(), FeatureKind::Categorical),
        ]);
        c.max_string_len = 8;
    });
    let cases: Vec<Case<'_>> = vec![
        (
            vec![("a", f64::NAN.into()), ("c", "x".into())],
            "a",
            DataIssue::NaN,
        ),
        (
            vec![("a", f64::INFINITY.into()), ("c", "x".into())],
            "a",
            DataIssue::PosInf,
        ),
        (
            vec![("a", "1".into()), ("c", "x".into())],
            "a",
            DataIssue::TypeMismatch,
        ),
        (vec![("a", 1.0.into())], "c", DataIssue::Missing),
        (
            vec![("a", 1.0.into()), ("c", "123456789".into())],
            "c",
            DataIssue::TooLong,
        ),
        (
            vec![("a", 1.0.into()), ("c", "x".into()), ("d", 1.0.into())],
            "d",
            DataIssue::UnknownFeature,
        ),
    ];
    for (row, feature, issue) in &cases {
        match m.log(row, &no_pred()) {
            Err(CoreError::Data {
                feature: f,
                issue: i,
            }) => {
                assert_eq!((f.as_str(), i), (*feature, *issue));
            }
            other => panic!("expected a data error for {row:?}, got {other:?}"),
        }
    }
    let p = Prediction {
        prediction: Value::Text("nope"),
        ..Prediction::default()
    };
    assert!(matches!(
        m.log(&[("a", 1.0.into()), ("c", "x".into())], &p),
        Err(CoreError::Data {
            issue: DataIssue::InvalidOutcome,
            ..
        })
    ));
    m.log(&[("a", 1.0.into()), ("c", "x".into())], &no_pred())
        .unwrap();
    let nan = [f64::NAN];
    let batch = Batch {
        features: vec![
            Column::new("a", ColumnData::F64(&nan)),
            Column::new("c", ColumnData::Str(&["x"])),
        ],
        ..Batch::default()
    };
    assert!(matches!(m.log_batch(&batch), Err(CoreError::Data { .. })));
    assert_eq!(m.stats().rejected, 8);
    let w = common::flushed(&m, &sink);
    assert_eq!(w.rows, 1, "rejected rows are not recorded");
}

#[test]
fn malformed_batches_are_errors_and_bad_cells_are_counted() {
    let (m, sink) = common::monitor(|_| {});
    let xs = [1.0, 2.0];
    let short = [1.0];
    let mismatch = Batch {
        features: vec![
            Column::new("x", ColumnData::F64(&xs)),
            Column::new("y", ColumnData::F64(&short)),
        ],
        ..Batch::default()
    };
    assert!(matches!(m.log_batch(&mismatch), Err(CoreError::Batch(_))));
    let offsets = [0, 2, 100];
    let bad_offsets = Batch {
        features: vec![Column::new(
            "s",
            ColumnData::Utf8 {
                offsets: &offsets,
                data: b"abc",
            },
        )],
        ..Batch::default()
    };
    assert!(matches!(
        m.log_batch(&bad_offsets),
        Err(CoreError::Batch(_))
    ));
    let codes = [0, 5];
    let bad_codes = Batch {
        features: vec![Column::new(
            "s",
            ColumnData::Dictionary {
                codes: &codes,
                values: &["a"],
            },
        )],
        ..Batch::default()
    };
    assert!(matches!(m.log_batch(&bad_codes), Err(CoreError::Batch(_))));
    // Valid structure, bad content: invalid UTF-8, a null, a negative dictionary code.
    let offsets = [0, 2, 4, 5];
    let validity = [0b0000_0101u8];
    let ok = Batch {
        features: vec![Column {
            name: "s",
            data: ColumnData::Utf8 {
                offsets: &offsets,
                data: &[0xff, 0xfe, b'o', b'k', b'!'],
            },
            validity: Some(&validity),
        }],
        ..Batch::default()
    };
    m.log_batch(&ok).unwrap();
    let w = common::flushed(&m, &sink);
    let s = w.features["s"].counters;
    assert_eq!((s.count, s.missing, s.type_mismatch), (3, 1, 1));
    assert_eq!(w.rows, 3);
}

fn kll_proto() -> pb::Kll {
    let mut k = Kll::default();
    k.update_slice(&(0..5000).map(f64::from).collect::<Vec<_>>());
    k.to_proto()
}

#[test]
fn hostile_sketch_messages_are_refused() {
    let good = kll_proto();
    assert!(Kll::from_proto(&good).is_ok());
    let mut bad = good.clone();
    bad.n += 1;
    assert!(Kll::from_proto(&bad).is_err(), "weight mismatch");
    let mut bad = good.clone();
    bad.levels[0].items.push(f64::NAN);
    bad.n += 1;
    assert!(Kll::from_proto(&bad).is_err(), "NaN item");
    let mut bad = good.clone();
    if let Some(l) = bad.levels.iter_mut().skip(1).find(|l| l.items.len() > 1) {
        l.items.reverse();
    }
    assert!(Kll::from_proto(&bad).is_err(), "unsorted level");
    let mut bad = good.clone();
    bad.k = u32::MAX;
    assert!(Kll::from_proto(&bad).is_err(), "absurd k");
    let bad = pb::Kll {
        k: 200,
        n: 0,
        levels: vec![pb::KllLevel::default(); 100],
        ..Default::default()
    };
    assert!(Kll::from_proto(&bad).is_err(), "too many levels");
    let bad = pb::Kll {
        k: 200,
        n: 2_000_000,
        levels: vec![pb::KllLevel {
            items: vec![1.0; 2_000_000],
        }],
        rng_state: 0,
        min: 1.0,
        max: 1.0,
    };
    assert!(Kll::from_proto(&bad).is_err(), "more items than capacity");

    assert!(
        FixedBins::from_proto(&pb::FixedBins {
            edges: vec![0.0, f64::NAN],
            counts: vec![0; 3]
        })
        .is_err()
    );
    assert!(
        FixedBins::from_proto(&pb::FixedBins {
            edges: vec![0.0, 1.0],
            counts: vec![0; 2]
        })
        .is_err()
    );
    assert!(
        FixedBins::from_proto(&pb::FixedBins {
            edges: vec![1.0, 0.0],
            counts: vec![0; 3]
        })
        .is_err()
    );
    assert!(
        FixedBins::from_proto(&pb::FixedBins {
            edges: vec![0.0; 100_000],
            counts: vec![0; 100_001]
        })
        .is_err()
    );
    assert!(
        Hll::from_proto(&pb::Hll {
            precision: 12,
            registers: vec![0; 10]
        })
        .is_err()
    );
    assert!(
        Hll::from_proto(&pb::Hll {
            precision: 40,
            registers: vec![]
        })
        .is_err()
    );
    assert!(
        Hll::from_proto(&pb::Hll {
            precision: 4,
            registers: vec![200; 16]
        })
        .is_err()
    );
    assert!(
        Moments::from_proto(&pb::Moments {
            n: 3,
            mean: f64::NAN,
            ..Default::default()
        })
        .is_err()
    );
    assert!(
        Moments::from_proto(&pb::Moments {
            n: 3,
            m2: -1.0,
            ..Default::default()
        })
        .is_err()
    );
    let item = |v: &str, c| pb::FrequentItem {
        value: v.into(),
        count: c,
    };
    let fi = |items, cap, total| pb::FrequentItems {
        capacity: cap,
        total,
        items,
        max_error: 0,
    };
    assert!(FrequentItems::from_proto(&fi(vec![item("a", 2), item("b", 1)], 1, 3)).is_err());
    assert!(FrequentItems::from_proto(&fi(vec![item("a", 2), item("a", 2)], 8, 4)).is_err());
    assert!(FrequentItems::from_proto(&fi(vec![item("a", 5)], 8, 4)).is_err());
    assert!(FrequentItems::from_proto(&fi(vec![item("a", 1), item("b", 2)], 8, 4)).is_err());
    assert!(FrequentItems::from_proto(&fi(vec![item("b", 2), item("a", 1)], 8, 4)).is_ok());
    assert!(
        Latency::from_proto(&pb::Latency {
            hdr_v2: vec![0; 10]
        })
        .is_err()
    );
    let mut hdr = Latency::new().to_proto().hdr_v2;
    hdr[4..8].copy_from_slice(&u32::MAX.to_be_bytes()); // claims a 4 GiB payload
    assert!(Latency::from_proto(&pb::Latency { hdr_v2: hdr }).is_err());
    let mut hdr = Latency::new().to_proto().hdr_v2;
    hdr[24..32].copy_from_slice(&u64::MAX.to_be_bytes()); // absurd highest trackable value
    assert!(Latency::from_proto(&pb::Latency { hdr_v2: hdr }).is_err());
}

#[test]
fn hostile_window_messages_are_refused() {
    let (m, sink) = common::monitor(|_| {});
    m.log(&[("x", 1.0.into())], &no_pred()).unwrap();
    let good = common::flushed(&m, &sink).to_proto();
    let mut bad = good.clone();
    bad.identity = None;
    assert!(WindowProfile::from_proto(&bad).is_err());
    let mut bad = good.clone();
    bad.window_length_ms = -5;
    assert!(WindowProfile::from_proto(&bad).is_err());
    let mut bad = good.clone();
    bad.features.get_mut("x").unwrap().kind = 99;
    assert!(WindowProfile::from_proto(&bad).is_err());
    let mut bad = good.clone();
    bad.reservoir.as_mut().unwrap().seen = 1000; // claims more rows than it carries
    assert!(WindowProfile::from_proto(&bad).is_err());
    let mut bad = good;
    bad.outcomes
        .as_mut()
        .unwrap()
        .classification
        .as_mut()
        .unwrap()
        .confusion
        .pop();
    assert!(WindowProfile::from_proto(&bad).is_err());
}

/// Arbitrary bytes: decoding may fail, validation may fail, nothing may panic.
#[test]
fn random_bytes_never_panic() {
    use neurocloak_core::sketch::rng::SplitMix64;
    let (m, sink) = common::monitor(|_| {});
    m.log(&[("x", 1.0.into()), ("c", "a".into())], &no_pred())
        .unwrap();
    m.record_latency(std::time::Duration::from_millis(3));
    let good = common::flushed(&m, &sink).to_proto().encode_to_vec();
    let mut rng = SplitMix64::new(9);
    for _ in 0..3000 {
        let mut b = good.clone();
        for _ in 0..1 + rng.below(8) {
            let i = rng.below(b.len() as u64) as usize;
            b[i] = rng.next_u64() as u8;
        }
        if let Ok(p) = pb::WindowProfile::decode(b.as_slice()) {
            let _ = WindowProfile::from_proto(&p);
        }
    }
}

/// Two processes that inferred different kinds for one feature: the merge keeps the first kind
/// and counts the other part's values as type mismatches instead of failing or dropping them.
#[test]
fn merging_conflicting_kinds_is_counted() {
    let (a, sa) = common::monitor(|_| {});
    let (b, sb) = common::monitor(|_| {});
    a.log(&[("f", 1.0.into())], &no_pred()).unwrap();
    for _ in 0..3 {
        b.log(&[("f", "text".into())], &no_pred()).unwrap();
    }
    let (pa, pb) = (common::flushed(&a, &sa), common::flushed(&b, &sb));
    let merged = neurocloak_core::merge_parts(&[pa.to_proto(), pb.to_proto()]).unwrap();
    let f = WindowProfile::from_proto(&merged).unwrap().features["f"].clone();
    assert_eq!(f.kind, FeatureKind::Numeric);
    assert_eq!((f.counters.count, f.counters.type_mismatch), (4, 3));
}

/// Rows without features (predictions only) do not fix an empty schema: features logged later
/// are still profiled, in the next window at the latest.
#[test]
fn featureless_rows_do_not_fix_an_empty_schema() {
    let (m, sink) = common::monitor(|_| {});
    m.log(
        &[],
        &Prediction {
            prediction: 1.0.into(),
            ..Prediction::default()
        },
    )
    .unwrap();
    assert!(m.feature_names().is_empty());
    m.flush(std::time::Duration::from_secs(1)).unwrap();
    m.log(&[("x", 2.0.into())], &no_pred()).unwrap();
    assert_eq!(m.feature_names(), vec!["x".to_owned()]);
    let w = common::flushed(&m, &sink);
    assert_eq!(w.rows, 2);
    assert_eq!(w.features["x"].counters.count, 1);
}

/// Counts near u64::MAX pass validation; merging two such parts saturates (or, for KLL whose
/// weights must add up exactly, refuses) instead of overflowing.
#[test]
fn merging_huge_counts_does_not_overflow() {
    let (m, sink) = common::monitor(|_| {});
    m.log(
        &[("x", 1.0.into())],
        &Prediction {
            prediction: 1.0.into(),
            label: 1.0.into(),
            ..Prediction::default()
        },
    )
    .unwrap();
    let mut p = common::flushed(&m, &sink).to_proto();
    p.rows = u64::MAX - 1;
    p.errors = u64::MAX;
    let col = p.features.get_mut("x").unwrap();
    col.counters.as_mut().unwrap().count = u64::MAX;
    col.numeric.as_mut().unwrap().moments.as_mut().unwrap().n = u64::MAX;
    let cls = p
        .outcomes
        .as_mut()
        .unwrap()
        .classification
        .as_mut()
        .unwrap();
    cls.confusion[3] = u64::MAX;
    let merged = neurocloak_core::merge_parts(&[p.clone(), p.clone()]).unwrap();
    assert_eq!(merged.rows, u64::MAX);
    assert_eq!(
        merged.features["x"].counters.as_ref().unwrap().count,
        u64::MAX
    );
    let mut k = p.clone();
    let kll = k
        .features
        .get_mut("x")
        .unwrap()
        .numeric
        .as_mut()
        .unwrap()
        .kll
        .as_mut()
        .unwrap();
    kll.levels = vec![neurocloak_proto::KllLevel::default(); 61];
    kll.levels[60].items = vec![1.0];
    kll.n = 1 << 60;
    kll.min = 1.0;
    kll.max = 1.0;
    let parts: Vec<_> = std::iter::repeat_n(k, 16).collect();
    assert!(
        neurocloak_core::merge_parts(&parts).is_err(),
        "KLL weight overflow is refused"
    );
}
