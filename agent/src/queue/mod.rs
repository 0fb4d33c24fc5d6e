//! The durable queue: everything the agent acknowledged, on local disk until the collector
//! acknowledged it in turn.
//!
//! Layout of `data_dir/queue/`: append-only segment files `<first id>.seg` (framing in
//! [`segment`]) and `forward.state`, the forwarder's cursor (first id not yet acknowledged by the
//! collector), the batch in flight (id and id range, so a batch is re-sent with the same
//! idempotency id after a restart) and the dedupe horizon of SDK instances whose records have
//! left the queue. The state file is replaced atomically (write, fsync, rename, fsync dir).
//!
//! Fsync policy ([`FsyncPolicy`]): `always` = group commit — all pushes that arrive while one
//! write+fdatasync is running go in the next single write+fdatasync, and none is acknowledged
//! before its fdatasync returned; `never` leaves flushing to the OS (survives a process crash,
//! not a power loss).
//!
//! A failed write or fsync fails the whole group (the receive stage answers UNAVAILABLE, which
//! SDKs retry) and leaves no trace: dedupe horizon and ids move only once a group is on disk,
//! and the segment is cut back to its last good length and closed (see
//! [`DiskQueue::append`]).
//!
//! Accounting (in records): `received == forwarded + dropped + queued` at every snapshot.
//! Records recovered from disk at start count as received by this process.

pub mod segment;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use neurocloak_proto::v1::IngestItem;
use neurocloak_proto::v1::ingest_item::Payload;
use prost::Message;

use crate::error::AgentError;
pub use segment::RawRecord;

/// When appended records are forced to disk before the push is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// Group commit: fdatasync before acknowledging, shared by all pushes in the group.
    Always,
    /// No fsync; the OS writes back on its own.
    Never,
}

impl std::str::FromStr for FsyncPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(Self::Always),
            "never" => Ok(Self::Never),
            _ => Err(format!(
                "fsync policy must be `always` or `never`, not {s:?}"
            )),
        }
    }
}

#[derive(Debug, Clone)]
pub struct QueueConfig {
    pub dir: PathBuf,
    /// Cap on segment bytes on disk; past it whole oldest segments are dropped (counted).
    pub max_bytes: u64,
    /// A segment is closed and a new one started once it holds this many bytes.
    pub segment_bytes: u64,
    pub fsync: FsyncPolicy,
    /// How long window parts wait after their window closed for parts of other processes.
    pub merge_grace_ms: i64,
}

/// Why records left the queue without reaching the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    DiskCap,
    Corrupt,
    Truncated,
    Rejected,
}

impl DropReason {
    pub const ALL: [DropReason; 4] = [
        DropReason::DiskCap,
        DropReason::Corrupt,
        DropReason::Truncated,
        DropReason::Rejected,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::DiskCap => "disk_cap",
            DropReason::Corrupt => "corrupt",
            DropReason::Truncated => "truncated",
            DropReason::Rejected => "rejected",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub received: u64,
    pub forwarded: u64,
    pub dropped: BTreeMap<DropReason, u64>,
    pub queued: u64,
    pub duplicates: u64,
    pub queued_bytes: u64,
    pub disk_bytes: u64,
    pub segments: u64,
    pub batches_acked: u64,
    pub oldest_arrival_ms: Option<i64>,
    /// Failed writes, fsyncs or segment creations (each failed one group of pushes, which
    /// the SDKs retry) and failed state-file writes after a stored group.
    pub write_errors: u64,
}

impl QueueStats {
    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }
}

/// A push as handed to the queue by the receive stage: already encoded, so the decoded push
/// (several times its wire size) is gone before the push waits for the group commit.
#[derive(Debug, Clone)]
pub struct NewRecord {
    pub sdk_instance: String,
    pub sequence: u64,
    /// `(window_start_ms, window_length_ms)` of a window part, which decides when it is ready.
    window: Option<(i64, i64)>,
    /// See [`segment::encode_tail`].
    tail: Vec<u8>,
}

impl NewRecord {
    pub fn new(sdk_instance: String, sequence: u64, item: IngestItem) -> Self {
        let window = match &item.payload {
            Some(Payload::Window(w)) => Some((w.window_start_ms, w.window_length_ms)),
            _ => None,
        };
        Self {
            tail: segment::encode_tail(sdk_instance.clone(), sequence, item),
            sdk_instance,
            sequence,
            window,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    Stored(u64),
    /// Same (sdk_instance, sequence) as a record already accepted: an SDK retry.
    Duplicate,
}

/// Records read back for forwarding, under one idempotency id (bodies checksummed, not yet
/// decoded: see [`RawRecord`]).
#[derive(Debug, Clone)]
pub struct Batch {
    pub batch_id: String,
    pub first_id: u64,
    pub last_id: u64,
    pub records: Vec<RawRecord>,
}

#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub max_items: usize,
    pub max_bytes: u64,
}

/// What is ready to forward right now, so the forwarder can decide to wait for a fuller batch.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ready {
    pub items: usize,
    pub bytes: u64,
    /// When the oldest ready record became ready.
    pub since_ms: Option<i64>,
    /// When the next not-yet-ready record becomes ready.
    pub next_ready_ms: Option<i64>,
    pub inflight: bool,
}

