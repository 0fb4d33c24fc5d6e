//! One conformance suite, run against both stores: SQLite, and MongoDB through a real FerretDB.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use neurocloak_collector::Error;
use neurocloak_collector::audit::{self, Action, GENESIS_HASH};
use neurocloak_collector::auth;
use neurocloak_collector::schedule::Leases;
use neurocloak_collector::store::{
    self, AuditQuery, Batch, BatchItem, CompletionRecord, JobRecord, LabelPart, LeaseRecord,
    ModelKey, Organization, PageRequest, Project, ReferenceRecord, RetentionTarget, Scope,
    SharedStore, WindowPart, WindowQuery, item_id,
};

const MIN: i64 = 60_000;

fn key(project: &str, model: &str, version: &str) -> ModelKey {
    ModelKey {
        project_id: project.into(),
        model: model.into(),
        version: version.into(),
        environment: "prod".into(),
    }
}

fn window(batch: &str, i: usize, k: &ModelKey, start: i64, received: i64) -> BatchItem {
    BatchItem::Window(WindowPart {
        id: item_id(batch, i),
        key: k.clone(),
        window_start_ms: start,
        window_length_ms: MIN,
        rows: 10 + i as u64,
        agent_id: "agent-a".into(),
        batch_id: batch.into(),
        received_ms: received,
        profile: format!("profile {batch} {i}").into_bytes(),
    })
}

fn batch(project: &str, id: &str, items: Vec<BatchItem>) -> Batch {
    Batch {
        project_id: project.into(),
        batch_id: id.into(),
        agent_id: "agent-a".into(),
        received_ms: 1_000,
        items,
    }
}

async fn control_plane(s: &SharedStore) {
    let org = Organization {
        id: "acme".into(),
        name: "Acme".into(),
        created_ms: 1,
    };
    s.create_organization(&org).await.unwrap();
    assert!(matches!(
        s.create_organization(&org).await,
        Err(Error::Conflict(_))
    ));
    let p = Project {
        id: "fraud".into(),
        org_id: "acme".into(),
        name: "Fraud".into(),
        created_ms: 2,
    };
    s.create_project(&p).await.unwrap();
    assert!(matches!(
        s.create_project(&p).await,
        Err(Error::Conflict(_))
    ));
    assert_eq!(s.get_project("fraud").await.unwrap(), Some(p));
    assert_eq!(s.get_project("nope").await.unwrap(), None);

    let k = auth::generate("fraud", "agent", &[Scope::Ingest, Scope::Read]).unwrap();
    s.insert_api_key(&k.record).await.unwrap();
    assert!(matches!(
        s.insert_api_key(&k.record).await,
        Err(Error::Conflict(_))
    ));
    let found = s.find_api_key(&k.record.prefix).await.unwrap().unwrap();
    assert_eq!(found, k.record);
    s.touch_api_key(&k.record.prefix, 5_000).await.unwrap();
    s.touch_api_key(&k.record.prefix, 4_000).await.unwrap();
    let found = s.find_api_key(&k.record.prefix).await.unwrap().unwrap();
    assert_eq!(
        found.last_used_ms,
        Some(5_000),
        "last-used never moves backwards"
    );
    assert!(s.revoke_api_key(&k.record.prefix, 7_000).await.unwrap());
    assert!(s.revoke_api_key(&k.record.prefix, 8_000).await.unwrap());
    let found = s.find_api_key(&k.record.prefix).await.unwrap().unwrap();
    assert_eq!(
        found.revoked_ms,
        Some(7_000),
        "the first revocation time is kept"
    );
    assert!(!s.revoke_api_key("0000000000000000", 1).await.unwrap());
    assert_eq!(s.find_api_key("0000000000000000").await.unwrap(), None);
}

