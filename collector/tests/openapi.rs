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
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use pipeline_support::{
    Collector, PROJECT, Traffic, push, reference, reference_item, start, wait_trust, window,
    window_item,
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

struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

fn request(addr: SocketAddr, method: &str, path: &str, key: Option<&str>, body: &str) -> Answer {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(k) = key {
        req.push_str(&format!("x-api-key: {k}\r\n"));
    }
    req.push_str(&format!(
        "content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    ));
    stream.write_all(req.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut raw = Vec::new();
    // The server may answer (413) and close before reading a large body.
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
            .unwrap_or_default()
    };
    let body = if header("transfer-encoding").eq_ignore_ascii_case("chunked") {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    Answer {
        status,
        content_type: header("content-type"),
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

/// Sends requests to a real collector and checks each answer against the document.
struct Checker {
    doc: Value,
    http: SocketAddr,
    /// Operation and status of every checked answer.
    seen: BTreeSet<(String, String, u16)>,
}

impl Checker {
    /// `template` is the documented path; `path` the concrete one (with its query).
    fn call(
        &mut self,
        method: &str,
        template: &str,
        path: &str,
        key: Option<&str>,
        body: &str,
    ) -> Answer {
        let a = request(self.http, &method.to_uppercase(), path, key, body);
        self.check(method, template, &a);
        a
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
            .unwrap_or_else(|| {
                panic!("status not in collector/openapi.json: {what}");
            });
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
            "answer does not match collector/openapi.json (update the document with the change): {what}\n{}",
            errors.join("\n")
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

/// Opens `/api/v1/live` with a WebSocket handshake; returns the stream after the 101.
fn live_socket(addr: SocketAddr, path: &str) -> (u16, TcpStream) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, stream)
}

/// Reads one unmasked server text frame (RFC 6455 §5.2), skipping pings.
fn read_text_frame(stream: &mut TcpStream) -> String {
    loop {
        let mut h = [0u8; 2];
        stream.read_exact(&mut h).unwrap();
        let opcode = h[0] & 0x0f;
        let len = match h[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                stream.read_exact(&mut b).unwrap();
                u64::from(u16::from_be_bytes(b))
            }
            127 => {
                let mut b = [0u8; 8];
                stream.read_exact(&mut b).unwrap();
                u64::from_be_bytes(b)
            }
            n => u64::from(n),
        };
        let mut payload = vec![0u8; usize::try_from(len).unwrap()];
        stream.read_exact(&mut payload).unwrap();
        assert_eq!(h[0] & 0x80, 0x80, "fragmented frames are not expected");
        match opcode {
            1 => return String::from_utf8(payload).unwrap(),
            9 | 10 => continue,
            other => panic!("unexpected frame opcode {other}"),
        }
    }
}

fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

const MODEL: &str = "scorer";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_answers_of_every_operation_match_the_document() {
    let dir = tempfile::tempdir().unwrap();
    let storage = format!("sqlite://{}", dir.path().join("db.sqlite").display());
    let boot = common::admin(&[
        "bootstrap",
        "--org",
        "acme",
        "--project",
        PROJECT,
        "--storage",
        &storage,
    ]);
    let admin = common::admin(&[
        "create-key",
        "--project",
        PROJECT,
        "--name",
        "ops",
        "--scopes",
        "read,admin",
        "--storage",
        &storage,
    ]);
    common::admin(&[
        "bootstrap",
        "--org",
        "acme",
        "--project",
        "other",
        "--storage",
        &storage,
    ]);
    let key = boot["api_key"].as_str().unwrap().to_owned();
    let admin_key = admin["api_key"].as_str().unwrap().to_owned();
    let (key, admin_key) = (key.as_str(), admin_key.as_str());
    let collector = Collector::start(&storage, dir.path());
    let mut c = Checker {
        doc: document(),
        http: collector.http,
        seen: BTreeSet::new(),
    };
    let pr = "/api/v1/projects/{project}";
    let md = "/api/v1/projects/{project}/models/{model}";
    let p = format!("/api/v1/projects/{PROJECT}");
    let m = format!("{p}/models/{MODEL}");

    // Unauthenticated operations.
    let served = c.call(
        "get",
        "/api/v1/openapi.json",
        "/api/v1/openapi.json",
        None,
        "",
    );
    assert_eq!(served.status, 200);
    assert_eq!(served.json(), c.doc, "the served document is the file");
    assert_eq!(c.call("get", "/healthz", "/healthz", None, "").status, 200);
    assert_eq!(c.call("get", "/readyz", "/readyz", None, "").status, 200);
    assert_eq!(c.call("get", "/metrics", "/metrics", None, "").status, 200);

    // Alerting set up before data arrives, so a rule fires and notifies.
    let hook = webhook_receiver();
    let channel = json!({"id": "hook", "kind": "webhook", "url": format!("http://{hook}/"),
                         "signing_secret": "0123456789abcdef0123"})
    .to_string();
    let a = c.call(
        "post",
        &format!("{pr}/channels"),
        &format!("{p}/channels"),
        Some(admin_key),
        &channel,
    );
    assert_eq!(a.status, 201, "{}", a.body);
    let rule = json!({"id": "always", "project": PROJECT, "model": MODEL, "name": "Any trust score",
                      "metric": "trust_score", "comparator": ">=", "threshold": 0.0,
                      "severity": "critical", "channels": ["hook"], "labels": {"team": "ml"}});
    let a = c.call(
        "post",
        &format!("{pr}/rules"),
        &format!("{p}/rules"),
        Some(admin_key),
        &rule.to_string(),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    let mut replaced = rule.clone();
    replaced["resolve_threshold"] = json!(-1.0);
    let a = c.call(
        "put",
        &format!("{pr}/rules/{{rule}}"),
        &format!("{p}/rules/always"),
        Some(admin_key),
        &replaced.to_string(),
    );
    assert_eq!(a.status, 200, "{}", a.body);

    // The live stream, opened before the windows are evaluated.
    let (status, mut live) = live_socket(
        c.http,
        &format!("/api/v1/live?project={PROJECT}&model={MODEL}&api_key={key}"),
    );
    assert_eq!(status, 101);
    c.seen.insert(("/api/v1/live".into(), "get".into(), 101));

    // Data: a reference and three windows through the real gRPC ingest.
    let reference = reference(MODEL, "v1");
    let edges = reference.edges();
    push(
        collector.grpc,
        key,
        "ref",
        vec![reference_item(reference.to_proto())],
    )
    .await;
    let starts: Vec<i64> = (0..3).map(start).collect();
    for (i, &at) in starts.iter().enumerate() {
        let (w, _) = window(MODEL, "v1", &edges, &Traffic::stable(i as u64 + 1), at);
        push(collector.grpc, key, &format!("w{i}"), vec![window_item(w)]).await;
    }
    for &at in &starts {
        wait_trust(
            c.http,
            key,
            MODEL,
            "v1",
            at,
            Duration::from_secs(60),
            |_| true,
        );
    }
    let frame: Value = serde_json::from_str(&read_text_frame(&mut live)).unwrap();
    let live_schema = json!({"$ref": "#/components/schemas/LiveEvent"});
    c.validate(&live_schema, &frame, "a /api/v1/live frame");

    // Reads of the ingest data.
    let version = "version=v1&environment=production";
    for (template, path) in [
        ("/api/v1/projects".to_owned(), "/api/v1/projects".to_owned()),
        (format!("{pr}/models"), format!("{p}/models?limit=10")),
        (format!("{md}/versions"), format!("{m}/versions")),
        (
            format!("{md}/windows"),
            format!("{m}/windows?{version}&limit=2"),
        ),
        (
            format!("{md}/windows/{{start_ms}}"),
            format!("{m}/windows/{}?{version}", starts[1]),
        ),
        (
            format!("{md}/evaluations"),
            format!("{m}/evaluations?{version}"),
        ),
        (format!("{md}/trust"), format!("{m}/trust?limit=2")),
        (
            format!("{md}/trust/latest"),
            format!("{m}/trust/latest?{version}"),
        ),
        (format!("{pr}/rules"), format!("{p}/rules")),
        (format!("{pr}/rules/{{rule}}"), format!("{p}/rules/always")),
        (format!("{pr}/channels"), format!("{p}/channels")),
        (
            format!("{pr}/evaluation-config"),
            format!("{p}/evaluation-config"),
        ),
    ] {
        let a = c.call("get", &template, &path, Some(key), "");
        assert_eq!(a.status, 200, "GET {path}: {}", a.body);
    }
    // A page that has a next one, and that next page.
    let first = c
        .call(
            "get",
            &format!("{md}/windows"),
            &format!("{m}/windows?limit=2"),
            Some(key),
            "",
        )
        .json();
    let cursor = first["next_cursor"].as_str().expect("a second page");
    let a = c.call(
        "get",
        &format!("{md}/windows"),
        &format!("{m}/windows?limit=2&cursor={cursor}"),
        Some(key),
        "",
    );
    assert_eq!(a.json()["items"].as_array().unwrap().len(), 1);

    // The rule fired on the first window; its alert, history and delivery are visible.
    let alerts = format!("{p}/alerts?status=firing");
    wait_for(
        Duration::from_secs(30),
        || {
            request(c.http, "GET", &alerts, Some(key), "").json()["items"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        },
        "a firing alert",
    );
    let firing = c
        .call("get", &format!("{pr}/alerts"), &alerts, Some(key), "")
        .json();
    let dedup = firing["items"][0]["alert"]["dedup_key"]
        .as_str()
        .unwrap()
        .to_owned();
    c.call(
        "get",
        &format!("{pr}/alerts/history"),
        &format!("{p}/alerts/history?rule=always"),
        Some(key),
        "",
    );
    let deliveries = format!("{p}/deliveries");
    wait_for(
        Duration::from_secs(30),
        || {
            request(c.http, "GET", &deliveries, Some(key), "").json()["items"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        },
        "a delivery report",
    );
    let d = c
        .call(
            "get",
            &format!("{pr}/deliveries"),
            &deliveries,
            Some(key),
            "",
        )
        .json();
    assert_eq!(d["items"][0]["delivered"], true, "{d}");
    let ack = format!("{pr}/alerts/{{dedup}}/ack");
    let a = c.call(
        "post",
        &ack,
        &format!("{p}/alerts/{dedup}/ack"),
        Some(admin_key),
        r#"{"by": "alice"}"#,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["alert"]["acknowledged"]["by"], "alice");
    let a = c.call(
        "post",
        &ack,
        &format!("{p}/alerts/0000/ack"),
        Some(admin_key),
        r#"{"by": "alice"}"#,
    );
    assert_eq!(a.status, 404);
    let a = c.call(
        "post",
        &ack,
        &format!("{p}/alerts/{dedup}/ack"),
        Some(admin_key),
        "not json",
    );
    assert_eq!(a.status, 400);

    // Back-test and settings.
    let a = c.call(
        "post",
        &format!("{pr}/rules/backtest"),
        &format!("{p}/rules/backtest?{version}"),
        Some(key),
        &rule.to_string(),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["windows"], 3);
    let settings = r#"{"evaluation": {"drift": {"p_value_threshold": 0.01,
        "features": {"x1": {"test": "psi", "threshold": 0.2}}}}, "trust": {"weights": {"fairness": 0.3}}}"#;
    let config = format!("{pr}/evaluation-config");
    let a = c.call(
        "put",
        &config,
        &format!("{p}/evaluation-config"),
        Some(admin_key),
        settings,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let a = c.call(
        "put",
        &config,
        &format!("{p}/evaluation-config"),
        Some(admin_key),
        r#"{"evaluation": {"drfit": {}}}"#,
    );
    assert_eq!(a.status, 400);
    let a = c.call(
        "put",
        &config,
        &format!("{p}/evaluation-config"),
        Some(admin_key),
        r#"{"evaluation": {"performance": {"calibration_bins": 0}}}"#,
    );
    assert_eq!(a.status, 422);
    let huge = format!(
        r#"{{"evaluation": {{}}, "pad": "{}"}}"#,
        "x".repeat(70 * 1024)
    );
    let a = c.call(
        "put",
        &config,
        &format!("{p}/evaluation-config"),
        Some(admin_key),
        &huge,
    );
    assert_eq!(a.status, 413);

    // Errors the document promises, as they really come.
    let models = format!("{pr}/models");
    assert_eq!(
        c.call("get", &models, &format!("{p}/models"), None, "")
            .status,
        401
    );
    assert_eq!(
        c.call(
            "get",
            &models,
            &format!("{p}/models"),
            Some("nck_0123456789abcdef_nope"),
            ""
        )
        .status,
        401
    );
    assert_eq!(
        c.call(
            "get",
            &models,
            "/api/v1/projects/other/models",
            Some(key),
            ""
        )
        .status,
        403
    );
    assert_eq!(
        c.call(
            "get",
            &models,
            &format!("{p}/models?cursor=%25%25"),
            Some(key),
            ""
        )
        .status,
        400
    );
    let typed = c.call(
        "get",
        &models,
        &format!("{p}/models?limit=many"),
        Some(key),
        "",
    );
    assert_eq!(
        (typed.status, typed.content_type.starts_with("text/plain")),
        (400, true)
    );
    let a = c.call(
        "get",
        &format!("{md}/windows/{{start_ms}}"),
        &format!("{m}/windows/12345?{version}"),
        Some(key),
        "",
    );
    assert_eq!(a.status, 404);
    let a = c.call(
        "get",
        &format!("{md}/windows"),
        &format!("{m}/windows?from_ms=10&to_ms=5"),
        Some(key),
        "",
    );
    assert_eq!(a.status, 400);
    let a = c.call(
        "get",
        &format!("{md}/trust"),
        &format!("{m}/trust?environment=production"),
        Some(key),
        "",
    );
    assert_eq!(a.status, 400);
    let a = c.call(
        "get",
        &format!("{md}/trust/latest"),
        &format!("{p}/models/nothing/trust/latest"),
        Some(key),
        "",
    );
    assert_eq!(a.status, 404);
    let a = c.call(
        "get",
        &format!("{pr}/alerts"),
        &format!("{p}/alerts?status=asleep"),
        Some(key),
        "",
    );
    assert_eq!(a.status, 400);
    let rules = format!("{pr}/rules");
    assert_eq!(
        c.call(
            "post",
            &rules,
            &format!("{p}/rules"),
            Some(key),
            &rule.to_string()
        )
        .status,
        403
    );
    assert_eq!(
        c.call(
            "post",
            &rules,
            &format!("{p}/rules"),
            Some(admin_key),
            &rule.to_string()
        )
        .status,
        409
    );
    let mut bad = rule.clone();
    bad["id"] = json!("bad");
    bad["for_windows"] = json!(0);
    assert_eq!(
        c.call(
            "post",
            &rules,
            &format!("{p}/rules"),
            Some(admin_key),
            &bad.to_string()
        )
        .status,
        422
    );
    assert_eq!(
        c.call(
            "post",
            &rules,
            &format!("{p}/rules"),
            Some(admin_key),
            r#"{"id": "x", "colour": 1}"#
        )
        .status,
        400
    );
    let channels = format!("{pr}/channels");
    let big = json!({"id": "big", "kind": "slack", "url": format!("https://example.com/{}", "a".repeat(70 * 1024))});
    assert_eq!(
        c.call(
            "post",
            &channels,
            &format!("{p}/channels"),
            Some(admin_key),
            &big.to_string()
        )
        .status,
        413
    );
    let short = json!({"id": "weak", "kind": "webhook", "url": "https://example.com/", "signing_secret": "short"});
    assert_eq!(
        c.call(
            "post",
            &channels,
            &format!("{p}/channels"),
            Some(admin_key),
            &short.to_string()
        )
        .status,
        422
    );
    let a = c.call(
        "get",
        &format!("{pr}/rules/{{rule}}"),
        &format!("{p}/rules/none"),
        Some(key),
        "",
    );
    assert_eq!(a.status, 404);
    let (status, _) = live_socket(c.http, "/api/v1/live?project=other");
    assert_eq!(status, 401);
    // A plain GET is not a WebSocket handshake.
    let a = c.call(
        "get",
        "/api/v1/live",
        &format!("/api/v1/live?project={PROJECT}"),
        Some(key),
        "",
    );
    assert_eq!(a.status, 400);

    // The audit trail of the changes above (channel, rules, ack, settings), and its check.
    let audit = format!("{pr}/audit");
    let a = c.call("get", &audit, &format!("{p}/audit?limit=2"), Some(key), "");
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["items"].as_array().unwrap().len(), 2);
    assert!(a.json()["next_cursor"].is_string(), "{}", a.body);
    let a = c.call(
        "get",
        &audit,
        &format!("{p}/audit?from_ms=9&to_ms=1"),
        Some(key),
        "",
    );
    assert_eq!(a.status, 400);
    let verify = format!("{pr}/audit/verify");
    let a = c.call("get", &verify, &format!("{p}/audit/verify"), Some(key), "");
    assert_eq!(a.json()["ok"], true, "{}", a.body);

    // Deletes last.
    let rule_path = format!("{pr}/rules/{{rule}}");
    assert_eq!(
        c.call(
            "delete",
            &rule_path,
            &format!("{p}/rules/always"),
            Some(admin_key),
            ""
        )
        .status,
        204
    );
    assert_eq!(
        c.call(
            "delete",
            &rule_path,
            &format!("{p}/rules/always"),
            Some(admin_key),
            ""
        )
        .status,
        404
    );
    let channel_path = format!("{pr}/channels/{{channel}}");
    assert_eq!(
        c.call(
            "delete",
            &channel_path,
            &format!("{p}/channels/hook"),
            Some(admin_key),
            ""
        )
        .status,
        204
    );
    assert_eq!(
        c.call(
            "delete",
            &channel_path,
            &format!("{p}/channels/hook"),
            Some(admin_key),
            ""
        )
        .status,
        404
    );

    // Every documented operation was answered with a documented success at least once.
    let succeeded: BTreeSet<(String, String)> = c
        .seen
        .iter()
        .filter(|(_, _, s)| (200..300).contains(s) || *s == 101)
        .map(|(t, m, _)| (t.clone(), m.clone()))
        .collect();
    let untested: Vec<_> = documented_operations(&c.doc)
        .difference(&succeeded)
        .cloned()
        .collect();
    assert!(
        untested.is_empty(),
        "operations this test never saw succeed: {untested:?}"
    );
}
