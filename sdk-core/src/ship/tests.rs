//! Shipper tests against a real tonic `AgentService` server on loopback TCP and a Unix socket.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use neurocloak_proto::v1::agent_service_server::{AgentService, AgentServiceServer};
use neurocloak_proto::v1::push_request::Payload;
use neurocloak_proto::v1::{
    FixedBins, LabelBatch, ModelIdentity, PushRequest, PushResponse, ReferenceBinsRequest,
    ReferenceBinsResponse,
};
use parking_lot::Mutex;
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

use super::*;

#[derive(Clone, Default)]
struct TestAgent {
    got: Arc<Mutex<Vec<(String, u64)>>>,
}

#[tonic::async_trait]
impl AgentService for TestAgent {
    async fn push(&self, req: Request<PushRequest>) -> Result<Response<PushResponse>, Status> {
        let req = req.into_inner();
        if let Some(Payload::Labels(b)) = &req.payload
            && b.identity.as_ref().is_some_and(|i| i.project == "reject")
        {
            return Err(Status::invalid_argument("project 'reject' is refused"));
        }
        let mut got = self.got.lock();
        let duplicate = got.contains(&(req.sdk_instance.clone(), req.sequence));
        if !duplicate {
            got.push((req.sdk_instance, req.sequence));
        }
        Ok(Response::new(PushResponse { duplicate }))
    }

    async fn get_reference_bins(
        &self,
        req: Request<ReferenceBinsRequest>,
    ) -> Result<Response<ReferenceBinsResponse>, Status> {
        let mut bins = BTreeMap::new();
        if req.into_inner().identity.is_some_and(|i| i.model == "m") {
            bins.insert(
                "age".to_string(),
                FixedBins {
                    edges: vec![1.0, 2.0],
                    ..Default::default()
                },
            );
        }
        Ok(Response::new(ReferenceBinsResponse { bins }))
    }
}

/// A running test agent; dropping it stops the server and waits until the port is free.
struct Server {
    agent: TestAgent,
    stop: Option<oneshot::Sender<()>>,
    rt: tokio::runtime::Runtime,
    done: Option<tokio::task::JoinHandle<()>>,
}

enum Addr {
    Tcp(SocketAddr),
    Uds(PathBuf),
}

