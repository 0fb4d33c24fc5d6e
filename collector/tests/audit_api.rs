//! The audit trail through a real collector process and the real `admin` command: every
//! mutating admin command and REST write is recorded with its actor and action (and nothing
//! for refused requests), entries hold no secrets, the listing paginates, a write whose entry
//! cannot be stored is not made, and tampering in the database is reported by the verify
//! endpoint and by `admin verify-audit` (non-zero exit).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

const PROJECT: &str = "audited";

fn request(addr: SocketAddr, method: &str, path: &str, key: &str, body: &str) -> (u16, Value) {
    let reply = common::api_request(addr, method, path, Some(key), body.as_bytes());
    (reply.status, reply.json_or_null())
}

/// Every entry of the project, oldest first, read page by page with `limit`.
fn all_entries(addr: SocketAddr, key: &str, limit: u32) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let path = format!("/api/v1/projects/{PROJECT}/audit?limit={limit}{cursor}");
        let (st, body) = request(addr, "GET", &path, key, "");
        assert_eq!(st, 200, "{body}");
        out.extend(body["items"].as_array().unwrap().iter().cloned());
        match body["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    out.reverse();
    out
}

fn verify_cli(storage: &str) -> (bool, Value) {
    let out = Command::new(common::collector_binary())
        .args([
            "admin",
            "verify-audit",
            "--project",
            PROJECT,
            "--storage",
            storage,
        ])
        .output()
        .unwrap();
    (
        out.status.success(),
        serde_json::from_slice(&out.stdout).unwrap(),
    )
}

