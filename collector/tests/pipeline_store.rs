//! Conformance of the pipeline's document store, run against both backends: SQLite, and
//! MongoDB through a real FerretDB.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use neurocloak_collector::Error;
use neurocloak_collector::store::eval::{self, Coll, Doc, DocQuery, MAX_GET_MANY, SharedEvalStore};
use neurocloak_collector::store::{
    self, Batch, BatchItem, LabelPart, ModelKey, PageRequest, SharedStore, WindowPart, item_id,
};

fn doc(id: &str, project: &str, scope: &str, kind: &str, status: &str, t: i64) -> Doc {
    Doc {
        id: id.into(),
        project_id: project.into(),
        scope: scope.into(),
        kind: kind.into(),
        status: status.into(),
        time_ms: t,
        body: format!("{{\"id\":\"{id}\"}}"),
    }
}

async fn inserts_are_unique_and_upserts_replace(s: &SharedEvalStore) {
    let d = doc("a", "p", "m|v", "k", "firing", 10);
    assert!(s.insert(Coll::Evaluations, &d).await.unwrap());
    assert!(!s.insert(Coll::Evaluations, &d).await.unwrap());
    // Collections are separate namespaces.
    assert!(s.insert(Coll::TrustScores, &d).await.unwrap());
    let mut changed = d.clone();
    changed.body = "{\"changed\":true}".into();
    changed.status = "resolved".into();
    s.upsert(Coll::Evaluations, &changed).await.unwrap();
    assert_eq!(s.get(Coll::Evaluations, "a").await.unwrap(), Some(changed));
    assert_eq!(s.get(Coll::Evaluations, "missing").await.unwrap(), None);

    let many: Vec<Doc> = (0..5)
        .map(|i| doc(&format!("m{i}"), "p", "s", "k", "", i))
        .collect();
    assert_eq!(s.insert_many(Coll::Labels, &many).await.unwrap(), 5);
    // A replay with one new document stores only that one.
    let mut again = many.clone();
    again.push(doc("m5", "p", "s", "k", "", 5));
    assert_eq!(s.insert_many(Coll::Labels, &again).await.unwrap(), 1);
    assert_eq!(s.insert_many(Coll::Labels, &[]).await.unwrap(), 0);

    let ids: Vec<String> = ["m1", "m3", "nope"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let mut got: Vec<String> = s
        .get_many(Coll::Labels, &ids)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    got.sort();
    assert_eq!(got, vec!["m1", "m3"]);
    let too_many = vec!["x".to_owned(); MAX_GET_MANY + 1];
    assert!(matches!(
        s.get_many(Coll::Labels, &too_many).await,
        Err(Error::Invalid(_))
    ));

    assert!(s.delete(Coll::Labels, "m1").await.unwrap());
    assert!(!s.delete(Coll::Labels, "m1").await.unwrap());
}

async fn listings_filter_and_paginate_newest_first(s: &SharedEvalStore) {
    let mut docs = Vec::new();
    for i in 0..25 {
        let scope = if i % 2 == 0 { "even" } else { "odd" };
        let status = if i % 5 == 0 { "firing" } else { "quiet" };
        // Pairs share a time so the id tie-breaker is exercised.
        docs.push(doc(
            &format!("d{i:02}"),
            "proj",
            scope,
            "rule",
            status,
            i / 2,
        ));
    }
    docs.push(doc("other", "other-proj", "even", "rule", "firing", 100));
    assert_eq!(s.insert_many(Coll::Alerts, &docs).await.unwrap(), 26);

    let all = DocQuery::project("proj");
    let mut seen = Vec::new();
    let mut page = PageRequest::first(4);
    loop {
        let got = s.list(Coll::Alerts, &all, &page).await.unwrap();
        assert!(got.items.len() <= 4);
        seen.extend(got.items.iter().map(|d| (d.time_ms, d.id.clone())));
        match got.next {
            Some(c) => page.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 25, "every document exactly once");
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, sorted, "newest first, id descending on ties");

    let firing = DocQuery {
        status: Some("firing".into()),
        ..DocQuery::project("proj")
    };
    assert_eq!(s.count(Coll::Alerts, &firing).await.unwrap(), 5);
    let even_range = DocQuery {
        scope: Some("even".into()),
        from_ms: 2,
        to_ms: 6,
        ..DocQuery::project("proj")
    };
    let got = s
        .list(Coll::Alerts, &even_range, &PageRequest::first(100))
        .await
        .unwrap();
    assert!(
        got.items
            .iter()
            .all(|d| d.scope == "even" && (2..6).contains(&d.time_ms))
    );
    assert_eq!(got.items.len(), 4);
    let across = DocQuery {
        project_id: None,
        status: Some("firing".into()),
        ..DocQuery::project("")
    };
    assert_eq!(s.count(Coll::Alerts, &across).await.unwrap(), 6);

    let bad = PageRequest {
        cursor: Some("not a cursor".into()),
        limit: 5,
    };
    assert!(matches!(
        s.list(Coll::Alerts, &all, &bad).await,
        Err(Error::Invalid(_))
    ));

    assert_eq!(s.delete_older_than(Coll::Alerts, 5).await.unwrap(), 10);
    assert_eq!(s.count(Coll::Alerts, &all).await.unwrap(), 15);
}

fn key() -> ModelKey {
    ModelKey {
        project_id: "proj".into(),
        model: "m".into(),
        version: "v1".into(),
        environment: "prod".into(),
    }
}

async fn arrival_scans_see_parts_and_labels(ingest: &SharedStore, s: &SharedEvalStore) {
    let k = key();
    let mut items = Vec::new();
    for i in 0..3 {
        items.push(BatchItem::Window(WindowPart {
            id: item_id("b1", i),
            key: k.clone(),
            window_start_ms: 60_000 * i as i64,
            window_length_ms: 60_000,
            rows: 5,
            agent_id: "a".into(),
            batch_id: "b1".into(),
            received_ms: 5_000,
            profile: vec![1, 2, 3],
        }));
    }
    items.push(BatchItem::Labels(LabelPart {
        id: item_id("b1", 3),
        key: k.clone(),
        count: 2,
        batch_id: "b1".into(),
        received_ms: 5_000,
        payload: vec![9, 9],
    }));
    let batch = Batch {
        project_id: "proj".into(),
        batch_id: "b1".into(),
        agent_id: "a".into(),
        received_ms: 5_000,
        items,
    };
    ingest.store_batch(&batch).await.unwrap();

    let parts = s.parts_since(5_000, 10).await.unwrap();
    assert_eq!(parts.len(), 3);
    assert!(
        parts
            .iter()
            .all(|p| p.key == k && p.window_length_ms == 60_000)
    );
    assert_eq!(s.parts_since(5_001, 10).await.unwrap().len(), 0);
    assert_eq!(s.parts_since(0, 2).await.unwrap().len(), 2, "limit holds");
    let labels = s.label_parts_since(0, 10).await.unwrap();
    assert_eq!(labels.len(), 1);
    assert_eq!(labels[0].payload, vec![9, 9]);
    assert_eq!(labels[0].count, 2);
}

async fn conformance(uri: &str, database: &str) {
    let ingest = store::open(uri, database).await.unwrap();
    let s = eval::open(uri, database).await.unwrap();
    // Migrations run on every start.
    s.migrate().await.unwrap();
    inserts_are_unique_and_upserts_replace(&s).await;
    listings_filter_and_paginate_newest_first(&s).await;
    arrival_scans_see_parts_and_labels(&ingest, &s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_eval_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("sqlite://{}", dir.path().join("db.sqlite").display());
    conformance(&uri, "unused").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_eval_store_conforms_on_ferretdb() {
    let db = common::FerretDb::start();
    conformance(&db.uri(), "pipeline_conformance").await;
}
