//! `NativeMonitor`: the napi class index.js wraps. Each method converts its JS arguments into
//! core types and calls the matching `neurocloak_core::Monitor` method.

use std::cell::RefCell;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use napi::bindgen_prelude::{
    AsyncTask, BigInt64Array, Float32Array, Float64Array, Int32Array, Uint8Array,
};
use napi::{Env, Task};
use napi_derive::napi;
use neurocloak_core::monitor::{
    Batch, Column, ColumnData, MAX_PREDICTION_RECORDS, MemorySink, Monitor, MonitorConfig,
};
use neurocloak_core::{FeatureKind, TaskType, Value};

use crate::convert::{META_SLOTS, Packed, Strings, Tags, stand_in};
use crate::error::{Code, Result, error, from_core, invalid_argument};
use crate::summary::{WindowSummary, summarize};

/// `agent` value that keeps windows in memory instead of shipping them (see `takeWindows`).
const MEMORY_AGENT: &str = "memory";
/// Most interned strings per monitor (index.js sends longer tails as plain strings).
const MAX_INTERNED: usize = 16_384;
/// How long an exiting environment waits for the shipper before letting go of it.
const CLEANUP_TIMEOUT: Duration = Duration::from_millis(100);

#[napi(object)]
pub struct FeatureOption {
    pub name: String,
    /// `numeric`, `categorical` or `boolean`.
    pub kind: String,
}

#[napi(object)]
pub struct NativeOptions {
    pub project: String,
    pub model: String,
    pub version: Option<String>,
    pub environment: Option<String>,
    /// `binary`, `multiclass` or `regression`.
    pub task: Option<String>,
    pub features: Option<Vec<FeatureOption>>,
    pub classes: Option<Vec<String>>,
    pub sensitive: Option<Vec<String>>,
    pub window_seconds: Option<f64>,
    pub reservoir_size: Option<u32>,
    pub hash_sample_rate: Option<f64>,
    pub max_string_length: Option<u32>,
    /// Prediction records kept per window and process for joining delayed labels (default
    /// 20 000, at most 100 000); rows with an id beyond it count as `predictionsDropped`.
    pub max_prediction_records: Option<f64>,
    /// `unix:///path.sock`, `http://host:port`, or `memory`.
    pub agent: Option<String>,
    pub strict: Option<bool>,
}

/// One column of a batch, normalised by index.js: exactly one of the data fields is set.
#[napi(object)]
pub struct NativeColumn {
    pub name: String,
    pub f64: Option<Float64Array>,
    pub f32: Option<Float32Array>,
    pub i64: Option<BigInt64Array>,
    /// 0 / 1 per row.
    pub bool: Option<Uint8Array>,
    pub text: Option<Vec<String>>,
    /// With `text` as the dictionary: one code per row, negative = missing.
    pub codes: Option<Int32Array>,
    /// Arrow-style validity bitmap: bit i clear = row i missing.
    pub validity: Option<Uint8Array>,
}

#[napi(object)]
pub struct NativeBatch {
    pub columns: Vec<NativeColumn>,
    pub predictions: Option<NativeColumn>,
    pub labels: Option<NativeColumn>,
    pub ids: Option<Vec<String>>,
    pub timestamps_ms: Option<Float64Array>,
    pub latencies_ms: Option<Float64Array>,
    /// Row-major class probabilities, `scores.length / rows` per row.
    pub scores: Option<Float64Array>,
}

/// A robustness probe's result, computed by calling the real model on perturbed rows.
#[napi(object)]
pub struct RobustnessReport {
    /// Prediction stability in [0, 1] (1 = unchanged by the perturbation).
    pub stability: f64,
    /// Rows probed (an integer >= 1): the probe's weight in the window's stability.
    pub rows: f64,
    /// Perturbed passes over those rows (an integer >= 1).
    pub repeats: f64,
    /// Noise standard deviation as a fraction of each numeric feature's (>= 0).
    pub noise: f64,
    /// Probability a cell was replaced by its column's neutral value, in [0, 1].
    pub dropout: f64,
    /// Predictions compared for equality (classes) rather than by size of change.
    pub discrete: bool,
    /// Instability (1 - stability) when only that feature is perturbed, each in [0, 1].
    pub feature_sensitivity: Option<std::collections::HashMap<String, f64>>,
}

