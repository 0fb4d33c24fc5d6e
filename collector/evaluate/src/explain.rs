//! Explainability from sampled rows: a smartcore surrogate of the model (features → the
//! model's own output), its fidelity, permutation importance per feature, attribution drift
//! against the reference's importances, and exact linear attributions.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use neurocloak_proto::v1::{SampledRow, TaskType, Value, WindowProfile, value};
use serde::{Deserialize, Serialize};
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::linear::linear_regression::{LinearRegression, LinearRegressionParameters};
use smartcore::tree::decision_tree_regressor::{
    DecisionTreeRegressor, DecisionTreeRegressorParameters,
};

use crate::error::{EvalError, Result};

/// One-hot columns kept per categorical feature (most frequent values, after the baseline
/// value that dummy coding drops).
const MAX_LEVELS: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SurrogateKind {
    /// Ordinary least squares; attributions are exact w·(x − E[x]).
    Linear,
    /// CART regression tree of bounded depth; captures interactions, no closed-form attributions.
    DecisionTree,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExplainConfig {
    pub surrogate: SurrogateKind,
    pub max_depth: u16,
    /// Fewer sampled rows than this: no surrogate.
    pub min_rows: usize,
    /// Below this fidelity (R² to the model's outputs) importances are not trusted.
    pub min_fidelity: f64,
    /// Seed of the permutation shuffles, so repeated evaluations agree.
    pub seed: u64,
}

impl Default for ExplainConfig {
    fn default() -> Self {
        Self {
            surrogate: SurrogateKind::Linear,
            max_depth: 6,
            min_rows: 50,
            min_fidelity: 0.5,
            seed: 0x5EED,
        }
    }
}

/// Column layout: which encoded columns belong to which original feature.
#[derive(Debug, Clone)]
enum Encoding {
    Numeric {
        fill: f64,
    },
    /// One column per listed level; the dropped baseline level and unlisted ones are all zeros.
    OneHot {
        levels: Vec<String>,
    },
}

#[derive(Debug, Clone)]
struct Encoder {
    features: Vec<(String, Encoding)>,
}

fn as_number(v: &Value) -> Option<f64> {
    match &v.kind {
        Some(value::Kind::Number(x)) if x.is_finite() => Some(*x),
        Some(value::Kind::Flag(b)) => Some(f64::from(u8::from(*b))),
        _ => None,
    }
}

impl Encoder {
    fn fit(rows: &[&SampledRow]) -> Self {
        let mut numbers: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
        let mut texts: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
        for row in rows {
            for (name, v) in &row.features {
                match &v.kind {
                    Some(value::Kind::Text(t)) => {
                        *texts.entry(name).or_default().entry(t).or_default() += 1
                    }
                    _ => {
                        if let Some(x) = as_number(v) {
                            let e = numbers.entry(name).or_default();
                            e.0 += x;
                            e.1 += 1;
                        }
                    }
                }
            }
        }
        let mut features = Vec::new();
        for (name, (sum, n)) in &numbers {
            if !texts.contains_key(name) {
                features.push((
                    (*name).to_owned(),
                    Encoding::Numeric {
                        fill: sum / *n as f64,
                    },
                ));
            }
        }
        for (name, counts) in texts {
            let mut levels: Vec<(&str, usize)> = counts.into_iter().collect();
            levels.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            let levels = levels
                .iter()
                .skip(1)
                .take(MAX_LEVELS)
                .map(|l| l.0.to_owned())
                .collect();
            features.push((name.to_owned(), Encoding::OneHot { levels }));
        }
        features.sort_by(|a, b| a.0.cmp(&b.0));
        Self { features }
    }

    fn width(&self) -> usize {
        self.features
            .iter()
            .map(|(_, e)| match e {
                Encoding::Numeric { .. } => 1,
                Encoding::OneHot { levels } => levels.len(),
            })
            .sum()
    }

    /// Encoded column range of each feature.
    fn spans(&self) -> Vec<(String, std::ops::Range<usize>)> {
        let mut start = 0;
        self.features
            .iter()
            .map(|(name, e)| {
                let w = match e {
                    Encoding::Numeric { .. } => 1,
                    Encoding::OneHot { levels } => levels.len(),
                };
                start += w;
                (name.clone(), start - w..start)
            })
            .collect()
    }

    fn encode(&self, row: &SampledRow, out: &mut Vec<f64>) {
        for (name, e) in &self.features {
            let v = row.features.get(name);
            match e {
                Encoding::Numeric { fill } => out.push(v.and_then(as_number).unwrap_or(*fill)),
                Encoding::OneHot { levels } => {
                    let text = match v.and_then(|v| v.kind.as_ref()) {
                        Some(value::Kind::Text(t)) => Some(t.as_str()),
                        _ => None,
                    };
                    out.extend(
                        levels
                            .iter()
                            .map(|l| f64::from(u8::from(Some(l.as_str()) == text))),
                    );
                }
            }
        }
    }
}

/// The number a surrogate imitates for one row: the regression output, the positive-class
/// score (binary), or the score of `focus_class` (multiclass, one-vs-rest).
fn target(row: &SampledRow, task: TaskType, classes: &[String], focus_class: usize) -> Option<f64> {
    let score = |k: usize| row.scores.get(k).copied().filter(|s| s.is_finite());
    let pred = row.prediction.as_ref();
    let t = match task {
        TaskType::Regression | TaskType::Unspecified => pred.and_then(as_number),
        TaskType::BinaryClassification => score(1)
            .or_else(|| (row.scores.len() == 1).then(|| score(0)).flatten())
            .or_else(|| predicted_class(pred?, classes).map(|c| f64::from(u8::from(c == 1)))),
        TaskType::MulticlassClassification => score(focus_class).or_else(|| {
            predicted_class(pred?, classes).map(|c| f64::from(u8::from(c == focus_class)))
        }),
    };
    t.filter(|v| v.is_finite())
}

fn predicted_class(v: &Value, classes: &[String]) -> Option<usize> {
    match &v.kind {
        Some(value::Kind::Text(t)) => classes.iter().position(|c| c == t),
        Some(value::Kind::Number(x)) if *x >= 0.0 && x.fract() == 0.0 => Some(*x as usize),
        Some(value::Kind::Flag(b)) => Some(usize::from(*b)),
        _ => None,
    }
}

enum Model {
    Linear { weights: Vec<f64>, intercept: f64 },
    Tree(DecisionTreeRegressor<f64, f64, DenseMatrix<f64>, Vec<f64>>),
}

/// A fitted surrogate with the data it was fitted on.
pub struct Surrogate {
    encoder: Encoder,
    model: Model,
    x: Vec<Vec<f64>>,
    y: Vec<f64>,
    means: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExplainReport {
    pub surrogate: SurrogateKind,
    pub rows: usize,
    /// R² of the surrogate's outputs against the model's outputs, on the sampled rows.
    pub fidelity: f64,
    /// Fidelity below this makes the importances untrustworthy (from the config).
    pub min_fidelity: f64,
    /// Permutation importance (drop in R² when the feature is shuffled), per feature.
    pub importance: BTreeMap<String, f64>,
    /// Importances as shares summing to 1 (what attribution drift compares).
    pub importance_share: BTreeMap<String, f64>,
    /// Total-variation distance ½Σ|share − reference share| in [0, 1].
    pub attribution_drift: Option<f64>,
}

fn matrix(x: &[Vec<f64>], width: usize) -> Result<DenseMatrix<f64>> {
    let flat: Vec<f64> = x.iter().flatten().copied().collect();
    DenseMatrix::new(x.len(), width, flat, false).map_err(|e| EvalError::Surrogate(e.to_string()))
}

/// smartcore reports most failures as errors but indexes freely inside its solvers; a hostile
/// sample must not take the collector down, so a panic there becomes an error.
fn guarded<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(EvalError::Surrogate("solver panicked".into())))
}

