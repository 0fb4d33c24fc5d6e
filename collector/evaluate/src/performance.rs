//! Model performance from outcome counts: classification (confusion matrix, binned score
//! histograms, log-loss sum) and regression (error sums).

use neurocloak_proto::v1::{ClassificationOutcomes, Outcomes, RegressionOutcomes, ScoreHistogram};
use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};

/// Larger class counts would make the n² confusion matrix absurd.
const MAX_CLASSES: u32 = 4096;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PerformanceConfig {
    /// Fewer labelled rows than this: performance is not judged.
    pub min_labelled: u64,
    /// Calibration bins for the expected calibration error (must divide the score bins).
    pub calibration_bins: usize,
}

impl Default for PerformanceConfig {
    fn default() -> Self {
        Self {
            min_labelled: 30,
            calibration_bins: 10,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    pub class: usize,
    pub support: u64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassificationMetrics {
    pub labelled: u64,
    pub accuracy: f64,
    /// Positive class (index 1) metrics; `None` for multiclass.
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub f1: Option<f64>,
    pub macro_precision: f64,
    pub macro_recall: f64,
    pub macro_f1: f64,
    /// Binary: AUC of class 1; multiclass: macro one-vs-rest.
    pub roc_auc: Option<f64>,
    /// Largest possible |roc_auc − exact AUC| from pairs sharing a score bin.
    pub roc_auc_error_bound: Option<f64>,
    pub log_loss: Option<f64>,
    pub expected_calibration_error: Option<f64>,
    /// Bound from replacing each score by its fine bin's midpoint.
    pub calibration_error_bound: Option<f64>,
    pub per_class: Vec<ClassMetrics>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegressionMetrics {
    pub labelled: u64,
    pub mae: f64,
    pub rmse: f64,
    pub mape: Option<f64>,
    pub r2: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "task")]
pub enum PerformanceMetrics {
    Classification(ClassificationMetrics),
    Regression(RegressionMetrics),
}

impl PerformanceMetrics {
    /// The metric the trust score follows: ROC AUC when scores exist, else accuracy; R² for
    /// regression. Higher is better for all three.
    pub fn primary(&self) -> Option<(&'static str, f64)> {
        match self {
            Self::Classification(c) => Some(match c.roc_auc {
                Some(auc) => ("roc_auc", auc),
                None => ("accuracy", c.accuracy),
            }),
            Self::Regression(r) => r.r2.map(|r2| ("r2", r2)),
        }
    }
}

/// Metrics of whichever outcome kind is present with enough labelled rows.
pub fn evaluate_outcomes(
    outcomes: &Outcomes,
    cfg: &PerformanceConfig,
) -> Result<PerformanceMetrics> {
    if let Some(c) = outcomes
        .classification
        .as_ref()
        .filter(|c| c.labelled > 0 || !c.confusion.is_empty())
    {
        return classification(c, cfg).map(PerformanceMetrics::Classification);
    }
    if let Some(r) = &outcomes.regression {
        return regression(r, cfg).map(PerformanceMetrics::Regression);
    }
    Err(EvalError::insufficient(
        "labelled rows",
        0,
        cfg.min_labelled,
    ))
}

/// Validated confusion matrix with `n` classes.
struct Confusion<'a> {
    n: usize,
    cells: &'a [u64],
}

impl Confusion<'_> {
    fn at(&self, label: usize, predicted: usize) -> f64 {
        self.cells[label * self.n + predicted] as f64
    }
    fn row(&self, c: usize) -> f64 {
        (0..self.n).map(|p| self.at(c, p)).sum()
    }
    fn col(&self, c: usize) -> f64 {
        (0..self.n).map(|l| self.at(l, c)).sum()
    }
}

fn confusion<'a>(c: &'a ClassificationOutcomes, what: &str) -> Result<Confusion<'a>> {
    if c.n_classes < 2 || c.n_classes > MAX_CLASSES {
        return Err(EvalError::invalid(
            what,
            format!("n_classes = {}", c.n_classes),
        ));
    }
    let n = c.n_classes as usize;
    if c.confusion.len() != n * n {
        return Err(EvalError::invalid(
            what,
            format!("confusion has {} cells for {n} classes", c.confusion.len()),
        ));
    }
    Ok(Confusion {
        n,
        cells: &c.confusion,
    })
}

/// Precision/recall/F1 with sklearn's `zero_division=0` convention.
fn prf(tp: f64, predicted: f64, actual: f64) -> (f64, f64, f64) {
    let p = if predicted > 0.0 { tp / predicted } else { 0.0 };
    let r = if actual > 0.0 { tp / actual } else { 0.0 };
    let f = if p + r > 0.0 {
        2.0 * p * r / (p + r)
    } else {
        0.0
    };
    (p, r, f)
}

