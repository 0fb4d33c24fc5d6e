//! Operations surface: HTTP `/healthz` and Prometheus `/metrics`.
//!
//! Metrics are rendered from one consistent snapshot of the queue's accounting at each scrape,
//! so `received == forwarded + dropped + queued` also holds between scraped values.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use parking_lot::Mutex;
use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

use crate::error::AgentError;
use crate::forward::ForwardStats;
use crate::queue::{DiskQueue, DropReason};
use crate::receive::ReceiveStats;

/// What the HTTP endpoints read.
#[derive(Clone)]
pub struct OpsState {
    pub queue: Arc<Mutex<DiskQueue>>,
    pub receive: Arc<ReceiveStats>,
    pub forward: Arc<ForwardStats>,
    pub draining: Arc<AtomicBool>,
}

fn counter(r: &Registry, name: &str, help: &str, v: u64) -> Result<(), prometheus::Error> {
    let c = IntCounter::with_opts(Opts::new(name, help))?;
    c.inc_by(v);
    r.register(Box::new(c))
}

fn gauge(r: &Registry, name: &str, help: &str, v: i64) -> Result<(), prometheus::Error> {
    let g = IntGauge::with_opts(Opts::new(name, help))?;
    g.set(v);
    r.register(Box::new(g))
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The Prometheus text exposition of the agent's metrics.
pub fn render(s: &OpsState) -> Result<String, prometheus::Error> {
    let q = s.queue.lock().stats();
    let r = Registry::new();
    let p = "neurocloak_agent_";
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    counter(
        &r,
        &format!("{p}received_total"),
        "Records accepted into the durable queue (and recovered from it at start).",
        q.received,
    )?;
    counter(
        &r,
        &format!("{p}forwarded_total"),
        "Records the collector acknowledged.",
        q.forwarded,
    )?;
    gauge(
        &r,
        &format!("{p}queue_depth"),
        "Records in the durable queue.",
        to_i64(q.queued),
    )?;
    gauge(
        &r,
        &format!("{p}queue_bytes"),
        "Bytes of the records in the durable queue.",
        to_i64(q.queued_bytes),
    )?;
    gauge(
        &r,
        &format!("{p}disk_bytes"),
        "Bytes of the queue's segment files.",
        to_i64(q.disk_bytes),
    )?;
    gauge(
        &r,
        &format!("{p}queue_segments"),
        "Segment files of the queue.",
        to_i64(q.segments),
    )?;
    let dropped = IntCounterVec::new(
        Opts::new(
            format!("{p}dropped_total"),
            "Records dropped, by reason (disk_cap, corrupt, truncated, rejected).",
        ),
        &["reason"],
    )?;
    for reason in DropReason::ALL {
        dropped
            .with_label_values(&[reason.as_str()])
            .inc_by(q.dropped.get(&reason).copied().unwrap_or(0));
    }
    r.register(Box::new(dropped))?;
    counter(
        &r,
        &format!("{p}pushes_duplicate_total"),
        "SDK retries of pushes already accepted.",
        q.duplicates,
    )?;
    counter(
        &r,
        &format!("{p}pushes_invalid_total"),
        "Pushes refused as malformed (InvalidArgument).",
        load(&s.receive.invalid),
    )?;
    counter(
        &r,
        &format!("{p}pushes_failed_total"),
        "Pushes not acknowledged because the queue could not write.",
        load(&s.receive.failed),
    )?;
    counter(
        &r,
        &format!("{p}queue_write_errors_total"),
        "Failed queue writes, fsyncs or segment creations (the group's pushes get UNAVAILABLE and are retried by the SDK) and failed state-file saves.",
        q.write_errors,
    )?;
    counter(
        &r,
        &format!("{p}batches_sent_total"),
        "Batches the collector acknowledged.",
        load(&s.forward.batches_sent),
    )?;
    counter(
        &r,
        &format!("{p}items_sent_total"),
        "Items (after merging) in acknowledged batches.",
        load(&s.forward.items_sent),
    )?;
    counter(
        &r,
        &format!("{p}forward_retries_total"),
        "Failed batch sends that were retried.",
        load(&s.forward.retries),
    )?;
    counter(
        &r,
        &format!("{p}batches_rejected_total"),
        "Batches the collector refused for good.",
        load(&s.forward.batches_rejected),
    )?;
    counter(
        &r,
        &format!("{p}parts_merged_total"),
        "Window parts merged into a part of the same window.",
        load(&s.forward.parts_merged),
    )?;
    counter(
        &r,
        &format!("{p}merge_failures_total"),
        "Window groups forwarded unmerged because they did not merge.",
        load(&s.forward.merge_failures),
    )?;
    let lag_ms = q
        .oldest_arrival_ms
        .map_or(0, |t| (crate::now_ms() - t).max(0));
    let lag = prometheus::Gauge::with_opts(Opts::new(
        format!("{p}forward_lag_seconds"),
        "Age of the oldest record still in the queue.",
    ))?;
    lag.set(lag_ms as f64 / 1000.0);
    r.register(Box::new(lag))?;
    gauge(
        &r,
        &format!("{p}draining"),
        "1 while draining after SIGTERM.",
        i64::from(s.draining.load(Ordering::Relaxed)),
    )?;
    let mut out = Vec::new();
    TextEncoder::new().encode(&r.gather(), &mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

async fn metrics(State(s): State<OpsState>) -> (StatusCode, String) {
    match render(&s) {
        Ok(text) => (StatusCode::OK, text),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn healthz(State(s): State<OpsState>) -> (StatusCode, &'static str) {
    if s.draining.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        (StatusCode::OK, "ok\n")
    }
}

/// Binds the HTTP listener; serve it with [`serve`].
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, AgentError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| AgentError::Serve(format!("binding http {addr}: {e}")))
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    state: OpsState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), AgentError> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| AgentError::Serve(format!("http: {e}")))
}