impl Surrogate {
    pub fn fit(
        rows: &[&SampledRow],
        task: TaskType,
        classes: &[String],
        focus_class: usize,
        cfg: &ExplainConfig,
    ) -> Result<Self> {
        let usable: Vec<(&SampledRow, f64)> = rows
            .iter()
            .filter_map(|r| target(r, task, classes, focus_class).map(|t| (*r, t)))
            .collect();
        let encoder = Encoder::fit(&usable.iter().map(|u| u.0).collect::<Vec<_>>());
        let width = encoder.width();
        let need = cfg.min_rows.max(width + 2);
        if usable.len() < need || width == 0 {
            return Err(EvalError::insufficient(
                "rows for the surrogate",
                usable.len() as u64,
                need as u64,
            ));
        }
        let mut x = Vec::with_capacity(usable.len());
        for (row, _) in &usable {
            let mut v = Vec::with_capacity(width);
            encoder.encode(row, &mut v);
            x.push(v);
        }
        let y: Vec<f64> = usable.iter().map(|u| u.1).collect();
        let means = (0..width)
            .map(|j| x.iter().map(|r| r[j]).sum::<f64>() / x.len() as f64)
            .collect();
        let m = matrix(&x, width)?;
        let model = guarded(|| match cfg.surrogate {
            SurrogateKind::Linear => {
                use smartcore::linalg::basic::arrays::Array;
                let fit = LinearRegression::fit(&m, &y, LinearRegressionParameters::default())
                    .map_err(|e| EvalError::Surrogate(e.to_string()))?;
                let c = fit.coefficients();
                let weights: Vec<f64> = (0..width).map(|j| *c.get((j, 0))).collect();
                let intercept = *fit.intercept();
                if weights.iter().chain([&intercept]).any(|w| !w.is_finite()) {
                    return Err(EvalError::Surrogate(
                        "least squares diverged (collinear features?)".into(),
                    ));
                }
                Ok(Model::Linear { weights, intercept })
            }
            SurrogateKind::DecisionTree => {
                let params = DecisionTreeRegressorParameters {
                    max_depth: Some(cfg.max_depth),
                    min_samples_leaf: 5,
                    min_samples_split: 10,
                    seed: Some(cfg.seed),
                };
                DecisionTreeRegressor::fit(&m, &y, params)
                    .map(Model::Tree)
                    .map_err(|e| EvalError::Surrogate(e.to_string()))
            }
        })?;
        Ok(Self {
            encoder,
            model,
            x,
            y,
            means,
        })
    }

