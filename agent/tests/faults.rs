//! Fault tests with real processes: the agent binary, the collector binary and SDK client
//! processes shipping through the real `Shipper`. Each test counts what arrived.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Simple xorshift so the kill moments are random but reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Window starts are shared by all clients of a test so their parts line up.
fn clients_args(windows: u64, models: u32, pause_ms: u64, project: &str) -> Vec<String> {
    let first = (agent_now_ms() / 1000 - windows as i64) * 1000;
    vec![
        "--first-window-ms".into(),
        first.to_string(),
        "--windows".into(),
        windows.to_string(),
        "--models".into(),
        models.to_string(),
        "--pause-ms".into(),
        pause_ms.to_string(),
        "--project".into(),
        project.into(),
    ]
}

fn start_clients(agent: &Agent, n: u32, args: &[String]) -> Vec<Proc> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    (0..n)
        .map(|i| {
            // Half the clients use the Unix socket, half loopback TCP.
            let ep = if i % 2 == 0 {
                agent.uds_endpoint()
            } else {
                agent.tcp_endpoint()
            };
            client(&ep, i, &args)
        })
        .collect()
}

/// An agent (not started yet) in `dir` that forwards to `collector`.
fn agent_for(dir: &std::path::Path, collector: &Collector, flags: &[&str]) -> Agent {
    Agent::new(dir, collector.endpoint(), collector.api_key.clone(), flags)
}

/// Every one of `n_clients` clients' rows of `windows` windows (over `models` models) is stored
/// exactly once.
fn stored_once_from_every_client(
    collector: &Collector,
    models: u32,
    windows: usize,
    n_clients: u32,
) {
    assert_exactly_once(
        &collector.stored_rows(models),
        windows,
        &(0..n_clients).collect::<Vec<_>>(),
    );
}

fn all_delivered(clients: &mut [Proc]) {
    for c in clients.iter_mut() {
        let (sent, delivered, dropped) = client_result(c, Duration::from_secs(120));
        assert_eq!(dropped, 0);
        assert_eq!(sent, delivered, "every push was acknowledged by the agent");
    }
}

#[test]
fn kill_9_at_random_moments_loses_and_duplicates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut collector = Collector::new(tmp.path());
    collector.start();
    let mut agent = agent_for(tmp.path(), &collector, &[]);
    agent.start();
    let (n_clients, windows, models) = (8u32, 120u64, 2u32);
    let args = clients_args(windows, models, 40, &collector.project);
    let mut clients = start_clients(&agent, n_clients, &args);

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("kill -9 schedule seed {seed}");
    let mut rng = Rng(seed);
    let t = Instant::now();
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(30 + rng.next() % 120));
        agent.kill9();
        agent.start();
    }
    let m = agent.check_invariant();
    eprintln!(
        "20 kills in {:?}; queue after the last restart: {}",
        t.elapsed(),
        m["neurocloak_agent_queue_depth"]
    );
    // The kills must have hit the clients while they were still pushing.
    for c in clients.iter_mut() {
        assert!(
            c.child.try_wait().unwrap().is_none(),
            "a client finished before the last kill; make the load longer"
        );
    }
    all_delivered(&mut clients);
    let m = agent.wait_drained(Duration::from_secs(60));
    assert_eq!(m["neurocloak_agent_dropped_total{reason=\"corrupt\"}"], 0.0);
    stored_once_from_every_client(
        &collector,
        models,
        (windows * u64::from(models)) as usize,
        n_clients,
    );
}

#[test]
fn collector_outage_then_recovery_delivers_everything_once() {
    let tmp = tempfile::tempdir().unwrap();
    let mut collector = Collector::new(tmp.path());
    collector.start();
    let mut agent = agent_for(tmp.path(), &collector, &[]);
    agent.start();
    let (n_clients, windows, models) = (8u32, 30u64, 1u32);
    let args = clients_args(windows, models, 20, &collector.project);
    let mut clients = start_clients(&agent, n_clients, &args);
    // Down while the clients are pushing, and kill -9 so acks in flight are lost too.
    std::thread::sleep(Duration::from_millis(150));
    collector.kill9();
    all_delivered(&mut clients);
    let m = agent.check_invariant();
    assert!(
        m["neurocloak_agent_queue_depth"] > 0.0,
        "data waits in the agent: {m:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while agent.metrics()["neurocloak_agent_forward_retries_total"] == 0.0 {
        assert!(Instant::now() < deadline, "the agent never retried");
        std::thread::sleep(Duration::from_millis(50));
    }
    collector.start();
    let m = agent.wait_drained(Duration::from_secs(60));
    assert_eq!(
        m["neurocloak_agent_forwarded_total"],
        f64::from(n_clients) * windows as f64 * f64::from(models)
    );
    stored_once_from_every_client(
        &collector,
        models,
        (windows * u64::from(models)) as usize,
        n_clients,
    );
}