struct Entry {
    id: u64,
    arrival_ms: i64,
    ready_ms: i64,
    segment: u64,
    offset: u64,
    len: u64,
}

struct SegMeta {
    path: PathBuf,
    bytes: u64,
    /// Highest record id in the file. Names only order segments: after a torn tail, ids can be
    /// handed out again, so a name says nothing about which ids a file holds.
    max_id: Option<u64>,
}

#[derive(Clone, PartialEq, Message)]
struct StateFile {
    #[prost(uint64, tag = "1")]
    cursor: u64,
    #[prost(message, optional, tag = "2")]
    inflight: Option<InflightFile>,
    #[prost(message, repeated, tag = "3")]
    seen: Vec<SeenFile>,
    #[prost(uint64, tag = "4")]
    solo_until: u64,
    /// Id ranges `[from, to)` already counted as lost to damage (not counted again).
    #[prost(message, repeated, tag = "5")]
    lost: Vec<LostRange>,
    /// Segments whose bytes from an offset on belong to a failed write that could not be
    /// truncated at the time: a restart cuts them off.
    #[prost(message, repeated, tag = "6")]
    void_tails: Vec<VoidTail>,
}

#[derive(Clone, PartialEq, Message)]
struct VoidTail {
    #[prost(uint64, tag = "1")]
    segment: u64,
    #[prost(uint64, tag = "2")]
    offset: u64,
}

#[derive(Clone, PartialEq, Message)]
struct LostRange {
    #[prost(uint64, tag = "1")]
    from: u64,
    #[prost(uint64, tag = "2")]
    to: u64,
}

#[derive(Clone, PartialEq, Message)]
struct InflightFile {
    #[prost(string, tag = "1")]
    batch_id: String,
    #[prost(uint64, tag = "2")]
    first_id: u64,
    #[prost(uint64, tag = "3")]
    last_id: u64,
}

#[derive(Clone, PartialEq, Message)]
struct SeenFile {
    #[prost(string, tag = "1")]
    sdk_instance: String,
    #[prost(uint64, tag = "2")]
    max_sequence: u64,
    #[prost(int64, tag = "3")]
    seen_ms: i64,
}

/// An OS call on the segment being written, as named by an injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SegmentOp {
    Write,
    Sync,
    Truncate,
}

/// Failures that tests make the OS calls on the active segment return (ENOSPC, EIO…); in a
/// normal build it holds nothing and every call goes straight to the OS.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    /// `(op, calls of that op to let through first, errno)`.
    #[cfg(test)]
    pub(crate) plan: Vec<(SegmentOp, u32, i32)>,
}

impl Faults {
    #[cfg_attr(not(test), allow(clippy::unused_self))]
    fn check(&mut self, op: SegmentOp) -> std::io::Result<()> {
        #[cfg(test)]
        if let Some(i) = self.plan.iter().position(|(o, _, _)| *o == op) {
            if self.plan[i].1 == 0 {
                let (_, _, errno) = self.plan.remove(i);
                return Err(std::io::Error::from_raw_os_error(errno));
            }
            self.plan[i].1 -= 1;
        }
        let _ = op;
        Ok(())
    }

    /// A failing write may have written part of the buffer (ENOSPC mid-write); so does the
    /// injected one, leaving a torn frame for the queue to clean up.
    fn write_all(&mut self, file: &mut File, buf: &[u8]) -> std::io::Result<()> {
        match self.check(SegmentOp::Write) {
            Ok(()) => file.write_all(buf),
            Err(e) => {
                let _ = file.write_all(&buf[..buf.len() / 2]);
                Err(e)
            }
        }
    }

    fn sync_data(&mut self, file: &File) -> std::io::Result<()> {
        self.check(SegmentOp::Sync)?;
        file.sync_data()
    }

    fn truncate(&mut self, file: &File, len: u64) -> std::io::Result<()> {
        self.check(SegmentOp::Truncate)?;
        file.set_len(len)?;
        file.sync_data()
    }
}

/// SDK instances not heard from for this long are forgotten by the dedupe horizon.
const SEEN_TTL_MS: i64 = 6 * 3600 * 1000;
const SEEN_MAX: usize = 100_000;

