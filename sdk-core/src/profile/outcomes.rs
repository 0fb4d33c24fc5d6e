//! Outcomes of labelled predictions: confusion counts and score histograms for classification,
//! error sums for regression.

use neurocloak_proto as pb;

use super::column::merge_opt;
use crate::error::invalid;
use crate::sketch::ScoreHistogram;

/// Most classes a classification profile accepts.
pub const MAX_CLASSES: u32 = 1024;
const EPS: f64 = 1e-15;

/// Classification outcomes; see `profile.proto` for the exact meaning of each field.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassificationOutcomes {
    n: u32,
    /// `confusion[label * n + predicted]`.
    pub confusion: Vec<u64>,
    /// Per class: scores of rows labelled with the class (empty until a scored row arrives).
    pub positive_scores: Vec<ScoreHistogram>,
    /// Per class: scores of rows labelled otherwise.
    pub negative_scores: Vec<ScoreHistogram>,
    /// Σ −ln(p_label), p clipped to [1e-15, 1 − 1e-15].
    pub log_loss_sum: f64,
    /// Labelled rows that had valid scores.
    pub scored: u64,
    /// Rows with a label.
    pub labelled: u64,
    /// Predicted-class counts over every row.
    pub predicted: Vec<u64>,
}

impl ClassificationOutcomes {
    /// Empty outcomes for `n` classes (at least 2, at most [`MAX_CLASSES`]).
    pub fn new(n: u32) -> Self {
        let n = n.clamp(2, MAX_CLASSES);
        Self {
            n,
            confusion: vec![0; (n * n) as usize],
            positive_scores: Vec::new(),
            negative_scores: Vec::new(),
            log_loss_sum: 0.0,
            scored: 0,
            labelled: 0,
            predicted: vec![0; n as usize],
        }
    }

    /// Number of classes.
    pub fn n_classes(&self) -> u32 {
        self.n
    }

    /// Records one row. `scores` must already be validated: one probability per class, each in
    /// [0, 1].
    pub fn record(&mut self, predicted: Option<usize>, label: Option<usize>, scores: &[f64]) {
        let n = self.n as usize;
        if let Some(p) = predicted.filter(|p| *p < n) {
            self.predicted[p] += 1;
        }
        let Some(l) = label.filter(|l| *l < n) else {
            return;
        };
        self.labelled += 1;
        if let Some(p) = predicted.filter(|p| *p < n) {
            self.confusion[l * n + p] += 1;
        }
        if scores.len() != n {
            return;
        }
        if self.positive_scores.is_empty() {
            self.positive_scores = vec![ScoreHistogram::default(); n];
            self.negative_scores = vec![ScoreHistogram::default(); n];
        }
        for (c, &s) in scores.iter().enumerate() {
            let h = if c == l {
                &mut self.positive_scores[c]
            } else {
                &mut self.negative_scores[c]
            };
            h.update(s);
        }
        self.log_loss_sum -= scores[l].clamp(EPS, 1.0 - EPS).ln();
        self.scored += 1;
    }

    /// Adds outcomes over the same classes.
    pub fn merge(&mut self, o: &Self) -> crate::Result<()> {
        if o.n != self.n {
            return Err(crate::CoreError::Incompatible(format!(
                "{} vs {} classes",
                self.n, o.n
            )));
        }
        add(&mut self.confusion, &o.confusion);
        add(&mut self.predicted, &o.predicted);
        if self.positive_scores.is_empty() {
            self.positive_scores = o.positive_scores.clone();
            self.negative_scores = o.negative_scores.clone();
        } else if !o.positive_scores.is_empty() {
            for (a, b) in self.positive_scores.iter_mut().zip(&o.positive_scores) {
                a.merge(b);
            }
            for (a, b) in self.negative_scores.iter_mut().zip(&o.negative_scores) {
                a.merge(b);
            }
        }
        self.log_loss_sum += o.log_loss_sum;
        self.scored = self.scored.saturating_add(o.scored);
        self.labelled = self.labelled.saturating_add(o.labelled);
        Ok(())
    }

    fn to_proto(&self) -> pb::ClassificationOutcomes {
        pb::ClassificationOutcomes {
            confusion: self.confusion.clone(),
            n_classes: self.n,
            positive_scores: self.positive_scores.iter().map(|h| h.to_proto()).collect(),
            negative_scores: self.negative_scores.iter().map(|h| h.to_proto()).collect(),
            log_loss_sum: self.log_loss_sum,
            scored: self.scored,
            labelled: self.labelled,
            predicted: self.predicted.clone(),
        }
    }

