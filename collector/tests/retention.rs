//! The retention sweeper over both stores, on SQLite and on MongoDB through a real FerretDB:
//! each table and collection loses exactly what is older than its own retention, 0 keeps
//! forever, configuration and current state are never swept, and every deletion is counted.
//! The last test proves a running collector sweeps the pipeline's collections.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use neurocloak_collector::config::Retention;
use neurocloak_collector::metrics::Metrics;
use neurocloak_collector::retention::{Sweeper, Target, days_for, targets};
use neurocloak_collector::store::eval::{self, Coll, Doc, DocQuery, SharedEvalStore};
use neurocloak_collector::store::{
    self, Batch, BatchItem, JobRecord, LabelPart, LeaseRecord, ModelKey, PageRequest,
    RetentionTarget, SharedStore, WindowPart, WindowQuery, item_id,
};

const DAY: i64 = 86_400_000;
/// A fixed "now", so ages do not depend on the clock.
const NOW: i64 = 1_000 * DAY;

/// Distinct days per setting, so a target swept by the wrong setting keeps its old record or
/// loses its young one.
fn retention() -> Retention {
    Retention {
        windows_days: 40,
        labels_days: 35,
        batches_days: 45,
        leases_days: 3,
        jobs_days: 20,
        evaluations_days: 10,
        predictions_days: 6,
        alerts_days: 25,
        sweep_interval_s: 3600,
    }
}

fn forever() -> Retention {
    Retention {
        windows_days: 0,
        labels_days: 0,
        batches_days: 0,
        leases_days: 0,
        jobs_days: 0,
        evaluations_days: 0,
        predictions_days: 0,
        alerts_days: 0,
        sweep_interval_s: 3600,
    }
}

/// The days [`retention`] gives each target, written out rather than asked of the sweeper, so
/// a wrong mapping in the sweeper cannot move the test data along with it.
fn expected_days(target: Target) -> Option<i64> {
    Some(match target.name() {
        "windows" => 40,
        "labels" => 35,
        "batches" => 45,
        "leases" => 3,
        "jobs" => 20,
        "evaluations" | "trust_scores" => 10,
        "prediction_index" | "joined_labels" => 6,
        "alert_history" | "alert_deliveries" => 25,
        _ => return None,
    })
}

/// Just older and just younger than `target`'s retention.
fn old_and_young(target: Target) -> (i64, i64) {
    let days = expected_days(target).unwrap();
    (NOW - (days + 1) * DAY, NOW - (days - 1) * DAY)
}

fn at(target: Target, old: bool) -> i64 {
    let (o, y) = old_and_young(target);
    if old { o } else { y }
}

fn key() -> ModelKey {
    ModelKey {
        project_id: "p".into(),
        model: "m".into(),
        version: "v1".into(),
        environment: "prod".into(),
    }
}

/// One batch whose marker, window part and label batch are each old or young for their own
/// target; the window and labels of batch "old" are old, those of "young" young.
fn batch(name: &str, old: bool) -> Batch {
    let window = Target::Ingest(RetentionTarget::Windows);
    let labels = Target::Ingest(RetentionTarget::Labels);
    let marker = Target::Ingest(RetentionTarget::Batches);
    Batch {
        project_id: "p".into(),
        batch_id: name.into(),
        agent_id: "a".into(),
        received_ms: at(marker, old),
        items: vec![
            BatchItem::Window(WindowPart {
                id: item_id(name, 0),
                key: key(),
                window_start_ms: at(window, old),
                window_length_ms: 60_000,
                rows: 1,
                agent_id: "a".into(),
                batch_id: name.into(),
                received_ms: NOW,
                profile: vec![1, 2, 3],
            }),
            BatchItem::Labels(LabelPart {
                id: item_id(name, 1),
                key: key(),
                count: 1,
                batch_id: name.into(),
                received_ms: at(labels, old),
                payload: vec![4, 5],
            }),
        ],
    }
}

fn doc(id: &str, time_ms: i64) -> Doc {
    Doc {
        id: id.into(),
        project_id: "p".into(),
        scope: "m|v1".into(),
        kind: "k".into(),
        status: String::new(),
        time_ms,
        body: "{}".into(),
    }
}

