//! The recording API: a [`Monitor`] turns rows and batches into per-window profiles and hands
//! closed windows to a [`Sink`] (the agent by default).
//!
//! Recording is sharded: each thread writes into one of a fixed set of shards (chosen once per
//! thread), each behind its own uncontended lock, so there is no global lock on the hot path.
//! When a window closes (wall clock past its end plus a small delay, checked by a periodic
//! harvester, or `flush`), the shards' parts are merged into one profile and shipped.

mod acc;
mod fork;
mod layout;
mod sink;
mod strict;
mod value;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use neurocloak_proto as pb;
use neurocloak_proto::v1::push_request::Payload;
use parking_lot::{Mutex, RwLock};
pub use pb::{FeatureKind, TaskType};

pub use acc::OVERFLOW_GROUP;
use acc::WindowAcc;
use layout::{Layout, MAX_SENSITIVE, Settings, infer_kind};
pub use sink::{MemorySink, Sink, SinkStats};
pub use value::{Batch, Column, ColumnData, MAX_ID_LEN, Prediction, Value, valid_id};

use crate::CoreError;
use crate::profile::{ReferenceProfile, WindowProfile, decile_edges};
use crate::ship::{Shipper, ShipperConfig};

/// Environment variable naming the agent endpoint when the config does not.
pub const AGENT_ENV: &str = "NEUROCLOAK_AGENT";
/// Agent endpoint used when neither the config nor the environment name one.
pub const DEFAULT_AGENT: &str = "unix:///tmp/neurocloak/agent.sock";
/// Labels per `LabelBatch` payload.
const LABELS_PER_PAYLOAD: usize = 10_000;
/// How often closed windows are looked for.
const HARVEST_TICK: Duration = Duration::from_millis(200);
/// Largest [`MonitorConfig::max_prediction_records`]: the collector's default limit of prediction
/// records in one window, so one process's window is never refused for its record count.
pub const MAX_PREDICTION_RECORDS: usize = 100_000;

/// Configuration of a [`Monitor`]. Start from [`MonitorConfig::new`] and set fields.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    /// Project, model, version, environment.
    pub identity: pb::ModelIdentity,
    /// Binary / multiclass classification or regression.
    pub task: TaskType,
    /// Feature names and kinds; `None` infers them from the first row.
    pub features: Option<Vec<(String, FeatureKind)>>,
    /// Class names in index order. Binary tasks default to `["0", "1"]`.
    pub classes: Vec<String>,
    /// Sensitive attributes (feature names) for per-group outcomes; at most 8.
    pub sensitive: Vec<String>,
    /// Tumbling window length; windows are aligned to multiples of it since the Unix epoch.
    pub window: Duration,
    /// How long after a window's end its parts are collected.
    pub close_delay: Duration,
    /// Reservoir sample size per window.
    pub reservoir_size: u32,
    /// Share of prediction ids hash-sampled (0 to 1).
    pub hash_sample_rate: f64,
    /// Most hash-sampled rows kept per window and process.
    pub max_hash_samples: usize,
    /// Longer strings are cut to this many bytes and counted as truncated.
    pub max_string_len: usize,
    /// Prediction records (for delayed labels) kept per window and process; more are counted as
    /// dropped. At most [`MAX_PREDICTION_RECORDS`].
    pub max_prediction_records: usize,
    /// Reject rows with data-quality issues with [`CoreError::Data`] instead of counting them.
    pub strict: bool,
    /// Agent endpoint; `None` reads `NEUROCLOAK_AGENT`, then uses [`DEFAULT_AGENT`].
    pub agent_endpoint: Option<String>,
    /// Seed of the sketches' and samplers' generators.
    pub seed: u64,
}

impl MonitorConfig {
    /// Defaults for a model: binary classification, inferred schema, 60 s windows.
    pub fn new(project: &str, model: &str, version: &str) -> Self {
        Self {
            identity: pb::ModelIdentity {
                project: project.into(),
                model: model.into(),
                version: version.into(),
                environment: "production".into(),
            },
            task: TaskType::BinaryClassification,
            features: None,
            classes: Vec::new(),
            sensitive: Vec::new(),
            window: Duration::from_secs(60),
            close_delay: Duration::from_secs(1),
            reservoir_size: crate::profile::DEFAULT_RESERVOIR,
            hash_sample_rate: 0.01,
            max_hash_samples: 10_000,
            max_string_len: 1024,
            max_prediction_records: 20_000,
            strict: false,
            agent_endpoint: None,
            seed: crate::sketch::DEFAULT_KLL_SEED,
        }
    }

