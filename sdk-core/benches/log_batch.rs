//! Columnar batches of 100k rows × (20 numeric + 5 categorical). Target (DESIGN §8):
//! ≥ 2 M rows/s on one core.

#![allow(clippy::unwrap_used)]

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use neurocloak_core::{Batch, Column, ColumnData};

const ROWS: usize = 100_000;

fn bench(c: &mut Criterion) {
    let d = common::data(ROWS, 11);
    let names = common::names();
    // Dictionary-encoded variant of the categoricals (what pandas categoricals and Arrow
    // dictionaries hand over).
    let codes: Vec<Vec<i32>> = d
        .categorical
        .iter()
        .map(|col| {
            col.iter()
                .map(|v| common::CATEGORIES.iter().position(|c| c == v).unwrap() as i32)
                .collect()
        })
        .collect();
    let numeric_cols = || {
        d.numeric
            .iter()
            .enumerate()
            .map(|(j, col)| Column::new(&names[j], ColumnData::F64(col)))
    };
    let str_batch = Batch {
        features: numeric_cols()
            .chain(
                d.categorical
                    .iter()
                    .enumerate()
                    .map(|(j, col)| Column::new(&names[common::NUMERIC + j], ColumnData::Str(col))),
            )
            .collect(),
        ..Batch::default()
    };
    let dict_batch = Batch {
        features: numeric_cols()
            .chain(codes.iter().enumerate().map(|(j, col)| {
                Column::new(
                    &names[common::NUMERIC + j],
                    ColumnData::Dictionary {
                        codes: col,
                        values: &common::CATEGORIES,
                    },
                )
            }))
            .collect(),
        ..Batch::default()
    };
    let mut g = c.benchmark_group("log_batch");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.sample_size(20);
    let m = common::monitor();
    g.bench_function("100k_rows_str_categoricals", |b| {
        b.iter(|| m.log_batch(&str_batch).unwrap())
    });
    let m = common::monitor();
    g.bench_function("100k_rows_dictionary_categoricals", |b| {
        b.iter(|| m.log_batch(&dict_batch).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
