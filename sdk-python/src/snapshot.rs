//! A window profile as plain Python values, for `Monitor.snapshot()`: what a user (or a test)
//! wants to look at, not the full wire message.

use neurocloak_core::sketch::Latency;
use neurocloak_proto::v1::{self as pb, FeatureKind};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::errors::PyCoreError;

/// How many frequent items a column's `top` lists.
const TOP_ITEMS: usize = 20;

pub fn window_to_dict<'py>(py: Python<'py>, w: &pb::WindowProfile) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("window_start_ms", w.window_start_ms)?;
    d.set_item("window_length_ms", w.window_length_ms)?;
    d.set_item("rows", w.rows)?;
    d.set_item("errors", w.errors)?;
    d.set_item("extra_features", w.extra_features)?;
    d.set_item("prediction_records", w.predictions.len())?;
    d.set_item("predictions_dropped", w.predictions_dropped)?;
    let features = PyDict::new(py);
    for (name, col) in &w.features {
        features.set_item(name, column_to_dict(py, col)?)?;
    }
    d.set_item("features", features)?;
    d.set_item("prediction", optional_column(py, w.prediction.as_ref())?)?;
    d.set_item("label", optional_column(py, w.label.as_ref())?)?;
    let (count, max_s) = match &w.latency {
        Some(l) if !l.hdr_v2.is_empty() => {
            let lat = Latency::from_proto(l).map_err(PyCoreError::from)?;
            let max_us = lat.histogram().max();
            (lat.count(), max_us as f64 / 1e6)
        }
        _ => (0, 0.0),
    };
    d.set_item("latency_count", count)?;
    d.set_item("latency_max_s", max_s)?;
    let reservoir = w.reservoir.as_ref().map_or(0, |r| r.rows.len());
    d.set_item("reservoir_rows", reservoir)?;
    d.set_item("groups", w.groups.keys().collect::<Vec<_>>())?;
    let probes = PyList::empty(py);
    for p in &w.robustness {
        let pd = PyDict::new(py);
        pd.set_item("stability", p.stability)?;
        pd.set_item("rows", p.rows)?;
        pd.set_item("repeats", p.repeats)?;
        pd.set_item("noise", p.noise)?;
        pd.set_item("dropout", p.dropout)?;
        pd.set_item("discrete", p.discrete)?;
        pd.set_item("feature_sensitivity", &p.feature_sensitivity)?;
        pd.set_item("probe_time_ms", p.probe_time_ms)?;
        probes.append(pd)?;
    }
    d.set_item("robustness", probes)?;
    d.set_item("robustness_dropped", w.robustness_dropped)?;
    d.set_item(
        "perturbation_stability",
        neurocloak_core::profile::window_stability(&w.robustness),
    )?;
    Ok(d)
}

fn optional_column<'py>(
    py: Python<'py>,
    col: Option<&pb::ColumnProfile>,
) -> PyResult<Bound<'py, PyDict>> {
    match col {
        Some(c) => column_to_dict(py, c),
        None => column_to_dict(py, &pb::ColumnProfile::default()),
    }
}

fn column_to_dict<'py>(py: Python<'py>, c: &pb::ColumnProfile) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let kind = match FeatureKind::try_from(c.kind) {
        Ok(FeatureKind::Numeric) => "numeric",
        Ok(FeatureKind::Categorical) => "categorical",
        Ok(FeatureKind::Boolean) => "boolean",
        _ => "unspecified",
    };
    d.set_item("kind", kind)?;
    let k = c.counters.unwrap_or_default();
    d.set_item("count", k.count)?;
    d.set_item("missing", k.missing)?;
    d.set_item("nan", k.nan)?;
    d.set_item("pos_inf", k.pos_inf)?;
    d.set_item("neg_inf", k.neg_inf)?;
    d.set_item("type_mismatch", k.type_mismatch)?;
    d.set_item("truncated", k.truncated)?;
    let numeric = c.numeric.as_ref();
    let moments = numeric.and_then(|n| n.moments);
    let n = moments.map_or(0, |m| m.n);
    d.set_item("n", n)?;
    let stat = |f: fn(&pb::Moments) -> f64| moments.filter(|_| n > 0).map(|m| f(&m));
    d.set_item("mean", stat(|m| m.mean))?;
    d.set_item("min", stat(|m| m.min))?;
    d.set_item("max", stat(|m| m.max))?;
    d.set_item(
        "variance",
        moments.filter(|m| m.n > 1).map(|m| m.m2 / (m.n - 1) as f64),
    )?;
    let bins = numeric
        .and_then(|n| n.bins.as_ref())
        .map_or(0, |b| b.counts.len());
    d.set_item("bins", bins)?;
    let top = PyList::empty(py);
    if let Some(items) = c.categorical.as_ref().and_then(|c| c.items.as_ref()) {
        let mut sorted: Vec<_> = items.items.iter().collect();
        sorted.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
        for it in sorted.into_iter().take(TOP_ITEMS) {
            top.append((it.value.as_str(), it.count))?;
        }
    }
    d.set_item("top", top)?;
    Ok(d)
}
