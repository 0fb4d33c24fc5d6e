//! Delayed labels: absorbed from stored label batches, indexed by prediction id, and joined to
//! the prediction records of their windows.
//!
//! A window's prediction records are indexed when it is first evaluated (prediction id →
//! window start). A label batch is absorbed once per arrival scan: each label is kept by id
//! and, when its prediction's window is known, that window is marked for re-evaluation. A label
//! that arrives before its window was evaluated waits in the store and is joined when the
//! window is. Joining adds the labelled rows to the window's outcomes and to the outcomes of
//! the prediction's sensitive groups; predicted-class counts are not touched again, because the
//! SDK already counted every prediction when it was made.

use std::collections::{BTreeMap, HashMap};

use neurocloak_core::profile::{ClassificationOutcomes, Outcomes, RegressionOutcomes};
use neurocloak_proto::v1::value::Kind;
use neurocloak_proto::v1::{self as pb, LabelBatch, TaskType, WindowProfile};
use prost::Message as _;
use serde::{Deserialize, Serialize};

use super::{join_id, version_scope};
use crate::store::eval::{Coll, Doc, MAX_GET_MANY, SharedEvalStore};
use crate::store::{LabelPart, ModelKey};
use crate::{Error, Result};

/// Longest prediction id accepted in a label.
pub const MAX_ID_LEN: usize = 256;
/// Longest text label accepted.
pub const MAX_TEXT_LEN: usize = 1024;

/// A label as kept by the collector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelValue {
    Number(f64),
    Text(String),
    Flag(bool),
}

impl LabelValue {
    /// None for labels that cannot be joined: missing, non-finite, oversized.
    fn from_proto(v: Option<&pb::Value>) -> Option<LabelValue> {
        match v?.kind.as_ref()? {
            Kind::Number(x) if x.is_finite() => Some(LabelValue::Number(*x)),
            Kind::Number(_) => None,
            Kind::Text(t) if t.len() <= MAX_TEXT_LEN => Some(LabelValue::Text(t.clone())),
            Kind::Text(_) => None,
            Kind::Flag(b) => Some(LabelValue::Flag(*b)),
        }
    }
}

pub fn label_doc_id(key: &ModelKey, prediction_id: &str) -> String {
    join_id(&[
        &key.project_id,
        &key.model,
        &key.version,
        &key.environment,
        prediction_id,
    ])
}

/// What absorbing one label batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Absorbed {
    /// Labels kept (new or repeated).
    pub accepted: u64,
    /// Labels refused: empty/oversized id, missing or non-finite value.
    pub rejected: u64,
    /// Starts of already-indexed windows these labels belong to.
    pub windows: Vec<i64>,
}

/// Keeps the labels of one stored batch and finds the windows they change.
pub async fn absorb(docs: &SharedEvalStore, part: &LabelPart) -> Result<Absorbed> {
    let batch = LabelBatch::decode(part.payload.as_slice())
        .map_err(|e| Error::Corrupt(format!("label batch {}: {e}", part.id)))?;
    let key = &part.key;
    let mut out = Absorbed::default();
    let mut label_docs = Vec::with_capacity(batch.labels.len());
    for l in &batch.labels {
        let value = LabelValue::from_proto(l.label.as_ref());
        match value {
            Some(v) if !l.id.is_empty() && l.id.len() <= MAX_ID_LEN => {
                label_docs.push(Doc {
                    id: label_doc_id(key, &l.id),
                    project_id: key.project_id.clone(),
                    scope: version_scope(key),
                    kind: String::new(),
                    status: String::new(),
                    time_ms: part.received_ms,
                    body: serde_json::to_string(&v)
                        .map_err(|e| Error::Invalid(format!("label: {e}")))?,
                });
                out.accepted += 1;
            }
            _ => out.rejected += 1,
        }
    }
    let ids: Vec<String> = label_docs.iter().map(|d| d.id.clone()).collect();
    // The first label for an id wins: a later duplicate is ignored rather than re-counted.
    docs.insert_many(Coll::Labels, &label_docs).await?;
    let mut windows: Vec<i64> = Vec::new();
    for chunk in ids.chunks(MAX_GET_MANY) {
        for d in docs.get_many(Coll::Predictions, chunk).await? {
            windows.push(d.time_ms);
        }
    }
    windows.sort_unstable();
    windows.dedup();
    out.windows = windows;
    Ok(out)
}

/// What indexing a window's prediction records did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Indexed {
    /// Ids new to the index (a re-evaluation finds them there already).
    pub new: u64,
    /// Records whose id is empty or longer than [`MAX_ID_LEN`]: no label can ever join them.
    pub unjoinable: u64,
}

