#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Reference bins, time-based window closing, labels, latency and errors, regression outcomes.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use neurocloak_core::profile::{ReferenceProfile, WindowProfile, decile_edges};
use neurocloak_core::{
    Batch, Column, ColumnData, MemorySink, Monitor, MonitorConfig, Prediction, TaskType, Value,
};
use neurocloak_proto::v1::push_request::Payload;

#[test]
fn reference_bins_are_exact_deciles_and_later_windows_count_them() {
    let (m, sink) = common::monitor(|_| {});
    let train: Vec<f64> = (0..1000).map(f64::from).collect();
    let cats: Vec<&str> = (0..1000)
        .map(|i| if i % 3 == 0 { "a" } else { "b" })
        .collect();
    let reference = m
        .set_reference(&Batch {
            features: vec![
                Column::new("x", ColumnData::F64(&train)),
                Column::new("c", ColumnData::Str(&cats)),
            ],
            ..Batch::default()
        })
        .unwrap();
    let edges = decile_edges(&train).unwrap();
    assert_eq!(edges.len(), 11);
    assert_eq!(reference.bins["x"].edges(), edges.as_slice());
    // 10 inner bins of 100 training rows each (the maximum sits in the open top bin).
    assert_eq!(
        reference.bins["x"].counts(),
        &[0, 100, 100, 100, 100, 100, 100, 100, 100, 100, 99, 1]
    );
    assert!(!reference.bins.contains_key("c"));
    let shipped = sink.take();
    let Some(Payload::Reference(r)) = shipped.first() else {
        panic!("the reference was not shipped: {shipped:?}");
    };
    assert!(
        ReferenceProfile::from_proto(r).unwrap() == reference,
        "shipped reference differs"
    );

    let live: Vec<f64> = (0..500).map(|i| f64::from(i) * 3.0 - 100.0).collect();
    let cats = vec!["a"; 500];
    m.log_batch(&Batch {
        features: vec![
            Column::new("x", ColumnData::F64(&live)),
            Column::new("c", ColumnData::Str(&cats)),
        ],
        ..Batch::default()
    })
    .unwrap();
    let w = common::flushed(&m, &sink);
    let bins = w.features["x"]
        .numeric
        .as_ref()
        .unwrap()
        .bins
        .as_ref()
        .unwrap();
    let expected: Vec<u64> = {
        let mut counts = vec![0u64; edges.len() + 1];
        for x in &live {
            counts[edges.partition_point(|e| e <= x)] += 1;
        }
        counts
    };
    assert_eq!(bins.counts(), expected.as_slice());
}

#[test]
fn windows_close_by_time_without_new_rows() {
    let sink = Arc::new(MemorySink::new());
    let mut cfg = MonitorConfig::new("p", "m", "1");
    cfg.window = Duration::from_millis(100);
    cfg.close_delay = Duration::from_millis(20);
    let m = Monitor::with_sink(cfg, sink.clone()).unwrap();
    m.log(&[("x", 1.0.into())], &Prediction::default()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut windows = Vec::new();
    while windows.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        windows = sink.take_windows();
    }
    assert_eq!(windows.len(), 1, "the harvester did not close the window");
    let w = &windows[0];
    assert_eq!(w.rows, 1);
    assert_eq!(w.window_length_ms, 100);
    assert_eq!(
        w.window_start_ms % 100,
        0,
        "windows align to multiples of their length"
    );
    assert_eq!(m.stats().windows, 1);
}

#[test]
fn labels_latency_and_errors_are_shipped() {
    let (m, sink) = common::monitor(|_| {});
    m.log(
        &[("x", 1.0.into())],
        &Prediction {
            id: Some("r1"),
            ..Prediction::default()
        },
    )
    .unwrap();
    m.record_latency(Duration::from_millis(5));
    m.record_latency(Duration::from_secs(7200)); // saturates, still counted
    m.record_error();
    m.log_labels(&["r1", "r2"], &[Value::Number(1.0), Value::Text("0")])
        .unwrap();
    assert!(m.log_labels(&["r1"], &[]).is_err());
    m.flush(Duration::from_secs(1)).unwrap();
    let all = sink.take();
    let labels: Vec<_> = all
        .iter()
        .filter_map(|p| match p {
            Payload::Labels(l) => Some(l),
            _ => None,
        })
        .collect();
    assert_eq!(labels.len(), 1);
    assert_eq!(labels[0].labels.len(), 2);
    assert_eq!(labels[0].identity.as_ref().unwrap().model, "model");
    let w = all
        .iter()
        .find_map(|p| match p {
            Payload::Window(w) => Some(WindowProfile::from_proto(w).unwrap()),
            _ => None,
        })
        .unwrap();
    assert_eq!(w.errors, 1);
    assert_eq!(w.latency.as_ref().unwrap().count(), 2);
    assert_eq!(w.predictions.len(), 1);
    assert_eq!(w.predictions[0].id, "r1");
}

