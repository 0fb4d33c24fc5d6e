//! Embedded store on SQLite (WAL, `synchronous=FULL`): what `neurocloak-collector serve` uses
//! out of the box. One connection behind a mutex; every call runs on the blocking pool.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{
    ApiKeyRecord, AuditEntry, AuditQuery, Batch, BatchItem, BatchOutcome, CompletionRecord, Cursor,
    JobRecord, LabelPart, LeaseRecord, ModelKey, ModelRecord, Organization, Page, PageRequest,
    Project, ReferenceRecord, RetentionTarget, Scope, Store, VersionRecord, WindowPart,
    WindowQuery, audit_cursor, audit_position, paginate,
};
use crate::{Error, Result};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS organizations (
  id TEXT PRIMARY KEY, name TEXT NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS projects (
  id TEXT PRIMARY KEY, org_id TEXT NOT NULL, name TEXT NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS api_keys (
  prefix TEXT PRIMARY KEY, hash BLOB NOT NULL, project_id TEXT NOT NULL, name TEXT NOT NULL,
  scopes TEXT NOT NULL, created_ms INTEGER NOT NULL, revoked_ms INTEGER, last_used_ms INTEGER);
CREATE TABLE IF NOT EXISTS models (
  project_id TEXT NOT NULL, model TEXT NOT NULL,
  first_seen_ms INTEGER NOT NULL, last_seen_ms INTEGER NOT NULL,
  PRIMARY KEY (project_id, model));
CREATE TABLE IF NOT EXISTS versions (
  project_id TEXT NOT NULL, model TEXT NOT NULL, version TEXT NOT NULL, environment TEXT NOT NULL,
  first_seen_ms INTEGER NOT NULL, last_seen_ms INTEGER NOT NULL,
  PRIMARY KEY (project_id, model, version, environment));
CREATE TABLE IF NOT EXISTS windows (
  project_id TEXT NOT NULL, id TEXT NOT NULL, model TEXT NOT NULL, version TEXT NOT NULL,
  environment TEXT NOT NULL, window_start INTEGER NOT NULL, window_length INTEGER NOT NULL,
  rows INTEGER NOT NULL, agent_id TEXT NOT NULL, batch_id TEXT NOT NULL,
  received_ms INTEGER NOT NULL, profile BLOB NOT NULL,
  PRIMARY KEY (project_id, id));
CREATE INDEX IF NOT EXISTS windows_by_model ON windows (project_id, model, window_start DESC);
CREATE INDEX IF NOT EXISTS windows_by_version
  ON windows (project_id, model, version, environment, window_start DESC);
CREATE INDEX IF NOT EXISTS windows_by_start ON windows (window_start);
CREATE TABLE IF NOT EXISTS labels (
  project_id TEXT NOT NULL, id TEXT NOT NULL, model TEXT NOT NULL, version TEXT NOT NULL,
  environment TEXT NOT NULL, count INTEGER NOT NULL, batch_id TEXT NOT NULL,
  received_ms INTEGER NOT NULL, payload BLOB NOT NULL,
  PRIMARY KEY (project_id, id));
CREATE INDEX IF NOT EXISTS labels_by_model
  ON labels (project_id, model, version, environment, received_ms);
CREATE INDEX IF NOT EXISTS labels_by_received ON labels (received_ms);
CREATE TABLE IF NOT EXISTS reference_profiles (
  project_id TEXT NOT NULL, id TEXT NOT NULL, model TEXT NOT NULL, version TEXT NOT NULL,
  environment TEXT NOT NULL, created_ms INTEGER NOT NULL, received_ms INTEGER NOT NULL,
  payload BLOB NOT NULL,
  PRIMARY KEY (project_id, id));
CREATE INDEX IF NOT EXISTS references_by_model
  ON reference_profiles (project_id, model, version, environment, created_ms DESC);
CREATE TABLE IF NOT EXISTS batches (
  project_id TEXT NOT NULL, batch_id TEXT NOT NULL, agent_id TEXT NOT NULL,
  items INTEGER NOT NULL, received_ms INTEGER NOT NULL,
  PRIMARY KEY (project_id, batch_id));
CREATE INDEX IF NOT EXISTS batches_by_received ON batches (received_ms);
CREATE TABLE IF NOT EXISTS leases (
  key TEXT NOT NULL, epoch INTEGER NOT NULL, holder TEXT NOT NULL,
  acquired_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL,
  PRIMARY KEY (key, epoch));
CREATE INDEX IF NOT EXISTS leases_by_expiry ON leases (expires_ms);
CREATE TABLE IF NOT EXISTS jobs (
  key TEXT PRIMARY KEY, kind TEXT NOT NULL, created_ms INTEGER NOT NULL, work_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_by_created ON jobs (created_ms, key);
CREATE TABLE IF NOT EXISTS completions (
  key TEXT PRIMARY KEY, holder TEXT NOT NULL, epoch INTEGER NOT NULL,
  completed_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
  project_id TEXT NOT NULL, seq INTEGER NOT NULL, time_ms INTEGER NOT NULL,
  actor TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, detail TEXT NOT NULL,
  prev_hash TEXT NOT NULL, hash TEXT NOT NULL,
  PRIMARY KEY (project_id, seq));
CREATE INDEX IF NOT EXISTS audit_by_time ON audit (project_id, time_ms DESC);
"#;

const WINDOW_COLUMNS: &str = "id, project_id, model, version, environment, window_start, \
    window_length, rows, agent_id, batch_id, received_ms";

/// One SQLite connection behind a mutex, used from blocking tasks. The store's own tables
/// and the pipeline's documents ([`super::eval_sqlite`]) open their connections this way.
#[derive(Clone)]
pub(crate) struct SqliteConn(Arc<Mutex<Connection>>);

impl SqliteConn {
    /// Opens (creating if needed) the database file, in WAL mode with `synchronous=FULL` so a
    /// committed batch survives power loss, not only a process crash.
    pub(crate) async fn open(path: &Path) -> Result<SqliteConn> {
        let path = path.to_path_buf();
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection> {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let conn = Connection::open(&path)?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "FULL")?;
            conn.pragma_update(None, "foreign_keys", "ON")?;
            conn.busy_timeout(std::time::Duration::from_secs(10))?;
            Ok(conn)
        })
        .await??;
        Ok(SqliteConn(Arc::new(Mutex::new(conn))))
    }

    pub(crate) async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| Error::Corrupt("sqlite connection mutex poisoned".into()))?;
            f(&mut guard)
        })
        .await?
    }
}

