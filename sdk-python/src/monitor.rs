//! `neurocloak._native.Monitor`: the core `Monitor` behind a Python class. Methods convert
//! their arguments, call the core (without the GIL when it may take long) and map errors.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use neurocloak_core::error::DataIssue;
use neurocloak_core::{
    Batch, Column, CoreError, FeatureKind, MemorySink, Monitor, Prediction, Value,
};
use parking_lot::Mutex;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::array::ArrayView;
use crate::batch::{Buf, Source};
use crate::cell::Cell;
use crate::config::{self, MEMORY_AGENT};
use crate::errors::{ConfigError, PyCoreError, PyCoreResult};
use crate::fork;
use crate::row::{self, KeyCache, STACK_FEATURES, Slot};
use crate::snapshot;

#[pyclass(
    module = "neurocloak._native",
    name = "Monitor",
    subclass,
    frozen,
    weakref
)]
pub struct PyMonitor {
    core: Monitor,
    /// Set when `agent="memory"`: windows stay here for `windows()`.
    memory: Option<Arc<MemorySink>>,
    keys: Mutex<KeyCache>,
    /// Feature kinds in column order, known once the schema is (given or inferred). Inference
    /// happens only inside calls that hold the GIL throughout, so it and the core agree.
    kinds: OnceLock<Vec<FeatureKind>>,
}

fn seconds(what: &str, s: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(s).map_err(|_| {
        PyValueError::new_err(format!(
            "{what} must be a non-negative number of seconds, got {s}"
        ))
    })
}

/// A time as Unix seconds: a number, or anything with `.timestamp()` (datetime, pandas).
fn unix_seconds(t: &Bound<'_, PyAny>) -> PyResult<f64> {
    if let Ok(x) = t.extract::<f64>() {
        return Ok(x);
    }
    t.call_method0(pyo3::intern!(t.py(), "timestamp"))
        .and_then(|x| x.extract::<f64>())
        .map_err(|_| PyTypeError::new_err("timestamp must be Unix seconds or a datetime"))
}

/// Unix seconds (float) → ms; `None` for values that are not a time.
fn timestamp_ms(t: f64) -> Option<i64> {
    let ms = (t * 1000.0).round();
    (ms.is_finite() && ms.abs() < 9.0e15).then_some(ms as i64)
}

/// A prediction or label: anything without a `Value` is an invalid outcome, counted by the core.
fn outcome(c: Cell<'_>) -> Value<'_> {
    row::to_value(c, FeatureKind::Numeric)
}

/// Inference rule of the core for a named row (`Layout::infer_kind`).
fn kind_of_value(v: &Value<'_>) -> FeatureKind {
    match v {
        Value::Text(_) => FeatureKind::Categorical,
        Value::Bool(_) => FeatureKind::Boolean,
        Value::Number(_) | Value::Missing => FeatureKind::Numeric,
    }
}

/// Text of an id: a str as is, anything else through `str()`.
fn id_text<'a>(obj: &'a Bound<'_, PyAny>) -> PyResult<Cow<'a, str>> {
    match Cell::read(obj) {
        Cell::Text(s) => Ok(Cow::Borrowed(s)),
        _ => Ok(Cow::Owned(obj.str()?.to_string())),
    }
}

fn scores_vec(obj: &Bound<'_, PyAny>) -> PyResult<Vec<f64>> {
    if let Some(view) = ArrayView::from_py(obj)? {
        return Ok(view.values_f64().into_owned());
    }
    obj.extract::<Vec<f64>>()
        .map_err(|_| PyTypeError::new_err("scores must be a sequence of numbers"))
}

/// Everything of a batch besides the features, converted.
struct Outcomes<'s> {
    predictions: Buf<'s>,
    labels: Option<Buf<'s>>,
    ids: Option<Buf<'s>>,
}

