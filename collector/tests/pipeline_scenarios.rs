//! Scenarios through the real collector binary: windows recorded by sdk-core's `Monitor`,
//! pushed over gRPC ingest with a real API key, evaluated by the pipeline, read back over REST
//! and gRPC; alerts delivered to a real local webhook receiver that checks the signature.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod pipeline_support;

use std::time::Duration;

use neurocloak_proto::v1::query_service_client::QueryServiceClient;
use neurocloak_proto::v1::{RobustnessProbe, WatchRequest, WindowProfile, live_update};
use pipeline_support::*;
use serde_json::{Value as Json, json};

struct Setup {
    _dir: tempfile::TempDir,
    collector: Collector,
    /// ingest + read
    key: String,
    /// read + admin
    admin_key: String,
}

fn setup() -> Setup {
    setup_on(None)
}

/// A collector on `storage` (a MongoDB URI), or on SQLite in the temporary directory.
fn setup_on(storage: Option<String>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let storage =
        storage.unwrap_or_else(|| format!("sqlite://{}", dir.path().join("db.sqlite").display()));
    let key = common::bootstrap(&storage, PROJECT);
    let admin_key = common::ops_key(&storage, PROJECT);
    let collector = collector_in(&storage, dir.path());
    Setup {
        key,
        admin_key,
        collector,
        _dir: dir,
    }
}

const WAIT: Duration = Duration::from_secs(30);

fn score(t: &Json) -> f64 {
    t["trust"]["score"].as_f64().unwrap()
}