pub struct DiskQueue {
    cfg: QueueConfig,
    segments: BTreeMap<u64, SegMeta>,
    active: Option<(u64, File)>,
    pending: VecDeque<Entry>,
    next_id: u64,
    cursor: u64,
    inflight: Option<InflightFile>,
    /// Records up to this id are forwarded one per batch, to isolate one the collector refused.
    solo_until: u64,
    /// Highest sequence accepted per SDK instance, and when it was last seen.
    seen: HashMap<String, (u64, i64)>,
    stats: QueueStats,
    state_damaged: bool,
    lost: Vec<LostRange>,
    void_tails: Vec<VoidTail>,
    pub(crate) faults: Faults,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> AgentError {
    AgentError::Queue(format!("{what} {}: {e}", path.display()))
}

/// When a record may be forwarded: window parts wait for the grace period after their window
/// closed (so parts of other processes can be merged with them), but never longer than the
/// grace period after they arrived, whatever the SDK's clock said.
pub fn ready_at(item: &IngestItem, arrival_ms: i64, grace_ms: i64) -> i64 {
    let window = match &item.payload {
        Some(Payload::Window(w)) => Some((w.window_start_ms, w.window_length_ms)),
        _ => None,
    };
    ready_at_window(window, arrival_ms, grace_ms)
}

fn ready_at_window(window: Option<(i64, i64)>, arrival_ms: i64, grace_ms: i64) -> i64 {
    match window {
        Some((start, length)) => {
            let close = start.saturating_add(length).saturating_add(grace_ms);
            close.clamp(arrival_ms, arrival_ms.saturating_add(grace_ms))
        }
        None => arrival_ms,
    }
}

impl DiskQueue {
    /// Opens (or creates) the queue, recovering every intact record after the cursor.
    pub fn open(cfg: QueueConfig) -> Result<Self, AgentError> {
        fs::create_dir_all(&cfg.dir).map_err(|e| io("creating", &cfg.dir, e))?;
        let (state, state_damaged) = read_state(&cfg.dir)?;
        let mut q = Self {
            state_damaged,
            segments: BTreeMap::new(),
            active: None,
            pending: VecDeque::new(),
            next_id: state.cursor.max(1),
            cursor: state.cursor.max(1),
            inflight: state.inflight,
            solo_until: state.solo_until,
            seen: state
                .seen
                .into_iter()
                .map(|s| (s.sdk_instance, (s.max_sequence, s.seen_ms)))
                .collect(),
            stats: QueueStats::default(),
            lost: state.lost,
            void_tails: state.void_tails,
            faults: Faults::default(),
            cfg,
        };
        q.recover()?;
        Ok(q)
    }

    pub fn config(&self) -> &QueueConfig {
        &self.cfg
    }

    /// True when `forward.state` could not be read at open: everything still on disk is sent
    /// again (under new batch ids), which the collector may store twice.
    pub fn state_was_damaged(&self) -> bool {
        self.state_damaged
    }

    fn recover(&mut self) -> Result<(), AgentError> {
        let mut files: Vec<(u64, PathBuf)> = fs::read_dir(&self.cfg.dir)
            .map_err(|e| io("listing", &self.cfg.dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter_map(|p| segment::parse_segment_name(&p).map(|id| (id, p)))
            .collect();
        files.sort();
        let mut expected = self.cursor;
        let mut torn_at_end = false;
        let mut repaired = false;
        for (first, path) in files {
            let mut buf = Vec::new();
            File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut buf))
                .map_err(|e| io("reading", &path, e))?;
            if let Some(v) = self.void_tails.iter().find(|v| v.segment == first) {
                cut_void_tail(&path, &mut buf, v.offset);
            }
            let mut scan = segment::scan(&buf);
            if scan.damaged_regions > 0 || scan.torn_tail_bytes > 0 {
                // Rewrite the segment with its intact records only, so the damage is counted
                // once and not again at every restart.
                buf = rewrite_segment(&path, &mut scan)?;
                repaired = true;
            }
            let torn_here = scan.torn_tail_bytes > 0;
            let max_id = scan.records.iter().map(|f| f.record.id).max();
            for found in scan.records {
                let r = found.record;
                self.next_id = self.next_id.max(r.id + 1);
                if r.id < self.cursor {
                    continue;
                }
                // A torn tail followed by more records shows up as an id gap below.
                torn_at_end = false;
                if r.id > expected {
                    // Ids are dense, so a gap between intact records is what damage destroyed;
                    // only the part of it not already counted at an earlier start counts.
                    let new = self.add_lost(expected, r.id);
                    self.count_lost(DropReason::Corrupt, new);
                    repaired |= new > 0;
                }
                expected = expected.max(r.id + 1);
                self.note_seen(&r.sdk_instance, r.sequence, r.arrival_ms);
                let item = r.item.unwrap_or_default();
                self.pending.push_back(Entry {
                    id: r.id,
                    arrival_ms: r.arrival_ms,
                    ready_ms: ready_at(&item, r.arrival_ms, self.cfg.merge_grace_ms),
                    segment: first,
                    offset: found.offset,
                    len: found.framed_len,
                });
                self.stats.received += 1;
                self.stats.queued_bytes += found.framed_len;
            }
            torn_at_end |= torn_here;
            self.segments.insert(
                first,
                SegMeta {
                    path,
                    bytes: buf.len() as u64,
                    max_id,
                },
            );
        }
        if torn_at_end {
            // The last write was cut short: one record (never acknowledged) is gone.
            self.count_lost(DropReason::Truncated, 1);
        }
        if self
            .inflight
            .as_ref()
            .is_some_and(|f| f.last_id < self.cursor)
        {
            self.inflight = None;
        }
        // Never hand out an id a persisted range still refers to, even if its record is gone.
        let referenced = self.inflight.as_ref().map(|f| f.last_id + 1);
        let lost = self.lost.iter().map(|l| l.to).max();
        self.next_id = self
            .next_id
            .max(referenced.unwrap_or(0))
            .max(lost.unwrap_or(0));
        if self.next_id > expected && (torn_at_end || referenced.is_some_and(|r| r > expected)) {
            // Ids skipped here belong to a torn or damaged tail already counted above.
            repaired |= self.add_lost(expected, self.next_id) > 0;
        }
        if self.pending.front().is_some_and(|e| e.id > self.cursor) || repaired {
            // Remember lost ids so a restart does not count the same gap again.
            self.cursor = self.pending.front().map_or(self.next_id, |e| e.id);
            let now = self.pending.back().map_or(0, |e| e.arrival_ms);
            self.write_state(now)?;
        }
        self.delete_acked_segments();
        self.refresh_stats();
        Ok(())
    }

