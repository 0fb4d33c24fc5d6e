//! Window parts per second through the whole agent: gRPC push → validate → durable queue
//! (group commit with fdatasync) → merge → gzip batch → acknowledged forward.
//!
//! The collector side is a minimal `IngestService` that acknowledges at once, so the number
//! measures the agent alone (the collector has its own `ingest` bench). Parts are real SDK
//! profiles (12 features, 1000 rows, reservoir) from `neurocloak_core::Monitor`; 8 concurrent
//! SDK streams push the same windows, so the agent merges 8 parts per window.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use neurocloak_agent::config::Config;
use neurocloak_agent::queue::FsyncPolicy;
use neurocloak_agent::run::RunningAgent;
use neurocloak_core::monitor::{MemorySink, Monitor, MonitorConfig, Prediction, Value};
use neurocloak_proto::v1::agent_service_client::AgentServiceClient;
use neurocloak_proto::v1::ingest_service_server::{IngestService, IngestServiceServer};
use neurocloak_proto::v1::push_request::Payload;
use neurocloak_proto::v1::{
    IngestAck, IngestBatch, PushRequest, ReferenceBinsRequest, ReferenceBinsResponse, WindowProfile,
};
use tonic::{Request, Response, Status};

const STREAMS: u64 = 8;
const WINDOWS: u64 = 50;
static ROUND: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

struct AckingCollector;

#[tonic::async_trait]
impl IngestService for AckingCollector {
    async fn ingest(&self, r: Request<IngestBatch>) -> Result<Response<IngestAck>, Status> {
        let n = r.into_inner().items.len();
        Ok(Response::new(IngestAck {
            duplicate: false,
            stored: u32::try_from(n).unwrap_or(u32::MAX),
        }))
    }
    async fn get_reference_bins(
        &self,
        _: Request<ReferenceBinsRequest>,
    ) -> Result<Response<ReferenceBinsResponse>, Status> {
        Ok(Response::new(ReferenceBinsResponse::default()))
    }
}

/// One realistic window part from the SDK itself.
fn sdk_part() -> WindowProfile {
    let sink = Arc::new(MemorySink::new());
    let monitor = Monitor::with_sink(MonitorConfig::new("p", "m", "v1"), sink.clone()).unwrap();
    let names: Vec<String> = (0..10).map(|i| format!("num{i}")).collect();
    for r in 0..1000u32 {
        let mut row: Vec<(&str, Value<'_>)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                (
                    n.as_str(),
                    Value::Number(f64::from(r * (i as u32 + 1) % 997)),
                )
            })
            .collect();
        row.push(("city", Value::Text(["a", "b", "c", "d"][r as usize % 4])));
        row.push(("member", Value::Bool(r % 3 == 0)));
        let id = format!("id{r}");
        monitor
            .log(
                &row,
                &Prediction {
                    id: Some(&id),
                    prediction: Value::Number(f64::from(r % 2)),
                    ..Default::default()
                },
            )
            .unwrap();
    }
    monitor.flush(Duration::from_secs(5)).unwrap();
    sink.take_windows().into_iter().next().unwrap()
}

async fn start(dir: &std::path::Path, fsync: FsyncPolicy) -> RunningAgent {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = l.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(
                IngestServiceServer::new(AckingCollector)
                    .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
                    .max_decoding_message_size(256 << 20),
            )
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(l)),
    );
    let config = Config {
        uds_path: String::new(),
        tcp_addr: "127.0.0.1:0".into(),
        http_addr: String::new(),
        data_dir: dir.to_path_buf(),
        fsync,
        merge_grace_ms: 0,
        linger_ms: 5,
        collector: format!("http://{collector}"),
        api_key: "bench".into(),
        ..Config::default()
    };
    RunningAgent::start(&config).await.unwrap()
}

/// Pushes STREAMS x WINDOWS parts concurrently and waits until all were forwarded.
async fn round(agent: &RunningAgent, template: &WindowProfile, round: u64) -> Duration {
    let endpoint = format!("http://{}", agent.tcp_addr.unwrap());
    let before = agent.queue_stats().forwarded;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..STREAMS {
        let mut client = AgentServiceClient::connect(endpoint.clone()).await.unwrap();
        let template = template.clone();
        tasks.push(tokio::spawn(async move {
            for w in 0..WINDOWS {
                let mut part = template.clone();
                part.window_start_ms = (1_000 + round * WINDOWS + w) as i64 * 60_000;
                client
                    .push(PushRequest {
                        sdk_instance: format!("bench-{round}-{s}"),
                        sequence: w + 1,
                        payload: Some(Payload::Window(part)),
                    })
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    while agent.queue_stats().forwarded < before + STREAMS * WINDOWS {
        let s = agent.queue_stats();
        assert!(
            t.elapsed() < Duration::from_secs(120) && s.dropped_total() == 0,
            "not forwarded: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    t.elapsed()
}

fn bench(c: &mut Criterion) {
    // As the agent binary does.
    neurocloak_agent::memory::limit_arenas();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let template = sdk_part();
    let size = prost::Message::encoded_len(&template);
    let mut g = c.benchmark_group("agent");
    g.throughput(Throughput::Elements(STREAMS * WINDOWS));
    g.sample_size(10);
    // `always` is the default (group commit); `never` shows what durability costs.
    for (name, fsync) in [
        ("fsync_always", FsyncPolicy::Always),
        ("fsync_never", FsyncPolicy::Never),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let agent = rt.block_on(start(dir.path(), fsync));
        g.bench_function(format!("push_merge_forward_{size}B_parts_{name}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    // Fresh SDK instances every round: the agent would rightly drop repeats.
                    let n = ROUND.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    total += rt.block_on(round(&agent, &template, n));
                }
                total
            })
        });
        let s = agent.queue_stats();
        eprintln!(
            "{name}: forwarded {} parts, queue depth {}, dropped {}",
            s.forwarded,
            s.queued,
            s.dropped_total()
        );
        rt.block_on(agent.shutdown(Duration::from_secs(5)));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
