//! The retention sweeper: the one place that deletes data by age, in the ingest store (window
//! parts, label batches, batch markers, leases, jobs) and in the pipeline's store
//! (evaluations, trust scores, prediction index, joined labels, alert history, deliveries).
//! It runs in the collector rather than relying on TTL indexes, which FerretDB and the SQLite
//! store lack. Configuration and current state (rules, channels, rule states, current alerts,
//! pipeline markers) are never swept.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::Result;
use crate::config::Retention;
use crate::metrics::Metrics;
use crate::store::eval::{Coll, SharedEvalStore};
use crate::store::{RetentionTarget, SharedStore};

const DAY_MS: i64 = 86_400_000;

/// A table or collection the sweeper deletes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Ingest(RetentionTarget),
    Pipeline(Coll),
}

impl Target {
    /// The `target` label of `neurocloak_collector_retention_deleted_total`: the table or
    /// collection name, so ingest `labels` and the pipeline's `joined_labels` stay apart.
    pub fn name(self) -> &'static str {
        match self {
            Target::Ingest(t) => t.name(),
            Target::Pipeline(c) => c.name(),
        }
    }
}

/// Every target that has a retention setting, ingest first.
pub fn targets() -> impl Iterator<Item = Target> {
    let ingest = RetentionTarget::ALL.into_iter().map(Target::Ingest);
    let pipeline = Coll::ALL.into_iter().map(Target::Pipeline);
    let swept = |t: &Target| days_for(&Retention::default(), *t).is_some();
    ingest.chain(pipeline).filter(swept)
}

/// Days to keep `target` (0 = forever); `None` for collections that are never swept.
pub fn days_for(r: &Retention, target: Target) -> Option<u32> {
    Some(match target {
        Target::Ingest(RetentionTarget::Windows) => r.windows_days,
        Target::Ingest(RetentionTarget::Labels) => r.labels_days,
        Target::Ingest(RetentionTarget::Batches) => r.batches_days,
        Target::Ingest(RetentionTarget::Leases) => r.leases_days,
        Target::Ingest(RetentionTarget::Jobs) => r.jobs_days,
        Target::Pipeline(Coll::Evaluations | Coll::TrustScores) => r.evaluations_days,
        Target::Pipeline(Coll::Predictions | Coll::Labels) => r.predictions_days,
        Target::Pipeline(Coll::AlertHistory | Coll::Deliveries) => r.alerts_days,
        // What is configured or true now, whatever its age: deleting an old rule or a
        // long-firing alert would change behaviour, not free history.
        Target::Pipeline(
            Coll::Rules | Coll::Channels | Coll::RuleStates | Coll::Alerts | Coll::Meta,
        ) => return None,
    })
}

/// Deletes by age from both stores and counts what went.
#[derive(Clone)]
pub struct Sweeper {
    store: SharedStore,
    docs: SharedEvalStore,
    retention: Retention,
    metrics: Arc<Metrics>,
}

impl Sweeper {
    pub fn new(
        store: SharedStore,
        docs: SharedEvalStore,
        retention: Retention,
        metrics: Arc<Metrics>,
    ) -> Sweeper {
        Sweeper {
            store,
            docs,
            retention,
            metrics,
        }
    }

    /// One sweep at time `now_ms`; returns how many records each swept target lost (targets
    /// kept forever are left out). A failing target does not stop the others: the first
    /// error is returned once all were tried, and the next sweep retries it.
    pub async fn sweep(&self, now_ms: i64) -> Result<Vec<(Target, u64)>> {
        let mut report = Vec::new();
        let mut failure = None;
        for target in targets() {
            let days = days_for(&self.retention, target).unwrap_or(0);
            if days == 0 {
                continue;
            }
            let cutoff = now_ms.saturating_sub(i64::from(days) * DAY_MS);
            match self.delete_older_than(target, cutoff).await {
                Ok(deleted) => {
                    self.metrics
                        .retention_deleted
                        .with_label_values(&[target.name()])
                        .inc_by(deleted);
                    report.push((target, deleted));
                }
                Err(e) => {
                    tracing::warn!(target = target.name(), error = %e, "retention sweep failed");
                    failure.get_or_insert(e);
                }
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    async fn delete_older_than(&self, target: Target, cutoff_ms: i64) -> Result<u64> {
        match target {
            Target::Ingest(t) => self.store.delete_older_than(t, cutoff_ms).await,
            Target::Pipeline(c) => self.docs.delete_older_than(c, cutoff_ms).await,
        }
    }

    /// Sweeps every `sweep_interval_s` until `stop` turns true. Several collectors sweeping
    /// the same database is harmless: deleting what is already deleted is a no-op.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let every = Duration::from_secs(self.retention.sweep_interval_s.max(1));
        while !*stop.borrow() {
            match self.sweep(crate::store::now_ms()).await {
                Ok(report) => {
                    let total: u64 = report.iter().map(|(_, n)| n).sum();
                    if total > 0 {
                        tracing::info!(?report, "retention sweep");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "retention sweep incomplete; next interval retries")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => {}
            }
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
        let docs = crate::store::eval::open(&uri, "unused").await.unwrap();
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
        let metrics = Arc::new(Metrics::new().unwrap());
        let retention = Retention {
            windows_days: 30,
            labels_days: 0,
            ..Retention::default()
        };
        let sweeper = Sweeper::new(store.clone(), docs, retention, metrics.clone());
        let report = sweeper.sweep(now).await.unwrap();
        assert!(
            report.contains(&(Target::Ingest(RetentionTarget::Windows), 1)),
            "{report:?}"
        );
        assert!(
            !report
                .iter()
                .any(|(t, _)| *t == Target::Ingest(RetentionTarget::Labels)),
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