    /// Records `[from, to)` as lost; returns how many of those ids were not known lost before.
    fn add_lost(&mut self, from: u64, to: u64) -> u64 {
        let known: u64 = self
            .lost
            .iter()
            .map(|l| to.min(l.to).saturating_sub(from.max(l.from)))
            .sum();
        self.lost.push(LostRange { from, to });
        // Keep the ranges disjoint so the overlap sum above stays exact.
        self.lost.sort_by_key(|l| l.from);
        let mut merged: Vec<LostRange> = Vec::with_capacity(self.lost.len());
        for l in self.lost.drain(..) {
            match merged.last_mut() {
                Some(m) if l.from <= m.to => m.to = m.to.max(l.to),
                _ => merged.push(l),
            }
        }
        self.lost = merged;
        (to - from).saturating_sub(known)
    }

    fn count_lost(&mut self, reason: DropReason, n: u64) {
        // Lost records were received (by some run of the agent) and are now dropped, so both
        // sides of the invariant move.
        self.stats.received += n;
        *self.stats.dropped.entry(reason).or_default() += n;
    }

    fn count_drop(&mut self, reason: DropReason, n: u64) {
        *self.stats.dropped.entry(reason).or_default() += n;
    }

    fn note_seen(&mut self, instance: &str, sequence: u64, now_ms: i64) {
        let e = self.seen.entry(instance.to_string()).or_insert((0, now_ms));
        e.0 = e.0.max(sequence);
        e.1 = e.1.max(now_ms);
    }

    /// The Shipper sends each instance's sequences in increasing order with one push in flight,
    /// so anything not above the highest accepted sequence is a retry.
    fn is_duplicate(&self, instance: &str, sequence: u64) -> bool {
        self.seen
            .get(instance)
            .is_some_and(|(max, _)| sequence <= *max)
    }

    /// Appends a group of pushes with one write and (per policy) one fdatasync.
    ///
    /// On an error nothing of the group counts as accepted: the dedupe horizon and the id
    /// allocation are left as they were and the segment is cut back to its last good length,
    /// so the SDKs' retries of the group are stored (not answered as duplicates) and a
    /// restart finds no hole in the ids.
    pub fn append(
        &mut self,
        records: Vec<NewRecord>,
        now_ms: i64,
    ) -> Result<Vec<Appended>, AgentError> {
        let mut out = Vec::with_capacity(records.len());
        let mut fresh = Vec::with_capacity(records.len());
        // Sequences of this group, so a retry inside the group is caught before the dedupe
        // horizon itself moves (which it does only once the group is on disk).
        let mut group: HashMap<String, u64> = HashMap::new();
        let mut next_id = self.next_id;
        let mut duplicates = 0;
        for r in records {
            let in_group = group
                .get(&r.sdk_instance)
                .is_some_and(|max| r.sequence <= *max);
            if in_group || self.is_duplicate(&r.sdk_instance, r.sequence) {
                duplicates += 1;
                out.push(Appended::Duplicate);
                continue;
            }
            group.insert(r.sdk_instance.clone(), r.sequence);
            out.push(Appended::Stored(next_id));
            fresh.push((next_id, r));
            next_id += 1;
        }
        if !fresh.is_empty() {
            let entries = self.write_group(&fresh, now_ms).inspect_err(|_| {
                self.stats.write_errors += 1;
            })?;
            self.next_id = next_id;
            for (_, r) in &fresh {
                self.note_seen(&r.sdk_instance, r.sequence, now_ms);
            }
            self.stats.received += entries.len() as u64;
            for e in entries {
                self.stats.queued_bytes += e.len;
                self.pending.push_back(e);
            }
        }
        self.stats.duplicates += duplicates;
        let capped = self.enforce_cap();
        self.refresh_stats();
        if capped {
            // The cursor moved past dropped records; a restart must not mistake them for damage.
            // The group itself is on disk, so its pushes are still acknowledged.
            if let Err(e) = self.write_state(now_ms) {
                self.stats.write_errors += 1;
                tracing::error!(error = %e, "saving the queue state after a disk-cap drop");
            }
        }
        Ok(out)
    }