#[test]
fn every_change_is_audited_and_tampering_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("db.sqlite");
    let storage = format!("sqlite://{}", db_path.display());
    let admin = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--storage", &storage]);
        common::admin(&all)
    };
    let boot = admin(&["bootstrap", "--org", "acme", "--project", PROJECT]);
    let ops = admin(&[
        "create-key",
        "--project",
        PROJECT,
        "--name",
        "ops",
        "--scopes",
        "read,admin",
    ]);
    let doomed = admin(&["create-key", "--project", PROJECT, "--name", "doomed"]);
    admin(&["revoke-key", doomed["key_prefix"].as_str().unwrap()]);
    let reader = boot["api_key"].as_str().unwrap();
    let key = ops["api_key"].as_str().unwrap();
    let ops_actor = format!("key:{}", ops["key_prefix"].as_str().unwrap());

    let collector = common::Collector::start(&storage, &[]);
    let h = collector.http;
    let base = format!("/api/v1/projects/{PROJECT}");
    let url = "https://hooks.example.com/T000/very-secret-path";
    let secret = "0123456789abcdef-signing-secret";
    let channel = json!({"id": "hook", "kind": "webhook", "url": url, "signing_secret": secret});
    let rule = json!({"id": "low-trust", "project": PROJECT, "name": "Trust fell",
                      "metric": "trust_score", "comparator": "<", "threshold": 50.0,
                      "for_windows": 2, "severity": "warning", "channels": ["hook"]});
    let mut replaced = rule.clone();
    replaced["threshold"] = json!(40.0);
    let refused_rule = json!({"id": "bad", "project": PROJECT, "name": "n",
                              "metric": "trust_score", "comparator": "<", "threshold": 1.0,
                              "for_windows": 1, "severity": "warning", "channels": ["nope"]});
    let calls: [(&str, String, String, u16); 11] = [
        ("POST", format!("{base}/channels"), channel.to_string(), 201),
        ("POST", format!("{base}/rules"), rule.to_string(), 201),
        // Refused by their checks: no entry.
        ("POST", format!("{base}/rules"), rule.to_string(), 409),
        (
            "POST",
            format!("{base}/rules"),
            refused_rule.to_string(),
            422,
        ),
        ("DELETE", format!("{base}/rules/nope"), String::new(), 404),
        (
            "POST",
            format!("{base}/alerts/nope/ack"),
            r#"{"by":"me"}"#.into(),
            404,
        ),
        (
            "PUT",
            format!("{base}/evaluation-config"),
            r#"{"evaluation": {"drift": {"p_value_threshold": 0.01}}}"#.into(),
            200,
        ),
        (
            "PUT",
            format!("{base}/rules/low-trust"),
            replaced.to_string(),
            200,
        ),
        (
            "DELETE",
            format!("{base}/rules/low-trust"),
            String::new(),
            204,
        ),
        (
            "DELETE",
            format!("{base}/channels/hook"),
            String::new(),
            204,
        ),
        (
            "DELETE",
            format!("{base}/channels/hook"),
            String::new(),
            404,
        ),
    ];
    for (method, path, body, want) in &calls {
        let (st, got) = request(h, method, path, key, body);
        assert_eq!(st, *want, "{method} {path}: {got}");
    }
    // A read-only key may read the trail but not write.
    let (st, _) = request(
        h,
        "POST",
        &format!("{base}/rules"),
        reader,
        &rule.to_string(),
    );
    assert_eq!(st, 403);

    let entries = all_entries(h, reader, 3);
    let seen: Vec<(String, String, String)> = entries
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_owned(),
                e["action"].as_str().unwrap().to_owned(),
                e["target"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let boot_prefix = boot["key_prefix"].as_str().unwrap();
    let ops_prefix = ops["key_prefix"].as_str().unwrap();
    let doomed_prefix = doomed["key_prefix"].as_str().unwrap();
    let expected: Vec<(String, &str, String)> = vec![
        (
            "admin-cli".into(),
            "project.create",
            format!("project/{PROJECT}"),
        ),
        (
            "admin-cli".into(),
            "api_key.create",
            format!("api_key/{boot_prefix}"),
        ),
        (
            "admin-cli".into(),
            "rule.create_defaults",
            "rules/defaults".into(),
        ),
        (
            "admin-cli".into(),
            "api_key.create",
            format!("api_key/{ops_prefix}"),
        ),
        (
            "admin-cli".into(),
            "api_key.create",
            format!("api_key/{doomed_prefix}"),
        ),
        (
            "admin-cli".into(),
            "api_key.revoke",
            format!("api_key/{doomed_prefix}"),
        ),
        (ops_actor.clone(), "channel.put", "channel/hook".into()),
        (ops_actor.clone(), "rule.create", "rule/low-trust".into()),
        (
            ops_actor.clone(),
            "evaluation_config.replace",
            "evaluation-config".into(),
        ),
        (ops_actor.clone(), "rule.replace", "rule/low-trust".into()),
        (ops_actor.clone(), "rule.delete", "rule/low-trust".into()),
        (ops_actor.clone(), "channel.delete", "channel/hook".into()),
    ];
    let expected: Vec<(String, String, String)> = expected
        .into_iter()
        .map(|(a, b, c)| (a, b.to_owned(), c))
        .collect();
    assert_eq!(seen, expected);
    let seqs: Vec<i64> = entries.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=expected.len() as i64).collect::<Vec<_>>());
    let detail = |i: usize| -> Value {
        serde_json::from_str(entries[i]["detail"].as_str().unwrap()).unwrap()
    };
    assert_eq!(detail(9)["rule"]["threshold"], json!(40.0));
    assert_eq!(detail(7)["rule"]["threshold"], json!(50.0));
    assert_eq!(
        detail(8)["config"]["evaluation"]["drift"]["p_value_threshold"],
        json!(0.01)
    );
    assert_eq!(detail(6), json!({ "id": "hook", "kind": "webhook" }));
    assert_eq!(
        detail(3),
        json!({ "name": "ops", "scopes": ["read", "admin"] })
    );

    // No secret in any entry: not the channel's URL or signing secret, not a key or its hash.
    let text = serde_json::to_string(&entries).unwrap();
    for plaintext in [url, "very-secret-path", secret, key, reader] {
        assert!(
            !text.contains(plaintext),
            "{plaintext} leaked into the audit trail"
        );
    }
    for k in [&boot, &ops, &doomed] {
        let plain = k["api_key"].as_str().unwrap();
        // `nck_<prefix>_<secret>`; the secret may itself contain '_'.
        let secret_part = plain.splitn(3, '_').nth(2).unwrap();
        assert!(secret_part.len() > 20 && !text.contains(secret_part));
        let hash = hex_sha256(plain);
        assert!(!text.contains(&hash));
    }

    let (st, v) = request(h, "GET", &format!("{base}/audit/verify"), reader, "");
    assert_eq!(st, 200);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["entries"], expected.len());
    assert_eq!(v["head_hash"], entries.last().unwrap()["hash"]);
    assert!(verify_cli(&storage).0);
    let head = v["head_hash"].as_str().unwrap();
    let anchored = format!(
        "{base}/audit/verify?anchor_seq={}&anchor_hash={head}",
        expected.len()
    );
    let (st, v) = request(h, "GET", &anchored, reader, "");
    assert_eq!((st, &v["ok"]), (200, &json!(true)), "{v}");
    let beyond = format!("{base}/audit/verify?anchor_seq=999&anchor_hash={head}");
    let (_, v) = request(h, "GET", &beyond, reader, "");
    assert_eq!(v["first_bad_seq"], expected.len() + 1, "{v}");
    for bad in [
        "anchor_seq=3",
        "anchor_seq=3&anchor_hash=xyz",
        "anchor_seq=-1&anchor_hash=00",
    ] {
        let path = format!("{base}/audit/verify?{bad}");
        assert_eq!(request(h, "GET", &path, reader, "").0, 400, "{bad}");
    }

    // Another project's key, a bad cursor, a reversed range.
    let other = admin(&["bootstrap", "--org", "acme", "--project", "other"]);
    let other_key = other["api_key"].as_str().unwrap();
    assert_eq!(
        request(h, "GET", &format!("{base}/audit"), other_key, "").0,
        403
    );
    assert_eq!(
        request(h, "GET", &format!("{base}/audit/verify"), other_key, "").0,
        403
    );
    assert_eq!(
        request(h, "GET", &format!("{base}/audit?cursor=zz"), reader, "").0,
        400
    );
    let reversed = format!("{base}/audit?from_ms=10&to_ms=5");
    assert_eq!(request(h, "GET", &reversed, reader, "").0, 400);

    // A change whose audit entry cannot be written is not made.
    let db = rusqlite::Connection::open(&db_path).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    db.execute_batch(
        "CREATE TRIGGER audit_off BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'audit off'); END;",
    )
    .unwrap();
    let mut quiet = rule.clone();
    quiet["channels"] = json!([]);
    let (st, body) = request(h, "POST", &format!("{base}/rules"), key, &quiet.to_string());
    assert_eq!(st, 503, "{body}");
    let (st, _) = request(h, "GET", &format!("{base}/rules/low-trust"), reader, "");
    assert_eq!(st, 404, "the rule was stored without its audit entry");
    db.execute_batch("DROP TRIGGER audit_off;").unwrap();
    assert_eq!(all_entries(h, reader, 100).len(), expected.len());

    // A change that fails after its entry was stored is marked failed, not erased.
    db.execute_batch(
        "CREATE TRIGGER rules_off BEFORE INSERT ON alert_rules \
         BEGIN SELECT RAISE(ABORT, 'rules off'); END;",
    )
    .unwrap();
    let (st, body) = request(h, "POST", &format!("{base}/rules"), key, &quiet.to_string());
    assert_eq!(st, 503, "{body}");
    db.execute_batch("DROP TRIGGER rules_off;").unwrap();
    let entries = all_entries(h, reader, 100);
    let [.., attempt, failed] = entries.as_slice() else {
        panic!("{entries:?}")
    };
    assert_eq!(attempt["action"], "rule.create");
    assert_eq!(failed["action"], "rule.create.failed");
    assert_eq!(failed["actor"], ops_actor.as_str());
    let why: Value = serde_json::from_str(failed["detail"].as_str().unwrap()).unwrap();
    assert_eq!(why["entry"], attempt["seq"]);
    assert!(why["error"].as_str().unwrap().starts_with("503"), "{why}");
    let expected_len = expected.len() + 2;

    assert_eq!(entries.len(), expected_len);
    // Tampering in the database: the verify endpoint and the admin command name the entry.
    db.execute(
        "UPDATE audit SET detail = '{}' WHERE project_id = ?1 AND seq = 8",
        [PROJECT],
    )
    .unwrap();
    let (st, v) = request(h, "GET", &format!("{base}/audit/verify"), reader, "");
    assert_eq!(st, 200);
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["first_bad_seq"], 8, "{v}");
    assert_eq!(v["entries"], 7);
    let (success, out) = verify_cli(&storage);
    assert!(
        !success,
        "verify-audit must fail on a tampered chain: {out}"
    );
    assert_eq!(out["first_bad_seq"], 8);
}

