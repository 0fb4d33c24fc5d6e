//! Strict mode: checks a row or batch before anything is recorded, so a rejected row leaves no
//! trace except the `rejected` counter.

use super::Inner;
use super::acc::issue_of;
use super::layout::Layout;
use super::value::{self, Batch, Prediction, Value};
use std::sync::atomic::Ordering;

use crate::CoreError;
use crate::error::DataIssue;

impl Inner {
    fn reject(&self, feature: &str, issue: DataIssue) -> CoreError {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        CoreError::Data {
            feature: feature.to_owned(),
            issue,
        }
    }

    fn strict_outcome(&self, p: &Prediction<'_>) -> crate::Result<()> {
        let s = &self.settings;
        let bad = |what: &str| Err(self.reject(what, DataIssue::InvalidOutcome));
        if p.id.is_some_and(|id| !value::valid_id(id)) {
            return Err(self.reject("id", DataIssue::InvalidId));
        }
        if s.is_classification() {
            if s.class_index(p.prediction).is_err() {
                return bad("prediction");
            }
            if s.class_index(p.label).is_err() {
                return bad("label");
            }
            let mut buf = [0.0; 2];
            if s.scores(p.scores, &mut buf).is_err() {
                return bad("scores");
            }
        } else {
            for (what, v) in [("prediction", p.prediction), ("label", p.label)] {
                match v {
                    Value::Missing => {}
                    Value::Number(x) if x.is_finite() => {}
                    _ => return bad(what),
                }
            }
        }
        Ok(())
    }

    pub(super) fn strict_named(
        &self,
        layout: &Layout,
        features: &[(&str, Value<'_>)],
        p: &Prediction<'_>,
    ) -> crate::Result<()> {
        let mut seen = vec![false; layout.names.len()];
        for (pos, (name, v)) in features.iter().enumerate() {
            let Some(i) = layout.resolve(name, pos) else {
                return Err(self.reject(name, DataIssue::UnknownFeature));
            };
            seen[i] = true;
            if let Some(issue) = issue_of(layout.kinds[i], *v, self.settings.max_string) {
                return Err(self.reject(name, issue));
            }
        }
        if let Some(i) = seen.iter().position(|s| !s) {
            return Err(self.reject(&layout.names[i], DataIssue::Missing));
        }
        self.strict_outcome(p)
    }

    pub(super) fn strict_indexed(
        &self,
        layout: &Layout,
        values: &[Value<'_>],
        p: &Prediction<'_>,
    ) -> crate::Result<()> {
        if values.len() > layout.names.len() {
            return Err(self.reject("<extra>", DataIssue::UnknownFeature));
        }
        for (i, name) in layout.names.iter().enumerate() {
            let v = values.get(i).copied().unwrap_or(Value::Missing);
            if let Some(issue) = issue_of(layout.kinds[i], v, self.settings.max_string) {
                return Err(self.reject(name, issue));
            }
        }
        self.strict_outcome(p)
    }

    pub(super) fn strict_batch(
        &self,
        layout: &Layout,
        batch: &Batch<'_>,
        n: usize,
    ) -> crate::Result<()> {
        let mut seen = vec![false; layout.names.len()];
        for (pos, col) in batch.features.iter().enumerate() {
            let Some(i) = layout.resolve(col.name, pos) else {
                return Err(self.reject(col.name, DataIssue::UnknownFeature));
            };
            seen[i] = true;
            for r in 0..n {
                let issue = match col.value(r) {
                    Some(v) => issue_of(layout.kinds[i], v, self.settings.max_string),
                    None => Some(DataIssue::TypeMismatch),
                };
                if let Some(issue) = issue {
                    return Err(self.reject(col.name, issue));
                }
            }
        }
        if let Some(i) = seen.iter().position(|s| !s) {
            return Err(self.reject(&layout.names[i], DataIssue::Missing));
        }
        for r in 0..n {
            let p = Prediction {
                id: match batch.ids.map(|c| c.cell(r)) {
                    Some(Some(Value::Text(s))) => Some(s),
                    _ => None,
                },
                prediction: value::cell_of(batch.predictions, r),
                label: value::cell_of(batch.labels, r),
                scores: batch.scores.map_or(&[][..], |s| {
                    &s[r * batch.scores_per_row..(r + 1) * batch.scores_per_row]
                }),
                ..Prediction::default()
            };
            self.strict_outcome(&p)?;
        }
        Ok(())
    }
}
