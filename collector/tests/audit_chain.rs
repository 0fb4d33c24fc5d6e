//! Tampering with stored audit entries directly in the database — changing a detail, editing a
//! hash, deleting an entry, swapping two entries, rewriting an entry with a recomputed hash,
//! storing a value of the wrong type — is found by `audit::verify` at the first bad entry, on
//! SQLite and on MongoDB through a real FerretDB.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use mongodb::bson::{Document, doc};
use neurocloak_collector::audit::{self, Action, Anchor, Verification};
use neurocloak_collector::store::{self, SharedStore};
use serde_json::json;

const ENTRIES: usize = 8;
/// The entry every case tampers with.
const VICTIM: i64 = 4;

/// The ways an entry is tampered with; each runs on a chain of its own.
#[derive(Debug, Clone, Copy)]
enum Tamper {
    Detail,
    Hash,
    Delete,
    Swap,
    RewriteWithHash,
    WrongType,
}

const CASES: [Tamper; 6] = [
    Tamper::Detail,
    Tamper::Hash,
    Tamper::Delete,
    Tamper::Swap,
    Tamper::RewriteWithHash,
    Tamper::WrongType,
];

impl Tamper {
    /// The entry verification must name, and a word its reason must contain.
    fn expected(self) -> (i64, &'static str) {
        match self {
            Tamper::Detail | Tamper::Hash => (VICTIM, "hash"),
            Tamper::Delete => (VICTIM, "missing"),
            Tamper::Swap => (VICTIM, "prev_hash"),
            // A rewrite that recomputes its own hash still breaks the next entry's link.
            Tamper::RewriteWithHash => (VICTIM + 1, "prev_hash"),
            Tamper::WrongType => (VICTIM, "unreadable"),
        }
    }
}

async fn build_chain(s: &SharedStore, chain: &str) {
    for i in 0..ENTRIES {
        let a = Action::new(
            chain,
            "key:0123456789abcdef",
            "rule.replace",
            &format!("rule/r{i}"),
            json!({ "rule": { "threshold": i } }),
        );
        audit::append(&**s, &a).await.unwrap();
    }
    let v = audit::verify(&**s, chain).await.unwrap();
    assert!(v.ok && v.entries == ENTRIES as u64, "{v:?}");
}

fn check(case: Tamper, v: &Verification) {
    let (seq, word) = case.expected();
    assert!(!v.ok, "{case:?} went unnoticed: {v:?}");
    assert_eq!(v.first_bad_seq, Some(seq), "{case:?}: {v:?}");
    assert_eq!(v.entries, (seq - 1) as u64, "{case:?}: {v:?}");
    let reason = v.reason.clone().unwrap();
    assert!(reason.contains(word), "{case:?}: {reason}");
}

/// What a chain cannot show on its own, an anchor kept elsewhere does: the newest entries
/// removed, or the tail replaced by a consistent chain of new entries. `truncate` deletes the
/// entries from a seq on, directly in the database.
async fn anchors_catch_truncation_and_rewrites<F, Fut>(s: &SharedStore, truncate: F)
where
    F: Fn(String, i64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for (chain, rewrite) in [("truncated", false), ("rewritten", true)] {
        build_chain(s, chain).await;
        let head = audit::verify(&**s, chain).await.unwrap();
        let anchor = Anchor::new(ENTRIES as i64, head.head_hash.as_deref().unwrap()).unwrap();
        let anchored = audit::verify_against(&**s, chain, Some(&anchor))
            .await
            .unwrap();
        assert!(anchored.ok, "{anchored:?}");
        truncate(chain.to_owned(), 7).await;
        if rewrite {
            for i in 0..2 {
                let a = Action::new(
                    chain,
                    "admin-cli",
                    "rule.delete",
                    &format!("rule/x{i}"),
                    json!({}),
                );
                audit::append(&**s, &a).await.unwrap();
            }
        }
        let plain = audit::verify(&**s, chain).await.unwrap();
        assert!(plain.ok, "the chain alone cannot tell: {plain:?}");
        let v = audit::verify_against(&**s, chain, Some(&anchor))
            .await
            .unwrap();
        assert!(!v.ok, "{chain}: {v:?}");
        let (seq, word) = if rewrite {
            (8, "anchor")
        } else {
            (7, "removed")
        };
        assert_eq!(v.first_bad_seq, Some(seq), "{chain}: {v:?}");
        assert!(v.reason.as_deref().unwrap().contains(word), "{v:?}");
    }
    assert!(Anchor::parse("8:abc").is_err());
    assert!(Anchor::parse(&format!("0:{}", "a".repeat(64))).is_err());
    assert!(Anchor::parse(&format!("x:{}", "a".repeat(64))).is_err());
}

