//! Typed records of the pipeline over the document store: evaluations (one per window and
//! revision, with the inputs used) and trust scores (the latest per window, with the metrics
//! document alerts read).

use neurocloak_evaluate::{EvalConfig, TrustConfig, TrustScore, WindowEvaluation};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Pipeline, join_id, version_scope, window_id};
use crate::store::eval::{Coll, Doc, DocQuery, SharedEvalStore};
use crate::store::{ModelKey, Page, PageRequest, now_ms};
use crate::{Error, Result};

/// Kind of an evaluation record; one kind today, room for robustness probes and audits.
pub const WINDOW_EVALUATION: &str = "window";

/// What an evaluation was computed from, so a stored result can be explained and its
/// staleness detected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvalInputs {
    /// Ids of the window parts merged, in arrival order.
    pub parts: Vec<String>,
    /// Delayed labels joined to this window's prediction records.
    pub joined_labels: u64,
    /// `reference:<id>`, `window:<start_ms>` or `none`.
    pub baseline: String,
    /// Trust scores of earlier windows used for the trend.
    pub history: usize,
}

impl EvalInputs {
    /// Changes whenever a late part or a late label changes the window.
    pub fn revision(&self) -> String {
        format!("p{}-l{}", self.parts.len(), self.joined_labels)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationRecord {
    pub project: String,
    pub model: String,
    pub version: String,
    pub environment: String,
    pub window_start_ms: i64,
    pub window_length_ms: i64,
    pub kind: String,
    pub revision: String,
    pub inputs: EvalInputs,
    pub evaluated_ms: i64,
    /// Which collector evaluated it.
    pub holder: String,
    pub evaluation: WindowEvaluation,
}

/// One window's trust score as served and streamed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrustPoint {
    pub project: String,
    pub model: String,
    pub version: String,
    pub environment: String,
    pub window_start_ms: i64,
    pub window_length_ms: i64,
    pub revision: String,
    pub evaluated_ms: i64,
    pub rows: u64,
    pub trust: TrustScore,
    /// The metrics document alert rules read (see docs/alerts.md).
    pub metrics: Value,
}

impl TrustPoint {
    pub fn key(&self) -> ModelKey {
        ModelKey {
            project_id: self.project.clone(),
            model: self.model.clone(),
            version: self.version.clone(),
            environment: self.environment.clone(),
        }
    }
}

fn body<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Invalid(format!("not serialisable: {e}")))
}

pub fn parse<T: for<'de> Deserialize<'de>>(d: &Doc) -> Result<T> {
    serde_json::from_str(&d.body).map_err(|e| Error::Corrupt(format!("document {}: {e}", d.id)))
}

/// One page of `coll` matching `q`, each document parsed as `T`.
pub async fn list_parsed<T: for<'de> Deserialize<'de>>(
    docs: &SharedEvalStore,
    coll: Coll,
    q: &DocQuery,
    page: &PageRequest,
) -> Result<Page<T>> {
    let got = docs.list(coll, q, page).await?;
    Ok(Page {
        items: got.items.iter().map(parse).collect::<Result<_>>()?,
        next: got.next,
    })
}

/// Inserts the evaluation; false when this (window, revision) was stored before — by this
/// collector or another — which is what makes evaluation exactly-once.
pub async fn insert_evaluation(docs: &SharedEvalStore, r: &EvaluationRecord) -> Result<bool> {
    let key = ModelKey {
        project_id: r.project.clone(),
        model: r.model.clone(),
        version: r.version.clone(),
        environment: r.environment.clone(),
    };
    let doc = Doc {
        id: format!("{}#{}", window_id(&key, r.window_start_ms), r.revision),
        project_id: r.project.clone(),
        scope: version_scope(&key),
        kind: r.model.clone(),
        status: r.kind.clone(),
        time_ms: r.window_start_ms,
        body: body(r)?,
    };
    docs.insert(Coll::Evaluations, &doc).await
}

pub async fn put_trust(docs: &SharedEvalStore, t: &TrustPoint) -> Result<()> {
    let key = t.key();
    let doc = Doc {
        id: window_id(&key, t.window_start_ms),
        project_id: t.project.clone(),
        scope: version_scope(&key),
        kind: t.model.clone(),
        status: t.revision.clone(),
        time_ms: t.window_start_ms,
        body: body(t)?,
    };
    docs.upsert(Coll::TrustScores, &doc).await
}

