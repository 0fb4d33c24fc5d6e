//! Drift of each feature and of the predictions against a baseline (reference profile or a
//! trailing window): statistic choice, thresholds, Benjamini-Hochberg and dataset drift.

use std::collections::BTreeMap;

use neurocloak_proto::v1::{ColumnProfile, FeatureKind, FixedBins, WindowProfile};
use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};
use crate::sketch::{WeightedSample, category_counts, validate_bins};
use crate::stats::{
    self, ChiSquareResult, KsResult, PsiBand, WassersteinResult, benjamini_hochberg,
};

/// A drift test. KS and Wasserstein need a numeric column; the others work on bins or
/// categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftTest {
    Ks,
    ChiSquare,
    Psi,
    Wasserstein,
    JensenShannon,
}

impl DriftTest {
    fn uses_p_value(self) -> bool {
        matches!(self, Self::Ks | Self::ChiSquare)
    }

    fn name(self) -> &'static str {
        match self {
            Self::Ks => "KS",
            Self::ChiSquare => "chi-square",
            Self::Psi => "PSI",
            Self::Wasserstein => "Wasserstein (normed)",
            Self::JensenShannon => "Jensen-Shannon",
        }
    }
}

/// Per-feature override.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeatureDriftConfig {
    pub test: Option<DriftTest>,
    /// p-value threshold for KS / chi-square, statistic threshold for the others.
    pub threshold: Option<f64>,
    /// Leave the feature out of drift entirely.
    pub ignore: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DriftConfig {
    /// Up to this many reference rows the default test is KS / chi-square, above it
    /// normed Wasserstein / Jensen-Shannon.
    pub small_reference_rows: u64,
    /// Project-wide test for numeric columns, overriding the size rule.
    pub numeric_test: Option<DriftTest>,
    /// Project-wide test for categorical columns, overriding the size rule.
    pub categorical_test: Option<DriftTest>,
    pub p_value_threshold: f64,
    pub wasserstein_threshold: f64,
    pub jensen_shannon_threshold: f64,
    pub psi_threshold: f64,
    /// Share given to an empty bin in PSI and to an unseen category in chi-square.
    pub empty_bin_floor: f64,
    /// Columns with fewer values (current or baseline) are left out.
    pub min_rows: u64,
    /// Dataset drift when at least this share of evaluated features drifted.
    pub dataset_drift_share: f64,
    /// Adjust KS / chi-square p-values across features with Benjamini-Hochberg.
    pub benjamini_hochberg: bool,
    pub features: BTreeMap<String, FeatureDriftConfig>,
}

impl Default for DriftConfig {
    fn default() -> Self {
        Self {
            small_reference_rows: 1000,
            numeric_test: None,
            categorical_test: None,
            p_value_threshold: 0.05,
            wasserstein_threshold: 0.1,
            jensen_shannon_threshold: 0.1,
            psi_threshold: 0.25,
            empty_bin_floor: 1e-4,
            min_rows: 30,
            dataset_drift_share: 0.5,
            benjamini_hochberg: false,
            features: BTreeMap::new(),
        }
    }
}

impl DriftConfig {
    pub fn validate(&self) -> Result<()> {
        let unit = |name: &str, v: f64| {
            if v > 0.0 && v < 1.0 {
                Ok(())
            } else {
                Err(EvalError::InvalidConfig(format!(
                    "drift.{name} = {v}, want (0, 1)"
                )))
            }
        };
        unit("p_value_threshold", self.p_value_threshold)?;
        unit("empty_bin_floor", self.empty_bin_floor)?;
        if !(self.dataset_drift_share > 0.0 && self.dataset_drift_share <= 1.0) {
            return Err(EvalError::InvalidConfig(format!(
                "drift.dataset_drift_share = {}, want (0, 1]",
                self.dataset_drift_share
            )));
        }
        for (name, v) in [
            ("wasserstein_threshold", self.wasserstein_threshold),
            ("jensen_shannon_threshold", self.jensen_shannon_threshold),
            ("psi_threshold", self.psi_threshold),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(EvalError::InvalidConfig(format!(
                    "drift.{name} = {v}, want > 0"
                )));
            }
        }
        for (feature, f) in &self.features {
            if let Some(t) = f.threshold
                && !(t.is_finite() && t > 0.0)
            {
                return Err(EvalError::InvalidConfig(format!(
                    "drift.features.{feature}.threshold = {t}, want > 0"
                )));
            }
        }
        Ok(())
    }

    fn threshold(&self, test: DriftTest) -> f64 {
        match test {
            DriftTest::Ks | DriftTest::ChiSquare => self.p_value_threshold,
            DriftTest::Psi => self.psi_threshold,
            DriftTest::Wasserstein => self.wasserstein_threshold,
            DriftTest::JensenShannon => self.jensen_shannon_threshold,
        }
    }
}

