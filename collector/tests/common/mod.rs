//! Shared by the collector's integration tests: a FerretDB process guard, a collector process
//! guard, project bootstrap, the HTTP and WebSocket client, a wait loop, and builders of
//! realistic window profiles.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use neurocloak_proto::v1::*;

/// Where `scripts/ferretdb.sh build` puts FerretDB, or `$NEUROCLOAK_FERRETDB`.
pub fn ferretdb_binary() -> PathBuf {
    let cache = std::env::var("NEUROCLOAK_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/neurocloak")
        });
    let built = cache.join("bin/ferretdb");
    if built.is_file() {
        return built;
    }
    if let Ok(p) = std::env::var("NEUROCLOAK_FERRETDB") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "FerretDB not found at {} nor $NEUROCLOAK_FERRETDB: run `scripts/ferretdb.sh build`",
        built.display()
    );
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A FerretDB process on a random loopback port with its own data directory; killed on drop.
pub struct FerretDb {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

fn spawn_ferretdb(dir: &std::path::Path, port: u16) -> Child {
    Command::new(ferretdb_binary())
        .arg("--handler=sqlite")
        .arg(format!("--sqlite-url=file:{}/", dir.display()))
        .arg(format!("--listen-addr=127.0.0.1:{port}"))
        .arg("--telemetry=disable")
        .arg("--debug-addr=-")
        .arg("--log-level=error")
        // FerretDB writes state.json here (default: the working directory).
        .arg(format!("--state-dir={}", dir.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ferretdb")
}

impl FerretDb {
    pub fn start() -> FerretDb {
        // The port is free when chosen but could be taken before FerretDB binds it: retry.
        for _ in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let port = free_port();
            let child = spawn_ferretdb(dir.path(), port);
            let mut db = FerretDb { child, port, dir };
            if db.wait_ready() {
                return db;
            }
            let _ = db.child.kill();
        }
        panic!("FerretDB did not start");
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                eprintln!("ferretdb exited early: {status}");
                return false;
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// SIGKILLs the server, keeping its data directory and port for [`FerretDb::restart`].
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn restart(&mut self) {
        self.child = spawn_ferretdb(self.dir.path(), self.port);
        assert!(
            self.wait_ready(),
            "FerretDB did not restart on port {}",
            self.port
        );
    }

    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/", self.port)
    }
}

impl Drop for FerretDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn collector_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_neurocloak-collector"))
}

/// Runs `neurocloak-collector admin ARGS` and returns its JSON output.
pub fn admin(args: &[&str]) -> serde_json::Value {
    let out = Command::new(collector_binary())
        .arg("admin")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "admin {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A SQLite storage URL for a database file in `dir`.
pub fn sqlite_storage(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("db.sqlite").display())
}

/// `admin bootstrap` of `project` (organisation `acme`) on `storage`; returns its ingest + read
/// key.
pub fn bootstrap(storage: &str, project: &str) -> String {
    let boot = admin(&[
        "bootstrap",
        "--org",
        "acme",
        "--project",
        project,
        "--storage",
        storage,
    ]);
    boot["api_key"].as_str().unwrap().to_owned()
}

/// A read + admin key named `ops` for `project`.
pub fn ops_key(storage: &str, project: &str) -> String {
    let ops = admin(&[
        "create-key",
        "--project",
        project,
        "--name",
        "ops",
        "--scopes",
        "read,admin",
        "--storage",
        storage,
    ]);
    ops["api_key"].as_str().unwrap().to_owned()
}

/// A running collector process; SIGKILLed on drop (or earlier with [`Collector::kill`]).
pub struct Collector {
    child: Child,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    /// The collector's data directory (keys and files it keeps beside the database) when it
    /// is its own.
    _data: Option<tempfile::TempDir>,
}

impl Collector {
    /// Starts `serve` on ports chosen by the OS, with a data directory of its own, and waits
    /// for its "listening" line.
    pub fn start(storage: &str, extra: &[&str]) -> Collector {
        let data = tempfile::tempdir().unwrap();
        let mut collector = Collector::start_in(storage, data.path(), extra);
        collector._data = Some(data);
        collector
    }

