//! Disk queue tests: unit cases plus a model-based property test (ops against an in-memory
//! model, with crashes, torn writes and damaged records).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;

use neurocloak_proto::v1::{LabelBatch, ModelIdentity, WindowProfile};
use proptest::prelude::*;

use super::segment::StoredRecord;
use super::*;

fn cfg(dir: &Path) -> QueueConfig {
    QueueConfig {
        dir: dir.to_path_buf(),
        max_bytes: 1 << 30,
        segment_bytes: 400,
        fsync: FsyncPolicy::Never,
        merge_grace_ms: 0,
    }
}

fn item(tag: &str) -> IngestItem {
    IngestItem {
        payload: Some(Payload::Labels(LabelBatch {
            identity: Some(ModelIdentity {
                project: tag.into(),
                ..Default::default()
            }),
            labels: vec![],
        })),
    }
}

fn tag_of(r: &RawRecord) -> String {
    tag_of_item(r.decode().unwrap().item.as_ref())
}

fn tag_of_item(item: Option<&IngestItem>) -> String {
    match item.and_then(|i| i.payload.as_ref()) {
        Some(Payload::Labels(b)) => b.identity.clone().unwrap_or_default().project,
        _ => String::new(),
    }
}

fn rec(inst: &str, seq: u64, tag: &str) -> NewRecord {
    NewRecord::new(inst.into(), seq, item(tag))
}

const ALL: BatchLimits = BatchLimits {
    max_items: usize::MAX,
    max_bytes: u64::MAX,
};

fn invariant(q: &DiskQueue) {
    let s = q.stats();
    assert_eq!(
        s.received,
        s.forwarded + s.dropped_total() + s.queued,
        "{s:?}"
    );
}

#[test]
fn append_forward_ack_and_dedupe() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = DiskQueue::open(cfg(dir.path())).unwrap();
    let out = q
        .append(
            vec![rec("a", 1, "x"), rec("a", 2, "y"), rec("a", 2, "y")],
            0,
        )
        .unwrap();
    assert_eq!(
        out,
        vec![
            Appended::Stored(1),
            Appended::Stored(2),
            Appended::Duplicate
        ]
    );
    assert_eq!(
        q.append(vec![rec("a", 1, "x")], 0).unwrap(),
        vec![Appended::Duplicate]
    );
    let b = q.next_batch(0, ALL, false).unwrap().unwrap();
    assert_eq!(b.records.iter().map(tag_of).collect::<Vec<_>>(), ["x", "y"]);
    assert!(q.ack(&b.batch_id, 0).unwrap());
    assert!(
        !q.ack(&b.batch_id, 0).unwrap(),
        "a second ack counts nothing"
    );
    let s = q.stats();
    assert_eq!(
        (s.received, s.forwarded, s.queued, s.duplicates),
        (2, 2, 0, 2)
    );
    drop(q);
    // The dedupe horizon survives a restart even though the records left the queue.
    let mut q = DiskQueue::open(cfg(dir.path())).unwrap();
    assert_eq!(
        q.append(vec![rec("a", 2, "y")], 0).unwrap(),
        vec![Appended::Duplicate]
    );
    assert_eq!(q.stats().queued, 0);
}

#[test]
fn records_read_back_are_the_records_appended() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = DiskQueue::open(cfg(dir.path())).unwrap();
    q.append(vec![rec("a", 7, "x"), rec("b", 9, "y")], 1234)
        .unwrap();
    let b = q.next_batch(1234, ALL, false).unwrap().unwrap();
    // Numbered by the queue, the rest as the receive stage encoded it.
    let got: Vec<StoredRecord> = b.records.iter().map(|r| r.decode().unwrap()).collect();
    let want = |id, inst: &str, sequence, tag| StoredRecord {
        id,
        arrival_ms: 1234,
        sdk_instance: inst.into(),
        sequence,
        item: Some(item(tag)),
    };
    assert_eq!(got, vec![want(1, "a", 7, "x"), want(2, "b", 9, "y")]);
    assert_eq!(b.records.iter().map(|r| r.id).collect::<Vec<_>>(), [1, 2]);
}

#[test]
fn undecodable_records_of_an_acked_batch_count_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = DiskQueue::open(cfg(dir.path())).unwrap();
    q.append(
        vec![rec("a", 1, "x"), rec("a", 2, "y"), rec("a", 3, "z")],
        0,
    )
    .unwrap();
    let b = q.next_batch(0, ALL, false).unwrap().unwrap();
    assert!(q.ack_without(&b.batch_id, 1, 0).unwrap());
    let s = q.stats();
    assert_eq!((s.received, s.forwarded, s.queued), (3, 2, 0));
    assert_eq!(s.dropped.get(&DropReason::Corrupt), Some(&1));
    invariant(&q);
}

