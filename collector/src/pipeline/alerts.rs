//! Alerts wired into the pipeline: the metrics document built from each evaluation and trust
//! score, the alert engine run per rule and model version, persisted rule state, current
//! alerts, history and notification deliveries, the escalation/renotify ticker, and the rules
//! and channels themselves (channel secrets sealed with the master key).
//!
//! Rule state is read-modified-written under a lease per (rule, model version), because two
//! collectors may evaluate neighbouring windows of one model at the same time.
//!
//! A window after the last one a rule state observed moves it forward (`Engine::observe`). A
//! window at or before it — re-evaluated at a new revision once late labels joined, or first
//! evaluated after a later window — is reconciled instead (`Engine::reconcile`): under the same
//! lease, the version's stored metrics documents are read newest first from the state's last
//! window back until they settle every subject the revision may have changed (a full "for N
//! windows" run or "resolve after K" run, or the state's first window; at most
//! [`MAX_RECONCILE_WINDOWS`]), replayed through a fresh state like a back-test, and only the
//! difference is applied to the live alert: fire if it should now be firing and is not,
//! resolve if it is firing and should not be. Late labels therefore fire and resolve
//! performance and trust-score rules. The same revision is stored once
//! (`records::insert_evaluation`), so it reaches the rules once; and reconciling an unchanged
//! history changes nothing, so repeated labels cannot notify twice. Escalation and renotify
//! follow a reconciled alert from the moment it fired here.

use std::collections::BTreeMap;
use std::time::Duration;

use neurocloak_alert::{
    AlertError, AlertState, Channel, ChannelKind, Engine, Revised, Rule, RuleState, SealedChannel,
    Severity, Status, Transition, TransitionKind, default_rules,
};
use neurocloak_evaluate::{Section, TrustScore, WindowEvaluation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::records::{RangeQuery, TrustPoint, list_parsed, list_trust, parse};
use super::{LiveEvent, Pipeline, join_id};
use crate::store::eval::{Coll, Doc, DocQuery, SharedEvalStore};
use crate::store::{LeaseRecord, PageRequest, SharedStore, now_ms};
use crate::{Error, Result};

/// An alert change as streamed to live clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    pub project: String,
    pub rule_id: String,
    pub scope: String,
    pub dedup_key: String,
    pub subject: String,
    pub transition: TransitionKind,
    pub status: Status,
    pub severity: Severity,
    pub value: Option<f64>,
    pub window_start_ms: Option<i64>,
    pub at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// A current alert as listed by the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertView {
    pub project: String,
    pub rule_id: String,
    pub scope: String,
    pub severity: Severity,
    pub alert: AlertState,
}

/// A channel as the API shows it: never its URL or secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelView {
    pub id: String,
    pub kind: ChannelKind,
}

/// Alert errors in the collector's error type, keeping the status the alert crate intends.
#[derive(Debug)]
pub struct AlertFailure {
    pub status: u16,
    pub message: String,
}

impl From<AlertError> for AlertFailure {
    fn from(e: AlertError) -> AlertFailure {
        AlertFailure {
            status: e.http_status(),
            message: e.to_string(),
        }
    }
}

impl From<Error> for AlertFailure {
    fn from(e: Error) -> AlertFailure {
        let status = match &e {
            Error::Invalid(_) => 400,
            Error::NotFound(_) => 404,
            Error::Conflict(_) => 409,
            _ => 503,
        };
        AlertFailure {
            status,
            message: e.to_string(),
        }
    }
}

fn num(v: Option<f64>) -> Value {
    v.filter(|x| x.is_finite()).map_or(Value::Null, Value::from)
}

