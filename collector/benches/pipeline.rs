//! Pipeline latency, measured (not asserted), on the embedded SQLite store:
//!
//! 1. **Evaluation of one 25-feature window** (20 numeric, 5 categorical, 2 000 rows recorded
//!    by sdk-core's `Monitor`, against a 5 000-row reference): `evaluate_window` + `trust_score`
//!    alone, and the runner's whole step (load parts, merge, join labels, evaluate, store the
//!    evaluation and trust score, run the default alert rules).
//! 2. **Window close → trust score stored**, through a real in-process collector: 1-second
//!    windows pushed over gRPC ingest the moment they close, the trust score received on the
//!    gRPC `WatchTrustScores` stream (so after it was stored); latency counted from the end of
//!    the grace period (DESIGN §8: p99 ≤ 2 s).
//!
//! `cargo bench -p neurocloak-collector --bench pipeline` (prints p50/p99; optional env
//! `PIPELINE_BENCH_WINDOWS`, default 40).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use neurocloak_collector::config::Config;
use neurocloak_collector::metrics::Metrics;
use neurocloak_collector::pipeline::{self, runner};
use neurocloak_collector::server::Server;
use neurocloak_collector::store::{self, Batch, BatchItem, ModelKey, WindowPart, now_ms};
use neurocloak_core::monitor::{Batch as RowBatch, Column, ColumnData};
use neurocloak_core::{FeatureKind, MemorySink, Monitor, MonitorConfig, Prediction, Value};
use neurocloak_proto::v1::ingest_service_client::IngestServiceClient;
use neurocloak_proto::v1::query_service_client::QueryServiceClient;
use neurocloak_proto::v1::{
    IngestBatch, IngestItem, WatchRequest, WindowProfile, ingest_item, live_update,
};
use prost::Message as _;

const PROJECT: &str = "bench";
const ROWS: usize = 2_000;

struct Rng(u64);
impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let u = self.unit().max(1e-12);
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * self.unit()).cos()
    }
}

fn names() -> (Vec<String>, Vec<String>) {
    (
        (0..20).map(|i| format!("num_{i:02}")).collect(),
        (0..5).map(|i| format!("cat_{i}")).collect(),
    )
}

fn monitor(model: &str) -> (Monitor, Arc<MemorySink>) {
    let (num, cat) = names();
    let mut c = MonitorConfig::new(PROJECT, model, "v1");
    c.features = Some(
        num.iter()
            .map(|n| (n.clone(), FeatureKind::Numeric))
            .chain(cat.iter().map(|n| (n.clone(), FeatureKind::Categorical)))
            .collect(),
    );
    c.sensitive = vec!["cat_0".into()];
    let sink = Arc::new(MemorySink::new());
    (Monitor::with_sink(c, sink.clone()).unwrap(), sink)
}

const CATS: [&str; 4] = ["a", "b", "c", "d"];

fn reference(model: &str) -> neurocloak_core::ReferenceProfile {
    let (m, _) = monitor(model);
    let (num, cat) = names();
    let mut rng = Rng(7);
    let n = 5_000;
    let numeric: Vec<Vec<f64>> = (0..20)
        .map(|_| (0..n).map(|_| rng.normal()).collect())
        .collect();
    let categorical: Vec<Vec<&str>> = (0..5)
        .map(|_| (0..n).map(|_| CATS[(rng.unit() * 4.0) as usize]).collect())
        .collect();
    let preds: Vec<i64> = (0..n).map(|i| i64::from(numeric[0][i] > 0.0)).collect();
    let mut features: Vec<Column<'_>> = num
        .iter()
        .zip(&numeric)
        .map(|(name, v)| Column::new(name, ColumnData::F64(v)))
        .collect();
    features.extend(
        cat.iter()
            .zip(&categorical)
            .map(|(name, v)| Column::new(name, ColumnData::Str(v))),
    );
    m.set_reference(&RowBatch {
        features,
        predictions: Some(ColumnData::I64(&preds)),
        labels: Some(ColumnData::I64(&preds)),
        ids: None,
        scores: None,
        scores_per_row: 0,
        timestamps_ms: None,
    })
    .unwrap()
}