/// PSI over the reference bins (or categories).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PsiResult {
    pub value: f64,
    pub band: PsiBand,
}

/// How the binned statistics (PSI, JS, chi-square) got their current shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Binning {
    /// Exact counts in the reference's fixed bins, or exact category counts.
    Exact,
    /// Shares read off the KLL CDFs at the bin edges (within the rank error per edge).
    FromSketch,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureDrift {
    pub feature: String,
    pub numeric: bool,
    pub test: DriftTest,
    /// The deciding number: a p-value for KS / chi-square, the statistic otherwise.
    pub score: f64,
    pub threshold: f64,
    /// Benjamini-Hochberg q-value when enabled.
    pub adjusted_p_value: Option<f64>,
    pub drifted: bool,
    /// False when sketch error alone could explain the deciding statistic.
    pub reliable: bool,
    pub binning: Binning,
    pub psi: PsiResult,
    pub jensen_shannon: f64,
    pub chi_square: Option<ChiSquareResult>,
    pub ks: Option<KsResult>,
    pub wasserstein: Option<WassersteinResult>,
}

impl FeatureDrift {
    /// How far past its threshold the deciding number is (> 1 means drifted): the ratio of
    /// −log10 p-values for KS / chi-square, of statistic to threshold otherwise.
    pub fn severity(&self) -> f64 {
        if self.test.uses_p_value() {
            let p = self.adjusted_p_value.unwrap_or(self.score).max(1e-300);
            p.log10() / self.threshold.log10()
        } else {
            self.score / self.threshold
        }
    }

    /// e.g. "PSI 0.41 (>0.25)" or "KS p=0.003 (<0.05)".
    pub fn describe(&self) -> String {
        if self.test.uses_p_value() {
            let p = self.adjusted_p_value.unwrap_or(self.score);
            format!("{} p={p:.3} (<{})", self.test.name(), self.threshold)
        } else {
            format!(
                "{} {:.3} (>{})",
                self.test.name(),
                self.score,
                self.threshold
            )
        }
    }
}

/// A column the drift report could not judge, with why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    pub feature: String,
    pub reason: String,
    /// True when the column was malformed rather than merely small.
    pub invalid: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    pub features: Vec<FeatureDrift>,
    pub prediction: Option<FeatureDrift>,
    pub skipped: Vec<Skipped>,
    pub evaluated: usize,
    pub drifted: usize,
    pub drifted_share: f64,
    pub dataset_drift: bool,
}

/// Drift of every feature present in both profiles, and of the prediction column.
/// `reference_bins` are the reference's exact quantile bins (empty for a window baseline).
pub fn evaluate_drift(
    current: &WindowProfile,
    baseline: &WindowProfile,
    reference_bins: &BTreeMap<String, FixedBins>,
    cfg: &DriftConfig,
) -> Result<DriftReport> {
    cfg.validate()?;
    let mut features = Vec::new();
    let mut skipped = Vec::new();
    for (name, col) in &current.features {
        if cfg.features.get(name).is_some_and(|f| f.ignore) {
            continue;
        }
        let Some(base) = baseline.features.get(name) else {
            continue; // schema change, reported by data quality
        };
        match column_drift(
            name,
            col,
            base,
            reference_bins.get(name),
            baseline.rows,
            cfg,
        ) {
            Ok(d) => features.push(d),
            Err(e) => skipped.push(skip(name, &e)),
        }
    }
    if cfg.benjamini_hochberg {
        apply_benjamini_hochberg(&mut features);
    }
    let prediction = match (&current.prediction, &baseline.prediction) {
        (Some(c), Some(b)) => match column_drift("prediction", c, b, None, baseline.rows, cfg) {
            Ok(d) => Some(d),
            Err(e) => {
                skipped.push(skip("prediction", &e));
                None
            }
        },
        _ => None,
    };
    let evaluated = features.len();
    let drifted = features.iter().filter(|f| f.drifted).count();
    let drifted_share = if evaluated > 0 {
        drifted as f64 / evaluated as f64
    } else {
        0.0
    };
    Ok(DriftReport {
        features,
        prediction,
        skipped,
        evaluated,
        drifted,
        drifted_share,
        dataset_drift: evaluated > 0 && drifted_share >= cfg.dataset_drift_share,
    })
}

fn skip(feature: &str, e: &EvalError) -> Skipped {
    Skipped {
        feature: feature.to_owned(),
        reason: e.to_string(),
        invalid: !matches!(e, EvalError::InsufficientData { .. }),
    }
}

fn apply_benjamini_hochberg(features: &mut [FeatureDrift]) {
    let idx: Vec<usize> = (0..features.len())
        .filter(|&i| features[i].test.uses_p_value())
        .collect();
    let p: Vec<f64> = idx.iter().map(|&i| features[i].score).collect();
    for (&i, q) in idx.iter().zip(benjamini_hochberg(&p)) {
        let f = &mut features[i];
        f.adjusted_p_value = Some(q);
        f.drifted = q < f.threshold;
    }
}

