//! Production store on MongoDB (6+) through the official driver; also runs on FerretDB.
//!
//! Every write that must happen once is an insert with a deterministic `_id`: a duplicate-key
//! error (11000) means "already there", which is how batches stay idempotent and leases stay
//! exclusive without transactions or atomic conditional updates.

use async_trait::async_trait;
use futures_util::TryStreamExt;
use mongodb::bson::{Binary, Bson, Document, doc, spec::BinarySubtype};
use mongodb::options::{Acknowledgment, IndexOptions, WriteConcern};
use mongodb::{Client, Collection, Database, IndexModel};

use super::{
    ApiKeyRecord, AuditEntry, AuditQuery, Batch, BatchItem, BatchOutcome, CompletionRecord, Cursor,
    JobRecord, LabelPart, LeaseRecord, ModelKey, ModelRecord, Organization, Page, PageRequest,
    Project, ReferenceRecord, RetentionTarget, Scope, Store, VersionRecord, WindowPart,
    WindowQuery, audit_cursor, audit_position, paginate,
};
use crate::{Error, Result};

const DUPLICATE_KEY: i32 = 11000;
/// Joins parts of a composite `_id`. Identity fields are validated to hold no control
/// characters, so this separator cannot occur inside a part.
const SEP: char = '\u{1f}';

/// The database handle every MongoDB collection of the collector is written through (the store's
/// own and the pipeline's documents, [`super::eval_mongo`]). Writes use `w: majority, j: true`,
/// so an acknowledged write is on a majority of replica-set members' journals.
pub(crate) async fn durable_database(uri: &str, database: &str) -> Result<Database> {
    let client = Client::with_uri_str(uri).await?;
    let wc = WriteConcern::builder()
        .w(Acknowledgment::Majority)
        .journal(true)
        .build();
    let options = mongodb::options::DatabaseOptions::builder()
        .write_concern(wc)
        .build();
    Ok(client.database_with_options(database, options))
}

pub struct MongoStore {
    db: Database,
    /// When this process last wrote each model/version's registry entry: ingest rewrites it
    /// at most once per [`REGISTRY_REFRESH_MS`] instead of twice per batch item.
    registry_touched: std::sync::Mutex<std::collections::HashMap<ModelKey, i64>>,
}

/// `last_seen_ms` of models and versions is therefore accurate to this much.
pub const REGISTRY_REFRESH_MS: i64 = 60_000;

impl MongoStore {
    pub async fn connect(uri: &str, database: &str) -> Result<MongoStore> {
        Ok(MongoStore {
            db: durable_database(uri, database).await?,
            registry_touched: Default::default(),
        })
    }

    fn coll(&self, name: &str) -> Collection<Document> {
        self.db.collection(name)
    }

    async fn index(&self, coll: &str, keys: Document, name: &str) -> Result<()> {
        self.create_index(coll, keys, name, false).await
    }

    async fn create_index(
        &self,
        coll: &str,
        keys: Document,
        name: &str,
        unique: bool,
    ) -> Result<()> {
        let options = IndexOptions::builder()
            .name(name.to_owned())
            .unique(unique.then_some(true))
            .build();
        let model = IndexModel::builder().keys(keys).options(options).build();
        self.coll(coll).create_index(model).await?;
        Ok(())
    }