/// One 25-feature window recorded by a real Monitor, re-stamped to `start_ms`.
fn window(
    model: &str,
    edges: &BTreeMap<String, Vec<f64>>,
    seed: u64,
    start_ms: i64,
    len_ms: i64,
) -> WindowProfile {
    let (m, sink) = monitor(model);
    m.set_reference_edges(edges.clone()).unwrap();
    let (num, cat) = names();
    let mut rng = Rng(seed);
    for i in 0..ROWS {
        let id = format!("{seed}-{i}");
        let x: Vec<f64> = (0..20).map(|_| rng.normal()).collect();
        let mut row: Vec<(&str, Value<'_>)> = num
            .iter()
            .zip(&x)
            .map(|(n, v)| (n.as_str(), Value::Number(*v)))
            .collect();
        for n in &cat {
            row.push((n.as_str(), Value::Text(CATS[(rng.unit() * 4.0) as usize])));
        }
        let p = 1.0 / (1.0 + (-x[0]).exp());
        let scores = [1.0 - p, p];
        let label = Value::Number(f64::from(u8::from(rng.unit() < p)));
        m.log(
            &row,
            &Prediction {
                id: Some(&id),
                timestamp_ms: None,
                prediction: Value::Number(f64::from(u8::from(p > 0.5))),
                label,
                scores: &scores,
            },
        )
        .unwrap();
        m.record_latency(Duration::from_micros(500 + (i as u64 % 700)));
    }
    m.flush(Duration::from_secs(5)).unwrap();
    let mut parts = sink.take_windows();
    for p in &mut parts {
        p.window_start_ms = start_ms;
        p.window_length_ms = len_ms;
    }
    neurocloak_core::merge_parts(&parts).unwrap()
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(what: &str, mut d: Vec<Duration>) {
    d.sort();
    println!(
        "{what}: n={} p50={:.1} ms p99={:.1} ms max={:.1} ms",
        d.len(),
        percentile(&d, 0.5).as_secs_f64() * 1e3,
        percentile(&d, 0.99).as_secs_f64() * 1e3,
        d[d.len() - 1].as_secs_f64() * 1e3
    );
}

fn windows_to_run() -> usize {
    std::env::var("PIPELINE_BENCH_WINDOWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40)
}

/// Part 1: the runner's step on stored windows, without any polling in between.
async fn evaluation_time(dir: &std::path::Path) {
    let uri = format!("sqlite://{}", dir.join("eval.db").display());
    let store = store::open(&uri, "unused").await.unwrap();
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        storage: uri.clone(),
        ..Config::default()
    };
    config.pipeline.enabled = false;
    let metrics = Arc::new(Metrics::new().unwrap());
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let mut background = Vec::new();
    let p = pipeline::start(&config, &store, &metrics, &stop, &mut background)
        .await
        .unwrap();
    let model = "eval";
    let r = reference(model);
    let edges = r.edges();
    let key = ModelKey {
        project_id: PROJECT.into(),
        model: model.into(),
        version: "v1".into(),
        environment: "production".into(),
    };
    let item = |id: String, bytes: Vec<u8>, start: i64| {
        BatchItem::Window(WindowPart {
            id,
            key: key.clone(),
            window_start_ms: start,
            window_length_ms: 60_000,
            rows: ROWS as u64,
            agent_id: "bench".into(),
            batch_id: "b".into(),
            received_ms: now_ms(),
            profile: bytes,
        })
    };
    let reference_item = BatchItem::Reference(store::ReferenceRecord {
        id: "ref".into(),
        key: key.clone(),
        created_ms: 1,
        received_ms: now_ms(),
        payload: r.to_proto().encode_to_vec(),
    });
    store
        .store_batch(&Batch {
            project_id: PROJECT.into(),
            batch_id: "ref".into(),
            agent_id: "bench".into(),
            received_ms: now_ms(),
            items: vec![reference_item],
        })
        .await
        .unwrap();
    let n = windows_to_run();
    let mut evaluate = Vec::new();
    let mut total = Vec::new();
    for i in 0..n {
        let start = i as i64 * 60_000;
        let w = window(model, &edges, 100 + i as u64, start, 60_000);
        if i == 0 {
            println!(
                "25-feature window: {} bytes encoded, {ROWS} rows",
                w.encoded_len()
            );
        }
        store
            .store_batch(&Batch {
                project_id: PROJECT.into(),
                batch_id: format!("w{i}"),
                agent_id: "bench".into(),
                received_ms: now_ms(),
                items: vec![item(format!("w{i}:0"), w.encode_to_vec(), start)],
            })
            .await
            .unwrap();
        let (outcome, timing) = runner::evaluate_once(&p, &key, start).await.unwrap();
        assert_eq!(outcome, runner::Outcome::Evaluated);
        let t = timing.unwrap();
        evaluate.push(t.evaluate);
        total.push(t.total);
    }
    report("evaluate_window + trust_score (25 features)", evaluate);
    report(
        "runner step: load, merge, join, evaluate, store, alerts",
        total,
    );
}

/// Part 2: window close → trust score stored, through gRPC ingest and the watch stream.
async fn close_to_stored(dir: &std::path::Path) {
    let uri = format!("sqlite://{}", dir.join("live.db").display());
    let grace_ms = 1_000;
    let admin_store = store::open(&uri, "unused").await.unwrap();
    let key = neurocloak_collector::admin::bootstrap(&admin_store, "org", PROJECT, "bench")
        .await
        .unwrap()
        .api_key;
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        storage: uri,
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    };
    // Defaults otherwise (poll 500 ms): the latency a deployment would see.
    config.pipeline.grace_ms = grace_ms;
    let server = Server::bind(config).await.unwrap();
    let grpc = server.grpc_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async move {
        let _ = stop_rx.await;
    }));

    let model = "live";
    let r = reference(model);
    let edges = r.edges();
    let n = windows_to_run();
    // Recorded ahead of time: only the pipeline is measured.
    let len = 1_000;
    let first = (now_ms() / len + 3) * len;
    let prepared: Vec<WindowProfile> = (0..n)
        .map(|i| window(model, &edges, 500 + i as u64, first + i as i64 * len, len))
        .collect();

    let mut ingest = IngestServiceClient::connect(format!("http://{grpc}"))
        .await
        .unwrap()
        .max_encoding_message_size(64 << 20);
    let send = |batch_id: String, items: Vec<IngestItem>| {
        let mut req = tonic::Request::new(IngestBatch {
            batch_id,
            agent_id: "bench".into(),
            items,
        });
        req.metadata_mut().insert("x-api-key", key.parse().unwrap());
        req
    };
    ingest
        .ingest(send(
            "ref".into(),
            vec![IngestItem {
                payload: Some(ingest_item::Payload::Reference(r.to_proto())),
            }],
        ))
        .await
        .unwrap();
    let mut watch = QueryServiceClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
    let mut req = tonic::Request::new(WatchRequest {
        project: PROJECT.into(),
        model: model.into(),
    });
    req.metadata_mut().insert("x-api-key", key.parse().unwrap());
    let mut stream = watch.watch_trust_scores(req).await.unwrap().into_inner();
    let received = tokio::spawn(async move {
        let mut at: BTreeMap<i64, i64> = BTreeMap::new();
        while at.len() < n {
            let Ok(Some(update)) = stream.message().await else {
                break;
            };
            if let Some(live_update::Event::TrustScore(p)) = update.event {
                at.entry(p.window_start_ms).or_insert_with(now_ms);
            }
        }
        at
    });

    for (i, w) in prepared.into_iter().enumerate() {
        let end = w.window_start_ms + len;
        let wait = end - now_ms();
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait as u64)).await;
        }
        ingest
            .ingest(send(
                format!("w{i}"),
                vec![IngestItem {
                    payload: Some(ingest_item::Payload::Window(w)),
                }],
            ))
            .await
            .unwrap();
    }
    let at = tokio::time::timeout(Duration::from_secs(60), received)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(at.len(), n, "every window's trust score arrived");
    let latencies: Vec<Duration> = at
        .iter()
        .map(|(start, t)| {
            let due = start + len + grace_ms;
            Duration::from_millis(u64::try_from(t - due).unwrap_or(0))
        })
        .collect();
    report(
        "window close + grace -> trust score stored (poll 500 ms, 1 s windows)",
        latencies,
    );
    let _ = stop_tx.send(());
    serving.await.unwrap().unwrap();
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs this too, so keep it short then.
    let quick =
        std::env::args().any(|a| a == "--test") || !std::env::args().any(|a| a == "--bench");
    if quick {
        println!("pipeline bench: run with `cargo bench -p neurocloak-collector --bench pipeline`");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    rt.block_on(evaluation_time(dir.path()));
    rt.block_on(close_to_stored(dir.path()));
    println!(
        "pipeline bench done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
