//! `neurocloak-agent` — the sidecar. See docs/agent.md.

use std::io::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use neurocloak_agent::config::{Config, Overrides};
use neurocloak_agent::run::RunningAgent;

#[derive(Parser)]
#[command(name = "neurocloak-agent", version, about = "NeuroCloak sidecar agent")]
struct Cli {
    #[command(flatten)]
    o: Overrides,
}

fn main() -> anyhow::Result<()> {
    neurocloak_agent::memory::limit_arenas();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("NEUROCLOAK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // By default a failed log write is reported with eprintln!, which panics when stderr
        // cannot be written either: a full disk (or a file size limit) under a file-backed
        // stderr then killed whichever thread logged, the queue writer first, since it logs
        // exactly the failed writes that come with a full disk. A lost log line is better.
        .log_internal_errors(false)
        .init();
    let config = Config::load(&cli.o)?;
    // A sidecar shares the pod's CPU with the model: two workers are plenty.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(config))
}

async fn run(config: Config) -> anyhow::Result<()> {
    let agent = RunningAgent::start(&config)
        .await
        .context("starting the agent")?;
    let show = |a: Option<String>| a.unwrap_or_else(|| "-".into());
    // One parseable line: tests and scripts started with port 0 learn the real ports here.
    // writeln, not println: an unwritable stdout must not stop the agent either.
    let _ = writeln!(
        std::io::stdout(),
        "neurocloak-agent listening tcp={} uds={} http={}",
        show(agent.tcp_addr.map(|a| a.to_string())),
        show(agent.uds_path.as_ref().map(|p| p.display().to_string())),
        show(agent.http_addr.map(|a| a.to_string())),
    );
    let s = agent.queue_stats();
    tracing::info!(
        queued = s.queued,
        dropped = s.dropped_total(),
        "queue recovered"
    );
    shutdown_signal().await;
    tracing::info!("draining");
    let s = agent
        .shutdown(Duration::from_millis(config.drain_timeout_ms))
        .await;
    tracing::info!(
        received = s.received,
        forwarded = s.forwarded,
        dropped = s.dropped_total(),
        queued = s.queued,
        "stopped"
    );
    Ok(())
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGTERM; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