/// One column's values, ready for comparison.
enum Column<'a> {
    Numeric {
        sample: WeightedSample,
        bins: Option<&'a FixedBins>,
        std: f64,
    },
    Categorical(BTreeMap<String, f64>),
}

fn read_column<'a>(col: &'a ColumnProfile, what: &str) -> Result<Column<'a>> {
    let numeric_kind = col.kind == FeatureKind::Numeric as i32;
    let categorical = col.categorical.as_ref().and_then(|c| c.items.as_ref());
    let numeric = col.numeric.as_ref();
    let has_kll = numeric
        .and_then(|n| n.kll.as_ref())
        .is_some_and(|k| k.levels.iter().any(|l| !l.items.is_empty()));
    // A column with both profiles is numeric only when declared numeric.
    if let Some(items) = categorical
        && !(numeric_kind && has_kll)
        && (items.total > 0 || !has_kll)
    {
        return Ok(Column::Categorical(category_counts(items, what)?));
    }
    let Some(numeric) = numeric else {
        return Err(EvalError::insufficient(format!("{what}: values"), 0, 1));
    };
    let Some(kll) = numeric.kll.as_ref() else {
        return Err(EvalError::insufficient(
            format!("{what}: quantile sketch"),
            0,
            1,
        ));
    };
    let sample = WeightedSample::from_kll(kll, what)?;
    if let Some(bins) = &numeric.bins {
        validate_bins(bins, what)?;
    }
    let std = match &numeric.moments {
        Some(m) if m.n > 0 && m.m2.is_finite() && m.m2 >= 0.0 => (m.m2 / m.n as f64).sqrt(),
        _ => f64::NAN,
    };
    Ok(Column::Numeric {
        sample,
        bins: numeric.bins.as_ref(),
        std,
    })
}

/// Drift of one column against its baseline.
pub fn column_drift(
    name: &str,
    current: &ColumnProfile,
    baseline: &ColumnProfile,
    reference_bins: Option<&FixedBins>,
    reference_rows: u64,
    cfg: &DriftConfig,
) -> Result<FeatureDrift> {
    let cur = read_column(current, &format!("current `{name}`"))?;
    let base = read_column(baseline, &format!("baseline `{name}`"))?;
    let over = cfg.features.get(name);
    match (cur, base) {
        (
            Column::Numeric {
                sample: c,
                bins: cb,
                ..
            },
            Column::Numeric {
                sample: b,
                bins: bb,
                std,
            },
        ) => {
            check_rows(name, c.n().min(b.n()), cfg)?;
            let rows = if reference_rows > 0 {
                reference_rows
            } else {
                b.n()
            };
            let test = over.and_then(|o| o.test).or(cfg.numeric_test).unwrap_or(
                if rows <= cfg.small_reference_rows {
                    DriftTest::Ks
                } else {
                    DriftTest::Wasserstein
                },
            );
            let binned = numeric_bins(&b, &c, reference_bins.or(bb), cb)?;
            let ks = stats::ks(&b, &c);
            let std = if std.is_finite() { std } else { b.std() };
            let w = stats::wasserstein(&b, &c, std);
            decide(name, true, test, over, cfg, binned, Some(ks), Some(w))
        }
        (Column::Categorical(c), Column::Categorical(b)) => {
            let (cur_total, base_total) = (c.values().sum::<f64>(), b.values().sum::<f64>());
            check_rows(name, cur_total.min(base_total) as u64, cfg)?;
            let rows = if reference_rows > 0 {
                reference_rows
            } else {
                base_total as u64
            };
            let test = over
                .and_then(|o| o.test)
                .or(cfg.categorical_test)
                .unwrap_or(if rows <= cfg.small_reference_rows {
                    DriftTest::ChiSquare
                } else {
                    DriftTest::JensenShannon
                });
            let binned = category_bins(&b, &c);
            decide(name, false, test, over, cfg, binned, None, None)
        }
        _ => Err(EvalError::invalid(
            format!("`{name}`"),
            "numeric in one profile and categorical in the other",
        )),
    }
}

fn check_rows(name: &str, have: u64, cfg: &DriftConfig) -> Result<()> {
    if have < cfg.min_rows {
        return Err(EvalError::insufficient(
            format!("`{name}` rows"),
            have,
            cfg.min_rows,
        ));
    }
    Ok(())
}

/// Baseline shares, current counts and whether they are exact.
struct Binned {
    reference: Vec<f64>,
    current: Vec<f64>,
    binning: Binning,
}