#[test]
fn disk_cap_drops_oldest_counts_it_and_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let mut collector = Collector::new(tmp.path());
    // The collector stays down until the cap has been hit.
    let cap = 64 * 1024;
    let mut agent = agent_for(
        tmp.path(),
        &collector,
        &["--queue-max-bytes", "65536", "--segment-bytes", "8192"],
    );
    agent.start();
    let windows = 3000u64;
    let args = clients_args(windows, 1, 0, &collector.project);
    let mut clients = start_clients(&agent, 1, &args);
    all_delivered(&mut clients);
    let m = agent.check_invariant();
    let dropped = m["neurocloak_agent_dropped_total{reason=\"disk_cap\"}"];
    assert!(dropped > 0.0, "{m:?}");
    assert!(
        m["neurocloak_agent_disk_bytes"] <= f64::from(cap + 8192 * 2),
        "{m:?}"
    );
    assert_eq!(m["neurocloak_agent_received_total"], windows as f64);
    let (status, _) = http_get(agent.http, "/healthz", None);
    assert_eq!(status, 200);

    collector.start();
    let m = agent.wait_drained(Duration::from_secs(60));
    let forwarded = m["neurocloak_agent_forwarded_total"];
    assert_eq!(forwarded + dropped, windows as f64);
    let stored = collector.stored_rows(1);
    assert_eq!(stored.len() as f64, forwarded);
    // Drop-oldest: what was stored is the newest run of windows, ending with the last one.
    let starts: Vec<i64> = stored.keys().map(|(_, s)| *s).collect();
    let first: i64 = args[1].parse().unwrap();
    let last = first + (windows as i64 - 1) * 1000;
    assert_eq!(*starts.last().unwrap(), last, "the newest window survives");
    assert_eq!(starts[0], last - (starts.len() as i64 - 1) * 1000);
}

#[test]
fn corrupted_segment_record_is_skipped_counted_and_the_rest_delivered() {
    let tmp = tempfile::tempdir().unwrap();
    let mut collector = Collector::new(tmp.path());
    let mut agent = agent_for(tmp.path(), &collector, &[]);
    agent.start();
    let windows = 40u64;
    let args = clients_args(windows, 1, 0, &collector.project);
    let mut clients = start_clients(&agent, 1, &args);
    all_delivered(&mut clients);
    agent.kill9();

    // Damage one record in the middle of the segment: flip a byte of its body.
    let qdir = agent.dir.join("queue");
    let seg = std::fs::read_dir(&qdir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let magics: Vec<usize> = bytes
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == b"NCQ1")
        .map(|(i, _)| i)
        .collect();
    assert!(
        magics.len() >= 10,
        "records in the segment: {}",
        magics.len()
    );
    let victim = magics[magics.len() / 2];
    bytes[victim + 14] ^= 0xFF;
    std::fs::write(&seg, &bytes).unwrap();

    agent.start();
    let m = agent.check_invariant();
    assert_eq!(
        m["neurocloak_agent_dropped_total{reason=\"corrupt\"}"], 1.0,
        "{m:?}"
    );
    collector.start();
    let m = agent.wait_drained(Duration::from_secs(60));
    assert_eq!(m["neurocloak_agent_forwarded_total"], windows as f64 - 1.0);
    assert_eq!(collector.stored_rows(1).len() as u64, windows - 1);
    // A restart does not count the same damage again.
    agent.kill9();
    agent.start();
    let m = agent.check_invariant();
    assert_eq!(
        m["neurocloak_agent_dropped_total{reason=\"corrupt\"}"], 0.0,
        "{m:?}"
    );
}

