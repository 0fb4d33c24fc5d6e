//! The evaluation runner: one loop per collector.
//!
//! Each pass scans window parts and label batches that arrived since the last pass (with a
//! slack for clock skew between collectors and for writes that commit out of order), turns
//! them into candidate windows, and processes each candidate whose end plus the grace period
//! has passed:
//!
//! 1. merge the stored parts and join the delayed labels known so far;
//! 2. compute the window's revision (parts merged, labels joined); when the stored trust
//!    score already has it, the window is done;
//! 3. take the window's lease (another collector holding it means: try again next pass),
//!    check again, load the baseline (the version's reference profile, else the previous
//!    window) and the recent trust scores, evaluate, score;
//! 4. insert the evaluation under (window, revision) — a unique id, so each revision is
//!    stored once across collectors — then the trust score, the prediction index, and publish;
//! 5. run the alert rules (a re-evaluated window reconciles them with the stored history).
//!
//! A candidate stays in memory until a trust score of its current revision is stored, so a
//! window whose evaluator died is picked up by whichever collector sees it next. A collector
//! that starts looks back `lookback_ms` for windows still to do.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use neurocloak_evaluate::{Baseline, EvalContext, evaluate_window, trust_score};
use neurocloak_proto::v1::{ReferenceProfile, WindowProfile};
use prost::Message as _;
use tokio::sync::watch;

use super::alerts::release;
use super::labels;
use super::records::{self, EvalInputs, EvaluationRecord, TrustPoint, WINDOW_EVALUATION};
use super::{Pipeline, window_id};
use crate::schedule::Leases;
use crate::store::eval::PartStub;
use crate::store::{ModelKey, now_ms};
use crate::{Error, Result};

/// Arrivals older than the newest one seen by this much are scanned again: parts are stamped
/// by whichever collector received them and commit in any order.
const SCAN_SLACK_MS: i64 = 5_000;
/// Most part stubs read per scan query.
const SCAN_LIMIT: u32 = 5_000;
/// Most label batches (with their payloads) read per scan query.
const LABEL_SCAN_LIMIT: u32 = 500;

/// One window that may need (re-)evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Candidate {
    key_id: String,
    start_ms: i64,
}

#[derive(Debug, Clone)]
struct Pending {
    key: ModelKey,
    start_ms: i64,
    end_ms: i64,
    /// Don't retry before this (after a failure or a busy lease).
    not_before_ms: i64,
    failures: u32,
}

/// What became of one candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Evaluated and stored by this collector.
    Evaluated,
    /// Already stored at this revision (by anyone).
    UpToDate,
    /// Another collector holds the lease.
    Busy,
    /// No parts stored (deleted by retention, or never there).
    Gone,
}

/// The runner's memory between passes.
pub struct Runner {
    p: Pipeline,
    leases: Leases,
    pending: BTreeMap<Candidate, Pending>,
    /// Part / label batch ids seen within the slack, so a rescan does not re-queue them.
    seen: HashMap<String, i64>,
    parts_cursor_ms: i64,
    labels_cursor_ms: i64,
    last_tick: Instant,
    /// Reference importances by (reference id, explain settings): the surrogate fitted on a
    /// reference's sampled rows is the same for every window of its model version, so it is
    /// fitted once rather than per window (it is deterministic, so results do not change).
    reference_importances: std::sync::Mutex<HashMap<(String, String), ReferenceImportances>>,
}

type ReferenceImportances = Option<BTreeMap<String, f64>>;

/// Cached reference importances kept at most; past it the cache starts over.
const MAX_CACHED_REFERENCES: usize = 256;

/// Latency of one evaluation, for the benchmark and logs.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub evaluate: Duration,
    pub total: Duration,
}

impl Runner {
    pub fn new(p: Pipeline) -> Runner {
        let start = now_ms() - p.config.lookback_ms;
        Runner {
            leases: Leases::new(p.store.clone(), p.holder.clone(), p.lease_ms),
            p,
            pending: BTreeMap::new(),
            seen: HashMap::new(),
            reference_importances: std::sync::Mutex::new(HashMap::new()),
            parts_cursor_ms: start,
            labels_cursor_ms: start,
            last_tick: Instant::now(),
        }
    }

