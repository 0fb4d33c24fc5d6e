//! The retention sweeper: deletes data older than each target's configured age. It runs in the
//! collector rather than relying on TTL indexes, which FerretDB and the SQLite store lack.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::Result;
use crate::config::Retention;
use crate::metrics::Metrics;
use crate::store::{RetentionTarget, SharedStore};

const DAY_MS: i64 = 86_400_000;

/// Days to keep `target` (0 = forever).
pub fn days_for(r: &Retention, target: RetentionTarget) -> u32 {
    match target {
        RetentionTarget::Windows => r.windows_days,
        RetentionTarget::Labels => r.labels_days,
        RetentionTarget::Batches => r.batches_days,
        RetentionTarget::Leases => r.leases_days,
        RetentionTarget::Jobs => r.jobs_days,
    }
}

/// One sweep at time `now_ms`; returns how many records each target lost.
pub async fn sweep(
    store: &SharedStore,
    retention: &Retention,
    metrics: &Metrics,
    now_ms: i64,
) -> Result<Vec<(RetentionTarget, u64)>> {
    let mut report = Vec::new();
    for target in RetentionTarget::ALL {
        let days = days_for(retention, target);
        if days == 0 {
            continue;
        }
        let cutoff = now_ms.saturating_sub(i64::from(days) * DAY_MS);
        let deleted = store.delete_older_than(target, cutoff).await?;
        metrics
            .retention_deleted
            .with_label_values(&[target.name()])
            .inc_by(deleted);
        report.push((target, deleted));
    }
    Ok(report)
}

/// Sweeps every `sweep_interval_s` until `stop` turns true. Several collectors sweeping the same
/// database is harmless: deleting what is already deleted is a no-op.
pub async fn run(
    store: SharedStore,
    retention: Retention,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let every = Duration::from_secs(retention.sweep_interval_s.max(1));
    while !*stop.borrow() {
        match sweep(&store, &retention, &metrics, crate::store::now_ms()).await {
            Ok(report) => {
                let total: u64 = report.iter().map(|(_, n)| n).sum();
                if total > 0 {
                    tracing::info!(?report, "retention sweep");
                }
            }
            Err(e) => tracing::warn!(error = %e, "retention sweep failed; next interval retries"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => {}
        }
    }
}
