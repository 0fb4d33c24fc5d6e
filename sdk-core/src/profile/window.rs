//! Everything one process saw in one window, and merging of parts from several processes.

use std::collections::BTreeMap;

use neurocloak_proto as pb;

use super::column::{ColumnProfile, merge_opt};
use super::outcomes::Outcomes;
use super::reservoir::{Reservoir, check_record, check_row};
use super::robustness::{MAX_PROBES, check_probe, merge_probes};
use crate::CoreError;
use crate::error::invalid;
use crate::sketch::Latency;

/// Most features (or groups) a profile from the wire may carry.
pub const MAX_COLUMNS: usize = 1 << 16;
/// Most prediction records / hash-sampled rows a profile from the wire may carry.
pub const MAX_RECORDS: usize = 1 << 22;

/// Outcomes of one sensitive group (`"sex=F"`, `"race=A&sex=F"`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupProfile {
    /// Rows in the group.
    pub count: u64,
    /// Their outcomes.
    pub outcomes: Outcomes,
}

/// The decoded, mergeable form of `neurocloak_proto::WindowProfile`. Optional fields mirror the
/// proto's presence, so `from_proto(x).to_proto()` encodes to exactly the bytes of `x`.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowProfile {
    /// Model identity.
    pub identity: pb::ModelIdentity,
    /// Feature schema and task.
    pub schema: pb::Schema,
    /// Window start, ms since the Unix epoch (a multiple of the length).
    pub window_start_ms: i64,
    /// Window length in ms.
    pub window_length_ms: i64,
    /// Rows recorded.
    pub rows: u64,
    /// Per-feature profiles.
    pub features: BTreeMap<String, ColumnProfile>,
    /// Prediction column.
    pub prediction: Option<ColumnProfile>,
    /// Label column (labels given at recording time).
    pub label: Option<ColumnProfile>,
    /// Outcomes of labelled rows.
    pub outcomes: Option<Outcomes>,
    /// Outcomes per sensitive group.
    pub groups: BTreeMap<String, GroupProfile>,
    /// Latencies.
    pub latency: Option<Latency>,
    /// Prediction errors recorded.
    pub errors: u64,
    /// Uniform sample of rows.
    pub reservoir: Option<Reservoir>,
    /// Rows chosen by hash of their id.
    pub hash_sampled: Vec<pb::SampledRow>,
    /// Compact records of predictions with an id.
    pub predictions: Vec<pb::PredictionRecord>,
    /// Prediction records dropped by the per-window cap.
    pub predictions_dropped: u64,
    /// Rows with a feature outside the schema or missing one of its features.
    pub extra_features: u64,
    /// Number of process parts merged in.
    pub parts: u32,
    /// Robustness probes recorded while the window was open, at most
    /// [`MAX_PROBES`](super::MAX_PROBES), newest first once merged.
    pub robustness: Vec<pb::RobustnessProbe>,
    /// Probes of this window not kept because of that cap.
    pub robustness_dropped: u64,
}

impl WindowProfile {
    /// An empty one-part profile.
    pub fn new(
        identity: pb::ModelIdentity,
        schema: pb::Schema,
        window_start_ms: i64,
        window_length_ms: i64,
    ) -> Self {
        Self {
            identity,
            schema,
            window_start_ms,
            window_length_ms,
            rows: 0,
            features: BTreeMap::new(),
            prediction: None,
            label: None,
            outcomes: None,
            groups: BTreeMap::new(),
            latency: None,
            errors: 0,
            reservoir: None,
            hash_sampled: Vec::new(),
            predictions: Vec::new(),
            predictions_dropped: 0,
            extra_features: 0,
            parts: 1,
            robustness: Vec::new(),
            robustness_dropped: 0,
        }
    }

    /// Merges a part of the same model, version and window; `parts` add up. Features present in
    /// only one part are kept; the schema becomes the union (first part's order, then new ones).
    pub fn merge(&mut self, o: &WindowProfile) -> crate::Result<()> {
        if o.identity != self.identity {
            return Err(CoreError::Incompatible(format!(
                "identity {:?} vs {:?}",
                self.identity, o.identity
            )));
        }
        if (o.window_start_ms, o.window_length_ms) != (self.window_start_ms, self.window_length_ms)
        {
            return Err(CoreError::Incompatible(format!(
                "window {}+{} vs {}+{}",
                self.window_start_ms, self.window_length_ms, o.window_start_ms, o.window_length_ms
            )));
        }
        self.merge_schema(&o.schema);
        self.rows = self.rows.saturating_add(o.rows);
        for (name, col) in &o.features {
            match self.features.get_mut(name) {
                Some(c) => c.merge(col)?,
                None => {
                    self.features.insert(name.clone(), col.clone());
                }
            }
        }
        merge_opt(&mut self.prediction, &o.prediction, |a, b| a.merge(b))?;
        merge_opt(&mut self.label, &o.label, |a, b| a.merge(b))?;
        merge_opt(&mut self.outcomes, &o.outcomes, |a, b| a.merge(b))?;
        for (key, g) in &o.groups {
            let mine = self.groups.entry(key.clone()).or_default();
            mine.count = mine.count.saturating_add(g.count);
            mine.outcomes.merge(&g.outcomes)?;
        }
        merge_opt(&mut self.latency, &o.latency, |a, b| a.merge(b))?;
        self.errors = self.errors.saturating_add(o.errors);
        merge_opt(&mut self.reservoir, &o.reservoir, |a, b| a.merge(b))?;
        self.hash_sampled.extend(o.hash_sampled.iter().cloned());
        self.predictions.extend(o.predictions.iter().cloned());
        self.predictions_dropped = self
            .predictions_dropped
            .saturating_add(o.predictions_dropped);
        self.extra_features = self.extra_features.saturating_add(o.extra_features);
        self.parts = self.parts.saturating_add(o.parts);
        merge_probes(
            &mut self.robustness,
            &mut self.robustness_dropped,
            &o.robustness,
            o.robustness_dropped,
        );
        Ok(())
    }