#[napi(object)]
pub struct Stats {
    /// Payloads handed to the shipper.
    pub sent: f64,
    /// Payloads the agent acknowledged.
    pub delivered: f64,
    /// Payloads dropped (backlog full, oversized, shut down).
    pub dropped: f64,
    /// Payloads waiting or in flight.
    pub queued: f64,
    /// Window parts shipped.
    pub windows: f64,
    /// Rows rejected in strict mode.
    pub rejected: f64,
}

#[napi]
pub struct NativeMonitor {
    monitor: Arc<Monitor>,
    memory: Option<Arc<MemorySink>>,
    strict: bool,
    /// Set once the core knows the schema (configured or inferred); it never changes after.
    schema: OnceLock<Schema>,
    /// Strings index.js sends by id (append-only; the JS thread is the only user).
    interned: RefCell<Vec<String>>,
    /// The row buffer of the fast path (`bind_row`).
    bound: RefCell<Option<Float64Array>>,
}

/// Per column: its name (for strict-mode errors) and the stand-in for unrepresentable values.
struct Schema {
    names: Vec<String>,
    stand_ins: Vec<Value<'static>>,
}

#[napi]
impl NativeMonitor {
    #[napi(constructor)]
    pub fn new(env: Env, options: NativeOptions) -> Result<Self> {
        let strict = options.strict.unwrap_or(false);
        let memory = (options.agent.as_deref() == Some(MEMORY_AGENT)).then(MemorySink::new);
        let memory = memory.map(Arc::new);
        let config = config(options)?;
        let monitor = match &memory {
            Some(sink) => Monitor::with_sink(config, Arc::clone(sink) as _),
            None => Monitor::new(config),
        }
        .map_err(from_core)?;
        let monitor = Arc::new(monitor);
        // Worker threads and process exit tear the environment down: stop shipping then, even
        // if the JS object was never collected. Weak, so the hook does not keep it alive.
        let weak: Weak<Monitor> = Arc::downgrade(&monitor);
        env.add_env_cleanup_hook(weak, |weak| {
            if let Some(m) = weak.upgrade() {
                let _ = m.shutdown(CLEANUP_TIMEOUT);
            }
        })
        .map_err(|e| error(Code::InvalidConfig, e.reason))?;
        Ok(Self {
            monitor,
            memory,
            strict,
            schema: OnceLock::new(),
            interned: RefCell::new(Vec::new()),
            bound: RefCell::new(None),
        })
    }

    /// Feature names in column order; empty until configured or inferred.
    #[napi]
    pub fn feature_names(&self) -> Vec<String> {
        self.monitor.feature_names()
    }

    /// Registers a string so later rows can send its id instead of the string.
    #[napi]
    pub fn intern(&self, text: String) -> Result<u32> {
        let mut table = self.interned.borrow_mut();
        let id = u32::try_from(table.len())
            .ok()
            .filter(|&id| (id as usize) < MAX_INTERNED)
            .ok_or_else(|| invalid_argument("intern table full"))?;
        table.push(text);
        Ok(id)
    }

    /// Binds the row buffer index.js packs every schema-ordered row into: `[values | tags |
    /// scores]`, each of the first two `features + 5` long. Reading it needs no napi call.
    #[napi]
    pub fn bind_row(&self, row: Float64Array) {
        *self.bound.borrow_mut() = Some(row);
    }

    /// Logs the row in the bound buffer, every string interned: the fast path.
    #[napi]
    pub fn log_bound(&self) -> Result<()> {
        self.log_bound_row(&[], None)
    }

    /// Logs the row in the bound buffer, with strings that are not interned and / or an id.
    #[napi]
    pub fn log_bound_with(&self, texts: Vec<String>, id: Option<String>) -> Result<()> {
        self.log_bound_row(&texts, id.as_deref())
    }

