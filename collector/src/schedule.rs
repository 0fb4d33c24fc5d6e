//! Partitions per-window jobs between collectors that share one database.
//!
//! A lease is a sequence of epochs, each one a document inserted under a unique (key, epoch).
//! Holding = having inserted the newest epoch, which has not expired. Renewing and taking over
//! an expired lease are the same operation, "insert the next epoch", and the unique key lets
//! exactly one contender win it. No conditional update is involved: FerretDB runs those as
//! read-then-write, which made `findOneAndUpdate` leases non-exclusive.
//!
//! A job is finished by inserting its completion under the job's key, which is also unique: a
//! holder that lost its lease while working (a long GC pause, a partition) cannot complete the
//! job a second time. Collectors' clocks must agree to well within `lease_ms`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::Result;
use crate::metrics::Metrics;
use crate::store::{CompletionRecord, JobRecord, LeaseRecord, SharedStore, now_ms};

/// Job kind of the test runner: works `work_ms` milliseconds (renewing its lease), then completes.
pub const TEST_JOB: &str = "test";

/// Lease operations for one holder.
#[derive(Clone)]
pub struct Leases {
    store: SharedStore,
    holder: String,
    lease_ms: i64,
}

impl Leases {
    pub fn new(store: SharedStore, holder: String, lease_ms: i64) -> Leases {
        Leases {
            store,
            holder,
            lease_ms,
        }
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Takes the lease when it is free, expired, or already ours. None when someone else
    /// holds it or won the race for the next epoch.
    pub async fn acquire(&self, key: &str) -> Result<Option<LeaseRecord>> {
        let now = now_ms();
        let next = match self.store.current_lease(key).await? {
            None => 1,
            Some(l) if l.expires_ms > now && l.holder != self.holder => return Ok(None),
            Some(l) => l.epoch + 1,
        };
        self.insert(key, next, now).await
    }

    /// Extends a held lease by inserting its next epoch. None means the lease was lost: the
    /// caller must stop working on the job.
    pub async fn renew(&self, held: &LeaseRecord) -> Result<Option<LeaseRecord>> {
        self.insert(&held.key, held.epoch + 1, now_ms()).await
    }

    async fn insert(&self, key: &str, epoch: i64, now: i64) -> Result<Option<LeaseRecord>> {
        let lease = LeaseRecord {
            key: key.to_owned(),
            epoch,
            holder: self.holder.clone(),
            acquired_ms: now,
            expires_ms: now + self.lease_ms,
        };
        Ok(self.store.insert_lease(&lease).await?.then_some(lease))
    }
}

/// What became of one attempt at a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    Completed,
    /// Another collector holds the lease.
    Busy,
    /// The lease was lost midway; whoever took it over finishes the job.
    LostLease,
    /// Someone else had completed it already.
    AlreadyDone,
    /// A kind this collector does not run (yet).
    UnknownKind,
}

/// Runs pending jobs under leases until told to stop.
pub struct JobRunner {
    store: SharedStore,
    leases: Leases,
    metrics: Arc<Metrics>,
    poll: Duration,
}

impl JobRunner {
    pub fn new(
        store: SharedStore,
        leases: Leases,
        metrics: Arc<Metrics>,
        poll: Duration,
    ) -> JobRunner {
        JobRunner {
            store,
            leases,
            metrics,
            poll,
        }
    }

    /// Loops until `stop` turns true; store errors are logged and retried after a poll interval.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            let worked = match self.run_pending().await {
                Ok(n) => n > 0,
                Err(e) => {
                    tracing::warn!(error = %e, "job scheduling failed; retrying");
                    false
                }
            };
            if !worked {
                tokio::select! {
                    _ = tokio::time::sleep(self.poll) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }

    /// One pass over pending jobs; returns how many this collector completed.
    pub async fn run_pending(&self) -> Result<usize> {
        let mut completed = 0;
        for job in self.store.pending_jobs(64).await? {
            if self.attempt(&job).await? == Attempt::Completed {
                completed += 1;
            }
        }
        Ok(completed)
    }

    pub async fn attempt(&self, job: &JobRecord) -> Result<Attempt> {
        if job.kind != TEST_JOB {
            tracing::debug!(job = %job.key, kind = %job.kind, "no runner for job kind");
            return Ok(Attempt::UnknownKind);
        }
        let Some(mut lease) = self.leases.acquire(&job.key).await? else {
            return Ok(Attempt::Busy);
        };
        // Work in slices of a third of the lease, renewing between them, so a live holder
        // never lets its lease expire.
        let slice = (self.leases.lease_ms / 3).max(1);
        let mut left = job.work_ms.max(0);
        while left > 0 {
            let step = left.min(slice);
            tokio::time::sleep(Duration::from_millis(u64::try_from(step).unwrap_or(0))).await;
            left -= step;
            match self.leases.renew(&lease).await? {
                Some(next) => lease = next,
                None => return Ok(Attempt::LostLease),
            }
        }
        let done = CompletionRecord {
            key: job.key.clone(),
            holder: self.leases.holder.clone(),
            epoch: lease.epoch,
            completed_ms: now_ms(),
        };
        if !self.store.insert_completion(&done).await? {
            return Ok(Attempt::AlreadyDone);
        }
        self.metrics.jobs_completed.inc();
        tracing::info!(job = %job.key, epoch = lease.epoch, "job completed");
        Ok(Attempt::Completed)
    }
}

/// A lease holder name unique to this process.
pub fn default_holder() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "collector".into());
    let tag = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &tag[..8])
}