    /// Loops until `stop` turns true; store errors are logged and retried next pass.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let poll = Duration::from_millis(self.p.config.poll_ms.max(10));
        let tick = Duration::from_millis(self.p.config.alert_tick_ms.max(100));
        while !*stop.borrow() {
            if let Err(e) = self.pass().await {
                tracing::warn!(error = %e, "evaluation pass failed; retrying");
            }
            if self.last_tick.elapsed() >= tick {
                self.last_tick = Instant::now();
                if let Err(e) = super::alerts::tick(&self.p).await {
                    tracing::warn!(error = %e, "alert timers failed; retrying");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Scans arrivals, then processes due candidates; returns how many this collector
    /// evaluated.
    pub async fn pass(&mut self) -> Result<usize> {
        self.scan_parts().await?;
        self.scan_labels().await?;
        let now = now_ms();
        let grace = self.p.config.grace_ms;
        let due: Vec<Candidate> = self
            .pending
            .iter()
            .filter(|(_, w)| w.end_ms + grace <= now && w.not_before_ms <= now)
            .map(|(c, _)| c.clone())
            .collect();
        let mut evaluated = 0;
        for c in due {
            let Some(w) = self.pending.get(&c).cloned() else {
                continue;
            };
            match self.process(&w.key, w.start_ms).await {
                Ok((Outcome::Evaluated, _)) => {
                    evaluated += 1;
                    self.pending.remove(&c);
                }
                Ok((Outcome::UpToDate | Outcome::Gone, _)) => {
                    self.pending.remove(&c);
                }
                Ok((Outcome::Busy, _)) => self.backoff(&c, 0),
                Err(e) => {
                    tracing::warn!(window = %c.key_id, start = c.start_ms, error = %e, "evaluation failed");
                    self.p.metrics.reject("evaluation_failed");
                    self.backoff(&c, 1);
                }
            }
        }
        Ok(evaluated)
    }

    /// Busy: retry soon. Failure: back off exponentially, give up after 8 attempts (counted).
    fn backoff(&mut self, c: &Candidate, failed: u32) {
        let Some(w) = self.pending.get_mut(c) else {
            return;
        };
        w.failures += failed;
        if w.failures >= 8 {
            tracing::error!(window = %c.key_id, start = c.start_ms, "evaluation abandoned after 8 failures");
            self.p.metrics.reject("evaluation_abandoned");
            self.pending.remove(c);
            return;
        }
        let wait = if failed == 0 {
            self.p.config.poll_ms as i64
        } else {
            250_i64 << w.failures.min(7)
        };
        w.not_before_ms = now_ms() + wait;
    }

    fn enqueue(&mut self, key: &ModelKey, start_ms: i64, length_ms: i64) {
        let c = Candidate {
            key_id: window_id(key, 0),
            start_ms,
        };
        self.pending.entry(c).or_insert_with(|| Pending {
            key: key.clone(),
            start_ms,
            end_ms: start_ms.saturating_add(length_ms),
            not_before_ms: i64::MIN,
            failures: 0,
        });
    }

    fn first_sight(&mut self, id: &str, received_ms: i64) -> bool {
        self.seen.insert(id.to_owned(), received_ms).is_none()
    }

    fn forget_old(&mut self) {
        let horizon = self.parts_cursor_ms.min(self.labels_cursor_ms) - 2 * SCAN_SLACK_MS;
        self.seen.retain(|_, ms| *ms >= horizon);
    }

    async fn scan_parts(&mut self) -> Result<()> {
        // The first page re-reads the slack; later pages of the same pass start at the newest
        // arrival seen, so a burst larger than a page within the slack is still read through.
        let mut since = self.parts_cursor_ms - SCAN_SLACK_MS;
        loop {
            let parts: Vec<PartStub> = self.p.docs.parts_since(since, SCAN_LIMIT).await?;
            let full = parts.len() as u32 == SCAN_LIMIT;
            let mut newest = self.parts_cursor_ms;
            for part in &parts {
                newest = newest.max(part.received_ms);
                if self.first_sight(&format!("w:{}", part.id), part.received_ms) {
                    self.enqueue(&part.key, part.window_start_ms, part.window_length_ms);
                }
            }
            let advanced = newest > since;
            self.parts_cursor_ms = newest;
            if !full {
                break;
            }
            if !advanced {
                // More than a page of parts stamped with one millisecond: the rest is read
                // once later arrivals move the cursor. Counted so it is visible.
                self.p.metrics.reject("pipeline_scan_page_full");
                break;
            }
            since = newest;
        }
        self.forget_old();
        Ok(())
    }

    async fn scan_labels(&mut self) -> Result<()> {
        let mut since = self.labels_cursor_ms - SCAN_SLACK_MS;
        loop {
            let batches = self
                .p
                .docs
                .label_parts_since(since, LABEL_SCAN_LIMIT)
                .await?;
            let full = batches.len() as u32 == LABEL_SCAN_LIMIT;
            let mut newest = self.labels_cursor_ms;
            for part in &batches {
                newest = newest.max(part.received_ms);
                if !self.first_sight(&format!("l:{}", part.id), part.received_ms) {
                    continue;
                }
                let absorbed = match labels::absorb(&self.p.docs, part).await {
                    Ok(a) => a,
                    Err(Error::Corrupt(m)) => {
                        tracing::warn!(batch = %part.id, error = %m, "label batch unreadable; skipped");
                        self.p.metrics.reject("label_batch_corrupt");
                        continue;
                    }
                    Err(e) => {
                        // Forget it so the next pass retries the batch.
                        self.seen.remove(&format!("l:{}", part.id));
                        return Err(e);
                    }
                };
                for _ in 0..absorbed.rejected {
                    self.p.metrics.reject("label_invalid");
                }
                let length = self.window_length(&part.key).await?;
                for start in absorbed.windows {
                    self.enqueue(&part.key, start, length);
                }
            }
            let advanced = newest > since;
            self.labels_cursor_ms = newest;
            if !full {
                break;
            }
            if !advanced {
                self.p.metrics.reject("pipeline_scan_page_full");
                break;
            }
            since = newest;
        }
        Ok(())
    }

    /// A version's window length, from its latest trust score (labels only reach windows
    /// that were evaluated, so one exists).
    async fn window_length(&self, key: &ModelKey) -> Result<i64> {
        Ok(records::recent_trust(&self.p.docs, key, i64::MAX, 1)
            .await?
            .first()
            .map_or(0, |t| t.window_length_ms))
    }

    /// Evaluates one window if its stored result is missing or stale.
    pub async fn process(
        &self,
        key: &ModelKey,
        start_ms: i64,
    ) -> Result<(Outcome, Option<Timing>)> {
        let began = Instant::now();
        let Some((_, inputs)) = load_window(&self.p, key, start_ms).await? else {
            return Ok((Outcome::Gone, None));
        };
        if self.up_to_date(key, start_ms, &inputs).await? {
            return Ok((Outcome::UpToDate, None));
        }
        let lease_key = format!("eval:{}", window_id(key, start_ms));
        let Some(held) = self.leases.acquire(&lease_key).await? else {
            return Ok((Outcome::Busy, None));
        };
        let result = self.evaluate_held(key, start_ms, began).await;
        release(&self.p, &held).await;
        result
    }

    async fn up_to_date(&self, key: &ModelKey, start_ms: i64, inputs: &EvalInputs) -> Result<bool> {
        Ok(records::get_trust(&self.p.docs, key, start_ms)
            .await?
            .is_some_and(|t| t.revision == inputs.revision()))
    }

    /// The reference's importances under `config`'s explain settings, fitted on first use.
    fn reference_importances(
        &self,
        id: &str,
        reference: &ReferenceProfile,
        config: &neurocloak_evaluate::EvalConfig,
    ) -> ReferenceImportances {
        let profile = reference.profile.as_ref()?;
        let settings = serde_json::to_string(&config.explain).ok()?;
        let key = (id.to_owned(), settings);
        let mut cache = self
            .reference_importances
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(hit) = cache.get(&key) {
            return hit.clone();
        }
        let fitted = neurocloak_evaluate::explain::importances(profile, &config.explain)
            .ok()
            .map(|(_, importance)| importance);
        if cache.len() >= MAX_CACHED_REFERENCES {
            cache.clear();
        }
        cache.insert(key, fitted.clone());
        fitted
    }

    /// Under the lease: reload (parts may have arrived meanwhile), evaluate, store, publish.
    async fn evaluate_held(
        &self,
        key: &ModelKey,
        start_ms: i64,
        began: Instant,
    ) -> Result<(Outcome, Option<Timing>)> {
        let p = &self.p;
        let Some((mut merged, parts)) = merged_window(p, key, start_ms).await? else {
            return Ok((Outcome::Gone, None));
        };
        // Index before joining: a label stored after the join then finds this window and
        // triggers a re-evaluation; one stored before is joined now.
        let first = records::get_trust(&p.docs, key, start_ms).await?.is_none();
        let indexed = labels::index_predictions(&p.docs, key, start_ms, &merged).await?;
        if first && indexed.unjoinable > 0 {
            // Counted once, at the window's first evaluation.
            p.metrics
                .rejects
                .with_label_values(&["prediction_id_unjoinable"])
                .inc_by(indexed.unjoinable);
        }
        let mut inputs = EvalInputs {
            parts,
            joined_labels: labels::join(&p.docs, key, &mut merged).await?,
            baseline: String::new(),
            history: 0,
        };
        if self.up_to_date(key, start_ms, &inputs).await? {
            return Ok((Outcome::UpToDate, None));
        }
        let history =
            records::recent_trust(&p.docs, key, start_ms, p.config.history_windows).await?;
        inputs.history = history.len();
        let scores: Vec<f64> = history.iter().rev().filter_map(|t| t.trust.score).collect();
        let settings = records::project_config(p, &key.project_id).await?;
        let reference = load_reference(p, key).await?;
        let ctx = EvalContext {
            reference_importances: reference
                .as_ref()
                .and_then(|(id, r)| self.reference_importances(id, r, &settings.evaluation)),
            config: settings.evaluation,
            recent_volumes: history.iter().rev().map(|t| t.rows).collect(),
            // The SDK's probes called the real model; ingest checked each one.
            perturbation_stability: neurocloak_core::profile::window_stability(&merged.robustness),
        };
        let previous = match &reference {
            Some(_) => None,
            None => merged_window(p, key, start_ms - merged.window_length_ms)
                .await?
                .map(|(w, _)| w),
        };
        let baseline = match (&reference, &previous) {
            (Some((id, r)), _) => {
                inputs.baseline = format!("reference:{id}");
                Baseline::Reference(r)
            }
            (None, Some(w)) => {
                inputs.baseline = format!("window:{}", w.window_start_ms);
                Baseline::Window(w)
            }
            (None, None) => {
                inputs.baseline = "none".into();
                Baseline::None
            }
        };
        let t0 = Instant::now();
        let evaluation = evaluate_window(&merged, baseline, &ctx)
            .map_err(|e| Error::Invalid(format!("evaluation: {e}")))?;
        let trust = trust_score(&evaluation, &settings.trust, &scores)
            .map_err(|e| Error::Invalid(format!("trust score: {e}")))?;
        let evaluate = t0.elapsed();
        let now = now_ms();
        let metrics = super::alerts::metrics_document(&evaluation, &trust);
        let record = EvaluationRecord {
            project: key.project_id.clone(),
            model: key.model.clone(),
            version: key.version.clone(),
            environment: key.environment.clone(),
            window_start_ms: start_ms,
            window_length_ms: merged.window_length_ms,
            kind: WINDOW_EVALUATION.into(),
            revision: inputs.revision(),
            inputs: inputs.clone(),
            evaluated_ms: now,
            holder: p.holder.clone(),
            evaluation,
        };
        if !records::insert_evaluation(&p.docs, &record).await? {
            return Ok((Outcome::UpToDate, None));
        }
        let point = TrustPoint {
            project: key.project_id.clone(),
            model: key.model.clone(),
            version: key.version.clone(),
            environment: key.environment.clone(),
            window_start_ms: start_ms,
            window_length_ms: merged.window_length_ms,
            revision: inputs.revision(),
            evaluated_ms: now,
            rows: merged.rows,
            trust,
            metrics,
        };
        records::put_trust(&p.docs, &point).await?;
        p.metrics.jobs_completed.inc();
        tracing::info!(
            project = %key.project_id, model = %key.model, version = %key.version,
            window = start_ms, revision = %point.revision,
            trust = ?point.trust.score, "window evaluated"
        );
        p.publish(super::LiveEvent::TrustScore(point.clone()));
        if let Err(e) = super::alerts::observe(p, &point).await {
            // The score is stored; the next window of this version moves the rules on, and
            // the next re-evaluation of a window up to here replays this one's document.
            tracing::warn!(error = %e, "alert rules not run for this window");
            p.metrics.reject("alerts_failed");
        }
        Ok((
            Outcome::Evaluated,
            Some(Timing {
                evaluate,
                total: began.elapsed(),
            }),
        ))
    }
}

/// The merged window with its delayed labels joined, and what it was built from. None when no
/// part is stored.
pub async fn load_window(
    p: &Pipeline,
    key: &ModelKey,
    start_ms: i64,
) -> Result<Option<(WindowProfile, EvalInputs)>> {
    let Some((mut merged, parts)) = merged_window(p, key, start_ms).await? else {
        return Ok(None);
    };
    let joined = labels::join(&p.docs, key, &mut merged).await?;
    let inputs = EvalInputs {
        parts,
        joined_labels: joined,
        baseline: String::new(),
        history: 0,
    };
    Ok(Some((merged, inputs)))
}

/// Every stored part of a window merged, with the part ids. None when no part is stored.
async fn merged_window(
    p: &Pipeline,
    key: &ModelKey,
    start_ms: i64,
) -> Result<Option<(WindowProfile, Vec<String>)>> {
    let parts = p.store.window_parts(key, start_ms).await?;
    if parts.is_empty() {
        return Ok(None);
    }
    let mut profiles = Vec::with_capacity(parts.len());
    for part in &parts {
        profiles.push(
            WindowProfile::decode(part.profile.as_slice())
                .map_err(|e| Error::Corrupt(format!("window part {}: {e}", part.id)))?,
        );
    }
    let merged = neurocloak_core::merge_parts(&profiles)
        .map_err(|e| Error::Corrupt(format!("window parts do not merge: {e}")))?;
    Ok(Some((merged, parts.into_iter().map(|p| p.id).collect())))
}

async fn load_reference(
    p: &Pipeline,
    key: &ModelKey,
) -> Result<Option<(String, ReferenceProfile)>> {
    let Some(r) = p.store.latest_reference(key).await? else {
        return Ok(None);
    };
    let profile = ReferenceProfile::decode(r.payload.as_slice())
        .map_err(|e| Error::Corrupt(format!("reference {}: {e}", r.id)))?;
    Ok(Some((r.id, profile)))
}

/// Starts the runner on its own task.
pub fn spawn(p: Pipeline, stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tracing::info!(holder = %p.holder, grace_ms = p.config.grace_ms, "evaluation pipeline started");
    tokio::spawn(Runner::new(p).run(stop))
}

/// Shared for callers that only need one evaluation (benchmarks, tools).
pub async fn evaluate_once(
    p: &Pipeline,
    key: &ModelKey,
    start_ms: i64,
) -> Result<(Outcome, Option<Timing>)> {
    Runner::new(p.clone()).process(key, start_ms).await
}
