//! Prometheus metrics of the collector, served on `/metrics`.

use prometheus::{
    Encoder as _, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
    TextEncoder,
};

use crate::{Error, Result};

/// Every metric the collector exports, registered in its own registry.
pub struct Metrics {
    registry: Registry,
    /// Batches by outcome: stored, duplicate, rejected, failed.
    pub batches: IntCounterVec,
    /// Items written (windows, labels, references).
    pub items_stored: IntCounter,
    /// Rejected requests by reason (validation reason, auth, oversized).
    pub rejects: IntCounterVec,
    /// Store call latency by operation.
    pub store_seconds: HistogramVec,
    /// Test/evaluation jobs completed by this process.
    pub jobs_completed: IntCounter,
    /// Records deleted by the retention sweeper, by target.
    pub retention_deleted: IntCounterVec,
    /// Requests refused by a rate limit, by surface (`crate::ratelimit::Surface`).
    pub rate_limited: IntCounterVec,
}

fn prom(e: prometheus::Error) -> Error {
    Error::Config(format!("metrics: {e}"))
}

impl Metrics {
    pub fn new() -> Result<Metrics> {
        let registry =
            Registry::new_custom(Some("neurocloak_collector".into()), None).map_err(prom)?;
        let batches = IntCounterVec::new(
            Opts::new("ingest_batches_total", "Ingest batches by outcome"),
            &["outcome"],
        )
        .map_err(prom)?;
        let items_stored =
            IntCounter::new("ingest_items_stored_total", "Items stored by ingest").map_err(prom)?;
        let rejects = IntCounterVec::new(
            Opts::new("ingest_rejects_total", "Rejected ingest requests by reason"),
            &["reason"],
        )
        .map_err(prom)?;
        let store_seconds = HistogramVec::new(
            HistogramOpts::new("store_latency_seconds", "Store call latency")
                .buckets(prometheus::exponential_buckets(0.0005, 2.0, 16).map_err(prom)?),
            &["op"],
        )
        .map_err(prom)?;
        let jobs_completed =
            IntCounter::new("jobs_completed_total", "Jobs completed by this collector")
                .map_err(prom)?;
        let retention_deleted = IntCounterVec::new(
            Opts::new("retention_deleted_total", "Records deleted by retention"),
            &["target"],
        )
        .map_err(prom)?;
        let rate_limited = IntCounterVec::new(
            Opts::new("rate_limited_total", "Requests refused by a rate limit"),
            &["surface"],
        )
        .map_err(prom)?;
        registry.register(Box::new(batches.clone())).map_err(prom)?;
        registry
            .register(Box::new(rate_limited.clone()))
            .map_err(prom)?;
        registry
            .register(Box::new(items_stored.clone()))
            .map_err(prom)?;
        registry.register(Box::new(rejects.clone())).map_err(prom)?;
        registry
            .register(Box::new(store_seconds.clone()))
            .map_err(prom)?;
        registry
            .register(Box::new(jobs_completed.clone()))
            .map_err(prom)?;
        registry
            .register(Box::new(retention_deleted.clone()))
            .map_err(prom)?;
        Ok(Metrics {
            registry,
            batches,
            items_stored,
            rejects,
            store_seconds,
            jobs_completed,
            retention_deleted,
            rate_limited,
        })
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    pub fn reject(&self, reason: &str) {
        self.rejects.with_label_values(&[reason]).inc();
    }
}