async fn batches_are_idempotent(s: &SharedStore) {
    let k = key("fraud", "scorer", "v1");
    let items = vec![
        window("b1", 0, &k, 10 * MIN, 1_000),
        window("b1", 1, &k, 11 * MIN, 1_000),
        BatchItem::Labels(LabelPart {
            id: item_id("b1", 2),
            key: k.clone(),
            count: 3,
            batch_id: "b1".into(),
            received_ms: 1_000,
            payload: b"labels".to_vec(),
        }),
        BatchItem::Reference(ReferenceRecord {
            id: item_id("b1", 3),
            key: k.clone(),
            created_ms: 50,
            received_ms: 1_000,
            payload: b"reference old".to_vec(),
        }),
    ];
    let b1 = batch("fraud", "b1", items);
    let first = s.store_batch(&b1).await.unwrap();
    assert!(!first.duplicate);
    assert_eq!(first.stored, 4);
    let again = s.store_batch(&b1).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.stored, 0);

    // The same batch id in another project is another batch.
    let other = key("other", "scorer", "v1");
    let b1_other = batch(
        "other",
        "b1",
        vec![window("b1", 0, &other, 10 * MIN, 1_000)],
    );
    assert!(!s.store_batch(&b1_other).await.unwrap().duplicate);

    // A second agent's part of window 10.
    let b2 = batch("fraud", "b2", vec![window("b2", 0, &k, 10 * MIN, 2_000)]);
    assert_eq!(s.store_batch(&b2).await.unwrap().stored, 1);

    let parts = s.window_parts(&k, 10 * MIN).await.unwrap();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].id, "b1:0");
    assert_eq!(parts[0].profile, b"profile b1 0");
    assert_eq!(parts[1].id, "b2:0");
    assert_eq!(parts[1].received_ms, 2_000);
    assert_eq!(parts[0].rows, 10);

    let labels = s.list_labels(&k, &PageRequest::first(10)).await.unwrap();
    assert_eq!(labels.items.len(), 1);
    assert_eq!(labels.items[0].payload, b"labels");

    let newer = batch(
        "fraud",
        "b3",
        vec![BatchItem::Reference(ReferenceRecord {
            id: item_id("b3", 0),
            key: k.clone(),
            created_ms: 60,
            received_ms: 900,
            payload: b"reference new".to_vec(),
        })],
    );
    s.store_batch(&newer).await.unwrap();
    let latest = s.latest_reference(&k).await.unwrap().unwrap();
    assert_eq!(
        latest.payload, b"reference new",
        "highest created_ms wins, not arrival"
    );
    assert_eq!(
        s.latest_reference(&key("fraud", "scorer", "v9"))
            .await
            .unwrap(),
        None
    );

    let models = s
        .list_models("fraud", &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(models.items.len(), 1);
    assert_eq!(models.items[0].model, "scorer");
    assert_eq!(models.items[0].last_seen_ms, 1_000);
    let versions = s
        .list_versions("fraud", "scorer", &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(versions.items.len(), 1);
    assert_eq!(versions.items[0].environment, "prod");
}

async fn windows_paginate_newest_first(s: &SharedStore) {
    let a = key("pages", "m", "v1");
    let b = key("pages", "m", "v2");
    // 25 windows: v1 at even minutes, v2 at odd; two parts at minute 4.
    let mut items = Vec::new();
    for i in 0..25usize {
        let k = if i % 2 == 0 { &a } else { &b };
        items.push(window("p1", i, k, i as i64 * MIN, 1_000));
    }
    items.push(window("p1", 25, &a, 4 * MIN, 1_000));
    s.store_batch(&batch("pages", "p1", items)).await.unwrap();
    for i in 0..3 {
        let m = key("pages", &format!("model-{i}"), "v1");
        let id = format!("pm{i}");
        s.store_batch(&batch("pages", &id, vec![window(&id, 0, &m, 0, 1)]))
            .await
            .unwrap();
    }

    let q = WindowQuery {
        project_id: "pages".into(),
        model: "m".into(),
        from_ms: 0,
        to_ms: i64::MAX,
        ..Default::default()
    };
    let mut seen = Vec::new();
    let mut page = PageRequest::first(10);
    let mut pages = 0;
    loop {
        let got = s.list_windows(&q, &page).await.unwrap();
        assert!(
            got.items.iter().all(|w| w.profile.is_empty()),
            "listing projects profiles away"
        );
        pages += 1;
        seen.extend(got.items.into_iter().map(|w| (w.window_start_ms, w.id)));
        match got.next {
            Some(c) => page.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 26);
    let unique: BTreeSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), 26, "no part twice across pages");
    assert!(seen.windows(2).all(|w| w[0] >= w[1]), "newest first");

    let only_v1 = WindowQuery {
        version: Some("v1".into()),
        from_ms: 4 * MIN,
        to_ms: 10 * MIN,
        with_profile: true,
        ..q.clone()
    };
    let got = s
        .list_windows(&only_v1, &PageRequest::first(100))
        .await
        .unwrap();
    let starts: Vec<i64> = got.items.iter().map(|w| w.window_start_ms / MIN).collect();
    assert_eq!(starts, vec![8, 6, 4, 4]);
    assert!(got.items.iter().all(|w| !w.profile.is_empty()));
    assert_eq!(got.next, None);

    let bad = PageRequest {
        cursor: Some("not a cursor!".into()),
        limit: 10,
    };
    assert!(matches!(
        s.list_windows(&q, &bad).await,
        Err(Error::Invalid(_))
    ));

    let mut names = Vec::new();
    let mut page = PageRequest::first(2);
    loop {
        let got = s.list_models("pages", &page).await.unwrap();
        names.extend(got.items.into_iter().map(|m| m.model));
        match got.next {
            Some(c) => page.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(names, vec!["m", "model-0", "model-1", "model-2"]);
    let versions = s
        .list_versions("pages", "m", &PageRequest::first(1))
        .await
        .unwrap();
    assert_eq!(versions.items[0].version, "v1");
    let rest = PageRequest {
        cursor: versions.next,
        limit: 5,
    };
    let versions = s.list_versions("pages", "m", &rest).await.unwrap();
    assert_eq!(versions.items.len(), 1);
    assert_eq!(versions.items[0].version, "v2");
}

async fn leases_and_jobs(s: &SharedStore) {
    let lease = |epoch, holder: &str| LeaseRecord {
        key: "job-a".into(),
        epoch,
        holder: holder.into(),
        acquired_ms: 0,
        expires_ms: 10,
    };
    assert!(s.insert_lease(&lease(1, "x")).await.unwrap());
    assert!(!s.insert_lease(&lease(1, "y")).await.unwrap());
    assert!(s.insert_lease(&lease(2, "y")).await.unwrap());
    assert_eq!(s.current_lease("job-a").await.unwrap().unwrap().holder, "y");
    assert_eq!(s.current_lease("job-b").await.unwrap(), None);

    // Ten contenders for one free lease: exactly one wins.
    let contenders: Vec<_> = (0..10)
        .map(|i| {
            let leases = Leases::new(Arc::clone(s), format!("holder-{i}"), 60_000);
            tokio::spawn(async move { leases.acquire("contended").await.unwrap() })
        })
        .collect();
    let mut winners = 0;
    for c in contenders {
        winners += usize::from(c.await.unwrap().is_some());
    }
    assert_eq!(winners, 1);
    let holder = s.current_lease("contended").await.unwrap().unwrap().holder;
    let same = Leases::new(Arc::clone(s), holder, 60_000);
    let renewed = same.acquire("contended").await.unwrap().unwrap();
    assert_eq!(
        renewed.epoch, 2,
        "the holder renews by taking the next epoch"
    );
    let other = Leases::new(Arc::clone(s), "late".into(), 60_000);
    assert_eq!(other.acquire("contended").await.unwrap(), None);
    assert_eq!(
        other.renew(&renewed).await.unwrap().map(|l| l.epoch),
        Some(3),
        "next epoch"
    );
    assert_eq!(
        same.renew(&renewed).await.unwrap(),
        None,
        "a lost lease cannot be renewed"
    );

    for (i, k) in ["j2", "j1", "j3"].into_iter().enumerate() {
        let job = JobRecord {
            key: k.into(),
            kind: "test".into(),
            created_ms: i as i64,
            work_ms: 0,
        };
        assert!(s.insert_job(&job).await.unwrap());
        assert!(!s.insert_job(&job).await.unwrap());
    }
    let pending: Vec<String> = s
        .pending_jobs(10)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.key)
        .collect();
    assert_eq!(pending, vec!["j2", "j1", "j3"]);
    let done = CompletionRecord {
        key: "j1".into(),
        holder: "x".into(),
        epoch: 1,
        completed_ms: 5,
    };
    assert!(s.insert_completion(&done).await.unwrap());
    assert!(
        !s.insert_completion(&CompletionRecord {
            holder: "y".into(),
            ..done.clone()
        })
        .await
        .unwrap()
    );
    let pending: Vec<String> = s
        .pending_jobs(10)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.key)
        .collect();
    assert_eq!(pending, vec!["j2", "j3"]);
    let all = s.completions(&PageRequest::first(10)).await.unwrap();
    assert_eq!(all.items, vec![done]);
}

