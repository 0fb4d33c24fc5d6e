//! Hostile pushes against the real agent binary: each gets a clear gRPC error, is counted,
//! and the agent keeps serving.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use neurocloak_proto::v1::agent_service_client::AgentServiceClient;
use neurocloak_proto::v1::push_request::Payload;
use neurocloak_proto::v1::{
    ColumnProfile, Counters, LabelBatch, LabelRecord, ModelIdentity, PushRequest, PushResponse,
    WindowProfile,
};
use tonic::Code;

fn identity() -> ModelIdentity {
    ModelIdentity {
        project: "p".into(),
        model: "m".into(),
        version: "v1".into(),
        environment: "test".into(),
    }
}

fn window() -> WindowProfile {
    let mut w = neurocloak_core::WindowProfile::new(identity(), Default::default(), 60_000, 60_000)
        .to_proto();
    w.rows = 1;
    w
}

fn push(payload: Option<Payload>, seq: u64) -> PushRequest {
    PushRequest {
        sdk_instance: "hostile".into(),
        sequence: seq,
        payload,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_pushes_get_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    // No collector: nothing here needs one, and the agent must not care.
    let dead = format!("http://{}", free_port());
    let mut agent = Agent::new(
        tmp.path(),
        dead,
        "k".into(),
        &["--max-message-bytes", "65536"],
    );
    agent.start();
    let mut client = AgentServiceClient::connect(agent.tcp_endpoint())
        .await
        .unwrap();

    let mut cases: Vec<(&str, PushRequest, Code)> = vec![
        ("no payload", push(None, 1), Code::InvalidArgument),
        (
            "no sdk instance",
            PushRequest {
                sdk_instance: String::new(),
                ..push(Some(Payload::Window(window())), 2)
            },
            Code::InvalidArgument,
        ),
        (
            "window without identity",
            push(
                Some(Payload::Window(WindowProfile {
                    identity: None,
                    ..window()
                })),
                3,
            ),
            Code::InvalidArgument,
        ),
        (
            "zero-length window",
            push(
                Some(Payload::Window(WindowProfile {
                    window_length_ms: 0,
                    ..window()
                })),
                4,
            ),
            Code::InvalidArgument,
        ),
        (
            "unaligned window",
            push(
                Some(Payload::Window(WindowProfile {
                    window_start_ms: 60_001,
                    ..window()
                })),
                5,
            ),
            Code::InvalidArgument,
        ),
        (
            "huge identity string",
            push(
                Some(Payload::Labels(LabelBatch {
                    identity: Some(ModelIdentity {
                        model: "x".repeat(10_000),
                        ..identity()
                    }),
                    labels: vec![],
                })),
                6,
            ),
            Code::InvalidArgument,
        ),
        (
            "label without id",
            push(
                Some(Payload::Labels(LabelBatch {
                    identity: Some(identity()),
                    labels: vec![LabelRecord::default()],
                })),
                7,
            ),
            Code::InvalidArgument,
        ),
    ];
    // A column whose counters contradict themselves (more NaN than values) must not pass.
    let mut w = window();
    w.features.insert(
        "f".into(),
        ColumnProfile {
            counters: Some(Counters {
                count: 1,
                nan: 5,
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    cases.push((
        "inconsistent counters",
        push(Some(Payload::Window(w)), 8),
        Code::InvalidArgument,
    ));
    let mut rejected = 0;
    for (what, req, code) in cases {
        match client.push(req).await {
            Err(s) => {
                assert_eq!(s.code(), code, "{what}: {s:?}");
                assert!(!s.message().is_empty(), "{what}: the error says why");
                rejected += 1;
            }
            // The core decoder may accept some shapes; those must then be stored, not lost.
            Ok(_) if what == "inconsistent counters" => {}
            Ok(r) => panic!("{what}: accepted: {r:?}"),
        }
    }

    // Oversized: above --max-message-bytes, refused before decoding.
    let big = push(
        Some(Payload::Labels(LabelBatch {
            identity: Some(identity()),
            labels: (0..5000)
                .map(|i| LabelRecord {
                    id: format!("prediction-{i:08}-padding-padding"),
                    ..Default::default()
                })
                .collect(),
        })),
        9,
    );
    let err = client.push(big).await.unwrap_err();
    assert!(
        matches!(err.code(), Code::OutOfRange | Code::ResourceExhausted),
        "oversized: {err:?}"
    );

    // Bytes that are not a PushRequest at all (field 1 as a varint instead of a string).
    let mut raw = tonic::client::Grpc::new(
        tonic::transport::Endpoint::from_shared(agent.tcp_endpoint())
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    raw.ready().await.unwrap();
    let garbage = PushResponse { duplicate: true };
    let err = raw
        .unary::<_, PushResponse, _>(
            tonic::Request::new(garbage),
            "/neurocloak.v1.AgentService/Push".parse().unwrap(),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err.code(), Code::Internal | Code::InvalidArgument),
        "garbage: {err:?}"
    );

    // The agent is unaffected: healthy, and a valid push is accepted and acknowledged.
    let channel = tonic::transport::Endpoint::from_shared(agent.tcp_endpoint())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "neurocloak.v1.AgentService".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    let ok = client
        .push(push(Some(Payload::Window(window())), 10))
        .await
        .unwrap();
    assert!(!ok.into_inner().duplicate);
    let retry = client
        .push(push(Some(Payload::Window(window())), 10))
        .await
        .unwrap();
    assert!(retry.into_inner().duplicate, "an SDK retry is deduplicated");
    // The agent's other method still goes through the generated service.
    let err = client
        .get_reference_bins(neurocloak_proto::v1::ReferenceBinsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let m = tokio::task::spawn_blocking(move || {
        let m = agent.check_invariant();
        drop(agent);
        m
    })
    .await
    .unwrap();
    assert!(m["neurocloak_agent_pushes_invalid_total"] >= f64::from(rejected));
    assert_eq!(m["neurocloak_agent_received_total"], 1.0);
    assert_eq!(m["neurocloak_agent_pushes_duplicate_total"], 1.0);
}
