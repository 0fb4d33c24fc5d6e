//! Shared by the pipeline's integration tests: window profiles recorded with sdk-core's real
//! `Monitor`, pushing them through the collector's gRPC ingest with a real API key, and small
//! HTTP helpers for the REST API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use neurocloak_core::monitor::{Batch, Column, ColumnData};
use neurocloak_core::{
    FeatureKind, MemorySink, Monitor, MonitorConfig, Prediction, TaskType, Value,
};
use neurocloak_proto::v1::ingest_service_client::IngestServiceClient;
use neurocloak_proto::v1::push_request::Payload;
use neurocloak_proto::v1::{
    IngestBatch, IngestItem, LabelBatch, ReferenceProfile, WindowProfile, ingest_item,
};
use serde_json::Value as Json;

pub const PROJECT: &str = "shop";
pub const WINDOW_MS: i64 = 60_000;
pub const FEATURES: [&str; 3] = ["x1", "x2", "x3"];

/// A deterministic generator (splitmix64) so every run sees the same data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.unit().max(1e-12);
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// How one window's traffic differs from the training data.
#[derive(Debug, Clone)]
pub struct Traffic {
    pub rows: usize,
    pub seed: u64,
    /// Added to feature `x2`.
    pub x2_shift: f64,
    /// Subtracted from the score of group "B" rows (a fairness regression).
    pub group_b_penalty: f64,
    /// Labels logged with the predictions (else they come later through `log_labels`).
    pub inline_labels: bool,
    /// Prefix of prediction ids.
    pub id_prefix: String,
}

impl Traffic {
    pub fn stable(seed: u64) -> Traffic {
        Traffic {
            rows: 1500,
            seed,
            x2_shift: 0.0,
            group_b_penalty: 0.0,
            inline_labels: true,
            id_prefix: format!("w{seed}"),
        }
    }
}

/// One generated row: features, the model's P(class 1) and the true class.
struct Row {
    x: [f64; 3],
    group: &'static str,
    p: f64,
    label: bool,
}

fn rows(t: &Traffic) -> Vec<Row> {
    let mut rng = Rng::new(t.seed);
    (0..t.rows)
        .map(|_| {
            let x = [rng.normal(), rng.normal() + t.x2_shift, rng.normal()];
            let group = if rng.unit() < 0.5 { "A" } else { "B" };
            // The truth depends on the unshifted features; the model sees what it sees.
            let logit_true = 1.2 * x[0] - 0.8 * (x[1] - t.x2_shift) + 0.3 * x[2];
            let label = rng.unit() < 1.0 / (1.0 + (-logit_true).exp());
            let mut logit = 1.2 * x[0] - 0.8 * x[1] + 0.3 * x[2];
            if group == "B" {
                logit -= t.group_b_penalty;
            }
            let p = 1.0 / (1.0 + (-logit).exp());
            Row { x, group, p, label }
        })
        .collect()
}

pub fn config(model: &str, version: &str) -> MonitorConfig {
    let mut c = MonitorConfig::new(PROJECT, model, version);
    c.task = TaskType::BinaryClassification;
    c.features = Some(
        FEATURES
            .iter()
            .map(|f| ((*f).to_owned(), FeatureKind::Numeric))
            .chain([("group".to_owned(), FeatureKind::Categorical)])
            .collect(),
    );
    c.sensitive = vec!["group".into()];
    c
}

/// The training reference (built by the SDK's `set_reference` on 4000 stable rows).
pub fn reference(model: &str, version: &str) -> neurocloak_core::ReferenceProfile {
    let sink = Arc::new(MemorySink::new());
    let m = Monitor::with_sink(config(model, version), sink).unwrap();
    let t = Traffic {
        rows: 4000,
        ..Traffic::stable(999)
    };
    let data = rows(&t);
    let cols: Vec<Vec<f64>> = (0..3)
        .map(|i| data.iter().map(|r| r.x[i]).collect())
        .collect();
    let groups: Vec<&str> = data.iter().map(|r| r.group).collect();
    let preds: Vec<i64> = data.iter().map(|r| i64::from(r.p > 0.5)).collect();
    let labels: Vec<i64> = data.iter().map(|r| i64::from(r.label)).collect();
    let batch = Batch {
        features: vec![
            Column::new("x1", ColumnData::F64(&cols[0])),
            Column::new("x2", ColumnData::F64(&cols[1])),
            Column::new("x3", ColumnData::F64(&cols[2])),
            Column::new("group", ColumnData::Str(&groups)),
        ],
        predictions: Some(ColumnData::I64(&preds)),
        labels: Some(ColumnData::I64(&labels)),
        ids: None,
        scores: None,
        scores_per_row: 0,
        timestamps_ms: None,
    };
    m.set_reference(&batch).unwrap()
}