#[test]
fn batch_in_flight_is_resent_with_the_same_id_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = DiskQueue::open(cfg(dir.path())).unwrap();
    q.append(vec![rec("a", 1, "x"), rec("a", 2, "y")], 0)
        .unwrap();
    let b = q.next_batch(0, ALL, false).unwrap().unwrap();
    drop(q);
    let mut q = DiskQueue::open(cfg(dir.path())).unwrap();
    q.append(vec![rec("a", 3, "z")], 0).unwrap();
    let again = q.next_batch(0, ALL, false).unwrap().unwrap();
    assert_eq!(again.batch_id, b.batch_id);
    assert_eq!(
        again.records.len(),
        2,
        "the late record is not folded into the old batch"
    );
    q.ack(&again.batch_id, 0).unwrap();
    let next = q.next_batch(0, ALL, false).unwrap().unwrap();
    assert_ne!(next.batch_id, b.batch_id);
    assert_eq!(next.records.iter().map(tag_of).collect::<Vec<_>>(), ["z"]);
}

#[test]
fn window_parts_wait_for_the_grace_period_capped_by_arrival() {
    let window = |start: i64| IngestItem {
        payload: Some(Payload::Window(WindowProfile {
            window_start_ms: start,
            window_length_ms: 1000,
            ..Default::default()
        })),
    };
    assert_eq!(ready_at(&window(0), 1000, 500), 1500);
    assert_eq!(ready_at(&window(0), 1200, 500), 1500);
    // A window far in the future (bad clock) still goes out one grace period after arrival.
    assert_eq!(ready_at(&window(i64::MAX - 10), 1000, 500), 1500);
    assert_eq!(ready_at(&window(-5000), 1000, 500), 1000);
    assert_eq!(ready_at(&item("l"), 1000, 500), 1000);

    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.merge_grace_ms = 500;
    let mut q = DiskQueue::open(c).unwrap();
    q.append(vec![NewRecord::new("a".into(), 1, window(0))], 1000)
        .unwrap();
    assert!(q.next_batch(1499, ALL, false).unwrap().is_none());
    assert_eq!(q.ready(1499, false).next_ready_ms, Some(1500));
    assert!(
        q.next_batch(1499, ALL, true).unwrap().is_some(),
        "drain ignores grace"
    );
}

#[test]
fn disk_cap_drops_oldest_segments_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.max_bytes = 1000;
    c.segment_bytes = 200;
    let mut q = DiskQueue::open(c.clone()).unwrap();
    for i in 0..60 {
        q.append(vec![rec("a", i + 1, &format!("r{i}"))], 0)
            .unwrap();
        invariant(&q);
        assert!(q.stats().disk_bytes <= c.max_bytes + c.segment_bytes + 100);
    }
    let s = q.stats();
    assert!(s.dropped[&DropReason::DiskCap] > 0, "{s:?}");
    let b = q.next_batch(0, ALL, false).unwrap().unwrap();
    // What is left is the newest run of records, ending with the last one.
    assert_eq!(tag_of(b.records.last().unwrap()), "r59");
    let first: u64 = tag_of(&b.records[0])[1..].parse().unwrap();
    assert_eq!(b.records.len() as u64, 60 - first);
    drop(q);
    let q = DiskQueue::open(c).unwrap();
    let s = q.stats();
    assert_eq!(
        s.dropped_total(),
        0,
        "a restart does not mistake capped records for damage"
    );
    assert_eq!(s.queued, 60 - first);
}

#[test]
fn cap_drop_of_the_batch_in_flight_cancels_its_ack() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.max_bytes = 600;
    c.segment_bytes = 150;
    let mut q = DiskQueue::open(c).unwrap();
    q.append(vec![rec("a", 1, "first")], 0).unwrap();
    let b = q.next_batch(0, ALL, false).unwrap().unwrap();
    for i in 2..40 {
        q.append(vec![rec("a", i, "more")], 0).unwrap();
    }
    assert!(!q.inflight_is(&b.batch_id));
    assert!(!q.ack(&b.batch_id, 0).unwrap());
    invariant(&q);
}

