#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Concurrent recording from several threads loses and duplicates nothing.

mod common;

use neurocloak_core::{Batch, Column, ColumnData, Prediction, Value};

#[test]
fn four_threads_count_exactly() {
    let (m, sink) = common::monitor(|_| {});
    // Infer the schema once so every thread records against the same layout.
    m.log(
        &[("x", 0.0.into()), ("c", "t0".into())],
        &Prediction::default(),
    )
    .unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let m = m.clone();
            s.spawn(move || {
                let name = format!("t{t}");
                let xs: Vec<f64> = (0..1000).map(f64::from).collect();
                let cs: Vec<&str> = vec![name.as_str(); 1000];
                for i in 0..20_000 {
                    m.log(
                        &[
                            ("x", Value::Number(f64::from(i))),
                            ("c", Value::Text(&name)),
                        ],
                        &Prediction::default(),
                    )
                    .unwrap();
                    if i % 5000 == 0 {
                        m.log_batch(&Batch {
                            features: vec![
                                Column::new("x", ColumnData::F64(&xs)),
                                Column::new("c", ColumnData::Str(&cs)),
                            ],
                            ..Batch::default()
                        })
                        .unwrap();
                    }
                }
            });
        }
    });
    let w = common::flushed(&m, &sink);
    let per_thread = 20_000 + 4 * 1000;
    assert_eq!(w.rows, 1 + 4 * per_thread);
    let x = &w.features["x"];
    assert_eq!(x.counters.count, w.rows);
    assert_eq!(x.numeric.as_ref().unwrap().kll.n(), w.rows);
    assert_eq!(x.numeric.as_ref().unwrap().moments.n(), w.rows);
    let items = &w.features["c"].categorical.as_ref().unwrap().items;
    for t in 0..4 {
        let expected = per_thread + u64::from(t == 0);
        assert_eq!(items.count_of(&format!("t{t}")), expected);
    }
}
