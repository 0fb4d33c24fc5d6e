//! Shared by the collector's integration tests: a FerretDB process guard, a collector process
//! guard, and builders of realistic window profiles.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::collections::BTreeMap;
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
    _dir: tempfile::TempDir,
}

impl FerretDb {
    pub fn start() -> FerretDb {
        let bin = ferretdb_binary();
        // The port is free when chosen but could be taken before FerretDB binds it: retry.
        for _ in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let port = free_port();
            let child = Command::new(&bin)
                .arg("--handler=sqlite")
                .arg(format!("--sqlite-url=file:{}/", dir.path().display()))
                .arg(format!("--listen-addr=127.0.0.1:{port}"))
                .arg("--telemetry=disable")
                .arg("--debug-addr=-")
                .arg("--log-level=error")
                // FerretDB writes state.json here (default: the working directory).
                .arg(format!("--state-dir={}", dir.path().display()))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn ferretdb");
            let mut db = FerretDb {
                child,
                port,
                _dir: dir,
            };
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(status)) = db.child.try_wait() {
                    eprintln!("ferretdb exited early: {status}");
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return db;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = db.child.kill();
        }
        panic!("FerretDB did not start");
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
}

impl Collector {
    /// Starts `serve` on ports chosen by the OS and waits for its "listening" line.
    pub fn start(storage: &str, extra: &[&str]) -> Collector {
        let mut child = Command::new(collector_binary())
            .arg("serve")
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
        Collector { child, grpc, http }
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

fn numeric_column(rng: &mut Rng, rows: u64) -> ColumnProfile {
    // A KLL sketch with k = 200 over ~1000 rows holds a few hundred items in a few levels.
    let mut levels = Vec::new();
    for (level, size) in [200usize, 120, 60].into_iter().enumerate() {
        let mut items: Vec<f64> = (0..size)
            .map(|_| rng.unit() * 100.0 + level as f64)
            .collect();
        items.sort_by(f64::total_cmp);
        levels.push(KllLevel { items });
    }
    let bins = FixedBins {
        edges: (1..=10).map(|i| f64::from(i) * 10.0).collect(),
        counts: (0..11).map(|_| rng.next_u64() % 200).collect(),
    };
    ColumnProfile {
        kind: FeatureKind::Numeric as i32,
        counters: Some(Counters {
            count: rows,
            missing: rows / 100,
            nan: 1,
            ..Default::default()
        }),
        numeric: Some(NumericProfile {
            moments: Some(Moments {
                n: rows,
                mean: 50.0,
                m2: 833.0 * rows as f64,
                min: 0.1,
                max: 99.9,
            }),
            kll: Some(Kll {
                k: 200,
                n: rows,
                levels,
                rng_state: rng.next_u64(),
                min: 0.1,
                max: 99.9,
            }),
            bins: Some(bins),
        }),
        categorical: None,
    }
}

fn categorical_column(rng: &mut Rng, rows: u64) -> ColumnProfile {
    let items = (0..32)
        .map(|i| FrequentItem {
            value: format!("category-{i}"),
            count: rng.next_u64() % 100,
        })
        .collect();
    let registers = (0..4096).map(|_| (rng.next_u64() % 8) as u8).collect();
    ColumnProfile {
        kind: FeatureKind::Categorical as i32,
        counters: Some(Counters {
            count: rows,
            ..Default::default()
        }),
        numeric: None,
        categorical: Some(CategoricalProfile {
            items: Some(FrequentItems {
                capacity: 128,
                total: rows,
                items,
                max_error: 0,
            }),
            hll: Some(Hll {
                precision: 12,
                registers,
            }),
        }),
    }
}

/// A window profile of 20 numeric and 5 categorical features, sized like the SDK's.
pub fn window_profile(id: ModelIdentity, window_start_ms: i64, seed: u64) -> WindowProfile {
    let mut rng = Rng::new(seed);
    let rows = 1000;
    let mut features = BTreeMap::new();
    for i in 0..20 {
        features.insert(format!("num_{i:02}"), numeric_column(&mut rng, rows));
    }
    for i in 0..5 {
        features.insert(format!("cat_{i}"), categorical_column(&mut rng, rows));
    }
    WindowProfile {
        identity: Some(id),
        window_start_ms,
        window_length_ms: 60_000,
        rows,
        features,
        parts: 1,
        ..Default::default()
    }
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