    fn from_proto(p: &pb::ClassificationOutcomes) -> crate::Result<Self> {
        let n = p.n_classes;
        if !(2..=MAX_CLASSES).contains(&n) {
            return Err(invalid("ClassificationOutcomes", format!("{n} classes")));
        }
        let nn = n as usize;
        if p.confusion.len() != nn * nn || p.predicted.len() != nn {
            return Err(invalid("ClassificationOutcomes", "wrong matrix sizes"));
        }
        let hist_len_ok = |v: &[pb::ScoreHistogram]| v.is_empty() || v.len() == nn;
        if !hist_len_ok(&p.positive_scores) || p.positive_scores.len() != p.negative_scores.len() {
            return Err(invalid("ClassificationOutcomes", "wrong histogram count"));
        }
        if !(p.log_loss_sum.is_finite() && p.log_loss_sum >= 0.0) || p.scored > p.labelled {
            return Err(invalid("ClassificationOutcomes", "bad log loss or counts"));
        }
        let hists = |v: &[pb::ScoreHistogram]| {
            v.iter()
                .map(ScoreHistogram::from_proto)
                .collect::<crate::Result<Vec<_>>>()
        };
        Ok(Self {
            n,
            confusion: p.confusion.clone(),
            positive_scores: hists(&p.positive_scores)?,
            negative_scores: hists(&p.negative_scores)?,
            log_loss_sum: p.log_loss_sum,
            scored: p.scored,
            labelled: p.labelled,
            predicted: p.predicted.clone(),
        })
    }
}

fn add(a: &mut [u64], b: &[u64]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x = x.saturating_add(*y);
    }
}

/// Regression outcomes: sums from which MAE, RMSE, MAPE and R² follow.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RegressionOutcomes {
    /// Rows with a finite label and prediction.
    pub labelled: u64,
    /// Σ |pred − label|.
    pub sum_abs_error: f64,
    /// Σ (pred − label)².
    pub sum_sq_error: f64,
    /// Σ |pred − label| / |label| over rows with a non-zero label.
    pub sum_abs_pct_error: f64,
    /// Rows in `sum_abs_pct_error`.
    pub pct_count: u64,
    /// Σ label.
    pub sum_label: f64,
    /// Σ label².
    pub sum_label_sq: f64,
}

impl RegressionOutcomes {
    /// Records one row; both values must be finite (the caller counts the rest).
    pub fn record(&mut self, predicted: f64, label: f64) {
        let e = predicted - label;
        self.labelled += 1;
        self.sum_abs_error += e.abs();
        self.sum_sq_error += e * e;
        if label != 0.0 {
            self.sum_abs_pct_error += (e / label).abs();
            self.pct_count += 1;
        }
        self.sum_label += label;
        self.sum_label_sq += label * label;
    }

    /// Adds another part's sums.
    pub fn merge(&mut self, o: &Self) {
        self.labelled = self.labelled.saturating_add(o.labelled);
        self.sum_abs_error += o.sum_abs_error;
        self.sum_sq_error += o.sum_sq_error;
        self.sum_abs_pct_error += o.sum_abs_pct_error;
        self.pct_count = self.pct_count.saturating_add(o.pct_count);
        self.sum_label += o.sum_label;
        self.sum_label_sq += o.sum_label_sq;
    }

    fn to_proto(&self) -> pb::RegressionOutcomes {
        pb::RegressionOutcomes {
            labelled: self.labelled,
            sum_abs_error: self.sum_abs_error,
            sum_sq_error: self.sum_sq_error,
            sum_abs_pct_error: self.sum_abs_pct_error,
            pct_count: self.pct_count,
            sum_label: self.sum_label,
            sum_label_sq: self.sum_label_sq,
        }
    }

    fn from_proto(p: &pb::RegressionOutcomes) -> crate::Result<Self> {
        let sums = [
            p.sum_abs_error,
            p.sum_sq_error,
            p.sum_abs_pct_error,
            p.sum_label,
            p.sum_label_sq,
        ];
        // Sums of finite values may still overflow to ±inf; NaN can only come from corruption.
        if sums.iter().any(|s| s.is_nan()) || p.pct_count > p.labelled {
            return Err(invalid("RegressionOutcomes", "NaN sum or bad counts"));
        }
        Ok(Self {
            labelled: p.labelled,
            sum_abs_error: p.sum_abs_error,
            sum_sq_error: p.sum_sq_error,
            sum_abs_pct_error: p.sum_abs_pct_error,
            pct_count: p.pct_count,
            sum_label: p.sum_label,
            sum_label_sq: p.sum_label_sq,
        })
    }
}

/// Outcomes of one window or group: classification, regression, or neither yet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcomes {
    /// Classification outcomes.
    pub classification: Option<ClassificationOutcomes>,
    /// Regression outcomes.
    pub regression: Option<RegressionOutcomes>,
}

impl Outcomes {
    /// Adds another part's outcomes.
    pub fn merge(&mut self, o: &Self) -> crate::Result<()> {
        merge_opt(&mut self.classification, &o.classification, |a, b| {
            a.merge(b)
        })?;
        merge_opt(&mut self.regression, &o.regression, |a, b| {
            a.merge(b);
            Ok(())
        })
    }

    /// Encodes to the wire type.
    pub fn to_proto(&self) -> pb::Outcomes {
        pb::Outcomes {
            classification: self.classification.as_ref().map(|c| c.to_proto()),
            regression: self.regression.as_ref().map(|r| r.to_proto()),
        }
    }

    /// Decodes and validates.
    pub fn from_proto(p: &pb::Outcomes) -> crate::Result<Self> {
        Ok(Self {
            classification: p
                .classification
                .as_ref()
                .map(ClassificationOutcomes::from_proto)
                .transpose()?,
            regression: p
                .regression
                .as_ref()
                .map(RegressionOutcomes::from_proto)
                .transpose()?,
        })
    }
}