/// The metrics document of one window (roots as in docs/alerts.md).
pub fn metrics_document(e: &WindowEvaluation, t: &TrustScore) -> Value {
    let mut doc = Map::new();
    doc.insert("trust_score".into(), num(t.score));
    let components: Map<String, Value> = t
        .components
        .iter()
        .filter_map(|c| {
            let name = serde_json::to_value(c.component).ok()?.as_str()?.to_owned();
            Some((name, num(c.score)))
        })
        .collect();
    doc.insert("components".into(), Value::Object(components));
    if let Some(p) = e.performance.result() {
        doc.insert("performance".into(), performance_doc(&p.current));
    }
    if let Some(d) = e.drift.result() {
        let features: Map<String, Value> = d
            .features
            .iter()
            .map(|f| {
                (
                    f.feature.clone(),
                    json!({
                        "score": num(Some(f.score)),
                        "drifted": if f.drifted { 1.0 } else { 0.0 },
                        "psi": num(Some(f.psi.value)),
                        "js": num(Some(f.jensen_shannon)),
                        "ks": num(f.ks.map(|k| k.statistic)),
                        "ks_p_value": num(f.ks.map(|k| k.p_value)),
                        "wasserstein": num(f.wasserstein.map(|w| w.normalized)),
                        "chi_square_p_value": num(f.chi_square.map(|c| c.p_value)),
                    }),
                )
            })
            .collect();
        doc.insert(
            "drift".into(),
            json!({
                "dataset_share": num(Some(d.drifted_share)),
                "drifted": d.drifted,
                "dataset_drift": if d.dataset_drift { 1.0 } else { 0.0 },
                "features": features,
            }),
        );
    }
    if let Some(f) = e.fairness.result() {
        let attrs: Map<String, Value> = f
            .attributes
            .iter()
            .map(|a| {
                (
                    a.attribute.clone(),
                    json!({
                        "demographic_parity_difference": num(a.demographic_parity_difference),
                        "demographic_parity_ratio": num(a.demographic_parity_ratio),
                        "equalized_odds_difference": num(a.equalized_odds_difference),
                        "equal_opportunity_difference": num(a.equal_opportunity_difference),
                        "disparate_impact": num(a.disparate_impact),
                    }),
                )
            })
            .collect();
        doc.insert("fairness".into(), Value::Object(attrs));
    }
    if let Some(q) = e.quality.result() {
        let n = q.features.len().max(1) as f64;
        let features: Map<String, Value> = q
            .features
            .iter()
            .map(|f| {
                (
                    f.feature.clone(),
                    json!({
                        "missing_rate": num(Some(f.missing_rate)),
                        "invalid_rate": num(Some(f.invalid_rate)),
                        "out_of_range_share": num(f.out_of_range_share),
                        "unseen_share": num(f.unseen_share),
                    }),
                )
            })
            .collect();
        doc.insert(
            "quality".into(),
            json!({
                "missing_rate": num(Some(q.features.iter().map(|f| f.missing_rate).sum::<f64>() / n)),
                "invalid_rate": num(Some(q.features.iter().map(|f| f.invalid_rate).sum::<f64>() / n)),
                "features": features,
            }),
        );
    }
    if let Some(r) = e.robustness.result() {
        doc.insert(
            "robustness".into(),
            json!({
                "ood_share": num(r.ood.as_ref().map(|o| o.share)),
                "perturbation_stability": num(r.perturbation_stability),
            }),
        );
    }
    if let Some(x) = e.explainability.result() {
        doc.insert(
            "explainability".into(),
            json!({ "attribution_drift": num(x.attribution_drift), "fidelity": num(Some(x.fidelity)) }),
        );
    }
    if let Section::Evaluated { result: o } = &e.operations {
        let ms = |f: fn(&neurocloak_evaluate::operations::LatencySummary) -> u64| {
            num(o.latency.as_ref().map(|l| f(l) as f64 / 1000.0))
        };
        doc.insert(
            "operations".into(),
            json!({
                "latency_p50_ms": ms(|l| l.p50),
                "latency_p95_ms": ms(|l| l.p95),
                "latency_p99_ms": ms(|l| l.p99),
                "error_rate": num(o.error_rate),
                "volume_ratio": num(o.volume.as_ref().and_then(|v| v.ratio)),
                "rows": e.rows,
            }),
        );
    }
    Value::Object(doc)
}