    /// The agent endpoint this config resolves to.
    pub fn resolved_endpoint(&self) -> String {
        self.agent_endpoint
            .clone()
            .or_else(|| std::env::var(AGENT_ENV).ok().filter(|s| !s.is_empty()))
            .or_else(|| {
                std::env::var(crate::ship::ENDPOINT_ENV)
                    .ok()
                    .filter(|s| !s.is_empty())
            })
            .unwrap_or_else(|| DEFAULT_AGENT.to_owned())
    }

    fn settings(&self) -> crate::Result<Settings> {
        let bad = |m: &str| Err(CoreError::Config(m.to_owned()));
        let window_ms = i64::try_from(self.window.as_millis()).unwrap_or(0);
        if window_ms < 10 {
            return bad("window must be at least 10 ms");
        }
        if !(0.0..=1.0).contains(&self.hash_sample_rate) {
            return bad("hash_sample_rate must be within [0, 1]");
        }
        if self.max_string_len == 0 {
            return bad("max_string_len must be positive");
        }
        if self.reservoir_size > crate::profile::MAX_RESERVOIR {
            return bad("reservoir_size above 65536");
        }
        if self.max_prediction_records > MAX_PREDICTION_RECORDS {
            return Err(CoreError::Config(format!(
                "max_prediction_records must be at most {MAX_PREDICTION_RECORDS}, got {}",
                self.max_prediction_records
            )));
        }
        if self.sensitive.len() > MAX_SENSITIVE {
            return bad("at most 8 sensitive attributes");
        }
        let classes = match self.task {
            TaskType::BinaryClassification if self.classes.is_empty() => {
                vec!["0".to_owned(), "1".to_owned()]
            }
            TaskType::BinaryClassification if self.classes.len() != 2 => {
                return bad("a binary task has exactly 2 classes");
            }
            TaskType::MulticlassClassification
                if self.classes.len() < 2
                    || self.classes.len() > crate::profile::MAX_CLASSES as usize =>
            {
                return bad("a multiclass task needs 2 to 1024 class names");
            }
            TaskType::Unspecified => return bad("task type is required"),
            TaskType::Regression => Vec::new(),
            _ => self.classes.clone(),
        };
        if let Some(f) = &self.features
            && let Some(s) = self
                .sensitive
                .iter()
                .find(|s| !f.iter().any(|(n, _)| n == *s))
        {
            return Err(CoreError::Config(format!(
                "sensitive attribute `{s}` is not a feature"
            )));
        }
        let rate = self.hash_sample_rate;
        Ok(Settings {
            identity: self.identity.clone(),
            task: self.task,
            classes,
            window_ms,
            reservoir: self.reservoir_size,
            hash_threshold: if rate >= 1.0 {
                u64::MAX
            } else {
                (rate * 2f64.powi(64)) as u64
            },
            max_string: self.max_string_len,
            max_records: self.max_prediction_records,
            max_hash_samples: self.max_hash_samples,
            strict: self.strict,
            seed: self.seed,
        })
    }
}

/// Counters of a monitor and its sink.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MonitorStats {
    /// Payloads handed to the sink.
    pub sent: u64,
    /// Payloads the agent acknowledged.
    pub delivered: u64,
    /// Payloads dropped by the sink.
    pub dropped: u64,
    /// Payloads waiting or in flight.
    pub queued: u64,
    /// Window parts shipped.
    pub windows: u64,
    /// Rows rejected in strict mode.
    pub rejected: u64,
}

#[repr(align(128))]
struct Shard {
    state: Mutex<ShardState>,
}

#[derive(Default)]
struct ShardState {
    current: Option<WindowAcc>,
    closed: Vec<WindowAcc>,
}