    pub fn predict(&self, x: &[Vec<f64>]) -> Result<Vec<f64>> {
        match &self.model {
            Model::Linear { weights, intercept } => Ok(x
                .iter()
                .map(|r| intercept + r.iter().zip(weights).map(|(a, w)| a * w).sum::<f64>())
                .collect()),
            Model::Tree(t) => {
                let m = matrix(x, self.encoder.width())?;
                guarded(|| {
                    t.predict(&m)
                        .map_err(|e| EvalError::Surrogate(e.to_string()))
                })
            }
        }
    }

    /// Linear weights and intercept; `None` for a tree.
    pub fn linear(&self) -> Option<(&[f64], f64)> {
        match &self.model {
            Model::Linear { weights, intercept } => Some((weights, *intercept)),
            Model::Tree(_) => None,
        }
    }

    /// Per-feature attributions of one row for a linear surrogate: Σ over the feature's
    /// encoded columns of w_j·(x_j − E[x_j]), E over the fitted rows.
    pub fn attributions(&self, row: &SampledRow) -> Option<BTreeMap<String, f64>> {
        let (weights, _) = self.linear()?;
        let mut x = Vec::new();
        self.encoder.encode(row, &mut x);
        let per_column = linear_attributions(weights, &x, &self.means);
        Some(
            self.encoder
                .spans()
                .into_iter()
                .map(|(name, span)| (name, per_column[span].iter().sum()))
                .collect(),
        )
    }

    fn r2(&self, predicted: &[f64]) -> f64 {
        r2(&self.y, predicted)
    }