    /// Writes (and per policy syncs) a group of numbered records to the active segment. On
    /// failure the segment is cut back to where the group started and closed.
    fn write_group(
        &mut self,
        fresh: &[(u64, NewRecord)],
        now_ms: i64,
    ) -> Result<Vec<Entry>, AgentError> {
        self.rotate_if_full();
        let (seg_first, base) = self.active_segment()?;
        let path = segment::segment_path(&self.cfg.dir, seg_first);
        let Some((_, file)) = self.active.as_mut() else {
            return Err(AgentError::Queue("no active segment".into()));
        };
        let mut written = 0u64;
        let mut entries = Vec::with_capacity(fresh.len());
        let mut result = Ok(());
        for (id, r) in fresh {
            let head = segment::encode_head(*id, now_ms);
            let mut frame = segment::frame_header(&[&head, &r.tail]);
            frame.extend_from_slice(&head);
            // The tail is written where it is: copying every push of a group into one buffer
            // would double the group's memory for the length of the write.
            result = self
                .faults
                .write_all(file, &frame)
                .and_then(|()| self.faults.write_all(file, &r.tail))
                .map_err(|e| io("appending to", &path, e));
            if result.is_err() {
                break;
            }
            let len = (frame.len() + r.tail.len()) as u64;
            entries.push(Entry {
                id: *id,
                arrival_ms: now_ms,
                ready_ms: ready_at_window(r.window, now_ms, self.cfg.merge_grace_ms),
                segment: seg_first,
                offset: base + written,
                len,
            });
            written += len;
        }
        if result.is_ok() && self.cfg.fsync == FsyncPolicy::Always {
            result = self
                .faults
                .sync_data(file)
                .map_err(|e| io("syncing", &path, e));
        }
        if let Err(e) = result {
            let ids = fresh.first().map_or(0, |f| f.0)..fresh.last().map_or(0, |f| f.0 + 1);
            self.abandon_active(base, ids, now_ms);
            return Err(e);
        }
        if let Some(m) = self.segments.get_mut(&seg_first) {
            m.bytes += written;
            let last_id = fresh.last().map_or(0, |f| f.0);
            m.max_id = Some(m.max_id.map_or(last_id, |x| x.max(last_id)));
        }
        Ok(entries)
    }

    /// After a failed write or fsync: cuts the active segment back to `base` (its length
    /// before the failed group) and closes it, so the next group starts a fresh file rather
    /// than one whose last write failed. If the cut fails too, the failed group may still be
    /// on disk, whole or torn: its ids are then never handed out again, are marked as known
    /// lost (never received, so not counted) and the segment is recorded as ending at `base`,
    /// which a restart enforces.
    fn abandon_active(&mut self, base: u64, ids: std::ops::Range<u64>, now_ms: i64) {
        let Some((seg_first, file)) = self.active.take() else {
            return;
        };
        match self.faults.truncate(&file, base) {
            Ok(()) if base == 0 => {
                if let Some(m) = self.segments.remove(&seg_first) {
                    let _ = fs::remove_file(&m.path);
                }
            }
            Ok(()) => {}
            Err(e) => {
                tracing::error!(error = %e, segment = seg_first, "cutting off a failed write");
                self.next_id = self.next_id.max(ids.end);
                self.add_lost(ids.start, ids.end);
                self.void_tails.push(VoidTail {
                    segment: seg_first,
                    offset: base,
                });
                let on_disk = file.metadata().map_or(base, |m| m.len().max(base));
                if let Some(m) = self.segments.get_mut(&seg_first) {
                    m.bytes = on_disk;
                }
                if let Err(e) = self.write_state(now_ms) {
                    // Two failures in a row: a restart may count the group as damage.
                    self.stats.write_errors += 1;
                    tracing::error!(error = %e, "saving the queue state after a failed write");
                }
            }
        }
    }