    /// Like [`Collector::start`] with `data_dir` as data directory, which several collectors
    /// may share.
    pub fn start_in(storage: &str, data_dir: &Path, extra: &[&str]) -> Collector {
        let mut child = Command::new(collector_binary())
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--storage")
            .arg(storage)
            .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
            .args(extra)
            .env("NEUROCLOAK_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let field = |name: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
                .parse()
                .unwrap()
        };
        let (grpc, http) = (field("grpc"), field("http"));
        Collector {
            child,
            grpc,
            http,
            _data: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn identity(project: &str, model: &str) -> ModelIdentity {
    ModelIdentity {
        project: project.into(),
        model: model.into(),
        version: "v1".into(),
        environment: "prod".into(),
    }
}

/// Deterministic pseudo-random numbers (splitmix64), so profiles are reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A window profile of 20 numeric and 5 categorical features over `rows` rows, built with the
/// SDK's own sketches so it is exactly what an agent would push.
pub fn window_profile_rows(
    id: ModelIdentity,
    window_start_ms: i64,
    seed: u64,
    rows: u64,
) -> WindowProfile {
    use neurocloak_core::profile::{ColumnProfile as CoreColumn, WindowProfile as CoreWindow};
    let mut rng = Rng::new(seed);
    let numeric: Vec<String> = (0..20).map(|i| format!("num_{i:02}")).collect();
    let categorical: Vec<String> = (0..5).map(|i| format!("cat_{i}")).collect();
    let spec = |name: &String, kind: FeatureKind| FeatureSpec {
        name: name.clone(),
        kind: kind as i32,
        sensitive: false,
    };
    let schema = Schema {
        features: numeric
            .iter()
            .map(|n| spec(n, FeatureKind::Numeric))
            .chain(
                categorical
                    .iter()
                    .map(|n| spec(n, FeatureKind::Categorical)),
            )
            .collect(),
        task: TaskType::BinaryClassification as i32,
        classes: vec!["no".into(), "yes".into()],
        inferred: false,
    };
    let mut w = CoreWindow::new(id, schema, window_start_ms, 60_000);
    w.rows = rows;
    for (i, name) in numeric.iter().enumerate() {
        let mut col = CoreColumn::new(FeatureKind::Numeric);
        col.counters.count = rows;
        let n = col.numeric.as_mut().unwrap();
        for _ in 0..rows {
            let x = rng.unit() * 100.0 + i as f64;
            n.moments.update(x);
            n.kll.update(x);
        }
        w.features.insert(name.clone(), col);
    }
    for name in &categorical {
        let mut col = CoreColumn::new(FeatureKind::Categorical);
        col.counters.count = rows;
        let c = col.categorical.as_mut().unwrap();
        for _ in 0..rows {
            let v = format!("category-{}", rng.next_u64() % 40);
            c.items.update(&v);
            if let Some(h) = c.hll.as_mut() {
                h.update(v.as_bytes());
            }
        }
        w.features.insert(name.clone(), col);
    }
    w.to_proto()
}

/// A realistic window: 1,000 rows.
pub fn window_profile(id: ModelIdentity, window_start_ms: i64, seed: u64) -> WindowProfile {
    window_profile_rows(id, window_start_ms, seed, 1000)
}

pub fn window_item(w: WindowProfile) -> IngestItem {
    IngestItem {
        payload: Some(ingest_item::Payload::Window(w)),
    }
}

/// One HTTP/1.1 answer, its body de-chunked.
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl Reply {
    /// The body as JSON; panics when it is not, so a schema check never sees a made-up value.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The body as JSON, `Null` when it is none (an empty 204, a plain-text error).
    pub fn json_or_null(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// A minimal HTTP/1.1 request on its own connection (the tests need no HTTP client crate).
/// The body may be any bytes, not only UTF-8.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    stream.write_all(req.as_bytes()).unwrap();
    // The server may answer (413) and close before reading all of a large body: what it said
    // is still there to read.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {head:?}"));
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
    Reply {
        status,
        content_type: header("content-type"),
        body,
    }
}

/// A request to the REST API: a JSON body, and the `x-api-key` when there is one.
pub fn api_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: &[u8],
) -> Reply {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(k) = key {
        headers.push(("x-api-key", k));
    }
    http_request(addr, method, path, &headers, body)
}

/// A GET with `headers`: status and body.
pub fn http_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let reply = http_request(addr, "GET", path, headers, b"");
    (reply.status, reply.body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(rest.get(..n).unwrap_or(rest));
        body = rest.get(n + 2..).unwrap_or("");
    }
    out
}

/// Opens a WebSocket on `path` (with `headers`); returns the HTTP status and the stream.
pub fn ws_connect(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, TcpStream) {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).unwrap();
    // Byte by byte, so no frame that follows the 101 is read with the head.
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

/// Reads one unmasked server text frame (RFC 6455 §5.2), skipping pings and pongs.
pub fn ws_text_frame(stream: &mut TcpStream) -> String {
    use std::io::Read;
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

/// Polls `done` every 100 ms until it holds; panics naming `what` after `timeout`.
pub fn wait_for(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The value of one Prometheus sample line (`name{labels} value`), 0 when absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}