struct Inner {
    config: MonitorConfig,
    settings: Arc<Settings>,
    layout: RwLock<Option<Arc<Layout>>>,
    /// Set once `layout` is `Some`, so rows check a flag instead of taking the lock.
    layout_ready: AtomicBool,
    reference_edges: RwLock<BTreeMap<String, Vec<f64>>>,
    shards: Box<[Shard]>,
    sink: Arc<dyn Sink>,
    harvester: AtomicBool,
    shut: AtomicBool,
    /// The fork generation this state belongs to (see [`fork::generation`]).
    fork_gen: AtomicU64,
    windows: AtomicU64,
    rejected: AtomicU64,
}

/// Records predictions of one model version. Cheap to clone (shared state); `Send + Sync`.
#[derive(Clone)]
pub struct Monitor {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("identity", &self.inner.config.identity)
            .finish_non_exhaustive()
    }
}

/// Wall-clock ms since the Unix epoch. On Linux the coarse clock (a few ns instead of ~20, with
/// 1–4 ms resolution, far below any window length) because every row reads it.
#[cfg(target_os = "linux")]
fn now_ms() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) };
    // time_t and c_long are i32 on 32-bit targets.
    #[allow(clippy::useless_conversion)]
    if rc == 0 {
        i64::from(ts.tv_sec) * 1000 + i64::from(ts.tv_nsec) / 1_000_000
    } else {
        precise_now_ms()
    }
}

#[cfg(not(target_os = "linux"))]
fn now_ms() -> i64 {
    precise_now_ms()
}

fn precise_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

thread_local! {
    static SLOT: usize = {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) as usize
    };
}

impl Monitor {
    /// A monitor shipping to the agent (endpoint from the config or the environment). No thread
    /// and no connection is created before the first row.
    pub fn new(config: MonitorConfig) -> crate::Result<Self> {
        let shipper = Shipper::new(ShipperConfig {
            endpoint: config.resolved_endpoint(),
            ..ShipperConfig::default()
        })
        .map_err(|e| CoreError::Config(e.to_string()))?;
        Self::with_sink(config, Arc::new(shipper))
    }

