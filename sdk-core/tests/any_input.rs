#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Whatever the rows contain, recording never fails outside strict mode and the shipped window
//! always passes the same validation the agent and collector apply (`WindowProfile::from_proto`).

mod common;

use neurocloak_core::profile::WindowProfile;
use neurocloak_core::{Prediction, TaskType, Value};
use proptest::prelude::*;
use prost::Message;

#[derive(Debug, Clone)]
enum Cell {
    Missing,
    Number(f64),
    Text(String),
    Bool(bool),
}

impl Cell {
    fn value(&self) -> Value<'_> {
        match self {
            Cell::Missing => Value::Missing,
            Cell::Number(x) => Value::Number(*x),
            Cell::Text(s) => Value::Text(s),
            Cell::Bool(b) => Value::Bool(*b),
        }
    }
}

fn cell() -> impl Strategy<Value = Cell> {
    prop_oneof![
        Just(Cell::Missing),
        any::<f64>().prop_map(Cell::Number),
        prop_oneof![Just(0.0), Just(1.0), Just(2.0), Just(-1.0), Just(0.5)].prop_map(Cell::Number),
        "\\PC{0,12}".prop_map(Cell::Text),
        prop_oneof![Just("0"), Just("1"), Just("a"), Just("b")].prop_map(|s| Cell::Text(s.into())),
        (1usize..3000).prop_map(|n| Cell::Text("x".repeat(n))),
        any::<bool>().prop_map(Cell::Bool),
    ]
}

#[derive(Debug, Clone)]
struct Row {
    features: Vec<(String, Cell)>,
    prediction: Cell,
    label: Cell,
    scores: Vec<f64>,
    id: Option<String>,
}

fn row() -> impl Strategy<Value = Row> {
    (
        proptest::collection::vec(
            (
                prop_oneof![Just("f1"), Just("f2"), Just("s"), Just("zz")],
                cell(),
            ),
            0..5,
        ),
        cell(),
        cell(),
        proptest::collection::vec(prop_oneof![any::<f64>(), 0.0f64..=1.0], 0..4),
        proptest::option::of("[a-z0-9]{0,6}"),
    )
        .prop_map(|(features, prediction, label, scores, id)| Row {
            features: features
                .into_iter()
                .map(|(n, c)| (n.to_owned(), c))
                .collect(),
            prediction,
            label,
            scores,
            id,
        })
}

fn task() -> impl Strategy<Value = TaskType> {
    prop_oneof![
        Just(TaskType::BinaryClassification),
        Just(TaskType::MulticlassClassification),
        Just(TaskType::Regression)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_rows_give_a_valid_window(task in task(), rows in proptest::collection::vec(row(), 1..60)) {
        let (m, sink) = common::monitor(|c| {
            c.task = task;
            if task == TaskType::MulticlassClassification {
                c.classes = vec!["a".into(), "b".into(), "c".into()];
            }
            c.sensitive = vec!["s".into()];
            c.max_string_len = 64;
            c.hash_sample_rate = 0.5;
        });
        let mut logged = rows.len() as u64;
        for r in &rows {
            let features: Vec<(&str, Value<'_>)> = r.features.iter().map(|(n, c)| (n.as_str(), c.value())).collect();
            let p = Prediction {
                id: r.id.as_deref(),
                prediction: r.prediction.value(),
                label: r.label.value(),
                scores: &r.scores,
                ..Prediction::default()
            };
            m.log(&features, &p).unwrap();
            // The positional path needs a schema, which the first row with features infers.
            if m.feature_names().is_empty() {
                prop_assert!(m.log_indexed(&[], &p).is_err());
            } else {
                m.log_indexed(&features.iter().map(|(_, v)| *v).collect::<Vec<_>>(), &p).unwrap();
                logged += 1;
            }
        }
        // `flushed` decodes every shipped part with the validating `from_proto`.
        let w = common::flushed(&m, &sink);
        prop_assert_eq!(w.rows, logged);
        let bytes = w.to_proto().encode_to_vec();
        let back = neurocloak_proto::WindowProfile::decode(bytes.as_slice()).unwrap();
        prop_assert!(WindowProfile::from_proto(&back).is_ok());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Columnar batches with any numbers, arbitrary bytes as UTF-8 data, nulls and negative
    /// dictionary codes: recorded without error, shipped window valid, every row counted.
    #[test]
    fn any_batches_give_a_valid_window(
        xs in proptest::collection::vec(any::<f64>(), 1..200),
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
        codes_seed in any::<u64>(),
        validity in proptest::collection::vec(any::<u8>(), 25),
    ) {
        use neurocloak_core::{Batch, Column, ColumnData};
        let n = xs.len();
        // Non-decreasing offsets into arbitrary bytes (possibly cutting characters in half).
        let offsets: Vec<i32> = (0..=n).map(|i| (i * bytes.len() / n) as i32).collect();
        let codes: Vec<i32> = (0..n).map(|i| ((codes_seed >> (i % 60)) & 3) as i32 - 1).collect();
        let ints: Vec<i64> = xs.iter().map(|x| x.to_bits() as i64).collect();
        let flags: Vec<bool> = xs.iter().map(|x| x.is_sign_negative()).collect();
        let preds: Vec<f64> = xs.iter().map(|x| x.abs() % 3.0).collect();
        let (m, sink) = common::monitor(|c| c.sensitive = vec!["d".into()]);
        let batch = Batch {
            features: vec![
                Column { name: "x", data: ColumnData::F64(&xs), validity: Some(&validity) },
                Column::new("i", ColumnData::I64(&ints)),
                Column::new("u", ColumnData::Utf8 { offsets: &offsets, data: &bytes }),
                Column::new("d", ColumnData::Dictionary { codes: &codes, values: &["p", "q", "r"] }),
                Column::new("b", ColumnData::Bool(&flags)),
            ],
            predictions: Some(ColumnData::F64(&preds)),
            labels: Some(ColumnData::Bool(&flags)),
            ..Batch::default()
        };
        m.log_batch(&batch).unwrap();
        m.log_batch(&batch).unwrap();
        let w = common::flushed(&m, &sink);
        prop_assert_eq!(w.rows, 2 * n as u64);
        for col in w.features.values() {
            prop_assert_eq!(col.counters.count, 2 * n as u64);
        }
    }
}