pub struct SqliteStore {
    conn: SqliteConn,
}

impl SqliteStore {
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        Ok(SqliteStore {
            conn: SqliteConn::open(path).await?,
        })
    }

    async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        self.conn.call(f).await
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(super) fn model_key(row: &Row<'_>, first: usize) -> rusqlite::Result<ModelKey> {
    Ok(ModelKey {
        project_id: row.get(first)?,
        model: row.get(first + 1)?,
        version: row.get(first + 2)?,
        environment: row.get(first + 3)?,
    })
}

/// Reads a row selected with [`WINDOW_COLUMNS`] (plus `profile` when `with_profile`).
fn window_row(row: &Row<'_>, with_profile: bool) -> rusqlite::Result<WindowPart> {
    Ok(WindowPart {
        id: row.get(0)?,
        key: model_key(row, 1)?,
        window_start_ms: row.get(5)?,
        window_length_ms: row.get(6)?,
        rows: to_u64(row.get(7)?),
        agent_id: row.get(8)?,
        batch_id: row.get(9)?,
        received_ms: row.get(10)?,
        profile: if with_profile {
            row.get(11)?
        } else {
            Vec::new()
        },
    })
}

fn api_key_row(row: &Row<'_>) -> rusqlite::Result<(ApiKeyRecord, String)> {
    let hash: Vec<u8> = row.get(1)?;
    let mut fixed = [0u8; 32];
    if hash.len() == 32 {
        fixed.copy_from_slice(&hash);
    }
    Ok((
        ApiKeyRecord {
            prefix: row.get(0)?,
            hash: fixed,
            project_id: row.get(2)?,
            name: row.get(3)?,
            scopes: Vec::new(),
            created_ms: row.get(5)?,
            revoked_ms: row.get(6)?,
            last_used_ms: row.get(7)?,
        },
        row.get(4)?,
    ))
}

