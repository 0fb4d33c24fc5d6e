//! Real-process harness for the agent's fault tests: the agent binary, the collector binary
//! and SDK client processes (`neurocloak-agent-loadgen`, which ships through the real
//! `Shipper`), all on loopback ports chosen at random, all killed on drop.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const PROJECT_SLUG: &str = "p";

pub fn agent_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_neurocloak-agent"))
}

pub fn loadgen_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_neurocloak-agent-loadgen"))
}

/// The collector binary from the same target directory (the project's test command builds
/// every binary before running tests).
pub fn collector_bin() -> PathBuf {
    let p = agent_bin().with_file_name("neurocloak-collector");
    assert!(
        p.exists(),
        "{} missing: build it first (cargo build -p neurocloak-collector)",
        p.display()
    );
    p
}

pub fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A child process killed (SIGKILL) and reaped on drop.
pub struct Proc {
    pub child: Child,
    pub stdout: mpsc::Receiver<String>,
}

impl Proc {
    pub fn spawn(cmd: &mut Command) -> Proc {
        Self::spawn_with_stderr(cmd, Stdio::inherit())
    }

    pub fn spawn_with_stderr(cmd: &mut Command, stderr: Stdio) -> Proc {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc { child, stdout: rx }
    }

    /// The first stdout line starting with `prefix`.
    pub fn wait_line(&self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(l) if l.starts_with(prefix) => return l,
                Ok(_) => {}
                Err(e) => panic!("no line starting with {prefix:?}: {e}"),
            }
        }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn sigterm(&self) {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

/// A collector with its own data directory, restartable on the same ports.
pub struct Collector {
    pub dir: PathBuf,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub api_key: String,
    pub project: String,
    pub proc: Option<Proc>,
}

impl Collector {
    pub fn new(dir: &Path) -> Collector {
        let dir = dir.join("collector");
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new(collector_bin())
            .args([
                "admin",
                "bootstrap",
                "--org",
                "o",
                "--project",
                PROJECT_SLUG,
            ])
            .arg("--data-dir")
            .arg(&dir)
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(out.status.success(), "bootstrap failed");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let key = json
            .pointer("/api_key")
            .or_else(|| json.pointer("/key/api_key"))
            .and_then(|v| v.as_str())
            .unwrap_or_else(|| panic!("no api_key in {json}"))
            .to_string();
        let project = json
            .pointer("/project")
            .or_else(|| json.pointer("/key/project"))
            .and_then(|v| v.as_str())
            .unwrap_or(PROJECT_SLUG)
            .to_string();
        Collector {
            dir,
            grpc: free_port(),
            http: free_port(),
            api_key: key,
            project,
            proc: None,
        }
    }

    pub fn start(&mut self) {
        let p = Proc::spawn(
            Command::new(collector_bin())
                .arg("serve")
                .arg("--data-dir")
                .arg(&self.dir)
                .arg("--grpc-addr")
                .arg(self.grpc.to_string())
                .arg("--http-addr")
                .arg(self.http.to_string())
                .args(["--jobs-enabled", "false"])
                .env("NEUROCLOAK_LOG", "warn"),
        );
        p.wait_line("neurocloak-collector listening", Duration::from_secs(30));
        self.proc = Some(p);
    }

    pub fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill9();
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// Rows of every stored window part, by (model, window start).
    pub fn stored_rows(&self, models: u32) -> BTreeMap<(String, i64), Vec<u64>> {
        let mut out: BTreeMap<(String, i64), Vec<u64>> = BTreeMap::new();
        for m in 0..models {
            let model = format!("m{m}");
            let mut cursor: Option<String> = None;
            loop {
                let mut path = format!(
                    "/api/v1/projects/{}/models/{model}/windows?limit=1000",
                    self.project
                );
                if let Some(c) = &cursor {
                    path.push_str(&format!("&cursor={c}"));
                }
                let (status, body) = http_get(self.http, &path, Some(&self.api_key));
                if status == 404 {
                    break;
                }
                assert_eq!(status, 200, "{path}: {body}");
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                for item in v["items"].as_array().unwrap() {
                    let start = item["window_start_ms"].as_i64().unwrap();
                    let rows = item["rows"].as_u64().unwrap();
                    out.entry((model.clone(), start)).or_default().push(rows);
                }
                match v["next_cursor"].as_str() {
                    Some(c) => cursor = Some(c.to_string()),
                    None => break,
                }
            }
        }
        out
    }
}

/// An agent with its own data directory, restartable on the same ports and socket.
pub struct Agent {
    pub dir: PathBuf,
    pub tcp: SocketAddr,
    pub http: SocketAddr,
    pub uds: PathBuf,
    pub collector: String,
    pub api_key: String,
    pub extra: Vec<String>,
    pub proc: Option<Proc>,
    /// RLIMIT_FSIZE of the agent process: a write past it fails with EFBIG, a real failure
    /// of the OS write (SIGXFSZ is ignored so the write returns the error).
    pub file_size_limit: Option<u64>,
    /// The agent's stderr of every start, printed when the test fails.
    pub log: AgentLog,
    /// Appends the agent's stderr to this file instead of keeping it in `log`.
    pub stderr_file: Option<PathBuf>,
}

/// What the agent wrote to stderr, kept by the test process: through a pipe, because the
/// agent may run under a file size limit that a log file of its own would hit, and because
/// with concurrent tests a shared stderr mixes the lines of several agents.
#[derive(Default)]
pub struct AgentLog {
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    starts: usize,
    /// Reads the running agent's stderr until the agent exits.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl AgentLog {
    /// Lines printed when a test fails; enough for the minute before a stuck state.
    const TAIL: usize = 200;

    fn follow(&mut self, stderr: std::process::ChildStderr) {
        self.starts += 1;
        let lines = self.lines.clone();
        lines
            .lock()
            .unwrap()
            .push(format!("--- agent start {} ---", self.starts));
        self.reader = Some(std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                lines.lock().unwrap().push(line);
            }
        }));
    }

    pub fn lines(&self) -> Vec<String> {
        // A poisoned lock still holds every line pushed before the panic.
        match self.lines.lock() {
            Ok(l) => l.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Call after the agent exited: the tail includes its last words.
    fn print_tail(&mut self) {
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let lines = self.lines();
        let from = lines.len().saturating_sub(Self::TAIL);
        eprintln!(
            "--- agent log: last {} of {} lines ---",
            lines.len() - from,
            lines.len()
        );
        for l in &lines[from..] {
            eprintln!("{l}");
        }
        eprintln!("--- end of agent log ---");
    }
}

impl Agent {
    pub fn new(dir: &Path, collector: String, api_key: String, extra: &[&str]) -> Agent {
        let dir = dir.join("agent");
        std::fs::create_dir_all(&dir).unwrap();
        Agent {
            uds: dir.join("agent.sock"),
            dir,
            tcp: free_port(),
            http: free_port(),
            collector,
            api_key,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            proc: None,
            file_size_limit: None,
            log: AgentLog::default(),
            stderr_file: None,
        }
    }

    pub fn start(&mut self) {
        let mut cmd = Command::new(agent_bin());
        if let Some(limit) = self.file_size_limit {
            use std::os::unix::process::CommandExt as _;
            // SAFETY: only async-signal-safe calls between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                    let l = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_FSIZE, &l) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut p = Proc::spawn_with_stderr(
            cmd.arg("--data-dir")
                .arg(&self.dir)
                .arg("--uds-path")
                .arg(&self.uds)
                .arg("--tcp-addr")
                .arg(self.tcp.to_string())
                .arg("--http-addr")
                .arg(self.http.to_string())
                .arg("--collector")
                .arg(&self.collector)
                .arg("--api-key")
                .arg(&self.api_key)
                .args(self.flags())
                .env("NEUROCLOAK_LOG", "warn"),
            match &self.stderr_file {
                Some(path) => std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .unwrap()
                    .into(),
                None => Stdio::piped(),
            },
        );
        if let Some(stderr) = p.child.stderr.take() {
            self.log.follow(stderr);
        }
        p.wait_line("neurocloak-agent listening", Duration::from_secs(30));
        self.proc = Some(p);
    }

    /// Fast test timings, unless the test sets a flag itself.
    fn flags(&self) -> Vec<String> {
        let mut out = self.extra.clone();
        for (k, v) in [
            ("--linger-ms", "50"),
            ("--backoff-initial-ms", "20"),
            ("--backoff-max-ms", "300"),
            ("--merge-grace-ms", "200"),
        ] {
            if !self.extra.iter().any(|e| e == k) {
                out.extend([k.to_string(), v.to_string()]);
            }
        }
        out
    }

    pub fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill9();
        }
    }

    pub fn tcp_endpoint(&self) -> String {
        format!("http://{}", self.tcp)
    }

    pub fn uds_endpoint(&self) -> String {
        format!("unix://{}", self.uds.display())
    }

    pub fn metrics(&self) -> HashMap<String, f64> {
        let (status, body) = http_get(self.http, "/metrics", None);
        assert_eq!(status, 200, "{body}");
        parse_metrics(&body)
    }

    /// received == forwarded + dropped + queued, from one scrape.
    pub fn check_invariant(&self) -> HashMap<String, f64> {
        let m = self.metrics();
        let dropped: f64 = m
            .iter()
            .filter(|(k, _)| k.starts_with("neurocloak_agent_dropped_total"))
            .map(|(_, v)| v)
            .sum();
        let get = |k: &str| m.get(k).copied().unwrap_or(f64::NAN);
        assert_eq!(
            get("neurocloak_agent_received_total"),
            get("neurocloak_agent_forwarded_total") + dropped + get("neurocloak_agent_queue_depth"),
            "accounting invariant broken: {m:?}"
        );
        m
    }

    /// Waits until the queue is empty (everything forwarded or dropped).
    pub fn wait_drained(&self, timeout: Duration) -> HashMap<String, f64> {
        let deadline = Instant::now() + timeout;
        loop {
            let m = self.check_invariant();
            if m["neurocloak_agent_queue_depth"] == 0.0 {
                return m;
            }
            assert!(Instant::now() < deadline, "queue not drained: {m:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // An agent that died on its own explains a stuck client by itself.
            match self.proc.as_mut().map(|p| p.child.try_wait()) {
                Some(Ok(Some(status))) => eprintln!("the agent had exited: {status}"),
                Some(Ok(None)) => eprintln!("the agent was still running"),
                Some(Err(e)) => eprintln!("the agent's state is unknown: {e}"),
                None => eprintln!("the agent was stopped by the test"),
            }
            self.kill9();
            match &self.stderr_file {
                Some(path) => eprintln!("agent stderr: {}", path.display()),
                None => self.log.print_tail(),
            }
        }
    }
}

