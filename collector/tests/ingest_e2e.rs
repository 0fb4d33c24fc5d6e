//! The real collector binary on SQLite: 1,000 batches with 10 % replays and 5 % malformed ones,
//! authentication failures, oversized messages and the HTTP read API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{Collector, admin, http_get, identity, metric, window_item};
use futures_util::{StreamExt as _, stream};
use neurocloak_collector::store::{self, ModelKey, PageRequest, WindowQuery};
use neurocloak_proto::v1::ingest_service_client::IngestServiceClient;
use neurocloak_proto::v1::*;
use tonic::codec::CompressionEncoding;
use tonic::transport::Channel;
use tonic::{Code, Request};

const PROJECT: &str = "fraud";
const MIN: i64 = 60_000;

type Client = IngestServiceClient<Channel>;
type Pushed = Result<IngestAck, tonic::Status>;
/// Batch index, what was sent, the first answer and the replay's answer.
type Outcome = (usize, Sent, Pushed, Option<Pushed>);

async fn client(c: &Collector) -> Client {
    IngestServiceClient::connect(format!("http://{}", c.grpc))
        .await
        .unwrap()
        .send_compressed(CompressionEncoding::Gzip)
        .max_encoding_message_size(64 << 20)
}

async fn push(
    client: &mut Client,
    key: Option<&str>,
    batch: IngestBatch,
) -> Result<IngestAck, tonic::Status> {
    let mut req = Request::new(batch);
    if let Some(k) = key {
        req.metadata_mut().insert("x-api-key", k.parse().unwrap());
    }
    client.ingest(req).await.map(|r| r.into_inner())
}

/// 100 rows per window rather than the bench's 1,000, so 1,000 batches stay quick.
fn profile(model: &str, start_min: i64, seed: u64) -> WindowProfile {
    common::window_profile_rows(identity(PROJECT, model), start_min * MIN, seed, 100)
}

/// Batch `i`: one window, and every fourth batch a second one of another model.
fn valid_batch(i: usize) -> IngestBatch {
    let mut items = vec![window_item(profile("scorer", i as i64, i as u64))];
    if i.is_multiple_of(4) {
        items.push(window_item(profile("ranker", i as i64, i as u64 + 7)));
    }
    IngestBatch {
        batch_id: format!("batch-{i:04}"),
        agent_id: "agent-1".into(),
        items,
    }
}

/// Breaks batch `i` in one of several ways; returns the field path the error must name.
fn malformed_batch(i: usize, variant: usize) -> (IngestBatch, &'static str) {
    let mut b = valid_batch(i);
    let Some(ingest_item::Payload::Window(w)) = b.items[0].payload.as_mut() else {
        unreachable!()
    };
    let path = match variant % 10 {
        0 => {
            w.window_start_ms += 1;
            "items[0].window.window_start_ms"
        }
        1 => {
            let col = w.features.get_mut("num_03").unwrap();
            col.numeric.as_mut().unwrap().moments.as_mut().unwrap().mean = f64::NAN;
            "items[0].window.features[\"num_03\"].numeric.moments.mean"
        }
        2 => {
            w.identity.as_mut().unwrap().model.clear();
            "items[0].window.identity.model"
        }
        3 => {
            w.identity.as_mut().unwrap().project = "someone-else".into();
            "items[0].window.identity.project"
        }
        4 => {
            b.items[0].payload = None;
            "items[0]"
        }
        5 => {
            let col = w.features.get_mut("cat_1").unwrap();
            col.categorical
                .as_mut()
                .unwrap()
                .hll
                .as_mut()
                .unwrap()
                .registers
                .truncate(10);
            "items[0].window.features[\"cat_1\"].categorical.hll.registers"
        }
        6 => {
            b.batch_id = "bad id with spaces".into();
            "batch_id"
        }
        7 => {
            b.items.clear();
            "items"
        }
        8 => {
            w.window_length_ms = 0;
            "items[0].window.window_length_ms"
        }
        _ => {
            let col = w.features.get_mut("num_00").unwrap();
            col.numeric.as_mut().unwrap().kll.as_mut().unwrap().levels[0].items[2] = f64::INFINITY;
            "items[0].window.features[\"num_00\"].numeric.kll.levels[0].items[2]"
        }
    };
    (b, path)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    Valid,
    Replayed,
    Malformed(usize),
}

