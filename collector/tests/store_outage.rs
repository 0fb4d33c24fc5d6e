//! The database goes away under a running collector (FerretDB kill -9) and comes back: ingest
//! answers UNAVAILABLE (so agents keep the batch and retry), /readyz reports it, and after the
//! restart the retried batch is stored once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{Collector, FerretDb, admin, http_get, identity, window_item};
use neurocloak_proto::v1::ingest_service_client::IngestServiceClient;
use neurocloak_proto::v1::{IngestAck, IngestBatch};
use tonic::transport::Channel;
use tonic::{Code, Request};

async fn push(
    c: &mut IngestServiceClient<Channel>,
    key: &str,
    batch: &IngestBatch,
) -> Result<IngestAck, tonic::Status> {
    let mut req = Request::new(batch.clone());
    req.metadata_mut().insert("x-api-key", key.parse().unwrap());
    c.ingest(req).await.map(|r| r.into_inner())
}

fn batch(i: i64) -> IngestBatch {
    let profile = common::window_profile_rows(identity("p", "m"), i * 60_000, i as u64, 50);
    IngestBatch {
        batch_id: format!("outage-{i}"),
        agent_id: "a".into(),
        items: vec![window_item(profile)],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_is_unavailable_then_recovers() {
    let mut db = FerretDb::start();
    // Fail fast while the server is gone instead of the driver's 30 s default.
    let uri = format!("{}?serverSelectionTimeoutMS=1000", db.uri());
    let flags = ["--storage", uri.as_str(), "--mongo-database", "outage"];
    let boot = admin(&[&["bootstrap", "--org", "o", "--project", "p"], &flags[..]].concat());
    let key = boot["api_key"].as_str().unwrap().to_owned();
    let collector = Collector::start(
        &uri,
        &["--mongo-database", "outage", "--jobs-enabled", "false"],
    );
    let mut c = IngestServiceClient::connect(format!("http://{}", collector.grpc))
        .await
        .unwrap();

    assert_eq!(push(&mut c, &key, &batch(1)).await.unwrap().stored, 1);
    assert_eq!(http_get(collector.http, "/readyz", &[]).0, 200);

    db.kill();
    let status = push(&mut c, &key, &batch(2)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let (code, body) = http_get(collector.http, "/readyz", &[]);
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("\"ready\":false"), "{body}");
    assert_eq!(
        http_get(collector.http, "/healthz", &[]).0,
        200,
        "the process itself is fine"
    );

    db.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(collector.http, "/readyz", &[]).0 != 200 {
        assert!(
            Instant::now() < deadline,
            "collector never saw the database again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ack = push(&mut c, &key, &batch(2)).await.unwrap();
    assert_eq!(
        (ack.duplicate, ack.stored),
        (false, 1),
        "the retried batch is stored"
    );
    let ack = push(&mut c, &key, &batch(1)).await.unwrap();
    assert!(
        ack.duplicate,
        "what was stored before the outage is still there"
    );
}
