//! [`EvalStore`] on MongoDB (or FerretDB): one collection per [`Coll`], documents keyed by
//! `_id`. Inserts that must happen once rely on the unique `_id` (duplicate key = already
//! there), never on transactions or conditional updates.

use async_trait::async_trait;
use futures_util::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};

use super::eval::{
    Coll, Doc, DocQuery, EvalStore, MAX_GET_MANY, PartStub, doc_cursor, doc_position,
};
use super::{LabelPart, ModelKey, Page, PageRequest, paginate};
use crate::{Error, Result};

const DUPLICATE_KEY: i32 = 11000;

pub struct EvalMongo {
    db: Database,
}

impl EvalMongo {
    pub async fn connect(uri: &str, database: &str) -> Result<EvalMongo> {
        Ok(EvalMongo {
            db: super::mongo::durable_database(uri, database).await?,
        })
    }

    fn coll(&self, c: Coll) -> Collection<Document> {
        self.db.collection(c.name())
    }

    async fn index(&self, coll: &str, keys: Document, name: &str) -> Result<()> {
        let model = IndexModel::builder()
            .keys(keys)
            .options(IndexOptions::builder().name(name.to_owned()).build())
            .build();
        self.db
            .collection::<Document>(coll)
            .create_index(model)
            .await?;
        Ok(())
    }
}

fn is_duplicate(e: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == DUPLICATE_KEY,
        ErrorKind::InsertMany(m) => {
            m.write_concern_error.is_none()
                && m.write_errors
                    .as_ref()
                    .is_some_and(|errs| errs.iter().all(|w| w.code == DUPLICATE_KEY))
        }
        _ => false,
    }
}

fn to_bson(d: &Doc) -> Document {
    doc! {
        "_id": &d.id, "project_id": &d.project_id, "scope": &d.scope, "kind": &d.kind,
        "status": &d.status, "time_ms": d.time_ms, "body": &d.body,
    }
}

fn corrupt(field: &str) -> Error {
    Error::Corrupt(format!(
        "pipeline document field {field} missing or mistyped"
    ))
}

fn text(d: &Document, f: &str) -> Result<String> {
    d.get_str(f).map(str::to_owned).map_err(|_| corrupt(f))
}

fn int(d: &Document, f: &str) -> Result<i64> {
    match d.get(f) {
        Some(Bson::Int64(v)) => Ok(*v),
        Some(Bson::Int32(v)) => Ok(i64::from(*v)),
        _ => Err(corrupt(f)),
    }
}

fn from_bson(d: &Document) -> Result<Doc> {
    Ok(Doc {
        id: text(d, "_id")?,
        project_id: text(d, "project_id")?,
        scope: text(d, "scope")?,
        kind: text(d, "kind")?,
        status: text(d, "status")?,
        time_ms: int(d, "time_ms")?,
        body: text(d, "body")?,
    })
}

fn filter(q: &DocQuery) -> Document {
    let mut f = doc! { "time_ms": { "$gte": q.from_ms, "$lt": q.to_ms } };
    for (field, v) in [
        ("project_id", &q.project_id),
        ("scope", &q.scope),
        ("kind", &q.kind),
        ("status", &q.status),
    ] {
        if let Some(v) = v {
            f.insert(field, v);
        }
    }
    f
}