impl PyMonitor {
    /// A latency that is not a duration (negative, NaN) is data, not a programming error: it is
    /// left out (the row itself is recorded), or rejected in strict mode.
    fn record_latency(&self, latency: Option<f64>) -> PyResult<()> {
        let Some(l) = latency else {
            return Ok(());
        };
        match Duration::try_from_secs_f64(l) {
            Ok(d) => self.core.record_latency(d),
            Err(_) if self.core.config().strict => {
                return Err(PyCoreError(CoreError::Data {
                    feature: "latency".into(),
                    issue: DataIssue::InvalidOutcome,
                })
                .into());
            }
            Err(_) => {}
        }
        Ok(())
    }

    fn resolve(&self, kinds: &[FeatureKind], name: &str) -> Slot {
        match self.core.feature_index(name) {
            Some(i) => Slot::Feature(i, kinds.get(i).copied().unwrap_or(FeatureKind::Numeric)),
            None => Slot::Extra,
        }
    }

    /// Records which kinds the core inferred from the same input, by name.
    fn learn_kinds(&self, by_name: &HashMap<&str, FeatureKind>) {
        if self.kinds.get().is_some() {
            return;
        }
        let names = self.core.feature_names();
        if names.is_empty() {
            return;
        }
        let kinds = names
            .iter()
            .map(|n| {
                by_name
                    .get(n.as_str())
                    .copied()
                    .unwrap_or(FeatureKind::Numeric)
            })
            .collect();
        let _ = self.kinds.set(kinds);
    }

    /// The named path: first row (schema inference) and strict mode (precise errors).
    fn log_named(
        &self,
        py: Python<'_>,
        dict: &Bound<'_, PyDict>,
        p: &Prediction<'_>,
    ) -> PyCoreResult<()> {
        let items = row::owned_items(dict);
        let keys: Vec<Cell<'_>> = items.iter().map(|(k, _)| Cell::read(k)).collect();
        let cells = row::read_values(&items);
        fork::pass(py);
        let kinds = self.kinds.get();
        let mut named: Vec<(&str, Value<'_>)> = Vec::with_capacity(items.len());
        let mut non_string_keys = false;
        for (key, cell) in keys.iter().zip(&cells) {
            let Cell::Text(name) = *key else {
                non_string_keys = true;
                continue;
            };
            let kind = kinds.and_then(|ks| {
                self.core
                    .feature_index(name)
                    .and_then(|i| ks.get(i).copied())
            });
            let value = match (*cell, kind) {
                (Cell::Unsupported, Some(kind)) => row::mismatch_for(kind),
                (Cell::Unsupported, None) => Value::Missing,
                (c, k) => row::to_value(c, k.unwrap_or(FeatureKind::Numeric)),
            };
            named.push((name, value));
        }
        if non_string_keys && self.core.config().strict {
            return Err(CoreError::Data {
                feature: "<non-string key>".into(),
                issue: DataIssue::UnknownFeature,
            }
            .into());
        }
        self.core.log(&named, p)?;
        let by_name = named.iter().map(|(n, v)| (*n, kind_of_value(v))).collect();
        self.learn_kinds(&by_name);
        Ok(())
    }

    fn log_fast(
        &self,
        py: Python<'_>,
        dict: &Bound<'_, PyDict>,
        kinds: &[FeatureKind],
        p: &Prediction<'_>,
    ) -> PyCoreResult<()> {
        let n = kinds.len();
        let resolve = |name: &str| self.resolve(kinds, name);
        let items;
        let cells;
        let mut stack = [Value::Missing; STACK_FEATURES + 1];
        let mut heap;
        let values: &mut [Value<'_>] = if n < STACK_FEATURES {
            &mut stack[..=n]
        } else {
            heap = vec![Value::Missing; n + 1];
            &mut heap
        };
        fork::pass(py);
        let mut cache = self.keys.try_lock();
        let filled = match row::fill(dict, cache.as_deref_mut(), &resolve, &mut values[..n]) {
            Some(f) => f,
            None => {
                drop(cache);
                items = row::owned_items(dict);
                cells = row::read_values(&items);
                // Reading may have run Python code, and with it a fork's `before` hook.
                fork::pass(py);
                values.fill(Value::Missing);
                row::fill_owned(&items, &cells, &resolve, &mut values[..n])
            }
        };
        // One value past the schema makes the core count the row's extra or absent features.
        let len = if filled.extra > 0 || filled.matched < n {
            n + 1
        } else {
            n
        };
        Ok(self.core.log_indexed(&values[..len], p)?)
    }

    fn gather<'py>(
        names: &Bound<'py, PyList>,
        columns: &Bound<'py, PyList>,
    ) -> PyResult<(Vec<String>, Vec<Source<'py>>)> {
        if names.len() != columns.len() {
            return Err(PyValueError::new_err(format!(
                "{} names for {} columns",
                names.len(),
                columns.len()
            )));
        }
        let names = names.extract::<Vec<String>>()?;
        let sources = columns
            .iter()
            .map(|c| Source::from_py(&c))
            .collect::<PyResult<Vec<_>>>()?;
        Ok((names, sources))
    }