fn performance_doc(p: &neurocloak_evaluate::performance::PerformanceMetrics) -> Value {
    use neurocloak_evaluate::performance::PerformanceMetrics as P;
    match p {
        P::Classification(c) => json!({
            "labelled": c.labelled,
            "accuracy": num(Some(c.accuracy)),
            "precision": num(c.precision),
            "recall": num(c.recall),
            "f1": num(c.f1),
            "macro_f1": num(Some(c.macro_f1)),
            "roc_auc": num(c.roc_auc),
            "log_loss": num(c.log_loss),
            "expected_calibration_error": num(c.expected_calibration_error),
        }),
        P::Regression(r) => json!({
            "labelled": r.labelled,
            "mae": num(Some(r.mae)),
            "rmse": num(Some(r.rmse)),
            "mape": num(r.mape),
            "r2": num(r.r2),
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// Rules and channels

fn rule_doc_id(project: &str, rule_id: &str) -> String {
    join_id(&[project, rule_id])
}

fn json_body<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Invalid(format!("not serialisable: {e}")))
}

pub async fn channel_ids(p: &Pipeline, project: &str) -> Result<Vec<String>> {
    Ok(list_channels(p, project)
        .await?
        .into_iter()
        .map(|c| c.id)
        .collect())
}

/// Validates and stores a rule. `create` refuses an existing id (409); otherwise replaces.
pub async fn put_rule(
    p: &Pipeline,
    project: &str,
    rule: &Rule,
    create: bool,
) -> Result<(), AlertFailure> {
    if rule.project != project {
        return Err(AlertFailure {
            status: 422,
            message: format!(
                "invalid rule: project: {:?} is not this project ({project:?})",
                rule.project
            ),
        });
    }
    rule.validate(&channel_ids(p, project).await?)?;
    let doc = Doc {
        id: rule_doc_id(project, &rule.id),
        project_id: project.to_owned(),
        scope: String::new(),
        kind: rule.id.clone(),
        status: "enabled".into(),
        time_ms: now_ms(),
        body: json_body(rule)?,
    };
    if create {
        if !p.docs.insert(Coll::Rules, &doc).await? {
            return Err(Error::Conflict(format!("rule {}", rule.id)).into());
        }
    } else {
        p.docs.upsert(Coll::Rules, &doc).await?;
    }
    Ok(())
}

pub async fn get_rule(p: &Pipeline, project: &str, rule_id: &str) -> Result<Option<Rule>> {
    p.docs
        .get(Coll::Rules, &rule_doc_id(project, rule_id))
        .await?
        .as_ref()
        .map(parse)
        .transpose()
}

pub async fn delete_rule(p: &Pipeline, project: &str, rule_id: &str) -> Result<bool> {
    p.docs
        .delete(Coll::Rules, &rule_doc_id(project, rule_id))
        .await
}

/// Every rule of a project (rules are few; a project holds at most a few hundred).
pub async fn list_rules(p: &Pipeline, project: &str) -> Result<Vec<Rule>> {
    let mut out = Vec::new();
    let mut page = PageRequest::first(crate::store::MAX_PAGE);
    loop {
        let got = p
            .docs
            .list(Coll::Rules, &DocQuery::project(project), &page)
            .await?;
        for d in &got.items {
            out.push(parse(d)?);
        }
        match got.next {
            Some(next) => page.cursor = Some(next),
            None => return Ok(out),
        }
    }
}

/// Creates the default rules the first time a project is seen; later calls do nothing, so a
/// default rule someone deleted stays deleted.
pub async fn ensure_default_rules(p: &Pipeline, project: &str) -> Result<bool> {
    let actor = format!("{}:{}", crate::audit::COLLECTOR, p.holder);
    create_default_rules(&p.docs, &p.store, project, &actor).await
}

/// [`ensure_default_rules`] on bare stores (used by `admin bootstrap`); `actor` is who the
/// audit entry names.
pub async fn create_default_rules(
    docs: &SharedEvalStore,
    store: &SharedStore,
    project: &str,
    actor: &str,
) -> Result<bool> {
    let marker = Doc {
        id: join_id(&["default-rules", project]),
        project_id: project.to_owned(),
        scope: String::new(),
        kind: "default-rules".into(),
        status: String::new(),
        time_ms: now_ms(),
        body: "{}".into(),
    };
    if docs.get(Coll::Meta, &marker.id).await?.is_some() {
        return Ok(false);
    }
    for rule in default_rules(project) {
        let doc = Doc {
            id: rule_doc_id(project, &rule.id),
            project_id: project.to_owned(),
            scope: String::new(),
            kind: rule.id.clone(),
            status: "enabled".into(),
            time_ms: now_ms(),
            body: json_body(&rule)?,
        };
        docs.insert(Coll::Rules, &doc).await?;
    }
    let created = docs.insert(Coll::Meta, &marker).await?;
    if created {
        // Only the collector whose marker insert won records it, so racing collectors write
        // one entry; the rules themselves are in the entry, as a create would show them.
        let rules: Vec<Rule> = default_rules(project);
        let a = crate::audit::Action::new(
            project,
            actor,
            "rule.create_defaults",
            "rules/defaults",
            json!({ "rules": rules }),
        );
        crate::audit::append(&**store, &a).await?;
    }
    Ok(created)
}

pub async fn put_channel(
    p: &Pipeline,
    project: &str,
    channel: &Channel,
) -> Result<(), AlertFailure> {
    let sealed = channel.seal(&*p.secrets.get()?)?;
    let doc = Doc {
        id: join_id(&[project, &channel.id]),
        project_id: project.to_owned(),
        scope: String::new(),
        kind: channel.id.clone(),
        status: String::new(),
        time_ms: now_ms(),
        body: json_body(&sealed)?,
    };
    p.docs.upsert(Coll::Channels, &doc).await?;
    Ok(())
}

pub async fn delete_channel(p: &Pipeline, project: &str, id: &str) -> Result<bool> {
    p.docs
        .delete(Coll::Channels, &join_id(&[project, id]))
        .await
}

async fn sealed_channels(p: &Pipeline, project: &str) -> Result<Vec<SealedChannel>> {
    let got = p
        .docs
        .list(
            Coll::Channels,
            &DocQuery::project(project),
            &PageRequest::first(crate::store::MAX_PAGE),
        )
        .await?;
    got.items.iter().map(parse).collect()
}

pub async fn list_channels(p: &Pipeline, project: &str) -> Result<Vec<ChannelView>> {
    Ok(sealed_channels(p, project)
        .await?
        .into_iter()
        .map(|c| ChannelView {
            id: c.id,
            kind: c.kind,
        })
        .collect())
}

// ---------------------------------------------------------------------------------------------
// Rule state under a lease

fn alert_scope(point: &TrustPoint) -> String {
    format!("{}@{}/{}", point.model, point.version, point.environment)
}

fn state_doc_id(project: &str, rule_id: &str, scope: &str) -> String {
    join_id(&[project, rule_id, scope])
}

/// Holds the lease on `key` (waiting up to about one lease period for another collector to
/// finish) and this process's alert lock, runs `f`, then releases the lease by inserting an
/// already-expired epoch.
async fn with_lease<T, F, Fut>(p: &Pipeline, key: &str, f: F) -> Result<T>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let _local = p.alert_lock.lock().await;
    let leases = crate::schedule::Leases::new(p.store.clone(), p.holder.clone(), p.lease_ms);
    let deadline = now_ms() + p.lease_ms + 1_000;
    let held = loop {
        if let Some(l) = leases.acquire(key).await? {
            break l;
        }
        if now_ms() > deadline {
            return Err(Error::Conflict(format!("lease {key} stays busy")));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let out = f().await;
    release(p, &held).await;
    out
}

/// Lets the next contender in at once rather than after the lease period.
pub(crate) async fn release(p: &Pipeline, held: &LeaseRecord) {
    let now = now_ms();
    let done = LeaseRecord {
        key: held.key.clone(),
        epoch: held.epoch + 1,
        holder: held.holder.clone(),
        acquired_ms: now,
        expires_ms: now,
    };
    if let Err(e) = p.store.insert_lease(&done).await {
        tracing::debug!(lease = %held.key, error = %e, "lease not released; it will expire");
    }
}

async fn load_state(p: &Pipeline, project: &str, rule_id: &str, scope: &str) -> Result<RuleState> {
    Ok(
        match p
            .docs
            .get(Coll::RuleStates, &state_doc_id(project, rule_id, scope))
            .await?
        {
            Some(d) => parse(&d)?,
            None => RuleState::new(rule_id, scope),
        },
    )
}

/// Persists a new rule state: the state, its new history entries and the current alerts.
/// Returns the new transitions.
async fn save_state(
    p: &Pipeline,
    project: &str,
    rule: &Rule,
    old: &RuleState,
    new: &RuleState,
) -> Result<Vec<Transition>> {
    let firing = new.alerts.values().any(|a| a.status == Status::Firing);
    p.docs
        .upsert(
            Coll::RuleStates,
            &Doc {
                id: state_doc_id(project, &rule.id, &new.scope),
                project_id: project.to_owned(),
                scope: new.scope.clone(),
                kind: rule.id.clone(),
                status: if firing { "firing" } else { "quiet" }.into(),
                time_ms: now_ms(),
                body: json_body(new)?,
            },
        )
        .await?;
    let fresh: Vec<Transition> = new.history_since(old.next_seq).to_vec();
    let history: Vec<Doc> = fresh
        .iter()
        .map(|t| {
            Ok(Doc {
                id: join_id(&[project, &rule.id, &new.scope, &format!("{:020}", t.seq)]),
                project_id: project.to_owned(),
                scope: new.scope.clone(),
                kind: rule.id.clone(),
                status: t.to.as_str().into(),
                time_ms: t.at_ms,
                body: json_body(t)?,
            })
        })
        .collect::<Result<_>>()?;
    p.docs.insert_many(Coll::AlertHistory, &history).await?;
    for alert in new.alerts.values() {
        if old.alerts.get(&alert.subject) == Some(alert) {
            continue;
        }
        let view = AlertView {
            project: project.to_owned(),
            rule_id: rule.id.clone(),
            scope: new.scope.clone(),
            severity: rule.severity,
            alert: alert.clone(),
        };
        p.docs
            .upsert(
                Coll::Alerts,
                &Doc {
                    id: join_id(&[project, &alert.dedup_key]),
                    project_id: project.to_owned(),
                    scope: new.scope.clone(),
                    kind: rule.id.clone(),
                    status: alert.status.as_str().into(),
                    time_ms: now_ms(),
                    body: json_body(&view)?,
                },
            )
            .await?;
    }
    // Alerts the engine dropped went back to inactive (a pending alert cleared).
    for gone in old
        .alerts
        .values()
        .filter(|a| !new.alerts.contains_key(&a.subject))
    {
        p.docs
            .delete(Coll::Alerts, &join_id(&[project, &gone.dedup_key]))
            .await?;
    }
    Ok(fresh)
}

fn publish(p: &Pipeline, project: &str, rule: &Rule, scope: &str, transitions: &[Transition]) {
    for t in transitions {
        p.publish(LiveEvent::Alert(AlertEvent {
            project: project.to_owned(),
            rule_id: rule.id.clone(),
            scope: scope.to_owned(),
            dedup_key: t.dedup_key.clone(),
            subject: t.subject.clone(),
            transition: t.kind,
            status: t.to,
            severity: rule.severity,
            value: t.value,
            window_start_ms: t.window_start_ms,
            at_ms: t.at_ms,
            by: t.by.clone(),
        }));
    }
}

/// Sends actions in the background (a receiver in retries must not hold up evaluation) and
/// records each delivery.
fn deliver(p: &Pipeline, project: &str, actions: Vec<neurocloak_alert::Action>) {
    if actions.is_empty() {
        return;
    }
    let p = p.clone();
    let project = project.to_owned();
    tokio::spawn(async move {
        let opened = match p.secrets.get() {
            Ok(key) => sealed_channels(&p, &project).await.map(|s| (s, key)),
            Err(e) => Err(e),
        };
        let channels: Vec<Channel> = match opened {
            Ok((sealed, key)) => sealed
                .iter()
                .filter_map(|c| match c.open(&key) {
                    Ok(open) => Some(open),
                    Err(e) => {
                        tracing::warn!(channel = %c.id, error = %e, "channel secret does not open");
                        None
                    }
                })
                .collect(),
            Err(e) => {
                tracing::warn!(%project, error = %e, "channels not readable; notifications lost");
                p.metrics.reject("alert_channels_unreadable");
                return;
            }
        };
        for action in &actions {
            for report in p.notifier.dispatch(action, &channels).await {
                if !report.delivered {
                    p.metrics.reject("alert_delivery_failed");
                }
                let doc = Doc {
                    id: join_id(&[&project, &report.notification_id, &report.channel_id]),
                    project_id: project.clone(),
                    scope: action.notification.scope.clone(),
                    kind: report.channel_id.clone(),
                    status: if report.delivered {
                        "delivered"
                    } else {
                        "failed"
                    }
                    .into(),
                    time_ms: now_ms(),
                    body: serde_json::to_string(&report).unwrap_or_else(|_| "{}".into()),
                };
                if let Err(e) = p.docs.upsert(Coll::Deliveries, &doc).await {
                    tracing::warn!(error = %e, "delivery report not stored");
                }
            }
        }
    });
}

/// Runs every rule of the project that watches this model version on a new trust score: a
/// window after the last one a rule observed moves it forward, an earlier one (re-evaluated,
/// or first evaluated out of order) reconciles it with the stored history.
pub async fn observe(p: &Pipeline, point: &TrustPoint) -> Result<usize> {
    let project = point.project.as_str();
    ensure_default_rules(p, project).await?;
    let scope = alert_scope(point);
    let engine = Engine::default();
    let mut changed = 0;
    for rule in list_rules(p, project).await? {
        if !rule.applies_to(project, &point.model, &point.version) {
            continue;
        }
        let key = format!("alerts:{}", state_doc_id(project, &rule.id, &scope));
        let (fresh, actions) = with_lease(p, &key, || async {
            let old = load_state(p, project, &rule.id, &scope).await?;
            let window = point.window_start_ms;
            let revisits = old.last_window_ms.is_some_and(|last| window <= last);
            let (new, actions) = if revisits {
                let history = reconcile_history(p, &engine, &old, &rule, point).await?;
                let revised = Revised {
                    window_start_ms: window,
                    doc: &point.metrics,
                };
                engine.reconcile(&old, &rule, revised, &history, now_ms())
            } else {
                engine.observe(&old, &rule, window, &point.metrics, now_ms())
            }
            .map_err(|e| Error::Invalid(format!("rule {}: {e}", rule.id)))?;
            let unsettled = new
                .unsettled_subjects
                .saturating_sub(old.unsettled_subjects);
            if unsettled > 0 {
                // Kept as they were; visible here as well as in the rule state.
                p.metrics
                    .rejects
                    .with_label_values(&["alert_reconcile_unsettled"])
                    .inc_by(unsettled);
            }
            Ok((save_state(p, project, &rule, &old, &new).await?, actions))
        })
        .await?;
        changed += fresh.len();
        publish(p, project, &rule, &scope, &fresh);
        deliver(p, project, actions);
    }
    Ok(changed)
}

/// Most stored windows one reconciliation reads: twice the longest "for N windows" a rule may
/// ask for, so a run of either kind fits. Subjects it leaves undecided keep their live state
/// and are counted in the rule state.
pub const MAX_RECONCILE_WINDOWS: usize = 2 * neurocloak_alert::rule::MAX_WINDOWS as usize;
/// First page of a reconciliation's read; later pages grow, since most reads stop early.
const RECONCILE_FIRST_PAGE: u32 = 16;

/// The version's stored metrics documents from the rule state's last window back, newest
/// first, read until they settle every subject the re-evaluation may have changed, or reach
/// the state's first window, or [`MAX_RECONCILE_WINDOWS`].
async fn reconcile_history(
    p: &Pipeline,
    engine: &Engine,
    state: &RuleState,
    rule: &Rule,
    point: &TrustPoint,
) -> Result<Vec<(i64, Value)>> {
    let Some(last) = state.last_window_ms else {
        return Ok(Vec::new());
    };
    let range = RangeQuery {
        project_id: point.project.clone(),
        model: point.model.clone(),
        version: Some((point.version.clone(), point.environment.clone())),
        from_ms: state.first_window_ms.unwrap_or(i64::MIN),
        to_ms: last.saturating_add(1),
    };
    let revised = Revised {
        window_start_ms: point.window_start_ms,
        doc: &point.metrics,
    };
    let invalid = |e: AlertError| Error::Invalid(format!("rule {}: {e}", rule.id));
    let mut history = Vec::new();
    let mut page = PageRequest::first(RECONCILE_FIRST_PAGE);
    loop {
        let got = list_trust(&p.docs, &range, &page).await?;
        history.extend(
            got.items
                .into_iter()
                .map(|t| (t.window_start_ms, t.metrics)),
        );
        if history.len() >= MAX_RECONCILE_WINDOWS
            || engine
                .settled(state, rule, revised, &history)
                .map_err(invalid)?
        {
            return Ok(history);
        }
        match got.next {
            Some(next) => {
                let left = u32::try_from(MAX_RECONCILE_WINDOWS - history.len()).unwrap_or(u32::MAX);
                page.cursor = Some(next);
                page.limit = page.limit.saturating_mul(4).min(left);
            }
            None => return Ok(history),
        }
    }
}

/// Escalation and renotification for every firing rule state.
pub async fn tick(p: &Pipeline) -> Result<usize> {
    let q = DocQuery {
        project_id: None,
        scope: None,
        kind: None,
        status: Some("firing".into()),
        from_ms: i64::MIN,
        to_ms: i64::MAX,
    };
    let states = p
        .docs
        .list(
            Coll::RuleStates,
            &q,
            &PageRequest::first(crate::store::MAX_PAGE),
        )
        .await?;
    let engine = Engine::default();
    let mut changed = 0;
    for d in states.items {
        let Some(rule) = get_rule(p, &d.project_id, &d.kind).await? else {
            continue;
        };
        let project = d.project_id.clone();
        let key = format!("alerts:{}", d.id);
        let (fresh, actions) = with_lease(p, &key, || async {
            let old = load_state(p, &project, &rule.id, &d.scope).await?;
            let (new, actions) = engine
                .tick(&old, &rule, now_ms())
                .map_err(|e| Error::Invalid(format!("rule {}: {e}", rule.id)))?;
            Ok((save_state(p, &project, &rule, &old, &new).await?, actions))
        })
        .await?;
        changed += fresh.len();
        publish(p, &project, &rule, &d.scope, &fresh);
        deliver(p, &project, actions);
    }
    Ok(changed)
}

/// Acknowledges a firing alert by its dedup key.
pub async fn acknowledge(
    p: &Pipeline,
    project: &str,
    dedup_key: &str,
    by: &str,
) -> Result<AlertView, AlertFailure> {
    let Some(doc) = p
        .docs
        .get(Coll::Alerts, &join_id(&[project, dedup_key]))
        .await?
    else {
        return Err(Error::NotFound(format!("alert {dedup_key}")).into());
    };
    let view: AlertView = parse(&doc)?;
    let Some(rule) = get_rule(p, project, &view.rule_id).await? else {
        return Err(Error::NotFound(format!("rule {}", view.rule_id)).into());
    };
    let key = format!("alerts:{}", state_doc_id(project, &rule.id, &view.scope));
    let engine = Engine::default();
    let outcome: Result<Result<(Vec<Transition>, RuleState), AlertError>> =
        with_lease(p, &key, || async {
            let old = load_state(p, project, &rule.id, &view.scope).await?;
            match engine.acknowledge(&old, dedup_key, by, now_ms()) {
                Ok(new) => Ok(Ok((save_state(p, project, &rule, &old, &new).await?, new))),
                Err(e) => Ok(Err(e)),
            }
        })
        .await;
    let (fresh, new) = outcome??;
    publish(p, project, &rule, &view.scope, &fresh);
    let alert = new
        .alert(dedup_key)
        .cloned()
        .ok_or_else(|| Error::NotFound(format!("alert {dedup_key}")))?;
    Ok(AlertView { alert, ..view })
}

/// Current alerts of a project, optionally of one status, newest change first.
pub async fn list_alerts(
    p: &Pipeline,
    project: &str,
    status: Option<String>,
    page: &PageRequest,
) -> Result<crate::store::Page<AlertView>> {
    let q = DocQuery {
        status,
        ..DocQuery::project(project)
    };
    list_parsed(&p.docs, Coll::Alerts, &q, page).await
}

/// History entries of a project (optionally of one rule), newest first.
pub async fn list_history(
    p: &Pipeline,
    project: &str,
    rule_id: Option<String>,
    page: &PageRequest,
) -> Result<crate::store::Page<Transition>> {
    let q = DocQuery {
        kind: rule_id,
        ..DocQuery::project(project)
    };
    list_parsed(&p.docs, Coll::AlertHistory, &q, page).await
}

/// Delivery reports of a project, newest first.
pub async fn list_deliveries(
    p: &Pipeline,
    project: &str,
    page: &PageRequest,
) -> Result<crate::store::Page<Value>> {
    list_parsed(&p.docs, Coll::Deliveries, &DocQuery::project(project), page).await
}

/// Most windows a back-test replays.
pub const MAX_BACKTEST_WINDOWS: usize = 10_000;

/// "When would this rule have fired?": replays stored metrics documents of one model version,
/// oldest first, through the same engine.
pub async fn backtest(
    p: &Pipeline,
    rule: &Rule,
    range: &RangeQuery,
) -> Result<(usize, Vec<Transition>), AlertFailure> {
    rule.validate(&channel_ids(p, &range.project_id).await?)?;
    let mut history: BTreeMap<i64, Value> = BTreeMap::new();
    let mut page = PageRequest::first(crate::store::MAX_PAGE);
    loop {
        let got = list_trust(&p.docs, range, &page).await?;
        for t in got.items {
            if history.len() >= MAX_BACKTEST_WINDOWS {
                break;
            }
            history.insert(t.window_start_ms, t.metrics);
        }
        match got.next {
            Some(next) if history.len() < MAX_BACKTEST_WINDOWS => page.cursor = Some(next),
            _ => break,
        }
    }
    let windows = history.len();
    let history: Vec<(i64, Value)> = history.into_iter().collect();
    Ok((windows, neurocloak_alert::backtest(rule, &history)?))
}