#[test]
fn rejected_batch_is_retried_record_by_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = DiskQueue::open(cfg(dir.path())).unwrap();
    q.append(
        vec![rec("a", 1, "ok1"), rec("a", 2, "bad"), rec("a", 3, "ok2")],
        0,
    )
    .unwrap();
    let b = q.next_batch(0, ALL, false).unwrap().unwrap();
    q.reject(&b.batch_id, 0).unwrap();
    let mut delivered = Vec::new();
    while let Some(b) = q.next_batch(0, ALL, false).unwrap() {
        assert_eq!(b.records.len(), 1);
        if tag_of(&b.records[0]) == "bad" {
            q.reject(&b.batch_id, 0).unwrap();
        } else {
            delivered.push(tag_of(&b.records[0]));
            q.ack(&b.batch_id, 0).unwrap();
        }
    }
    assert_eq!(delivered, ["ok1", "ok2"]);
    let s = q.stats();
    assert_eq!((s.forwarded, s.dropped[&DropReason::Rejected]), (2, 1));
    invariant(&q);
}

#[test]
fn damaged_state_file_is_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = DiskQueue::open(cfg(dir.path())).unwrap();
    q.append(vec![rec("a", 1, "x")], 0).unwrap();
    let b = q.next_batch(0, ALL, false).unwrap().unwrap();
    drop(q);
    fs::write(dir.path().join("forward.state"), b"garbage").unwrap();
    let mut q = DiskQueue::open(cfg(dir.path())).unwrap();
    assert!(q.state_was_damaged());
    let again = q.next_batch(0, ALL, false).unwrap().unwrap();
    assert_ne!(again.batch_id, b.batch_id);
    assert_eq!(tag_of(&again.records[0]), "x");
    let _ = b;
}

const ENOSPC: i32 = libc::ENOSPC;
const EIO: i32 = libc::EIO;

fn fail(q: &mut DiskQueue, op: SegmentOp, after: u32, errno: i32) {
    q.faults.plan.push((op, after, errno));
}

/// Every record a fresh open of the queue holds, as (id, tag), without opening a batch.
fn contents(c: &QueueConfig) -> (QueueStats, Vec<(u64, String)>) {
    let mut q = DiskQueue::open(c.clone()).unwrap();
    let got = q
        .read_range(0, u64::MAX)
        .iter()
        .map(|r| (r.id, tag_of(r)))
        .collect();
    (q.stats(), got)
}

#[test]
fn failed_write_then_retry_is_stored_once_and_forwarded() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path());
    let mut q = DiskQueue::open(c.clone()).unwrap();
    q.append(vec![rec("a", 1, "x")], 0).unwrap();
    // The second frame of the group fails halfway (ENOSPC after a partial write).
    fail(&mut q, SegmentOp::Write, 2, ENOSPC);
    let err = q
        .append(vec![rec("a", 2, "y"), rec("b", 1, "z")], 0)
        .unwrap_err();
    assert!(err.to_string().contains("No space left"), "{err}");
    let s = q.stats();
    assert_eq!((s.received, s.queued, s.write_errors), (1, 1, 1));
    invariant(&q);
    // The SDKs retry: neither push is mistaken for a duplicate, and the ids are the ones the
    // failed group would have had, so a restart sees no hole.
    assert_eq!(
        q.append(vec![rec("a", 2, "y"), rec("b", 1, "z")], 0)
            .unwrap(),
        vec![Appended::Stored(2), Appended::Stored(3)]
    );
    assert_eq!(
        q.append(vec![rec("a", 2, "y")], 0).unwrap(),
        vec![Appended::Duplicate]
    );
    let b = q.next_batch(0, ALL, false).unwrap().unwrap();
    assert_eq!(
        b.records.iter().map(tag_of).collect::<Vec<_>>(),
        ["x", "y", "z"]
    );
    assert!(q.ack(&b.batch_id, 0).unwrap());
    let s = q.stats();
    assert_eq!((s.received, s.forwarded, s.queued), (3, 3, 0));
    invariant(&q);
    drop(q);
    let (s, left) = contents(&c);
    assert_eq!((s.dropped_total(), left.len()), (0, 0), "{s:?}");
}