pub async fn get_trust(
    docs: &SharedEvalStore,
    key: &ModelKey,
    window_start_ms: i64,
) -> Result<Option<TrustPoint>> {
    docs.get(Coll::TrustScores, &window_id(key, window_start_ms))
        .await?
        .as_ref()
        .map(parse)
        .transpose()
}

/// Which documents of a model a listing covers: one version, or every version of the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeQuery {
    pub project_id: String,
    pub model: String,
    /// (version, environment); None lists all versions of the model.
    pub version: Option<(String, String)>,
    pub from_ms: i64,
    pub to_ms: i64,
}

impl RangeQuery {
    fn doc_query(&self) -> DocQuery {
        DocQuery {
            project_id: Some(self.project_id.clone()),
            scope: self.version.as_ref().map(|(v, e)| {
                version_scope(&ModelKey {
                    project_id: self.project_id.clone(),
                    model: self.model.clone(),
                    version: v.clone(),
                    environment: e.clone(),
                })
            }),
            kind: Some(self.model.clone()),
            status: None,
            from_ms: self.from_ms,
            to_ms: self.to_ms,
        }
    }
}

/// Trust scores newest window first.
pub async fn list_trust(
    docs: &SharedEvalStore,
    q: &RangeQuery,
    page: &PageRequest,
) -> Result<Page<TrustPoint>> {
    list_parsed(docs, Coll::TrustScores, &q.doc_query(), page).await
}

/// Evaluations newest window first; a re-evaluated window appears once per revision.
pub async fn list_evaluations(
    docs: &SharedEvalStore,
    q: &RangeQuery,
    page: &PageRequest,
) -> Result<Page<EvaluationRecord>> {
    list_parsed(docs, Coll::Evaluations, &q.doc_query(), page).await
}

/// Trust scores of the windows before `before_ms` of one version, newest first.
pub async fn recent_trust(
    docs: &SharedEvalStore,
    key: &ModelKey,
    before_ms: i64,
    n: u32,
) -> Result<Vec<TrustPoint>> {
    let q = RangeQuery {
        project_id: key.project_id.clone(),
        model: key.model.clone(),
        version: Some((key.version.clone(), key.environment.clone())),
        from_ms: i64::MIN,
        to_ms: before_ms,
    };
    Ok(list_trust(docs, &q, &PageRequest::first(n.max(1)))
        .await?
        .items)
}

/// A project's evaluation settings, overriding the collector's `[pipeline]` defaults.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ProjectEvalConfig {
    pub evaluation: EvalConfig,
    pub trust: TrustConfig,
}

impl ProjectEvalConfig {
    pub fn validate(&self) -> Result<()> {
        self.evaluation
            .validate()
            .map_err(|e| Error::Invalid(format!("evaluation: {e}")))?;
        self.trust
            .validate()
            .map_err(|e| Error::Invalid(format!("trust: {e}")))
    }
}

fn eval_config_id(project: &str) -> String {
    join_id(&["eval-config", project])
}

/// The settings windows of `project` are evaluated with: the project's own, else the
/// collector's defaults.
pub async fn project_config(p: &Pipeline, project: &str) -> Result<ProjectEvalConfig> {
    match p.docs.get(Coll::Meta, &eval_config_id(project)).await? {
        Some(d) => parse(&d),
        None => Ok(ProjectEvalConfig {
            evaluation: p.config.evaluation.clone(),
            trust: p.config.trust.clone(),
        }),
    }
}

/// Validates and stores a project's settings; they apply from the next evaluation on.
pub async fn put_project_config(p: &Pipeline, project: &str, c: &ProjectEvalConfig) -> Result<()> {
    c.validate()?;
    p.docs
        .upsert(
            Coll::Meta,
            &Doc {
                id: eval_config_id(project),
                project_id: project.to_owned(),
                scope: String::new(),
                kind: "eval-config".into(),
                status: String::new(),
                time_ms: now_ms(),
                body: body(c)?,
            },
        )
        .await
}