    fn merge_schema(&mut self, o: &pb::Schema) {
        if self.schema.task == pb::TaskType::Unspecified as i32 {
            self.schema.task = o.task;
        }
        if self.schema.classes.is_empty() {
            self.schema.classes = o.classes.clone();
        }
        for f in &o.features {
            if !self.schema.features.iter().any(|g| g.name == f.name) {
                self.schema.features.push(f.clone());
            }
        }
        self.schema.inferred &= o.inferred;
    }

    /// Encodes to the wire type.
    pub fn to_proto(&self) -> pb::WindowProfile {
        pb::WindowProfile {
            identity: Some(self.identity.clone()),
            schema: Some(self.schema.clone()),
            window_start_ms: self.window_start_ms,
            window_length_ms: self.window_length_ms,
            rows: self.rows,
            features: self
                .features
                .iter()
                .map(|(k, v)| (k.clone(), v.to_proto()))
                .collect(),
            prediction: self.prediction.as_ref().map(ColumnProfile::to_proto),
            label: self.label.as_ref().map(ColumnProfile::to_proto),
            outcomes: self.outcomes.as_ref().map(Outcomes::to_proto),
            groups: self
                .groups
                .iter()
                .map(|(k, g)| {
                    (
                        k.clone(),
                        pb::GroupProfile {
                            count: g.count,
                            outcomes: Some(g.outcomes.to_proto()),
                        },
                    )
                })
                .collect(),
            latency: self.latency.as_ref().map(Latency::to_proto),
            errors: self.errors,
            reservoir: self.reservoir.as_ref().map(Reservoir::to_proto),
            hash_sampled: self.hash_sampled.clone(),
            predictions: self.predictions.clone(),
            predictions_dropped: self.predictions_dropped,
            extra_features: self.extra_features,
            parts: self.parts,
            robustness: self.robustness.clone(),
            robustness_dropped: self.robustness_dropped,
        }
    }

    /// Decodes and validates every part of a profile.
    pub fn from_proto(p: &pb::WindowProfile) -> crate::Result<Self> {
        let identity = p
            .identity
            .clone()
            .ok_or_else(|| invalid("WindowProfile", "missing identity"))?;
        if p.window_length_ms <= 0 || p.window_start_ms.checked_add(p.window_length_ms).is_none() {
            return Err(invalid("WindowProfile", "bad window bounds"));
        }
        if p.features.len() > MAX_COLUMNS
            || p.groups.len() > MAX_COLUMNS
            || p.predictions.len() > MAX_RECORDS
            || p.hash_sampled.len() > MAX_RECORDS
            || p.robustness.len() > MAX_PROBES
        {
            return Err(invalid("WindowProfile", "too many entries"));
        }
        let features = p
            .features
            .iter()
            .map(|(k, v)| Ok((k.clone(), ColumnProfile::from_proto(v)?)))
            .collect::<crate::Result<BTreeMap<_, _>>>()?;
        let groups = p
            .groups
            .iter()
            .map(|(k, g)| {
                Ok((
                    k.clone(),
                    GroupProfile {
                        count: g.count,
                        outcomes: Outcomes::from_proto(&g.outcomes.clone().unwrap_or_default())?,
                    },
                ))
            })
            .collect::<crate::Result<BTreeMap<_, _>>>()?;
        for r in &p.hash_sampled {
            check_row(r)?;
        }
        for r in &p.predictions {
            check_record(r)?;
        }
        for r in &p.robustness {
            check_probe(r).map_err(|e| invalid("RobustnessProbe", e.to_string()))?;
        }
        Ok(Self {
            identity,
            schema: p.schema.clone().unwrap_or_default(),
            window_start_ms: p.window_start_ms,
            window_length_ms: p.window_length_ms,
            rows: p.rows,
            features,
            prediction: p
                .prediction
                .as_ref()
                .map(ColumnProfile::from_proto)
                .transpose()?,
            label: p
                .label
                .as_ref()
                .map(ColumnProfile::from_proto)
                .transpose()?,
            outcomes: p.outcomes.as_ref().map(Outcomes::from_proto).transpose()?,
            groups,
            latency: p.latency.as_ref().map(Latency::from_proto).transpose()?,
            errors: p.errors,
            reservoir: p
                .reservoir
                .as_ref()
                .map(Reservoir::from_proto)
                .transpose()?,
            hash_sampled: p.hash_sampled.clone(),
            predictions: p.predictions.clone(),
            predictions_dropped: p.predictions_dropped,
            extra_features: p.extra_features,
            parts: p.parts,
            robustness: p.robustness.clone(),
            robustness_dropped: p.robustness_dropped,
        })
    }
}

/// Merges parts of one window (same identity and window) from several processes into one
/// profile; `parts` is the sum of the inputs' `parts`. Used by the agent and the collector.
pub fn merge_parts(parts: &[pb::WindowProfile]) -> crate::Result<pb::WindowProfile> {
    let (first, rest) = parts
        .split_first()
        .ok_or_else(|| CoreError::Incompatible("no parts to merge".into()))?;
    let mut acc = WindowProfile::from_proto(first)?;
    for p in rest {
        acc.merge(&WindowProfile::from_proto(p)?)?;
    }
    Ok(acc.to_proto())
}
