//! The one storage interface ([`Store`]) and the records it keeps.
//!
//! Two backends implement it: [`sqlite::SqliteStore`] (embedded, the default) and
//! [`mongo::MongoStore`] (production, MongoDB 6+ or any MongoDB-wire server such as FerretDB).
//! Both pass the same conformance suite (`tests/store_conformance.rs`).
//!
//! Nothing here needs multi-document transactions, TTL indexes or conditional updates that must
//! be atomic: idempotency and leases rest on unique keys only, so the MongoDB backend behaves the
//! same on FerretDB (which runs conditional updates as read-then-write).

pub mod eval;
pub mod eval_mongo;
pub mod eval_sqlite;
pub mod mongo;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Push batches (agents).
    Ingest,
    /// Read projects, models and windows (dashboards, scripts).
    Read,
    /// Write alert rules and channels, acknowledge alerts.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Result<Scope> {
        match s {
            "ingest" => Ok(Scope::Ingest),
            "read" => Ok(Scope::Read),
            "admin" => Ok(Scope::Admin),
            other => Err(Error::Invalid(format!(
                "unknown scope {other:?} (expected ingest, read or admin)"
            ))),
        }
    }

    /// Scopes stored as one comma-separated string in both backends.
    pub fn join(scopes: &[Scope]) -> String {
        scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn split(s: &str) -> Result<Vec<Scope>> {
        s.split(',')
            .filter(|p| !p.is_empty())
            .map(Scope::parse)
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organization {
    pub id: String,
    pub name: String,
    pub created_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    /// Also the `project` field of every `ModelIdentity` pushed with this project's keys.
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub created_ms: i64,
}

/// An API key as stored: never the key itself, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// Public, random lookup id embedded in the key (`nck_<prefix>_<secret>`).
    pub prefix: String,
    pub hash: [u8; 32],
    pub project_id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub created_ms: i64,
    pub revoked_ms: Option<i64>,
    pub last_used_ms: Option<i64>,
}

/// Which model a window or reference belongs to, once validated.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ModelKey {
    pub project_id: String,
    pub model: String,
    pub version: String,
    pub environment: String,
}

/// One part of a window: what one agent pushed for one (model, version, environment, window).
/// Several parts of the same window are merged on read.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowPart {
    /// `<batch_id>:<item index>`: stable across replays, so a replay cannot store it twice.
    pub id: String,
    pub key: ModelKey,
    pub window_start_ms: i64,
    pub window_length_ms: i64,
    pub rows: u64,
    pub agent_id: String,
    pub batch_id: String,
    pub received_ms: i64,
    /// The `WindowProfile` protobuf; left empty by queries that project it away.
    pub profile: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LabelPart {
    pub id: String,
    pub key: ModelKey,
    pub count: u64,
    pub batch_id: String,
    pub received_ms: i64,
    /// The `LabelBatch` protobuf.
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceRecord {
    pub id: String,
    pub key: ModelKey,
    pub created_ms: i64,
    pub received_ms: i64,
    /// The `ReferenceProfile` protobuf.
    pub payload: Vec<u8>,
}

/// One validated item of a batch, with its id already derived from the batch id.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchItem {
    Window(WindowPart),
    Labels(LabelPart),
    Reference(ReferenceRecord),
}

impl BatchItem {
    pub fn key(&self) -> &ModelKey {
        match self {
            BatchItem::Window(w) => &w.key,
            BatchItem::Labels(l) => &l.key,
            BatchItem::Reference(r) => &r.key,
        }
    }
}

/// A validated batch ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub project_id: String,
    pub batch_id: String,
    pub agent_id: String,
    pub received_ms: i64,
    pub items: Vec<BatchItem>,
}