    /// One row with its feature names (first row, or keys that differ from the schema).
    #[napi]
    pub fn log_named(
        &self,
        names: Vec<String>,
        values: &[f64],
        tags: &[u8],
        texts: Vec<String>,
        id: Option<String>,
    ) -> Result<()> {
        let interned = self.interned.borrow();
        let strings = Strings {
            texts: &texts,
            interned: &interned,
        };
        let row = Packed::split(values, tags, strings)?;
        if names.len() != row.width() {
            return Err(invalid_argument("packed row: one name per feature slot"));
        }
        let mut cells = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            cells.push((
                name.as_str(),
                row.feature(i, name, self.stand_in(name), self.strict)?,
            ));
        }
        let p = row.prediction(id.as_deref(), self.strict)?;
        self.outcome(self.monitor.log(&cells, &p))?;
        self.latency(row.latency_ms());
        Ok(())
    }

    /// A columnar batch; typed arrays are read in place.
    #[napi]
    pub fn log_batch(&self, batch: NativeBatch) -> Result<()> {
        let staged = StagedBatch::new(&batch);
        let features = staged.features(&batch)?;
        let ts: Option<Vec<i64>> = batch
            .timestamps_ms
            .as_deref()
            .map(|t| t.iter().map(|&x| x as i64).collect());
        let rows = features.first().map(|c| c.data.len());
        let predictions = optional_data(batch.predictions.as_ref(), &staged.predictions)?;
        let rows = rows.or(predictions.map(|p| p.len())).unwrap_or(0);
        let scores = batch.scores.as_deref();
        let scores_per_row = match scores {
            Some(s) if rows > 0 && s.len() % rows == 0 => s.len() / rows,
            Some(s) if !s.is_empty() => {
                return Err(error(
                    Code::InvalidBatch,
                    format!("{} scores do not divide into {rows} rows", s.len()),
                ));
            }
            _ => 0,
        };
        let core = Batch {
            features,
            predictions,
            labels: optional_data(batch.labels.as_ref(), &staged.labels)?,
            ids: staged.ids.as_deref().map(ColumnData::Str),
            scores: scores.filter(|_| scores_per_row > 0),
            scores_per_row,
            timestamps_ms: ts.as_deref(),
        };
        self.outcome(self.monitor.log_batch(&core))?;
        if let Some(l) = batch.latencies_ms.as_deref() {
            l.iter().for_each(|&ms| self.latency(Some(ms)));
        }
        Ok(())
    }

    /// Ground truth for earlier predictions, by prediction id.
    #[napi]
    pub fn log_labels(
        &self,
        ids: Vec<String>,
        labels: &[f64],
        tags: &[u8],
        texts: Vec<String>,
    ) -> Result<()> {
        if labels.len() != tags.len() {
            return Err(invalid_argument("packed labels: one tag per value"));
        }
        let strings = Strings {
            texts: &texts,
            interned: &[],
        };
        let mut values = Vec::with_capacity(labels.len());
        for i in 0..labels.len() {
            // An unrepresentable label is a text no class is named after: the collector counts
            // it when it joins the label.
            let v = crate::convert::decode(labels[i], tags[i], strings);
            values.push(v.unwrap_or(Value::Text("[object]")));
        }
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        self.monitor.log_labels(&ids, &values).map_err(from_core)
    }

    /// Builds and ships the reference profile from training columns.
    #[napi]
    pub fn set_reference(&self, columns: Vec<NativeColumn>) -> Result<()> {
        let batch = NativeBatch {
            columns,
            predictions: None,
            labels: None,
            ids: None,
            timestamps_ms: None,
            latencies_ms: None,
            scores: None,
        };
        let staged = StagedBatch::new(&batch);
        let core = Batch {
            features: staged.features(&batch)?,
            ..Batch::default()
        };
        self.monitor
            .set_reference(&core)
            .map(|_| ())
            .map_err(from_core)
    }

    /// Latency of one prediction in milliseconds.
    #[napi]
    pub fn record_latency(&self, ms: f64) -> Result<()> {
        if !(ms.is_finite() && ms >= 0.0) {
            return Err(invalid_argument(format!(
                "latency must be a finite number >= 0, got {ms}"
            )));
        }
        self.latency(Some(ms));
        Ok(())
    }

    /// Records a robustness probe's result into the window open now; the core refuses
    /// out-of-range numbers (NC_INVALID_PROFILE, naming the field).
    #[napi]
    pub fn record_robustness(&self, report: RobustnessReport) -> Result<()> {
        let probe = neurocloak_proto::v1::RobustnessProbe {
            stability: report.stability,
            rows: count("rows", report.rows)?,
            repeats: u32::try_from(count("repeats", report.repeats)?)
                .map_err(|_| invalid_argument("repeats must be below 2^32"))?,
            noise: report.noise,
            dropout: report.dropout,
            discrete: report.discrete,
            feature_sensitivity: report
                .feature_sensitivity
                .unwrap_or_default()
                .into_iter()
                .collect(),
            probe_time_ms: 0,
        };
        self.monitor.record_robustness(probe).map_err(from_core)
    }

    /// Counts one failed prediction.
    #[napi]
    pub fn record_error(&self) {
        self.monitor.record_error();
    }

    /// Resolves true once everything recorded so far is delivered, false on timeout.
    #[napi(ts_return_type = "Promise<boolean>")]
    pub fn flush(&self, timeout_ms: f64) -> AsyncTask<Wait> {
        AsyncTask::new(Wait {
            monitor: Arc::clone(&self.monitor),
            timeout: duration_ms(timeout_ms),
            shutdown: false,
        })
    }

    /// Blocking flush for `process.on('exit')`, where nothing can be awaited.
    #[napi]
    pub fn flush_sync(&self, timeout_ms: f64) -> bool {
        self.monitor.flush(duration_ms(timeout_ms)).is_ok()
    }

    /// Flushes and stops; resolves true when everything was delivered in time.
    #[napi(ts_return_type = "Promise<boolean>")]
    pub fn shutdown(&self, timeout_ms: f64) -> AsyncTask<Wait> {
        AsyncTask::new(Wait {
            monitor: Arc::clone(&self.monitor),
            timeout: duration_ms(timeout_ms),
            shutdown: true,
        })
    }

    #[napi]
    pub fn stats(&self) -> Stats {
        let s = self.monitor.stats();
        Stats {
            sent: s.sent as f64,
            delivered: s.delivered as f64,
            dropped: s.dropped as f64,
            queued: s.queued as f64,
            windows: s.windows as f64,
            rejected: s.rejected as f64,
        }
    }

    /// With `agent: 'memory'`: closes open windows and returns their summaries.
    #[napi]
    pub fn take_windows(&self) -> Result<Vec<WindowSummary>> {
        let Some(sink) = &self.memory else {
            return Err(invalid_argument(
                "takeWindows needs a monitor created with agent: 'memory'",
            ));
        };
        self.monitor.flush(Duration::ZERO).map_err(from_core)?;
        Ok(sink.take_windows().iter().map(summarize).collect())
    }
}