async fn retention_deletes_by_age(s: &SharedStore) {
    let k = key("ret", "m", "v1");
    let items = (0..6)
        .map(|i| window("r1", i, &k, i as i64 * MIN, 1_000))
        .collect();
    s.store_batch(&batch("ret", "r1", items)).await.unwrap();
    let all = WindowQuery {
        project_id: "ret".into(),
        model: "m".into(),
        from_ms: 0,
        to_ms: i64::MAX,
        ..Default::default()
    };
    let deleted = s
        .delete_older_than(RetentionTarget::Windows, 4 * MIN)
        .await
        .unwrap();
    assert!(
        deleted >= 4,
        "windows of other tests may go too, these four must"
    );
    let left = s
        .list_windows(&all, &PageRequest::first(100))
        .await
        .unwrap();
    let starts: Vec<i64> = left.items.iter().map(|w| w.window_start_ms / MIN).collect();
    assert_eq!(starts, vec![5, 4]);
    // Batch markers go separately; until they do, replays stay no-ops.
    assert!(
        s.store_batch(&batch("ret", "r1", vec![window("r1", 0, &k, 0, 1_000)]))
            .await
            .unwrap()
            .duplicate
    );
    s.delete_older_than(RetentionTarget::Batches, 2_000)
        .await
        .unwrap();
    assert!(
        !s.store_batch(&batch("ret", "r1", vec![window("r1", 0, &k, 0, 1_000)]))
            .await
            .unwrap()
            .duplicate
    );
    assert!(
        s.delete_older_than(RetentionTarget::Leases, i64::MAX)
            .await
            .unwrap()
            >= 3
    );
    assert_eq!(s.current_lease("job-a").await.unwrap(), None);
    assert!(
        s.delete_older_than(RetentionTarget::Jobs, i64::MAX)
            .await
            .unwrap()
            >= 4
    );
    assert!(s.pending_jobs(10).await.unwrap().is_empty());
}

