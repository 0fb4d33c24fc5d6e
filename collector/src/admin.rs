//! `admin` commands: bootstrap an organization + project + key, create and revoke keys,
//! enqueue test jobs and verify audit chains. Each prints one JSON object on stdout, so scripts
//! can read it. Every change is an audited action of [`ADMIN_CLI`] (`crate::audit`).

use serde::Serialize;
use serde_json::json;

use crate::audit::{self, ADMIN_CLI, Action, GLOBAL_CHAIN};
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
    if store.get_project(project).await?.is_some() {
        return Err(Error::Conflict(format!("project {project}")));
    }
    let now = now_ms();
    let created_org = match store
        .create_organization(&Organization {
            id: org.into(),
            name: org.into(),
            created_ms: now,
        })
        .await
    {
        Ok(()) => true,
        Err(Error::Conflict(_)) => false,
        Err(e) => return Err(e),
    };
    if created_org {
        // Whether the organization is new is only known once its insert wins, so this one
        // entry follows the change instead of preceding it.
        let a = Action::new(
            GLOBAL_CHAIN,
            ADMIN_CLI,
            "organization.create",
            &format!("organization/{org}"),
            json!({}),
        );
        audit::append(&**store, &a).await?;
    }
    let a = Action::new(
        project,
        ADMIN_CLI,
        "project.create",
        &format!("project/{project}"),
        json!({ "org": org, "name": project }),
    );
    let p = Project {
        id: project.into(),
        org_id: org.into(),
        name: project.into(),
        created_ms: now,
    };
    audit::record(&**store, a, store.create_project(&p), ToString::to_string).await?;
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
    // The prefix is public (it is how the key is looked up); the key and its hash are not.
    let a = Action::new(
        project,
        ADMIN_CLI,
        "api_key.create",
        &format!("api_key/{}", key.record.prefix),
        json!({ "name": name, "scopes": scopes }),
    );
    let insert = store.insert_api_key(&key.record);
    audit::record(&**store, a, insert, ToString::to_string).await?;
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
    let not_found = || Error::NotFound(format!("api key {prefix}"));
    let record = store.find_api_key(prefix).await?.ok_or_else(not_found)?;
    let a = Action::new(
        &record.project_id,
        ADMIN_CLI,
        "api_key.revoke",
        &format!("api_key/{prefix}"),
        json!({ "name": record.name, "already_revoked_ms": record.revoked_ms }),
    );
    let revoke = async {
        match store.revoke_api_key(prefix, now_ms()).await? {
            true => Ok(prefix.to_owned()),
            false => Err(not_found()),
        }
    };
    audit::record(&**store, a, revoke, ToString::to_string).await
}

/// Inserts `count` test jobs named `<prefix>-<i>`; returns how many were new.
pub async fn enqueue_test_jobs(
    store: &SharedStore,
    prefix: &str,
    count: u32,
    work_ms: i64,
) -> Result<u32> {
    let a = Action::new(
        GLOBAL_CHAIN,
        ADMIN_CLI,
        "jobs.enqueue_test",
        &format!("jobs/{prefix}"),
        json!({ "count": count, "work_ms": work_ms }),
    );
    audit::record(
        &**store,
        a,
        insert_test_jobs(store, prefix, count, work_ms),
        |e| e.to_string(),
    )
    .await
}

async fn insert_test_jobs(
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

/// Verifies the audit chain of `project` (or the global chain when None), against an anchor
/// (`SEQ:HASH` recorded earlier) when given.
pub async fn verify_audit(
    store: &SharedStore,
    project: Option<&str>,
    anchor: Option<&str>,
) -> Result<audit::Verification> {
    let anchor = anchor.map(audit::Anchor::parse).transpose()?;
    let chain = match project {
        Some(p) => {
            check_slug("project", p)?;
            p
        }
        None => GLOBAL_CHAIN,
    };
    audit::verify_against(&**store, chain, anchor.as_ref()).await
}