/// One old and one young record in every swept target; one ancient document in every
/// collection that is never swept.
async fn seed(s: &SharedStore, docs: &SharedEvalStore) {
    for (name, old) in [("old", true), ("young", false)] {
        assert!(!s.store_batch(&batch(name, old)).await.unwrap().duplicate);
        let lease = Target::Ingest(RetentionTarget::Leases);
        let expires_ms = at(lease, old);
        assert!(
            s.insert_lease(&LeaseRecord {
                key: name.into(),
                epoch: 1,
                holder: "h".into(),
                acquired_ms: expires_ms - 10_000,
                expires_ms,
            })
            .await
            .unwrap()
        );
        let job = Target::Ingest(RetentionTarget::Jobs);
        assert!(
            s.insert_job(&JobRecord {
                key: name.into(),
                kind: "test".into(),
                created_ms: at(job, old),
                work_ms: 0,
            })
            .await
            .unwrap()
        );
    }
    for coll in Coll::ALL {
        let target = Target::Pipeline(coll);
        if expected_days(target).is_some() {
            assert!(
                docs.insert(coll, &doc("old", at(target, true)))
                    .await
                    .unwrap()
            );
            assert!(
                docs.insert(coll, &doc("young", at(target, false)))
                    .await
                    .unwrap()
            );
        } else {
            assert!(docs.insert(coll, &doc("ancient", 0)).await.unwrap());
        }
    }
}

async fn window_starts(s: &SharedStore) -> Vec<i64> {
    let q = WindowQuery {
        project_id: "p".into(),
        model: "m".into(),
        from_ms: i64::MIN,
        to_ms: i64::MAX,
        ..Default::default()
    };
    let page = s.list_windows(&q, &PageRequest::first(10)).await.unwrap();
    page.items.iter().map(|w| w.window_start_ms).collect()
}

async fn label_ids(s: &SharedStore) -> Vec<String> {
    let page = s
        .list_labels(&key(), &PageRequest::first(10))
        .await
        .unwrap();
    page.items.into_iter().map(|l| l.id).collect()
}

async fn doc_ids(docs: &SharedEvalStore, coll: Coll) -> Vec<String> {
    let page = docs
        .list(coll, &DocQuery::project("p"), &PageRequest::first(10))
        .await
        .unwrap();
    let mut ids: Vec<String> = page.items.into_iter().map(|d| d.id).collect();
    ids.sort();
    ids
}

/// Everything the sweep should leave, as (what, ids) pairs compared in one assertion.
async fn inventory(s: &SharedStore, docs: &SharedEvalStore) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let starts = window_starts(s).await;
    out.insert(
        "windows".into(),
        starts
            .iter()
            .map(|t| ((NOW - t) / DAY).to_string())
            .collect(),
    );
    out.insert("labels".into(), label_ids(s).await);
    let mut leases = Vec::new();
    for name in ["old", "young"] {
        if s.current_lease(name).await.unwrap().is_some() {
            leases.push(name.to_owned());
        }
    }
    out.insert("leases".into(), leases);
    let jobs = s.pending_jobs(10).await.unwrap();
    out.insert("jobs".into(), jobs.into_iter().map(|j| j.key).collect());
    for coll in Coll::ALL {
        out.insert(coll.name().into(), doc_ids(docs, coll).await);
    }
    out
}

fn counted(metrics: &Metrics, target: Target) -> f64 {
    common::metric(
        &metrics.render(),
        &format!(
            "neurocloak_collector_retention_deleted_total{{target=\"{}\"}}",
            target.name()
        ),
    )
}

async fn sweeps_each_target_by_its_own_retention(uri: &str) {
    let s = store::open(uri, "retention").await.unwrap();
    let docs = eval::open(uri, "retention").await.unwrap();
    seed(&s, &docs).await;
    let before = inventory(&s, &docs).await;
    let metrics = Arc::new(Metrics::new().unwrap());

    // 0 keeps everything forever: nothing is even attempted.
    let keep = Sweeper::new(s.clone(), docs.clone(), forever(), metrics.clone());
    assert_eq!(keep.sweep(NOW).await.unwrap(), vec![]);
    assert_eq!(inventory(&s, &docs).await, before);

    let sweeper = Sweeper::new(s.clone(), docs.clone(), retention(), metrics.clone());
    let report = sweeper.sweep(NOW).await.unwrap();
    let deleted: BTreeMap<&str, u64> = report.iter().map(|(t, n)| (t.name(), *n)).collect();
    let expected: BTreeMap<&str, u64> = RetentionTarget::ALL
        .map(Target::Ingest)
        .into_iter()
        .chain(Coll::ALL.map(Target::Pipeline))
        .filter(|t| expected_days(*t).is_some())
        .map(|t| (t.name(), 1))
        .collect();
    assert_eq!(
        expected.len(),
        11,
        "5 ingest targets and 6 pipeline collections"
    );
    assert_eq!(
        deleted, expected,
        "one old record per target, nothing young"
    );

    let after = inventory(&s, &docs).await;
    let young = vec!["young".to_owned()];
    let ancient = vec!["ancient".to_owned()];
    let windows_young =
        (expected_days(Target::Ingest(RetentionTarget::Windows)).unwrap() - 1).to_string();
    assert_eq!(after["windows"], vec![windows_young]);
    assert_eq!(after["labels"], vec![item_id("young", 1)]);
    assert_eq!(after["leases"], young);
    assert_eq!(after["jobs"], young);
    for coll in Coll::ALL {
        let want = match expected_days(Target::Pipeline(coll)) {
            Some(_) => &young,
            None => &ancient,
        };
        assert_eq!(&after[coll.name()], want, "{}", coll.name());
    }
    for (target, _) in &report {
        assert_eq!(counted(&metrics, *target), 1.0, "{}", target.name());
    }

    // A second sweep finds nothing more; the counters stay.
    let again = sweeper.sweep(NOW).await.unwrap();
    assert!(again.iter().all(|(_, n)| *n == 0), "{again:?}");
    assert_eq!(inventory(&s, &docs).await, after);
    assert_eq!(counted(&metrics, Target::Pipeline(Coll::Evaluations)), 1.0);

    // The old batch's marker is gone, so its replay is stored again; the young one's is not.
    assert!(!s.store_batch(&batch("old", true)).await.unwrap().duplicate);
    assert!(
        s.store_batch(&batch("young", false))
            .await
            .unwrap()
            .duplicate
    );
}