pub fn classification(
    c: &ClassificationOutcomes,
    cfg: &PerformanceConfig,
) -> Result<ClassificationMetrics> {
    let m = confusion(c, "classification outcomes")?;
    let total: f64 = m.cells.iter().map(|&v| v as f64).sum();
    if total < cfg.min_labelled as f64 || total == 0.0 {
        return Err(EvalError::insufficient(
            "labelled rows",
            total as u64,
            cfg.min_labelled.max(1),
        ));
    }
    let per_class: Vec<ClassMetrics> = (0..m.n)
        .map(|k| {
            let (precision, recall, f1) = prf(m.at(k, k), m.col(k), m.row(k));
            ClassMetrics {
                class: k,
                support: m.row(k) as u64,
                precision,
                recall,
                f1,
            }
        })
        .collect();
    // Like sklearn, macro averages run over classes seen as a label or a prediction.
    let seen: Vec<&ClassMetrics> = per_class
        .iter()
        .filter(|k| m.row(k.class) + m.col(k.class) > 0.0)
        .collect();
    let mean =
        |f: fn(&ClassMetrics) -> f64| seen.iter().map(|k| f(k)).sum::<f64>() / seen.len() as f64;
    let accuracy = (0..m.n).map(|k| m.at(k, k)).sum::<f64>() / total;
    let binary = m.n == 2;
    let auc = roc_auc(c, m.n)?;
    let ece = calibration(c, m.n, cfg.calibration_bins)?;
    let log_loss = (c.scored > 0 && c.log_loss_sum.is_finite() && c.log_loss_sum >= 0.0)
        .then(|| c.log_loss_sum / c.scored as f64);
    Ok(ClassificationMetrics {
        labelled: total as u64,
        accuracy,
        precision: binary.then(|| per_class[1].precision),
        recall: binary.then(|| per_class[1].recall),
        f1: binary.then(|| per_class[1].f1),
        macro_precision: mean(|k| k.precision),
        macro_recall: mean(|k| k.recall),
        macro_f1: mean(|k| k.f1),
        roc_auc: auc.map(|a| a.0),
        roc_auc_error_bound: auc.map(|a| a.1),
        log_loss,
        expected_calibration_error: ece.map(|e| e.0),
        calibration_error_bound: ece.map(|e| e.1),
        per_class,
    })
}

/// Positive and negative score histograms of every class.
type Histograms<'a> = (Vec<&'a [u64]>, Vec<&'a [u64]>);

/// Histograms of one class, checked to have a common, non-zero bin count.
fn class_histograms<'a>(c: &'a ClassificationOutcomes, n: usize) -> Result<Option<Histograms<'a>>> {
    if c.positive_scores.is_empty() && c.negative_scores.is_empty() {
        return Ok(None);
    }
    let what = "score histograms";
    if c.positive_scores.len() != n || c.negative_scores.len() != n {
        return Err(EvalError::invalid(
            what,
            format!(
                "{} positive / {} negative histograms for {n} classes",
                c.positive_scores.len(),
                c.negative_scores.len()
            ),
        ));
    }
    let counts =
        |h: &'a [ScoreHistogram]| h.iter().map(|h| h.counts.as_slice()).collect::<Vec<_>>();
    let (pos, neg) = (counts(&c.positive_scores), counts(&c.negative_scores));
    let bins = pos[0].len();
    if bins == 0 || pos.iter().chain(&neg).any(|h| h.len() != bins) {
        return Err(EvalError::invalid(
            what,
            "histograms differ in bin count or are empty",
        ));
    }
    Ok(Some((pos, neg)))
}

/// AUC from binned scores: pairs in different bins are ordered exactly; pairs sharing a bin
/// count as ties (½), so the error is at most ½ × (share of pairs sharing a bin).
fn binned_auc(pos: &[u64], neg: &[u64]) -> Option<(f64, f64)> {
    let (p_total, n_total) = (
        pos.iter().map(|&v| v as f64).sum::<f64>(),
        neg.iter().map(|&v| v as f64).sum::<f64>(),
    );
    if p_total == 0.0 || n_total == 0.0 {
        return None;
    }
    let mut neg_below = 0.0;
    let (mut wins, mut ties) = (0.0, 0.0);
    for (&p, &q) in pos.iter().zip(neg) {
        let (p, q) = (p as f64, q as f64);
        wins += p * neg_below;
        ties += p * q;
        neg_below += q;
    }
    let pairs = p_total * n_total;
    Some(((wins + 0.5 * ties) / pairs, 0.5 * ties / pairs))
}

