//! [`EvalStore`] on SQLite: one table per [`Coll`], in the same database file as the ingest
//! tables, through a second connection (WAL lets it read while ingest writes).

use std::path::Path;

use async_trait::async_trait;
use rusqlite::{Connection, Row, params, params_from_iter};

use super::eval::{
    Coll, Doc, DocQuery, EvalStore, MAX_GET_MANY, PartStub, doc_cursor, doc_position,
};
use super::sqlite::{SqliteConn, insert_unique, model_key};
use super::{LabelPart, Page, PageRequest, paginate};
use crate::{Error, Result};

pub struct EvalSqlite {
    conn: SqliteConn,
}

impl EvalSqlite {
    pub async fn open(path: &Path) -> Result<EvalSqlite> {
        Ok(EvalSqlite {
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

const DOC_COLUMNS: &str = "id, project_id, scope, kind, status, time_ms, body";

fn doc_row(row: &Row<'_>) -> rusqlite::Result<Doc> {
    Ok(Doc {
        id: row.get(0)?,
        project_id: row.get(1)?,
        scope: row.get(2)?,
        kind: row.get(3)?,
        status: row.get(4)?,
        time_ms: row.get(5)?,
        body: row.get(6)?,
    })
}

fn insert_one(conn: &Connection, coll: Coll, d: &Doc) -> Result<bool> {
    let sql = format!(
        "INSERT INTO {} ({DOC_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        coll.name()
    );
    insert_unique(
        conn,
        &sql,
        params![
            d.id,
            d.project_id,
            d.scope,
            d.kind,
            d.status,
            d.time_ms,
            d.body
        ],
    )
}

/// WHERE clause and parameters of a query (optionally after a cursor position).
fn filter(q: &DocQuery, after: Option<(i64, String)>) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value as V;
    let mut clauses = vec!["time_ms >= ?".to_owned(), "time_ms < ?".to_owned()];
    let mut values = vec![V::Integer(q.from_ms), V::Integer(q.to_ms)];
    for (col, v) in [
        ("project_id", &q.project_id),
        ("scope", &q.scope),
        ("kind", &q.kind),
        ("status", &q.status),
    ] {
        if let Some(v) = v {
            clauses.push(format!("{col} = ?"));
            values.push(V::Text(v.clone()));
        }
    }
    if let Some((ms, id)) = after {
        clauses.push("(time_ms < ? OR (time_ms = ? AND id < ?))".into());
        values.extend([V::Integer(ms), V::Integer(ms), V::Text(id)]);
    }
    (clauses.join(" AND "), values)
}

#[async_trait]
impl EvalStore for EvalSqlite {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> Result<()> {
        self.call(|conn| {
            let mut sql = String::new();
            for c in Coll::ALL {
                let n = c.name();
                sql.push_str(&format!(
                    "CREATE TABLE IF NOT EXISTS {n} (id TEXT PRIMARY KEY, project_id TEXT NOT NULL, \
                     scope TEXT NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL, \
                     time_ms INTEGER NOT NULL, body TEXT NOT NULL);\n\
                     CREATE INDEX IF NOT EXISTS {n}_by_scope ON {n} (project_id, scope, time_ms DESC);\n\
                     CREATE INDEX IF NOT EXISTS {n}_by_kind ON {n} (project_id, kind, status);\n\
                     CREATE INDEX IF NOT EXISTS {n}_by_time ON {n} (time_ms);\n"
                ));
            }
            // The arrival scan reads ingest's table, which ingest's own migration creates
            // (the collector opens that store first); ingest never needed this order.
            let ingest_tables: i64 = conn.query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'windows'",
                [],
                |r| r.get(0),
            )?;
            if ingest_tables > 0 {
                sql.push_str(
                    "CREATE INDEX IF NOT EXISTS windows_by_received ON windows (received_ms);\n",
                );
            }
            conn.execute_batch(&sql)?;
            Ok(())
        })
        .await
    }

    async fn insert(&self, coll: Coll, doc: &Doc) -> Result<bool> {
        let d = doc.clone();
        self.call(move |conn| insert_one(conn, coll, &d)).await
    }

    async fn insert_many(&self, coll: Coll, docs: &[Doc]) -> Result<u64> {
        let docs = docs.to_vec();
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let mut n = 0;
            {
                let sql = format!(
                    "INSERT OR IGNORE INTO {} ({DOC_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    coll.name()
                );
                let mut stmt = tx.prepare(&sql)?;
                for d in &docs {
                    n += stmt.execute(params![
                        d.id,
                        d.project_id,
                        d.scope,
                        d.kind,
                        d.status,
                        d.time_ms,
                        d.body
                    ])? as u64;
                }
            }
            tx.commit()?;
            Ok(n)
        })
        .await
    }