fn numeric_bins(
    baseline: &WeightedSample,
    current: &WeightedSample,
    reference_bins: Option<&FixedBins>,
    current_bins: Option<&FixedBins>,
) -> Result<Binned> {
    let to_f = |c: &[u64]| c.iter().map(|&v| v as f64).collect::<Vec<_>>();
    if let Some(rb) = reference_bins {
        validate_bins(rb, "reference bins")?;
        if let Some(cb) = current_bins
            && cb.edges == rb.edges
        {
            return Ok(Binned {
                reference: to_f(&rb.counts),
                current: to_f(&cb.counts),
                binning: Binning::Exact,
            });
        }
        return Ok(Binned {
            reference: to_f(&rb.counts),
            current: shares_at(current, &rb.edges),
            binning: Binning::FromSketch,
        });
    }
    // No reference bins: deciles of the baseline sketch become the edges.
    let mut edges: Vec<f64> = (0..=10)
        .map(|i| baseline.quantile(f64::from(i) / 10.0))
        .collect();
    edges.dedup();
    Ok(Binned {
        reference: shares_at(baseline, &edges),
        current: shares_at(current, &edges),
        binning: Binning::FromSketch,
    })
}

/// Weight in (-inf, e0), [e0, e1), …, [e_last, +inf) scaled to the sketch's n.
fn shares_at(s: &WeightedSample, edges: &[f64]) -> Vec<f64> {
    let mut out = Vec::with_capacity(edges.len() + 1);
    let mut prev = 0.0;
    for &e in edges {
        let c = s.cdf_lt(e);
        out.push((c - prev).max(0.0));
        prev = c;
    }
    out.push((1.0 - prev).max(0.0));
    let n = s.n() as f64;
    out.iter().map(|v| v * n).collect()
}

fn category_bins(baseline: &BTreeMap<String, f64>, current: &BTreeMap<String, f64>) -> Binned {
    let mut keys: Vec<&String> = baseline.keys().chain(current.keys()).collect();
    keys.sort();
    keys.dedup();
    let get = |m: &BTreeMap<String, f64>, k: &String| m.get(k).copied().unwrap_or(0.0);
    Binned {
        reference: keys.iter().map(|k| get(baseline, k)).collect(),
        current: keys.iter().map(|k| get(current, k)).collect(),
        binning: Binning::Exact,
    }
}

#[allow(clippy::too_many_arguments)]
fn decide(
    name: &str,
    numeric: bool,
    test: DriftTest,
    over: Option<&FeatureDriftConfig>,
    cfg: &DriftConfig,
    binned: Binned,
    ks: Option<KsResult>,
    wasserstein: Option<WassersteinResult>,
) -> Result<FeatureDrift> {
    let psi_value = stats::psi(&binned.reference, &binned.current, cfg.empty_bin_floor);
    let js = stats::jensen_shannon(&binned.reference, &binned.current);
    let chi = stats::chi_square(&binned.reference, &binned.current, cfg.empty_bin_floor).ok();
    let threshold = over
        .and_then(|o| o.threshold)
        .unwrap_or(cfg.threshold(test));
    let exact = binned.binning == Binning::Exact;
    let (score, drifted, reliable) = match test {
        DriftTest::Ks => {
            let ks = ks.ok_or_else(|| not_numeric(name, test))?;
            (ks.p_value, ks.p_value < threshold, ks.reliable)
        }
        DriftTest::Wasserstein => {
            let w = wasserstein.ok_or_else(|| not_numeric(name, test))?;
            let margin = (w.normalized - threshold).abs();
            (
                w.normalized,
                w.normalized > threshold,
                margin > w.normalized_error_bound,
            )
        }
        DriftTest::ChiSquare => {
            let chi = chi.ok_or_else(|| {
                EvalError::insufficient(format!("`{name}` chi-square categories"), 1, 2)
            })?;
            (chi.p_value, chi.p_value < threshold, exact)
        }
        DriftTest::Psi => (psi_value, psi_value > threshold, exact),
        DriftTest::JensenShannon => (js, js > threshold, exact),
    };
    if !score.is_finite() && !test.uses_p_value() {
        return Err(EvalError::invalid(
            format!("`{name}`"),
            format!("{} is {score}", test.name()),
        ));
    }
    Ok(FeatureDrift {
        feature: name.to_owned(),
        numeric,
        test,
        score,
        threshold,
        adjusted_p_value: None,
        drifted,
        reliable,
        binning: binned.binning,
        psi: PsiResult {
            value: psi_value,
            band: PsiBand::of(psi_value),
        },
        jensen_shannon: js,
        chi_square: chi,
        ks,
        wasserstein,
    })
}

fn not_numeric(name: &str, test: DriftTest) -> EvalError {
    EvalError::InvalidConfig(format!(
        "{} needs a numeric column; `{name}` is categorical",
        test.name()
    ))
}