    fn rotate_if_full(&mut self) {
        let full = self.active.as_ref().is_some_and(|(first, _)| {
            self.segments
                .get(first)
                .is_some_and(|m| m.bytes >= self.cfg.segment_bytes)
        });
        if full {
            self.active = None;
        }
    }

    /// A fresh segment per process start: never append after a possibly torn tail.
    /// (Stale empty segments of earlier runs are deleted as acknowledged.)
    fn active_segment(&mut self) -> Result<(u64, u64), AgentError> {
        if let Some((first, _)) = &self.active {
            let bytes = self.segments.get(first).map_or(0, |m| m.bytes);
            return Ok((*first, bytes));
        }
        // Named after the id space position but always after every existing segment, so the
        // name order is the write order and no file is ever reopened for writing.
        let after_last = self.segments.keys().next_back().map_or(0, |k| k + 1);
        let first = self.next_id.max(after_last);
        let path = segment::segment_path(&self.cfg.dir, first);
        let file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)
            .map_err(|e| io("creating", &path, e))?;
        // Known before the directory sync, so a file whose creation may not be durable is
        // neither reused by name nor written to; as an empty segment it is deleted later.
        self.segments.insert(
            first,
            SegMeta {
                path,
                bytes: 0,
                max_id: None,
            },
        );
        sync_dir(&self.cfg.dir)?;
        self.active = Some((first, file));
        Ok((first, 0))
    }

    /// Drops whole oldest segments (never the one being written) while over the byte cap.
    fn enforce_cap(&mut self) -> bool {
        let active = self.active.as_ref().map(|(f, _)| *f);
        let mut capped = false;
        while self.disk_bytes() > self.cfg.max_bytes {
            let Some((&oldest, _)) = self.segments.iter().next() else {
                break;
            };
            if Some(oldest) == active {
                break;
            }
            capped = true;
            let mut dropped = 0;
            self.pending.retain(|e| {
                if e.segment == oldest {
                    dropped += 1;
                    false
                } else {
                    true
                }
            });
            self.stats.queued_bytes = self.pending.iter().map(|e| e.len).sum();
            self.count_drop(DropReason::DiskCap, dropped);
            if let Some(max) = self.segments.get(&oldest).and_then(|m| m.max_id) {
                self.cursor = self.cursor.max(max + 1);
                if self.inflight.as_ref().is_some_and(|f| f.first_id <= max) {
                    // Part of the batch in flight is gone; its ack (if any) no longer counts.
                    self.inflight = None;
                }
            }
            if let Some(m) = self.segments.remove(&oldest) {
                let _ = fs::remove_file(&m.path);
            }
        }
        capped
    }

    fn disk_bytes(&self) -> u64 {
        self.segments.values().map(|m| m.bytes).sum()
    }

    fn delete_acked_segments(&mut self) {
        let active = self.active.as_ref().map(|(f, _)| *f);
        let cursor = self.cursor;
        let done: Vec<u64> = self
            .segments
            .iter()
            .filter(|(first, m)| Some(**first) != active && m.max_id.is_none_or(|x| x < cursor))
            .map(|(first, _)| *first)
            .collect();
        for first in done {
            if let Some(m) = self.segments.remove(&first) {
                let _ = fs::remove_file(&m.path);
            }
        }
    }

    fn refresh_stats(&mut self) {
        self.stats.queued = self.pending.len() as u64;
        self.stats.disk_bytes = self.disk_bytes();
        self.stats.segments = self.segments.len() as u64;
        self.stats.oldest_arrival_ms = self.pending.front().map(|e| e.arrival_ms);
    }

    pub fn stats(&self) -> QueueStats {
        self.stats.clone()
    }

    pub fn ready(&self, now_ms: i64, drain: bool) -> Ready {
        let mut r = Ready {
            inflight: self.inflight.is_some(),
            ..Ready::default()
        };
        for e in &self.pending {
            if drain || e.ready_ms <= now_ms {
                r.items += 1;
                r.bytes += e.len;
                r.since_ms = Some(r.since_ms.map_or(e.ready_ms, |s: i64| s.min(e.ready_ms)));
            } else {
                r.next_ready_ms = Some(e.ready_ms);
                break;
            }
        }
        r
    }

    /// The batch to send next: the one in flight if any (same id, same records), else a new
    /// one made of the ready prefix of the queue. Persists the batch before returning it.
    pub fn next_batch(
        &mut self,
        now_ms: i64,
        limits: BatchLimits,
        drain: bool,
    ) -> Result<Option<Batch>, AgentError> {
        loop {
            if self.inflight.is_none() && !self.open_batch(now_ms, limits, drain)? {
                return Ok(None);
            }
            let Some(f) = self.inflight.clone() else {
                return Ok(None);
            };
            let records = self.read_range(f.first_id, f.last_id);
            if records.is_empty() {
                // Everything in it turned out unreadable (and is counted): move past it.
                self.settle(&f.batch_id, None, 0, now_ms)?;
                continue;
            }
            return Ok(Some(Batch {
                batch_id: f.batch_id,
                first_id: f.first_id,
                last_id: f.last_id,
                records,
            }));
        }
    }

