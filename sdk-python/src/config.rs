//! Constructor arguments → `MonitorConfig`.

use std::collections::BTreeMap;
use std::time::Duration;

use neurocloak_core::monitor::MAX_PREDICTION_RECORDS;
use neurocloak_core::{FeatureKind, MonitorConfig, TaskType};
use pyo3::exceptions::{PyOverflowError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict};

use crate::errors::ConfigError;

/// The agent value that keeps windows in memory (`Monitor.windows()`) instead of shipping them.
pub const MEMORY_AGENT: &str = "memory";

/// Everything `Monitor(...)` accepts, already extracted from Python.
pub struct Args {
    pub project: String,
    pub model: String,
    pub version: String,
    pub environment: String,
    pub task: Option<String>,
    pub features: Option<Vec<(String, FeatureKind)>>,
    pub classes: Option<Vec<String>>,
    pub sensitive: Option<Vec<String>>,
    pub window_seconds: f64,
    pub reservoir_size: u32,
    pub hash_sample_rate: f64,
    pub max_string_length: usize,
    pub max_prediction_records: Option<usize>,
    pub agent: Option<String>,
    pub strict: bool,
    pub seed: Option<u64>,
}

pub fn parse_kind(kind: &str) -> PyResult<FeatureKind> {
    match kind {
        "numeric" => Ok(FeatureKind::Numeric),
        "categorical" => Ok(FeatureKind::Categorical),
        "boolean" => Ok(FeatureKind::Boolean),
        other => Err(ConfigError::new_err(format!(
            "feature kind must be \"numeric\", \"categorical\" or \"boolean\", got {other:?}"
        ))),
    }
}

fn parse_task(task: &str) -> PyResult<TaskType> {
    match task {
        "binary" => Ok(TaskType::BinaryClassification),
        "multiclass" => Ok(TaskType::MulticlassClassification),
        "regression" => Ok(TaskType::Regression),
        other => Err(ConfigError::new_err(format!(
            "task must be \"binary\", \"multiclass\" or \"regression\", got {other:?}"
        ))),
    }
}

/// `max_prediction_records`: an int (or anything with `__index__`, such as a numpy integer)
/// from 0 to the core's limit. Python ints have no size limit, so negative and huge values get
/// the same range message instead of pyo3's generic overflow error.
pub fn parse_record_cap(v: &Bound<'_, PyAny>) -> PyResult<usize> {
    let out_of_range = || {
        ConfigError::new_err(format!(
            "max_prediction_records must be an integer from 0 to {MAX_PREDICTION_RECORDS}, got {v}"
        ))
    };
    // bool is an int subclass in Python; `True` as a cap is a mistake, not 1.
    if v.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err(
            "max_prediction_records must be an int, got bool",
        ));
    }
    match v.extract::<i64>() {
        Ok(n) => usize::try_from(n)
            .ok()
            .filter(|n| *n <= MAX_PREDICTION_RECORDS)
            .ok_or_else(out_of_range),
        Err(e) if e.is_instance_of::<PyOverflowError>(v.py()) => Err(out_of_range()),
        Err(_) => Err(PyTypeError::new_err(format!(
            "max_prediction_records must be an int, got {}",
            v.get_type()
                .name()
                .map_or_else(|_| "?".into(), |n| n.to_string())
        ))),
    }
}

/// Feature schema from `{name: kind}`, in the mapping's order.
pub fn parse_features(features: &Bound<'_, PyDict>) -> PyResult<Vec<(String, FeatureKind)>> {
    let mut out = Vec::with_capacity(features.len());
    let mut seen = BTreeMap::new();
    for (name, kind) in features.iter() {
        let name: String = name
            .extract()
            .map_err(|_| ConfigError::new_err("feature names must be strings"))?;
        let kind: String = kind.extract().map_err(|_| {
            ConfigError::new_err(format!("the kind of feature {name:?} must be a string"))
        })?;
        if seen.insert(name.clone(), ()).is_some() {
            return Err(ConfigError::new_err(format!(
                "feature {name:?} given twice"
            )));
        }
        out.push((name, parse_kind(&kind)?));
    }
    Ok(out)
}

pub fn build(a: Args) -> PyResult<MonitorConfig> {
    for (what, v) in [("project", &a.project), ("model", &a.model)] {
        if v.trim().is_empty() {
            return Err(ConfigError::new_err(format!("{what} must not be empty")));
        }
    }
    let window = Duration::try_from_secs_f64(a.window_seconds).map_err(|_| {
        ConfigError::new_err(format!(
            "window_seconds must be a positive number, got {}",
            a.window_seconds
        ))
    })?;
    let mut c = MonitorConfig::new(&a.project, &a.model, &a.version);
    c.identity.environment = a.environment;
    if let Some(t) = a.task.as_deref() {
        c.task = parse_task(t)?;
    }
    c.features = a.features;
    c.classes = a.classes.unwrap_or_default();
    c.sensitive = a.sensitive.unwrap_or_default();
    c.window = window;
    c.reservoir_size = a.reservoir_size;
    c.hash_sample_rate = a.hash_sample_rate;
    c.max_string_len = a.max_string_length;
    if let Some(n) = a.max_prediction_records {
        c.max_prediction_records = n;
    }
    c.agent_endpoint = a.agent.filter(|x| x != MEMORY_AGENT);
    c.strict = a.strict;
    if let Some(s) = a.seed {
        c.seed = s;
    }
    Ok(c)
}
