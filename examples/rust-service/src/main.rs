//! A fraud-scoring service written in Rust that monitors itself with `neurocloak_core` directly:
//! a reference profile from training data, every request logged from several worker threads
//! (one `Monitor`, shared; no global lock on the hot path), failed requests counted, chargeback
//! labels sent later by prediction id, and a bounded shutdown that reports what was delivered.
//!
//! ```sh
//! NEUROCLOAK_AGENT=unix:///tmp/neurocloak/agent.sock cargo run -p neurocloak-example-rust-service -- --requests 10000
//! ```
//!
//! It prints one JSON line (what it logged plus the SDK's delivery counters) and exits 1 if any
//! payload was dropped on its way to the agent.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use neurocloak_core::{
    Batch, Column, ColumnData, FeatureKind, Monitor, MonitorConfig, Prediction, TaskType, Value,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const CATEGORIES: [&str; 4] = ["grocery", "travel", "electronics", "gaming"];
const COUNTRIES: [&str; 3] = ["de", "fr", "us"];
const CLASSES: [&str; 2] = ["legit", "fraud"];

#[derive(Parser, Debug)]
#[command(about = "Fraud-scoring service monitored with neurocloak-core")]
struct Args {
    /// Agent endpoint (`unix:///path` or `http://host:port`); default `$NEUROCLOAK_AGENT`.
    #[arg(long)]
    agent: Option<String>,
    #[arg(long, env = "NEUROCLOAK_PROJECT", default_value = "payments")]
    project: String,
    /// Requests to serve in total, spread over the worker threads.
    #[arg(long, default_value_t = 10_000)]
    requests: u64,
    #[arg(long, default_value_t = 4)]
    threads: u64,
    /// Every Nth request arrives with a NaN amount (a broken upstream feed); 0 disables.
    #[arg(long, default_value_t = 100)]
    nan_every: u64,
    /// Every Nth request fails inside the model and is counted as an error; 0 disables.
    #[arg(long, default_value_t = 250)]
    fail_every: u64,
    /// Share of served requests whose chargeback outcome is reported as a label.
    #[arg(long, default_value_t = 0.5)]
    label_share: f64,
    #[arg(long, default_value_t = 60.0)]
    window_seconds: f64,
    /// Pause between requests of one thread, to spread a run over several windows.
    #[arg(long, default_value_t = 0)]
    pause_us: u64,
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

/// One card transaction, as the service receives it.
struct Txn {
    amount: f64,
    hour: f64,
    category: &'static str,
    country: &'static str,
    card_present: bool,
}

fn transaction(rng: &mut SmallRng) -> Txn {
    // Log-normal amounts via Box-Muller: median ~55, long right tail.
    let z = (-2.0 * rng.random::<f64>().max(f64::MIN_POSITIVE).ln()).sqrt()
        * (std::f64::consts::TAU * rng.random::<f64>()).cos();
    Txn {
        amount: (4.0 + 0.9 * z).exp(),
        hour: f64::from(rng.random_range(0u8..24)),
        category: CATEGORIES[rng.random_range(0..CATEGORIES.len())],
        country: COUNTRIES[rng.random_range(0..COUNTRIES.len())],
        card_present: rng.random_bool(0.7),
    }
}

/// The deployed model: a logistic scorer. A NaN amount is imputed with the training median, as
/// a real feature pipeline would, so the request is still served — and the monitor counts it.
fn fraud_probability(t: &Txn) -> f64 {
    let amount = if t.amount.is_finite() { t.amount } else { 55.0 };
    let night = f64::from(u8::from(!(6.0..22.0).contains(&t.hour)));
    let risky = f64::from(u8::from(matches!(t.category, "electronics" | "gaming")));
    let z = -4.0 + 0.6 * (amount / 55.0).ln() + 1.2 * night + 0.9 * risky
        - 1.5 * f64::from(u8::from(t.card_present));
    1.0 / (1.0 + (-z).exp())
}

fn config(args: &Args) -> anyhow::Result<MonitorConfig> {
    if !(args.window_seconds.is_finite() && args.window_seconds > 0.0) {
        anyhow::bail!("--window-seconds must be a positive number");
    }
    if !(0.0..=1.0).contains(&args.label_share) {
        anyhow::bail!("--label-share must be within [0, 1]");
    }
    if args.threads == 0 {
        anyhow::bail!("--threads must be at least 1");
    }
    let mut c = MonitorConfig::new(&args.project, "fraud-scorer", "1.4.2");
    c.task = TaskType::BinaryClassification;
    c.classes = CLASSES.iter().map(|s| (*s).to_owned()).collect();
    c.features = Some(vec![
        ("amount".into(), FeatureKind::Numeric),
        ("hour".into(), FeatureKind::Numeric),
        ("category".into(), FeatureKind::Categorical),
        ("country".into(), FeatureKind::Categorical),
        ("card_present".into(), FeatureKind::Boolean),
    ]);
    c.sensitive = vec!["country".into()];
    c.window = Duration::from_secs_f64(args.window_seconds);
    c.agent_endpoint = args.agent.clone();
    Ok(c)
}

/// Profiles 20 000 training transactions as the drift reference.
fn set_reference(monitor: &Monitor, seed: u64) -> anyhow::Result<()> {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x5eed);
    let rows: Vec<Txn> = (0..20_000).map(|_| transaction(&mut rng)).collect();
    let amount: Vec<f64> = rows.iter().map(|t| t.amount).collect();
    let hour: Vec<f64> = rows.iter().map(|t| t.hour).collect();
    let category: Vec<&str> = rows.iter().map(|t| t.category).collect();
    let country: Vec<&str> = rows.iter().map(|t| t.country).collect();
    let present: Vec<bool> = rows.iter().map(|t| t.card_present).collect();
    let predicted: Vec<bool> = rows.iter().map(|t| fraud_probability(t) >= 0.5).collect();
    let batch = Batch {
        features: vec![
            Column::new("amount", ColumnData::F64(&amount)),
            Column::new("hour", ColumnData::F64(&hour)),
            Column::new("category", ColumnData::Str(&category)),
            Column::new("country", ColumnData::Str(&country)),
            Column::new("card_present", ColumnData::Bool(&present)),
        ],
        predictions: Some(ColumnData::Bool(&predicted)),
        ..Batch::default()
    };
    monitor.set_reference(&batch).context("reference profile")?;
    Ok(())
}

