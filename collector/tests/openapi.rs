//! `collector/openapi.json` describes the HTTP API that really runs:
//! - it is an OpenAPI 3.1 document whose `$ref`s all resolve and whose schemas compile;
//! - every `.route(...)` registered in `collector/src` (paths and methods, read from the source
//!   at test time) is documented, and every documented operation is registered;
//! - against a real collector process, every operation is exercised — successes and the
//!   errors the document promises — and each real answer's status, content type and body must
//!   match the document (bodies validated as JSON Schema 2020-12 against `components`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod pipeline_support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use common::Reply as Answer;
use pipeline_support::{
    Collector, PROJECT, Traffic, collector_in, push, reference, reference_item, start, wait_trust,
    window, window_item,
};
use serde_json::{Value, json};

const METHODS: [&str; 7] = ["get", "post", "put", "delete", "patch", "head", "options"];

fn document() -> Value {
    serde_json::from_str(neurocloak_collector::openapi::DOCUMENT).unwrap()
}

/// Follows a local JSON pointer (`#/components/...`).
fn resolve<'a>(doc: &'a Value, reference: &str) -> &'a Value {
    let pointer = reference
        .strip_prefix('#')
        .unwrap_or_else(|| panic!("non-local $ref {reference}"));
    doc.pointer(pointer)
        .unwrap_or_else(|| panic!("$ref {reference} does not resolve"))
}

/// A `$ref` object resolved, or the object itself.
fn deref<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => resolve(doc, r),
        None => v,
    }
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r.clone());
            }
            m.values().for_each(|x| collect_refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

/// Every (path, method) the document describes.
fn documented_operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if METHODS.contains(&method.as_str()) {
                out.insert((path.clone(), method.clone()));
            }
        }
    }
    out
}

/// A validator for `schema` with the document's components reachable as `#/components/...`.
fn validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let mut root = schema.clone();
    let map = root.as_object_mut().expect("a schema object");
    map.insert("components".into(), doc["components"].clone());
    jsonschema::draft202012::new(&root)
        .unwrap_or_else(|e| panic!("schema {schema} does not compile: {e}"))
}

