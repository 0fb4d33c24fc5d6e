//! Storage of what the pipeline produces: evaluations, trust scores, the prediction index and
//! joined labels, alert rules, channels, alert state, history and deliveries.
//!
//! Every collection has the same shape ([`Doc`]): an `_id`, a project, three short key fields
//! (`scope`, `kind`, `status`), a time and a JSON body. Two compound indexes serve every query:
//! `{project_id, scope, time_ms: -1}` (time-range listings per model version) and
//! `{project_id, kind, status}` (e.g. alerts by rule and status — the seed's
//! `{project_id, alert_type, status}`). One shape keeps the SQLite and MongoDB backends
//! ([`EvalSqlite`](super::eval_sqlite::EvalSqlite), [`EvalMongo`](super::eval_mongo::EvalMongo))
//! small and identical in behaviour; typed records live in `crate::pipeline`.
//!
//! The same two scans the pipeline needs over the ingest tables (parts and label batches by
//! arrival, across all models) are here too, so the ingest [`Store`](super::Store) trait stays
//! untouched.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Cursor, LabelPart, ModelKey, Page, PageRequest};
use crate::{Error, Result};

/// The pipeline's collections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Coll {
    /// One per (window, revision); insert-only, so a count proves "evaluated once".
    Evaluations,
    /// One per window: the latest trust score with its metrics document.
    TrustScores,
    /// Prediction id → window it belongs to, for routing late labels.
    Predictions,
    /// Prediction id → label, as joined.
    Labels,
    Rules,
    Channels,
    RuleStates,
    /// Current alerts (one per dedup key); `kind` = rule id (alert type), `status` = lifecycle.
    Alerts,
    AlertHistory,
    Deliveries,
    /// Markers such as "default rules created for this project".
    Meta,
}

impl Coll {
    pub const ALL: [Coll; 11] = [
        Coll::Evaluations,
        Coll::TrustScores,
        Coll::Predictions,
        Coll::Labels,
        Coll::Rules,
        Coll::Channels,
        Coll::RuleStates,
        Coll::Alerts,
        Coll::AlertHistory,
        Coll::Deliveries,
        Coll::Meta,
    ];

    /// Table / collection name.
    pub fn name(self) -> &'static str {
        match self {
            Coll::Evaluations => "evaluations",
            Coll::TrustScores => "trust_scores",
            Coll::Predictions => "prediction_index",
            Coll::Labels => "joined_labels",
            Coll::Rules => "alert_rules",
            Coll::Channels => "alert_channels",
            Coll::RuleStates => "alert_rule_states",
            Coll::Alerts => "alerts",
            Coll::AlertHistory => "alert_history",
            Coll::Deliveries => "alert_deliveries",
            Coll::Meta => "pipeline_meta",
        }
    }
}

/// One stored record of any pipeline collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doc {
    /// Unique within the collection; callers build it from the project and natural key.
    pub id: String,
    pub project_id: String,
    pub scope: String,
    pub kind: String,
    pub status: String,
    pub time_ms: i64,
    /// JSON.
    pub body: String,
}

/// Filter of a listing: every `Some` field must match exactly; time within `[from_ms, to_ms)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocQuery {
    /// None lists across projects (background work only; never reachable from the API).
    pub project_id: Option<String>,
    pub scope: Option<String>,
    pub kind: Option<String>,
    pub status: Option<String>,
    pub from_ms: i64,
    pub to_ms: i64,
}

impl DocQuery {
    pub fn project(project_id: &str) -> DocQuery {
        DocQuery {
            project_id: Some(project_id.to_owned()),
            scope: None,
            kind: None,
            status: None,
            from_ms: i64::MIN,
            to_ms: i64::MAX,
        }
    }
}

/// Most documents one `get_many` call looks up.
pub const MAX_GET_MANY: usize = 10_000;

/// A stored window part without its profile: what the arrival scan returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartStub {
    pub id: String,
    pub key: ModelKey,
    pub window_start_ms: i64,
    pub window_length_ms: i64,
    pub received_ms: i64,
}

/// The pipeline's storage. Every write is durable when it returns Ok.
#[async_trait]
pub trait EvalStore: Send + Sync + 'static {
    fn backend(&self) -> &'static str;
    /// Creates tables/collections and indexes; safe on every start.
    async fn migrate(&self) -> Result<()>;

    /// False when the id exists (nothing written).
    async fn insert(&self, coll: Coll, doc: &Doc) -> Result<bool>;
    /// Inserts those whose id is new; returns how many were.
    async fn insert_many(&self, coll: Coll, docs: &[Doc]) -> Result<u64>;
    /// Inserts or replaces by id.
    async fn upsert(&self, coll: Coll, doc: &Doc) -> Result<()>;
    async fn get(&self, coll: Coll, id: &str) -> Result<Option<Doc>>;
    /// The documents among `ids` that exist (any order); at most [`MAX_GET_MANY`] ids.
    async fn get_many(&self, coll: Coll, ids: &[String]) -> Result<Vec<Doc>>;
    /// False when there was no such document.
    async fn delete(&self, coll: Coll, id: &str) -> Result<bool>;
    /// Newest first (time, then id, descending); cursor pagination as the ingest listings.
    async fn list(&self, coll: Coll, q: &DocQuery, page: &PageRequest) -> Result<Page<Doc>>;
    async fn count(&self, coll: Coll, q: &DocQuery) -> Result<u64>;
    /// Deletes documents with `time_ms < cutoff_ms`; returns how many went.
    async fn delete_older_than(&self, coll: Coll, cutoff_ms: i64) -> Result<u64>;

    /// Window parts that arrived at or after `since_ms` (all projects), oldest first.
    async fn parts_since(&self, since_ms: i64, limit: u32) -> Result<Vec<PartStub>>;
    /// Label batches that arrived at or after `since_ms` (all projects), oldest first.
    async fn label_parts_since(&self, since_ms: i64, limit: u32) -> Result<Vec<LabelPart>>;
}

pub type SharedEvalStore = Arc<dyn EvalStore>;

/// Opens the pipeline store on the same database as [`super::open`] and migrates it.
pub async fn open(uri: &str, mongo_database: &str) -> Result<SharedEvalStore> {
    let store: SharedEvalStore =
        if uri.starts_with("mongodb://") || uri.starts_with("mongodb+srv://") {
            Arc::new(super::eval_mongo::EvalMongo::connect(uri, mongo_database).await?)
        } else {
            let path = uri.strip_prefix("sqlite://").unwrap_or(uri);
            if path.is_empty() {
                return Err(Error::Config("storage uri: empty sqlite path".into()));
            }
            Arc::new(super::eval_sqlite::EvalSqlite::open(std::path::Path::new(path)).await?)
        };
    store.migrate().await?;
    Ok(store)
}

/// Cursor of a page of docs: position after `doc` in (time, id) descending order.
pub(crate) fn doc_cursor(doc: &Doc) -> Cursor {
    Cursor {
        after_name: None,
        after_ms: Some(doc.time_ms),
        after_id: doc.id.clone(),
        after_seq: None,
    }
}

/// Decodes a page's cursor into (time, id), rejecting cursors of other listings.
pub(crate) fn doc_position(page: &PageRequest) -> Result<Option<(i64, String)>> {
    let Some(c) = page.cursor.as_deref() else {
        return Ok(None);
    };
    let c = Cursor::decode(c)?;
    let ms = c
        .after_ms
        .ok_or_else(|| Error::Invalid("cursor: not a cursor of this listing".into()))?;
    Ok(Some((ms, c.after_id)))
}