#[async_trait]
impl EvalStore for EvalMongo {
    fn backend(&self) -> &'static str {
        "mongodb"
    }

    async fn migrate(&self) -> Result<()> {
        for c in Coll::ALL {
            let n = c.name();
            self.index(
                n,
                doc! { "project_id": 1, "scope": 1, "time_ms": -1 },
                "by_scope",
            )
            .await?;
            self.index(
                n,
                doc! { "project_id": 1, "kind": 1, "status": 1 },
                "by_kind",
            )
            .await?;
            self.index(n, doc! { "time_ms": 1 }, "by_time").await?;
        }
        self.index("windows", doc! { "received_ms": 1 }, "by_received")
            .await?;
        Ok(())
    }

    async fn insert(&self, coll: Coll, d: &Doc) -> Result<bool> {
        match self.coll(coll).insert_one(to_bson(d)).await {
            Ok(_) => Ok(true),
            Err(e) if is_duplicate(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn insert_many(&self, coll: Coll, docs: &[Doc]) -> Result<u64> {
        if docs.is_empty() {
            return Ok(0);
        }
        let total = docs.len() as u64;
        match self
            .coll(coll)
            .insert_many(docs.iter().map(to_bson))
            .ordered(false)
            .await
        {
            Ok(r) => Ok(r.inserted_ids.len() as u64),
            Err(e) if is_duplicate(&e) => {
                let dups = match e.kind.as_ref() {
                    mongodb::error::ErrorKind::InsertMany(m) => {
                        m.write_errors.as_ref().map_or(0, Vec::len) as u64
                    }
                    _ => 0,
                };
                Ok(total.saturating_sub(dups))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn upsert(&self, coll: Coll, d: &Doc) -> Result<()> {
        self.coll(coll)
            .replace_one(doc! { "_id": &d.id }, to_bson(d))
            .upsert(true)
            .await?;
        Ok(())
    }

    async fn get(&self, coll: Coll, id: &str) -> Result<Option<Doc>> {
        self.coll(coll)
            .find_one(doc! { "_id": id })
            .await?
            .as_ref()
            .map(from_bson)
            .transpose()
    }

    async fn get_many(&self, coll: Coll, ids: &[String]) -> Result<Vec<Doc>> {
        if ids.len() > MAX_GET_MANY {
            return Err(Error::Invalid(format!(
                "get_many: {} ids, at most {MAX_GET_MANY}",
                ids.len()
            )));
        }
        let mut out = Vec::new();
        for chunk in ids.chunks(1000) {
            let docs: Vec<Document> = self
                .coll(coll)
                .find(doc! { "_id": { "$in": chunk } })
                .await?
                .try_collect()
                .await?;
            for d in &docs {
                out.push(from_bson(d)?);
            }
        }
        Ok(out)
    }

    async fn delete(&self, coll: Coll, id: &str) -> Result<bool> {
        let r = self.coll(coll).delete_one(doc! { "_id": id }).await?;
        Ok(r.deleted_count > 0)
    }

    async fn list(&self, coll: Coll, q: &DocQuery, page: &PageRequest) -> Result<Page<Doc>> {
        let limit = page.effective_limit();
        let mut f = filter(q);
        if let Some((ms, id)) = doc_position(page)? {
            f.insert(
                "$or",
                vec![
                    doc! { "time_ms": { "$lt": ms } },
                    doc! { "time_ms": ms, "_id": { "$lt": id } },
                ],
            );
        }
        let docs: Vec<Document> = self
            .coll(coll)
            .find(f)
            .sort(doc! { "time_ms": -1, "_id": -1 })
            .limit(i64::from(limit) + 1)
            .await?
            .try_collect()
            .await?;
        let rows = docs.iter().map(from_bson).collect::<Result<Vec<_>>>()?;
        Ok(paginate(rows, limit, doc_cursor))
    }

    async fn count(&self, coll: Coll, q: &DocQuery) -> Result<u64> {
        Ok(self.coll(coll).count_documents(filter(q)).await?)
    }

    async fn delete_older_than(&self, coll: Coll, cutoff_ms: i64) -> Result<u64> {
        let r = self
            .coll(coll)
            .delete_many(doc! { "time_ms": { "$lt": cutoff_ms } })
            .await?;
        Ok(r.deleted_count)
    }

    async fn parts_since(&self, since_ms: i64, limit: u32) -> Result<Vec<PartStub>> {
        let docs: Vec<Document> = self
            .db
            .collection::<Document>("windows")
            .find(doc! { "received_ms": { "$gte": since_ms } })
            .projection(doc! { "profile": 0 })
            .sort(doc! { "received_ms": 1, "_id": 1 })
            .limit(i64::from(limit))
            .await?
            .try_collect()
            .await?;
        docs.iter()
            .map(|d| {
                Ok(PartStub {
                    id: text(d, "part_id")?,
                    key: model_key(d)?,
                    window_start_ms: int(d, "window_start")?,
                    window_length_ms: int(d, "window_length")?,
                    received_ms: int(d, "received_ms")?,
                })
            })
            .collect()
    }

    async fn label_parts_since(&self, since_ms: i64, limit: u32) -> Result<Vec<LabelPart>> {
        let docs: Vec<Document> = self
            .db
            .collection::<Document>("labels")
            .find(doc! { "received_ms": { "$gte": since_ms } })
            .sort(doc! { "received_ms": 1, "_id": 1 })
            .limit(i64::from(limit))
            .await?
            .try_collect()
            .await?;
        docs.iter()
            .map(|d| {
                Ok(LabelPart {
                    id: text(d, "part_id")?,
                    key: model_key(d)?,
                    count: u64::try_from(int(d, "count")?).unwrap_or(0),
                    batch_id: text(d, "batch_id")?,
                    received_ms: int(d, "received_ms")?,
                    payload: match d.get("payload") {
                        Some(Bson::Binary(b)) => b.bytes.clone(),
                        _ => return Err(corrupt("payload")),
                    },
                })
            })
            .collect()
    }
}

fn model_key(d: &Document) -> Result<ModelKey> {
    Ok(ModelKey {
        project_id: text(d, "project_id")?,
        model: text(d, "model")?,
        version: text(d, "version")?,
        environment: text(d, "environment")?,
    })
}