/// One window recorded by a real `Monitor`, re-stamped to `start_ms`. Also returns the
/// (id, label) pairs, for sending labels later.
pub fn window(
    model: &str,
    version: &str,
    edges: &BTreeMap<String, Vec<f64>>,
    t: &Traffic,
    start_ms: i64,
) -> (WindowProfile, Vec<(String, bool)>) {
    let sink = Arc::new(MemorySink::new());
    let m = Monitor::with_sink(config(model, version), sink.clone()).unwrap();
    m.set_reference_edges(edges.clone()).unwrap();
    let mut truth = Vec::new();
    for (i, r) in rows(t).iter().enumerate() {
        let id = format!("{}-{i}", t.id_prefix);
        let scores = [1.0 - r.p, r.p];
        let features = [
            ("x1", Value::Number(r.x[0])),
            ("x2", Value::Number(r.x[1])),
            ("x3", Value::Number(r.x[2])),
            ("group", Value::Text(r.group)),
        ];
        let p = Prediction {
            id: Some(&id),
            timestamp_ms: None,
            prediction: Value::Number(f64::from(u8::from(r.p > 0.5))),
            label: if t.inline_labels {
                Value::Number(f64::from(u8::from(r.label)))
            } else {
                Value::Missing
            },
            scores: &scores,
        };
        m.log(&features, &p).unwrap();
        m.record_latency(Duration::from_micros(800 + (i as u64 % 400)));
        truth.push((id, r.label));
    }
    m.flush(Duration::from_secs(5)).unwrap();
    let mut parts = sink.take_windows();
    assert!(!parts.is_empty());
    // Recorded now, filed under the scenario's window (rows may straddle a wall-clock minute).
    for p in &mut parts {
        p.window_start_ms = start_ms;
        p.window_length_ms = WINDOW_MS;
    }
    (neurocloak_core::merge_parts(&parts).unwrap(), truth)
}

/// Labels for earlier predictions, as the SDK's `log_labels` ships them.
pub fn labels(model: &str, version: &str, truth: &[(String, bool)]) -> Vec<LabelBatch> {
    let sink = Arc::new(MemorySink::new());
    let m = Monitor::with_sink(config(model, version), sink.clone()).unwrap();
    let ids: Vec<&str> = truth.iter().map(|(id, _)| id.as_str()).collect();
    let values: Vec<Value<'_>> = truth
        .iter()
        .map(|(_, l)| Value::Number(f64::from(u8::from(*l))))
        .collect();
    m.log_labels(&ids, &values).unwrap();
    sink.take()
        .into_iter()
        .filter_map(|p| match p {
            Payload::Labels(l) => Some(l),
            _ => None,
        })
        .collect()
}

/// A window start `n` windows after an aligned base two hours ago (closed long ago).
pub fn start(n: i64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    (now / WINDOW_MS - 120 + n) * WINDOW_MS
}

pub fn window_item(w: WindowProfile) -> IngestItem {
    IngestItem {
        payload: Some(ingest_item::Payload::Window(w)),
    }
}

pub fn label_item(l: LabelBatch) -> IngestItem {
    IngestItem {
        payload: Some(ingest_item::Payload::Labels(l)),
    }
}

pub fn reference_item(r: ReferenceProfile) -> IngestItem {
    IngestItem {
        payload: Some(ingest_item::Payload::Reference(r)),
    }
}

/// Pushes one batch through the real gRPC ingest with the API key.
pub async fn push(grpc: SocketAddr, key: &str, batch_id: &str, items: Vec<IngestItem>) {
    let mut client = IngestServiceClient::connect(format!("http://{grpc}"))
        .await
        .unwrap()
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    let mut req = tonic::Request::new(IngestBatch {
        batch_id: batch_id.into(),
        agent_id: "test-agent".into(),
        items,
    });
    req.metadata_mut().insert("x-api-key", key.parse().unwrap());
    let ack = client.ingest(req).await.unwrap().into_inner();
    assert!(!ack.duplicate);
}

/// A REST API request with an optional body: status and JSON body (`Null` when none).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> (u16, Json) {
    let body = body.unwrap_or("");
    let reply = crate::common::api_request(addr, method, path, key, body.as_bytes());
    (reply.status, reply.json_or_null())
}

/// Polls the trust score of one window until `accept` takes it (or panics after `timeout`).
pub fn wait_trust(
    http_addr: SocketAddr,
    key: &str,
    model: &str,
    version: &str,
    start_ms: i64,
    timeout: Duration,
    accept: impl Fn(&Json) -> bool,
) -> Json {
    let path = format!(
        "/api/v1/projects/{PROJECT}/models/{model}/trust?version={version}&environment=production&from_ms={start_ms}&to_ms={}",
        start_ms + 1
    );
    let deadline = Instant::now() + timeout;
    loop {
        let (status, body) = http(http_addr, "GET", &path, Some(key), None);
        assert_eq!(status, 200, "{body}");
        if let Some(t) = body["items"].as_array().and_then(|a| a.first())
            && accept(t)
        {
            return t.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no acceptable trust score for {model}@{version} window {start_ms}: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A collector configuration file with short pipeline timings for tests.
pub fn write_config(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("collector.toml");
    std::fs::write(
        &path,
        "[pipeline]\ngrace_ms = 200\npoll_ms = 100\nalert_tick_ms = 200\n\
         [jobs]\nlease_ms = 3000\n",
    )
    .unwrap();
    path
}

pub use crate::common::Collector;

/// A collector with the test pipeline configuration and `dir` as data directory (several may
/// share it); SIGKILLed on drop.
pub fn collector_in(storage: &str, dir: &std::path::Path) -> Collector {
    let cfg = write_config(dir);
    Collector::start_in(storage, dir, &["--config", cfg.to_str().unwrap()])
}