/// Derives the id of item `index` of a batch; the same batch always gives the same ids.
pub fn item_id(batch_id: &str, index: usize) -> String {
    format!("{batch_id}:{index}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOutcome {
    /// The batch had been stored completely before; nothing was written this time.
    pub duplicate: bool,
    /// Items written by this call (0 for a duplicate).
    pub stored: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRecord {
    pub project_id: String,
    pub model: String,
    pub first_seen_ms: i64,
    /// Arrival of the latest batch for the model; the MongoDB backend refreshes it at most once
    /// a minute per collector (`mongo::REGISTRY_REFRESH_MS`).
    pub last_seen_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub project_id: String,
    pub model: String,
    pub version: String,
    pub environment: String,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
}

/// Window parts of one model over `[from_ms, to_ms)`, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WindowQuery {
    pub project_id: String,
    pub model: String,
    pub version: Option<String>,
    pub environment: Option<String>,
    pub from_ms: i64,
    pub to_ms: i64,
    /// false projects the profile bytes away (listing); true returns them.
    pub with_profile: bool,
}

/// Largest page any query returns, whatever the caller asks for.
pub const MAX_PAGE: u32 = 1000;
/// Items of a listing page when the API caller gives no limit.
pub const DEFAULT_PAGE: u32 = 100;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PageRequest {
    /// Opaque cursor from the previous page's `next`, or None for the first page.
    pub cursor: Option<String>,
    pub limit: u32,
}

impl PageRequest {
    pub fn first(limit: u32) -> PageRequest {
        PageRequest {
            cursor: None,
            limit,
        }
    }

    /// A page as an API caller asks for it (`?cursor=&limit=`), [`DEFAULT_PAGE`] items when
    /// no limit is given.
    pub fn requested(cursor: Option<String>, limit: Option<u32>) -> PageRequest {
        PageRequest {
            cursor,
            limit: limit.unwrap_or(DEFAULT_PAGE),
        }
    }

    /// Clamped to 1..=MAX_PAGE; the store fetches one more to know whether a next page exists.
    pub fn effective_limit(&self) -> u32 {
        self.limit.clamp(1, MAX_PAGE)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Cursor of the next page; None on the last page.
    pub next: Option<String>,
}

/// Position after the last item of a page. Encoded as base64url(JSON) so callers treat it as
/// opaque and a malformed one is rejected rather than misread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Sort key of the last item: a name, or a window start.
    #[serde(default)]
    pub after_name: Option<String>,
    #[serde(default)]
    pub after_ms: Option<i64>,
    /// Tie-breaker: id of the last item.
    pub after_id: String,
    /// Sequence number of the last audit entry (audit listings only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_seq: Option<i64>,
}

impl Cursor {
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    pub fn decode(s: &str) -> Result<Cursor> {
        let bad = |why: String| Error::Invalid(format!("cursor: {why}"));
        if s.len() > 1024 {
            return Err(bad("too long".into()));
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|e| bad(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))
    }
}

/// Builds a page from `limit + 1` fetched rows.
pub(crate) fn paginate<T>(
    mut rows: Vec<T>,
    limit: u32,
    cursor_of: impl Fn(&T) -> Cursor,
) -> Page<T> {
    let limit = limit as usize;
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|last| cursor_of(last).encode())
    } else {
        None
    };
    Page { items: rows, next }
}

/// One epoch of a lease. The pair (key, epoch) is unique: whoever inserts epoch N+1 first holds
/// the lease until `expires_ms`; renewing and taking over are both "insert the next epoch".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub key: String,
    pub epoch: i64,
    pub holder: String,
    pub acquired_ms: i64,
    pub expires_ms: i64,
}

/// A unit of per-window work (evaluation later; test jobs now).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub key: String,
    pub kind: String,
    pub created_ms: i64,
    /// How long a test job works, in milliseconds.
    pub work_ms: i64,
}

/// Proof that a job ran to the end. Unique per job key: a second completion is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletionRecord {
    pub key: String,
    pub holder: String,
    pub epoch: i64,
    pub completed_ms: i64,
}

/// Data the retention sweeper deletes by age.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetentionTarget {
    /// Window parts, by window start.
    Windows,
    /// Label batches, by arrival.
    Labels,
    /// Batch markers, by arrival. Once a marker is gone a replay of that batch would be stored
    /// again, so markers must live at least as long as the windows they protect.
    Batches,
    /// Lease epochs, by expiry.
    Leases,
    /// Jobs and their completions, by creation.
    Jobs,
}

impl RetentionTarget {
    pub const ALL: [RetentionTarget; 5] = [
        RetentionTarget::Windows,
        RetentionTarget::Labels,
        RetentionTarget::Batches,
        RetentionTarget::Leases,
        RetentionTarget::Jobs,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RetentionTarget::Windows => "windows",
            RetentionTarget::Labels => "labels",
            RetentionTarget::Batches => "batches",
            RetentionTarget::Leases => "leases",
            RetentionTarget::Jobs => "jobs",
        }
    }
}

/// One entry of an audit chain (see `crate::audit` for how entries are made and verified).
/// Entries are only ever inserted, never updated, and retention never deletes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// The project the chain belongs to, or `crate::audit::GLOBAL_CHAIN` for organization-level
    /// actions. Stored as `project_id`.
    pub chain: String,
    /// 1, 2, 3, … without gaps; unique per chain, which is what keeps concurrent appenders
    /// from forking the chain.
    pub seq: i64,
    pub time_ms: i64,
    /// `key:<api key prefix>`, `admin-cli` or `collector:<holder>`.
    pub actor: String,
    pub action: String,
    pub target: String,
    /// Canonical JSON (object keys sorted), hashed exactly as stored.
    pub detail: String,
    /// Hex SHA-256 of the previous entry; 64 zeros for seq 1.
    pub prev_hash: String,
    /// Hex SHA-256 of this entry's canonical encoding, `prev_hash` included.
    pub hash: String,
}

/// Which audit entries a listing returns: newest (highest seq) first, `time_ms` in
/// `[from_ms, to_ms)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    pub chain: String,
    pub from_ms: i64,
    pub to_ms: i64,
}

/// Decodes an audit listing's cursor into the last seq it returned.
pub(crate) fn audit_position(page: &PageRequest) -> Result<Option<i64>> {
    let Some(c) = page.cursor.as_deref() else {
        return Ok(None);
    };
    Cursor::decode(c)?
        .after_seq
        .map(Some)
        .ok_or_else(|| Error::Invalid("cursor: not an audit cursor".into()))
}

