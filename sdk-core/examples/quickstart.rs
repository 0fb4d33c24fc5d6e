//! Records synthetic predictions of a credit model for three short windows without an agent
//! (into a `MemorySink`) and prints what each window profile says.
//!
//! `cargo run -p neurocloak-core --example quickstart`

use std::sync::Arc;
use std::time::{Duration, Instant};

use neurocloak_core::profile::WindowProfile;
use neurocloak_core::sketch::rng::SplitMix64;
use neurocloak_core::{
    Batch, Column, ColumnData, FeatureKind, MemorySink, Monitor, MonitorConfig, Prediction,
    TaskType, Value,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut cfg = MonitorConfig::new("demo", "credit-risk", "1.4.0");
    cfg.task = TaskType::BinaryClassification;
    cfg.classes = vec!["repaid".into(), "default".into()];
    cfg.features = Some(vec![
        ("income".into(), FeatureKind::Numeric),
        ("age".into(), FeatureKind::Numeric),
        ("region".into(), FeatureKind::Categorical),
        ("sex".into(), FeatureKind::Categorical),
    ]);
    cfg.sensitive = vec!["sex".into()];
    cfg.window = Duration::from_secs(1);
    cfg.close_delay = Duration::from_millis(100);
    let sink = Arc::new(MemorySink::new());
    let monitor = Monitor::with_sink(cfg, sink.clone())?;

    // A reference from "training data": later windows count exact decile bins.
    let mut rng = SplitMix64::new(1);
    let incomes: Vec<f64> = (0..10_000)
        .map(|_| 30_000.0 + 40_000.0 * rng.unit())
        .collect();
    let ages: Vec<f64> = (0..10_000).map(|_| 20.0 + 50.0 * rng.unit()).collect();
    let regions: Vec<&str> = (0..10_000)
        .map(|i| ["north", "south", "east"][i % 3])
        .collect();
    let sexes: Vec<&str> = (0..10_000).map(|i| ["F", "M"][i % 2]).collect();
    monitor.set_reference(&Batch {
        features: vec![
            Column::new("income", ColumnData::F64(&incomes)),
            Column::new("age", ColumnData::F64(&ages)),
            Column::new("region", ColumnData::Str(&regions)),
            Column::new("sex", ColumnData::Str(&sexes)),
        ],
        ..Batch::default()
    })?;

    // Three windows of live traffic; income drifts upwards and some rows are bad.
    let started = Instant::now();
    let mut rows = 0u64;
    while started.elapsed() < Duration::from_millis(3100) {
        let drift = started.elapsed().as_secs_f64() * 10_000.0;
        let income = 30_000.0 + drift + 40_000.0 * rng.unit();
        let score = rng.unit();
        let id = format!("req-{rows}");
        let income = if rows.is_multiple_of(500) {
            f64::NAN
        } else {
            income
        };
        monitor.log(
            &[
                ("income", Value::Number(income)),
                ("age", Value::Number(20.0 + 50.0 * rng.unit())),
                (
                    "region",
                    Value::Text(["north", "south", "east", "west"][(rows % 4) as usize]),
                ),
                ("sex", Value::Text(if rng.coin() { "F" } else { "M" })),
            ],
            &Prediction {
                id: Some(&id),
                prediction: Value::Bool(score > 0.5),
                label: if rng.unit() < 0.3 {
                    Value::Bool(rng.unit() < score)
                } else {
                    Value::Missing
                },
                scores: &[score],
                ..Prediction::default()
            },
        )?;
        monitor.record_latency(Duration::from_micros(200 + rows % 300));
        rows += 1;
        if rows.is_multiple_of(20) {
            // Roughly a busy model server's rate rather than a tight loop.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    monitor.flush(Duration::from_secs(1))?;

    println!("recorded {rows} rows; stats: {:?}", monitor.stats());
    for w in sink.take_windows() {
        print_window(&WindowProfile::from_proto(&w)?, w_size(&w));
    }
    Ok(())
}

fn w_size(w: &neurocloak_proto::WindowProfile) -> usize {
    prost::Message::encoded_len(w)
}

fn print_window(w: &WindowProfile, bytes: usize) {
    println!(
        "\nwindow {} (+{} ms): {} rows, {} bytes on the wire, {} prediction records ({} dropped)",
        w.window_start_ms,
        w.window_length_ms,
        w.rows,
        bytes,
        w.predictions.len(),
        w.predictions_dropped
    );
    for (name, col) in &w.features {
        let c = col.counters;
        print!(
            "  {name:<7} count {:>6} missing {} nan {} mismatched {}",
            c.count, c.missing, c.nan, c.type_mismatch
        );
        if let Some(n) = &col.numeric {
            let view = n.kll.sorted_view();
            print!(
                "  mean {:>9.1}  p50 {:>9.1}  p99 {:>9.1}  (rank error <= {:.3})",
                n.moments.mean(),
                view.quantile(0.5).unwrap_or(f64::NAN),
                view.quantile(0.99).unwrap_or(f64::NAN),
                n.kll.rank_error_bound(0.01)
            );
            if let Some(b) = &n.bins {
                print!("  decile bins {:?}", b.counts());
            }
        }
        if let Some(cat) = &col.categorical {
            let top: Vec<String> = cat
                .items
                .items()
                .iter()
                .take(3)
                .map(|(v, c)| format!("{v}:{c}"))
                .collect();
            print!(
                "  top {}  distinct ~{:.0}",
                top.join(" "),
                cat.hll.as_ref().map_or(0.0, |h| h.estimate())
            );
        }
        println!();
    }
    if let Some(cls) = w.outcomes.as_ref().and_then(|o| o.classification.as_ref()) {
        println!(
            "  outcomes: {} labelled, confusion {:?}, mean log loss {:.3}",
            cls.labelled,
            cls.confusion,
            cls.log_loss_sum / cls.scored.max(1) as f64
        );
    }
    for (g, p) in &w.groups {
        println!("  group {g}: {} rows", p.count);
    }
    if let Some(l) = &w.latency {
        let h = l.histogram();
        println!(
            "  latency p50 {} µs, p99 {} µs",
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99)
        );
    }
}