    /// A monitor delivering to a custom sink (e.g. [`MemorySink`]).
    pub fn with_sink(config: MonitorConfig, sink: Arc<dyn Sink>) -> crate::Result<Self> {
        let settings = Arc::new(config.settings()?);
        fork::watch();
        let layout = config
            .features
            .clone()
            .map(|f| Arc::new(Layout::new(f, &config.sensitive, &settings, false)));
        let n = std::thread::available_parallelism()
            .map_or(4, |n| n.get())
            .clamp(2, 32)
            * 2;
        Ok(Self {
            inner: Arc::new(Inner {
                settings,
                layout_ready: AtomicBool::new(layout.is_some()),
                layout: RwLock::new(layout),
                reference_edges: RwLock::new(BTreeMap::new()),
                shards: (0..n)
                    .map(|_| Shard {
                        state: Mutex::new(ShardState::default()),
                    })
                    .collect(),
                sink,
                harvester: AtomicBool::new(false),
                shut: AtomicBool::new(false),
                fork_gen: AtomicU64::new(fork::generation()),
                windows: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
                config,
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &MonitorConfig {
        &self.inner.config
    }

    /// Column index of a feature for [`Monitor::log_indexed`]; `None` before the schema is known
    /// (given in the config or inferred from the first named row) or for unknown names.
    pub fn feature_index(&self, name: &str) -> Option<usize> {
        self.inner.layout.read().as_ref()?.index.get(name).copied()
    }

    /// Feature names in column order (empty before the schema is known).
    pub fn feature_names(&self) -> Vec<String> {
        self.inner
            .layout
            .read()
            .as_ref()
            .map(|l| l.names.clone())
            .unwrap_or_default()
    }

    /// Records one row given by feature name. Never blocks on I/O; data-quality problems are
    /// counted, or in strict mode rejected with [`CoreError::Data`].
    pub fn log(&self, features: &[(&str, Value<'_>)], p: &Prediction<'_>) -> crate::Result<()> {
        self.check_fork();
        let inner = &*self.inner;
        inner.check_open()?;
        if !inner.layout_ready.load(Ordering::Acquire) {
            inner.layout_or_infer(features);
        }
        let now = now_ms();
        let r = inner.with_window(now, |acc| {
            if inner.settings.strict {
                inner.strict_named(&acc.layout, features, p)?;
            }
            acc.log_named(features, p, now);
            Ok(())
        });
        self.kick();
        r
    }

    /// Records one row given in schema order (see [`Monitor::feature_index`]): the fast path for
    /// bindings. Fewer values than features count the rest as missing; more count as extra.
    pub fn log_indexed(&self, values: &[Value<'_>], p: &Prediction<'_>) -> crate::Result<()> {
        self.check_fork();
        let inner = &*self.inner;
        inner.check_open()?;
        if !inner.layout_ready.load(Ordering::Acquire) {
            return Err(CoreError::Config(
                "log_indexed needs a schema: configure features or log a named row first".into(),
            ));
        }
        let now = now_ms();
        let r = inner.with_window(now, |acc| {
            if inner.settings.strict {
                inner.strict_indexed(&acc.layout, values, p)?;
            }
            acc.log_indexed(values, p, now);
            Ok(())
        });
        self.kick();
        r
    }

    /// Records a columnar batch (borrowed slices; numeric columns are read in place). A malformed
    /// batch (columns of different lengths, offsets or codes out of range) is an error;
    /// data-quality problems inside it are counted (or rejected in strict mode).
    pub fn log_batch(&self, batch: &Batch<'_>) -> crate::Result<()> {
        self.check_fork();
        let inner = &*self.inner;
        inner.check_open()?;
        let n = batch.validate()?;
        if n == 0 {
            return Ok(());
        }
        if !inner.layout_ready.load(Ordering::Acquire) {
            inner.layout_or_infer_batch(batch);
        }
        let now = now_ms();
        let r = inner.with_window(now, |acc| {
            if inner.settings.strict {
                inner.strict_batch(&acc.layout, batch, n)?;
            }
            acc.log_batch(batch, n, now);
            Ok(())
        });
        self.kick();
        r
    }

    /// Sends ground truth for earlier predictions, joined by id at the collector.
    pub fn log_labels(&self, ids: &[&str], labels: &[Value<'_>]) -> crate::Result<()> {
        let inner = &*self.inner;
        inner.check_open()?;
        if ids.len() != labels.len() {
            return Err(CoreError::Batch(format!(
                "{} ids but {} labels",
                ids.len(),
                labels.len()
            )));
        }
        if let Some(i) = ids.iter().position(|id| !valid_id(id)) {
            // The collector refuses a whole label batch holding such an id: refuse it here,
            // where the caller can still fix it, rather than lose the batch downstream.
            return Err(CoreError::Batch(format!(
                "ids[{i}]: a prediction id must be 1 to {MAX_ID_LEN} bytes without control \
                 characters ({} bytes given)",
                ids[i].len()
            )));
        }
        let max = inner.settings.max_string;
        let now = now_ms();
        for (ids, labels) in ids
            .chunks(LABELS_PER_PAYLOAD)
            .zip(labels.chunks(LABELS_PER_PAYLOAD))
        {
            let records = ids
                .iter()
                .zip(labels)
                .map(|(id, l)| pb::LabelRecord {
                    id: (*id).to_owned(),
                    label: Some(l.to_proto(max)),
                    timestamp_ms: now,
                })
                .collect();
            inner.sink.enqueue(Payload::Labels(pb::LabelBatch {
                identity: Some(inner.settings.identity.clone()),
                labels: records,
            }));
        }
        self.kick();
        Ok(())
    }

    /// Builds a reference profile from training data, keeps its decile edges so that later
    /// windows count exact bins for every numeric feature, and ships it. Windows already open
    /// keep their layout; bins start with the next window.
    pub fn set_reference(&self, batch: &Batch<'_>) -> crate::Result<ReferenceProfile> {
        let inner = &*self.inner;
        inner.check_open()?;
        let n = batch.validate()?;
        let base = inner.layout_or_infer_batch(batch);
        let mut edges = BTreeMap::new();
        for col in &batch.features {
            let Some(&i) = base.index.get(col.name) else {
                continue;
            };
            if base.kinds[i] != FeatureKind::Numeric {
                continue;
            }
            let values: Vec<f64> = (0..n)
                .filter_map(|r| match col.value(r) {
                    Some(Value::Number(x)) => Some(x),
                    _ => None,
                })
                .collect();
            if let Some(e) = decile_edges(&values) {
                edges.insert(col.name.to_owned(), e);
            }
        }
        let layout = Arc::new(base.with_edges(&edges));
        let now = now_ms();
        let mut acc = WindowAcc::new(0, Arc::clone(&layout), Arc::clone(&inner.settings), 0);
        acc.log_batch(batch, n, now);
        let profile = acc.into_profile();
        let bins = profile
            .features
            .iter()
            .filter_map(|(k, c)| Some((k.clone(), c.numeric.as_ref()?.bins.clone()?)))
            .collect();
        let reference = ReferenceProfile {
            identity: inner.settings.identity.clone(),
            profile,
            bins,
            created_ms: now,
        };
        inner.install_edges(&edges);
        inner.sink.enqueue(Payload::Reference(reference.to_proto()));
        self.kick();
        Ok(reference)
    }

    /// Installs reference edges obtained elsewhere (e.g. fetched from the agent by a worker
    /// process that did not build the reference itself).
    pub fn set_reference_edges(&self, edges: BTreeMap<String, Vec<f64>>) -> crate::Result<()> {
        for (name, e) in &edges {
            crate::sketch::FixedBins::new(e.clone())
                .map_err(|err| CoreError::Config(format!("edges of `{name}`: {err}")))?;
        }
        self.inner.install_edges(&edges);
        Ok(())
    }

    /// Asks the agent for the reference's bin edges of this model version and installs them
    /// (what a worker process does when another process called `set_reference`). Returns how
    /// many features got edges; windows opened afterwards count exact bins.
    pub fn fetch_reference_edges(&self, timeout: Duration) -> crate::Result<usize> {
        let edges = self
            .inner
            .sink
            .reference_edges(&self.inner.settings.identity, timeout)?;
        let n = edges.len();
        if n > 0 {
            self.set_reference_edges(edges)?;
        }
        Ok(n)
    }

    /// Records one prediction latency.
    pub fn record_latency(&self, latency: Duration) {
        self.check_fork();
        let now = now_ms();
        self.inner.with_window(now, |acc| {
            acc.latency
                .get_or_insert_with(crate::sketch::Latency::new)
                .record(latency);
        });
        self.kick();
    }

    /// Runs a prediction, recording its latency and, when it fails, an error: the wrapper the
    /// bindings' decorators build on.
    pub fn observe<T, E>(&self, predict: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let started = std::time::Instant::now();
        let out = predict();
        self.record_latency(started.elapsed());
        if out.is_err() {
            self.record_error();
        }
        out
    }

    /// Records the result of a robustness probe (the SDK called the real model on perturbed
    /// rows) into the window open now; `probe_time_ms` is set to the recording time, which is
    /// what attributes it to that window. The collector scores the window's rows-weighted
    /// stability. A probe with a non-finite or out-of-range number, no rows or repeats, or an
    /// oversized or badly named sensitivity map is refused with [`CoreError::InvalidProto`].
    pub fn record_robustness(&self, mut probe: pb::RobustnessProbe) -> crate::Result<()> {
        self.check_fork();
        self.inner.check_open()?;
        let now = now_ms();
        probe.probe_time_ms = now;
        crate::profile::check_probe(&probe)
            .map_err(|e| crate::error::invalid("RobustnessProbe", e.to_string()))?;
        self.inner.with_window(now, |acc| {
            crate::profile::merge_probes(
                &mut acc.robustness,
                &mut acc.robustness_dropped,
                std::slice::from_ref(&probe),
                0,
            );
        });
        self.kick();
        Ok(())
    }

    /// Counts one failed prediction.
    pub fn record_error(&self) {
        self.check_fork();
        let now = now_ms();
        self.inner.with_window(now, |acc| acc.errors += 1);
        self.kick();
    }

    /// Closes every open window (including the current one, whose later rows will form another
    /// part of it) and waits until the sink has delivered everything.
    pub fn flush(&self, timeout: Duration) -> crate::Result<()> {
        self.inner.harvest(true);
        self.inner.sink.flush(timeout)
    }

    /// Flushes, then stops: later calls return [`CoreError::Shutdown`].
    pub fn shutdown(&self, timeout: Duration) -> crate::Result<()> {
        self.inner.harvest(true);
        self.inner.shut.store(true, Ordering::SeqCst);
        self.inner.sink.shutdown(timeout)
    }

    /// Delivery and recording counters.
    pub fn stats(&self) -> MonitorStats {
        let s = self.inner.sink.stats();
        MonitorStats {
            sent: s.sent,
            delivered: s.delivered,
            dropped: s.dropped,
            queued: s.queued,
            windows: self.inner.windows.load(Ordering::Relaxed),
            rejected: self.inner.rejected.load(Ordering::Relaxed),
        }
    }

    /// Closes windows whose end plus the close delay has passed and hands them to the sink; the
    /// background harvester calls this periodically. Returns how many window parts were shipped.
    pub fn harvest(&self) -> usize {
        self.inner.harvest(false)
    }

    /// Call before `fork()`: holds every shard lock so no lock is copied mid-update.
    pub fn before_fork(&self) {
        for s in self.inner.shards.iter() {
            std::mem::forget(s.state.lock());
        }
        std::mem::forget(self.inner.layout.write());
        self.inner.sink.before_fork();
    }

    /// Call in the parent after `fork()`.
    pub fn after_fork_parent(&self) {
        self.release_fork_locks();
        self.inner.sink.after_fork_parent();
    }

    /// Call in the child after `fork()`: the child starts with empty windows (the parent ships
    /// what it recorded) and a fresh shipper and harvester.
    pub fn after_fork_child(&self) {
        self.release_fork_locks();
        self.inner.reset_after_fork(false);
    }

    /// Starts the background harvester on first use (and again in a forked child).
    #[inline]
    fn kick(&self) {
        if !self.inner.harvester.load(Ordering::Relaxed) {
            self.inner.ensure_harvester(&self.inner);
        }
    }

    /// Notices a fork nobody told us about (no hooks called): the first recording call in the
    /// child drops the parent's windows, which the parent ships itself.
    #[inline]
    fn check_fork(&self) {
        if fork::generation() != self.inner.fork_gen.load(Ordering::Relaxed) {
            self.inner.reset_after_fork(true);
        }
    }

    fn release_fork_locks(&self) {
        // SAFETY: `before_fork` locked each of these exactly once and forgot the guards; this
        // thread (the one that forked) is the only one left that could hold them.
        unsafe {
            for s in self.inner.shards.iter() {
                s.state.force_unlock();
            }
            self.inner.layout.force_unlock_write();
        }
    }
}

impl Inner {
    /// Empties every shard and forgets the harvester after a fork. `unannounced`: no
    /// `before_fork` held the locks, so a lock found held belongs to a thread of the parent that
    /// does not exist here and is released by force.
    ///
    /// A value whose lock was held at the fork may be half-updated (a `Vec` mid-reallocation, a
    /// map mid-insert), so it is overwritten without being read or dropped: its memory leaks in
    /// the child, which is the price of never touching a torn value.
    fn reset_after_fork(&self, unannounced: bool) {
        for s in self.shards.iter() {
            if unannounced && s.state.try_lock().is_none() {
                // SAFETY: after fork only this thread exists; whoever held the lock is gone, and
                // nobody else can reach the state while we overwrite it.
                unsafe {
                    s.state.force_unlock();
                    std::ptr::write(s.state.data_ptr(), ShardState::default());
                }
            } else {
                *s.state.lock() = ShardState::default();
            }
        }
        if unannounced {
            // SAFETY: as above. The edges are fetched again or set by the caller; a layout
            // whose writer was cut off mid-inference or mid-edge-install is inferred again from
            // the child's first row.
            unsafe {
                reclaim_after_fork(&self.reference_edges, BTreeMap::new);
                if reclaim_after_fork(&self.layout, || None) {
                    self.layout_ready.store(false, Ordering::Release);
                }
            }
        }
        self.fork_gen.store(fork::generation(), Ordering::Relaxed);
        self.harvester.store(false, Ordering::SeqCst);
        self.sink.after_fork_child();
    }

    fn check_open(&self) -> crate::Result<()> {
        if self.shut.load(Ordering::Relaxed) {
            Err(CoreError::Shutdown)
        } else {
            Ok(())
        }
    }

    fn layout_or_infer(&self, features: &[(&str, Value<'_>)]) -> Arc<Layout> {
        if let Some(l) = self.layout.read().as_ref() {
            return Arc::clone(l);
        }
        self.infer(|| {
            features
                .iter()
                .map(|(n, v)| ((*n).to_owned(), infer_kind(v)))
                .collect()
        })
    }

    fn layout_or_infer_batch(&self, batch: &Batch<'_>) -> Arc<Layout> {
        if let Some(l) = self.layout.read().as_ref() {
            return Arc::clone(l);
        }
        self.infer(|| {
            batch
                .features
                .iter()
                .map(|c| {
                    let kind = match c.data {
                        ColumnData::F64(_) | ColumnData::F32(_) | ColumnData::I64(_) => {
                            FeatureKind::Numeric
                        }
                        ColumnData::Bool(_) => FeatureKind::Boolean,
                        _ => FeatureKind::Categorical,
                    };
                    (c.name.to_owned(), kind)
                })
                .collect()
        })
    }

    fn infer(&self, features: impl FnOnce() -> Vec<(String, FeatureKind)>) -> Arc<Layout> {
        let mut guard = self.layout.write();
        if let Some(l) = guard.as_ref() {
            return Arc::clone(l);
        }
        let features = features();
        if features.is_empty() {
            // Nothing to infer from (a row or batch of predictions only): wait for features.
            return Arc::new(Layout::new(features, &[], &self.settings, true));
        }
        let base = Layout::new(features, &self.config.sensitive, &self.settings, true);
        let l = Arc::new(base.with_edges(&self.reference_edges.read()));
        *guard = Some(Arc::clone(&l));
        self.layout_ready.store(true, Ordering::Release);
        l
    }

    fn install_edges(&self, edges: &BTreeMap<String, Vec<f64>>) {
        self.reference_edges
            .write()
            .extend(edges.iter().map(|(k, v)| (k.clone(), v.clone())));
        let mut guard = self.layout.write();
        if let Some(l) = guard.as_ref() {
            *guard = Some(Arc::new(l.with_edges(edges)));
        }
    }

    /// Runs `f` on this thread's shard's accumulator for the window containing `now`.
    #[inline]
    fn with_window<R>(&self, now: i64, f: impl FnOnce(&mut WindowAcc) -> R) -> R {
        let w = self.settings.window_ms;
        let start = now.div_euclid(w) * w;
        let slot = SLOT.with(|s| *s) % self.shards.len();
        let mut st = self.shards[slot].state.lock();
        let st = &mut *st;
        // A clock step backwards keeps recording into the open window.
        if let Some(acc) = st.current.as_mut().filter(|a| a.start >= start) {
            // Only an unused placeholder can switch layouts: recorded rows keep theirs.
            if acc.placeholder
                && acc.rows() == 0
                && self.layout_ready.load(Ordering::Acquire)
                && let Some(l) = self.layout.read().clone()
            {
                acc.adopt(l);
            }
            return f(acc);
        }
        let (layout, placeholder) = match self.layout.read().clone() {
            Some(l) => (l, false),
            None => (
                Arc::new(Layout::new(Vec::new(), &[], &self.settings, true)),
                true,
            ),
        };
        let mut fresh = WindowAcc::new(start, layout, Arc::clone(&self.settings), slot as u64);
        fresh.placeholder = placeholder;
        if let Some(old) = st.current.take() {
            st.closed.push(old);
        }
        f(st.current.insert(fresh))
    }

    fn ensure_harvester(&self, me: &Arc<Inner>) {
        if self.harvester.swap(true, Ordering::SeqCst) {
            return;
        }
        let weak: Weak<Inner> = Arc::downgrade(me);
        let tick = move || {
            if let Some(inner) = weak.upgrade() {
                inner.harvest(false);
                if Arc::strong_count(&inner) == 1 {
                    // Every monitor handle went away meanwhile. The final flush in `Inner::drop`
                    // waits for the shipping thread, so it must not run on that thread.
                    let _ = std::thread::Builder::new().spawn(move || drop(inner));
                }
            }
        };
        if self.sink.set_tick(HARVEST_TICK, Box::new(tick)) {
            return;
        }
        let weak: Weak<Inner> = Arc::downgrade(me);
        let spawned = std::thread::Builder::new()
            .name("neurocloak-harvest".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(HARVEST_TICK);
                    match weak.upgrade() {
                        Some(inner) if !inner.shut.load(Ordering::Relaxed) => {
                            inner.harvest(false);
                        }
                        _ => return,
                    }
                }
            });
        if spawned.is_err() {
            // Without a thread, windows only close on `flush`, `shutdown` or `harvest`; the next
            // recording call tries again.
            self.harvester.store(false, Ordering::SeqCst);
        }
    }

    /// Collects closed window parts from every shard, merges them per window, ships them.
    fn harvest(&self, force: bool) -> usize {
        let now = now_ms();
        let delay = self.config.close_delay.as_millis() as i64;
        let w = self.settings.window_ms;
        let mut parts: BTreeMap<i64, Vec<WindowAcc>> = BTreeMap::new();
        for s in self.shards.iter() {
            let mut st = s.state.lock();
            for acc in st.closed.drain(..) {
                parts.entry(acc.start).or_default().push(acc);
            }
            let due = st
                .current
                .as_ref()
                .is_some_and(|a| force || a.start + w + delay <= now);
            if due && let Some(acc) = st.current.take() {
                parts.entry(acc.start).or_default().push(acc);
            }
        }
        let mut shipped = 0;
        for (_, accs) in parts {
            let mut merged: Option<WindowProfile> = None;
            for acc in accs {
                let p = acc.into_profile();
                match merged.as_mut() {
                    None => merged = Some(p),
                    Some(m) => {
                        if let Err(e) = m.merge(&p) {
                            // Shards share identity, window and layout kinds, so this cannot
                            // happen; ship the part on its own rather than lose it.
                            let _ = e;
                            self.ship(p);
                        }
                    }
                }
            }
            if let Some(m) = merged {
                self.ship(m);
                shipped += 1;
            }
        }
        shipped
    }

    fn ship(&self, mut w: WindowProfile) {
        w.parts = 1;
        // Each shard caps its own records; the per-process cap applies to their union.
        let cap = self.settings.max_records;
        if w.predictions.len() > cap {
            w.predictions_dropped += (w.predictions.len() - cap) as u64;
            w.predictions.truncate(cap);
        }
        w.hash_sampled.truncate(self.settings.max_hash_samples);
        self.windows.fetch_add(1, Ordering::Relaxed);
        self.sink.enqueue(Payload::Window(w.to_proto()));
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Whatever is still open goes to the sink, whose own drop flushes it (bounded).
        if !self.shut.load(Ordering::Relaxed) {
            self.harvest(true);
        }
    }
}

/// Frees `lock` in a forked child from holders that no longer exist. Readers cut off by the
/// fork left the value intact, so their read locks are released; a writer may have left it torn,
/// so it is overwritten with `fresh()` without being read or dropped. Returns whether a writer
/// held it.
///
/// # Safety
/// Only right after `fork()` in the child, from the only thread, which holds no guard of `lock`.
unsafe fn reclaim_after_fork<T>(lock: &RwLock<T>, fresh: impl FnOnce() -> T) -> bool {
    let torn = lock.is_locked_exclusive();
    // SAFETY: per the contract, no live thread holds or can take `lock` meanwhile.
    unsafe {
        if torn {
            lock.force_unlock_write();
            std::ptr::write(lock.data_ptr(), fresh());
        }
        // A reader count cannot exceed the parent's thread count; the bound only guards against
        // a lock state this code does not expect.
        for _ in 0..65_536 {
            if lock.try_write().is_some() {
                break;
            }
            lock.force_unlock_read();
        }
    }
    torn
}