#[test]
fn regression_outcomes_and_prediction_record_cap() {
    let (m, sink) = common::monitor(|c| {
        c.task = TaskType::Regression;
        c.max_prediction_records = 3;
    });
    for (i, (y, l)) in [
        (1.0, 2.0),
        (3.0, 3.0),
        (0.0, -1.0),
        (5.0, 0.0),
        (2.0, f64::NAN),
    ]
    .iter()
    .enumerate()
    {
        let id = i.to_string();
        m.log(
            &[("x", 1.0.into())],
            &Prediction {
                id: Some(&id),
                prediction: Value::Number(*y),
                label: Value::Number(*l),
                ..Prediction::default()
            },
        )
        .unwrap();
    }
    let w = common::flushed(&m, &sink);
    let r = w.outcomes.as_ref().unwrap().regression.as_ref().unwrap();
    assert_eq!(r.labelled, 4);
    assert_eq!(r.sum_abs_error, 1.0 + 0.0 + 1.0 + 5.0);
    assert_eq!(r.sum_sq_error, 1.0 + 0.0 + 1.0 + 25.0);
    assert_eq!(r.pct_count, 3);
    assert_eq!(w.predictions.len(), 3);
    assert_eq!(w.predictions_dropped, 2);
    assert_eq!(w.label.as_ref().unwrap().counters.nan, 1);
}

#[test]
fn groups_cover_attributes_and_intersections() {
    let (m, sink) = common::monitor(|c| c.sensitive = vec!["sex".into(), "race".into()]);
    let rows = [
        ("F", "a", 1.0, 1.0),
        ("F", "b", 0.0, 1.0),
        ("M", "a", 1.0, 0.0),
    ];
    for (sex, race, pred, label) in rows {
        m.log(
            &[("sex", Value::Text(sex)), ("race", Value::Text(race))],
            &Prediction {
                prediction: Value::Number(pred),
                label: Value::Number(label),
                ..Prediction::default()
            },
        )
        .unwrap();
    }
    let w = common::flushed(&m, &sink);
    let keys: Vec<&str> = w.groups.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "race=a",
            "race=a&sex=F",
            "race=a&sex=M",
            "race=b",
            "race=b&sex=F",
            "sex=F",
            "sex=M"
        ]
    );
    assert_eq!(w.groups["sex=F"].count, 2);
    let f = w.groups["sex=F"].outcomes.classification.as_ref().unwrap();
    assert_eq!(f.confusion, vec![0, 0, 1, 1]);
    assert_eq!(f.predicted, vec![1, 1]);
}

/// Ids the collector would refuse (it rejects a whole window part or label batch holding one)
/// never leave the SDK: the row is recorded without its prediction record (counted), strict mode
/// rejects it, and `log_labels` refuses the call before anything is queued.
#[test]
fn ids_the_collector_would_refuse_never_leave_the_sdk() {
    let long = "x".repeat(neurocloak_core::monitor::MAX_ID_LEN + 1);
    let fits = "y".repeat(neurocloak_core::monitor::MAX_ID_LEN);
    let (m, sink) = common::monitor(|c| c.hash_sample_rate = 1.0);
    for id in [long.as_str(), "", "line\nbreak", fits.as_str(), "ok"] {
        m.log(
            &[("x", 1.0.into())],
            &Prediction {
                id: Some(id),
                ..Prediction::default()
            },
        )
        .unwrap();
    }
    for id in [long.as_str(), "", "tab\there"] {
        let err = m.log_labels(&["ok", id], &[Value::Number(1.0), Value::Number(0.0)]);
        let msg = err.unwrap_err().to_string();
        assert!(msg.contains("ids[1]"), "{msg}");
    }
    m.flush(Duration::from_secs(1)).unwrap();
    let all = sink.take();
    assert!(
        !all.iter().any(|p| matches!(p, Payload::Labels(_))),
        "a refused label call queued nothing"
    );
    let w = all
        .iter()
        .find_map(|p| match p {
            Payload::Window(w) => Some(w.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(w.rows, 5, "every row is in the statistics");
    let ids: Vec<&str> = w.predictions.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, vec![fits.as_str(), "ok"]);
    assert_eq!(w.predictions_dropped, 3);
    for row in w
        .hash_sampled
        .iter()
        .chain(w.reservoir.iter().flat_map(|r| &r.rows))
    {
        assert!(
            row.id.is_empty() || neurocloak_core::monitor::valid_id(&row.id),
            "{:?}",
            row.id
        );
    }

    let (strict, _) = common::monitor(|c| c.strict = true);
    let err = strict
        .log(
            &[("x", 1.0.into())],
            &Prediction {
                id: Some(&long),
                ..Prediction::default()
            },
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            neurocloak_core::CoreError::Data {
                issue: neurocloak_core::DataIssue::InvalidId,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(strict.stats().rejected, 1);
}

/// Bindings turn a NaN event time into 0 and ±inf into the i64 extremes; such rows fall back to
/// their recording time instead of claiming 1970 or the year 292 million.
#[test]
fn implausible_batch_timestamps_fall_back_to_the_recording_time() {
    let (m, sink) = common::monitor(|_| {});
    let x = [1.0, 2.0, 3.0, 4.0];
    let ids = ["a", "b", "c", "d"];
    let ts = [0, i64::MAX, i64::MIN, 1_700_000_000_000];
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    m.log_batch(&Batch {
        features: vec![Column {
            name: "x",
            data: ColumnData::F64(&x),
            validity: None,
        }],
        ids: Some(ColumnData::Str(&ids)),
        timestamps_ms: Some(&ts),
        ..Batch::default()
    })
    .unwrap();
    let w = common::flushed(&m, &sink);
    let got: Vec<i64> = w.predictions.iter().map(|p| p.timestamp_ms).collect();
    assert_eq!(got.len(), 4);
    for t in &got[..3] {
        // The core reads a coarse clock, a few ms behind `SystemTime`.
        assert!(*t >= before - 1_000 && *t < before + 60_000, "{got:?}");
    }
    assert_eq!(got[3], 1_700_000_000_000);
}