/// Pushes the reference and the given windows (one batch each); returns the window starts.
async fn push_windows(s: &Setup, model: &str, traffic: &[Traffic]) -> Vec<i64> {
    let reference = reference(model, "v1");
    let edges = reference.edges();
    push(
        s.collector.grpc,
        &s.key,
        &format!("{model}-ref"),
        vec![reference_item(reference.to_proto())],
    )
    .await;
    let mut starts = Vec::new();
    for (i, t) in traffic.iter().enumerate() {
        let at = start(i as i64);
        let (w, _) = window(model, "v1", &edges, t, at);
        push(
            s.collector.grpc,
            &s.key,
            &format!("{model}-w{i}"),
            vec![window_item(w)],
        )
        .await;
        starts.push(at);
    }
    starts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stable_stream_keeps_trust_high_without_drift_and_streams_scores() {
    let s = setup();
    let mut watch = QueryServiceClient::connect(format!("http://{}", s.collector.grpc))
        .await
        .unwrap();
    let mut req = tonic::Request::new(WatchRequest {
        project: PROJECT.into(),
        model: "stable".into(),
    });
    req.metadata_mut()
        .insert("x-api-key", s.key.parse().unwrap());
    let mut stream = watch.watch_trust_scores(req).await.unwrap().into_inner();

    let traffic: Vec<Traffic> = (1..=4).map(Traffic::stable).collect();
    let starts = push_windows(&s, "stable", &traffic).await;
    for &at in &starts {
        let t = wait_trust(s.collector.http, &s.key, "stable", "v1", at, WAIT, |_| true);
        let m = &t["metrics"];
        assert_eq!(m["drift"]["dataset_share"].as_f64(), Some(0.0), "{m}");
        for f in FEATURES {
            assert_eq!(
                m["drift"]["features"][f]["drifted"].as_f64(),
                Some(0.0),
                "{f}: {m}"
            );
        }
        assert!(
            score(&t) >= 80.0,
            "stable trust {}: {}",
            score(&t),
            t["trust"]
        );
        // Latencies were recorded as 800-1199 µs.
        let p99 = m["operations"]["latency_p99_ms"].as_f64().unwrap();
        assert!((1.0..=1.25).contains(&p99), "p99 {p99} ms");
        assert_eq!(t["revision"], "p1-l0");
    }

    // The live stream carried the scores of this model.
    let event = tokio::time::timeout(WAIT, stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match event.event.unwrap() {
        live_update::Event::TrustScore(p) => {
            assert_eq!(p.model, "stable");
            assert!(starts.contains(&p.window_start_ms));
            assert!(p.score.is_some());
        }
        other => panic!("expected a trust score first, got {other:?}"),
    }

    // The gRPC listing agrees with REST, newest first.
    let mut client = QueryServiceClient::connect(format!("http://{}", s.collector.grpc))
        .await
        .unwrap();
    let mut req = tonic::Request::new(neurocloak_proto::v1::ListTrustScoresRequest {
        project: PROJECT.into(),
        model: "stable".into(),
        version: "v1".into(),
        environment: "production".into(),
        limit: 3,
        ..Default::default()
    });
    req.metadata_mut()
        .insert("x-api-key", s.key.parse().unwrap());
    let page = client.list_trust_scores(req).await.unwrap().into_inner();
    assert_eq!(page.items.len(), 3);
    assert_eq!(page.items[0].window_start_ms, starts[3]);
    assert!(!page.next_cursor.is_empty());
    // Another project's data is not reachable with this key.
    let mut req = tonic::Request::new(neurocloak_proto::v1::ListTrustScoresRequest {
        project: "other".into(),
        model: "stable".into(),
        ..Default::default()
    });
    req.metadata_mut()
        .insert("x-api-key", s.key.parse().unwrap());
    let denied = client.list_trust_scores(req).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);

    // Evaluations are listed with the inputs they used.
    let (status, evals) = http(
        s.collector.http,
        "GET",
        &format!("/api/v1/projects/{PROJECT}/models/stable/evaluations?version=v1"),
        Some(&s.key),
        None,
    );
    assert_eq!(status, 200);
    let items = evals["items"].as_array().unwrap();
    assert_eq!(items.len(), 4);
    assert!(
        items[0]["inputs"]["baseline"]
            .as_str()
            .unwrap()
            .starts_with("reference:")
    );
    // Attribution drift is measured against the reference's importances (fitted once per
    // reference and reused by every window).
    for item in items {
        let explain = &item["evaluation"]["explainability"];
        assert_eq!(explain["status"], "evaluated", "{explain}");
        assert!(
            explain["result"]["attribution_drift"].as_f64().is_some(),
            "{explain}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shifted_feature_is_flagged_on_that_feature_and_lowers_trust() {
    let s = setup();
    let shifted = Traffic {
        x2_shift: 1.0,
        ..Traffic::stable(3)
    };
    let starts = push_windows(
        &s,
        "shift",
        &[Traffic::stable(1), Traffic::stable(2), shifted],
    )
    .await;
    let before = wait_trust(
        s.collector.http,
        &s.key,
        "shift",
        "v1",
        starts[1],
        WAIT,
        |_| true,
    );
    let after = wait_trust(
        s.collector.http,
        &s.key,
        "shift",
        "v1",
        starts[2],
        WAIT,
        |_| true,
    );
    let f = &after["metrics"]["drift"]["features"];
    assert_eq!(f["x2"]["drifted"].as_f64(), Some(1.0), "{f}");
    assert_eq!(f["x1"]["drifted"].as_f64(), Some(0.0), "{f}");
    assert_eq!(f["x3"]["drifted"].as_f64(), Some(0.0), "{f}");
    assert!(f["x2"]["psi"].as_f64().unwrap() > 0.25, "{f}");
    assert!(
        score(&after) < score(&before),
        "trust {} after the shift, {} before",
        score(&after),
        score(&before)
    );
    let reasons = after["trust"]["reasons"].to_string();
    assert!(
        reasons.contains("x2"),
        "reasons name the feature: {reasons}"
    );
}

/// A window part holding only robustness probes, recorded by the SDK's `Monitor` the way a
/// probing process would (no rows), filed under the scenario's window.
fn probe_part(model: &str, probes: &[(f64, u64)], start_ms: i64) -> WindowProfile {
    let sink = std::sync::Arc::new(neurocloak_core::MemorySink::new());
    let m = neurocloak_core::Monitor::with_sink(config(model, "v1"), sink.clone()).unwrap();
    for &(stability, rows) in probes {
        m.record_robustness(RobustnessProbe {
            stability,
            rows,
            repeats: 5,
            noise: 0.1,
            dropout: 0.1,
            discrete: true,
            feature_sensitivity: [("x1".to_owned(), 1.0 - stability)].into(),
            probe_time_ms: 0,
        })
        .unwrap();
    }
    m.flush(Duration::from_secs(5)).unwrap();
    let mut parts = sink.take_windows();
    assert_eq!(parts.len(), 1);
    let mut w = parts.remove(0);
    w.window_start_ms = start_ms;
    w
}

fn component(t: &Json, name: &str) -> f64 {
    t["trust"]["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["component"] == name)
        .and_then(|c| c["score"].as_f64())
        .unwrap_or_else(|| panic!("no {name} score in {t}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_low_stability_probe_lowers_robustness_and_trust_of_its_window() {
    let s = setup();
    // Identical traffic for every model; only the probes that come with the window differ.
    let cases: [(&str, &[(f64, u64)]); 3] = [
        ("probe-none", &[]),
        ("probe-high", &[(1.0, 200)]),
        // Rows-weighted: (0.5·300 + 0.8·100) / 400 = 0.575.
        ("probe-low", &[(0.5, 300), (0.8, 100)]),
    ];
    let at = start(0);
    let mut trust = Vec::new();
    for (model, probes) in cases {
        let reference = reference(model, "v1");
        let edges = reference.edges();
        push(
            s.collector.grpc,
            &s.key,
            &format!("{model}-ref"),
            vec![reference_item(reference.to_proto())],
        )
        .await;
        let (w, _) = window(model, "v1", &edges, &Traffic::stable(7), at);
        let mut items = vec![window_item(w)];
        if !probes.is_empty() {
            items.push(window_item(probe_part(model, probes, at)));
        }
        push(s.collector.grpc, &s.key, &format!("{model}-w"), items).await;
        trust.push(wait_trust(
            s.collector.http,
            &s.key,
            model,
            "v1",
            at,
            WAIT,
            |_| true,
        ));
    }
    let [none, high, low] = [&trust[0], &trust[1], &trust[2]];
    let stability = |t: &Json| t["metrics"]["robustness"]["perturbation_stability"].clone();
    assert_eq!(stability(none), Json::Null, "{none}");
    assert_eq!(stability(high).as_f64(), Some(1.0), "{high}");
    let s_low = stability(low).as_f64().unwrap();
    assert!(
        (s_low - 0.575).abs() < 1e-9,
        "rows-weighted stability {s_low}"
    );
    let (r_none, r_high, r_low) = (
        component(none, "robustness"),
        component(high, "robustness"),
        component(low, "robustness"),
    );
    assert!(
        r_low < r_high && r_low < r_none,
        "robustness {r_low} vs {r_high} / {r_none}"
    );
    assert_eq!(r_high, r_none, "a fully stable probe costs nothing");
    assert!(
        score(low) < score(high),
        "trust {} vs {}",
        score(low),
        score(high)
    );
    assert!(
        score(low) < score(none),
        "trust {} vs {}",
        score(low),
        score(none)
    );
    let reasons = low["trust"]["reasons"].to_string();
    assert!(
        reasons.contains(&format!("perturbation stability {s_low:.2}")),
        "reasons name the probe: {reasons}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fairness_regression_in_one_group_is_caught_by_disparate_impact() {
    let s = setup();
    let unfair = Traffic {
        group_b_penalty: 2.5,
        ..Traffic::stable(2)
    };
    let starts = push_windows(&s, "fair", &[Traffic::stable(1), unfair]).await;
    let fair = wait_trust(
        s.collector.http,
        &s.key,
        "fair",
        "v1",
        starts[0],
        WAIT,
        |_| true,
    );
    let unfair = wait_trust(
        s.collector.http,
        &s.key,
        "fair",
        "v1",
        starts[1],
        WAIT,
        |_| true,
    );
    let di = |t: &Json| {
        t["metrics"]["fairness"]["group"]["disparate_impact"]
            .as_f64()
            .unwrap()
    };
    assert!(
        di(&fair) >= 0.8,
        "fair window: {}",
        fair["metrics"]["fairness"]
    );
    assert!(
        di(&unfair) < 0.8,
        "unfair window: {}",
        unfair["metrics"]["fairness"]
    );
    let dpd = unfair["metrics"]["fairness"]["group"]["demographic_parity_difference"]
        .as_f64()
        .unwrap();
    assert!(dpd > 0.1, "{dpd}");
    assert!(score(&unfair) < score(&fair));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_labels_change_performance_of_their_window_only() {
    late_labels(&setup()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_labels_join_on_mongodb_too() {
    let db = common::FerretDb::start();
    late_labels(&setup_on(Some(db.uri()))).await;
}

async fn late_labels(s: &Setup) {
    let model = "late";
    let reference = reference(model, "v1");
    let edges = reference.edges();
    push(
        s.collector.grpc,
        &s.key,
        "late-ref",
        vec![reference_item(reference.to_proto())],
    )
    .await;
    let unlabelled = |seed| Traffic {
        inline_labels: false,
        ..Traffic::stable(seed)
    };
    let (a, s0) = (start(0), start(1));
    let (w0, truth0) = window(model, "v1", &edges, &unlabelled(10), a);
    let (w1, _) = window(model, "v1", &edges, &unlabelled(11), s0);
    let predicted: Vec<bool> = w0
        .predictions
        .iter()
        .map(
            |r| match r.prediction.as_ref().and_then(|v| v.kind.as_ref()) {
                Some(neurocloak_proto::v1::value::Kind::Number(x)) => *x == 1.0,
                other => panic!("prediction {other:?}"),
            },
        )
        .collect();
    push(
        s.collector.grpc,
        &s.key,
        "late-w",
        vec![window_item(w0), window_item(w1)],
    )
    .await;
    for at in [a, s0] {
        let t = wait_trust(s.collector.http, &s.key, model, "v1", at, WAIT, |_| true);
        assert_eq!(t["revision"], "p1-l0");
        assert!(
            t["metrics"]["performance"].is_null(),
            "no labels yet: {}",
            t["metrics"]
        );
    }

    // Labels arrive later, for the first window's predictions only.
    let items = labels(model, "v1", &truth0)
        .into_iter()
        .map(label_item)
        .collect();
    push(s.collector.grpc, &s.key, "late-labels", items).await;
    let n = truth0.len();
    let t0 = wait_trust(s.collector.http, &s.key, model, "v1", a, WAIT, |t| {
        t["revision"] == format!("p1-l{n}")
    });
    let correct = truth0
        .iter()
        .zip(&predicted)
        .filter(|((_, label), pred)| label == *pred)
        .count();
    let accuracy = t0["metrics"]["performance"]["accuracy"].as_f64().unwrap();
    assert!(
        (accuracy - correct as f64 / n as f64).abs() < 1e-12,
        "accuracy {accuracy} vs {correct}/{n}"
    );
    assert_eq!(
        t0["metrics"]["performance"]["labelled"].as_u64(),
        Some(n as u64)
    );
    // The other window is untouched, and both revisions of window 0 were stored once.
    let t1 = wait_trust(s.collector.http, &s.key, model, "v1", s0, WAIT, |_| true);
    assert_eq!(t1["revision"], "p1-l0");
    let (_, evals) = http(
        s.collector.http,
        "GET",
        &format!(
            "/api/v1/projects/{PROJECT}/models/{model}/evaluations?version=v1&from_ms={a}&to_ms={}",
            a + 1
        ),
        Some(&s.key),
        None,
    );
    let revisions: Vec<&str> = evals["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["revision"].as_str().unwrap())
        .collect();
    assert_eq!(revisions.len(), 2, "{revisions:?}");
    assert!(revisions.contains(&"p1-l0") && revisions.contains(&format!("p1-l{n}").as_str()));
}

/// A webhook receiver: keeps every request's signature headers and body.
async fn receiver() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<(axum::http::HeaderMap, Vec<u8>)>,
) {
    use axum::routing::post;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send((headers, body.to_vec()));
                    "ok"
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_rule_fires_and_a_real_webhook_gets_a_signed_notification() {
    alert_flow(&setup()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_flow_works_on_mongodb_too() {
    let db = common::FerretDb::start();
    alert_flow(&setup_on(Some(db.uri()))).await;
}

async fn alert_flow(s: &Setup) {
    let (hook, mut received) = receiver().await;
    let secret = "0123456789abcdef-signing";
    let base = format!("/api/v1/projects/{PROJECT}");
    let h = s.collector.http;

    // Channels: admin scope to write; the secret never comes back.
    let channel = json!({"id": "hook", "kind": "webhook", "url": format!("http://{hook}/hook"),
                         "signing_secret": secret});
    let (st, _) = http(
        h,
        "POST",
        &format!("{base}/channels"),
        Some(&s.key),
        Some(&channel.to_string()),
    );
    assert_eq!(st, 403, "a read/ingest key cannot write channels");
    let (st, body) = http(
        h,
        "POST",
        &format!("{base}/channels"),
        Some(&s.admin_key),
        Some(&channel.to_string()),
    );
    assert_eq!(st, 201, "{body}");
    let bad = json!({"id": "bad", "kind": "webhook", "url": "ftp://x", "signing_secret": secret});
    let (st, _) = http(
        h,
        "POST",
        &format!("{base}/channels"),
        Some(&s.admin_key),
        Some(&bad.to_string()),
    );
    assert_eq!(st, 422);
    let (_, list) = http(h, "GET", &format!("{base}/channels"), Some(&s.key), None);
    assert_eq!(list["items"], json!([{"id": "hook", "kind": "webhook"}]));
    assert!(!list.to_string().contains(secret));

    // Rules: malformed → 400, invalid → 422 with the field, valid → 201.
    let (st, _) = http(
        h,
        "POST",
        &format!("{base}/rules"),
        Some(&s.admin_key),
        Some("{not json"),
    );
    assert_eq!(st, 400);
    let invalid = json!({"id": "r", "project": PROJECT, "name": "n", "metric": "drift.features.*.drifted",
                         "comparator": ">=", "threshold": 1.0, "for_windows": -1, "severity": "warning",
                         "channels": ["nope"]});
    let (st, body) = http(
        h,
        "POST",
        &format!("{base}/rules"),
        Some(&s.admin_key),
        Some(&invalid.to_string()),
    );
    assert_eq!(st, 422);
    let msg = body["error"].as_str().unwrap();
    assert!(
        msg.contains("for_windows") && msg.contains("channels"),
        "{msg}"
    );
    let rule = json!({"id": "feature-drift", "project": PROJECT, "model": "alerted",
                      "name": "A feature drifted", "metric": "drift.features.*.drifted",
                      "comparator": ">=", "threshold": 1.0, "for_windows": 1, "severity": "warning",
                      "channels": ["hook"], "escalation": {"after_secs": 1, "channel": "hook"}});
    let (st, body) = http(
        h,
        "POST",
        &format!("{base}/rules"),
        Some(&s.admin_key),
        Some(&rule.to_string()),
    );
    assert_eq!(st, 201, "{body}");
    let (st, _) = http(
        h,
        "POST",
        &format!("{base}/rules"),
        Some(&s.admin_key),
        Some(&rule.to_string()),
    );
    assert_eq!(st, 409);

    let mut watch = QueryServiceClient::connect(format!("http://{}", s.collector.grpc))
        .await
        .unwrap();
    let mut req = tonic::Request::new(WatchRequest {
        project: PROJECT.into(),
        model: "alerted".into(),
    });
    req.metadata_mut()
        .insert("x-api-key", s.key.parse().unwrap());
    let mut stream = watch.watch_trust_scores(req).await.unwrap().into_inner();
    let shifted = Traffic {
        x2_shift: 1.0,
        ..Traffic::stable(2)
    };
    let starts = push_windows(s, "alerted", &[Traffic::stable(1), shifted]).await;
    wait_trust(h, &s.key, "alerted", "v1", starts[1], WAIT, |_| true);

    let (headers, body) = tokio::time::timeout(WAIT, received.recv())
        .await
        .expect("no webhook within the wait")
        .unwrap();
    let ts = headers["x-neurocloak-timestamp"].to_str().unwrap();
    let sig = headers["x-neurocloak-signature"].to_str().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    neurocloak_alert::verify_signature(
        secret.as_bytes(),
        ts,
        &body,
        sig,
        now,
        Duration::from_secs(300),
    )
    .expect("signature verifies");
    assert!(
        neurocloak_alert::verify_signature(
            b"wrong-secret-0000",
            ts,
            &body,
            sig,
            now,
            Duration::from_secs(300)
        )
        .is_err()
    );
    let note: Json = serde_json::from_slice(&body).unwrap();
    assert_eq!(note["alert"]["kind"], "fire");
    assert_eq!(note["alert"]["subject"], "x2");
    assert_eq!(note["alert"]["rule_id"], "feature-drift");
    assert_eq!(note["alert"]["window_start_ms"].as_i64(), Some(starts[1]));

    // Unacknowledged, it escalates after a second (the ticker runs every 200 ms here).
    let (_, body) = tokio::time::timeout(WAIT, received.recv())
        .await
        .expect("no escalation within the wait")
        .unwrap();
    let escalated: Json = serde_json::from_slice(&body).unwrap();
    assert_eq!(escalated["alert"]["kind"], "escalate");
    assert_eq!(escalated["alert"]["subject"], "x2");

    // The alert is listed as firing; acknowledging needs the admin scope.
    let (_, firing) = http(
        h,
        "GET",
        &format!("{base}/alerts?status=firing"),
        Some(&s.key),
        None,
    );
    let alert = firing["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["rule_id"] == "feature-drift")
        .unwrap_or_else(|| panic!("{firing}"))
        .clone();
    let dedup = alert["alert"]["dedup_key"].as_str().unwrap();
    let ack = json!({"by": "oncall@example.com"}).to_string();
    let (st, _) = http(
        h,
        "POST",
        &format!("{base}/alerts/{dedup}/ack"),
        Some(&s.key),
        Some(&ack),
    );
    assert_eq!(st, 403);
    let (st, body) = http(
        h,
        "POST",
        &format!("{base}/alerts/{dedup}/ack"),
        Some(&s.admin_key),
        Some(&ack),
    );
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["alert"]["acknowledged"]["by"], "oncall@example.com");
    let (st, _) = http(
        h,
        "POST",
        &format!("{base}/alerts/nope/ack"),
        Some(&s.admin_key),
        Some(&ack),
    );
    assert_eq!(st, 404);

    // History and the delivery report were stored.
    let (_, history) = http(
        h,
        "GET",
        &format!("{base}/alerts/history?rule=feature-drift"),
        Some(&s.key),
        None,
    );
    let kinds: Vec<&str> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"fired") && kinds.contains(&"escalated") && kinds.contains(&"acknowledged"),
        "{kinds:?}"
    );
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (_, d) = http(h, "GET", &format!("{base}/deliveries"), Some(&s.key), None);
        if d["items"]
            .as_array()
            .is_some_and(|a| a.iter().any(|r| r["delivered"] == true))
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{d}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The live stream carried the alert changes of this model, in order.
    let mut transitions = Vec::new();
    while !transitions.contains(&"acknowledged".to_owned()) {
        let update = tokio::time::timeout(WAIT, stream.message())
            .await
            .expect("alert updates on the stream")
            .unwrap()
            .unwrap();
        if let Some(live_update::Event::Alert(a)) = update.event {
            assert_eq!(a.rule_id, "feature-drift");
            assert_eq!(a.subject, "x2");
            transitions.push(a.transition);
        }
    }
    assert_eq!(transitions, ["fired", "escalated", "acknowledged"]);

    // A back-test over the stored history finds the same firing window.
    let (st, bt) = http(
        h,
        "POST",
        &format!("{base}/rules/backtest?version=v1"),
        Some(&s.key),
        Some(&rule.to_string()),
    );
    assert_eq!(st, 200, "{bt}");
    assert_eq!(bt["windows"], 2);
    assert_eq!(bt["fired"], 1);

    // Default rules were created with the project.
    let (_, rules) = http(h, "GET", &format!("{base}/rules"), Some(&s.key), None);
    let ids: Vec<&str> = rules["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"default-trust-score") && ids.contains(&"feature-drift"),
        "{ids:?}"
    );
}

/// Opens `/api/v1/live?{query}` with `key`; returns the HTTP status and the stream.
fn ws_connect(addr: std::net::SocketAddr, query: &str, key: &str) -> (u16, std::net::TcpStream) {
    common::ws_connect(
        addr,
        &format!("/api/v1/live?{query}"),
        &[("x-api-key", key)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_streams_new_trust_scores_of_the_keys_project() {
    let s = setup();
    let h = s.collector.http;
    // `admin bootstrap` created the default rules before any window arrived.
    let (_, rules) = http(
        h,
        "GET",
        &format!("/api/v1/projects/{PROJECT}/rules"),
        Some(&s.key),
        None,
    );
    assert_eq!(rules["items"].as_array().map(Vec::len), Some(3), "{rules}");
    let (status, _) = ws_connect(
        h,
        &format!("project={PROJECT}"),
        "nck_0123456789abcdef_bogus",
    );
    assert_eq!(status, 401);
    let (status, _) = ws_connect(h, "project=someone-else", &s.key);
    assert_eq!(status, 403);
    let (status, mut socket) = ws_connect(h, &format!("project={PROJECT}&model=ws"), &s.key);
    assert_eq!(status, 101);
    let reader = tokio::task::spawn_blocking(move || common::ws_text_frame(&mut socket));
    let starts = push_windows(&s, "ws", &[Traffic::stable(1)]).await;
    let event: Json = serde_json::from_str(&reader.await.unwrap()).unwrap();
    assert_eq!(event["type"], "trust_score");
    assert_eq!(event["model"], "ws");
    assert_eq!(event["window_start_ms"].as_i64(), Some(starts[0]));
    assert!(event["trust"]["score"].as_f64().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_clear_errors() {
    let s = setup();
    let h = s.collector.http;
    let base = format!("/api/v1/projects/{PROJECT}");
    let get = |path: &str| http(h, "GET", path, Some(&s.key), None);
    let trust = format!("{base}/models/m/trust");

    for (path, why) in [
        (
            format!("{trust}?cursor=%7B%22%24gt%22%3A%22%22%7D"),
            "operator-looking cursor",
        ),
        (
            format!("{trust}?cursor={}", "A".repeat(5000)),
            "oversized cursor",
        ),
        (format!("{trust}?from_ms=10&to_ms=5"), "inverted range"),
        (format!("{trust}?from_ms=abc"), "not a number"),
        (
            format!("{trust}?environment=prod"),
            "environment without version",
        ),
        (format!("{base}/alerts?status=%24ne"), "unknown status"),
    ] {
        let (status, body) = get(&path);
        assert_eq!(status, 400, "{why}: {body}");
    }
    // Unknown model or version: an empty page, not an error; latest: 404.
    let (status, body) = get(&format!("{trust}?version=%7B%22%24ne%22%3A1%7D"));
    assert_eq!(
        (status, body["items"].as_array().map(Vec::len)),
        (200, Some(0))
    );
    let (status, _) = get(&format!("{base}/models/m/trust/latest?version=v1"));
    assert_eq!(status, 404);
    // No key, a key for the wrong project.
    let (status, _) = http(h, "GET", &trust, None, None);
    assert_eq!(status, 401);
    let (status, _) = get("/api/v1/projects/elsewhere/rules");
    assert_eq!(status, 403);

    let post = |path: &str, body: &str| http(h, "POST", path, Some(&s.admin_key), Some(body));
    let huge = format!("{{\"id\": \"{}\"}}", "x".repeat(70 * 1024));
    assert_eq!(post(&format!("{base}/rules"), &huge).0, 400);
    assert_eq!(post(&format!("{base}/channels"), &huge).0, 413);
    // Wrong types, extra fields, NaN-as-string thresholds, operator keys: refused, named.
    for body in [
        json!({"id": "r", "project": PROJECT, "name": "n", "metric": "trust_score",
               "comparator": "<", "threshold": "NaN", "severity": "info"}),
        json!({"id": "r", "project": PROJECT, "name": "n", "metric": "trust_score",
               "comparator": "<", "threshold": 1.0, "severity": "info", "extra": true}),
        json!({"id": {"$gt": ""}, "project": PROJECT, "name": "n", "metric": "trust_score",
               "comparator": "<", "threshold": 1.0, "severity": "info"}),
    ] {
        let (status, resp) = post(&format!("{base}/rules"), &body.to_string());
        assert_eq!(status, 400, "{body} -> {resp}");
    }
    let other_project = json!({"id": "r", "project": "elsewhere", "name": "n",
                               "metric": "trust_score", "comparator": "<", "threshold": 1.0,
                               "severity": "info"});
    assert_eq!(
        post(&format!("{base}/rules"), &other_project.to_string()).0,
        422
    );
    let bad_metric = json!({"id": "r", "project": PROJECT, "name": "n", "metric": "nonsense.x",
                            "comparator": "<", "threshold": 1.0, "severity": "info"});
    let (status, resp) = post(&format!("{base}/rules"), &bad_metric.to_string());
    assert_eq!(status, 422, "{resp}");
    assert!(resp["error"].as_str().unwrap().contains("metric"));
    assert_eq!(post(&format!("{base}/channels"), "[1, 2]").0, 400);
    assert_eq!(post(&format!("{base}/alerts/x/ack"), "{\"by\": 5}").0, 400);
    assert_eq!(
        post(&format!("{base}/alerts/x/ack"), "{\"by\": \"me\"}").0,
        404
    );
    // A back-test needs a model to replay.
    let no_model = json!({"id": "r", "project": PROJECT, "name": "n", "metric": "trust_score",
                          "comparator": "<", "threshold": 1.0, "severity": "info"});
    assert_eq!(
        post(&format!("{base}/rules/backtest"), &no_model.to_string()).0,
        422
    );

    // gRPC: oversized names and half-given versions are invalid arguments.
    let mut client = QueryServiceClient::connect(format!("http://{}", s.collector.grpc))
        .await
        .unwrap();
    for (model, version, environment) in [
        ("m".repeat(300), String::new(), String::new()),
        ("m".to_owned(), "v1".to_owned(), String::new()),
        (String::new(), String::new(), String::new()),
    ] {
        let mut req = tonic::Request::new(neurocloak_proto::v1::ListTrustScoresRequest {
            project: PROJECT.into(),
            model,
            version,
            environment,
            ..Default::default()
        });
        req.metadata_mut()
            .insert("x-api-key", s.key.parse().unwrap());
        let err = client.list_trust_scores(req).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    }
    let req = tonic::Request::new(WatchRequest {
        project: PROJECT.into(),
        model: String::new(),
    });
    let err = client.watch_trust_scores(req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_settings_change_how_windows_are_judged() {
    let s = setup();
    let h = s.collector.http;
    let path = format!("/api/v1/projects/{PROJECT}/evaluation-config");
    let (status, defaults) = http(h, "GET", &path, Some(&s.key), None);
    assert_eq!(status, 200);
    assert!(defaults["evaluation"]["drift"].is_object(), "{defaults}");

    let ignore_x2 = json!({"evaluation": {"drift": {"features": {"x2": {"ignore": true}}}}});
    let put = |key: &str, body: &str| http(h, "PUT", &path, Some(key), Some(body));
    assert_eq!(put(&s.key, &ignore_x2.to_string()).0, 403, "needs admin");
    assert_eq!(put(&s.admin_key, "{\"evaluation\": 3}").0, 400);
    let invalid = json!({"evaluation": {"performance": {"calibration_bins": 0}}});
    let (status, body) = put(&s.admin_key, &invalid.to_string());
    assert_eq!(status, 422, "{body}");
    let (status, body) = put(&s.admin_key, &ignore_x2.to_string());
    assert_eq!(status, 200, "{body}");

    let shifted = Traffic {
        x2_shift: 1.0,
        ..Traffic::stable(3)
    };
    let starts = push_windows(&s, "tuned", &[shifted]).await;
    let t = wait_trust(h, &s.key, "tuned", "v1", starts[0], WAIT, |_| true);
    let f = &t["metrics"]["drift"]["features"];
    assert!(f["x2"].is_null(), "x2 is ignored by this project: {f}");
    assert_eq!(f["x1"]["drifted"].as_f64(), Some(0.0), "{f}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_labels_fire_a_performance_rule_once_and_later_labels_resolve_it() {
    late_label_alerts(&setup()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_label_alerts_work_on_mongodb_too() {
    let db = common::FerretDb::start();
    late_label_alerts(&setup_on(Some(db.uri()))).await;
}

/// Windows are first evaluated without labels (the accuracy rule has no data), then labels
/// arrive that show the model wrong: the rule must fire exactly once, from the re-evaluated
/// windows, and not again when the same labels are delivered twice; good labels for later
/// windows resolve it.
async fn late_label_alerts(s: &Setup) {
    let model = "graded";
    let (hook, mut received) = receiver().await;
    let secret = "0123456789abcdef-signing";
    let base = format!("/api/v1/projects/{PROJECT}");
    let h = s.collector.http;
    let channel = json!({"id": "hook", "kind": "webhook", "url": format!("http://{hook}/hook"),
                         "signing_secret": secret});
    let post = |path: &str, body: &Json| {
        http(
            h,
            "POST",
            &format!("{base}{path}"),
            Some(&s.admin_key),
            Some(&body.to_string()),
        )
    };
    assert_eq!(post("/channels", &channel).0, 201);
    let rule = json!({"id": "accuracy", "project": PROJECT, "model": model,
                      "name": "Accuracy below one half", "metric": "performance.accuracy",
                      "comparator": "<", "threshold": 0.5, "for_windows": 2,
                      "resolve_after_windows": 2, "severity": "critical", "channels": ["hook"]});
    let (st, body) = post("/rules", &rule);
    assert_eq!(st, 201, "{body}");
    let history = || {
        let (_, page) = http(
            h,
            "GET",
            &format!("{base}/alerts/history?rule=accuracy"),
            Some(&s.key),
            None,
        );
        let mut kinds: Vec<String> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["kind"].as_str().unwrap().to_owned())
            .collect();
        kinds.reverse(); // oldest first
        kinds
    };

    let reference = reference(model, "v1");
    let edges = reference.edges();
    push(
        s.collector.grpc,
        &s.key,
        "graded-ref",
        vec![reference_item(reference.to_proto())],
    )
    .await;
    let unlabelled = |seed| Traffic {
        inline_labels: false,
        ..Traffic::stable(seed)
    };
    let starts: Vec<i64> = (0..5).map(start).collect();
    let mut truths = Vec::new();
    let mut items = Vec::new();
    for (i, &at) in starts[..4].iter().enumerate() {
        let (w, truth) = window(model, "v1", &edges, &unlabelled(30 + i as u64), at);
        items.push(window_item(w));
        truths.push(truth);
    }
    push(s.collector.grpc, &s.key, "graded-w", items).await;
    for &at in &starts[..4] {
        let t = wait_trust(h, &s.key, model, "v1", at, WAIT, |_| true);
        assert_eq!(t["revision"], "p1-l0");
        assert!(t["metrics"]["performance"].is_null(), "{}", t["metrics"]);
    }
    assert!(history().is_empty(), "no labels, no data: {:?}", history());

    // Labels for the first three windows arrive late and say the model is mostly wrong.
    let flipped: Vec<(String, bool)> = truths[..3]
        .iter()
        .flatten()
        .map(|(id, label)| (id.clone(), !label))
        .collect();
    let label_items = || {
        labels(model, "v1", &flipped)
            .into_iter()
            .map(label_item)
            .collect::<Vec<_>>()
    };
    push(s.collector.grpc, &s.key, "graded-labels", label_items()).await;
    for (at, truth) in starts.iter().zip(&truths[..3]) {
        let revision = format!("p1-l{}", truth.len());
        let t = wait_trust(h, &s.key, model, "v1", *at, WAIT, |t| {
            t["revision"] == revision
        });
        let accuracy = t["metrics"]["performance"]["accuracy"].as_f64().unwrap();
        assert!(accuracy < 0.5, "flipped labels: accuracy {accuracy}");
    }

    let (headers, body) = tokio::time::timeout(WAIT, received.recv())
        .await
        .expect("no fire notification within the wait")
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    neurocloak_alert::verify_signature(
        secret.as_bytes(),
        headers["x-neurocloak-timestamp"].to_str().unwrap(),
        &body,
        headers["x-neurocloak-signature"].to_str().unwrap(),
        now,
        Duration::from_secs(300),
    )
    .expect("signature verifies");
    let note: Json = serde_json::from_slice(&body).unwrap();
    assert_eq!(note["alert"]["kind"], "fire");
    assert_eq!(note["alert"]["rule_id"], "accuracy");
    // The second labelled window completes the run of two.
    assert_eq!(note["alert"]["window_start_ms"].as_i64(), Some(starts[1]));
    assert!(note["alert"]["value"].as_f64().unwrap() < 0.5);

    // The same labels delivered again: nothing is re-evaluated and nothing is sent. A window
    // pushed after them is a barrier: the pass that evaluates it has absorbed the labels and
    // processed every earlier window first.
    push(
        s.collector.grpc,
        &s.key,
        "graded-labels-again",
        label_items(),
    )
    .await;
    let (w4, truth4) = window(model, "v1", &edges, &unlabelled(34), starts[4]);
    push(s.collector.grpc, &s.key, "graded-w4", vec![window_item(w4)]).await;
    wait_trust(h, &s.key, model, "v1", starts[4], WAIT, |_| true);
    truths.push(truth4);
    let extra = tokio::time::timeout(Duration::from_secs(1), received.recv()).await;
    assert!(extra.is_err(), "a second notification: {extra:?}");
    let kinds = history();
    assert_eq!(
        kinds.iter().filter(|k| *k == "fired").count(),
        1,
        "{kinds:?}"
    );
    let (_, evals) = http(
        h,
        "GET",
        &format!("/api/v1/projects/{PROJECT}/models/{model}/evaluations?version=v1&limit=100"),
        Some(&s.key),
        None,
    );
    assert_eq!(
        evals["items"].as_array().unwrap().len(),
        3 * 2 + 2,
        "windows 0-2 at two revisions each, 3 and 4 once: {evals}"
    );
    let (_, firing) = http(
        h,
        "GET",
        &format!("{base}/alerts?status=firing"),
        Some(&s.key),
        None,
    );
    assert!(
        firing["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["rule_id"] == "accuracy"),
        "{firing}"
    );

    // Correct labels for the two newest windows: two healthy windows in a row resolve it.
    let good: Vec<(String, bool)> = truths[3..].iter().flatten().cloned().collect();
    let items = labels(model, "v1", &good)
        .into_iter()
        .map(label_item)
        .collect();
    push(s.collector.grpc, &s.key, "graded-good-labels", items).await;
    let (_, body) = tokio::time::timeout(WAIT, received.recv())
        .await
        .expect("no resolve notification within the wait")
        .unwrap();
    let note: Json = serde_json::from_slice(&body).unwrap();
    assert_eq!(note["alert"]["kind"], "resolve");
    assert_eq!(note["alert"]["window_start_ms"].as_i64(), Some(starts[4]));
    let kinds = history();
    assert_eq!(
        (
            kinds.iter().filter(|k| *k == "fired").count(),
            kinds.last().map(String::as_str)
        ),
        (1, Some("resolved")),
        "{kinds:?}"
    );
}
