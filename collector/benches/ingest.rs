//! Ingest throughput of 25-feature window profiles (20 numeric, 5 categorical): validation plus
//! a durable `store_batch`, into the embedded SQLite store and into MongoDB-on-FerretDB.
//!
//! `cargo bench -p neurocloak-collector --bench ingest` (FerretDB from `scripts/ferretdb.sh build`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use neurocloak_collector::ingest::{Limits, validate::validate};
use neurocloak_collector::store::{self, SharedStore};
use neurocloak_proto::v1::IngestBatch;
use prost::Message as _;

const PROFILES_PER_BATCH: usize = 10;

fn batch(n: u64) -> IngestBatch {
    let items = (0..PROFILES_PER_BATCH)
        .map(|i| {
            let model = format!("model-{i}");
            let start = (n as i64) * 60_000;
            common::window_item(common::window_profile(
                common::identity("bench", &model),
                start,
                n + i as u64,
            ))
        })
        .collect();
    IngestBatch {
        batch_id: format!("bench-{n}"),
        agent_id: "bench".into(),
        items,
    }
}

fn bench_store(c: &mut Criterion, name: &str, rt: &tokio::runtime::Runtime, store: SharedStore) {
    // Batches are built ahead of time so only validation and storage are measured.
    let prepared: Vec<IngestBatch> = (0..64).map(batch).collect();
    let bytes = prepared[0].encoded_len();
    eprintln!("{name}: {PROFILES_PER_BATCH} profiles per batch, {bytes} bytes per batch encoded");
    let next = AtomicU64::new(0);
    let limits = Limits::default();
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(PROFILES_PER_BATCH as u64));
    group.sample_size(10);
    if name == "sqlite" {
        // The validation share of the cost (decoding every sketch with the SDK's decoder).
        group.bench_function("validate_only", |b| {
            b.iter(|| validate(&prepared[0], "bench", &limits, 0).unwrap())
        });
    }
    group.bench_function(name, |b| {
        b.to_async(rt).iter(|| async {
            let n = next.fetch_add(1, Ordering::Relaxed);
            let mut proto = prepared[(n % 64) as usize].clone();
            // A fresh batch id each time: replays would measure the duplicate path instead.
            proto.batch_id = format!("bench-{n}");
            let valid = validate(&proto, "bench", &limits, 0).unwrap();
            let outcome = store.store_batch(&valid).await.unwrap();
            assert!(!outcome.duplicate);
        })
    });
    group.finish();
}

fn ingest(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("sqlite://{}", dir.path().join("bench.db").display());
    let sqlite = rt.block_on(store::open(&uri, "unused")).unwrap();
    bench_store(c, "sqlite", &rt, sqlite);

    let ferret = common::FerretDb::start();
    let mongo = rt.block_on(store::open(&ferret.uri(), "bench")).unwrap();
    bench_store(c, "ferretdb", &rt, mongo);
}

criterion_group!(benches, ingest);
criterion_main!(benches);