    async fn upsert(&self, coll: Coll, doc: &Doc) -> Result<()> {
        let d = doc.clone();
        self.call(move |conn| {
            conn.execute(
                &format!(
                    "INSERT OR REPLACE INTO {} ({DOC_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    coll.name()
                ),
                params![
                    d.id,
                    d.project_id,
                    d.scope,
                    d.kind,
                    d.status,
                    d.time_ms,
                    d.body
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn get(&self, coll: Coll, id: &str) -> Result<Option<Doc>> {
        let id = id.to_owned();
        self.call(move |conn| {
            let sql = format!("SELECT {DOC_COLUMNS} FROM {} WHERE id = ?1", coll.name());
            let mut stmt = conn.prepare(&sql)?;
            let mut rows = stmt.query_map(params![id], doc_row)?;
            Ok(rows.next().transpose()?)
        })
        .await
    }

    async fn get_many(&self, coll: Coll, ids: &[String]) -> Result<Vec<Doc>> {
        if ids.len() > MAX_GET_MANY {
            return Err(Error::Invalid(format!(
                "get_many: {} ids, at most {MAX_GET_MANY}",
                ids.len()
            )));
        }
        let ids = ids.to_vec();
        self.call(move |conn| {
            let mut out = Vec::new();
            // SQLite caps bound parameters per statement (32766 since 3.32); stay well below.
            for chunk in ids.chunks(500) {
                let marks = vec!["?"; chunk.len()].join(",");
                let sql = format!(
                    "SELECT {DOC_COLUMNS} FROM {} WHERE id IN ({marks})",
                    coll.name()
                );
                let mut stmt = conn.prepare(&sql)?;
                let rows = stmt.query_map(params_from_iter(chunk.iter()), doc_row)?;
                for r in rows {
                    out.push(r?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn delete(&self, coll: Coll, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.call(move |conn| {
            let n = conn.execute(
                &format!("DELETE FROM {} WHERE id = ?1", coll.name()),
                params![id],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn list(&self, coll: Coll, q: &DocQuery, page: &PageRequest) -> Result<Page<Doc>> {
        let after = doc_position(page)?;
        let limit = page.effective_limit();
        let (clause, mut values) = filter(q, after);
        values.push(rusqlite::types::Value::Integer(i64::from(limit) + 1));
        let sql = format!(
            "SELECT {DOC_COLUMNS} FROM {} WHERE {clause} ORDER BY time_ms DESC, id DESC LIMIT ?",
            coll.name()
        );
        let rows = self
            .call(move |conn| {
                let mut stmt = conn.prepare(&sql)?;
                let rows = stmt.query_map(params_from_iter(values.iter()), doc_row)?;
                Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .await?;
        Ok(paginate(rows, limit, doc_cursor))
    }

    async fn count(&self, coll: Coll, q: &DocQuery) -> Result<u64> {
        let (clause, values) = filter(q, None);
        let sql = format!("SELECT COUNT(*) FROM {} WHERE {clause}", coll.name());
        self.call(move |conn| {
            let n: i64 = conn.query_row(&sql, params_from_iter(values.iter()), |r| r.get(0))?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    async fn delete_older_than(&self, coll: Coll, cutoff_ms: i64) -> Result<u64> {
        self.call(move |conn| {
            let n = conn.execute(
                &format!("DELETE FROM {} WHERE time_ms < ?1", coll.name()),
                params![cutoff_ms],
            )?;
            Ok(n as u64)
        })
        .await
    }

    async fn parts_since(&self, since_ms: i64, limit: u32) -> Result<Vec<PartStub>> {
        self.call(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT id, project_id, model, version, environment, window_start, window_length, \
                 received_ms FROM windows WHERE received_ms >= ?1 \
                 ORDER BY received_ms, id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![since_ms, i64::from(limit)], |r| {
                Ok(PartStub {
                    id: r.get(0)?,
                    key: model_key(r, 1)?,
                    window_start_ms: r.get(5)?,
                    window_length_ms: r.get(6)?,
                    received_ms: r.get(7)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn label_parts_since(&self, since_ms: i64, limit: u32) -> Result<Vec<LabelPart>> {
        self.call(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT id, project_id, model, version, environment, count, batch_id, \
                 received_ms, payload FROM labels WHERE received_ms >= ?1 \
                 ORDER BY received_ms, id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![since_ms, i64::from(limit)], |r| {
                Ok(LabelPart {
                    id: r.get(0)?,
                    key: model_key(r, 1)?,
                    count: u64::try_from(r.get::<_, i64>(5)?).unwrap_or(0),
                    batch_id: r.get(6)?,
                    received_ms: r.get(7)?,
                    payload: r.get(8)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }
}