    /// Permutation importance, each feature's encoded columns shuffled together.
    pub fn permutation_importance(&self, seed: u64) -> Result<BTreeMap<String, f64>> {
        let base = self.r2(&self.predict(&self.x)?);
        let mut out = BTreeMap::new();
        for (i, (name, span)) in self.encoder.spans().into_iter().enumerate() {
            let perm = permutation(
                self.x.len(),
                seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            let mut shuffled = self.x.clone();
            for (dst, &src) in shuffled.iter_mut().zip(&perm) {
                dst[span.clone()].copy_from_slice(&self.x[src][span.clone()]);
            }
            out.insert(name, (base - self.r2(&self.predict(&shuffled)?)).max(0.0));
        }
        Ok(out)
    }
}

/// Analytic attributions of a linear model: φ_i = w_i·(x_i − E[x_i]).
pub fn linear_attributions(weights: &[f64], x: &[f64], means: &[f64]) -> Vec<f64> {
    weights
        .iter()
        .zip(x)
        .zip(means)
        .map(|((w, x), m)| w * (x - m))
        .collect()
}

fn r2(y: &[f64], predicted: &[f64]) -> f64 {
    let mean = y.iter().sum::<f64>() / y.len() as f64;
    let sst: f64 = y.iter().map(|v| (v - mean) * (v - mean)).sum();
    let sse: f64 = y
        .iter()
        .zip(predicted)
        .map(|(a, b)| (a - b) * (a - b))
        .sum();
    if sst > 0.0 {
        1.0 - sse / sst
    } else if sse == 0.0 {
        1.0
    } else {
        0.0
    }
}

/// Fisher-Yates with splitmix64: deterministic, dependency-free.
fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        p.swap(i, j);
    }
    p
}

/// Importances as shares of their sum (all zero stays all zero).
pub fn shares(importance: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    let total: f64 = importance.values().sum();
    importance
        .iter()
        .map(|(k, v)| (k.clone(), if total > 0.0 { v / total } else { 0.0 }))
        .collect()
}

/// ½ Σ |a − b| over the union of features (missing = 0).
pub fn attribution_drift(
    current: &BTreeMap<String, f64>,
    reference: &BTreeMap<String, f64>,
) -> f64 {
    let (a, b) = (shares(current), shares(reference));
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    0.5 * keys
        .into_iter()
        .map(|k| (a.get(k).copied().unwrap_or(0.0) - b.get(k).copied().unwrap_or(0.0)).abs())
        .sum::<f64>()
}

/// Sampled rows of a profile, reservoir first, deduplicated by id.
pub fn sampled_rows(p: &WindowProfile) -> Vec<&SampledRow> {
    let mut seen = std::collections::BTreeSet::new();
    p.reservoir
        .iter()
        .flat_map(|r| r.rows.iter())
        .chain(p.hash_sampled.iter())
        .filter(|r| r.id.is_empty() || seen.insert(r.id.as_str()))
        .collect()
}

fn task_of(p: &WindowProfile) -> (TaskType, Vec<String>) {
    p.schema
        .as_ref()
        .map_or((TaskType::Unspecified, Vec::new()), |s| {
            (
                TaskType::try_from(s.task).unwrap_or(TaskType::Unspecified),
                s.classes.clone(),
            )
        })
}

/// Importances of a profile's sampled rows (used for the reference when none are stored).
pub fn importances(p: &WindowProfile, cfg: &ExplainConfig) -> Result<(f64, BTreeMap<String, f64>)> {
    let (task, classes) = task_of(p);
    let rows = sampled_rows(p);
    let s = Surrogate::fit(&rows, task, &classes, focus_class(p), cfg)?;
    let fidelity = s.r2(&s.predict(&s.x)?);
    let importance = s.permutation_importance(cfg.seed)?;
    // Outputs near f64::MAX overflow the sums of squares; say so instead of reporting NaN.
    if !fidelity.is_finite() || importance.values().any(|v| !v.is_finite()) {
        return Err(EvalError::Surrogate(
            "model outputs too large for a finite fit".into(),
        ));
    }
    Ok((fidelity, importance))
}

/// Multiclass surrogates follow the most often predicted class.
fn focus_class(p: &WindowProfile) -> usize {
    p.outcomes
        .as_ref()
        .and_then(|o| o.classification.as_ref())
        .and_then(|c| {
            c.predicted
                .iter()
                .enumerate()
                .max_by_key(|(_, v)| **v)
                .map(|(i, _)| i)
        })
        .unwrap_or(1)
}

pub fn evaluate_explainability(
    current: &WindowProfile,
    reference_importances: Option<&BTreeMap<String, f64>>,
    cfg: &ExplainConfig,
) -> Result<ExplainReport> {
    let (fidelity, importance) = importances(current, cfg)?;
    Ok(ExplainReport {
        surrogate: cfg.surrogate,
        rows: sampled_rows(current).len(),
        fidelity,
        min_fidelity: cfg.min_fidelity,
        importance_share: shares(&importance),
        attribution_drift: reference_importances.map(|r| attribution_drift(&importance, r)),
        importance,
    })
}
