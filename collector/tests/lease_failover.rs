//! Two collector processes share one FerretDB and a set of test jobs; one is kill -9'd midway.
//! Every job must complete exactly once, the dead collector's job taken over by the survivor.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{Collector, FerretDb, admin};
use futures_util::TryStreamExt as _;
use mongodb::bson::{Document, doc};
use neurocloak_collector::store::{self, CompletionRecord, PageRequest, SharedStore};

const JOBS: usize = 30;

async fn all_completions(s: &SharedStore) -> Vec<CompletionRecord> {
    let mut out = Vec::new();
    let mut page = PageRequest::first(100);
    loop {
        let p = s.completions(&page).await.unwrap();
        out.extend(p.items);
        match p.next {
            Some(c) => page.cursor = Some(c),
            None => return out,
        }
    }
}

async fn wait_for(
    s: &SharedStore,
    what: &str,
    done: impl Fn(&[CompletionRecord]) -> bool,
) -> Vec<CompletionRecord> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let c = all_completions(s).await;
        if done(&c) {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; have {} completions",
            c.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_collector_jobs_are_taken_over_and_each_runs_once() {
    let db = FerretDb::start();
    let uri = db.uri();
    let dbname = "leases";
    let out = admin(&[
        "enqueue-test-jobs",
        "--count",
        &JOBS.to_string(),
        "--work-ms",
        "300",
        "--storage",
        &uri,
        "--mongo-database",
        dbname,
    ]);
    assert_eq!(out["enqueued"], JOBS);

    let flags = |holder: &'static str| {
        vec![
            "--mongo-database",
            dbname,
            "--jobs-lease-ms",
            "1000",
            "--jobs-poll-ms",
            "100",
            "--jobs-holder",
            holder,
        ]
    };
    let mut a = Collector::start(&uri, &flags("collector-a"));
    let mut b = Collector::start(&uri, &flags("collector-b"));
    let store = store::open(&uri, dbname).await.unwrap();

    // Kill A once both have completed work, so A dies holding a lease mid-job.
    wait_for(&store, "both collectors to complete jobs", |c| {
        c.iter().any(|d| d.holder == "collector-a")
            && c.iter().any(|d| d.holder == "collector-b")
            && c.len() >= 6
    })
    .await;
    a.kill();
    let at_kill = all_completions(&store).await.len();
    assert!(
        at_kill < JOBS,
        "jobs ran out before the kill; make them longer"
    );

    let done = wait_for(&store, "every job", |c| c.len() >= JOBS).await;
    assert!(b.is_running());
    // Let B make another pass: nothing may complete twice.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let done_later = all_completions(&store).await;
    assert_eq!(done_later, done);

    let keys: BTreeSet<&str> = done.iter().map(|d| d.key.as_str()).collect();
    let expected: BTreeSet<String> = (0..JOBS).map(|i| format!("test-{i:05}")).collect();
    assert_eq!(done.len(), JOBS, "exactly one completion per job");
    assert_eq!(keys, expected.iter().map(String::as_str).collect());
    assert!(store.pending_jobs(100).await.unwrap().is_empty());
    let by_holder = done
        .iter()
        .fold(BTreeMap::<&str, usize>::new(), |mut m, d| {
            *m.entry(d.holder.as_str()).or_default() += 1;
            m
        });
    assert!(
        by_holder["collector-a"] >= 1 && by_holder["collector-b"] > by_holder["collector-a"],
        "{by_holder:?}"
    );

    // The job A held when it died: A has a lease epoch on it, B completed it.
    let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
    let leases: Vec<Document> = client
        .database(dbname)
        .collection::<Document>("leases")
        .find(doc! { "holder": "collector-a" })
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let a_keys: BTreeSet<String> = leases
        .iter()
        .map(|d| d.get_str("key").unwrap().to_owned())
        .collect();
    let taken_over: Vec<&CompletionRecord> = done
        .iter()
        .filter(|d| d.holder == "collector-b" && a_keys.contains(&d.key))
        .collect();
    assert!(
        !taken_over.is_empty(),
        "no job of the killed collector was taken over"
    );
    assert!(
        taken_over.iter().all(|d| d.epoch >= 2),
        "a takeover is a later epoch"
    );
    drop(b);
}
