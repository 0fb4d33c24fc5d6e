//! Rate limits on the real collector binary with tiny budgets: a key over its read budget gets
//! 429 + Retry-After on REST (RESOURCE_EXHAUSTED on gRPC queries) and recovers after waiting,
//! another key is unaffected, gRPC ingest gets RESOURCE_EXHAUSTED with `retry-after`, and failed
//! authentications are limited per address.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::{Collector, bootstrap, identity, metric, ops_key, sqlite_storage, window_item};
use neurocloak_proto::v1::ingest_service_client::IngestServiceClient;
use neurocloak_proto::v1::query_service_client::QueryServiceClient;
use neurocloak_proto::v1::*;
use tonic::{Code, Request};

const PROJECT: &str = "fraud";

/// Reads: burst 3, then one per 2 s. Ingest: burst 2, then one per 2 s. Writes and the
/// address budget as each test needs.
const LIMITS: &str = "[rate_limit]\nread_per_s = 0.5\nread_burst = 3\nwrite_per_s = 0.5\n\
write_burst = 2\ningest_per_s = 0.5\ningest_burst = 2\nauth_failures_per_minute = 3\n";

struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: serde_json::Value,
}

/// One GET from `from` (an address of the loopback 127/8 range) with `key` in `x-api-key`.
async fn get(server: SocketAddr, from: IpAddr, path: &str, key: Option<&str>) -> Answer {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    let mut stream = socket.connect(server).await.unwrap();
    let key_line = key.map_or(String::new(), |k| format!("x-api-key: {k}\r\n"));
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {server}\r\nConnection: close\r\n{key_line}\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_string(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let retry_after = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("retry-after")
            .then(|| v.trim().to_owned())
    });
    Answer {
        status,
        retry_after,
        body: serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    }
}

fn localhost() -> IpAddr {
    IpAddr::from([127, 0, 0, 1])
}

/// Whole seconds from a `Retry-After`, which must be an integer >= 1.
fn retry_seconds(a: &Answer) -> u64 {
    let value = a.retry_after.as_deref().expect("a 429 carries Retry-After");
    let s: u64 = value
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After {value:?}"));
    assert!(s >= 1, "Retry-After {s}");
    s
}

fn start(dir: &std::path::Path) -> (Collector, String) {
    let storage = sqlite_storage(dir);
    let key = bootstrap(&storage, PROJECT);
    let config = dir.join("limits.toml");
    std::fs::write(&config, LIMITS).unwrap();
    let c = Collector::start(&storage, &["--config", config.to_str().unwrap()]);
    (c, key)
}

fn batch(i: usize) -> IngestBatch {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let start = now - now % 60_000 - 120_000;
    IngestBatch {
        batch_id: format!("b-{i}"),
        agent_id: "agent-1".into(),
        items: vec![window_item(common::window_profile_rows(
            identity(PROJECT, "scorer"),
            start,
            i as u64,
            10,
        ))],
    }
}