/// Records which window each prediction id belongs to, so later labels find it.
pub async fn index_predictions(
    docs: &SharedEvalStore,
    key: &ModelKey,
    window_start_ms: i64,
    profile: &WindowProfile,
) -> Result<Indexed> {
    let scope = version_scope(key);
    let index: Vec<Doc> = profile
        .predictions
        .iter()
        .filter(|r| !r.id.is_empty() && r.id.len() <= MAX_ID_LEN)
        .map(|r| Doc {
            id: label_doc_id(key, &r.id),
            project_id: key.project_id.clone(),
            scope: scope.clone(),
            kind: String::new(),
            status: String::new(),
            time_ms: window_start_ms,
            body: "{}".into(),
        })
        .collect();
    let mut new = 0;
    for chunk in index.chunks(5_000) {
        new += docs.insert_many(Coll::Predictions, chunk).await?;
    }
    Ok(Indexed {
        new,
        unjoinable: (profile.predictions.len() - index.len()) as u64,
    })
}

/// Looks up the labels of `profile`'s prediction records and adds them to its outcomes;
/// returns how many were joined.
pub async fn join(
    docs: &SharedEvalStore,
    key: &ModelKey,
    profile: &mut WindowProfile,
) -> Result<u64> {
    let ids: Vec<String> = profile
        .predictions
        .iter()
        .filter(|r| !r.id.is_empty() && r.id.len() <= MAX_ID_LEN)
        .map(|r| label_doc_id(key, &r.id))
        .collect();
    let mut labels: HashMap<String, LabelValue> = HashMap::new();
    for chunk in ids.chunks(MAX_GET_MANY) {
        for d in docs.get_many(Coll::Labels, chunk).await? {
            let v: LabelValue = serde_json::from_str(&d.body)
                .map_err(|e| Error::Corrupt(format!("label {}: {e}", d.id)))?;
            labels.insert(d.id, v);
        }
    }
    if labels.is_empty() {
        return Ok(0);
    }
    let pairs: Vec<(pb::PredictionRecord, LabelValue)> = profile
        .predictions
        .iter()
        .filter_map(|r| Some((r.clone(), labels.get(&label_doc_id(key, &r.id))?.clone())))
        .collect();
    apply(profile, &pairs)
}

/// Class index of a value the way the SDK maps it: index number, class name, or bool for
/// binary tasks.
fn class_index(v: &pb::Value, classes: &[String]) -> Option<usize> {
    let n = classes.len();
    match v.kind.as_ref()? {
        Kind::Number(x) if x.fract() == 0.0 && *x >= 0.0 && (*x as usize) < n => Some(*x as usize),
        Kind::Text(s) => classes.iter().position(|c| c == s),
        Kind::Flag(b) if n == 2 => Some(usize::from(*b)),
        _ => None,
    }
}

fn label_as_value(l: &LabelValue) -> pb::Value {
    pb::Value {
        kind: Some(match l {
            LabelValue::Number(x) => Kind::Number(*x),
            LabelValue::Text(t) => Kind::Text(t.clone()),
            LabelValue::Flag(b) => Kind::Flag(*b),
        }),
    }
}

/// Adds joined (record, label) pairs to the profile's outcomes and its groups' outcomes.
pub fn apply(
    profile: &mut WindowProfile,
    pairs: &[(pb::PredictionRecord, LabelValue)],
) -> Result<u64> {
    let schema = profile.schema.clone().unwrap_or_default();
    let classification = matches!(
        schema.task(),
        TaskType::BinaryClassification | TaskType::MulticlassClassification
    );
    let mut total = Outcomes::default();
    let mut by_group: BTreeMap<String, Outcomes> = BTreeMap::new();
    let mut joined = 0;
    for (record, label) in pairs {
        let Some(one) = one_outcome(record, label, &schema.classes, classification) else {
            continue;
        };
        joined += 1;
        merge(&mut total, &one)?;
        for g in &record.groups {
            let g = if profile.groups.contains_key(g) {
                g.as_str()
            } else {
                neurocloak_core::monitor::OVERFLOW_GROUP
            };
            merge(by_group.entry(g.to_owned()).or_default(), &one)?;
        }
    }
    if joined == 0 {
        return Ok(0);
    }
    profile.outcomes = Some(merged_proto(profile.outcomes.as_ref(), &total)?);
    for (g, o) in by_group {
        if let Some(group) = profile.groups.get_mut(&g) {
            group.outcomes = Some(merged_proto(group.outcomes.as_ref(), &o)?);
        }
    }
    Ok(joined)
}