const AUDIT_COLUMNS: &str =
    "project_id, seq, time_ms, actor, action, target, detail, prev_hash, hash";

/// Reads an audit row. A value of the wrong type (the columns are not typed in SQLite, so a
/// hand-edited row may hold one) is [`Error::Corrupt`], which verification reports as
/// tampering rather than as a database failure.
fn audit_row(row: &Row<'_>) -> Result<AuditEntry> {
    let read = || -> rusqlite::Result<AuditEntry> {
        Ok(AuditEntry {
            chain: row.get(0)?,
            seq: row.get(1)?,
            time_ms: row.get(2)?,
            actor: row.get(3)?,
            action: row.get(4)?,
            target: row.get(5)?,
            detail: row.get(6)?,
            prev_hash: row.get(7)?,
            hash: row.get(8)?,
        })
    };
    read().map_err(|e| match e {
        rusqlite::Error::InvalidColumnType(..) | rusqlite::Error::FromSqlConversionFailure(..) => {
            Error::Corrupt(format!("audit entry: {e}"))
        }
        other => other.into(),
    })
}

fn audit_rows(
    stmt: &mut rusqlite::Statement<'_>,
    p: impl rusqlite::Params,
) -> Result<Vec<AuditEntry>> {
    let mut rows = stmt.query(p)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(audit_row(row)?);
    }
    Ok(out)
}

fn lease_row(row: &Row<'_>) -> rusqlite::Result<LeaseRecord> {
    Ok(LeaseRecord {
        key: row.get(0)?,
        epoch: row.get(1)?,
        holder: row.get(2)?,
        acquired_ms: row.get(3)?,
        expires_ms: row.get(4)?,
    })
}

/// True when the error is a primary-key / unique violation, i.e. "someone wrote it first".
/// Other constraint failures (NOT NULL, CHECK, a trigger's RAISE) are real errors.
fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(err, _)
            if err.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                || err.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
    )
}