async fn push(c: &Collector, key: &str, b: IngestBatch) -> Result<IngestAck, tonic::Status> {
    let mut client = IngestServiceClient::connect(format!("http://{}", c.grpc))
        .await
        .unwrap();
    let mut req = Request::new(b);
    req.metadata_mut().insert("x-api-key", key.parse().unwrap());
    client.ingest(req).await.map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_over_their_budget_wait_and_others_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let (c, key) = start(dir.path());
    let other = ops_key(&sqlite_storage(dir.path()), PROJECT);
    let projects = "/api/v1/projects";

    for _ in 0..3 {
        assert_eq!(
            get(c.http, localhost(), projects, Some(&key)).await.status,
            200
        );
    }
    let refused = get(c.http, localhost(), projects, Some(&key)).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    let wait = retry_seconds(&refused);
    assert!(wait <= 2, "one token per 2 s, told to wait {wait} s");
    let message = refused.body["error"].as_str().unwrap();
    assert!(message.contains("rate limit"), "{message}");
    // The same budget covers the pipeline's routes.
    let trust = format!("/api/v1/projects/{PROJECT}/models/scorer/trust");
    assert_eq!(
        get(c.http, localhost(), &trust, Some(&key)).await.status,
        429
    );
    // So do gRPC queries.
    let mut query = QueryServiceClient::connect(format!("http://{}", c.grpc))
        .await
        .unwrap();
    let mut req = Request::new(ListTrustScoresRequest {
        project: PROJECT.into(),
        model: "scorer".into(),
        ..Default::default()
    });
    req.metadata_mut().insert("x-api-key", key.parse().unwrap());
    let status = query.list_trust_scores(req).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.metadata().get("retry-after").is_some(), "{status:?}");

    // Another key of the same project, from the same address, has its own budget.
    assert_eq!(
        get(c.http, localhost(), projects, Some(&other))
            .await
            .status,
        200
    );

    std::thread::sleep(Duration::from_secs(wait));
    assert_eq!(
        get(c.http, localhost(), projects, Some(&key)).await.status,
        200
    );

    // gRPC ingest is a budget of its own: two batches pass, the third waits.
    for i in 0..2 {
        let ack = push(&c, &key, batch(i)).await.unwrap();
        assert_eq!(ack.stored, 1);
    }
    let status = push(&c, &key, batch(2)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let retry: u64 = status
        .metadata()
        .get("retry-after")
        .expect("retry-after metadata")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "retry-after {retry}");
    tokio::time::sleep(Duration::from_secs(retry)).await;
    assert_eq!(push(&c, &key, batch(2)).await.unwrap().stored, 1);

    let metrics = common::http_get(c.http, "/metrics", &[]).1;
    let limited = |s: &str| {
        metric(
            &metrics,
            &format!("neurocloak_collector_rate_limited_total{{surface=\"{s}\"}}"),
        )
    };
    assert_eq!(limited("rest_read"), 3.0, "{metrics}");
    assert_eq!(limited("ingest"), 1.0, "{metrics}");
    // A rate-limited batch is not mistaken for an oversized one.
    assert_eq!(
        metric(
            &metrics,
            "neurocloak_collector_ingest_rejects_total{reason=\"oversized\"}"
        ),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentications_are_limited_per_address() {
    let dir = tempfile::tempdir().unwrap();
    let (c, key) = start(dir.path());
    let projects = "/api/v1/projects";
    let wrong = "nck_0123456789abcdef_not-the-secret";

    // The valid key authenticates once before the address misbehaves.
    assert_eq!(
        get(c.http, localhost(), projects, Some(&key)).await.status,
        200
    );
    for _ in 0..3 {
        assert_eq!(
            get(c.http, localhost(), projects, Some(wrong)).await.status,
            401
        );
    }
    let refused = get(c.http, localhost(), projects, Some(wrong)).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    // 3 per minute: the next failure is allowed 20 s later.
    let wait = retry_seconds(&refused);
    assert!((1..=20).contains(&wait), "{wait}");
    assert!(refused.body["error"].is_string());
    assert_eq!(get(c.http, localhost(), projects, None).await.status, 429);

    // The address is refused on gRPC too, before the key is looked up.
    let status = push(&c, wrong, batch(0)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.metadata().get("retry-after").is_some());

    // The valid key that authenticated before still works from that address...
    assert_eq!(
        get(c.http, localhost(), projects, Some(&key)).await.status,
        200
    );
    // ...and another address still gets its own answers.
    let elsewhere = IpAddr::from([127, 0, 0, 2]);
    assert_eq!(
        get(c.http, elsewhere, projects, Some(wrong)).await.status,
        401
    );
    assert_eq!(
        get(c.http, elsewhere, projects, Some(&key)).await.status,
        200
    );

    let metrics = common::http_get(c.http, "/metrics", &[]).1;
    let series = "neurocloak_collector_rate_limited_total{surface=\"auth_failures\"}";
    assert_eq!(metric(&metrics, series), 3.0, "{metrics}");
}

/// Every operation that authenticates documents the 429 and its integer `Retry-After`.
#[test]
fn the_document_lists_the_429_wherever_a_key_is_checked() {
    let doc: serde_json::Value = serde_json::from_str(include_str!("../openapi.json")).unwrap();
    let too_many = &doc["components"]["responses"]["TooManyRequests"];
    let header = &too_many["headers"]["Retry-After"]["schema"];
    assert_eq!(header["type"], "integer");
    assert_eq!(header["minimum"], 1);
    assert_eq!(
        too_many["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/Error"
    );
    let mut checked = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let responses = &op["responses"];
            if responses.get("401").is_some() {
                assert_eq!(
                    responses["429"]["$ref"], "#/components/responses/TooManyRequests",
                    "{method} {path}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 20, "{checked}");
}