    /// Picks the ready prefix of the queue as the next batch and persists it as in flight.
    fn open_batch(
        &mut self,
        now_ms: i64,
        limits: BatchLimits,
        drain: bool,
    ) -> Result<bool, AgentError> {
        let max_items = if self
            .pending
            .front()
            .is_some_and(|e| e.id <= self.solo_until)
        {
            1
        } else {
            limits.max_items.max(1)
        };
        let mut n = 0usize;
        let mut bytes = 0u64;
        for e in &self.pending {
            if n >= max_items || (n > 0 && bytes + e.len > limits.max_bytes) {
                break;
            }
            if !drain && e.ready_ms > now_ms {
                break;
            }
            n += 1;
            bytes += e.len;
        }
        let (Some(first), Some(last)) = (self.pending.front(), self.pending.get(n.max(1) - 1))
        else {
            return Ok(false);
        };
        if n == 0 {
            return Ok(false);
        }
        self.inflight = Some(InflightFile {
            batch_id: uuid::Uuid::new_v4().to_string(),
            first_id: first.id,
            last_id: last.id,
        });
        self.write_state(now_ms)?;
        Ok(true)
    }

    /// Reads records back; any that no longer decode are dropped from the queue and counted.
    fn read_range(&mut self, first: u64, last: u64) -> Vec<RawRecord> {
        let mut out = Vec::new();
        let mut bad = Vec::new();
        let mut open: Option<(u64, File)> = None;
        for e in self
            .pending
            .iter()
            .filter(|e| e.id >= first && e.id <= last)
        {
            if open.as_ref().is_none_or(|(s, _)| *s != e.segment) {
                open = self
                    .segments
                    .get(&e.segment)
                    .and_then(|m| File::open(&m.path).ok())
                    .map(|f| (e.segment, f));
            }
            let rec = open
                .as_mut()
                .and_then(|(_, f)| read_one(f, e.offset, e.len));
            match rec {
                Some(r) if r.id == e.id => out.push(r),
                _ => bad.push(e.id),
            }
        }
        if !bad.is_empty() {
            self.pending.retain(|e| {
                if bad.contains(&e.id) {
                    self.stats.queued_bytes -= e.len;
                    false
                } else {
                    true
                }
            });
            self.count_drop(DropReason::Corrupt, bad.len() as u64);
            self.refresh_stats();
        }
        out
    }

    /// Where a pending record's frame lives (tests damage files on purpose).
    #[cfg(test)]
    pub(crate) fn locate(&self, id: u64) -> Option<(PathBuf, u64, u64)> {
        let e = self.pending.iter().find(|e| e.id == id)?;
        let m = self.segments.get(&e.segment)?;
        Some((m.path.clone(), e.offset, e.len))
    }

    pub fn inflight_is(&self, batch_id: &str) -> bool {
        self.inflight
            .as_ref()
            .is_some_and(|f| f.batch_id == batch_id)
    }

    /// The collector stored the batch: its records leave the queue. False when the batch was
    /// meanwhile dropped (disk cap), in which case nothing is counted twice.
    pub fn ack(&mut self, batch_id: &str, now_ms: i64) -> Result<bool, AgentError> {
        self.settle(batch_id, None, 0, now_ms)
    }

    /// Like [`DiskQueue::ack`], for a batch of which `undecodable` records passed their
    /// checksum but did not decode, so the forwarder left them out: they count as corrupt.
    pub fn ack_without(
        &mut self,
        batch_id: &str,
        undecodable: u64,
        now_ms: i64,
    ) -> Result<bool, AgentError> {
        self.settle(batch_id, None, undecodable, now_ms)
    }

    /// The collector refused the batch for good. A batch of several records is retried one
    /// record per batch so only the bad record is lost; a single record is dropped (counted).
    pub fn reject(&mut self, batch_id: &str, now_ms: i64) -> Result<(), AgentError> {
        let Some(f) = self.inflight.clone().filter(|f| f.batch_id == batch_id) else {
            return Ok(());
        };
        let several = self
            .pending
            .iter()
            .filter(|e| e.id >= f.first_id && e.id <= f.last_id)
            .nth(1)
            .is_some();
        if several {
            self.solo_until = f.last_id;
            self.inflight = None;
            self.write_state(now_ms)
        } else {
            self.settle(batch_id, Some(DropReason::Rejected), 0, now_ms)
                .map(|_| ())
        }
    }