#[test]
fn the_document_is_openapi_3_1_with_resolvable_refs_and_compiling_schemas() {
    let doc = document();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "openapi"
    );
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    assert!(doc["paths"].as_object().is_some_and(|p| !p.is_empty()));
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["apiKey"]["type"], "apiKey");
    assert_eq!(schemes["apiKey"]["in"], "header");
    assert_eq!(schemes["apiKey"]["name"], "x-api-key");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");

    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(refs.len() > 50, "suspiciously few $refs: {}", refs.len());
    for r in &refs {
        resolve(&doc, r);
    }
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        assert!(schema.is_object(), "{name}");
        validator(&doc, schema);
    }

    let mut ids = BTreeSet::new();
    for (path, method) in documented_operations(&doc) {
        let op = &doc["paths"][&path][&method];
        let id = op["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path}: no id"));
        assert!(ids.insert(id.to_owned()), "operationId {id} twice");
        let responses = op["responses"].as_object().unwrap();
        assert!(
            responses.keys().any(|c| c.starts_with('2') || c == "101"),
            "{method} {path}: no success response"
        );
        for (code, r) in responses {
            assert!(code.len() == 3 && code.parse::<u16>().is_ok(), "{code}");
            assert!(
                deref(&doc, r)["description"].is_string(),
                "{method} {path} {code}"
            );
        }
        // Path templates and declared path parameters agree.
        let templated: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        let declared: BTreeSet<&str> = op["parameters"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .map(|p| deref(&doc, p))
                    .filter(|p| p["in"] == "path")
                    .map(|p| p["name"].as_str().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(templated, declared, "{method} {path}: path parameters");
        // Unauthenticated operations say so; the others name the scope they need.
        let open = op["security"].as_array().is_some_and(|s| s.is_empty());
        assert!(
            open || ["read", "admin"].contains(&op["x-required-scope"].as_str().unwrap_or("")),
            "{method} {path}: neither open nor scoped"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Routes in the source

/// The text of each `.route(...)` call in `src`, balanced on parentheses, strings skipped.
fn route_calls(src: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = src;
    while let Some(at) = rest.find(".route(") {
        let body = &rest[at + ".route(".len()..];
        let (mut depth, mut in_str, mut escaped, mut end) = (1, false, false, None);
        for (i, c) in body.char_indices() {
            match (in_str, c) {
                (true, '\\') if !escaped => {
                    escaped = true;
                    continue;
                }
                (true, '"') if !escaped => in_str = false,
                (false, '"') => in_str = true,
                (false, '(') => depth += 1,
                (false, ')') => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(i);
                        break;
                    }
                }
                _ => {}
            }
            escaped = false;
        }
        let end = end.expect("unbalanced .route(");
        out.push(&body[..end]);
        rest = &body[end..];
    }
    out
}

/// `let NAME = "literal";` bindings of a source file (the prefixes routers format with).
fn string_bindings(src: &str) -> BTreeMap<String, String> {
    src.lines()
        .filter_map(|l| {
            let l = l.trim().strip_prefix("let ")?;
            let (name, value) = l.split_once('=')?;
            let value = value.trim().strip_suffix(';')?.trim();
            let value = value.strip_prefix('"')?.strip_suffix('"')?;
            Some((name.trim().to_owned(), value.to_owned()))
        })
        .collect()
}

/// The path of a route call's first argument: a literal or a `format!` over bindings, with
/// `{{x}}` meaning the axum parameter `{x}`.
fn route_path(call: &str, bindings: &BTreeMap<String, String>) -> String {
    let start = call.find('"').expect("route path literal");
    let lit_end = start + 1 + call[start + 1..].find('"').expect("closing quote");
    let literal = &call[start + 1..lit_end];
    if !call[..start].contains("format!") {
        return literal.to_owned();
    }
    let mut out = String::new();
    let mut chars = literal.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let name: String = chars.by_ref().take_while(|&c| c != '}').collect();
                let value = bindings
                    .get(&name)
                    .unwrap_or_else(|| panic!("format! variable {name} not bound in {call}"));
                out.push_str(value);
            }
            c => out.push(c),
        }
    }
    out
}

/// Method routers named in a route call (`get(h)`, `.post(h)`, `axum::routing::delete(h)`).
fn route_methods(call: &str) -> Vec<String> {
    let bytes = call.as_bytes();
    let mut out = Vec::new();
    for (i, _) in call.match_indices('(') {
        let ident_start = call[..i]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(0, |p| p + 1);
        let ident = &call[ident_start..i];
        let after_path = ident_start == 0 || matches!(bytes[ident_start - 1], b'.' | b':' | b' ');
        if METHODS.contains(&ident) && after_path {
            out.push(ident.to_owned());
        }
    }
    out
}

fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every (path, method) registered with `.route(...)` anywhere in `collector/src`.
fn registered_operations() -> BTreeSet<(String, String)> {
    let mut files = Vec::new();
    rust_files(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let mut out = BTreeSet::new();
    for file in files {
        let src = std::fs::read_to_string(&file).unwrap();
        let bindings = string_bindings(&src);
        for call in route_calls(&src) {
            let path = route_path(call, &bindings);
            let methods = route_methods(call);
            assert!(
                !methods.is_empty(),
                "{}: no method in .route({call})",
                file.display()
            );
            for m in methods {
                out.insert((path.clone(), m));
            }
        }
    }
    out
}

#[test]
fn the_route_parser_reads_literals_format_prefixes_and_chained_methods() {
    let src = r#"
        let model = "/api/v1/projects/{project}/models/{model}";
        Router::new()
            .route("/healthz", get(|| async { "ok (\"fine\")\n" }))
            .route(&format!("{model}/rules/{{rule}}"), get(rule).put(put_rule).delete(delete_rule))
            .route(&format!("{model}/x"), axum::routing::delete(delete_channel))
    "#;
    let b = string_bindings(src);
    let calls = route_calls(src);
    assert_eq!(calls.len(), 3);
    assert_eq!(route_path(calls[0], &b), "/healthz");
    assert_eq!(route_methods(calls[0]), ["get"]);
    assert_eq!(
        route_path(calls[1], &b),
        "/api/v1/projects/{project}/models/{model}/rules/{rule}"
    );
    assert_eq!(route_methods(calls[1]), ["get", "put", "delete"]);
    assert_eq!(route_methods(calls[2]), ["delete"]);
}

#[test]
fn every_registered_route_is_documented_and_every_documented_route_is_registered() {
    let registered = registered_operations();
    let documented = documented_operations(&document());
    // Sanity: the parser found the routers of api.rs and api_eval.rs.
    assert!(registered.contains(&("/healthz".into(), "get".into())));
    assert!(registered.contains(&(
        "/api/v1/projects/{project}/rules/{rule}".into(),
        "put".into()
    )));
    let undocumented: Vec<_> = registered.difference(&documented).collect();
    let phantom: Vec<_> = documented.difference(&registered).collect();
    assert!(
        undocumented.is_empty(),
        "routes registered in collector/src but missing from collector/openapi.json \
         (document them there and in docs/api.md): {undocumented:?}"
    );
    assert!(
        phantom.is_empty(),
        "operations in collector/openapi.json that no router registers: {phantom:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Real answers against the document

fn request(addr: SocketAddr, method: &str, path: &str, key: Option<&str>, body: &str) -> Answer {
    common::api_request(addr, method, path, key, body.as_bytes())
}

/// The documented path template a concrete path (query stripped) is an instance of; the most
/// literal one wins, so `/rules/backtest` is not taken for `/rules/{rule}`.
fn template_of(doc: &Value, path: &str) -> Option<String> {
    let path = path.split('?').next().unwrap_or(path);
    let segments: Vec<&str> = path.split('/').collect();
    doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .filter_map(|template| {
            let parts: Vec<&str> = template.split('/').collect();
            let fits = parts.len() == segments.len()
                && parts
                    .iter()
                    .zip(&segments)
                    .all(|(t, s)| t == s || (t.starts_with('{') && !s.is_empty()));
            let literal = parts.iter().filter(|t| !t.starts_with('{')).count();
            fits.then(|| (literal, template.clone()))
        })
        .max()
        .map(|(_, template)| template)
}

/// Sends requests to a real collector and checks each answer against the document.
struct Checker {
    doc: Value,
    http: SocketAddr,
    /// Documented (path, method, status) of every checked answer.
    seen: BTreeSet<(String, String, u16)>,
}

impl Checker {
    fn call(&mut self, method: &str, path: &str, key: Option<&str>, body: &str) -> Answer {
        let a = request(self.http, &method.to_uppercase(), path, key, body);
        let template = template_of(&self.doc, path)
            .unwrap_or_else(|| panic!("{method} {path}: no documented path matches"));
        self.check(method, &template, &a);
        a
    }

    fn get(&mut self, path: &str, key: &str) -> Answer {
        self.call("get", path, Some(key), "")
    }

    fn check(&mut self, method: &str, template: &str, a: &Answer) {
        let what = format!(
            "{} {template} → {}: {}",
            method.to_uppercase(),
            a.status,
            a.body
        );
        let op = self.doc["paths"][template][method].clone();
        assert!(op.is_object(), "undocumented operation: {what}");
        let documented = op["responses"]
            .get(a.status.to_string())
            .unwrap_or_else(|| panic!("status not in collector/openapi.json: {what}"));
        let response = deref(&self.doc, documented).clone();
        self.seen
            .insert((template.to_owned(), method.to_owned(), a.status));
        let Some(content) = response.get("content") else {
            assert!(a.body.is_empty(), "documented without a body: {what}");
            return;
        };
        let media = a.content_type.split(';').next().unwrap_or("").trim();
        let schema = content
            .get(media)
            .unwrap_or_else(|| panic!("content type {media:?} not documented: {what}"))["schema"]
            .clone();
        let instance = if media == "application/json" {
            a.json()
        } else {
            Value::String(a.body.clone())
        };
        self.validate(&schema, &instance, &what);
    }

    fn validate(&self, schema: &Value, instance: &Value, what: &str) {
        let v = validator(&self.doc, schema);
        let errors: Vec<String> = v
            .iter_errors(instance)
            .map(|e| format!("at {}: {e}", e.instance_path()))
            .take(10)
            .collect();
        assert!(
            errors.is_empty(),
            "answer does not match collector/openapi.json (update the document with the \
             change): {what}\n{}",
            errors.join("\n")
        );
    }

    /// Every documented operation answered with a documented success at least once.
    fn assert_every_operation_succeeded(&self) {
        let succeeded: BTreeSet<(String, String)> = self
            .seen
            .iter()
            .filter(|(_, _, s)| (200..300).contains(s) || *s == 101)
            .map(|(t, m, _)| (t.clone(), m.clone()))
            .collect();
        let untested: Vec<_> = documented_operations(&self.doc)
            .difference(&succeeded)
            .cloned()
            .collect();
        assert!(
            untested.is_empty(),
            "operations this test never saw succeed: {untested:?}"
        );
    }
}

/// A webhook receiver that accepts every notification (so deliveries are recorded quickly).
fn webhook_receiver() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
        }
    });
    addr
}