pub(crate) fn audit_cursor(e: &AuditEntry) -> Cursor {
    Cursor {
        after_name: None,
        after_ms: None,
        after_id: String::new(),
        after_seq: Some(e.seq),
    }
}

/// The collector's storage. Every method is durable when it returns Ok.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which backend, for logs and metrics ("sqlite" or "mongodb").
    fn backend(&self) -> &'static str;
    /// Creates tables/collections and indexes; safe to run on every start.
    async fn migrate(&self) -> Result<()>;
    /// Round trip to the database (readiness).
    async fn ping(&self) -> Result<()>;

    async fn create_organization(&self, org: &Organization) -> Result<()>;
    /// Fails with [`Error::Conflict`] when the id exists.
    async fn create_project(&self, project: &Project) -> Result<()>;
    async fn get_project(&self, id: &str) -> Result<Option<Project>>;

    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<()>;
    async fn find_api_key(&self, prefix: &str) -> Result<Option<ApiKeyRecord>>;
    /// Returns false when no such key exists; revoking twice keeps the first time.
    async fn revoke_api_key(&self, prefix: &str, at_ms: i64) -> Result<bool>;
    async fn touch_api_key(&self, prefix: &str, at_ms: i64) -> Result<()>;

    /// Stores a batch once. A replay (same project and batch id) writes nothing and reports
    /// `duplicate`. A batch interrupted midway is completed by its replay.
    async fn store_batch(&self, batch: &Batch) -> Result<BatchOutcome>;

    async fn list_models(&self, project_id: &str, page: &PageRequest) -> Result<Page<ModelRecord>>;
    async fn list_versions(
        &self,
        project_id: &str,
        model: &str,
        page: &PageRequest,
    ) -> Result<Page<VersionRecord>>;
    async fn list_windows(
        &self,
        query: &WindowQuery,
        page: &PageRequest,
    ) -> Result<Page<WindowPart>>;
    /// Every part of one window, with profiles, oldest arrival first.
    async fn window_parts(&self, key: &ModelKey, window_start_ms: i64) -> Result<Vec<WindowPart>>;
    async fn list_labels(&self, key: &ModelKey, page: &PageRequest) -> Result<Page<LabelPart>>;
    /// The reference with the highest `created_ms` for this model.
    async fn latest_reference(&self, key: &ModelKey) -> Result<Option<ReferenceRecord>>;

    /// Inserts a lease epoch; false when that (key, epoch) already exists (someone else won).
    async fn insert_lease(&self, lease: &LeaseRecord) -> Result<bool>;
    /// The highest epoch of a lease, if any.
    async fn current_lease(&self, key: &str) -> Result<Option<LeaseRecord>>;

    /// False when a job with this key exists.
    async fn insert_job(&self, job: &JobRecord) -> Result<bool>;
    /// Jobs with no completion yet, oldest first.
    async fn pending_jobs(&self, limit: u32) -> Result<Vec<JobRecord>>;
    /// False when the job had already been completed (by anyone).
    async fn insert_completion(&self, completion: &CompletionRecord) -> Result<bool>;
    async fn completions(&self, page: &PageRequest) -> Result<Page<CompletionRecord>>;

    /// Deletes what is older than `cutoff_ms`; returns how many records went.
    async fn delete_older_than(&self, target: RetentionTarget, cutoff_ms: i64) -> Result<u64>;

    /// Inserts an audit entry; false when its (chain, seq) exists (another appender won).
    async fn insert_audit(&self, entry: &AuditEntry) -> Result<bool>;
    /// The entry with the highest seq of a chain.
    async fn last_audit(&self, chain: &str) -> Result<Option<AuditEntry>>;
    /// Up to `limit` entries with seq > `after_seq`, lowest seq first (verification).
    /// An entry whose stored fields are of the wrong type is [`Error::Corrupt`].
    async fn audit_after(&self, chain: &str, after_seq: i64, limit: u32)
    -> Result<Vec<AuditEntry>>;
    /// Highest seq first, keyset-paginated on seq.
    async fn list_audit(&self, query: &AuditQuery, page: &PageRequest) -> Result<Page<AuditEntry>>;
}

pub type SharedStore = Arc<dyn Store>;

/// Opens the store a URI names: `sqlite://PATH` (or a bare path) or `mongodb://…` /
/// `mongodb+srv://…`. Runs migrations.
pub async fn open(uri: &str, mongo_database: &str) -> Result<SharedStore> {
    let store: SharedStore = if uri.starts_with("mongodb://") || uri.starts_with("mongodb+srv://") {
        Arc::new(mongo::MongoStore::connect(uri, mongo_database).await?)
    } else {
        let path = uri.strip_prefix("sqlite://").unwrap_or(uri);
        if path.is_empty() {
            return Err(Error::Config("storage uri: empty sqlite path".into()));
        }
        Arc::new(sqlite::SqliteStore::open(std::path::Path::new(path)).await?)
    };
    store.migrate().await?;
    Ok(store)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
