//! Two collector processes on one FerretDB: every window (and every revision of a window changed
//! by a late part) is evaluated exactly once, including windows whose first collector was
//! SIGKILLed before or while evaluating them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod pipeline_support;

use std::time::Duration;

use neurocloak_collector::store::eval::{self, Coll, DocQuery};
use pipeline_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_collectors_evaluate_each_window_once() {
    let db = common::FerretDb::start();
    let uri = db.uri();
    let dir = tempfile::tempdir().unwrap();
    let key = common::bootstrap(&uri, PROJECT);
    let mut a = collector_in(&uri, dir.path());
    let b = collector_in(&uri, dir.path());

    let model = "scale";
    let reference = reference(model, "v1");
    let edges = reference.edges();
    push(
        a.grpc,
        &key,
        "ref",
        vec![reference_item(reference.to_proto())],
    )
    .await;
    let windows: Vec<_> = (0..8)
        .map(|i| {
            window(
                model,
                "v1",
                &edges,
                &Traffic::stable(100 + i),
                start(i as i64),
            )
            .0
        })
        .collect();

    // Windows 0-3 alternate between the collectors; both see every part.
    for (i, w) in windows.iter().take(4).enumerate() {
        let to = if i % 2 == 0 { a.grpc } else { b.grpc };
        push(to, &key, &format!("w{i}"), vec![window_item(w.clone())]).await;
    }
    for i in 0..4 {
        wait_trust(
            b.http,
            &key,
            model,
            "v1",
            start(i),
            Duration::from_secs(60),
            |_| true,
        );
    }
    // Windows 4-5 go to A, which dies at once (before or during their evaluation); 6-7 to B.
    push(a.grpc, &key, "w4", vec![window_item(windows[4].clone())]).await;
    push(a.grpc, &key, "w5", vec![window_item(windows[5].clone())]).await;
    a.kill();
    push(b.grpc, &key, "w6", vec![window_item(windows[6].clone())]).await;
    push(b.grpc, &key, "w7", vec![window_item(windows[7].clone())]).await;
    // A late second part of window 2 makes a new revision, evaluated once more.
    let late = window(model, "v1", &edges, &Traffic::stable(200), start(2)).0;
    push(b.grpc, &key, "w2-late", vec![window_item(late)]).await;

    for i in 4..8 {
        wait_trust(
            b.http,
            &key,
            model,
            "v1",
            start(i),
            Duration::from_secs(60),
            |_| true,
        );
    }
    wait_trust(
        b.http,
        &key,
        model,
        "v1",
        start(2),
        Duration::from_secs(60),
        |t| t["revision"] == "p2-l0",
    );
    // Give a duplicate every chance to appear before counting.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let docs = eval::open(&uri, "neurocloak").await.unwrap();
    let all = DocQuery::project(PROJECT);
    assert_eq!(docs.count(Coll::Evaluations, &all).await.unwrap(), 9);
    assert_eq!(docs.count(Coll::TrustScores, &all).await.unwrap(), 8);
    for i in 0..8 {
        let one = DocQuery {
            from_ms: start(i),
            to_ms: start(i) + 1,
            ..DocQuery::project(PROJECT)
        };
        let expected = if i == 2 { 2 } else { 1 };
        assert_eq!(
            docs.count(Coll::Evaluations, &one).await.unwrap(),
            expected,
            "window {i}"
        );
    }
    drop(b);
}
