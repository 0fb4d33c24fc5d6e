//! Acknowledging a firing alert through the real REST router is recorded with the calling
//! key as actor; the default rules the collector creates on its own are recorded with the
//! collector as actor; a refused acknowledgement leaves no entry. In process (the router,
//! the pipeline and a SQLite store, all real), because a firing alert is reached here by
//! feeding the alert engine one trust score instead of waiting for evaluated windows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use axum::body::Body;
use http::Request;
use neurocloak_collector::config::Config;
use neurocloak_collector::metrics::Metrics;
use neurocloak_collector::pipeline::records::TrustPoint;
use neurocloak_collector::pipeline::{self, alerts};
use neurocloak_collector::store::{self, Scope};
use neurocloak_collector::{admin, api_eval, audit};
use neurocloak_evaluate::TrustScore;
use serde_json::{Value, json};
use tower::ServiceExt as _;

const PROJECT: &str = "acked";

async fn call(
    router: &axum::Router,
    method: &str,
    path: &str,
    key: &str,
    body: Value,
) -> (u16, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("x-api-key", key)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let res = router.clone().oneshot(req).await.unwrap();
    let status = res.status().as_u16();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_and_default_rules_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        storage: format!("sqlite://{}", dir.path().join("db.sqlite").display()),
        ..Config::default()
    };
    config.pipeline.enabled = false;
    let store = store::open(&config.storage_uri(), "unused").await.unwrap();
    // No `admin bootstrap` default rules here: the collector creates them below.
    admin::bootstrap(&store, "acme", PROJECT, "boot")
        .await
        .unwrap();
    let ops = admin::create_key(&store, PROJECT, "ops", &[Scope::Read, Scope::Admin])
        .await
        .unwrap();
    let metrics = Arc::new(Metrics::new().unwrap());
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut background = Vec::new();
    let p = pipeline::start(&config, &store, &metrics, &stop_rx, &mut background)
        .await
        .unwrap();
    let router = api_eval::router(p.clone());
    let base = format!("/api/v1/projects/{PROJECT}");
    let key = ops.api_key.as_str();

    let rule = json!({"id": "low-trust", "project": PROJECT, "name": "Trust fell",
                      "metric": "trust_score", "comparator": "<", "threshold": 50.0,
                      "for_windows": 1, "severity": "critical", "channels": []});
    let (st, body) = call(&router, "POST", &format!("{base}/rules"), key, rule).await;
    assert_eq!(st, 201, "{body}");
    let point = TrustPoint {
        project: PROJECT.into(),
        model: "scorer".into(),
        version: "v1".into(),
        environment: "production".into(),
        window_start_ms: 60_000,
        window_length_ms: 60_000,
        revision: "p1-l0".into(),
        evaluated_ms: 120_000,
        rows: 100,
        trust: TrustScore {
            score: Some(10.0),
            components: Vec::new(),
            reasons: Vec::new(),
            trend: None,
        },
        metrics: json!({ "trust_score": 10.0 }),
    };
    alerts::observe(&p, &point).await.unwrap();
    let (st, firing) = call(
        &router,
        "GET",
        &format!("{base}/alerts?status=firing"),
        key,
        json!(null),
    )
    .await;
    assert_eq!(st, 200, "{firing}");
    let alert = firing["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["rule_id"] == "low-trust")
        .unwrap_or_else(|| panic!("{firing}"))
        .clone();
    let dedup = alert["alert"]["dedup_key"].as_str().unwrap();
    let ack = format!("{base}/alerts/{dedup}/ack");

    let before = audit::verify(&*store, PROJECT).await.unwrap().entries;
    let (st, _) = call(&router, "POST", &ack, key, json!({ "by": " " })).await;
    assert_eq!(st, 400, "a blank name is refused");
    let (st, body) = call(
        &router,
        "POST",
        &ack,
        key,
        json!({ "by": "oncall@example.com" }),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["alert"]["acknowledged"]["by"], "oncall@example.com");

    let v = audit::verify(&*store, PROJECT).await.unwrap();
    assert!(v.ok, "{v:?}");
    assert_eq!(
        v.entries,
        before + 1,
        "one entry for the acknowledgement, none for the refusal"
    );
    let entries = store.audit_after(PROJECT, 0, 100).await.unwrap();
    let last = entries.last().unwrap();
    assert_eq!(last.action, "alert.acknowledge");
    assert_eq!(last.actor, format!("key:{}", ops.key_prefix));
    assert_eq!(last.target, format!("alert/{dedup}"));
    let detail: Value = serde_json::from_str(&last.detail).unwrap();
    assert_eq!(detail["by"], "oncall@example.com");
    assert_eq!(detail["rule_id"], "low-trust");

    let defaults: Vec<_> = entries
        .iter()
        .filter(|e| e.action == "rule.create_defaults")
        .collect();
    assert_eq!(defaults.len(), 1, "{entries:?}");
    assert_eq!(defaults[0].actor, format!("collector:{}", p.holder));
    // A second trust score finds the defaults in place and records nothing more.
    alerts::observe(
        &p,
        &TrustPoint {
            window_start_ms: 120_000,
            ..point
        },
    )
    .await
    .unwrap();
    let again = store.audit_after(PROJECT, 0, 100).await.unwrap();
    assert_eq!(
        again
            .iter()
            .filter(|e| e.action == "rule.create_defaults")
            .count(),
        1
    );
}