/// What one worker thread did: its request count, injected faults and the ground truth it will
/// learn later (id, outcome).
#[derive(Default)]
struct Served {
    requests: u64,
    nan: u64,
    failed: u64,
    outcomes: Vec<(String, &'static str)>,
}

fn serve(monitor: &Monitor, args: &Args, worker: u64, requests: u64) -> Served {
    let mut rng = SmallRng::seed_from_u64(args.seed.wrapping_add(worker));
    let mut served = Served::default();
    for i in 0..requests {
        let n = worker * requests + i + 1;
        let mut txn = transaction(&mut rng);
        let start = Instant::now();
        served.requests += 1;
        if args.fail_every > 0 && n.is_multiple_of(args.fail_every) {
            served.failed += 1;
            monitor.record_latency(start.elapsed());
            monitor.record_error();
            continue;
        }
        // Injected only into requests that are served, so the count matches what is logged.
        if args.nan_every > 0 && n.is_multiple_of(args.nan_every) {
            txn.amount = f64::NAN;
            served.nan += 1;
        }
        let p = fraud_probability(&txn);
        let id = format!("txn-{worker}-{i}");
        let prediction = Prediction {
            id: Some(&id),
            prediction: Value::Text(CLASSES[usize::from(p >= 0.5)]),
            scores: &[1.0 - p, p],
            ..Prediction::default()
        };
        let row = [
            ("amount", Value::Number(txn.amount)),
            ("hour", Value::Number(txn.hour)),
            ("category", Value::Text(txn.category)),
            ("country", Value::Text(txn.country)),
            ("card_present", Value::Bool(txn.card_present)),
        ];
        // `log` does not fail for bad values (NaN is counted); an error here means the monitor
        // was shut down, which a serving thread should survive.
        if let Err(e) = monitor.log(&row, &prediction) {
            eprintln!("worker {worker}: not logged: {e}");
        }
        monitor.record_latency(start.elapsed());
        if rng.random_bool(args.label_share) {
            let fraud = rng.random_bool(p);
            served.outcomes.push((id, CLASSES[usize::from(fraud)]));
        }
        if args.pause_us > 0 {
            thread::sleep(Duration::from_micros(args.pause_us));
        }
    }
    served
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let monitor = Monitor::new(config(&args)?).context("creating the monitor")?;
    set_reference(&monitor, args.seed)?;

    let args = Arc::new(args);
    let per_thread = args.requests / args.threads;
    let remainder = args.requests % args.threads;
    let started = Instant::now();
    let handles: Vec<_> = (0..args.threads)
        .map(|w| {
            let (monitor, args) = (monitor.clone(), Arc::clone(&args));
            let n = per_thread + u64::from(w < remainder);
            thread::spawn(move || serve(&monitor, &args, w, n))
        })
        .collect();
    let mut total = Served::default();
    for h in handles {
        let s = h
            .join()
            .map_err(|_| anyhow::anyhow!("a worker thread panicked"))?;
        total.requests += s.requests;
        total.nan += s.nan;
        total.failed += s.failed;
        total.outcomes.extend(s.outcomes);
    }
    let serving = started.elapsed();

    // Chargebacks come in later; here, right after serving, from the same process.
    let ids: Vec<&str> = total.outcomes.iter().map(|(id, _)| id.as_str()).collect();
    let labels: Vec<Value<'_>> = total.outcomes.iter().map(|(_, l)| Value::Text(l)).collect();
    monitor.log_labels(&ids, &labels).context("labels")?;

    let shutdown = monitor.shutdown(Duration::from_secs(30));
    let stats = monitor.stats();
    println!(
        "{}",
        serde_json::json!({
            "requests": total.requests,
            "logged": total.requests - total.failed,
            "nan_amounts": total.nan,
            "errors": total.failed,
            "labels": ids.len(),
            "serving_ms": serving.as_millis() as u64,
            "shutdown": shutdown.as_ref().map_or_else(|e| e.to_string(), |()| "ok".into()),
            "stats": {
                "sent": stats.sent, "delivered": stats.delivered, "dropped": stats.dropped,
                "queued": stats.queued, "windows": stats.windows,
            },
        })
    );
    if shutdown.is_err() || stats.dropped > 0 {
        std::process::exit(1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn args(extra: &[&str]) -> Args {
        Args::try_parse_from(["rust-service"].iter().chain(extra)).unwrap()
    }

    #[test]
    fn bad_flags_are_refused_with_a_message() {
        for bad in [
            &["--label-share", "1.5"][..],
            &["--window-seconds", "0"],
            &["--window-seconds", "inf"],
            &["--threads", "0"],
        ] {
            let err = config(&args(bad)).unwrap_err().to_string();
            assert!(err.contains("must"), "{bad:?}: {err}");
        }
        assert!(Args::try_parse_from(["rust-service", "--requests", "-1"]).is_err());
        assert!(config(&args(&[])).is_ok());
    }

    #[test]
    fn a_nan_amount_is_imputed_not_propagated() {
        let mut t = transaction(&mut SmallRng::seed_from_u64(1));
        for amount in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            t.amount = amount;
            let p = fraud_probability(&t);
            assert!((0.0..=1.0).contains(&p), "{amount}: {p}");
        }
    }

    #[test]
    fn every_request_is_logged_or_counted_as_an_error() {
        let monitor = Monitor::with_sink(
            config(&args(&["--window-seconds", "3600"])).unwrap(),
            Arc::new(neurocloak_core::MemorySink::default()),
        )
        .unwrap();
        let a = args(&["--nan-every", "10", "--fail-every", "25"]);
        let served = serve(&monitor, &a, 0, 500);
        assert_eq!((served.requests, served.failed), (500, 20));
        // Every 10th except the failed every 50th.
        assert_eq!(served.nan, 50 - 10);
    }
}