    fn check_rows(what: &str, len: usize, rows: usize) -> PyResult<()> {
        if len == rows {
            Ok(())
        } else {
            Err(crate::errors::BatchError::new_err(format!(
                "{what} has {len} rows, expected {rows}"
            )))
        }
    }

    /// Records a batch whose columns cannot all be handed over as `ColumnData` one row at a
    /// time, with the same counting as the row path.
    #[allow(clippy::too_many_arguments)]
    fn log_rows(
        &self,
        py: Python<'_>,
        names: &[String],
        features: &[Buf<'_>],
        out: &Outcomes<'_>,
        rows: usize,
        scores: Option<(&[f64], usize)>,
        timestamps: Option<&[i64]>,
    ) -> PyCoreResult<()> {
        if self.core.config().strict {
            let bad = names
                .iter()
                .zip(features)
                .find(|(_, b)| b.is_mixed())
                .map_or("prediction", |(n, _)| n.as_str());
            return Err(CoreError::Data {
                feature: bad.to_owned(),
                issue: DataIssue::TypeMismatch,
            }
            .into());
        }
        fork::pass(py);
        let kinds = self.kinds.get();
        let mut named: Vec<(&str, Value<'_>)> = Vec::with_capacity(names.len());
        for r in 0..rows {
            named.clear();
            for (name, buf) in names.iter().zip(features) {
                let kind = kinds.and_then(|ks| {
                    self.core
                        .feature_index(name)
                        .and_then(|i| ks.get(i).copied())
                });
                let v = match (buf.cell(r), kind) {
                    (Cell::Unsupported, Some(k)) => row::mismatch_for(k),
                    (c, k) => row::to_value(c, k.unwrap_or_else(|| buf.inferred_kind())),
                };
                named.push((name, v));
            }
            let id = out.ids.as_ref().and_then(|b| match b.cell(r) {
                Cell::Text(s) => Some(s),
                _ => None,
            });
            let p = Prediction {
                id,
                timestamp_ms: timestamps.map(|t| t[r]),
                prediction: outcome(out.predictions.cell(r)),
                label: out
                    .labels
                    .as_ref()
                    .map_or(Value::Missing, |b| outcome(b.cell(r))),
                scores: scores.map_or(&[][..], |(s, k)| &s[r * k..(r + 1) * k]),
            };
            self.core.log(&named, &p)?;
        }
        Ok(())
    }
}

#[pymethods]
impl PyMonitor {
    #[new]
    #[pyo3(signature = (
        *, project, model, version = String::new(), environment = "production".to_owned(),
        task = None, features = None, classes = None, sensitive = None, window_seconds = 60.0,
        reservoir_size = 256, agent = None, strict = false, hash_sample_rate = 0.01,
        max_string_length = 1024, seed = None, max_prediction_records = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        project: String,
        model: String,
        version: String,
        environment: String,
        task: Option<String>,
        features: Option<&Bound<'_, PyDict>>,
        classes: Option<Vec<String>>,
        sensitive: Option<Vec<String>>,
        window_seconds: f64,
        reservoir_size: u32,
        agent: Option<String>,
        strict: bool,
        hash_sample_rate: f64,
        max_string_length: usize,
        seed: Option<u64>,
        max_prediction_records: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let features = features.map(config::parse_features).transpose()?;
        let max_prediction_records = max_prediction_records
            .map(config::parse_record_cap)
            .transpose()?;
        let kinds = OnceLock::new();
        if let Some(f) = &features {
            let _ = kinds.set(f.iter().map(|(_, k)| *k).collect());
        }
        let memory = agent.as_deref() == Some(MEMORY_AGENT);
        let cfg = config::build(config::Args {
            project,
            model,
            version,
            environment,
            task,
            features,
            classes,
            sensitive,
            window_seconds,
            reservoir_size,
            hash_sample_rate,
            max_string_length,
            max_prediction_records,
            agent,
            strict,
            seed,
        })?;
        let (core, memory) = if memory {
            let sink = Arc::new(MemorySink::new());
            let core = Monitor::with_sink(cfg, Arc::clone(&sink) as _).map_err(PyCoreError)?;
            (core, Some(sink))
        } else {
            (Monitor::new(cfg).map_err(PyCoreError)?, None)
        };
        Ok(Self {
            core,
            memory,
            keys: Mutex::new(KeyCache::default()),
            kinds,
        })
    }

    /// Record one prediction. Bad values are counted, never raised, unless strict.
    #[pyo3(signature = (features, prediction, *, label = None, id = None, timestamp = None, latency = None, scores = None))]
    #[allow(clippy::too_many_arguments)]
    fn log(
        &self,
        py: Python<'_>,
        features: &Bound<'_, PyAny>,
        prediction: &Bound<'_, PyAny>,
        label: Option<&Bound<'_, PyAny>>,
        id: Option<&Bound<'_, PyAny>>,
        timestamp: Option<&Bound<'_, PyAny>>,
        latency: Option<f64>,
        scores: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let dict = features.cast::<PyDict>().map_err(|_| {
            PyTypeError::new_err(format!(
                "features must be a dict, got {}",
                features
                    .get_type()
                    .name()
                    .map_or_else(|_| "?".into(), |n| n.to_string())
            ))
        })?;
        let id = id.map(id_text).transpose()?;
        let scores = scores.map(scores_vec).transpose()?.unwrap_or_default();
        let p = Prediction {
            id: id.as_deref(),
            timestamp_ms: timestamp
                .map(unix_seconds)
                .transpose()?
                .and_then(timestamp_ms),
            prediction: outcome(Cell::read(prediction)),
            label: label.map_or(Value::Missing, |l| outcome(Cell::read(l))),
            scores: &scores,
        };
        match self.kinds.get() {
            Some(kinds) if !self.core.config().strict => self.log_fast(py, dict, kinds, &p)?,
            _ => self.log_named(py, dict, &p)?,
        }
        self.record_latency(latency)?;
        Ok(())
    }

    /// Columns prepared by `neurocloak._columns`; see `Monitor.log_batch`.
    #[pyo3(signature = (names, columns, rows, predictions, labels, ids, timestamps, latencies, scores, scores_per_row))]
    #[allow(clippy::too_many_arguments)]
    fn _log_columns(
        &self,
        py: Python<'_>,
        names: &Bound<'_, PyList>,
        columns: &Bound<'_, PyList>,
        rows: usize,
        predictions: &Bound<'_, PyAny>,
        labels: Option<&Bound<'_, PyAny>>,
        ids: Option<&Bound<'_, PyAny>>,
        timestamps: Option<&Bound<'_, PyAny>>,
        latencies: Option<&Bound<'_, PyAny>>,
        scores: Option<&Bound<'_, PyAny>>,
        scores_per_row: usize,
    ) -> PyResult<usize> {
        let (names, sources) = Self::gather(names, columns)?;
        for (n, s) in names.iter().zip(&sources) {
            Self::check_rows(&format!("column `{n}`"), s.len(), rows)?;
        }
        let pred_src = Source::from_py(predictions)?;
        Self::check_rows("predictions", pred_src.len(), rows)?;
        let label_src = labels.map(Source::from_py).transpose()?;
        let id_src = ids.map(Source::from_py).transpose()?;
        let features = sources.iter().map(Buf::new).collect::<PyResult<Vec<_>>>()?;
        let out = Outcomes {
            predictions: Buf::new(&pred_src)?.into_outcome(),
            labels: label_src
                .as_ref()
                .map(Buf::new)
                .transpose()?
                .map(Buf::into_outcome),
            ids: id_src
                .as_ref()
                .map(Buf::new)
                .transpose()?
                .map(Buf::into_outcome),
        };
        let score_view = scores.map(ArrayView::from_py).transpose()?.flatten();
        let score_vals = score_view.as_ref().map(ArrayView::values_f64);
        let times: Option<Vec<i64>> = timestamps
            .map(|t| -> PyResult<Vec<i64>> {
                let src = Source::from_py(t)?;
                let buf = Buf::new(&src)?;
                Ok((0..buf.len())
                    .map(|i| match buf.cell(i) {
                        Cell::Number(x) => timestamp_ms(x).unwrap_or(0),
                        _ => 0,
                    })
                    .collect())
            })
            .transpose()?;
        let lat: Option<Vec<Duration>> = latencies
            .map(|l| -> PyResult<Vec<Duration>> {
                let src = Source::from_py(l)?;
                let buf = Buf::new(&src)?;
                (0..buf.len())
                    .map(|i| match buf.cell(i) {
                        Cell::Number(x) => seconds("latency", x),
                        _ => Err(PyValueError::new_err("latencies must be numbers")),
                    })
                    .collect()
            })
            .transpose()?;
        if let Some(t) = &times {
            Self::check_rows("timestamps", t.len(), rows)?;
        }
        if let Some(l) = &lat {
            Self::check_rows("latencies", l.len(), rows)?;
        }
        let first = self.kinds.get().is_none();
        let mixed = features.iter().any(Buf::is_mixed)
            || out.predictions.is_mixed()
            || out.labels.as_ref().is_some_and(Buf::is_mixed)
            || out.ids.as_ref().is_some_and(Buf::is_mixed);
        let score_pair = score_vals.as_deref().map(|s| (s, scores_per_row));
        if let Some((s, k)) = score_pair
            && (k == 0 || s.len() != rows * k)
        {
            return Err(crate::errors::BatchError::new_err(
                "scores must have one row of scores_per_row values per row",
            ));
        }
        if mixed {
            self.log_rows(
                py,
                &names,
                &features,
                &out,
                rows,
                score_pair,
                times.as_deref(),
            )
            .map_err(PyErr::from)?;
        } else {
            let batch = Batch {
                features: names
                    .iter()
                    .zip(&features)
                    .filter_map(|(name, b)| {
                        Some(Column {
                            name,
                            data: b.data()?,
                            validity: b.validity(),
                        })
                    })
                    .collect(),
                predictions: out.predictions.data(),
                labels: out.labels.as_ref().and_then(Buf::data),
                ids: out.ids.as_ref().and_then(Buf::data),
                scores: score_pair.map(|(s, _)| s),
                scores_per_row,
                timestamps_ms: times.as_deref(),
            };
            // Schema inference must not interleave with another thread's first call, so the very
            // first batch keeps the GIL; every later one releases it while the core works.
            let result = if first {
                fork::pass(py);
                self.core.log_batch(&batch)
            } else {
                fork::detached(py, || self.core.log_batch(&batch))
            };
            result.map_err(PyCoreError)?;
        }
        if first {
            let by_name = names
                .iter()
                .zip(&features)
                .map(|(n, b)| (n.as_str(), b.inferred_kind()))
                .collect();
            self.learn_kinds(&by_name);
        }
        if let Some(l) = lat {
            fork::detached(py, || {
                l.into_iter().for_each(|d| self.core.record_latency(d))
            });
        }
        Ok(rows)
    }

    /// Columns prepared by `neurocloak._columns`; see `Monitor.set_reference`.
    #[pyo3(signature = (names, columns, rows, predictions, labels))]
    fn _set_reference_columns(
        &self,
        py: Python<'_>,
        names: &Bound<'_, PyList>,
        columns: &Bound<'_, PyList>,
        rows: usize,
        predictions: Option<&Bound<'_, PyAny>>,
        labels: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let (names, sources) = Self::gather(names, columns)?;
        for (n, s) in names.iter().zip(&sources) {
            Self::check_rows(&format!("column `{n}`"), s.len(), rows)?;
        }
        let pred_src = predictions.map(Source::from_py).transpose()?;
        let label_src = labels.map(Source::from_py).transpose()?;
        let features = sources.iter().map(Buf::new).collect::<PyResult<Vec<_>>>()?;
        let preds = pred_src
            .as_ref()
            .map(Buf::new)
            .transpose()?
            .map(Buf::into_outcome);
        let labs = label_src
            .as_ref()
            .map(Buf::new)
            .transpose()?
            .map(Buf::into_outcome);
        if let Some(mixed) = names
            .iter()
            .zip(&features)
            .find(|(_, b)| b.is_mixed())
            .map(|(n, _)| n.as_str())
            .or_else(|| {
                preds
                    .as_ref()
                    .filter(|b| b.is_mixed())
                    .map(|_| "predictions")
            })
            .or_else(|| labs.as_ref().filter(|b| b.is_mixed()).map(|_| "labels"))
        {
            return Err(crate::errors::BatchError::new_err(format!(
                "reference column `{mixed}` mixes value types; clean the training data first"
            )));
        }
        let batch = Batch {
            features: names
                .iter()
                .zip(&features)
                .filter_map(|(name, b)| {
                    Some(Column {
                        name,
                        data: b.data()?,
                        validity: b.validity(),
                    })
                })
                .collect(),
            predictions: preds.as_ref().and_then(Buf::data),
            labels: labs.as_ref().and_then(Buf::data),
            ..Batch::default()
        };
        // Keeps the GIL: it may infer the schema (see `_log_columns`), and it runs once.
        fork::pass(py);
        self.core.set_reference(&batch).map_err(PyCoreError)?;
        let by_name = names
            .iter()
            .zip(&features)
            .map(|(n, b)| (n.as_str(), b.inferred_kind()))
            .collect();
        self.learn_kinds(&by_name);
        Ok(())
    }

    /// Ground truth for earlier predictions, joined by id at the collector.
    fn log_labels(&self, ids: &Bound<'_, PyAny>, labels: &Bound<'_, PyAny>) -> PyResult<()> {
        let id_items = Source::from_py(ids)?;
        let label_items = Source::from_py(labels)?;
        let id_buf = Buf::new(&id_items)?;
        let label_buf = Buf::new(&label_items)?;
        let owned: Vec<Cow<'_, str>> = match &id_items {
            Source::Objects(items) => items.iter().map(id_text).collect::<PyResult<_>>()?,
            _ => (0..id_buf.len())
                .map(|i| match id_buf.cell(i) {
                    Cell::Number(x) => Cow::Owned(format!("{x}")),
                    Cell::Text(s) => Cow::Borrowed(s),
                    _ => Cow::Borrowed(""),
                })
                .collect(),
        };
        let id_refs: Vec<&str> = owned.iter().map(AsRef::as_ref).collect();
        let values: Vec<Value<'_>> = (0..label_buf.len())
            .map(|i| outcome(label_buf.cell(i)))
            .collect();
        fork::pass(ids.py());
        self.core
            .log_labels(&id_refs, &values)
            .map_err(|e| PyCoreError(e).into())
    }

