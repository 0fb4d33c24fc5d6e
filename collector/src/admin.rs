//! `admin` commands: bootstrap an organization + project + key, create and revoke keys, and
//! enqueue test jobs. Each prints one JSON object on stdout, so scripts can read it.

use serde::Serialize;

use crate::auth;
use crate::schedule::TEST_JOB;
use crate::store::{JobRecord, Organization, Project, Scope, SharedStore, now_ms};
use crate::{Error, Result};

#[derive(Debug, Serialize)]
pub struct CreatedKey {
    pub project: String,
    pub key_prefix: String,
    pub scopes: Vec<Scope>,
    /// The only time the plaintext key is shown.
    pub api_key: String,
}

/// Ids name storage keys and appear in URLs: keep them to a slug alphabet.
pub fn check_slug(what: &str, s: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{what} {s:?}: use 1-64 of a-z, 0-9, '-', '_'"
        )))
    }
}

/// Creates the organization (or reuses it) and a new project with an ingest+read key.
pub async fn bootstrap(
    store: &SharedStore,
    org: &str,
    project: &str,
    key_name: &str,
) -> Result<CreatedKey> {
    check_slug("organization", org)?;
    check_slug("project", project)?;
    let now = now_ms();
    match store
        .create_organization(&Organization {
            id: org.into(),
            name: org.into(),
            created_ms: now,
        })
        .await
    {
        Ok(()) | Err(Error::Conflict(_)) => {}
        Err(e) => return Err(e),
    }
    store
        .create_project(&Project {
            id: project.into(),
            org_id: org.into(),
            name: project.into(),
            created_ms: now,
        })
        .await?;
    create_key(store, project, key_name, &[Scope::Ingest, Scope::Read]).await
}

pub async fn create_key(
    store: &SharedStore,
    project: &str,
    name: &str,
    scopes: &[Scope],
) -> Result<CreatedKey> {
    if scopes.is_empty() {
        return Err(Error::Invalid("a key needs at least one scope".into()));
    }
    if store.get_project(project).await?.is_none() {
        return Err(Error::NotFound(format!("project {project}")));
    }
    let key = auth::generate(project, name, scopes)?;
    store.insert_api_key(&key.record).await?;
    Ok(CreatedKey {
        project: project.into(),
        key_prefix: key.record.prefix,
        scopes: scopes.to_vec(),
        api_key: key.plaintext,
    })
}

/// Accepts either the key's prefix or the whole key.
pub async fn revoke_key(store: &SharedStore, key_or_prefix: &str) -> Result<String> {
    let prefix = auth::parse_prefix(key_or_prefix).unwrap_or(key_or_prefix);
    if store.revoke_api_key(prefix, now_ms()).await? {
        Ok(prefix.to_owned())
    } else {
        Err(Error::NotFound(format!("api key {prefix}")))
    }
}

/// Inserts `count` test jobs named `<prefix>-<i>`; returns how many were new.
pub async fn enqueue_test_jobs(
    store: &SharedStore,
    prefix: &str,
    count: u32,
    work_ms: i64,
) -> Result<u32> {
    let now = now_ms();
    let mut created = 0;
    for i in 0..count {
        let job = JobRecord {
            key: format!("{prefix}-{i:05}"),
            kind: TEST_JOB.into(),
            created_ms: now,
            work_ms,
        };
        if store.insert_job(&job).await? {
            created += 1;
        }
    }
    Ok(created)
}