pub fn parse_metrics(body: &str) -> HashMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// A minimal HTTP/1.1 GET (no client dependency for two endpoints).
pub fn http_get(addr: SocketAddr, path: &str, api_key: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let key = api_key.map_or(String::new(), |k| format!("x-api-key: {k}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{key}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Starts one SDK client process.
pub fn client(endpoint: &str, index: u32, args: &[&str]) -> Proc {
    Proc::spawn(
        Command::new(loadgen_bin())
            .arg("--endpoint")
            .arg(endpoint)
            .arg("--client")
            .arg(index.to_string())
            .args(args),
    )
}

/// Parsed final line of a client: (sent, delivered, dropped).
pub fn client_result(p: &mut Proc, timeout: Duration) -> (u64, u64, u64) {
    let deadline = Instant::now() + timeout;
    let line = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match p.stdout.recv_timeout(left) {
            Ok(l) if l.starts_with("loadgen ") => break l,
            // Why the client's last push failed, printed just before its result.
            Ok(l) if l.starts_with("loadgen-error ") => eprintln!("{l}"),
            Ok(_) => {}
            Err(e) => panic!("no result line from the client: {e}"),
        }
    };
    eprintln!("{line}");
    let n = |k: &str| field(&line, k).parse::<u64>().unwrap();
    (n("sent"), n("delivered"), n("dropped"))
}

/// Checks that every (model, window) holds exactly the parts of `clients`, each once:
/// parts carry rows = 4^client, so a part stored twice shows up as a shared bit or a carry
/// into an odd bit.
pub fn assert_exactly_once(
    stored: &BTreeMap<(String, i64), Vec<u64>>,
    expected_keys: usize,
    clients: &[u32],
) {
    let want: u64 = clients.iter().map(|c| 1u64 << (2 * c)).sum();
    assert_eq!(stored.len(), expected_keys, "windows stored: {stored:?}");
    for (key, parts) in stored {
        let mut seen = 0u64;
        for &rows in parts {
            assert_eq!(
                rows & 0xAAAA_AAAA_AAAA_AAAA,
                0,
                "{key:?}: a part was merged twice: {parts:?}"
            );
            assert_eq!(
                seen & rows,
                0,
                "{key:?}: a client's part is stored twice: {parts:?}"
            );
            seen |= rows;
        }
        assert_eq!(seen, want, "{key:?}: parts missing: {parts:?}");
    }
}