    /// Count one failed prediction (and its latency, when given).
    #[pyo3(signature = (*, latency = None))]
    fn log_error(&self, py: Python<'_>, latency: Option<f64>) -> PyResult<()> {
        fork::pass(py);
        self.core.record_error();
        self.record_latency(latency)
    }

    /// Records a robustness probe's result into the window open now (the core validates it:
    /// a bad number raises `ProtocolError` naming the field).
    #[pyo3(signature = (*, stability, rows, repeats, noise, dropout, discrete, feature_sensitivity))]
    #[allow(clippy::too_many_arguments)]
    fn _record_robustness(
        &self,
        py: Python<'_>,
        stability: f64,
        rows: u64,
        repeats: u32,
        noise: f64,
        dropout: f64,
        discrete: bool,
        feature_sensitivity: BTreeMap<String, f64>,
    ) -> PyResult<()> {
        fork::pass(py);
        self.core
            .record_robustness(neurocloak_proto::v1::RobustnessProbe {
                stability,
                rows,
                repeats,
                noise,
                dropout,
                discrete,
                feature_sensitivity,
                probe_time_ms: 0,
            })
            .map_err(|e| PyCoreError(e).into())
    }

    /// Close open windows and wait until the agent has everything; False on timeout.
    #[pyo3(signature = (timeout = 5.0))]
    fn flush(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        let t = seconds("timeout", timeout)?;
        match fork::detached(py, || self.core.flush(t)) {
            Ok(()) => Ok(true),
            Err(CoreError::Timeout(_)) => Ok(false),
            Err(e) => Err(PyCoreError(e).into()),
        }
    }