const MODEL: &str = "scorer";
const P: &str = "/api/v1/projects/shop";
const M: &str = "/api/v1/projects/shop/models/scorer";
const VERSION: &str = "version=v1&environment=production";

#[test]
fn concrete_paths_find_their_most_literal_template() {
    let doc = document();
    let t = |p: &str| template_of(&doc, p);
    assert_eq!(
        t("/api/v1/projects/shop/rules/backtest?version=v1").as_deref(),
        Some("/api/v1/projects/{project}/rules/backtest")
    );
    assert_eq!(
        t("/api/v1/projects/shop/rules/backtests").as_deref(),
        Some("/api/v1/projects/{project}/rules/{rule}")
    );
    assert_eq!(t("/api/v1/projects/shop/nothing"), None);
    assert_eq!(t("/api/v1/projects//models"), None);
}

/// Keys: `key` has ingest + read, `admin` read + admin, both of project `shop`.
struct Keys {
    key: String,
    admin: String,
}

/// A project with its two keys, and a second project to be refused.
fn bootstrap(storage: &str) -> Keys {
    assert_eq!(P, format!("/api/v1/projects/{PROJECT}"));
    let key = common::bootstrap(storage, PROJECT);
    let admin = common::ops_key(storage, PROJECT);
    common::bootstrap(storage, "other");
    Keys { key, admin }
}

fn check_open_operations(c: &mut Checker) {
    let served = c.call("get", "/api/v1/openapi.json", None, "");
    assert_eq!(served.status, 200);
    assert_eq!(served.json(), c.doc, "the served document is the file");
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(c.call("get", path, None, "").status, 200, "{path}");
    }
}

