//! One row of 20 numeric + 5 categorical features through `log_indexed` (the bindings' path)
//! and `log` (by name). Target (DESIGN §8): ≤ 400 ns per row.

#![allow(clippy::unwrap_used)]

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use neurocloak_core::{Prediction, Value};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let d = common::data(4096, 7);
    let names = common::names();
    let rows: Vec<Vec<Value<'_>>> = (0..4096)
        .map(|r| {
            d.numeric
                .iter()
                .map(|col| Value::Number(col[r]))
                .chain(d.categorical.iter().map(|col| Value::Text(col[r])))
                .collect()
        })
        .collect();
    let named: Vec<Vec<(&str, Value<'_>)>> = rows
        .iter()
        .map(|r| {
            names
                .iter()
                .map(String::as_str)
                .zip(r.iter().copied())
                .collect()
        })
        .collect();
    let pred = Prediction {
        prediction: Value::Number(1.0),
        ..Prediction::default()
    };
    let mut g = c.benchmark_group("record");
    g.throughput(Throughput::Elements(1));
    let m = common::monitor();
    let mut i = 0usize;
    g.bench_function("log_indexed_25_features", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            m.log_indexed(black_box(&rows[i]), &pred).unwrap();
        })
    });
    let m = common::monitor();
    g.bench_function("log_named_25_features", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            m.log(black_box(&named[i]), &pred).unwrap();
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