#[test]
fn failed_fsync_is_cut_off_and_a_restart_counts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.fsync = FsyncPolicy::Always;
    let mut q = DiskQueue::open(c.clone()).unwrap();
    q.append(vec![rec("a", 1, "x")], 0).unwrap();
    let (path, _, len) = q.locate(1).unwrap();
    fail(&mut q, SegmentOp::Sync, 0, EIO);
    assert!(q.append(vec![rec("a", 2, "y")], 0).is_err());
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        len,
        "the failed group is cut off its segment"
    );
    assert_eq!(q.stats().write_errors, 1);
    invariant(&q);
    drop(q);
    // Restarted before the SDK's retry came: the failed push is simply not there.
    let (s, got) = contents(&c);
    assert_eq!(s.dropped_total(), 0, "{s:?}");
    assert_eq!(got, [(1, "x".to_string())]);
    let mut q = DiskQueue::open(c.clone()).unwrap();
    assert_eq!(
        q.append(vec![rec("a", 2, "y")], 0).unwrap(),
        vec![Appended::Stored(2)]
    );
    drop(q);
    let (s, got) = contents(&c);
    assert_eq!(s.dropped_total(), 0, "{s:?}");
    assert_eq!(got, [(1, "x".to_string()), (2, "y".to_string())]);
}

#[test]
fn a_failed_write_that_cannot_be_cut_off_is_ignored_at_restart() {
    // A synced-but-failed group stays whole on disk; a failed write leaves a torn frame.
    for (op, errno) in [(SegmentOp::Sync, EIO), (SegmentOp::Write, ENOSPC)] {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(dir.path());
        c.fsync = FsyncPolicy::Always;
        let mut q = DiskQueue::open(c.clone()).unwrap();
        q.append(vec![rec("a", 1, "x")], 0).unwrap();
        fail(&mut q, op, 0, errno);
        fail(&mut q, SegmentOp::Truncate, 0, EIO);
        assert!(
            q.append(vec![rec("a", 2, "y"), rec("a", 3, "z")], 0)
                .is_err()
        );
        // The retry is stored (ids 2 and 3 are used up by the group left on disk).
        assert_eq!(
            q.append(vec![rec("a", 2, "y"), rec("a", 3, "z")], 0)
                .unwrap(),
            vec![Appended::Stored(4), Appended::Stored(5)]
        );
        assert_eq!(q.stats().write_errors, 1);
        invariant(&q);
        drop(q);
        let (s, got) = contents(&c);
        assert_eq!(s.dropped_total(), 0, "{op:?}: {s:?}");
        let tags: Vec<&str> = got.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(
            tags,
            ["x", "y", "z"],
            "{op:?}: stored once, not resurrected"
        );
        // And again: the cut made at the first restart holds.
        let (s, again) = contents(&c);
        assert_eq!((s.dropped_total(), again), (0, got), "{op:?}");
    }
}

#[test]
fn a_failed_group_in_a_fresh_segment_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path());
    let mut q = DiskQueue::open(c.clone()).unwrap();
    fail(&mut q, SegmentOp::Write, 0, ENOSPC);
    assert!(q.append(vec![rec("a", 1, "x")], 0).is_err());
    assert_eq!(q.stats().segments, 0);
    let segs = fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "seg")
        })
        .count();
    assert_eq!(segs, 0);
    assert_eq!(
        q.append(vec![rec("a", 1, "x")], 0).unwrap(),
        vec![Appended::Stored(1)]
    );
}

#[derive(Debug, Clone)]
enum Op {
    Append(usize),
    Retry,
    Forward(usize),
    SendNoAck(usize),
    Crash,
    TornAppend(usize, u8),
    Damage(usize),
    /// An append whose write (or fsync) fails at its k-th frame, optionally with the cut
    /// failing too; the SDK then retries the same sequences with the next append.
    FailedAppend(usize, u32, bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1usize..5).prop_map(Op::Append),
        1 => Just(Op::Retry),
        3 => (1usize..6).prop_map(Op::Forward),
        1 => (1usize..6).prop_map(Op::SendNoAck),
        1 => Just(Op::Crash),
        1 => ((1usize..4), any::<u8>()).prop_map(|(n, c)| Op::TornAppend(n, c)),
        1 => any::<usize>().prop_map(Op::Damage),
        2 => ((1usize..4), (0u32..5), any::<bool>())
            .prop_map(|(n, k, cut_fails)| Op::FailedAppend(n, k, cut_fails)),
    ]
}

struct Harness {
    /// Kept so the directory lives as long as the harness.
    _dir: tempfile::TempDir,
    cfg: QueueConfig,
    q: Option<DiskQueue>,
    /// (id, tag) of every record the queue acknowledged and has not forwarded or lost.
    model: VecDeque<(u64, String)>,
    seq: u64,
    tags: u64,
    inflight: Option<(String, Vec<u64>)>,
    /// The record with the highest sequence was lost, so a retry of it is new again.
    newest_lost: bool,
    newest_id: u64,
}