/// A webhook channel and a rule that fires on every window of the model; returns the rule.
fn set_up_alerting(c: &mut Checker, k: &Keys) -> Value {
    let hook = webhook_receiver();
    let channel = json!({"id": "hook", "kind": "webhook", "url": format!("http://{hook}/"),
                         "signing_secret": "0123456789abcdef0123"});
    let a = c.call(
        "post",
        &format!("{P}/channels"),
        Some(&k.admin),
        &channel.to_string(),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    let rule = json!({"id": "always", "project": PROJECT, "model": MODEL,
                      "name": "Any trust score", "metric": "trust_score", "comparator": ">=",
                      "threshold": 0.0, "severity": "critical", "channels": ["hook"],
                      "labels": {"team": "ml"}});
    let a = c.call(
        "post",
        &format!("{P}/rules"),
        Some(&k.admin),
        &rule.to_string(),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    let mut replaced = rule.clone();
    replaced["resolve_threshold"] = json!(-1.0);
    let a = c.call(
        "put",
        &format!("{P}/rules/always"),
        Some(&k.admin),
        &replaced.to_string(),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    rule
}

/// A reference and three windows through the real gRPC ingest, evaluated; the window starts.
async fn push_data(collector: &Collector, key: &str) -> Vec<i64> {
    let reference = reference(MODEL, "v1");
    let edges = reference.edges();
    let items = vec![reference_item(reference.to_proto())];
    push(collector.grpc, key, "ref", items).await;
    let starts: Vec<i64> = (0..3).map(start).collect();
    for (i, &at) in starts.iter().enumerate() {
        let (w, _) = window(MODEL, "v1", &edges, &Traffic::stable(i as u64 + 1), at);
        push(collector.grpc, key, &format!("w{i}"), vec![window_item(w)]).await;
    }
    for &at in &starts {
        let wait = Duration::from_secs(60);
        wait_trust(collector.http, key, MODEL, "v1", at, wait, |_| true);
    }
    starts
}

fn check_reads(c: &mut Checker, k: &Keys, starts: &[i64]) {
    for path in [
        "/api/v1/projects".to_owned(),
        format!("{P}/models?limit=10"),
        format!("{M}/versions"),
        format!("{M}/windows?{VERSION}&limit=2"),
        format!("{M}/windows/{}?{VERSION}", starts[1]),
        format!("{M}/evaluations?{VERSION}"),
        format!("{M}/trust?limit=2"),
        format!("{M}/trust/latest?{VERSION}"),
        format!("{P}/rules"),
        format!("{P}/rules/always"),
        format!("{P}/channels"),
        format!("{P}/evaluation-config"),
    ] {
        let a = c.get(&path, &k.key);
        assert_eq!(a.status, 200, "GET {path}: {}", a.body);
    }
    // A page that has a next one, and that next page.
    let first = c.get(&format!("{M}/windows?limit=2"), &k.key).json();
    let cursor = first["next_cursor"].as_str().expect("a second page");
    let next = c.get(&format!("{M}/windows?limit=2&cursor={cursor}"), &k.key);
    assert_eq!(next.json()["items"].as_array().unwrap().len(), 1);
}

/// The rule fired on the first window: its alert, history and delivery, and acknowledging it.
fn check_alerts(c: &mut Checker, k: &Keys) {
    let listed = |path: &str| {
        let items = request(c.http, "GET", path, Some(&k.key), "").json()["items"].clone();
        items.as_array().is_some_and(|a| !a.is_empty())
    };
    let firing = format!("{P}/alerts?status=firing");
    let deliveries = format!("{P}/deliveries");
    common::wait_for(WAIT, "a firing alert", || listed(&firing));
    common::wait_for(WAIT, "a delivery report", || listed(&deliveries));
    let alerts = c.get(&firing, &k.key).json();
    let dedup = alerts["items"][0]["alert"]["dedup_key"]
        .as_str()
        .unwrap()
        .to_owned();
    c.get(&format!("{P}/alerts/history?rule=always"), &k.key);
    let d = c.get(&deliveries, &k.key).json();
    assert_eq!(d["items"][0]["delivered"], true, "{d}");
    let by = r#"{"by": "alice"}"#;
    let a = c.call(
        "post",
        &format!("{P}/alerts/{dedup}/ack"),
        Some(&k.admin),
        by,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["alert"]["acknowledged"]["by"], "alice");
    let a = c.call("post", &format!("{P}/alerts/0000/ack"), Some(&k.admin), by);
    assert_eq!(a.status, 404);
    let a = c.call(
        "post",
        &format!("{P}/alerts/{dedup}/ack"),
        Some(&k.admin),
        "not json",
    );
    assert_eq!(a.status, 400);
}

fn check_backtest_and_settings(c: &mut Checker, k: &Keys, rule: &Value) {
    let path = format!("{P}/rules/backtest?{VERSION}");
    let a = c.call("post", &path, Some(&k.key), &rule.to_string());
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["windows"], 3);
    let config = format!("{P}/evaluation-config");
    let mut put = |body: &str| c.call("put", &config, Some(&k.admin), body).status;
    let settings = r#"{"evaluation": {"drift": {"p_value_threshold": 0.01,
        "features": {"x1": {"test": "psi", "threshold": 0.2}}}},
        "trust": {"weights": {"fairness": 0.3}}}"#;
    assert_eq!(put(settings), 200);
    assert_eq!(put(r#"{"evaluation": {"drfit": {}}}"#), 400);
    assert_eq!(
        put(r#"{"evaluation": {"performance": {"calibration_bins": 0}}}"#),
        422
    );
    let huge = format!(
        r#"{{"evaluation": {{}}, "pad": "{}"}}"#,
        "x".repeat(70 * 1024)
    );
    assert_eq!(put(&huge), 413);
}

/// The errors the document promises, as they really come.
fn check_errors(c: &mut Checker, k: &Keys, rule: &Value) {
    let (key, admin) = (Some(k.key.as_str()), Some(k.admin.as_str()));
    let mut status = |method: &str, path: &str, key: Option<&str>, body: &str| {
        c.call(method, path, key, body).status
    };
    let models = format!("{P}/models");
    // (path, key, documented status) of GETs refused for their key or their arguments.
    let refused_reads = [
        (models.clone(), None, 401),
        (models.clone(), Some("nck_0123456789abcdef_nope"), 401),
        ("/api/v1/projects/other/models".into(), key, 403),
        (format!("{models}?cursor=%25%25"), key, 400),
        (format!("{M}/windows/12345?{VERSION}"), key, 404),
        (format!("{M}/windows?from_ms=10&to_ms=5"), key, 400),
        (format!("{M}/trust?environment=production"), key, 400),
        (format!("{P}/models/nothing/trust/latest"), key, 404),
        (format!("{P}/alerts?status=asleep"), key, 400),
        (format!("{P}/rules/none"), key, 404),
        // A plain GET is not a WebSocket handshake.
        (format!("/api/v1/live?project={PROJECT}"), key, 400),
    ];
    for (path, key, want) in refused_reads {
        assert_eq!(status("get", &path, key, ""), want, "GET {path}");
    }

    let rules = format!("{P}/rules");
    assert_eq!(status("post", &rules, key, &rule.to_string()), 403);
    assert_eq!(status("post", &rules, admin, &rule.to_string()), 409);
    let mut bad = rule.clone();
    bad["id"] = json!("bad");
    bad["for_windows"] = json!(0);
    assert_eq!(status("post", &rules, admin, &bad.to_string()), 422);
    assert_eq!(
        status("post", &rules, admin, r#"{"id": "x", "colour": 1}"#),
        400
    );

    let channels = format!("{P}/channels");
    let url = format!("https://example.com/{}", "a".repeat(70 * 1024));
    let big = json!({"id": "big", "kind": "slack", "url": url});
    assert_eq!(status("post", &channels, admin, &big.to_string()), 413);
    let short = json!({"id": "weak", "kind": "webhook", "url": "https://example.com/",
                       "signing_secret": "short"});
    assert_eq!(status("post", &channels, admin, &short.to_string()), 422);

    // Refused before the handler runs: plain text, as documented.
    let typed = c.get(&format!("{models}?limit=many"), &k.key);
    assert_eq!(typed.status, 400);
    assert!(
        typed.content_type.starts_with("text/plain"),
        "{}",
        typed.content_type
    );
    let (refused, _) = common::ws_connect(c.http, "/api/v1/live?project=other", &[]);
    assert_eq!(refused, 401);
}

/// The audit trail of the changes above (channel, rules, ack, settings), and its check.
fn check_audit(c: &mut Checker, k: &Keys) {
    let a = c.get(&format!("{P}/audit?limit=2"), &k.key);
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["items"].as_array().unwrap().len(), 2);
    assert!(a.json()["next_cursor"].is_string(), "{}", a.body);
    let a = c.get(&format!("{P}/audit?from_ms=9&to_ms=1"), &k.key);
    assert_eq!(a.status, 400);
    let a = c.get(&format!("{P}/audit/verify"), &k.key);
    let v = a.json();
    assert_eq!(v["ok"], true, "{}", a.body);
    // Verified again against the head it reported, kept as an anchor.
    let (seq, hash) = (&v["entries"], v["head_hash"].as_str().unwrap());
    let anchored = format!("{P}/audit/verify?anchor_seq={seq}&anchor_hash={hash}");
    assert_eq!(c.get(&anchored, &k.key).json()["ok"], true);
    let half = c.get(&format!("{P}/audit/verify?anchor_seq={seq}"), &k.key);
    assert_eq!(half.status, 400);
}

fn check_deletes(c: &mut Checker, k: &Keys) {
    for path in [format!("{P}/rules/always"), format!("{P}/channels/hook")] {
        assert_eq!(
            c.call("delete", &path, Some(&k.admin), "").status,
            204,
            "{path}"
        );
        assert_eq!(
            c.call("delete", &path, Some(&k.admin), "").status,
            404,
            "{path}"
        );
    }
}

/// An address that keeps failing authentication is refused with the documented 429, on the
/// read API's routes and the pipeline's alike. Last: the address stays refused for a while.
fn check_rate_limited(c: &mut Checker) {
    let wrong = Some("nck_0123456789abcdef_nope");
    let models = format!("{P}/models");
    let first_429 = (0..1000).find(|_| c.call("get", &models, wrong, "").status == 429);
    assert!(
        first_429.is_some(),
        "1000 failed authentications were never limited"
    );
    assert_eq!(c.call("get", &format!("{P}/rules"), None, "").status, 429);
}

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_answers_of_every_operation_match_the_document() {
    let dir = tempfile::tempdir().unwrap();
    let storage = format!("sqlite://{}", dir.path().join("db.sqlite").display());
    let k = bootstrap(&storage);
    let collector = collector_in(&storage, dir.path());
    let mut c = Checker {
        doc: document(),
        http: collector.http,
        seen: BTreeSet::new(),
    };
    check_open_operations(&mut c);
    // Alerting and the live stream are set up before data arrives, so both see it.
    let rule = set_up_alerting(&mut c, &k);
    let live_path = format!(
        "/api/v1/live?project={PROJECT}&model={MODEL}&api_key={}",
        k.key
    );
    let (status, mut live) = common::ws_connect(c.http, &live_path, &[]);
    assert_eq!(status, 101);
    c.seen.insert(("/api/v1/live".into(), "get".into(), 101));
    let starts = push_data(&collector, &k.key).await;
    let frame: Value = serde_json::from_str(&common::ws_text_frame(&mut live)).unwrap();
    let live_schema = json!({"$ref": "#/components/schemas/LiveEvent"});
    c.validate(&live_schema, &frame, "a /api/v1/live frame");

    check_reads(&mut c, &k, &starts);
    check_alerts(&mut c, &k);
    check_backtest_and_settings(&mut c, &k, &rule);
    check_errors(&mut c, &k, &rule);
    check_audit(&mut c, &k);
    check_deletes(&mut c, &k);
    check_rate_limited(&mut c);
    c.assert_every_operation_succeeded();
}