#[tokio::test]
async fn sqlite_sweeps_each_target_by_its_own_retention() {
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("sqlite://{}", dir.path().join("r.db").display());
    sweeps_each_target_by_its_own_retention(&uri).await;
}

#[tokio::test]
async fn mongo_sweeps_each_target_by_its_own_retention_on_ferretdb() {
    let db = common::FerretDb::start();
    sweeps_each_target_by_its_own_retention(&db.uri()).await;
}

#[test]
fn configuration_and_current_state_are_never_swept() {
    let never: Vec<Coll> = Coll::ALL
        .into_iter()
        .filter(|c| days_for(&retention(), Target::Pipeline(*c)).is_none())
        .collect();
    assert_eq!(
        never,
        vec![
            Coll::Rules,
            Coll::Channels,
            Coll::RuleStates,
            Coll::Alerts,
            Coll::Meta
        ]
    );
    let names: Vec<&str> = targets().map(Target::name).collect();
    assert_eq!(
        names,
        vec![
            "windows",
            "labels",
            "batches",
            "leases",
            "jobs",
            "evaluations",
            "trust_scores",
            "prediction_index",
            "joined_labels",
            "alert_history",
            "alert_deliveries"
        ]
    );
}

/// A running collector sweeps the pipeline's collections by their own settings (the windows'
/// retention is 0 here, so nothing keyed to it could be what deleted them) and counts it on
/// `/metrics`.
#[test]
fn a_running_collector_sweeps_the_pipeline_collections() {
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("sqlite://{}", dir.path().join("c.db").display());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let swept = [
        (Coll::Evaluations, 10),
        (Coll::TrustScores, 10),
        (Coll::Predictions, 6),
        (Coll::Labels, 6),
        (Coll::AlertHistory, 25),
        (Coll::Deliveries, 25),
    ];
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let docs = eval::open(&uri, "unused").await.unwrap();
        for (coll, days) in swept {
            let old = doc("old", now - (days + 1) * DAY);
            let young = doc("young", now - (days - 1) * DAY);
            assert!(docs.insert(coll, &old).await.unwrap());
            assert!(docs.insert(coll, &young).await.unwrap());
        }
        assert!(docs.insert(Coll::Rules, &doc("ancient", 0)).await.unwrap());
    });
    let config = dir.path().join("collector.toml");
    std::fs::write(
        &config,
        "[retention]\nwindows_days = 0\nevaluations_days = 10\npredictions_days = 6\n\
         alerts_days = 25\nsweep_interval_s = 1\n[pipeline]\npoll_ms = 100\n",
    )
    .unwrap();
    let collector = common::Collector::start(&uri, &["--config", config.to_str().unwrap()]);

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, text) = common::http_get(collector.http, "/metrics", &[]);
        assert_eq!(status, 200);
        let count = |coll: Coll| {
            common::metric(
                &text,
                &format!(
                    "neurocloak_collector_retention_deleted_total{{target=\"{}\"}}",
                    coll.name()
                ),
            )
        };
        if swept.iter().all(|(c, _)| count(*c) == 1.0) {
            break;
        }
        assert!(Instant::now() < deadline, "not swept in 30 s:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(collector);

    rt.block_on(async {
        let docs = eval::open(&uri, "unused").await.unwrap();
        for (coll, _) in swept {
            assert_eq!(doc_ids(&docs, coll).await, vec!["young"], "{}", coll.name());
        }
        assert_eq!(doc_ids(&docs, Coll::Rules).await, vec!["ancient"]);
    });
}