    /// Flush, then stop; False when the flush timed out (undelivered windows count as dropped).
    /// Calling it again is harmless.
    #[pyo3(signature = (timeout = 5.0))]
    fn shutdown(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        let t = seconds("timeout", timeout)?;
        match fork::detached(py, || self.core.shutdown(t)) {
            Ok(()) => Ok(true),
            Err(CoreError::Timeout(_)) => Ok(false),
            Err(CoreError::Shutdown) => Ok(true),
            Err(e) => Err(PyCoreError(e).into()),
        }
    }

    /// Delivery counters: sent == delivered + dropped + queued.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.core.stats();
        let d = PyDict::new(py);
        d.set_item("sent", s.sent)?;
        d.set_item("delivered", s.delivered)?;
        d.set_item("dropped", s.dropped)?;
        d.set_item("queued", s.queued)?;
        d.set_item("windows", s.windows)?;
        d.set_item("rejected", s.rejected)?;
        Ok(d)
    }

    /// With `agent="memory"`: close open windows and return every window recorded since the
    /// last call, one dict per window (parts merged).
    fn windows<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let Some(sink) = &self.memory else {
            return Err(ConfigError::new_err(
                "windows() needs a monitor created with agent=\"memory\"",
            ));
        };
        fork::detached(py, || self.core.flush(Duration::ZERO)).map_err(PyCoreError)?;
        let mut by_start: BTreeMap<i64, Vec<_>> = BTreeMap::new();
        for w in sink.take_windows() {
            by_start.entry(w.window_start_ms).or_default().push(w);
        }
        let out = PyList::empty(py);
        for parts in by_start.values() {
            let merged = neurocloak_core::merge_parts(parts).map_err(PyCoreError)?;
            out.append(snapshot::window_to_dict(py, &merged)?)?;
        }
        Ok(out)
    }

    /// Feature names in column order (empty until the schema is known).
    #[getter]
    fn feature_names(&self, py: Python<'_>) -> Vec<String> {
        fork::pass(py);
        self.core.feature_names()
    }

    /// The agent endpoint windows go to (or "memory").
    #[getter]
    fn agent(&self) -> String {
        if self.memory.is_some() {
            MEMORY_AGENT.to_owned()
        } else {
            self.core.config().resolved_endpoint()
        }
    }

    fn __repr__(&self) -> String {
        let id = &self.core.config().identity;
        format!(
            "Monitor(project={:?}, model={:?}, version={:?}, environment={:?})",
            id.project, id.model, id.version, id.environment
        )
    }

    fn _before_fork(&self) {
        self.core.before_fork();
    }

    fn _after_fork_parent(&self) {
        self.core.after_fork_parent();
    }

    fn _after_fork_child(&self) {
        self.core.after_fork_child();
    }
}
