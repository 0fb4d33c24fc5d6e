//! Plain-object summaries of window profiles for `takeWindows()` (agent-less use: notebooks,
//! tests of code that embeds the SDK). The full profile stays a protobuf message.

use napi_derive::napi;
use neurocloak_core::sketch::Latency;
use neurocloak_proto::v1 as pb;
use std::collections::HashMap;

#[napi(object)]
pub struct ColumnSummary {
    /// `numeric`, `categorical` or `boolean`.
    pub kind: String,
    pub count: f64,
    pub missing: f64,
    pub nan: f64,
    pub pos_inf: f64,
    pub neg_inf: f64,
    pub type_mismatch: f64,
    pub truncated: f64,
    /// Over finite values (numeric columns).
    pub mean: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

#[napi(object)]
pub struct WindowSummary {
    pub window_start_ms: f64,
    pub window_length_ms: f64,
    pub rows: f64,
    pub errors: f64,
    /// Rows whose keys differed from the schema.
    pub extra_features: f64,
    /// Latencies recorded in this window.
    pub latency_count: f64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    /// Rows kept in the reservoir sample.
    pub sampled_rows: u32,
    /// Prediction records kept for joining delayed labels.
    pub prediction_records: u32,
    /// Rows with an id beyond the `maxPredictionRecords` cap: their labels cannot be joined.
    pub predictions_dropped: f64,
    pub features: HashMap<String, ColumnSummary>,
    pub prediction: Option<ColumnSummary>,
    pub label: Option<ColumnSummary>,
    /// Robustness probes kept in this window (`recordRobustness`).
    pub robustness_probes: u32,
    /// Their rows-weighted stability, what the collector scores; absent without probes.
    pub perturbation_stability: Option<f64>,
}

pub fn summarize(w: &pb::WindowProfile) -> WindowSummary {
    // The profile was built by this process, so it decodes; a failure only hides latency.
    let latency = w.latency.as_ref().and_then(|l| Latency::from_proto(l).ok());
    WindowSummary {
        window_start_ms: w.window_start_ms as f64,
        window_length_ms: w.window_length_ms as f64,
        rows: w.rows as f64,
        errors: w.errors as f64,
        extra_features: w.extra_features as f64,
        latency_count: latency.as_ref().map_or(0.0, |l| l.count() as f64),
        latency_p50_ms: latency.as_ref().map(|l| quantile_ms(l, 0.5)),
        latency_p99_ms: latency.as_ref().map(|l| quantile_ms(l, 0.99)),
        sampled_rows: w.reservoir.as_ref().map_or(0, |r| r.rows.len() as u32),
        prediction_records: w.predictions.len() as u32,
        predictions_dropped: w.predictions_dropped as f64,
        features: w
            .features
            .iter()
            .map(|(k, c)| (k.clone(), column(c)))
            .collect(),
        prediction: w.prediction.as_ref().map(column),
        label: w.label.as_ref().map(column),
        robustness_probes: w.robustness.len() as u32,
        perturbation_stability: neurocloak_core::profile::window_stability(&w.robustness),
    }
}

fn column(c: &pb::ColumnProfile) -> ColumnSummary {
    let n = c.counters.unwrap_or_default();
    let m = c
        .numeric
        .as_ref()
        .and_then(|x| x.moments.as_ref())
        .filter(|m| m.n > 0);
    ColumnSummary {
        kind: match pb::FeatureKind::try_from(c.kind) {
            Ok(pb::FeatureKind::Numeric) => "numeric",
            Ok(pb::FeatureKind::Categorical) => "categorical",
            Ok(pb::FeatureKind::Boolean) => "boolean",
            _ => "unspecified",
        }
        .to_owned(),
        count: n.count as f64,
        missing: n.missing as f64,
        nan: n.nan as f64,
        pos_inf: n.pos_inf as f64,
        neg_inf: n.neg_inf as f64,
        type_mismatch: n.type_mismatch as f64,
        truncated: n.truncated as f64,
        mean: m.map(|m| m.mean),
        min: m.map(|m| m.min),
        max: m.map(|m| m.max),
    }
}

fn quantile_ms(l: &Latency, q: f64) -> f64 {
    // The core records microseconds.
    l.histogram().value_at_quantile(q) as f64 / 1000.0
}