// ---- SQLite -------------------------------------------------------------------------------

fn tamper_sqlite(db: &rusqlite::Connection, chain: &str, case: Tamper) {
    let exec = |sql: &str| {
        let n = db.execute(sql, rusqlite::params![chain, VICTIM]).unwrap();
        assert!(n >= 1, "{sql} changed nothing");
    };
    match case {
        Tamper::Detail => exec(
            "UPDATE audit SET detail = '{\"rule\":{\"threshold\":99}}' \
             WHERE project_id = ?1 AND seq = ?2",
        ),
        Tamper::Hash => exec(
            "UPDATE audit SET hash = (CASE WHEN substr(hash, 1, 1) = '0' THEN '1' ELSE '0' END) \
             || substr(hash, 2) WHERE project_id = ?1 AND seq = ?2",
        ),
        Tamper::Delete => exec("DELETE FROM audit WHERE project_id = ?1 AND seq = ?2"),
        Tamper::Swap => {
            exec("UPDATE audit SET seq = -1 WHERE project_id = ?1 AND seq = ?2");
            exec("UPDATE audit SET seq = ?2 WHERE project_id = ?1 AND seq = ?2 + 1");
            exec("UPDATE audit SET seq = ?2 + 1 WHERE project_id = ?1 AND seq = -1");
        }
        Tamper::RewriteWithHash => {
            let mut e = read_sqlite(db, chain, VICTIM);
            e.actor = "key:ffffffffffffffff".into();
            e.hash = audit::entry_hash(&e);
            db.execute(
                "UPDATE audit SET actor = ?3, hash = ?4 WHERE project_id = ?1 AND seq = ?2",
                rusqlite::params![chain, VICTIM, e.actor, e.hash],
            )
            .unwrap();
        }
        Tamper::WrongType => {
            exec("UPDATE audit SET time_ms = 'yesterday' WHERE project_id = ?1 AND seq = ?2")
        }
    }
}