impl NativeMonitor {
    fn log_bound_row(&self, texts: &[String], id: Option<&str>) -> Result<()> {
        let bound = self.bound.borrow();
        let (Some(row), Some(schema)) = (bound.as_deref(), self.schema()) else {
            return Err(invalid_argument("no row buffer bound for a known schema"));
        };
        let m = schema.names.len() + META_SLOTS;
        if row.len() < 2 * m {
            return Err(invalid_argument("row buffer shorter than the schema"));
        }
        let interned = self.interned.borrow();
        let strings = Strings {
            texts,
            interned: &interned,
        };
        let row = Packed::new(
            &row[..m],
            Tags::Floats(&row[m..2 * m]),
            &row[2 * m..],
            strings,
        )?;
        let mut cells = Vec::with_capacity(row.width());
        for i in 0..row.width() {
            let (name, stand_in) = schema.column(i);
            cells.push(row.feature(i, name, stand_in, self.strict)?);
        }
        let p = row.prediction(id, self.strict)?;
        self.outcome(self.monitor.log_indexed(&cells, &p))?;
        self.latency(row.latency_ms());
        Ok(())
    }

    /// The schema once known; `None` before the first row of an inferred schema.
    fn schema(&self) -> Option<&Schema> {
        if let Some(s) = self.schema.get() {
            return Some(s);
        }
        let names = self.monitor.feature_names();
        if names.is_empty() {
            return None;
        }
        let stand_ins = names.iter().map(|n| self.stand_in(n)).collect();
        Some(self.schema.get_or_init(|| Schema { names, stand_ins }))
    }