fn hex_sha256(s: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

/// Two collector processes share one MongoDB (FerretDB) and take audited writes at the same
/// time: one chain, no fork, no gap, every write recorded once.
#[test]
fn two_collectors_append_to_one_chain() {
    let db = common::FerretDb::start();
    let storage = db.uri();
    common::bootstrap(&storage, PROJECT);
    let key = common::ops_key(&storage, PROJECT);
    let collectors = [
        common::Collector::start(&storage, &[]),
        common::Collector::start(&storage, &[]),
    ];
    const WRITERS: usize = 4;
    const WRITES: usize = 8;
    std::thread::scope(|scope| {
        for w in 0..WRITERS {
            let addr = collectors[w % 2].http;
            let key = key.clone();
            scope.spawn(move || {
                for i in 0..WRITES {
                    let id = format!("r-{w}-{i}");
                    let rule = json!({"id": id, "project": PROJECT, "name": "n",
                                      "metric": "trust_score", "comparator": "<",
                                      "threshold": 50.0, "for_windows": 1,
                                      "severity": "info", "channels": []});
                    let path = format!("/api/v1/projects/{PROJECT}/rules/{id}");
                    let (st, body) = request(addr, "PUT", &path, &key, &rule.to_string());
                    assert_eq!(st, 200, "{body}");
                }
            });
        }
    });
    let (st, v) = request(
        collectors[1].http,
        "GET",
        &format!("/api/v1/projects/{PROJECT}/audit/verify"),
        &key,
        "",
    );
    assert_eq!(st, 200);
    assert_eq!(v["ok"], true, "{v}");
    // project.create, two api_key.create, rule.create_defaults, then the writes.
    assert_eq!(v["entries"], 4 + WRITERS * WRITES, "{v}");
    let entries = all_entries(collectors[0].http, &key, 7);
    let targets: std::collections::BTreeSet<&str> = entries
        .iter()
        .filter(|e| e["action"] == "rule.replace")
        .map(|e| e["target"].as_str().unwrap())
        .collect();
    assert_eq!(targets.len(), WRITERS * WRITES);
    let (ok, report) = verify_cli(&storage);
    assert!(ok, "{report}");
}