fn action(chain: &str, i: usize) -> Action {
    Action::new(
        chain,
        "admin-cli",
        "rule.create",
        &format!("rule/r{i}"),
        serde_json::json!({ "i": i, "rule": { "b": 2, "a": 1 } }),
    )
}

/// Appends, reads back in both orders, paginates, refuses a second entry at a taken seq, and
/// keeps one unforked chain while two store handles (two collectors) append at once.
async fn audit_chain(s: &SharedStore, other: &SharedStore) {
    let first = audit::append(&**s, &action("audited", 0)).await.unwrap();
    assert_eq!((first.seq, first.prev_hash.as_str()), (1, GENESIS_HASH));
    assert_eq!(first.detail, r#"{"i":0,"rule":{"a":1,"b":2}}"#);
    for i in 1..5 {
        audit::append(&**s, &action("audited", i)).await.unwrap();
    }
    let head = s.last_audit("audited").await.unwrap().unwrap();
    assert_eq!(head.seq, 5);
    assert_eq!(s.last_audit("nobody").await.unwrap(), None);
    // The seq is taken: the store refuses it, whatever the content.
    let dup = store::AuditEntry {
        detail: "{}".into(),
        ..head.clone()
    };
    assert!(!s.insert_audit(&dup).await.unwrap());
    assert_eq!(s.last_audit("audited").await.unwrap().unwrap(), head);

    let oldest_first = s.audit_after("audited", 0, 100).await.unwrap();
    assert_eq!(
        oldest_first.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(oldest_first[0], first);
    for w in oldest_first.windows(2) {
        assert_eq!(w[1].prev_hash, w[0].hash);
        assert!(w[1].time_ms >= w[0].time_ms);
    }
    assert_eq!(s.audit_after("audited", 3, 1).await.unwrap()[0].seq, 4);

    let q = AuditQuery {
        chain: "audited".into(),
        from_ms: i64::MIN,
        to_ms: i64::MAX,
    };
    let mut seqs = Vec::new();
    let mut page = PageRequest::first(2);
    loop {
        let got = s.list_audit(&q, &page).await.unwrap();
        seqs.extend(got.items.iter().map(|e| e.seq));
        match got.next {
            Some(c) => page.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seqs, vec![5, 4, 3, 2, 1], "newest first, each once");
    let none = AuditQuery {
        from_ms: head.time_ms + 1,
        ..q.clone()
    };
    assert!(
        s.list_audit(&none, &PageRequest::first(10))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let window_cursor = PageRequest {
        cursor: Some(
            store::Cursor {
                after_name: None,
                after_ms: Some(1),
                after_id: "x".into(),
                after_seq: None,
            }
            .encode(),
        ),
        limit: 10,
    };
    assert!(matches!(
        s.list_audit(&q, &window_cursor).await,
        Err(Error::Invalid(_))
    ));
    assert!(audit::verify(&**s, "audited").await.unwrap().ok);

    // Two collectors, eight appenders each, all at once on one chain.
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let st = Arc::clone(if t % 2 == 0 { s } else { other });
            tokio::spawn(async move {
                for i in 0..8 {
                    audit::append(&*st, &action("busy", t * 100 + i))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let v = audit::verify(&**s, "busy").await.unwrap();
    assert!(v.ok, "{v:?}");
    assert_eq!(v.entries, 128);
    let all = s.audit_after("busy", 0, 1000).await.unwrap();
    let targets: BTreeSet<&str> = all.iter().map(|e| e.target.as_str()).collect();
    assert_eq!(targets.len(), 128, "every append stored exactly once");
    assert_eq!(
        audit::verify(&**s, "audited").await.unwrap().entries,
        5,
        "chains are independent"
    );
}

/// The suite: every behaviour the rest of the collector relies on.
async fn conformance(s: SharedStore, other: SharedStore) {
    s.migrate().await.unwrap();
    s.ping().await.unwrap();
    control_plane(&s).await;
    batches_are_idempotent(&s).await;
    windows_paginate_newest_first(&s).await;
    leases_and_jobs(&s).await;
    audit_chain(&s, &other).await;
    retention_deletes_by_age(&s).await;
    // Retention has no audit target: after deleting everything it can, the chain is whole.
    for target in RetentionTarget::ALL {
        s.delete_older_than(target, i64::MAX).await.unwrap();
    }
    assert_eq!(audit::verify(&*s, "busy").await.unwrap().entries, 128);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("sqlite://{}", dir.path().join("db/neurocloak.db").display());
    conformance(
        store::open(&uri, "unused").await.unwrap(),
        store::open(&uri, "unused").await.unwrap(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_store_conforms_on_ferretdb() {
    let db = common::FerretDb::start();
    conformance(
        store::open(&db.uri(), "conformance").await.unwrap(),
        store::open(&db.uri(), "conformance").await.unwrap(),
    )
    .await;
}