fn read_sqlite(db: &rusqlite::Connection, chain: &str, seq: i64) -> store::AuditEntry {
    db.query_row(
        "SELECT project_id, seq, time_ms, actor, action, target, detail, prev_hash, hash \
         FROM audit WHERE project_id = ?1 AND seq = ?2",
        rusqlite::params![chain, seq],
        |r| {
            Ok(store::AuditEntry {
                chain: r.get(0)?,
                seq: r.get(1)?,
                time_ms: r.get(2)?,
                actor: r.get(3)?,
                action: r.get(4)?,
                target: r.get(5)?,
                detail: r.get(6)?,
                prev_hash: r.get(7)?,
                hash: r.get(8)?,
            })
        },
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_is_pinpointed_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let s = store::open(&format!("sqlite://{}", path.display()), "unused")
        .await
        .unwrap();
    let db = rusqlite::Connection::open(&path).unwrap();
    for case in CASES {
        let chain = format!("{case:?}").to_lowercase();
        build_chain(&s, &chain).await;
        tamper_sqlite(&db, &chain, case);
        check(case, &audit::verify(&*s, &chain).await.unwrap());
    }
    // Untouched chains still verify.
    build_chain(&s, "untouched").await;
    let path = path.clone();
    anchors_catch_truncation_and_rewrites(&s, |chain, from| {
        let path = path.clone();
        async move {
            let db = rusqlite::Connection::open(&path).unwrap();
            db.execute(
                "DELETE FROM audit WHERE project_id = ?1 AND seq >= ?2",
                rusqlite::params![chain, from],
            )
            .unwrap();
        }
    })
    .await;
}

// ---- MongoDB on FerretDB ------------------------------------------------------------------

async fn tamper_mongo(coll: &mongodb::Collection<Document>, chain: &str, case: Tamper) {
    let victim = doc! { "project_id": chain, "seq": VICTIM };
    let set = |d: Document| doc! { "$set": d };
    let one = |r: mongodb::results::UpdateResult| assert_eq!(r.modified_count, 1, "{case:?}");
    match case {
        Tamper::Detail => one(coll
            .update_one(
                victim,
                set(doc! { "detail": "{\"rule\":{\"threshold\":99}}" }),
            )
            .await
            .unwrap()),
        Tamper::Hash => one(coll
            .update_one(victim, set(doc! { "hash": "0".repeat(64) }))
            .await
            .unwrap()),
        Tamper::Delete => {
            assert_eq!(coll.delete_one(victim).await.unwrap().deleted_count, 1);
        }
        Tamper::Swap => {
            let a = coll.find_one(victim.clone()).await.unwrap().unwrap();
            let next = doc! { "project_id": chain, "seq": VICTIM + 1 };
            let b = coll.find_one(next).await.unwrap().unwrap();
            let (a_id, b_id) = (a.get("_id").unwrap().clone(), b.get("_id").unwrap().clone());
            // Through a free seq: the unique index refuses two entries at one seq.
            for (id, seq) in [(&a_id, -1), (&b_id, VICTIM), (&a_id, VICTIM + 1)] {
                one(coll
                    .update_one(doc! { "_id": id.clone() }, set(doc! { "seq": seq }))
                    .await
                    .unwrap());
            }
        }
        Tamper::RewriteWithHash => {
            let d = coll.find_one(victim.clone()).await.unwrap().unwrap();
            let mut e = store::AuditEntry {
                chain: chain.into(),
                seq: VICTIM,
                time_ms: d.get_i64("time_ms").unwrap(),
                actor: "key:ffffffffffffffff".into(),
                action: d.get_str("action").unwrap().into(),
                target: d.get_str("target").unwrap().into(),
                detail: d.get_str("detail").unwrap().into(),
                prev_hash: d.get_str("prev_hash").unwrap().into(),
                hash: String::new(),
            };
            e.hash = audit::entry_hash(&e);
            one(coll
                .update_one(victim, set(doc! { "actor": &e.actor, "hash": &e.hash }))
                .await
                .unwrap());
        }
        Tamper::WrongType => one(coll
            .update_one(victim, set(doc! { "detail": 42 }))
            .await
            .unwrap()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_is_pinpointed_on_ferretdb() {
    let db = common::FerretDb::start();
    let s = store::open(&db.uri(), "audit").await.unwrap();
    let client = mongodb::Client::with_uri_str(db.uri()).await.unwrap();
    let coll = client.database("audit").collection::<Document>("audit");
    for case in CASES {
        let chain = format!("{case:?}").to_lowercase();
        build_chain(&s, &chain).await;
        tamper_mongo(&coll, &chain, case).await;
        check(case, &audit::verify(&*s, &chain).await.unwrap());
    }
    build_chain(&s, "untouched").await;
    // A forged second entry at a taken seq under another `_id` is refused by the database.
    let mut forged = coll
        .find_one(doc! { "project_id": "untouched", "seq": 3 })
        .await
        .unwrap()
        .unwrap();
    forged.insert("_id", "forged");
    let err = coll.insert_one(forged).await.unwrap_err();
    assert!(
        err.to_string().contains("11000") || err.to_string().contains("duplicate"),
        "{err}"
    );
    anchors_catch_truncation_and_rewrites(&s, |chain, from| {
        let coll = coll.clone();
        async move {
            let gone = coll
                .delete_many(doc! { "project_id": chain, "seq": { "$gte": from } })
                .await
                .unwrap();
            assert!(gone.deleted_count >= 1);
        }
    })
    .await;
}
