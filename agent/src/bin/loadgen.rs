//! `neurocloak-agent-loadgen` — a synthetic SDK process: pushes window profiles to an agent
//! through the real SDK shipping client, then prints its delivery accounting as one line.
//! Used by the agent's fault tests and for smoke-testing a deployed sidecar.
//!
//! Each window part carries `rows = 4^client`, so the sum of stored rows per window tells
//! which clients' parts were stored and whether any was stored twice (a duplicate carries
//! into a bit no client uses).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use neurocloak_core::ship::{Shipper, ShipperConfig};
use neurocloak_proto::v1::push_request::Payload;
use neurocloak_proto::v1::{ModelIdentity, Schema};

#[derive(Parser)]
#[command(
    name = "neurocloak-agent-loadgen",
    about = "Push synthetic windows to an agent"
)]
struct Args {
    /// Agent endpoint: unix:///path or http://127.0.0.1:7071.
    #[arg(long)]
    endpoint: String,
    /// This client's index (0..16); its parts carry rows = 4^client.
    #[arg(long, default_value_t = 0)]
    client: u32,
    #[arg(long, default_value = "p")]
    project: String,
    /// Models per window (named m0, m1, ...).
    #[arg(long, default_value_t = 1)]
    models: u32,
    #[arg(long, default_value_t = 10)]
    windows: u64,
    #[arg(long, default_value_t = 1000)]
    window_ms: i64,
    /// Start of the first window (ms since the epoch, a multiple of window_ms); by default the
    /// windows end at the current one, so a collector's retention keeps them.
    #[arg(long)]
    first_window_ms: Option<i64>,
    /// Pause between windows.
    #[arg(long, default_value_t = 0)]
    pause_ms: u64,
    /// How long to wait for delivery at the end.
    #[arg(long, default_value_t = 60_000)]
    flush_ms: u64,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    anyhow::ensure!(a.client < 16, "client must be below 16");
    let shipper = Shipper::new(ShipperConfig {
        endpoint: a.endpoint.clone(),
        queue_capacity: 1 << 20,
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(300),
        request_timeout: Duration::from_secs(5),
        ..ShipperConfig::default()
    })
    .context("creating the shipper")?;
    let now_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis(),
    )?;
    let first = a.first_window_ms.unwrap_or_else(|| {
        (now_ms / a.window_ms - i64::try_from(a.windows).unwrap_or(0)) * a.window_ms
    });
    println!("loadgen-start first_window_ms={first}");
    for w in 0..a.windows {
        for m in 0..a.models {
            let identity = ModelIdentity {
                project: a.project.clone(),
                model: format!("m{m}"),
                version: "v1".into(),
                environment: "test".into(),
            };
            let start = first + i64::try_from(w)? * a.window_ms;
            let mut part = neurocloak_core::WindowProfile::new(
                identity,
                Schema::default(),
                start,
                a.window_ms,
            )
            .to_proto();
            part.rows = 1u64 << (2 * a.client);
            shipper.enqueue(Payload::Window(part));
        }
        if a.pause_ms > 0 {
            std::thread::sleep(Duration::from_millis(a.pause_ms));
        }
    }
    let t = Instant::now();
    let flushed = shipper.flush(Duration::from_millis(a.flush_ms));
    let s = shipper.stats();
    // Why the last push failed, with the instance the agent's log names, so a
    // stuck client can be matched with what the agent did with its pushes.
    if let Some(e) = shipper.last_error() {
        println!(
            "loadgen-error client={} sdk_instance={} {e}",
            a.client,
            shipper.sdk_instance()
        );
    }
    println!(
        "loadgen client={} sent={} delivered={} dropped={} queued={} retries={} flush_ms={} ok={}",
        a.client,
        s.sent,
        s.delivered,
        s.dropped,
        s.queued,
        s.retries,
        t.elapsed().as_millis(),
        flushed.is_ok()
    );
    shipper.shutdown(Duration::from_secs(1)).ok();
    Ok(())
}