impl Harness {
    fn q(&mut self) -> &mut DiskQueue {
        self.q.as_mut().unwrap()
    }

    fn append(&mut self, n: usize) -> Vec<u64> {
        let tags: Vec<String> = (0..n)
            .map(|_| {
                self.tags += 1;
                format!("t{}", self.tags)
            })
            .collect();
        let recs: Vec<NewRecord> = tags
            .iter()
            .map(|t| {
                self.seq += 1;
                rec("inst", self.seq, t)
            })
            .collect();
        let out = self.q().append(recs, 0).unwrap();
        let mut ids = Vec::new();
        for (a, t) in out.into_iter().zip(tags) {
            let Appended::Stored(id) = a else {
                panic!("fresh sequence deduped")
            };
            self.model.push_back((id, t));
            ids.push(id);
            self.newest_id = id;
            self.newest_lost = false;
        }
        ids
    }

    fn reopen(&mut self) -> QueueStats {
        self.q = None;
        self.q = Some(DiskQueue::open(self.cfg.clone()).unwrap());
        self.q().stats()
    }

    /// After a crash the queue holds exactly the model, in order.
    fn check_contents(&mut self) {
        let b = self.q().next_batch(0, ALL, false).unwrap();
        let got: Vec<(u64, String)> = b
            .as_ref()
            .map(|b| b.records.iter().map(|r| (r.id, tag_of(r))).collect())
            .unwrap_or_default();
        let want: Vec<(u64, String)> = match &self.inflight {
            // A batch in flight comes back exactly as it was, even if more arrived since.
            Some((_, ids)) => self
                .model
                .iter()
                .filter(|(id, _)| ids.contains(id))
                .cloned()
                .collect(),
            None => self.model.iter().cloned().collect(),
        };
        assert_eq!(got, want);
        match (&self.inflight, &b) {
            (Some((bid, _)), Some(b)) => assert_eq!(&b.batch_id, bid),
            (None, Some(b)) => self.inflight = Some((b.batch_id.clone(), ids_of(b))),
            _ => {}
        }
    }
}

fn ids_of(b: &Batch) -> Vec<u64> {
    b.records.iter().map(|r| r.id).collect()
}

fn run_ops(ops: Vec<Op>) {
    run_ops_with(ops, FsyncPolicy::Never);
}