    /// Stand-in for an unrepresentable value of feature `name`, by the kind given in the
    /// options (the core does not expose an inferred schema's kinds).
    fn stand_in(&self, name: &str) -> Value<'static> {
        let features = self
            .monitor
            .config()
            .features
            .as_deref()
            .unwrap_or_default();
        stand_in(features.iter().find(|(n, _)| n == name).map(|(_, k)| *k))
    }

    /// Core errors surface only in strict mode (data) or for misuse (shut down, no schema);
    /// after shutdown `log` counts nothing and stays silent unless strict.
    fn outcome(&self, r: neurocloak_core::Result<()>) -> Result<()> {
        match r {
            Err(neurocloak_core::CoreError::Shutdown) if !self.strict => Ok(()),
            other => other.map_err(from_core),
        }
    }

    fn latency(&self, ms: Option<f64>) {
        if let Some(ms) = ms.filter(|ms| ms.is_finite() && *ms >= 0.0) {
            self.monitor
                .record_latency(Duration::from_secs_f64(ms / 1000.0));
        }
    }
}

impl Schema {
    fn column(&self, i: usize) -> (&str, Value<'static>) {
        match (self.names.get(i), self.stand_ins.get(i)) {
            (Some(n), Some(v)) => (n, *v),
            _ => ("<extra>", stand_in(None)),
        }
    }
}

/// Waits for the shipper off the JS thread.
pub struct Wait {
    monitor: Arc<Monitor>,
    timeout: Duration,
    shutdown: bool,
}

impl Task for Wait {
    type Output = bool;
    type JsValue = bool;

    fn compute(&mut self) -> napi::Result<bool> {
        let r = if self.shutdown {
            self.monitor.shutdown(self.timeout)
        } else {
            self.monitor.flush(self.timeout)
        };
        Ok(r.is_ok())
    }

    fn resolve(&mut self, _env: Env, delivered: bool) -> napi::Result<bool> {
        Ok(delivered)
    }
}

fn duration_ms(ms: f64) -> Duration {
    if ms.is_finite() && ms > 0.0 {
        Duration::from_secs_f64(ms.min(3.6e6) / 1000.0)
    } else {
        Duration::ZERO
    }
}

fn config(o: NativeOptions) -> Result<MonitorConfig> {
    let bad = |m: String| error(Code::InvalidConfig, m);
    let mut c = MonitorConfig::new(&o.project, &o.model, o.version.as_deref().unwrap_or(""));
    if let Some(env) = o.environment {
        c.identity.environment = env;
    }
    c.task = match o.task.as_deref().unwrap_or("binary") {
        "binary" => TaskType::BinaryClassification,
        "multiclass" => TaskType::MulticlassClassification,
        "regression" => TaskType::Regression,
        other => {
            return Err(bad(format!(
                "task must be binary, multiclass or regression, got {other:?}"
            )));
        }
    };
    if let Some(features) = o.features {
        let mut spec = Vec::with_capacity(features.len());
        for f in features {
            let kind = match f.kind.as_str() {
                "numeric" => FeatureKind::Numeric,
                "categorical" => FeatureKind::Categorical,
                "boolean" => FeatureKind::Boolean,
                other => {
                    return Err(bad(format!(
                        "feature {:?}: kind must be numeric, categorical or boolean, got {other:?}",
                        f.name
                    )));
                }
            };
            spec.push((f.name, kind));
        }
        c.features = Some(spec);
    }
    c.classes = o.classes.unwrap_or_default();
    c.sensitive = o.sensitive.unwrap_or_default();
    if let Some(s) = o.window_seconds {
        if !(s.is_finite() && s > 0.0 && s <= 86_400.0 * 7.0) {
            return Err(bad(format!(
                "windowSeconds must be within (0, 604800], got {s}"
            )));
        }
        c.window = Duration::from_secs_f64(s);
    }
    if let Some(n) = o.reservoir_size {
        c.reservoir_size = n;
    }
    if let Some(r) = o.hash_sample_rate {
        c.hash_sample_rate = r;
    }
    if let Some(n) = o.max_string_length {
        c.max_string_len = n as usize;
    }
    if let Some(n) = o.max_prediction_records {
        // A JS number: only whole, finite values within the core's limit convert exactly.
        if !(n.fract() == 0.0 && (0.0..=MAX_PREDICTION_RECORDS as f64).contains(&n)) {
            return Err(bad(format!(
                "maxPredictionRecords must be an integer from 0 to {MAX_PREDICTION_RECORDS}, got {n}"
            )));
        }
        c.max_prediction_records = n as usize;
    }
    c.strict = o.strict.unwrap_or(false);
    c.agent_endpoint = o.agent.filter(|a| a != MEMORY_AGENT);
    Ok(c)
}