    fn settle(
        &mut self,
        batch_id: &str,
        drop: Option<DropReason>,
        undecodable: u64,
        now_ms: i64,
    ) -> Result<bool, AgentError> {
        let Some(f) = self.inflight.clone().filter(|f| f.batch_id == batch_id) else {
            return Ok(false);
        };
        let mut n = 0;
        while self.pending.front().is_some_and(|e| e.id <= f.last_id) {
            if let Some(e) = self.pending.pop_front() {
                self.stats.queued_bytes -= e.len;
                n += 1;
            }
        }
        let undecodable = undecodable.min(n);
        if undecodable > 0 {
            self.count_drop(DropReason::Corrupt, undecodable);
        }
        match drop {
            None => {
                self.stats.forwarded += n - undecodable;
                self.stats.batches_acked += 1;
            }
            Some(reason) => self.count_drop(reason, n),
        }
        self.cursor = self.cursor.max(f.last_id + 1);
        self.inflight = None;
        self.write_state(now_ms)?;
        self.delete_acked_segments();
        self.refresh_stats();
        Ok(true)
    }

    fn write_state(&mut self, now_ms: i64) -> Result<(), AgentError> {
        if self.seen.len() > SEEN_MAX {
            let mut by_age: Vec<i64> = self.seen.values().map(|(_, t)| *t).collect();
            by_age.sort_unstable();
            let cutoff = by_age[by_age.len() - SEEN_MAX];
            self.seen.retain(|_, (_, t)| *t >= cutoff);
        }
        self.seen.retain(|_, (_, t)| now_ms - *t < SEEN_TTL_MS);
        let cursor = self.cursor;
        self.lost.retain(|l| l.to > cursor);
        let segments = &self.segments;
        self.void_tails
            .retain(|v| segments.contains_key(&v.segment));
        let state = StateFile {
            lost: self.lost.clone(),
            void_tails: self.void_tails.clone(),
            cursor: self.cursor,
            inflight: self.inflight.clone(),
            seen: self
                .seen
                .iter()
                .map(|(k, (s, t))| SeenFile {
                    sdk_instance: k.clone(),
                    max_sequence: *s,
                    seen_ms: *t,
                })
                .collect(),
            solo_until: self.solo_until,
        };
        let tmp = self.cfg.dir.join("forward.state.tmp");
        let dst = self.cfg.dir.join("forward.state");
        let mut f = File::create(&tmp).map_err(|e| io("creating", &tmp, e))?;
        f.write_all(&segment::frame_state(&state.encode_to_vec()))
            .and_then(|()| f.sync_data())
            .map_err(|e| io("writing", &tmp, e))?;
        fs::rename(&tmp, &dst).map_err(|e| io("renaming", &tmp, e))?;
        sync_dir(&self.cfg.dir)
    }
}

/// Replaces a damaged segment by its intact records (offsets in `scan` are updated).
fn rewrite_segment(path: &Path, scan: &mut segment::Scan) -> Result<Vec<u8>, AgentError> {
    let mut out = Vec::new();
    for found in &mut scan.records {
        let framed = segment::frame(&found.record);
        found.offset = out.len() as u64;
        found.framed_len = framed.len() as u64;
        out.extend_from_slice(&framed);
    }
    let tmp = path.with_extension("seg.tmp");
    let mut f = File::create(&tmp).map_err(|e| io("creating", &tmp, e))?;
    f.write_all(&out)
        .and_then(|()| f.sync_data())
        .map_err(|e| io("writing", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io("replacing", path, e))?;
    Ok(out)
}

/// Drops the bytes of a write that failed and could not be cut off at the time.
fn cut_void_tail(path: &Path, buf: &mut Vec<u8>, offset: u64) {
    let Ok(offset) = usize::try_from(offset) else {
        return;
    };
    if buf.len() <= offset {
        return;
    }
    buf.truncate(offset);
    let cut = OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(offset as u64).and_then(|()| f.sync_data()));
    if let Err(e) = cut {
        // The entry stays in the state file, so the next start cuts again.
        tracing::error!(error = %e, path = %path.display(), "cutting off a failed write");
    }
}

fn read_one(f: &mut File, offset: u64, len: u64) -> Option<RawRecord> {
    let mut buf = vec![0u8; usize::try_from(len).ok()?];
    f.seek(SeekFrom::Start(offset)).ok()?;
    f.read_exact(&mut buf).ok()?;
    segment::unframe_record(buf)
}

fn read_state(dir: &Path) -> Result<(StateFile, bool), AgentError> {
    let path = dir.join("forward.state");
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((StateFile::default(), false));
        }
        Err(e) => return Err(io("reading", &path, e)),
    };
    // The file is replaced atomically, so damage means the disk itself failed; starting over
    // from the segments beats refusing to start.
    Ok(segment::unframe_state(&bytes)
        .and_then(|body| StateFile::decode(body).ok())
        .map_or((StateFile::default(), true), |s| (s, false)))
}

fn sync_dir(dir: &Path) -> Result<(), AgentError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("syncing directory", dir, e))
}

#[cfg(test)]
mod tests;
