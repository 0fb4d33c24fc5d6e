//! Project settings are strict: an unknown key anywhere (top level, a section, a feature's
//! drift override, a trust ramp) is refused with its name, at the parse layer (serde, the TOML
//! file) and through the REST API of a real collector, where hostile bodies (deep nesting,
//! huge numbers, wrong types, oversized) get a 4xx and the collector keeps serving. The docs'
//! example settings must still be accepted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;

use neurocloak_collector::config::{Config, Overrides};
use neurocloak_evaluate::{EvalConfig, TrustConfig};
use serde_json::{Value, json};

const PROJECT: &str = "strict";

fn eval_err(json: &str) -> String {
    match serde_json::from_str::<EvalConfig>(json) {
        Ok(c) => panic!("{json} parsed as {c:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn eval_config_refuses_unknown_keys_at_every_level() {
    for (json, key) in [
        (r#"{"drfit": {}}"#, "drfit"),
        (
            r#"{"drift": {"p_value_treshold": 0.01}}"#,
            "p_value_treshold",
        ),
        (
            r#"{"drift": {"features": {"age": {"tset": "ks"}}}}"#,
            "tset",
        ),
        (r#"{"performance": {"min_labeled": 5}}"#, "min_labeled"),
        (r#"{"fairness": {"min_group": 5}}"#, "min_group"),
        (r#"{"explain": {"depth": 3}}"#, "depth"),
        (r#"{"operations": {"min_volume": 3}}"#, "min_volume"),
    ] {
        let e = eval_err(json);
        assert!(e.contains(&format!("unknown field `{key}`")), "{json}: {e}");
    }
    let ramp = r#"{"p99_latency": {"full_at": 1, "zero_at": 2, "halfway": 1.5}}"#;
    let e = serde_json::from_str::<TrustConfig>(ramp).unwrap_err();
    assert!(e.to_string().contains("unknown field `halfway`"), "{e}");
    let e = serde_json::from_str::<TrustConfig>(r#"{"wieghts": {}}"#).unwrap_err();
    assert!(e.to_string().contains("unknown field `wieghts`"), "{e}");

    // Known keys still parse, and left-out keys keep their defaults.
    let c: EvalConfig =
        serde_json::from_str(r#"{"drift": {"features": {"age": {"ignore": true}}}}"#).unwrap();
    assert!(c.drift.features["age"].ignore);
    assert_eq!(
        c.drift.p_value_threshold,
        EvalConfig::default().drift.p_value_threshold
    );
}

#[test]
fn the_collector_file_refuses_unknown_evaluation_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let load = |text: &str| {
        std::fs::write(&path, text).unwrap();
        Config::load(&Overrides {
            config: Some(path.clone()),
            ..Overrides::default()
        })
    };
    let err = load("[pipeline.evaluation.drift.features.age]\ntset = \"ks\"\n").unwrap_err();
    assert!(err.to_string().contains("tset"), "{err}");
    let err =
        load("[pipeline.trust.drift_share]\nfull_at = 0\nzero_at = 1\nmid = 2\n").unwrap_err();
    assert!(err.to_string().contains("mid"), "{err}");
    let err = load("[retention]\nevaluation_days = 3\n").unwrap_err();
    assert!(err.to_string().contains("evaluation_days"), "{err}");
    let ok = load(
        "[retention]\nevaluations_days = 3\npredictions_days = 2\nalerts_days = 0\n\
         [pipeline.evaluation.drift.features.age]\ntest = \"psi\"\n",
    )
    .unwrap();
    assert_eq!(ok.retention.evaluations_days, 3);
    assert_eq!(ok.retention.predictions_days, 2);
    assert_eq!(ok.retention.alerts_days, 0);
}

/// The ```json blocks of docs/collector.md that are project settings (they have an
/// `evaluation` or `trust` key).
fn documented_settings() -> Vec<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/collector.md"))
        .unwrap();
    let mut out = Vec::new();
    let mut rest = doc.as_str();
    while let Some(start) = rest.find("```json\n") {
        let body = &rest[start + 8..];
        let end = body.find("```").unwrap();
        let block = &body[..end];
        if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(block)
            && (m.contains_key("evaluation") || m.contains_key("trust"))
        {
            out.push(block.to_owned());
        }
        rest = &body[end..];
    }
    out
}

/// The inline example of docs/trust-score.md ("Example project override: `{...}`").
fn documented_trust_override() -> String {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/trust-score.md"
    ))
    .unwrap();
    let after = doc.split("Example project override:").nth(1).unwrap();
    let start = after.find('`').unwrap() + 1;
    let end = start + after[start..].find('`').unwrap();
    after[start..end].to_owned()
}

#[test]
fn the_documented_examples_parse() {
    let trust: TrustConfig = serde_json::from_str(&documented_trust_override()).unwrap();
    trust.validate().unwrap();
    let settings = documented_settings();
    assert!(
        !settings.is_empty(),
        "docs/collector.md lost its settings example"
    );
}

/// A REST request with a raw body (bytes that need not be UTF-8).
fn request(addr: SocketAddr, method: &str, path: &str, key: &str, body: &[u8]) -> (u16, Value) {
    let reply = common::api_request(addr, method, path, Some(key), body);
    (reply.status, reply.json_or_null())
}

struct Api {
    collector: common::Collector,
    key: String,
    _dir: tempfile::TempDir,
}

impl Api {
    fn start() -> Api {
        let dir = tempfile::tempdir().unwrap();
        let storage = common::sqlite_storage(dir.path());
        common::bootstrap(&storage, PROJECT);
        let key = common::ops_key(&storage, PROJECT);
        let collector = common::Collector::start(&storage, &[]);
        Api {
            collector,
            key,
            _dir: dir,
        }
    }

    fn put_config(&self, body: &[u8]) -> (u16, Value) {
        let path = format!("/api/v1/projects/{PROJECT}/evaluation-config");
        request(self.collector.http, "PUT", &path, &self.key, body)
    }

    fn get_config(&self) -> Value {
        let path = format!("/api/v1/projects/{PROJECT}/evaluation-config");
        let (status, body) = request(self.collector.http, "GET", &path, &self.key, b"");
        assert_eq!(status, 200, "{body}");
        body
    }

    fn post_channel(&self, body: &Value) -> (u16, Value) {
        let path = format!("/api/v1/projects/{PROJECT}/channels");
        let body = body.to_string();
        request(
            self.collector.http,
            "POST",
            &path,
            &self.key,
            body.as_bytes(),
        )
    }
}

fn error(body: &Value) -> &str {
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error in {body}"))
}

#[test]
fn the_api_refuses_unknown_keys_and_hostile_bodies_with_4xx() {
    let api = Api::start();

    // Accepted: the docs' example, then read back as stored.
    let example = documented_settings().remove(0);
    let (status, body) = api.put_config(example.as_bytes());
    assert_eq!(status, 200, "{body}");
    let stored = api.get_config();
    assert_eq!(
        stored["evaluation"]["drift"]["features"]["age"]["test"],
        "psi"
    );
    assert_eq!(stored["trust"]["weights"]["fairness"], 0.3);

    // Unknown keys: refused with their path, whichever level they are at.
    for (body, path) in [
        (json!({"evaluation": {}, "trsut": {}}), "trsut"),
        (json!({"evaluation": {"drfit": {}}}), "evaluation.drfit"),
        (
            json!({"evaluation": {"drift": {"p_value_treshold": 0.01}}}),
            "evaluation.drift.p_value_treshold",
        ),
        (
            json!({"evaluation": {"drift": {"features": {"age": {"tset": "ks"}}}}}),
            "evaluation.drift.features.age.tset",
        ),
        (
            json!({"trust": {"drift_share": {"full_at": 0, "zero_at": 1, "mid": 0.5}}}),
            "trust.drift_share.mid",
        ),
    ] {
        let (status, answer) = api.put_config(body.to_string().as_bytes());
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(error(&answer).contains(path), "{body}: {answer}");
    }

    // Wrong types and impossible numbers: 400 naming the field.
    for (body, path) in [
        (
            r#"{"evaluation": {"drift": {"p_value_threshold": "0.05"}}}"#,
            "evaluation.drift.p_value_threshold",
        ),
        (
            r#"{"evaluation": {"drift": {"min_rows": -1}}}"#,
            "evaluation.drift.min_rows",
        ),
        (
            r#"{"evaluation": {"drift": {"min_rows": 1e30}}}"#,
            "evaluation.drift.min_rows",
        ),
        (
            r#"{"evaluation": {"drift": {"psi_threshold": 1e999}}}"#,
            "evaluation.drift.psi_threshold",
        ),
        (
            r#"{"evaluation": {"drift": {"features": {"age": {"test": "t-test"}}}}}"#,
            "evaluation.drift.features.age.test",
        ),
        (
            r#"{"evaluation": {"drift": {"features": ["age"]}}}"#,
            "evaluation.drift.features",
        ),
        (r#"{"trust": {"weights": {"vibes": 1}}}"#, "trust.weights"),
        (
            r#"{"evaluation": {"explain": {"max_depth": 70000}}}"#,
            "evaluation.explain.max_depth",
        ),
    ] {
        let (status, answer) = api.put_config(body.as_bytes());
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(error(&answer).contains(path), "{body}: {answer}");
    }

    // Not settings at all.
    let deep = format!(
        "{{\"evaluation\": {}{}}}",
        "[".repeat(20_000),
        "]".repeat(20_000)
    );
    let deep_unknown = format!("{{\"x\": {}{}}}", "[".repeat(30_000), "]".repeat(30_000));
    let huge_string = format!(
        "{{\"evaluation\": {{\"drift\": {{\"numeric_test\": \"{}\"}}}}}}",
        "k".repeat(60_000)
    );
    for body in [
        b"".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"\"evaluation\"".to_vec(),
        b"{\"evaluation\": {}} {}".to_vec(),
        b"{\"evaluation\": {\"drift\": {\"features\": {\"\xff\xfe\": {}}}}}".to_vec(),
        b"{\"evaluation\": ".to_vec(),
        deep.into_bytes(),
        deep_unknown.into_bytes(),
        huge_string.into_bytes(),
    ] {
        let (status, answer) = api.put_config(&body);
        let shown = String::from_utf8_lossy(&body[..body.len().min(60)]).to_string();
        assert_eq!(status, 400, "{shown}: {answer}");
        assert!(
            error(&answer).starts_with("malformed config"),
            "{shown}: {answer}"
        );
    }
    let oversized = format!(
        "{{\"evaluation\": {{\"drift\": {{\"features\": {{\"{}\": {{}}}}}}}}}}",
        "f".repeat(70_000)
    );
    assert_eq!(api.put_config(oversized.as_bytes()).0, 413);

    // Well-formed but out of range stays a 422.
    let (status, _) = api.put_config(br#"{"evaluation": {"drift": {"p_value_threshold": 2}}}"#);
    assert_eq!(status, 422);

    // Nothing refused was stored, and the collector still serves.
    assert_eq!(api.get_config(), stored);

    // Channels are per-project settings too.
    let channel = json!({"id": "hook", "kind": "webhook", "url": "https://example.com/h",
        "signing_secret": "0123456789abcdef", "retries": 3});
    let (status, answer) = api.post_channel(&channel);
    assert_eq!(status, 400, "{answer}");
    assert!(error(&answer).contains("retries"), "{answer}");
    let mut fine = channel.clone();
    fine.as_object_mut().unwrap().remove("retries");
    let (status, answer) = api.post_channel(&fine);
    assert_eq!(status, 201, "{answer}");
}
