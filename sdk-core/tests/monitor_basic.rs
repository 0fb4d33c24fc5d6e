#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! End-to-end recording through a monitor into a memory sink.

use std::sync::Arc;
use std::time::Duration;

use neurocloak_core::{
    Batch, Column, ColumnData, MemorySink, Monitor, MonitorConfig, Prediction, Value, WindowProfile,
};

fn monitor() -> (Monitor, Arc<MemorySink>) {
    let sink = Arc::new(MemorySink::new());
    let m = Monitor::with_sink(MonitorConfig::new("p", "m", "1"), sink.clone()).unwrap();
    (m, sink)
}

fn merged(sink: &MemorySink) -> WindowProfile {
    let windows = sink.take_windows();
    assert!(!windows.is_empty());
    let mut acc: Option<WindowProfile> = None;
    for w in &windows {
        // Windows straddling a boundary are compared as one profile.
        let mut p = WindowProfile::from_proto(w).unwrap();
        p.window_start_ms = 0;
        match acc.as_mut() {
            None => acc = Some(p),
            Some(a) => a.merge(&p).unwrap(),
        }
    }
    acc.unwrap()
}

#[test]
fn rows_and_batches_are_counted() {
    let (m, sink) = monitor();
    for i in 0..1000 {
        let x = f64::from(i);
        m.log(
            &[
                ("x", Value::Number(x)),
                ("c", Value::Text(if i % 2 == 0 { "a" } else { "b" })),
            ],
            &Prediction {
                prediction: Value::Number(f64::from(i % 2)),
                label: Value::Number(1.0),
                scores: &[0.7],
                ..Prediction::default()
            },
        )
        .unwrap();
    }
    let xs: Vec<f64> = (0..500).map(f64::from).collect();
    let cs: Vec<&str> = (0..500).map(|_| "z").collect();
    m.log_batch(&Batch {
        features: vec![
            Column::new("x", ColumnData::F64(&xs)),
            Column::new("c", ColumnData::Str(&cs)),
        ],
        ..Batch::default()
    })
    .unwrap();
    m.flush(Duration::from_secs(1)).unwrap();
    let w = merged(&sink);
    assert_eq!(w.rows, 1500);
    let x = &w.features["x"];
    assert_eq!(x.counters.count, 1500);
    assert_eq!(x.numeric.as_ref().unwrap().kll.n(), 1500);
    let c = &w.features["c"].categorical.as_ref().unwrap().items;
    assert_eq!(c.count_of("a"), 500);
    assert_eq!(c.count_of("z"), 500);
    let cls = w.outcomes.unwrap().classification.unwrap();
    assert_eq!(cls.labelled, 1000);
    assert_eq!(cls.confusion, vec![0, 0, 500, 500]);
    assert_eq!(cls.scored, 1000);
}