fn plan(i: usize) -> Sent {
    match i % 20 {
        7 => Sent::Malformed(i / 20),
        3 | 13 => Sent::Replayed,
        _ => Sent::Valid,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_batches_replays_and_malformed_are_counted_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("neurocloak.db");
    let storage = format!("sqlite://{}", db.display());
    let key = common::bootstrap(&storage, PROJECT);
    let collector = Collector::start(&storage, &["--jobs-enabled", "false"]);
    let base = client(&collector).await;

    // Eight batches in flight at a time, as several agents would push.
    let results: Vec<Outcome> = stream::iter(0..1000usize)
        .map(|i| {
            let mut c = base.clone();
            let key = key.clone();
            async move {
                let kind = plan(i);
                let batch = match kind {
                    Sent::Malformed(v) => malformed_batch(i, v).0,
                    _ => valid_batch(i),
                };
                let first = push(&mut c, Some(&key), batch.clone()).await;
                let replay = match kind {
                    Sent::Replayed => Some(push(&mut c, Some(&key), batch).await),
                    _ => None,
                };
                (i, kind, first, replay)
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;

    let mut expected_ids = BTreeMap::<String, BTreeSet<String>>::new();
    let (mut malformed, mut replays) = (0, 0);
    for (i, kind, first, replay) in &results {
        match kind {
            Sent::Malformed(v) => {
                malformed += 1;
                let status = first.as_ref().expect_err("malformed batch accepted");
                assert_eq!(
                    status.code(),
                    Code::InvalidArgument,
                    "batch {i}: {status:?}"
                );
                let path = malformed_batch(*i, *v).1;
                assert!(
                    status.message().starts_with(path),
                    "batch {i}: {:?} should name {path}",
                    status.message()
                );
            }
            _ => {
                let ack = first
                    .as_ref()
                    .unwrap_or_else(|s| panic!("batch {i}: {s:?}"));
                assert!(!ack.duplicate, "batch {i} first push");
                let items = valid_batch(*i).items.len();
                assert_eq!(ack.stored as usize, items);
                expected_ids
                    .entry("scorer".into())
                    .or_default()
                    .insert(format!("batch-{i:04}:0"));
                if items == 2 {
                    expected_ids
                        .entry("ranker".into())
                        .or_default()
                        .insert(format!("batch-{i:04}:1"));
                }
                if let Some(replay) = replay {
                    replays += 1;
                    let ack = replay.as_ref().unwrap();
                    assert!(ack.duplicate, "batch {i} replay");
                    assert_eq!(ack.stored, 0);
                }
            }
        }
    }
    assert_eq!((malformed, replays), (50, 100));

    // Everything valid is stored exactly once, nothing else is.
    let store = store::open(&storage, "unused").await.unwrap();
    for (model, ids) in &expected_ids {
        let q = WindowQuery {
            project_id: PROJECT.into(),
            model: model.clone(),
            from_ms: 0,
            to_ms: i64::MAX,
            ..Default::default()
        };
        let mut got = Vec::new();
        let mut page = PageRequest::first(MAX_PAGE_FOR_TEST);
        loop {
            let p = store.list_windows(&q, &page).await.unwrap();
            got.extend(p.items.into_iter().map(|w| w.id));
            match p.next {
                Some(c) => page.cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(got.len(), ids.len(), "{model}: stored count");
        assert_eq!(
            got.into_iter().collect::<BTreeSet<_>>(),
            *ids,
            "{model}: stored ids"
        );
    }
    // A stored profile reads back byte-identical to what was sent.
    let k = ModelKey {
        project_id: PROJECT.into(),
        model: "scorer".into(),
        version: "v1".into(),
        environment: "prod".into(),
    };
    let parts = store.window_parts(&k, 12 * MIN).await.unwrap();
    assert_eq!(parts.len(), 1);
    use prost::Message as _;
    assert_eq!(parts[0].profile, profile("scorer", 12, 12).encode_to_vec());

    let (status, text) = http_get(collector.http, "/metrics", &[]);
    assert_eq!(status, 200);
    let series = |s: &str| metric(&text, &format!("neurocloak_collector_{s}"));
    assert_eq!(series("ingest_batches_total{outcome=\"stored\"}"), 950.0);
    assert_eq!(series("ingest_batches_total{outcome=\"duplicate\"}"), 100.0);
    assert_eq!(series("ingest_batches_total{outcome=\"rejected\"}"), 50.0);
    assert_eq!(
        series("ingest_rejects_total{reason=\"window\"}"),
        10.0,
        "{text}"
    );
    drop(collector);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_sizes_and_the_read_api() {
    let dir = tempfile::tempdir().unwrap();
    let storage = format!("sqlite://{}", dir.path().join("neurocloak.db").display());
    let key = common::bootstrap(&storage, PROJECT);
    let read_only = admin(&[
        "create-key",
        "--project",
        PROJECT,
        "--name",
        "dash",
        "--scopes",
        "read",
        "--storage",
        &storage,
    ]);
    let read_only = read_only["api_key"].as_str().unwrap().to_owned();
    let ingest_only = admin(&[
        "create-key",
        "--project",
        PROJECT,
        "--name",
        "agent",
        "--storage",
        &storage,
    ]);
    let ingest_only = ingest_only["api_key"].as_str().unwrap().to_owned();
    let revoked = admin(&[
        "create-key",
        "--project",
        PROJECT,
        "--name",
        "old",
        "--storage",
        &storage,
    ]);
    let revoked_key = revoked["api_key"].as_str().unwrap().to_owned();
    admin(&[
        "revoke-key",
        revoked["key_prefix"].as_str().unwrap(),
        "--storage",
        &storage,
    ]);

    let collector = Collector::start(
        &storage,
        &["--jobs-enabled", "false", "--max-message-bytes", "1048576"],
    );
    let mut c = client(&collector).await;

    let unknown = "nck_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    for (k, code) in [
        (None, Code::Unauthenticated),
        (Some("not-a-key"), Code::Unauthenticated),
        (Some(unknown), Code::Unauthenticated),
        (Some(revoked_key.as_str()), Code::Unauthenticated),
        (Some(read_only.as_str()), Code::PermissionDenied),
    ] {
        let status = push(&mut c, k, valid_batch(1)).await.unwrap_err();
        assert_eq!(status.code(), code, "key {k:?}: {status:?}");
    }
    // A huge string in metadata is just an unknown key.
    let huge = format!("nck_0123456789abcdef_{}", "x".repeat(6000));
    assert_eq!(
        push(&mut c, Some(&huge), valid_batch(1))
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );

    // Over the 1 MiB limit, plain and gzip-compressed (the limit applies after decompression).
    let mut big = valid_batch(2);
    let Some(ingest_item::Payload::Window(w)) = big.items[0].payload.as_mut() else {
        unreachable!()
    };
    w.hash_sampled = (0..600)
        .map(|i| SampledRow {
            id: format!("r{i}"),
            features: [(
                "note".to_string(),
                Value {
                    kind: Some(value::Kind::Text(format!("{i:04}").repeat(500))),
                },
            )]
            .into(),
            ..Default::default()
        })
        .collect();
    let mut plain = IngestServiceClient::connect(format!("http://{}", collector.grpc))
        .await
        .unwrap()
        .max_encoding_message_size(64 << 20);
    let status = push(&mut plain, Some(&ingest_only), big.clone())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let status = push(&mut c, Some(&ingest_only), big).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    // Still serving.
    let ack = push(&mut c, Some(&ingest_only), valid_batch(4))
        .await
        .unwrap();
    assert_eq!(ack.stored, 2);
    let ack = push(&mut c, Some(&key), valid_batch(5)).await.unwrap();
    assert_eq!(ack.stored, 1);
    // A second agent's part of window 5.
    let mut part = valid_batch(5);
    part.batch_id = "other-agent-5".into();
    part.agent_id = "agent-2".into();
    push(&mut c, Some(&key), part).await.unwrap();

    // Reference bins round trip.
    let mut reference = ReferenceProfile {
        identity: Some(identity(PROJECT, "scorer")),
        profile: Some(profile("scorer", 0, 99)),
        created_ms: 5,
        ..Default::default()
    };
    reference.bins.insert(
        "num_00".into(),
        FixedBins {
            edges: vec![1.0, 2.0],
            counts: vec![3, 4, 5],
        },
    );
    let batch = IngestBatch {
        batch_id: "ref-1".into(),
        agent_id: "agent-1".into(),
        items: vec![IngestItem {
            payload: Some(ingest_item::Payload::Reference(reference.clone())),
        }],
    };
    push(&mut c, Some(&key), batch).await.unwrap();
    let mut req = Request::new(ReferenceBinsRequest {
        identity: Some(identity(PROJECT, "scorer")),
    });
    req.metadata_mut()
        .insert("x-api-key", ingest_only.parse().unwrap());
    let bins = c.get_reference_bins(req).await.unwrap().into_inner().bins;
    assert_eq!(bins, reference.bins);
    let mut req = Request::new(ReferenceBinsRequest {
        identity: Some(identity("someone-else", "scorer")),
    });
    req.metadata_mut()
        .insert("x-api-key", ingest_only.parse().unwrap());
    assert_eq!(
        c.get_reference_bins(req).await.unwrap_err().code(),
        Code::PermissionDenied
    );

    // Bytes that are not an IngestBatch: a clear error, and the server stays up.
    for garbage in [vec![0xff, 0xff, 0xff], vec![0x08, 0x01], vec![0x0a, 0x80]] {
        let status = push_raw(&collector, &key, garbage.clone())
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Internal, "{garbage:?}: {status:?}");
        assert!(
            status
                .message()
                .contains("failed to decode Protobuf message"),
            "{status:?}"
        );
    }
    let replay = push(&mut c, Some(&key), valid_batch(5)).await.unwrap();
    assert!(replay.duplicate, "still serving, and still idempotent");

    // HTTP.
    let h = collector.http;
    assert_eq!(http_get(h, "/healthz", &[]).0, 200);
    let (status, body) = http_get(h, "/readyz", &[]);
    assert_eq!(
        (status, body.contains("\"ready\":true")),
        (200, true),
        "{body}"
    );
    assert_eq!(http_get(h, "/api/v1/projects", &[]).0, 401);
    assert_eq!(
        http_get(h, "/api/v1/projects", &[("x-api-key", &ingest_only)]).0,
        403
    );
    assert_eq!(
        http_get(h, "/api/v1/projects", &[("x-api-key", &revoked_key)]).0,
        401
    );
    let bearer = format!("Bearer {read_only}");
    let (status, body) = http_get(h, "/api/v1/projects", &[("authorization", &bearer)]);
    assert_eq!(status, 200);
    assert!(body.contains("\"id\":\"fraud\""), "{body}");
    assert_eq!(
        http_get(
            h,
            "/api/v1/projects/other/models",
            &[("x-api-key", &read_only)]
        )
        .0,
        403
    );
    let (_, body) = http_get(
        h,
        "/api/v1/projects/fraud/models",
        &[("x-api-key", &read_only)],
    );
    let models: serde_json::Value = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> = models["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["model"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["ranker", "scorer"]);
    let (_, body) = http_get(
        h,
        "/api/v1/projects/fraud/models/scorer/versions",
        &[("x-api-key", &read_only)],
    );
    assert!(body.contains("\"version\":\"v1\""), "{body}");

    let url = "/api/v1/projects/fraud/models/scorer/windows?limit=2";
    let (status, body) = http_get(h, url, &[("x-api-key", &read_only)]);
    assert_eq!(status, 200, "{body}");
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert!(page["items"][0].get("profile").is_none());
    let next = page["next_cursor"].as_str().unwrap();
    let (_, body) = http_get(
        h,
        &format!("{url}&cursor={next}"),
        &[("x-api-key", &read_only)],
    );
    let page2: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page2["items"].as_array().unwrap().len(), 1);
    assert!(page2["next_cursor"].is_null());
    assert_eq!(
        http_get(
            h,
            &format!("{url}&cursor=garbage"),
            &[("x-api-key", &read_only)]
        )
        .0,
        400
    );

    let one = format!(
        "/api/v1/projects/fraud/models/scorer/windows/{}?version=v1&environment=prod",
        5 * MIN
    );
    let (status, body) = http_get(h, &one, &[("x-api-key", &read_only)]);
    assert_eq!(status, 200, "{body}");
    let w: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(w["stored_parts"], 2);
    assert_eq!(w["profile"]["rows"], 200, "{body}");
    assert_eq!(w["profile"]["parts"], 2);
    assert_eq!(w["profile"]["features"]["num_00"]["counters"]["count"], 200);
    let missing = format!(
        "/api/v1/projects/fraud/models/scorer/windows/{}?version=v1&environment=prod",
        999 * MIN
    );
    assert_eq!(http_get(h, &missing, &[("x-api-key", &read_only)]).0, 404);

    let (_, text) = http_get(h, "/metrics", &[]);
    assert!(
        metric(
            &text,
            "neurocloak_collector_ingest_rejects_total{reason=\"oversized\"}"
        ) >= 2.0,
        "{text}"
    );
    assert!(
        metric(
            &text,
            "neurocloak_collector_ingest_rejects_total{reason=\"unauthenticated\"}"
        ) >= 4.0
    );
    assert_eq!(
        metric(
            &text,
            "neurocloak_collector_ingest_rejects_total{reason=\"malformed\"}"
        ),
        3.0
    );
    assert!(text.contains("neurocloak_collector_store_latency_seconds_bucket"));
}

/// Sends arbitrary bytes as the Ingest request body (what a broken or hostile client might).
async fn push_raw(c: &Collector, key: &str, body: Vec<u8>) -> Result<IngestAck, tonic::Status> {
    let channel = Channel::from_shared(format!("http://{}", c.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let mut req = Request::new(body);
    req.metadata_mut().insert("x-api-key", key.parse().unwrap());
    let path = http::uri::PathAndQuery::from_static("/neurocloak.v1.IngestService/Ingest");
    grpc.unary(req, path, RawCodec)
        .await
        .map(|r| r.into_inner())
}

/// Encodes raw bytes, decodes an `IngestAck`.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = IngestAck;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        prost::bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = IngestAck;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<IngestAck>, tonic::Status> {
        use prost::Message as _;
        IngestAck::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

const MAX_PAGE_FOR_TEST: u32 = 300;