/// Borrowed views that text and boolean columns need, built before the batch borrows them.
#[derive(Default)]
struct Staged<'a> {
    text: Option<Vec<&'a str>>,
    bools: Option<Vec<bool>>,
}

impl<'a> Staged<'a> {
    fn new(c: &'a NativeColumn) -> Self {
        Self {
            text: c
                .text
                .as_ref()
                .map(|t| t.iter().map(String::as_str).collect()),
            // Copied: a JS byte other than 0 / 1 is not a valid Rust bool.
            bools: c
                .bool
                .as_deref()
                .map(|b| b.iter().map(|&x| x != 0).collect()),
        }
    }
}

/// Staged views of every column of a batch.
struct StagedBatch<'a> {
    features: Vec<Staged<'a>>,
    predictions: Staged<'a>,
    labels: Staged<'a>,
    ids: Option<Vec<&'a str>>,
}

impl<'a> StagedBatch<'a> {
    fn new(b: &'a NativeBatch) -> Self {
        Self {
            features: b.columns.iter().map(Staged::new).collect(),
            predictions: b.predictions.as_ref().map(Staged::new).unwrap_or_default(),
            labels: b.labels.as_ref().map(Staged::new).unwrap_or_default(),
            ids: b
                .ids
                .as_ref()
                .map(|t| t.iter().map(String::as_str).collect()),
        }
    }

    fn features(&'a self, b: &'a NativeBatch) -> Result<Vec<Column<'a>>> {
        b.columns
            .iter()
            .zip(&self.features)
            .map(|(c, s)| column(c, s))
            .collect()
    }
}

fn column<'a>(c: &'a NativeColumn, staged: &'a Staged<'a>) -> Result<Column<'a>> {
    let data = data(c, staged)?;
    if let Some(v) = c.validity.as_deref()
        && v.len() < data.len().div_ceil(8)
    {
        return Err(error(
            Code::InvalidBatch,
            format!("column `{}`: validity bitmap shorter than its rows", c.name),
        ));
    }
    Ok(Column {
        name: &c.name,
        data,
        validity: c.validity.as_deref(),
    })
}

fn data<'a>(c: &'a NativeColumn, s: &'a Staged<'a>) -> Result<ColumnData<'a>> {
    let given = [
        c.f64.is_some(),
        c.f32.is_some(),
        c.i64.is_some(),
        s.bools.is_some(),
        s.text.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 || (c.codes.is_some() && s.text.is_none()) {
        return Err(invalid_argument(format!(
            "column `{}`: exactly one data array expected (codes go with text)",
            c.name
        )));
    }
    if let (Some(codes), Some(values)) = (&c.codes, &s.text) {
        return Ok(ColumnData::Dictionary { codes, values });
    }
    Ok(match (&c.f64, &c.f32, &c.i64, &s.bools, &s.text) {
        (Some(v), ..) => ColumnData::F64(v),
        (_, Some(v), ..) => ColumnData::F32(v),
        (_, _, Some(v), ..) => ColumnData::I64(v),
        (_, _, _, Some(v), _) => ColumnData::Bool(v),
        (_, _, _, _, Some(v)) => ColumnData::Str(v),
        _ => return Err(invalid_argument(format!("column `{}`: no data", c.name))),
    })
}

fn optional_data<'a>(
    c: Option<&'a NativeColumn>,
    s: &'a Staged<'a>,
) -> Result<Option<ColumnData<'a>>> {
    c.map(|c| data(c, s)).transpose()
}

/// A JS number that must be a non-negative integer (a count).
fn count(what: &str, x: f64) -> Result<u64> {
    if x.is_finite() && x >= 0.0 && x.fract() == 0.0 && x <= 9_007_199_254_740_991.0 {
        Ok(x as u64)
    } else {
        Err(invalid_argument(format!(
            "{what} must be a non-negative integer, got {x}"
        )))
    }
}