/// The outcome of one labelled prediction, with its predicted-class count removed (already
/// counted at prediction time). None when the pair does not fit the task.
fn one_outcome(
    record: &pb::PredictionRecord,
    label: &LabelValue,
    classes: &[String],
    classification: bool,
) -> Option<Outcomes> {
    let prediction = record.prediction.as_ref()?;
    if classification {
        let n = u32::try_from(classes.len()).ok().filter(|n| *n >= 2)?;
        let l = class_index(&label_as_value(label), classes)?;
        let p = class_index(prediction, classes);
        let mut c = ClassificationOutcomes::new(n);
        let scores = if record.scores.len() == classes.len()
            && record.scores.iter().all(|s| (0.0..=1.0).contains(s))
        {
            record.scores.as_slice()
        } else {
            &[]
        };
        c.record(p, Some(l), scores);
        c.predicted.iter_mut().for_each(|x| *x = 0);
        return Some(Outcomes {
            classification: Some(c),
            regression: None,
        });
    }
    let (Some(Kind::Number(y)), LabelValue::Number(l)) = (prediction.kind.as_ref(), label) else {
        return None;
    };
    if !y.is_finite() {
        return None;
    }
    let mut r = RegressionOutcomes::default();
    r.record(*y, *l);
    Some(Outcomes {
        classification: None,
        regression: Some(r),
    })
}

fn merge(into: &mut Outcomes, o: &Outcomes) -> Result<()> {
    into.merge(o)
        .map_err(|e| Error::Invalid(format!("joined labels do not fit the window: {e}")))
}

fn merged_proto(existing: Option<&pb::Outcomes>, add: &Outcomes) -> Result<pb::Outcomes> {
    let mut base = match existing {
        Some(p) => {
            Outcomes::from_proto(p).map_err(|e| Error::Corrupt(format!("stored outcomes: {e}")))?
        }
        None => Outcomes::default(),
    };
    merge(&mut base, add)?;
    Ok(base.to_proto())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn record(id: &str, predicted: f64, score: f64, groups: &[&str]) -> pb::PredictionRecord {
        pb::PredictionRecord {
            id: id.into(),
            timestamp_ms: 0,
            prediction: Some(pb::Value {
                kind: Some(Kind::Number(predicted)),
            }),
            scores: vec![1.0 - score, score],
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }

    fn binary_profile() -> WindowProfile {
        WindowProfile {
            schema: Some(pb::Schema {
                task: TaskType::BinaryClassification as i32,
                classes: vec!["0".into(), "1".into()],
                ..Default::default()
            }),
            groups: [(
                "sex=F".to_owned(),
                pb::GroupProfile {
                    count: 2,
                    outcomes: None,
                },
            )]
            .into(),
            ..Default::default()
        }
    }

    #[test]
    fn joined_labels_fill_confusion_without_recounting_predictions() {
        let mut p = binary_profile();
        let pairs = vec![
            (record("a", 1.0, 0.9, &["sex=F"]), LabelValue::Number(1.0)),
            (
                record("b", 1.0, 0.8, &["sex=F"]),
                LabelValue::Text("0".into()),
            ),
            (record("c", 0.0, 0.1, &["sex=M"]), LabelValue::Flag(false)),
            // Not a class of this model: not joined.
            (record("d", 0.0, 0.1, &[]), LabelValue::Text("cat".into())),
        ];
        assert_eq!(apply(&mut p, &pairs).unwrap(), 3);
        let c = p.outcomes.unwrap().classification.unwrap();
        assert_eq!(c.labelled, 3);
        // confusion[label * 2 + predicted]
        assert_eq!(c.confusion, vec![1, 1, 0, 1]);
        assert_eq!(c.predicted, vec![0, 0]);
        assert_eq!(c.scored, 3);
        let g = p.groups["sex=F"]
            .outcomes
            .clone()
            .unwrap()
            .classification
            .unwrap();
        assert_eq!(g.labelled, 2);
    }

    #[test]
    fn regression_labels_need_finite_numbers() {
        let mut p = WindowProfile {
            schema: Some(pb::Schema {
                task: TaskType::Regression as i32,
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut r = record("a", 2.0, 0.5, &[]);
        r.scores.clear();
        let pairs = vec![
            (r.clone(), LabelValue::Number(3.0)),
            (r, LabelValue::Text("x".into())),
        ];
        assert_eq!(apply(&mut p, &pairs).unwrap(), 1);
        let reg = p.outcomes.unwrap().regression.unwrap();
        assert_eq!(reg.labelled, 1);
        assert!((reg.sum_abs_error - 1.0).abs() < 1e-12);
    }

    #[test]
    fn unusable_label_values_are_refused() {
        for v in [
            None,
            Some(pb::Value { kind: None }),
            Some(pb::Value {
                kind: Some(Kind::Number(f64::NAN)),
            }),
            Some(pb::Value {
                kind: Some(Kind::Number(f64::INFINITY)),
            }),
            Some(pb::Value {
                kind: Some(Kind::Text("x".repeat(MAX_TEXT_LEN + 1))),
            }),
        ] {
            assert_eq!(LabelValue::from_proto(v.as_ref()), None);
        }
    }
}