    /// Inserts one document; false when its `_id` exists.
    async fn insert_unique(&self, coll: &str, document: Document) -> Result<bool> {
        match self.coll(coll).insert_one(document).await {
            Ok(_) => Ok(true),
            Err(e) if duplicate_only(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Inserts documents, skipping those whose `_id` exists; returns how many were new.
    async fn insert_many_unique(&self, coll: &str, docs: Vec<Document>) -> Result<u32> {
        if docs.is_empty() {
            return Ok(0);
        }
        let total = u32::try_from(docs.len()).unwrap_or(u32::MAX);
        match self.coll(coll).insert_many(docs).ordered(false).await {
            Ok(r) => Ok(u32::try_from(r.inserted_ids.len()).unwrap_or(total)),
            Err(e) if duplicate_only(&e) => {
                let dups = match e.kind.as_ref() {
                    mongodb::error::ErrorKind::InsertMany(m) => {
                        m.write_errors.as_ref().map_or(0, Vec::len)
                    }
                    _ => 0,
                };
                Ok(total.saturating_sub(u32::try_from(dups).unwrap_or(total)))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn find_all(
        &self,
        coll: &str,
        filter: Document,
        sort: Document,
        limit: i64,
        projection: Option<Document>,
    ) -> Result<Vec<Document>> {
        let collection = self.coll(coll);
        let mut find = collection.find(filter).sort(sort).limit(limit);
        if let Some(p) = projection {
            find = find.projection(p);
        }
        Ok(find.await?.try_collect().await?)
    }

    fn registry_stale(&self, key: &ModelKey, at: i64) -> bool {
        // A poisoned lock only loses the cache: writing the registry again is always correct.
        self.registry_touched
            .lock()
            .map(|m| {
                m.get(key)
                    .is_none_or(|t| at - t >= REGISTRY_REFRESH_MS || at < *t)
            })
            .unwrap_or(true)
    }

    fn registry_written(&self, key: &ModelKey, at: i64) {
        if let Ok(mut m) = self.registry_touched.lock() {
            m.insert(key.clone(), at);
        }
    }

    async fn touch_registry(&self, key: &ModelKey, at: i64) -> Result<()> {
        let model_id = join(&[&key.project_id, &key.model]);
        self.coll("models")
            .update_one(
                doc! { "_id": model_id },
                doc! {
                    "$setOnInsert": {
                        "project_id": &key.project_id, "model": &key.model, "first_seen_ms": at,
                    },
                    "$max": { "last_seen_ms": at },
                },
            )
            .upsert(true)
            .await?;
        let version_id = join(&[&key.project_id, &key.model, &key.version, &key.environment]);
        self.coll("versions")
            .update_one(
                doc! { "_id": version_id },
                doc! {
                    "$setOnInsert": {
                        "project_id": &key.project_id, "model": &key.model,
                        "version": &key.version, "environment": &key.environment,
                        "first_seen_ms": at,
                    },
                    "$max": { "last_seen_ms": at },
                },
            )
            .upsert(true)
            .await?;
        Ok(())
    }
}

fn join(parts: &[&str]) -> String {
    let mut s = String::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            s.push(SEP);
        }
        s.push_str(p);
    }
    s
}

/// True when every write error of `e` is a duplicate key.
fn duplicate_only(e: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(we)) => is_duplicate(we.code, &we.message),
        ErrorKind::InsertMany(m) => {
            m.write_concern_error.is_none()
                && m.write_errors
                    .as_ref()
                    .is_some_and(|errs| errs.iter().all(|we| is_duplicate(we.code, &we.message)))
        }
        ErrorKind::Command(c) => is_duplicate(c.code, &c.message),
        _ => false,
    }
}

/// MongoDB reports every unique-index violation as 11000. FerretDB 1.x does for `_id`, but a
/// unique secondary index (the audit's `by_seq`) fails as InternalError (1) carrying SQLite's
/// message; both mean "someone wrote it first".
fn is_duplicate(code: i32, message: &str) -> bool {
    code == DUPLICATE_KEY || (code == 1 && message.contains("UNIQUE constraint failed"))
}

fn bin(bytes: &[u8]) -> Binary {
    Binary {
        subtype: BinarySubtype::Generic,
        bytes: bytes.to_vec(),
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn corrupt(field: &str, d: &Document) -> Error {
    let id = d.get("_id").map(ToString::to_string).unwrap_or_default();
    Error::Corrupt(format!(
        "field {field:?} missing or of the wrong type in document {id}"
    ))
}

fn get_str(d: &Document, field: &str) -> Result<String> {
    d.get_str(field)
        .map(str::to_owned)
        .map_err(|_| corrupt(field, d))
}

/// Integers may come back as int32 or int64 (or double from other writers).
fn get_i64(d: &Document, field: &str) -> Result<i64> {
    match d.get(field) {
        Some(Bson::Int64(v)) => Ok(*v),
        Some(Bson::Int32(v)) => Ok(i64::from(*v)),
        Some(Bson::Double(v)) if v.fract() == 0.0 => Ok(*v as i64),
        _ => Err(corrupt(field, d)),
    }
}

fn get_opt_i64(d: &Document, field: &str) -> Result<Option<i64>> {
    match d.get(field) {
        None | Some(Bson::Null) => Ok(None),
        Some(_) => get_i64(d, field).map(Some),
    }
}

fn get_bytes(d: &Document, field: &str) -> Result<Vec<u8>> {
    match d.get(field) {
        Some(Bson::Binary(b)) => Ok(b.bytes.clone()),
        None => Ok(Vec::new()),
        _ => Err(corrupt(field, d)),
    }
}

fn key_doc(k: &ModelKey) -> Document {
    doc! {
        "project_id": &k.project_id, "model": &k.model,
        "version": &k.version, "environment": &k.environment,
    }
}

fn read_key(d: &Document) -> Result<ModelKey> {
    Ok(ModelKey {
        project_id: get_str(d, "project_id")?,
        model: get_str(d, "model")?,
        version: get_str(d, "version")?,
        environment: get_str(d, "environment")?,
    })
}

fn window_doc(w: &WindowPart) -> Document {
    let mut d = doc! { "_id": join(&[&w.key.project_id, &w.id]), "part_id": &w.id };
    d.extend(key_doc(&w.key));
    d.extend(doc! {
        "window_start": w.window_start_ms, "window_length": w.window_length_ms,
        "rows": to_i64(w.rows), "agent_id": &w.agent_id, "batch_id": &w.batch_id,
        "received_ms": w.received_ms, "profile": bin(&w.profile),
    });
    d
}

fn read_window(d: &Document) -> Result<WindowPart> {
    Ok(WindowPart {
        id: get_str(d, "part_id")?,
        key: read_key(d)?,
        window_start_ms: get_i64(d, "window_start")?,
        window_length_ms: get_i64(d, "window_length")?,
        rows: u64::try_from(get_i64(d, "rows")?).unwrap_or(0),
        agent_id: get_str(d, "agent_id")?,
        batch_id: get_str(d, "batch_id")?,
        received_ms: get_i64(d, "received_ms")?,
        profile: get_bytes(d, "profile")?,
    })
}

fn label_doc(l: &LabelPart) -> Document {
    let mut d = doc! { "_id": join(&[&l.key.project_id, &l.id]), "part_id": &l.id };
    d.extend(key_doc(&l.key));
    d.extend(doc! {
        "count": to_i64(l.count), "batch_id": &l.batch_id, "received_ms": l.received_ms,
        "payload": bin(&l.payload),
    });
    d
}

fn read_label(d: &Document) -> Result<LabelPart> {
    Ok(LabelPart {
        id: get_str(d, "part_id")?,
        key: read_key(d)?,
        count: u64::try_from(get_i64(d, "count")?).unwrap_or(0),
        batch_id: get_str(d, "batch_id")?,
        received_ms: get_i64(d, "received_ms")?,
        payload: get_bytes(d, "payload")?,
    })
}

fn reference_doc(r: &ReferenceRecord) -> Document {
    let mut d = doc! { "_id": join(&[&r.key.project_id, &r.id]), "part_id": &r.id };
    d.extend(key_doc(&r.key));
    d.extend(doc! {
        "created_ms": r.created_ms, "received_ms": r.received_ms, "payload": bin(&r.payload),
    });
    d
}

fn read_reference(d: &Document) -> Result<ReferenceRecord> {
    Ok(ReferenceRecord {
        id: get_str(d, "part_id")?,
        key: read_key(d)?,
        created_ms: get_i64(d, "created_ms")?,
        received_ms: get_i64(d, "received_ms")?,
        payload: get_bytes(d, "payload")?,
    })
}

fn read_lease(d: &Document) -> Result<LeaseRecord> {
    Ok(LeaseRecord {
        key: get_str(d, "key")?,
        epoch: get_i64(d, "epoch")?,
        holder: get_str(d, "holder")?,
        acquired_ms: get_i64(d, "acquired_ms")?,
        expires_ms: get_i64(d, "expires_ms")?,
    })
}

fn read_job(d: &Document) -> Result<JobRecord> {
    Ok(JobRecord {
        key: get_str(d, "_id")?,
        kind: get_str(d, "kind")?,
        created_ms: get_i64(d, "created_ms")?,
        work_ms: get_i64(d, "work_ms")?,
    })
}

fn read_completion(d: &Document) -> Result<CompletionRecord> {
    Ok(CompletionRecord {
        key: get_str(d, "_id")?,
        holder: get_str(d, "holder")?,
        epoch: get_i64(d, "epoch")?,
        completed_ms: get_i64(d, "completed_ms")?,
    })
}

/// `_id` of an audit entry: the zero-padded seq keeps `_id` order equal to seq order.
fn audit_id(chain: &str, seq: i64) -> String {
    join(&[chain, &format!("{seq:020}")])
}

fn audit_doc(e: &AuditEntry) -> Document {
    doc! {
        "_id": audit_id(&e.chain, e.seq), "project_id": &e.chain, "seq": e.seq,
        "time_ms": e.time_ms, "actor": &e.actor, "action": &e.action, "target": &e.target,
        "detail": &e.detail, "prev_hash": &e.prev_hash, "hash": &e.hash,
    }
}

fn read_audit(d: &Document) -> Result<AuditEntry> {
    Ok(AuditEntry {
        chain: get_str(d, "project_id")?,
        seq: get_i64(d, "seq")?,
        time_ms: get_i64(d, "time_ms")?,
        actor: get_str(d, "actor")?,
        action: get_str(d, "action")?,
        target: get_str(d, "target")?,
        detail: get_str(d, "detail")?,
        prev_hash: get_str(d, "prev_hash")?,
        hash: get_str(d, "hash")?,
    })
}

fn cursor_of(page: &PageRequest) -> Result<Option<Cursor>> {
    page.cursor.as_deref().map(Cursor::decode).transpose()
}

fn fetch_limit(limit: u32) -> i64 {
    i64::from(limit) + 1
}

#[async_trait]
impl Store for MongoStore {
    fn backend(&self) -> &'static str {
        "mongodb"
    }

    async fn migrate(&self) -> Result<()> {
        // DESIGN §4: newest windows of a model first.
        self.index(
            "windows",
            doc! { "project_id": 1, "model": 1, "window_start": -1 },
            "by_model",
        )
        .await?;
        self.index(
            "windows",
            doc! {
                "project_id": 1, "model": 1, "version": 1, "environment": 1, "window_start": -1,
            },
            "by_version",
        )
        .await?;
        self.index("windows", doc! { "window_start": 1 }, "by_start")
            .await?;
        self.index(
            "labels",
            doc! {
                "project_id": 1, "model": 1, "version": 1, "environment": 1, "received_ms": 1,
            },
            "by_model",
        )
        .await?;
        self.index("labels", doc! { "received_ms": 1 }, "by_received")
            .await?;
        self.index(
            "references",
            doc! {
                "project_id": 1, "model": 1, "version": 1, "environment": 1, "created_ms": -1,
            },
            "by_model",
        )
        .await?;
        self.index("batches", doc! { "received_ms": 1 }, "by_received")
            .await?;
        self.index("models", doc! { "project_id": 1, "model": 1 }, "by_project")
            .await?;
        self.index(
            "versions",
            doc! { "project_id": 1, "model": 1, "version": 1, "environment": 1 },
            "by_model",
        )
        .await?;
        self.index("api_keys", doc! { "project_id": 1 }, "by_project")
            .await?;
        self.index("leases", doc! { "key": 1, "epoch": -1 }, "by_key")
            .await?;
        self.index("leases", doc! { "expires_ms": 1 }, "by_expiry")
            .await?;
        self.index("jobs", doc! { "done": 1, "created_ms": 1 }, "by_pending")
            .await?;
        self.index("completions", doc! { "completed_ms": 1 }, "by_completed")
            .await?;
        // `_id` (chain, seq) is what makes appends exclusive; the unique index also refuses a
        // second entry at a taken seq written under another `_id` (a forged fork).
        self.create_index("audit", doc! { "project_id": 1, "seq": -1 }, "by_seq", true)
            .await?;
        self.index("audit", doc! { "project_id": 1, "time_ms": -1 }, "by_time")
            .await?;
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        self.db.run_command(doc! { "ping": 1 }).await?;
        Ok(())
    }

    async fn create_organization(&self, org: &Organization) -> Result<()> {
        let d = doc! { "_id": &org.id, "name": &org.name, "created_ms": org.created_ms };
        self.insert_unique("organizations", d)
            .await?
            .then_some(())
            .ok_or_else(|| Error::Conflict(format!("organization {}", org.id)))
    }

    async fn create_project(&self, p: &Project) -> Result<()> {
        let d = doc! {
            "_id": &p.id, "org_id": &p.org_id, "name": &p.name, "created_ms": p.created_ms,
        };
        self.insert_unique("projects", d)
            .await?
            .then_some(())
            .ok_or_else(|| Error::Conflict(format!("project {}", p.id)))
    }

    async fn get_project(&self, id: &str) -> Result<Option<Project>> {
        let Some(d) = self.coll("projects").find_one(doc! { "_id": id }).await? else {
            return Ok(None);
        };
        Ok(Some(Project {
            id: get_str(&d, "_id")?,
            org_id: get_str(&d, "org_id")?,
            name: get_str(&d, "name")?,
            created_ms: get_i64(&d, "created_ms")?,
        }))
    }

    async fn insert_api_key(&self, k: &ApiKeyRecord) -> Result<()> {
        let d = doc! {
            "_id": &k.prefix, "hash": bin(&k.hash), "project_id": &k.project_id,
            "name": &k.name, "scopes": Scope::join(&k.scopes), "created_ms": k.created_ms,
            "revoked_ms": k.revoked_ms, "last_used_ms": k.last_used_ms,
        };
        self.insert_unique("api_keys", d)
            .await?
            .then_some(())
            .ok_or_else(|| Error::Conflict(format!("api key {}", k.prefix)))
    }

    async fn find_api_key(&self, prefix: &str) -> Result<Option<ApiKeyRecord>> {
        let Some(d) = self
            .coll("api_keys")
            .find_one(doc! { "_id": prefix })
            .await?
        else {
            return Ok(None);
        };
        let hash = get_bytes(&d, "hash")?;
        let hash: [u8; 32] = hash.try_into().map_err(|_| corrupt("hash", &d))?;
        Ok(Some(ApiKeyRecord {
            prefix: get_str(&d, "_id")?,
            hash,
            project_id: get_str(&d, "project_id")?,
            name: get_str(&d, "name")?,
            scopes: Scope::split(&get_str(&d, "scopes")?)?,
            created_ms: get_i64(&d, "created_ms")?,
            revoked_ms: get_opt_i64(&d, "revoked_ms")?,
            last_used_ms: get_opt_i64(&d, "last_used_ms")?,
        }))
    }

    async fn revoke_api_key(&self, prefix: &str, at_ms: i64) -> Result<bool> {
        // Racing revocations may each set a time; any of them is a valid revocation time.
        self.coll("api_keys")
            .update_one(
                doc! { "_id": prefix, "revoked_ms": Bson::Null },
                doc! { "$set": { "revoked_ms": at_ms } },
            )
            .await?;
        Ok(self
            .coll("api_keys")
            .find_one(doc! { "_id": prefix })
            .await?
            .is_some())
    }

    async fn touch_api_key(&self, prefix: &str, at_ms: i64) -> Result<()> {
        self.coll("api_keys")
            .update_one(
                doc! { "_id": prefix },
                doc! { "$max": { "last_used_ms": at_ms } },
            )
            .await?;
        Ok(())
    }

    async fn store_batch(&self, batch: &Batch) -> Result<BatchOutcome> {
        let marker_id = join(&[&batch.project_id, &batch.batch_id]);
        if self
            .coll("batches")
            .find_one(doc! { "_id": &marker_id })
            .await?
            .is_some()
        {
            return Ok(BatchOutcome {
                duplicate: true,
                stored: 0,
            });
        }
        // Items first, marker last: a crash in between leaves no marker, so the agent's retry
        // writes the rest, and the deterministic item ids make the items already written no-ops.
        let (mut windows, mut labels, mut references) = (Vec::new(), Vec::new(), Vec::new());
        let mut keys: Vec<&ModelKey> = Vec::new();
        for item in &batch.items {
            match item {
                BatchItem::Window(w) => windows.push(window_doc(w)),
                BatchItem::Labels(l) => labels.push(label_doc(l)),
                BatchItem::Reference(r) => references.push(reference_doc(r)),
            }
            if !keys.contains(&item.key()) {
                keys.push(item.key());
            }
        }
        let mut stored = self.insert_many_unique("windows", windows).await?;
        stored += self.insert_many_unique("labels", labels).await?;
        stored += self.insert_many_unique("references", references).await?;
        for key in keys {
            if self.registry_stale(key, batch.received_ms) {
                self.touch_registry(key, batch.received_ms).await?;
                self.registry_written(key, batch.received_ms);
            }
        }
        let marker = doc! {
            "_id": marker_id, "project_id": &batch.project_id, "batch_id": &batch.batch_id,
            "agent_id": &batch.agent_id, "items": to_i64(batch.items.len() as u64),
            "received_ms": batch.received_ms,
        };
        // Losing this insert means a concurrent replay finished the same batch first.
        let fresh = self.insert_unique("batches", marker).await?;
        Ok(BatchOutcome {
            duplicate: !fresh,
            stored,
        })
    }

    async fn list_models(&self, project_id: &str, page: &PageRequest) -> Result<Page<ModelRecord>> {
        let limit = page.effective_limit();
        let after = cursor_of(page)?
            .and_then(|c| c.after_name)
            .unwrap_or_default();
        let docs = self
            .find_all(
                "models",
                doc! { "project_id": project_id, "model": { "$gt": after } },
                doc! { "model": 1 },
                fetch_limit(limit),
                None,
            )
            .await?;
        let rows = docs
            .iter()
            .map(|d| {
                Ok(ModelRecord {
                    project_id: get_str(d, "project_id")?,
                    model: get_str(d, "model")?,
                    first_seen_ms: get_i64(d, "first_seen_ms")?,
                    last_seen_ms: get_i64(d, "last_seen_ms")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(paginate(rows, limit, |m| Cursor {
            after_name: Some(m.model.clone()),
            after_ms: None,
            after_id: String::new(),
            after_seq: None,
        }))
    }

    async fn list_versions(
        &self,
        project_id: &str,
        model: &str,
        page: &PageRequest,
    ) -> Result<Page<VersionRecord>> {
        let limit = page.effective_limit();
        let cursor = cursor_of(page)?;
        let after_version = cursor
            .as_ref()
            .and_then(|c| c.after_name.clone())
            .unwrap_or_default();
        let after_env = cursor.map(|c| c.after_id).unwrap_or_default();
        let filter = doc! {
            "project_id": project_id, "model": model,
            "$or": [
                { "version": { "$gt": &after_version } },
                { "version": &after_version, "environment": { "$gt": after_env } },
            ],
        };
        let docs = self
            .find_all(
                "versions",
                filter,
                doc! { "version": 1, "environment": 1 },
                fetch_limit(limit),
                None,
            )
            .await?;
        let rows = docs
            .iter()
            .map(|d| {
                Ok(VersionRecord {
                    project_id: get_str(d, "project_id")?,
                    model: get_str(d, "model")?,
                    version: get_str(d, "version")?,
                    environment: get_str(d, "environment")?,
                    first_seen_ms: get_i64(d, "first_seen_ms")?,
                    last_seen_ms: get_i64(d, "last_seen_ms")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(paginate(rows, limit, |v| Cursor {
            after_name: Some(v.version.clone()),
            after_ms: None,
            after_id: v.environment.clone(),
            after_seq: None,
        }))
    }

    async fn list_windows(&self, q: &WindowQuery, page: &PageRequest) -> Result<Page<WindowPart>> {
        let limit = page.effective_limit();
        let mut filter = doc! {
            "project_id": &q.project_id, "model": &q.model,
            "window_start": { "$gte": q.from_ms, "$lt": q.to_ms },
        };
        if let Some(v) = &q.version {
            filter.insert("version", v);
        }
        if let Some(e) = &q.environment {
            filter.insert("environment", e);
        }
        match cursor_of(page)? {
            Some(Cursor {
                after_ms: Some(ms),
                after_id,
                ..
            }) => {
                let after = join(&[&q.project_id, &after_id]);
                filter.insert(
                    "$or",
                    vec![
                        doc! { "window_start": { "$lt": ms } },
                        doc! { "window_start": ms, "_id": { "$lt": after } },
                    ],
                );
            }
            Some(_) => return Err(Error::Invalid("cursor: not a window cursor".into())),
            None => {}
        }
        let projection = (!q.with_profile).then(|| doc! { "profile": 0 });
        let docs = self
            .find_all(
                "windows",
                filter,
                doc! { "window_start": -1, "_id": -1 },
                fetch_limit(limit),
                projection,
            )
            .await?;
        let rows = docs.iter().map(read_window).collect::<Result<Vec<_>>>()?;
        Ok(paginate(rows, limit, |w| Cursor {
            after_name: None,
            after_ms: Some(w.window_start_ms),
            after_id: w.id.clone(),
            after_seq: None,
        }))
    }

    async fn window_parts(&self, key: &ModelKey, window_start_ms: i64) -> Result<Vec<WindowPart>> {
        let mut filter = key_doc(key);
        filter.insert("window_start", window_start_ms);
        let docs = self
            .find_all(
                "windows",
                filter,
                doc! { "received_ms": 1, "_id": 1 },
                0,
                None,
            )
            .await?;
        docs.iter().map(read_window).collect()
    }

    async fn list_labels(&self, key: &ModelKey, page: &PageRequest) -> Result<Page<LabelPart>> {
        let limit = page.effective_limit();
        let mut filter = key_doc(key);
        if let Some(c) = cursor_of(page)? {
            let ms = c.after_ms.unwrap_or(i64::MIN);
            let after = join(&[&key.project_id, &c.after_id]);
            filter.insert(
                "$or",
                vec![
                    doc! { "received_ms": { "$gt": ms } },
                    doc! { "received_ms": ms, "_id": { "$gt": after } },
                ],
            );
        }
        let docs = self
            .find_all(
                "labels",
                filter,
                doc! { "received_ms": 1, "_id": 1 },
                fetch_limit(limit),
                None,
            )
            .await?;
        let rows = docs.iter().map(read_label).collect::<Result<Vec<_>>>()?;
        Ok(paginate(rows, limit, |l| Cursor {
            after_name: None,
            after_ms: Some(l.received_ms),
            after_id: l.id.clone(),
            after_seq: None,
        }))
    }

    async fn latest_reference(&self, key: &ModelKey) -> Result<Option<ReferenceRecord>> {
        let docs = self
            .find_all(
                "references",
                key_doc(key),
                doc! { "created_ms": -1, "received_ms": -1, "_id": -1 },
                1,
                None,
            )
            .await?;
        docs.first().map(read_reference).transpose()
    }

    async fn insert_lease(&self, l: &LeaseRecord) -> Result<bool> {
        let d = doc! {
            "_id": join(&[&l.key, &l.epoch.to_string()]), "key": &l.key, "epoch": l.epoch,
            "holder": &l.holder, "acquired_ms": l.acquired_ms, "expires_ms": l.expires_ms,
        };
        self.insert_unique("leases", d).await
    }

    async fn current_lease(&self, key: &str) -> Result<Option<LeaseRecord>> {
        let docs = self
            .find_all("leases", doc! { "key": key }, doc! { "epoch": -1 }, 1, None)
            .await?;
        docs.first().map(read_lease).transpose()
    }

    async fn insert_job(&self, j: &JobRecord) -> Result<bool> {
        let d = doc! {
            "_id": &j.key, "kind": &j.kind, "created_ms": j.created_ms, "work_ms": j.work_ms,
            "done": false,
        };
        self.insert_unique("jobs", d).await
    }

    async fn pending_jobs(&self, limit: u32) -> Result<Vec<JobRecord>> {
        let docs = self
            .find_all(
                "jobs",
                doc! { "done": false },
                doc! { "created_ms": 1, "_id": 1 },
                i64::from(limit),
                None,
            )
            .await?;
        let jobs = docs.iter().map(read_job).collect::<Result<Vec<_>>>()?;
        // `done` is only a filter hint set after the completion insert; the completion is the
        // truth, so jobs whose hint was lost (crash in between) are repaired here.
        let keys: Vec<&str> = jobs.iter().map(|j| j.key.as_str()).collect();
        let done_docs = self
            .find_all(
                "completions",
                doc! { "_id": { "$in": keys } },
                doc! { "_id": 1 },
                0,
                None,
            )
            .await?;
        let done: Vec<String> = done_docs
            .iter()
            .map(|d| get_str(d, "_id"))
            .collect::<Result<_>>()?;
        for key in &done {
            self.coll("jobs")
                .update_one(doc! { "_id": key }, doc! { "$set": { "done": true } })
                .await?;
        }
        Ok(jobs
            .into_iter()
            .filter(|j| !done.contains(&j.key))
            .collect())
    }

    async fn insert_completion(&self, c: &CompletionRecord) -> Result<bool> {
        let d = doc! {
            "_id": &c.key, "holder": &c.holder, "epoch": c.epoch, "completed_ms": c.completed_ms,
        };
        let fresh = self.insert_unique("completions", d).await?;
        if let Err(e) = self
            .coll("jobs")
            .update_one(doc! { "_id": &c.key }, doc! { "$set": { "done": true } })
            .await
        {
            tracing::warn!(job = %c.key, error = %e, "completion stored, job hint not updated");
        }
        Ok(fresh)
    }

    async fn completions(&self, page: &PageRequest) -> Result<Page<CompletionRecord>> {
        let limit = page.effective_limit();
        let after = cursor_of(page)?.map(|c| c.after_id).unwrap_or_default();
        let docs = self
            .find_all(
                "completions",
                doc! { "_id": { "$gt": after } },
                doc! { "_id": 1 },
                fetch_limit(limit),
                None,
            )
            .await?;
        let rows = docs
            .iter()
            .map(read_completion)
            .collect::<Result<Vec<_>>>()?;
        Ok(paginate(rows, limit, |d| Cursor {
            after_name: None,
            after_ms: None,
            after_id: d.key.clone(),
            after_seq: None,
        }))
    }

    async fn delete_older_than(&self, target: RetentionTarget, cutoff_ms: i64) -> Result<u64> {
        let before = doc! { "$lt": cutoff_ms };
        let deletes: Vec<(&str, Document)> = match target {
            RetentionTarget::Windows => vec![("windows", doc! { "window_start": before })],
            RetentionTarget::Labels => vec![("labels", doc! { "received_ms": before })],
            RetentionTarget::Batches => vec![("batches", doc! { "received_ms": before })],
            RetentionTarget::Leases => vec![("leases", doc! { "expires_ms": before })],
            RetentionTarget::Jobs => vec![
                ("jobs", doc! { "created_ms": before.clone() }),
                ("completions", doc! { "completed_ms": before }),
            ],
        };
        let mut deleted = 0;
        for (coll, filter) in deletes {
            deleted += self.coll(coll).delete_many(filter).await?.deleted_count;
        }
        Ok(deleted)
    }

    async fn insert_audit(&self, entry: &AuditEntry) -> Result<bool> {
        self.insert_unique("audit", audit_doc(entry)).await
    }

    async fn last_audit(&self, chain: &str) -> Result<Option<AuditEntry>> {
        let docs = self
            .find_all(
                "audit",
                doc! { "project_id": chain },
                doc! { "seq": -1 },
                1,
                None,
            )
            .await?;
        docs.first().map(read_audit).transpose()
    }

    async fn audit_after(
        &self,
        chain: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<AuditEntry>> {
        let docs = self
            .find_all(
                "audit",
                doc! { "project_id": chain, "seq": { "$gt": after_seq } },
                doc! { "seq": 1 },
                i64::from(limit),
                None,
            )
            .await?;
        docs.iter().map(read_audit).collect()
    }

    async fn list_audit(&self, q: &AuditQuery, page: &PageRequest) -> Result<Page<AuditEntry>> {
        let limit = page.effective_limit();
        let before = audit_position(page)?.unwrap_or(i64::MAX);
        let docs = self
            .find_all(
                "audit",
                doc! {
                    "project_id": &q.chain, "seq": { "$lt": before },
                    "time_ms": { "$gte": q.from_ms, "$lt": q.to_ms },
                },
                doc! { "seq": -1 },
                fetch_limit(limit),
                None,
            )
            .await?;
        let rows = docs.iter().map(read_audit).collect::<Result<Vec<_>>>()?;
        Ok(paginate(rows, limit, audit_cursor))
    }
}

#[cfg(test)]
mod tests {
    use super::is_duplicate;

    #[test]
    fn ferretdb_unique_index_violations_count_as_duplicates() {
        assert!(is_duplicate(11000, "E11000 duplicate key error"));
        let ferret = "[collection.go:177 sqlite.(*collection).UpdateAll.func1] constraint failed: \
                      UNIQUE constraint failed: index 'audit_f5615aa8_by_seq' (2067)";
        assert!(is_duplicate(1, ferret));
        assert!(!is_duplicate(1, "some other internal error"));
        assert!(!is_duplicate(2, "UNIQUE constraint failed"));
    }
}
