#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A monitor shipping through the real shipping client to a gRPC `AgentService` on a random
//! loopback port: windows, labels and the reference arrive decodable, and the delivery counters
//! add up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use neurocloak_core::profile::{WindowProfile, merge_parts};
use neurocloak_core::{Batch, Column, ColumnData, Monitor, MonitorConfig, Prediction, Value};
use neurocloak_proto::v1::agent_service_server::{AgentService, AgentServiceServer};
use neurocloak_proto::v1::push_request::Payload;
use neurocloak_proto::v1::{
    PushRequest, PushResponse, ReferenceBinsRequest, ReferenceBinsResponse,
};
use parking_lot::Mutex;
use tonic::{Request, Response, Status};

#[derive(Clone, Default)]
struct Agent {
    got: Arc<Mutex<Vec<PushRequest>>>,
}

#[tonic::async_trait]
impl AgentService for Agent {
    async fn push(&self, req: Request<PushRequest>) -> Result<Response<PushResponse>, Status> {
        self.got.lock().push(req.into_inner());
        Ok(Response::new(PushResponse { duplicate: false }))
    }

    async fn get_reference_bins(
        &self,
        req: Request<ReferenceBinsRequest>,
    ) -> Result<Response<ReferenceBinsResponse>, Status> {
        // The agent answers with the edges of the last reference pushed for the model.
        let want = req.into_inner().identity;
        let got = self.got.lock();
        let bins = got
            .iter()
            .rev()
            .find_map(|r| match &r.payload {
                Some(Payload::Reference(p)) if p.identity == want => Some(p.bins.clone()),
                _ => None,
            })
            .unwrap_or_default();
        Ok(Response::new(ReferenceBinsResponse { bins }))
    }
}

#[test]
fn monitor_ships_windows_labels_and_reference_to_an_agent() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let agent = Agent::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(
        tonic::transport::Server::builder()
            .add_service(AgentServiceServer::new(agent.clone()))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async {
                    let _ = stopped.await;
                },
            ),
    );

    let mut cfg = MonitorConfig::new("p", "m", "1");
    cfg.agent_endpoint = Some(format!("http://{addr}"));
    cfg.window = Duration::from_secs(24 * 3600);
    let m = Monitor::new(cfg).unwrap();
    let xs: Vec<f64> = (0..1000).map(f64::from).collect();
    m.set_reference(&Batch {
        features: vec![Column::new("x", ColumnData::F64(&xs))],
        ..Batch::default()
    })
    .unwrap();
    for i in 0..500 {
        let id = format!("id-{i}");
        m.log(
            &[("x", Value::Number(f64::from(i)))],
            &Prediction {
                id: Some(&id),
                prediction: Value::Bool(i % 2 == 0),
                ..Prediction::default()
            },
        )
        .unwrap();
    }
    m.log_labels(&["id-1", "id-2"], &[Value::Bool(true), Value::Bool(false)])
        .unwrap();
    m.flush(Duration::from_secs(10)).unwrap();

    let s = m.stats();
    assert_eq!(s.sent, s.delivered + s.dropped + s.queued);
    assert_eq!((s.sent, s.delivered, s.dropped), (3, 3, 0));
    let got = agent.got.lock().clone();
    assert_eq!(got.len(), 3);
    let windows: Vec<_> = got
        .iter()
        .filter_map(|r| match &r.payload {
            Some(Payload::Window(w)) => Some(w.clone()),
            _ => None,
        })
        .collect();
    let w = WindowProfile::from_proto(&merge_parts(&windows).unwrap()).unwrap();
    assert_eq!(w.rows, 500);
    assert_eq!(w.predictions.len(), 500);
    assert!(
        w.features["x"].numeric.as_ref().unwrap().bins.is_some(),
        "reference bins in use"
    );
    assert!(
        got.iter()
            .any(|r| matches!(r.payload, Some(Payload::Labels(_))))
    );
    assert!(
        got.iter()
            .any(|r| matches!(r.payload, Some(Payload::Reference(_))))
    );
    let instances: std::collections::BTreeSet<_> =
        got.iter().map(|r| r.sdk_instance.clone()).collect();
    assert_eq!(instances.len(), 1);

    // Another process of the same model picks the reference's edges up from the agent.
    let mut cfg = MonitorConfig::new("p", "m", "1");
    cfg.agent_endpoint = Some(format!("http://{addr}"));
    let worker = Monitor::new(cfg).unwrap();
    assert_eq!(
        worker
            .fetch_reference_edges(Duration::from_secs(5))
            .unwrap(),
        1
    );
    worker
        .log(&[("x", 5.0.into())], &Prediction::default())
        .unwrap();
    worker.flush(Duration::from_secs(5)).unwrap();
    let last = agent.got.lock().last().cloned().unwrap();
    let Some(Payload::Window(w)) = last.payload else {
        panic!("expected a window");
    };
    let bins = w.features["x"]
        .numeric
        .as_ref()
        .unwrap()
        .bins
        .clone()
        .unwrap();
    assert_eq!(bins.counts.iter().sum::<u64>(), 1);
    assert_eq!(bins.edges.len(), 11);

    // A short window closes on the shipping thread's tick, without flush and without new rows.
    let mut cfg = MonitorConfig::new("p", "m", "2");
    cfg.agent_endpoint = Some(format!("http://{addr}"));
    cfg.window = Duration::from_millis(100);
    cfg.close_delay = Duration::from_millis(20);
    let short = Monitor::new(cfg).unwrap();
    let r: Result<(), &str> = short.observe(|| Err("model failed"));
    assert!(r.is_err());
    short
        .log(&[("x", 1.0.into())], &Prediction::default())
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while short.stats().delivered == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        short.stats().delivered,
        1,
        "the window was not closed by time"
    );
    let last = agent.got.lock().last().cloned().unwrap();
    let Some(Payload::Window(w)) = last.payload else {
        panic!("expected a window");
    };
    assert_eq!(
        (w.rows, w.errors, w.identity.unwrap().version.as_str()),
        (1, 1, "2")
    );

    m.shutdown(Duration::from_secs(5)).unwrap();
    assert!(m.log(&[("x", 1.0.into())], &Prediction::default()).is_err());
    let _ = stop.send(());
    let deadline = Instant::now() + Duration::from_secs(5);
    rt.block_on(async { tokio::time::timeout_at(deadline.into(), server).await })
        .unwrap()
        .unwrap()
        .unwrap();
}