fn run_ops_with(ops: Vec<Op>, fsync: FsyncPolicy) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.fsync = fsync;
    let q = DiskQueue::open(c.clone()).unwrap();
    let mut h = Harness {
        _dir: dir,
        cfg: c,
        q: Some(q),
        model: VecDeque::new(),
        seq: 0,
        tags: 0,
        inflight: None,
        newest_lost: false,
        newest_id: 0,
    };
    for op in ops {
        match op {
            Op::Append(n) => {
                h.append(n);
            }
            Op::Retry => {
                let seq = h.seq;
                if seq == 0 {
                    continue;
                }
                let out = h.q().append(vec![rec("inst", seq, "dup")], 0).unwrap();
                if !h.newest_lost {
                    assert_eq!(out, vec![Appended::Duplicate]);
                } else if let Appended::Stored(id) = out[0] {
                    // The lost record's sequence may be new again (unless the dedupe horizon
                    // was persisted after it): keep the model in step.
                    h.model.push_back((id, "dup".into()));
                    h.newest_id = id;
                    h.newest_lost = false;
                }
            }
            Op::Forward(k) | Op::SendNoAck(k) => {
                let limits = BatchLimits {
                    max_items: k,
                    max_bytes: u64::MAX,
                };
                let Some(b) = h.q().next_batch(0, limits, false).unwrap() else {
                    assert!(h.model.is_empty());
                    continue;
                };
                let ids = ids_of(&b);
                if let Some((bid, want)) = &h.inflight {
                    assert_eq!(&b.batch_id, bid);
                    assert_eq!(&ids, want);
                } else {
                    let want: Vec<u64> = h.model.iter().take(k).map(|(id, _)| *id).collect();
                    assert_eq!(ids, want);
                }
                if matches!(op, Op::Forward(_)) {
                    assert!(h.q().ack(&b.batch_id, 0).unwrap());
                    h.model.retain(|(id, _)| !ids.contains(id));
                    h.inflight = None;
                } else {
                    h.inflight = Some((b.batch_id, ids));
                }
            }
            Op::Crash => {
                let s = h.reopen();
                assert_eq!(s.dropped_total(), 0, "{s:?}");
                h.check_contents();
            }
            Op::TornAppend(n, cut) => {
                let ids = h.append(n);
                let (path, off, len) = h.q().locate(*ids.last().unwrap()).unwrap();
                let cut_at = off + u64::from(cut) % len;
                let f = OpenOptions::new().write(true).open(&path).unwrap();
                f.set_len(cut_at).unwrap();
                h.model.pop_back();
                h.newest_lost = true;
                if h.inflight
                    .as_ref()
                    .is_some_and(|(_, v)| v.contains(ids.last().unwrap()))
                {
                    h.inflight = None;
                }
                let s = h.reopen();
                let lost = s.dropped_total();
                assert!(lost <= 1, "{s:?}");
                assert_eq!(s.received, s.queued + lost);
                h.check_contents();
            }
            Op::FailedAppend(n, k, cut_fails) => {
                let before = h.q().stats();
                // With `always` every other failure is the fsync's; with `never` a write's.
                let sync = h.cfg.fsync == FsyncPolicy::Always && k % 2 == 1;
                let op = if sync {
                    SegmentOp::Sync
                } else {
                    SegmentOp::Write
                };
                let at = if sync { 0 } else { k % (2 * n as u32) };
                fail(h.q(), op, at, ENOSPC);
                if cut_fails {
                    fail(h.q(), SegmentOp::Truncate, 0, EIO);
                }
                let recs: Vec<NewRecord> = (1..=n as u64)
                    .map(|i| rec("inst", h.seq + i, "failed"))
                    .collect();
                assert!(h.q().append(recs, 0).is_err());
                h.q().faults.plan.clear();
                let after = h.q().stats();
                assert_eq!(after.write_errors, before.write_errors + 1);
                assert_eq!(
                    (after.received, after.queued),
                    (before.received, before.queued)
                );
            }
            Op::Damage(ix) => {
                if h.model.is_empty() {
                    continue;
                }
                let i = ix % h.model.len();
                let (id, _) = h.model[i].clone();
                let (path, off, len) = h.q().locate(id).unwrap();
                let mut bytes = fs::read(&path).unwrap();
                let at = usize::try_from(off + len - 1).unwrap();
                bytes[at] ^= 0xFF;
                fs::write(&path, bytes).unwrap();
                h.model.remove(i);
                h.newest_lost |= id == h.newest_id;
                if h.inflight.as_ref().is_some_and(|(_, v)| v.contains(&id)) {
                    let (bid, mut v) = h.inflight.take().unwrap();
                    v.retain(|x| *x != id);
                    h.inflight = (!v.is_empty()).then_some((bid, v));
                }
                let s = h.reopen();
                assert_eq!(s.dropped_total(), 1, "{s:?}");
                h.check_contents();
            }
        }
        invariant(h.q());
    }
}

proptest! {
    // 48 cases keep the suite fast; PROPTEST_CASES=2000 for a deeper run.
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48)
    ))]
    #[test]
    fn disk_queue_matches_its_model(
        ops in prop::collection::vec(op(), 1..40),
        always in any::<bool>(),
    ) {
        run_ops_with(ops, if always { FsyncPolicy::Always } else { FsyncPolicy::Never });
    }
}

#[test]
fn regression_damage_then_append_then_crash() {
    run_ops(vec![
        Op::Append(3),
        Op::Crash,
        Op::Damage(2),
        Op::Append(1),
        Op::Crash,
    ]);
}

#[test]
fn regression_reused_ids_inside_a_lost_range() {
    use Op::*;
    run_ops(vec![
        Append(1),
        Append(3),
        Forward(2),
        Append(1),
        Append(1),
        Append(4),
        Forward(2),
        Forward(3),
        Forward(1),
        Damage(0),
        TornAppend(3, 0),
        Damage(6664439345867587473),
        Damage(1496622183026178103),
        TornAppend(2, 0),
        Damage(7001196144832943965),
        Append(2),
        Append(2),
        Damage(1553951953364120115),
    ]);
}

#[test]
fn regression_damage_after_id_reuse() {
    use Op::*;
    run_ops(vec![
        Append(1),
        Append(1),
        SendNoAck(2),
        Append(3),
        Crash,
        Retry,
        Forward(1),
        Damage(677002389159364403),
        Append(2),
        SendNoAck(1),
        Forward(1),
        Damage(8399307550120634562),
    ]);
}

#[test]
fn regression_two_torn_appends() {
    use Op::*;
    run_ops(vec![TornAppend(2, 0), TornAppend(1, 0)]);
}