fn roc_auc(c: &ClassificationOutcomes, n: usize) -> Result<Option<(f64, f64)>> {
    let Some((pos, neg)) = class_histograms(c, n)? else {
        return Ok(None);
    };
    if n == 2 {
        return Ok(binned_auc(pos[1], neg[1]));
    }
    let per: Vec<(f64, f64)> = (0..n).filter_map(|k| binned_auc(pos[k], neg[k])).collect();
    if per.len() < n {
        return Ok(None); // sklearn refuses OvR AUC when a class has no positives
    }
    let k = per.len() as f64;
    Ok(Some((
        per.iter().map(|a| a.0).sum::<f64>() / k,
        per.iter().map(|a| a.1).sum::<f64>() / k,
    )))
}

/// Expected calibration error over `bins` equal-width confidence bins of the class-1 score
/// (binary) or averaged over classes (class-wise ECE, multiclass). Each bin's mean confidence is
/// estimated from the fine histogram bins' midpoints: error ≤ half a fine bin.
fn calibration(c: &ClassificationOutcomes, n: usize, bins: usize) -> Result<Option<(f64, f64)>> {
    let Some((pos, neg)) = class_histograms(c, n)? else {
        return Ok(None);
    };
    let fine = pos[0].len();
    if bins == 0 || fine % bins != 0 {
        return Err(EvalError::InvalidConfig(format!(
            "calibration_bins = {bins} must divide the {fine} score bins"
        )));
    }
    let per = fine / bins;
    let ece_of = |pos: &[u64], neg: &[u64]| -> Option<f64> {
        let total: f64 = pos.iter().chain(neg).map(|&v| v as f64).sum();
        if total == 0.0 {
            return None;
        }
        let mut ece = 0.0;
        for b in 0..bins {
            let (mut count, mut positives, mut conf) = (0.0, 0.0, 0.0);
            for i in b * per..(b + 1) * per {
                let here = pos[i] as f64 + neg[i] as f64;
                count += here;
                positives += pos[i] as f64;
                conf += here * (i as f64 + 0.5) / fine as f64;
            }
            if count > 0.0 {
                ece += (positives - conf).abs() / total;
            }
        }
        Some(ece)
    };
    let bound = 0.5 / fine as f64;
    if n == 2 {
        return Ok(ece_of(pos[1], neg[1]).map(|e| (e, bound)));
    }
    let per_class: Vec<f64> = (0..n).filter_map(|k| ece_of(pos[k], neg[k])).collect();
    if per_class.is_empty() {
        return Ok(None);
    }
    Ok(Some((
        per_class.iter().sum::<f64>() / per_class.len() as f64,
        bound,
    )))
}

pub fn regression(r: &RegressionOutcomes, cfg: &PerformanceConfig) -> Result<RegressionMetrics> {
    if r.labelled < cfg.min_labelled.max(1) {
        return Err(EvalError::insufficient(
            "labelled rows",
            r.labelled,
            cfg.min_labelled.max(1),
        ));
    }
    let sums = [
        r.sum_abs_error,
        r.sum_sq_error,
        r.sum_abs_pct_error,
        r.sum_label,
        r.sum_label_sq,
    ];
    if sums.iter().any(|v| !v.is_finite()) || r.sum_abs_error < 0.0 || r.sum_sq_error < 0.0 {
        return Err(EvalError::invalid(
            "regression outcomes",
            "non-finite or negative error sums",
        ));
    }
    if r.pct_count > r.labelled {
        return Err(EvalError::invalid(
            "regression outcomes",
            "pct_count exceeds labelled",
        ));
    }
    let n = r.labelled as f64;
    let sst = r.sum_label_sq - r.sum_label * r.sum_label / n;
    Ok(RegressionMetrics {
        labelled: r.labelled,
        mae: r.sum_abs_error / n,
        rmse: (r.sum_sq_error / n).sqrt(),
        mape: (r.pct_count > 0).then(|| r.sum_abs_pct_error / r.pct_count as f64),
        // A constant label has no variance to explain: R² is undefined, not 0 or 1.
        r2: (sst > 1e-12 * r.sum_label_sq.abs().max(1.0)).then(|| 1.0 - r.sum_sq_error / sst),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn auc_bound_covers_all_tied_pairs() {
        let mut pos = vec![0; 100];
        let mut neg = vec![0; 100];
        pos[90] = 10;
        neg[10] = 10;
        assert_eq!(binned_auc(&pos, &neg), Some((1.0, 0.0)));
        neg[90] = 10;
        let (auc, err) = binned_auc(&pos, &neg).unwrap();
        assert!((auc - 0.75).abs() < 1e-12 && (err - 0.25).abs() < 1e-12);
    }

    #[test]
    fn malformed_confusion_is_rejected() {
        let c = ClassificationOutcomes {
            n_classes: 2,
            confusion: vec![1, 2, 3],
            ..Default::default()
        };
        assert!(classification(&c, &PerformanceConfig::default()).is_err());
        let c = ClassificationOutcomes {
            n_classes: u32::MAX,
            ..Default::default()
        };
        assert!(classification(&c, &PerformanceConfig::default()).is_err());
    }
}