/// Runs an INSERT; false when a primary-key / unique constraint says the row exists.
pub(super) fn insert_unique(
    conn: &Connection,
    sql: &str,
    p: impl rusqlite::Params,
) -> Result<bool> {
    match conn.execute(sql, p) {
        Ok(_) => Ok(true),
        Err(e) if is_unique_violation(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn cursor_of(page: &PageRequest) -> Result<Option<Cursor>> {
    page.cursor.as_deref().map(Cursor::decode).transpose()
}

fn write_item(tx: &rusqlite::Transaction<'_>, item: &BatchItem, at: i64) -> Result<usize> {
    let k = item.key();
    let written = match item {
        BatchItem::Window(w) => tx.execute(
            "INSERT OR IGNORE INTO windows (id, project_id, model, version, environment, \
             window_start, window_length, rows, agent_id, batch_id, received_ms, profile) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                w.id,
                k.project_id,
                k.model,
                k.version,
                k.environment,
                w.window_start_ms,
                w.window_length_ms,
                to_i64(w.rows),
                w.agent_id,
                w.batch_id,
                w.received_ms,
                w.profile
            ],
        )?,
        BatchItem::Labels(l) => tx.execute(
            "INSERT OR IGNORE INTO labels (id, project_id, model, version, environment, count, \
             batch_id, received_ms, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                l.id,
                k.project_id,
                k.model,
                k.version,
                k.environment,
                to_i64(l.count),
                l.batch_id,
                l.received_ms,
                l.payload
            ],
        )?,
        BatchItem::Reference(r) => tx.execute(
            "INSERT OR IGNORE INTO reference_profiles (id, project_id, model, version, \
             environment, created_ms, received_ms, payload) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                r.id,
                k.project_id,
                k.model,
                k.version,
                k.environment,
                r.created_ms,
                r.received_ms,
                r.payload
            ],
        )?,
    };
    tx.execute(
        "INSERT INTO models (project_id, model, first_seen_ms, last_seen_ms) VALUES (?1, ?2, ?3, ?3) \
         ON CONFLICT (project_id, model) DO UPDATE SET last_seen_ms = max(last_seen_ms, ?3)",
        params![k.project_id, k.model, at],
    )?;
    tx.execute(
        "INSERT INTO versions (project_id, model, version, environment, first_seen_ms, \
         last_seen_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?5) \
         ON CONFLICT (project_id, model, version, environment) \
         DO UPDATE SET last_seen_ms = max(last_seen_ms, ?5)",
        params![k.project_id, k.model, k.version, k.environment, at],
    )?;
    Ok(written)
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> Result<()> {
        self.call(|c| Ok(c.execute_batch(SCHEMA)?)).await
    }

    async fn ping(&self) -> Result<()> {
        self.call(|c| Ok(c.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }

    async fn create_organization(&self, org: &Organization) -> Result<()> {
        let org = org.clone();
        self.call(move |c| {
            let fresh = insert_unique(
                c,
                "INSERT INTO organizations (id, name, created_ms) VALUES (?1, ?2, ?3)",
                params![org.id, org.name, org.created_ms],
            )?;
            fresh
                .then_some(())
                .ok_or_else(|| Error::Conflict(format!("organization {}", org.id)))
        })
        .await
    }

    async fn create_project(&self, project: &Project) -> Result<()> {
        let p = project.clone();
        self.call(move |c| {
            let fresh = insert_unique(
                c,
                "INSERT INTO projects (id, org_id, name, created_ms) VALUES (?1, ?2, ?3, ?4)",
                params![p.id, p.org_id, p.name, p.created_ms],
            )?;
            fresh
                .then_some(())
                .ok_or_else(|| Error::Conflict(format!("project {}", p.id)))
        })
        .await
    }

    async fn get_project(&self, id: &str) -> Result<Option<Project>> {
        let id = id.to_owned();
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT id, org_id, name, created_ms FROM projects WHERE id = ?1",
                [id],
                |r| {
                    Ok(Project {
                        id: r.get(0)?,
                        org_id: r.get(1)?,
                        name: r.get(2)?,
                        created_ms: r.get(3)?,
                    })
                },
            )
            .optional()?)
        })
        .await
    }

    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<()> {
        let k = key.clone();
        self.call(move |c| {
            let fresh = insert_unique(
                c,
                "INSERT INTO api_keys (prefix, hash, project_id, name, scopes, created_ms, \
                 revoked_ms, last_used_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    k.prefix,
                    k.hash.as_slice(),
                    k.project_id,
                    k.name,
                    Scope::join(&k.scopes),
                    k.created_ms,
                    k.revoked_ms,
                    k.last_used_ms
                ],
            )?;
            fresh
                .then_some(())
                .ok_or_else(|| Error::Conflict(format!("api key {}", k.prefix)))
        })
        .await
    }

    async fn find_api_key(&self, prefix: &str) -> Result<Option<ApiKeyRecord>> {
        let prefix = prefix.to_owned();
        self.call(move |c| {
            let found = c
                .query_row(
                    "SELECT prefix, hash, project_id, name, scopes, created_ms, revoked_ms, \
                     last_used_ms FROM api_keys WHERE prefix = ?1",
                    [prefix],
                    api_key_row,
                )
                .optional()?;
            found
                .map(|(mut rec, scopes)| {
                    rec.scopes = Scope::split(&scopes)?;
                    Ok(rec)
                })
                .transpose()
        })
        .await
    }

    async fn revoke_api_key(&self, prefix: &str, at_ms: i64) -> Result<bool> {
        let prefix = prefix.to_owned();
        self.call(move |c| {
            c.execute(
                "UPDATE api_keys SET revoked_ms = ?2 WHERE prefix = ?1 AND revoked_ms IS NULL",
                params![prefix, at_ms],
            )?;
            let exists = c
                .query_row("SELECT 1 FROM api_keys WHERE prefix = ?1", [prefix], |_| {
                    Ok(())
                })
                .optional()?;
            Ok(exists.is_some())
        })
        .await
    }

    async fn touch_api_key(&self, prefix: &str, at_ms: i64) -> Result<()> {
        let prefix = prefix.to_owned();
        self.call(move |c| {
            c.execute(
                "UPDATE api_keys SET last_used_ms = ?2 WHERE prefix = ?1 \
                 AND (last_used_ms IS NULL OR last_used_ms < ?2)",
                params![prefix, at_ms],
            )?;
            Ok(())
        })
        .await
    }

    async fn store_batch(&self, batch: &Batch) -> Result<BatchOutcome> {
        let batch = batch.clone();
        self.call(move |c| {
            // SQLite has transactions, so here the marker and the items commit together.
            // IMMEDIATE takes the write lock up front: a deferred transaction that reads first
            // fails at once with SQLITE_BUSY when another connection wrote in between.
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let seen = tx
                .query_row(
                    "SELECT 1 FROM batches WHERE project_id = ?1 AND batch_id = ?2",
                    params![batch.project_id, batch.batch_id],
                    |_| Ok(()),
                )
                .optional()?;
            if seen.is_some() {
                return Ok(BatchOutcome {
                    duplicate: true,
                    stored: 0,
                });
            }
            let mut stored = 0u32;
            for item in &batch.items {
                stored += u32::try_from(write_item(&tx, item, batch.received_ms)?).unwrap_or(0);
            }
            tx.execute(
                "INSERT INTO batches (project_id, batch_id, agent_id, items, received_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    batch.project_id,
                    batch.batch_id,
                    batch.agent_id,
                    i64::try_from(batch.items.len()).unwrap_or(i64::MAX),
                    batch.received_ms
                ],
            )?;
            tx.commit()?;
            Ok(BatchOutcome {
                duplicate: false,
                stored,
            })
        })
        .await
    }

    async fn list_models(&self, project_id: &str, page: &PageRequest) -> Result<Page<ModelRecord>> {
        let project_id = project_id.to_owned();
        let limit = page.effective_limit();
        let after = cursor_of(page)?
            .and_then(|c| c.after_name)
            .unwrap_or_default();
        self.call(move |c| {
            let mut stmt = c.prepare(
                "SELECT project_id, model, first_seen_ms, last_seen_ms FROM models \
                 WHERE project_id = ?1 AND model > ?2 ORDER BY model LIMIT ?3",
            )?;
            let rows = stmt
                .query_map(params![project_id, after, limit + 1], |r| {
                    Ok(ModelRecord {
                        project_id: r.get(0)?,
                        model: r.get(1)?,
                        first_seen_ms: r.get(2)?,
                        last_seen_ms: r.get(3)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(paginate(rows, limit, |m| Cursor {
                after_name: Some(m.model.clone()),
                after_ms: None,
                after_id: String::new(),
                after_seq: None,
            }))
        })
        .await
    }

    async fn list_versions(
        &self,
        project_id: &str,
        model: &str,
        page: &PageRequest,
    ) -> Result<Page<VersionRecord>> {
        let (project_id, model) = (project_id.to_owned(), model.to_owned());
        let limit = page.effective_limit();
        let cursor = cursor_of(page)?;
        // Empty strings sort first, and identity fields are never empty, so "" starts at the top.
        let after_version = cursor
            .as_ref()
            .and_then(|c| c.after_name.clone())
            .unwrap_or_default();
        let after_env = cursor.map(|c| c.after_id).unwrap_or_default();
        self.call(move |c| {
            let mut stmt = c.prepare(
                "SELECT project_id, model, version, environment, first_seen_ms, last_seen_ms \
                 FROM versions WHERE project_id = ?1 AND model = ?2 \
                 AND (version > ?3 OR (version = ?3 AND environment > ?4)) \
                 ORDER BY version, environment LIMIT ?5",
            )?;
            let rows = stmt
                .query_map(
                    params![project_id, model, after_version, after_env, limit + 1],
                    |r| {
                        Ok(VersionRecord {
                            project_id: r.get(0)?,
                            model: r.get(1)?,
                            version: r.get(2)?,
                            environment: r.get(3)?,
                            first_seen_ms: r.get(4)?,
                            last_seen_ms: r.get(5)?,
                        })
                    },
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(paginate(rows, limit, |v| Cursor {
                after_name: Some(v.version.clone()),
                after_ms: None,
                after_id: v.environment.clone(),
                after_seq: None,
            }))
        })
        .await
    }

    async fn list_windows(&self, q: &WindowQuery, page: &PageRequest) -> Result<Page<WindowPart>> {
        let q = q.clone();
        let limit = page.effective_limit();
        let cursor = cursor_of(page)?;
        let (after_ms, after_id) = match cursor {
            Some(Cursor {
                after_ms: Some(ms),
                after_id,
                ..
            }) => (ms, after_id),
            Some(_) => return Err(Error::Invalid("cursor: not a window cursor".into())),
            // Newest first: start "after" the end of the range.
            None => (q.to_ms, String::new()),
        };
        self.call(move |c| {
            let profile_col = if q.with_profile { ", profile" } else { "" };
            let sql = format!(
                "SELECT {WINDOW_COLUMNS}{profile_col} FROM windows \
                 WHERE project_id = ?1 AND model = ?2 \
                 AND (?3 IS NULL OR version = ?3) AND (?4 IS NULL OR environment = ?4) \
                 AND window_start >= ?5 AND window_start < ?6 \
                 AND (window_start < ?7 OR (window_start = ?7 AND id < ?8)) \
                 ORDER BY window_start DESC, id DESC LIMIT ?9"
            );
            // With no cursor, the first condition is just "window_start < to_ms", and the id
            // clause never matches because ids are never empty.
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt
                .query_map(
                    params![
                        q.project_id,
                        q.model,
                        q.version,
                        q.environment,
                        q.from_ms,
                        q.to_ms,
                        after_ms,
                        after_id,
                        limit + 1
                    ],
                    |r| window_row(r, q.with_profile),
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(paginate(rows, limit, |w| Cursor {
                after_name: None,
                after_ms: Some(w.window_start_ms),
                after_id: w.id.clone(),
                after_seq: None,
            }))
        })
        .await
    }

    async fn window_parts(&self, key: &ModelKey, window_start_ms: i64) -> Result<Vec<WindowPart>> {
        let k = key.clone();
        self.call(move |c| {
            let sql = format!(
                "SELECT {WINDOW_COLUMNS}, profile FROM windows WHERE project_id = ?1 AND \
                 model = ?2 AND version = ?3 AND environment = ?4 AND window_start = ?5 \
                 ORDER BY received_ms, id"
            );
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt
                .query_map(
                    params![
                        k.project_id,
                        k.model,
                        k.version,
                        k.environment,
                        window_start_ms
                    ],
                    |r| window_row(r, true),
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn list_labels(&self, key: &ModelKey, page: &PageRequest) -> Result<Page<LabelPart>> {
        let k = key.clone();
        let limit = page.effective_limit();
        let cursor = cursor_of(page)?;
        let after_ms = cursor.as_ref().and_then(|c| c.after_ms).unwrap_or(i64::MIN);
        let after_id = cursor.map(|c| c.after_id).unwrap_or_default();
        self.call(move |c| {
            let mut stmt = c.prepare(
                "SELECT id, project_id, model, version, environment, count, batch_id, \
                 received_ms, payload FROM labels WHERE project_id = ?1 AND model = ?2 \
                 AND version = ?3 AND environment = ?4 \
                 AND (received_ms > ?5 OR (received_ms = ?5 AND id > ?6)) \
                 ORDER BY received_ms, id LIMIT ?7",
            )?;
            let rows = stmt
                .query_map(
                    params![
                        k.project_id,
                        k.model,
                        k.version,
                        k.environment,
                        after_ms,
                        after_id,
                        limit + 1
                    ],
                    |r| {
                        Ok(LabelPart {
                            id: r.get(0)?,
                            key: model_key(r, 1)?,
                            count: to_u64(r.get(5)?),
                            batch_id: r.get(6)?,
                            received_ms: r.get(7)?,
                            payload: r.get(8)?,
                        })
                    },
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(paginate(rows, limit, |l| Cursor {
                after_name: None,
                after_ms: Some(l.received_ms),
                after_id: l.id.clone(),
                after_seq: None,
            }))
        })
        .await
    }

    async fn latest_reference(&self, key: &ModelKey) -> Result<Option<ReferenceRecord>> {
        let k = key.clone();
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT id, project_id, model, version, environment, created_ms, received_ms, \
                 payload FROM reference_profiles WHERE project_id = ?1 AND model = ?2 \
                 AND version = ?3 AND environment = ?4 \
                 ORDER BY created_ms DESC, received_ms DESC, id DESC LIMIT 1",
                params![k.project_id, k.model, k.version, k.environment],
                |r| {
                    Ok(ReferenceRecord {
                        id: r.get(0)?,
                        key: model_key(r, 1)?,
                        created_ms: r.get(5)?,
                        received_ms: r.get(6)?,
                        payload: r.get(7)?,
                    })
                },
            )
            .optional()?)
        })
        .await
    }

    async fn insert_lease(&self, lease: &LeaseRecord) -> Result<bool> {
        let l = lease.clone();
        self.call(move |c| {
            insert_unique(
                c,
                "INSERT INTO leases (key, epoch, holder, acquired_ms, expires_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![l.key, l.epoch, l.holder, l.acquired_ms, l.expires_ms],
            )
        })
        .await
    }

    async fn current_lease(&self, key: &str) -> Result<Option<LeaseRecord>> {
        let key = key.to_owned();
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT key, epoch, holder, acquired_ms, expires_ms FROM leases WHERE key = ?1 \
                 ORDER BY epoch DESC LIMIT 1",
                [key],
                lease_row,
            )
            .optional()?)
        })
        .await
    }

    async fn insert_job(&self, job: &JobRecord) -> Result<bool> {
        let j = job.clone();
        self.call(move |c| {
            insert_unique(
                c,
                "INSERT INTO jobs (key, kind, created_ms, work_ms) VALUES (?1, ?2, ?3, ?4)",
                params![j.key, j.kind, j.created_ms, j.work_ms],
            )
        })
        .await
    }

    async fn pending_jobs(&self, limit: u32) -> Result<Vec<JobRecord>> {
        self.call(move |c| {
            let mut stmt = c.prepare(
                "SELECT j.key, j.kind, j.created_ms, j.work_ms FROM jobs j \
                 LEFT JOIN completions d ON d.key = j.key WHERE d.key IS NULL \
                 ORDER BY j.created_ms, j.key LIMIT ?1",
            )?;
            let rows = stmt
                .query_map([limit], |r| {
                    Ok(JobRecord {
                        key: r.get(0)?,
                        kind: r.get(1)?,
                        created_ms: r.get(2)?,
                        work_ms: r.get(3)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn insert_completion(&self, done: &CompletionRecord) -> Result<bool> {
        let d = done.clone();
        self.call(move |c| {
            insert_unique(
                c,
                "INSERT INTO completions (key, holder, epoch, completed_ms) VALUES (?1, ?2, ?3, ?4)",
                params![d.key, d.holder, d.epoch, d.completed_ms],
            )
        })
        .await
    }

    async fn completions(&self, page: &PageRequest) -> Result<Page<CompletionRecord>> {
        let limit = page.effective_limit();
        let after = cursor_of(page)?.map(|c| c.after_id).unwrap_or_default();
        self.call(move |c| {
            let mut stmt = c.prepare(
                "SELECT key, holder, epoch, completed_ms FROM completions WHERE key > ?1 \
                 ORDER BY key LIMIT ?2",
            )?;
            let rows = stmt
                .query_map(params![after, limit + 1], |r| {
                    Ok(CompletionRecord {
                        key: r.get(0)?,
                        holder: r.get(1)?,
                        epoch: r.get(2)?,
                        completed_ms: r.get(3)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(paginate(rows, limit, |d| Cursor {
                after_name: None,
                after_ms: None,
                after_id: d.key.clone(),
                after_seq: None,
            }))
        })
        .await
    }

    async fn delete_older_than(&self, target: RetentionTarget, cutoff_ms: i64) -> Result<u64> {
        self.call(move |c| {
            let statements: &[&str] = match target {
                RetentionTarget::Windows => &["DELETE FROM windows WHERE window_start < ?1"],
                RetentionTarget::Labels => &["DELETE FROM labels WHERE received_ms < ?1"],
                RetentionTarget::Batches => &["DELETE FROM batches WHERE received_ms < ?1"],
                RetentionTarget::Leases => &["DELETE FROM leases WHERE expires_ms < ?1"],
                RetentionTarget::Jobs => &[
                    "DELETE FROM jobs WHERE created_ms < ?1",
                    "DELETE FROM completions WHERE completed_ms < ?1",
                ],
            };
            let mut deleted = 0u64;
            for sql in statements {
                deleted += c.execute(sql, [cutoff_ms])? as u64;
            }
            Ok(deleted)
        })
        .await
    }

    async fn insert_audit(&self, entry: &AuditEntry) -> Result<bool> {
        let e = entry.clone();
        self.call(move |c| {
            insert_unique(
                c,
                &format!(
                    "INSERT INTO audit ({AUDIT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                ),
                params![
                    e.chain,
                    e.seq,
                    e.time_ms,
                    e.actor,
                    e.action,
                    e.target,
                    e.detail,
                    e.prev_hash,
                    e.hash
                ],
            )
        })
        .await
    }

    async fn last_audit(&self, chain: &str) -> Result<Option<AuditEntry>> {
        let chain = chain.to_owned();
        self.call(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {AUDIT_COLUMNS} FROM audit WHERE project_id = ?1 ORDER BY seq DESC LIMIT 1"
            ))?;
            Ok(audit_rows(&mut stmt, params![chain])?.into_iter().next())
        })
        .await
    }

    async fn audit_after(
        &self,
        chain: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<AuditEntry>> {
        let chain = chain.to_owned();
        self.call(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {AUDIT_COLUMNS} FROM audit WHERE project_id = ?1 AND seq > ?2 \
                 ORDER BY seq LIMIT ?3"
            ))?;
            audit_rows(&mut stmt, params![chain, after_seq, limit])
        })
        .await
    }

    async fn list_audit(&self, q: &AuditQuery, page: &PageRequest) -> Result<Page<AuditEntry>> {
        let q = q.clone();
        let limit = page.effective_limit();
        let before = audit_position(page)?.unwrap_or(i64::MAX);
        let rows = self
            .call(move |c| {
                let mut stmt = c.prepare(&format!(
                    "SELECT {AUDIT_COLUMNS} FROM audit WHERE project_id = ?1 AND seq < ?2 \
                     AND time_ms >= ?3 AND time_ms < ?4 ORDER BY seq DESC LIMIT ?5"
                ))?;
                audit_rows(
                    &mut stmt,
                    params![q.chain, before, q.from_ms, q.to_ms, limit + 1],
                )
            })
            .await?;
        Ok(paginate(rows, limit, audit_cursor))
    }
}