impl Server {
    fn start(addr: &Addr, agent: TestAgent) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let svc = AgentServiceServer::new(agent.clone());
        let done = match addr {
            Addr::Tcp(a) => {
                let l = rt.block_on(tokio::net::TcpListener::bind(a)).unwrap();
                rt.spawn(async move {
                    tonic::transport::Server::builder()
                        .add_service(svc)
                        .serve_with_incoming_shutdown(
                            tokio_stream::wrappers::TcpListenerStream::new(l),
                            async {
                                let _ = stopped.await;
                            },
                        )
                        .await
                        .unwrap();
                })
            }
            Addr::Uds(p) => {
                let _ = std::fs::remove_file(p);
                let l = rt
                    .block_on(async { tokio::net::UnixListener::bind(p) })
                    .unwrap();
                rt.spawn(async move {
                    tonic::transport::Server::builder()
                        .add_service(svc)
                        .serve_with_incoming_shutdown(
                            tokio_stream::wrappers::UnixListenerStream::new(l),
                            async {
                                let _ = stopped.await;
                            },
                        )
                        .await
                        .unwrap();
                })
            }
        };
        Self {
            agent,
            stop: Some(stop),
            rt,
            done: Some(done),
        }
    }

    fn received(&self) -> Vec<(String, u64)> {
        self.agent.got.lock().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(d) = self.done.take() {
            let _ = self
                .rt
                .block_on(async { tokio::time::timeout(Duration::from_secs(5), d).await });
        }
    }
}

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn socket_path(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "nc-ship-{}-{tag}-{}.sock",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

fn endpoint_of(addr: &Addr) -> String {
    match addr {
        Addr::Tcp(a) => format!("http://{a}"),
        Addr::Uds(p) => format!("unix://{}", p.display()),
    }
}

fn config(addr: &Addr) -> ShipperConfig {
    ShipperConfig {
        endpoint: endpoint_of(addr),
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(100),
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_secs(2),
        drop_flush_timeout: Duration::from_millis(100),
        ..ShipperConfig::default()
    }
}

fn labels(project: &str) -> Payload {
    Payload::Labels(LabelBatch {
        identity: Some(ModelIdentity {
            project: project.into(),
            model: "m".into(),
            ..Default::default()
        }),
        labels: vec![],
    })
}

fn check(s: &ShipStats) {
    assert_eq!(s.sent, s.delivered + s.dropped + s.queued, "{s:?}");
}

fn delivers_all(addr: Addr) {
    let server = Server::start(&addr, TestAgent::default());
    let shipper = Shipper::new(config(&addr)).unwrap();
    for _ in 0..50 {
        assert_eq!(shipper.enqueue(labels("p")), Enqueued::Queued);
    }
    shipper.flush(Duration::from_secs(10)).unwrap();
    let s = shipper.stats();
    check(&s);
    assert_eq!((s.sent, s.delivered, s.dropped, s.queued), (50, 50, 0, 0));
    let got = server.received();
    assert_eq!(got.len(), 50);
    assert!(got.iter().all(|(i, _)| *i == shipper.sdk_instance()));
    let mut seqs: Vec<u64> = got.iter().map(|(_, s)| *s).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
    shipper.shutdown(Duration::from_secs(1)).unwrap();
}

#[test]
fn delivers_over_tcp() {
    delivers_all(Addr::Tcp(free_port()));
}

#[test]
fn delivers_over_unix_socket() {
    let p = socket_path("deliver");
    delivers_all(Addr::Uds(p.clone()));
    let _ = std::fs::remove_file(p);
}

/// Agent down: the backlog fills, then the oldest are dropped and counted; `enqueue` stays
/// fast; once the agent is back the newest payloads are delivered.
fn outage_then_recovery(addr: Addr) {
    let mut cfg = config(&addr);
    cfg.queue_capacity = 8;
    let shipper = Shipper::new(cfg).unwrap();
    let mut slowest = Duration::ZERO;
    for _ in 0..40 {
        let t = Instant::now();
        shipper.enqueue(labels("p"));
        slowest = slowest.max(t.elapsed());
        check(&shipper.stats());
    }
    assert!(
        slowest < Duration::from_millis(20),
        "enqueue took {slowest:?}"
    );
    assert!(shipper.flush(Duration::from_millis(100)).is_err());
    let s = shipper.stats();
    check(&s);
    assert!(s.queued <= 9 && s.dropped_overflow >= 31, "{s:?}");
    assert!(s.retries > 0, "{s:?}");
    assert!(shipper.last_error().is_some());

    let server = Server::start(&addr, TestAgent::default());
    shipper.flush(Duration::from_secs(10)).unwrap();
    let s = shipper.stats();
    check(&s);
    assert_eq!(s.queued, 0);
    assert_eq!(s.delivered + s.dropped_overflow, 40, "{s:?}");
    let mut seqs: Vec<u64> = server.received().iter().map(|(_, s)| *s).collect();
    seqs.sort_unstable();
    assert_eq!(seqs.len() as u64, s.delivered);
    // Drop-oldest: what survived is the newest run of sequences.
    assert_eq!(seqs.last(), Some(&40));
    assert_eq!(seqs.first(), Some(&(41 - s.delivered)));
    assert!(shipper.last_error().is_none());
}

#[test]
fn outage_over_tcp() {
    outage_then_recovery(Addr::Tcp(free_port()));
}

#[test]
fn outage_over_unix_socket() {
    let p = socket_path("outage");
    outage_then_recovery(Addr::Uds(p.clone()));
    let _ = std::fs::remove_file(p);
}

#[test]
fn invariant_holds_under_concurrent_producers() {
    let addr = Addr::Tcp(free_port());
    let server = Server::start(&addr, TestAgent::default());
    let mut cfg = config(&addr);
    cfg.queue_capacity = 16;
    let shipper = Arc::new(Shipper::new(cfg).unwrap());
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (shipper, done) = (Arc::clone(&shipper), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut snapshots = 0u64;
            while !done.load(Ordering::Relaxed) {
                check(&shipper.stats());
                snapshots += 1;
            }
            snapshots
        })
    };
    let producers: Vec<_> = (0..4)
        .map(|_| {
            let shipper = Arc::clone(&shipper);
            std::thread::spawn(move || {
                for _ in 0..500 {
                    shipper.enqueue(labels("p"));
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    shipper.flush(Duration::from_secs(20)).unwrap();
    done.store(true, Ordering::Relaxed);
    assert!(watcher.join().unwrap() > 0);
    let s = shipper.stats();
    check(&s);
    assert_eq!(s.sent, 2000);
    assert_eq!(s.queued, 0);
    assert_eq!(s.delivered, server.received().len() as u64);
    assert_eq!(s.dropped, s.dropped_overflow);
}

#[test]
fn flush_and_shutdown_time_out_when_agent_is_down() {
    let addr = Addr::Tcp(free_port());
    let shipper = Shipper::new(config(&addr)).unwrap();
    for _ in 0..3 {
        shipper.enqueue(labels("p"));
    }
    let t = Instant::now();
    let err = shipper.flush(Duration::from_millis(150)).unwrap_err();
    let took = t.elapsed();
    assert!(
        matches!(err, ShipError::Timeout { pending: 3, .. }),
        "{err}"
    );
    assert!(
        took >= Duration::from_millis(150) && took < Duration::from_secs(1),
        "{took:?}"
    );

    let t = Instant::now();
    let err = shipper.shutdown(Duration::from_millis(150)).unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(
        matches!(err, ShipError::Timeout { pending: 3, .. }),
        "{err}"
    );
    assert_eq!(
        shipper.enqueue(labels("p")),
        Enqueued::Dropped(DropReason::Shutdown)
    );
    let s = shipper.stats();
    check(&s);
    assert_eq!((s.sent, s.dropped_shutdown, s.queued), (4, 4, 0));
    assert!(matches!(
        shipper.fetch_reference_bins(ModelIdentity::default(), Duration::from_millis(10)),
        Err(ShipError::ShutDown)
    ));
}

#[test]
fn rejected_and_oversized_payloads_are_counted() {
    let addr = Addr::Tcp(free_port());
    let server = Server::start(&addr, TestAgent::default());
    let mut cfg = config(&addr);
    cfg.max_message_bytes = 64;
    let shipper = Shipper::new(cfg).unwrap();
    shipper.enqueue(labels("reject"));
    shipper.enqueue(labels("p"));
    let huge = labels(&"x".repeat(100));
    assert_eq!(
        shipper.enqueue(huge),
        Enqueued::Dropped(DropReason::Oversized)
    );
    shipper.flush(Duration::from_secs(5)).unwrap();
    let s = shipper.stats();
    check(&s);
    assert_eq!(
        (s.delivered, s.dropped_rejected, s.dropped_oversized),
        (1, 1, 1)
    );
    assert_eq!(server.received().len(), 1);
}

#[test]
fn invalid_endpoint_is_a_clear_error() {
    let cfg = ShipperConfig {
        endpoint: "localhost:7071".into(),
        ..ShipperConfig::default()
    };
    assert!(matches!(
        Shipper::new(cfg),
        Err(ShipError::InvalidEndpoint { .. })
    ));
}

#[test]
fn tick_hook_runs_periodically_and_survives_a_panic() {
    let shipper = Shipper::new(config(&Addr::Tcp(free_port()))).unwrap();
    let ticks = Arc::new(AtomicU64::new(0));
    let t2 = Arc::clone(&ticks);
    shipper.set_tick(Duration::from_millis(10), move || {
        if t2.fetch_add(1, Ordering::Relaxed) == 0 {
            panic!("first tick panics on purpose");
        }
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while ticks.load(Ordering::Relaxed) < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(ticks.load(Ordering::Relaxed) >= 5);
    shipper.clear_tick();
    std::thread::sleep(Duration::from_millis(30));
    let frozen = ticks.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(ticks.load(Ordering::Relaxed), frozen);
}

#[test]
fn fetches_reference_bins_and_times_out_when_down() {
    let addr = Addr::Tcp(free_port());
    let shipper = Shipper::new(config(&addr)).unwrap();
    let id = ModelIdentity {
        model: "m".into(),
        ..Default::default()
    };
    let t = Instant::now();
    assert!(
        shipper
            .fetch_reference_bins(id.clone(), Duration::from_millis(300))
            .is_err()
    );
    assert!(t.elapsed() < Duration::from_secs(2));
    let _server = Server::start(&addr, TestAgent::default());
    let bins = shipper
        .fetch_reference_bins(id, Duration::from_secs(5))
        .unwrap();
    assert_eq!(bins["age"].edges, vec![1.0, 2.0]);
}

/// A forked child ships on its own: fresh backlog, new sdk_instance, new thread — with no
/// fork hooks called, as under gunicorn without configuration.
#[test]
fn forked_child_ships_without_configuration() {
    let addr = Addr::Tcp(free_port());
    let server = Server::start(&addr, TestAgent::default());
    let shipper = Shipper::new(config(&addr)).unwrap();
    shipper.enqueue(labels("p"));
    shipper.flush(Duration::from_secs(5)).unwrap();
    let parent_instance = shipper.sdk_instance();

    // SAFETY: the child only runs code designed for a forked child (it rebuilds its shipping
    // state) and leaves with _exit, never returning into the test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if shipper.stats().sent != 0 || shipper.sdk_instance() == parent_instance {
                return 2;
            }
            for _ in 0..5 {
                shipper.enqueue(labels("p"));
            }
            if shipper.flush(Duration::from_secs(10)).is_err() {
                return 3;
            }
            let s = shipper.stats();
            if (s.sent, s.delivered) != (5, 5) {
                return 4;
            }
            0
        }))
        .unwrap_or(5);
        // SAFETY: terminating the child without running the parent's atexit/test machinery.
        unsafe { libc::_exit(ok) };
    }
    let mut status = 0;
    // SAFETY: waiting for the child we just forked.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid);
    assert!(libc::WIFEXITED(status), "child did not exit: {status}");
    assert_eq!(libc::WEXITSTATUS(status), 0, "child failed");

    let got = server.received();
    let child: Vec<_> = got.iter().filter(|(i, _)| *i != parent_instance).collect();
    assert_eq!(child.len(), 5);
    // The parent keeps working after the fork.
    shipper.enqueue(labels("p"));
    shipper.flush(Duration::from_secs(5)).unwrap();
    assert_eq!(shipper.stats().delivered, 2);
}