#[test]
fn sigterm_drains_before_exiting() {
    let tmp = tempfile::tempdir().unwrap();
    let mut collector = Collector::new(tmp.path());
    collector.start();
    // A long grace period would hold current windows back; the drain must not wait for it.
    let mut agent = agent_for(
        tmp.path(),
        &collector,
        &["--merge-grace-ms", "600000", "--drain-timeout-ms", "20000"],
    );
    agent.start();
    let windows = 5u64;
    let args = clients_args(windows, 1, 0, &collector.project);
    let mut clients = start_clients(&agent, 2, &args);
    all_delivered(&mut clients);
    assert_eq!(agent.metrics()["neurocloak_agent_queue_depth"], 10.0);
    let mut p = agent.proc.take().unwrap();
    p.sigterm();
    let status = p
        .wait_exit(Duration::from_secs(20))
        .expect("agent exits after drain");
    assert!(status.success(), "{status:?}");
    let stored = collector.stored_rows(1);
    assert_exactly_once(&stored, windows as usize, &[0, 1]);
    // Both processes' parts of a window were merged by the agent into one stored part.
    for (key, parts) in &stored {
        assert_eq!(parts, &vec![1 + 4], "{key:?}");
    }
}

#[test]
fn failed_disk_writes_are_retried_by_the_sdk_and_stored_once() {
    let tmp = tempfile::tempdir().unwrap();
    let mut collector = Collector::new(tmp.path());
    collector.start();
    // Segments may grow to 1 MiB but the OS refuses any file past 8 KiB: every time the active
    // segment would cross it, the write fails (EFBIG, often after a partial write), the
    // agent answers UNAVAILABLE, cuts the segment back and starts a new one, and the SDK's
    // retry is stored there.
    let mut agent = agent_for(tmp.path(), &collector, &["--segment-bytes", "1048576"]);
    agent.file_size_limit = Some(8192);
    agent.start();
    let (n_clients, windows) = (4u32, 150u64);
    let args = clients_args(windows, 1, 2, &collector.project);
    let mut clients = start_clients(&agent, n_clients, &args);
    all_delivered(&mut clients);
    let m = agent.wait_drained(Duration::from_secs(60));
    eprintln!(
        "write errors {}, pushes failed {}",
        m["neurocloak_agent_queue_write_errors_total"], m["neurocloak_agent_pushes_failed_total"]
    );
    assert!(
        m["neurocloak_agent_queue_write_errors_total"] > 0.0,
        "{m:?}"
    );
    assert!(m["neurocloak_agent_pushes_failed_total"] > 0.0, "{m:?}");
    let total = f64::from(n_clients) * windows as f64;
    assert_eq!(m["neurocloak_agent_received_total"], total, "{m:?}");
    assert_eq!(m["neurocloak_agent_forwarded_total"], total, "{m:?}");
    stored_once_from_every_client(&collector, 1, windows as usize, n_clients);
    // A restart finds no hole left by the failed writes.
    agent.kill9();
    agent.start();
    let m = agent.check_invariant();
    for reason in ["corrupt", "truncated"] {
        assert_eq!(
            m[&format!("neurocloak_agent_dropped_total{{reason=\"{reason}\"}}")],
            0.0,
            "{m:?}"
        );
    }
}

#[test]
fn a_log_that_cannot_be_written_does_not_stop_the_agent() {
    // The agent's stderr is a file already past the agent's file size limit, so every log
    // line fails with EFBIG, as under a full disk. The logger used to panic on that, in the
    // queue writer thread, which logs each failed write: from the first one on, every push
    // was refused for good (a CI run shared its log file with the agent this way).
    let tmp = tempfile::tempdir().unwrap();
    let mut collector = Collector::new(tmp.path());
    collector.start();
    let mut agent = agent_for(tmp.path(), &collector, &["--segment-bytes", "1048576"]);
    let stderr = tmp.path().join("agent-stderr.log");
    std::fs::write(&stderr, vec![b'.'; 16 * 1024]).unwrap();
    agent.stderr_file = Some(stderr.clone());
    agent.file_size_limit = Some(8192);
    agent.start();
    let (n_clients, windows) = (2u32, 100u64);
    let args = clients_args(windows, 1, 0, &collector.project);
    let mut clients = start_clients(&agent, n_clients, &args);
    all_delivered(&mut clients);
    let m = agent.wait_drained(Duration::from_secs(60));
    assert!(
        m["neurocloak_agent_queue_write_errors_total"] > 0.0,
        "{m:?}"
    );
    let total = f64::from(n_clients) * windows as f64;
    assert_eq!(m["neurocloak_agent_forwarded_total"], total, "{m:?}");
    stored_once_from_every_client(&collector, 1, windows as usize, n_clients);
    // Nothing of the log got through: the failures were real.
    assert_eq!(std::fs::metadata(&stderr).unwrap().len(), 16 * 1024);
}

fn agent_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
