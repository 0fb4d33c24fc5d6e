//! Shared by the collector's integration tests: a FerretDB process guard, a collector process
//! guard, and builders of realistic window profiles.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
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

/// A running collector process; SIGKILLed on drop (or earlier with [`Collector::kill`]).
pub struct Collector {
    child: Child,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    /// The collector's data directory (keys and files it keeps beside the database).
    _data: tempfile::TempDir,
}

impl Collector {
    /// Starts `serve` on ports chosen by the OS and waits for its "listening" line.
    pub fn start(storage: &str, extra: &[&str]) -> Collector {
        let data = tempfile::tempdir().unwrap();
        let mut child = Command::new(collector_binary())
            .arg("serve")
            .arg("--data-dir")
            .arg(data.path())
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
            _data: data,
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

/// A minimal HTTP/1.1 GET (the tests need no HTTP client crate): returns status and body.
pub fn http_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    (
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        },
    )
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

/// The value of one Prometheus sample line (`name{labels} value`), 0 when absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}
