//! Serialized size per numeric feature after 10^6 rows (target ≤ 6 KB, DESIGN §8), and the time
//! to merge two full 25-feature window profiles.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use neurocloak_core::{Batch, Column, ColumnData, MemorySink, Monitor, WindowProfile, merge_parts};
use prost::Message;
use std::sync::Arc;

const ROWS: usize = 1_000_000;

fn full_profile(seed: u64) -> neurocloak_proto::WindowProfile {
    let d = common::data(ROWS, seed);
    let names = common::names();
    let sink = Arc::new(MemorySink::new());
    let mut cfg = common::monitor().config().clone();
    cfg.window = Duration::from_secs(3600);
    let m = Monitor::with_sink(cfg, sink.clone()).unwrap();
    let batch = Batch {
        features: d
            .numeric
            .iter()
            .enumerate()
            .map(|(j, col)| Column::new(&names[j], ColumnData::F64(col)))
            .chain(
                d.categorical
                    .iter()
                    .enumerate()
                    .map(|(j, col)| Column::new(&names[common::NUMERIC + j], ColumnData::Str(col))),
            )
            .collect(),
        ..Batch::default()
    };
    m.log_batch(&batch).unwrap();
    m.flush(Duration::from_secs(1)).unwrap();
    let parts = sink.take_windows();
    // A batch can straddle a window boundary; fold the parts into one profile of the window.
    let mut parts: Vec<_> = parts
        .into_iter()
        .map(|mut w| {
            w.window_start_ms = 0;
            w
        })
        .collect();
    let first = parts.remove(0);
    let mut acc = WindowProfile::from_proto(&first).unwrap();
    for p in &parts {
        acc.merge(&WindowProfile::from_proto(p).unwrap()).unwrap();
    }
    acc.to_proto()
}

fn bench(c: &mut Criterion) {
    let a = full_profile(1);
    let b = full_profile(2);
    let sizes: Vec<usize> = (0..common::NUMERIC)
        .map(|j| a.features[&format!("num_{j}")].encoded_len())
        .collect();
    let max = sizes.iter().max().copied().unwrap_or(0);
    let mean = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
    let cat = a.features["cat_0"].encoded_len();
    println!(
        "serialized size after {ROWS} rows: numeric feature mean {mean:.0} B, max {max} B \
         (target <= 6144 B); categorical feature {cat} B; whole window {} B (rows in reservoir: {})",
        a.encoded_len(),
        a.reservoir.as_ref().map_or(0, |r| r.rows.len())
    );
    let mut g = c.benchmark_group("profile");
    g.bench_function("merge_two_25_feature_profiles", |bench| {
        bench.iter(|| merge_parts(&[a.clone(), b.clone()]).unwrap())
    });
    let (wa, wb) = (
        WindowProfile::from_proto(&a).unwrap(),
        WindowProfile::from_proto(&b).unwrap(),
    );
    g.bench_function("merge_two_decoded_profiles", |bench| {
        bench.iter(|| {
            let mut x = wa.clone();
            x.merge(&wb).unwrap();
            x
        })
    });
    g.bench_function("encode_25_feature_profile", |bench| {
        bench.iter(|| a.encode_to_vec())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
