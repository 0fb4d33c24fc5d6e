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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::store::{Batch, BatchItem, ModelKey, PageRequest, WindowPart, WindowQuery};

    #[tokio::test]
    async fn sweep_deletes_only_what_is_older_than_each_retention() {
        let dir = tempfile::tempdir().unwrap();
        let uri = format!("sqlite://{}", dir.path().join("r.db").display());
        let store = crate::store::open(&uri, "unused").await.unwrap();
        let key = ModelKey {
            project_id: "p".into(),
            model: "m".into(),
            version: "v".into(),
            environment: "e".into(),
        };
        let now = 100 * DAY_MS;
        let items = [99, 80, 5]
            .into_iter()
            .enumerate()
            .map(|(i, day)| {
                BatchItem::Window(WindowPart {
                    id: format!("b:{i}"),
                    key: key.clone(),
                    window_start_ms: day * DAY_MS,
                    window_length_ms: 60_000,
                    rows: 1,
                    agent_id: "a".into(),
                    batch_id: "b".into(),
                    received_ms: now,
                    profile: vec![1],
                })
            })
            .collect();
        let batch = Batch {
            project_id: "p".into(),
            batch_id: "b".into(),
            agent_id: "a".into(),
            received_ms: now,
            items,
        };
        store.store_batch(&batch).await.unwrap();
        let metrics = Metrics::new().unwrap();
        let retention = Retention {
            windows_days: 30,
            labels_days: 0,
            ..Retention::default()
        };
        let report = sweep(&store, &retention, &metrics, now).await.unwrap();
        assert!(
            report.contains(&(RetentionTarget::Windows, 1)),
            "{report:?}"
        );
        assert!(
            !report.iter().any(|(t, _)| *t == RetentionTarget::Labels),
            "0 days keeps forever"
        );
        let q = WindowQuery {
            project_id: "p".into(),
            model: "m".into(),
            from_ms: 0,
            to_ms: i64::MAX,
            ..Default::default()
        };
        let left = store
            .list_windows(&q, &PageRequest::first(10))
            .await
            .unwrap();
        let days: Vec<i64> = left
            .items
            .iter()
            .map(|w| w.window_start_ms / DAY_MS)
            .collect();
        assert_eq!(days, vec![99, 80]);
        // The marker is younger than its retention, so a replay is still a duplicate.
        assert!(store.store_batch(&batch).await.unwrap().duplicate);
        assert!(
            metrics
                .render()
                .contains("retention_deleted_total{target=\"windows\"} 1")
        );
    }
}
