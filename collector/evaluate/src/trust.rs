//! The trust score: each component mapped to 0–100 by documented ramps, combined as a
//! weighted mean over the components that had enough data, with reasons and a trend.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};
use crate::{Section, WindowEvaluation};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Component {
    Performance,
    Drift,
    Fairness,
    Robustness,
    ExplainabilityStability,
    DataQuality,
    Operations,
}

impl Component {
    /// Weight used when `TrustConfig::weights` does not name the component.
    pub fn default_weight(self) -> f64 {
        match self {
            Self::Performance => 0.25,
            Self::Drift => 0.20,
            Self::Fairness => 0.15,
            Self::Robustness => 0.10,
            Self::ExplainabilityStability => 0.05,
            Self::DataQuality => 0.15,
            Self::Operations => 0.10,
        }
    }

    pub const ALL: [Self; 7] = [
        Self::Performance,
        Self::Drift,
        Self::Fairness,
        Self::Robustness,
        Self::ExplainabilityStability,
        Self::DataQuality,
        Self::Operations,
    ];
}

/// Linear map of a metric to 0–100: 100 at `full_at`, 0 at `zero_at`, clamped outside.
/// Works for both directions (higher-is-better when `full_at > zero_at`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ramp {
    pub full_at: f64,
    pub zero_at: f64,
}

impl Ramp {
    pub const fn new(full_at: f64, zero_at: f64) -> Self {
        Self { full_at, zero_at }
    }

    /// NaN maps to 0: an undefined metric is not evidence of health.
    pub fn score(&self, v: f64) -> f64 {
        let t = (v - self.zero_at) / (self.full_at - self.zero_at);
        if t.is_nan() {
            0.0
        } else {
            100.0 * t.clamp(0.0, 1.0)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrustConfig {
    /// Weight per component; a component not listed keeps its default weight, 0 removes it.
    pub weights: BTreeMap<Component, f64>,
    /// Drop of the primary metric below the baseline's (AUC / accuracy / R² points).
    pub performance_drop: Ramp,
    /// AUC / accuracy when there is no baseline to compare with.
    pub performance_absolute: Ramp,
    /// R² when there is no baseline.
    pub r2_absolute: Ramp,
    /// Share of drifted features.
    pub drift_share: Ramp,
    /// Cap on the drift score when the prediction column drifted.
    pub prediction_drift_cap: f64,
    /// Lowest demographic-parity ratio (disparate impact) over attributes.
    pub fairness_ratio: Ramp,
    /// Largest equalized-odds difference over attributes.
    pub fairness_gap: Ramp,
    /// Out-of-distribution share of sampled rows.
    pub ood_share: Ramp,
    /// Perturbation stability from the SDK's probe (share of unchanged predictions).
    pub perturbation_stability: Ramp,
    pub min_robustness_rows: usize,
    /// Attribution drift (total variation of importance shares).
    pub attribution_drift: Ramp,
    /// Worst feature's missing + invalid rate above its baseline rate.
    pub bad_rate: Ramp,
    /// Worst feature's out-of-range share.
    pub out_of_range: Ramp,
    /// Worst feature's unseen-category share.
    pub unseen_categories: Ramp,
    /// Points lost per schema change (feature appearing, disappearing or changing kind).
    pub schema_change_penalty: f64,
    pub error_rate: Ramp,
    /// p99 latency in the recorded unit (µs); `None` leaves latency unjudged.
    pub p99_latency: Option<Ramp>,
    /// |log2(rows / usual rows)|.
    pub volume_log2_ratio: Ramp,
    /// Smoothing of the EWMA trend.
    pub ewma_alpha: f64,
    /// Windows (history + current) in the trend slope.
    pub trend_window: usize,
    pub top_reasons: usize,
}

impl Default for TrustConfig {
    fn default() -> Self {
        let weights = Component::ALL.map(|c| (c, c.default_weight()));
        Self {
            weights: weights.into_iter().collect(),
            performance_drop: Ramp::new(0.0, 0.2),
            performance_absolute: Ramp::new(1.0, 0.5),
            r2_absolute: Ramp::new(1.0, 0.0),
            drift_share: Ramp::new(0.0, 0.5),
            prediction_drift_cap: 50.0,
            fairness_ratio: Ramp::new(1.0, 0.5),
            fairness_gap: Ramp::new(0.0, 0.3),
            ood_share: Ramp::new(0.0, 0.2),
            perturbation_stability: Ramp::new(1.0, 0.5),
            min_robustness_rows: 30,
            attribution_drift: Ramp::new(0.0, 0.5),
            bad_rate: Ramp::new(0.0, 0.2),
            out_of_range: Ramp::new(0.0, 0.2),
            unseen_categories: Ramp::new(0.0, 0.2),
            schema_change_penalty: 25.0,
            error_rate: Ramp::new(0.0, 0.05),
            p99_latency: None,
            volume_log2_ratio: Ramp::new(0.0, 2.0),
            ewma_alpha: 0.3,
            trend_window: 12,
            top_reasons: 5,
        }
    }
}

impl TrustConfig {
    pub fn weight(&self, c: Component) -> f64 {
        self.weights
            .get(&c)
            .copied()
            .unwrap_or_else(|| c.default_weight())
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(EvalError::InvalidConfig(m));
        for (c, w) in &self.weights {
            if !(w.is_finite() && *w >= 0.0) {
                return bad(format!("trust weight of {c:?} = {w}, want finite ≥ 0"));
            }
        }
        let ramps = [
            self.performance_drop,
            self.performance_absolute,
            self.r2_absolute,
            self.drift_share,
            self.fairness_ratio,
            self.fairness_gap,
            self.ood_share,
            self.perturbation_stability,
            self.attribution_drift,
            self.bad_rate,
            self.out_of_range,
            self.unseen_categories,
            self.error_rate,
            self.volume_log2_ratio,
        ];
        for r in ramps.iter().chain(self.p99_latency.iter()) {
            if !(r.full_at.is_finite() && r.zero_at.is_finite() && r.full_at != r.zero_at) {
                return bad(format!("ramp {r:?} needs two distinct finite points"));
            }
        }
        if !(self.ewma_alpha > 0.0 && self.ewma_alpha <= 1.0) {
            return bad(format!("ewma_alpha = {}, want (0, 1]", self.ewma_alpha));
        }
        if !(0.0..=100.0).contains(&self.prediction_drift_cap)
            || !(0.0..=100.0).contains(&self.schema_change_penalty)
        {
            return bad(
                "prediction_drift_cap and schema_change_penalty must be in [0, 100]".into(),
            );
        }
        Ok(())
    }
}

/// One finding that cost trust points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    pub component: Component,
    pub text: String,
    /// The finding's own 0–100 score.
    pub score: f64,
    /// Trust points lost because of it: effective weight × (100 − score).
    pub impact: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentScore {
    pub component: Component,
    /// `None` when the component had too little data and was left out.
    pub score: Option<f64>,
    pub weight: f64,
    /// Weight after renormalising over the available components.
    pub effective_weight: f64,
    pub left_out: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trend {
    /// EWMA over history then the current score.
    pub ewma: f64,
    /// Least-squares slope in points per window over the last `trend_window` scores.
    pub slope: Option<f64>,
    pub windows: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrustScore {
    /// 0–100; `None` when no component had enough data.
    pub score: Option<f64>,
    pub components: Vec<ComponentScore>,
    pub reasons: Vec<Reason>,
    pub trend: Option<Trend>,
}

/// Sub-scores of one component; the component takes the worst.
struct Findings {
    /// (text, score, severity): severity orders findings that share a score.
    items: Vec<(String, f64, f64)>,
}

impl Findings {
    fn new() -> Self {
        Self { items: Vec::new() }
    }
    fn add(&mut self, score: f64, text: impl Into<String>) {
        self.items.push((text.into(), score, 0.0));
    }
    fn add_ranked(&mut self, score: f64, severity: f64, text: impl Into<String>) {
        self.items.push((text.into(), score, severity));
    }
    fn score(&self) -> Option<f64> {
        self.items.iter().map(|i| i.1).reduce(f64::min)
    }
}

fn section<T>(s: &Section<T>) -> std::result::Result<&T, String> {
    match s {
        Section::Evaluated { result } => Ok(result),
        Section::Insufficient { reason } | Section::Invalid { reason } => Err(reason.clone()),
    }
}

fn performance(e: &WindowEvaluation, cfg: &TrustConfig) -> std::result::Result<Findings, String> {
    let p = section(&e.performance)?;
    let (name, value) = p
        .current
        .primary()
        .ok_or("no primary metric (constant labels?)")?;
    let mut f = Findings::new();
    match p.baseline.as_ref().and_then(|b| b.primary()) {
        Some((base_name, base)) if base_name == name => {
            let drop = base - value;
            f.add(
                cfg.performance_drop.score(drop),
                format!("{name} {value:.3} vs baseline {base:.3}"),
            );
        }
        _ => {
            let ramp = if name == "r2" {
                cfg.r2_absolute
            } else {
                cfg.performance_absolute
            };
            f.add(ramp.score(value), format!("{name} {value:.3}"));
        }
    }
    Ok(f)
}

fn drift(e: &WindowEvaluation, cfg: &TrustConfig) -> std::result::Result<Findings, String> {
    let d = section(&e.drift)?;
    if d.evaluated == 0 && d.prediction.is_none() {
        return Err("no feature could be compared with the baseline".into());
    }
    let mut f = Findings::new();
    let share_score = cfg.drift_share.score(d.drifted_share);
    if d.drifted == 0 {
        f.add(
            share_score,
            format!("0 of {} features drifted", d.evaluated),
        );
    }
    let prediction_drifted = d.prediction.as_ref().is_some_and(|p| p.drifted);
    // When the predictions drifted too, the drifted inputs are what explains it: they share the
    // prediction cap's score (the component score, a minimum, is unchanged) and their severity
    // ranks them ahead of the prediction finding, so the reasons name the features.
    let feature_score = if prediction_drifted {
        share_score.min(cfg.prediction_drift_cap)
    } else {
        share_score
    };
    for x in d.features.iter().filter(|x| x.drifted) {
        let text = format!("feature `{}` drifted: {}", x.feature, x.describe());
        f.add_ranked(feature_score, x.severity(), text);
    }
    if let Some(p) = d.prediction.as_ref().filter(|p| p.drifted) {
        f.add(
            cfg.prediction_drift_cap,
            format!("predictions drifted: {}", p.describe()),
        );
    }
    Ok(f)
}

fn fairness(e: &WindowEvaluation, cfg: &TrustConfig) -> std::result::Result<Findings, String> {
    let r = section(&e.fairness)?;
    let mut f = Findings::new();
    for a in &r.attributes {
        if let Some(ratio) = a.demographic_parity_ratio {
            f.add(
                cfg.fairness_ratio.score(ratio),
                format!("`{}` disparate impact {ratio:.2}", a.attribute),
            );
        }
        if let Some(gap) = a.equalized_odds_difference {
            f.add(
                cfg.fairness_gap.score(gap),
                format!("`{}` equalized odds difference {gap:.2}", a.attribute),
            );
        }
    }
    if f.items.is_empty() {
        return Err("no attribute has two groups above the minimum size".into());
    }
    Ok(f)
}

fn robustness(e: &WindowEvaluation, cfg: &TrustConfig) -> std::result::Result<Findings, String> {
    let r = section(&e.robustness)?;
    let mut f = Findings::new();
    if let Some(ood) = r.ood.as_ref().filter(|o| o.rows >= cfg.min_robustness_rows) {
        f.add(
            cfg.ood_share.score(ood.share),
            format!(
                "{:.1} % of sampled rows out of distribution",
                100.0 * ood.share
            ),
        );
    }
    if let Some(s) = r.perturbation_stability {
        f.add(
            cfg.perturbation_stability.score(s),
            format!("perturbation stability {s:.2}"),
        );
    }
    if f.items.is_empty() {
        return Err(format!(
            "fewer than {} sampled rows and no perturbation probe",
            cfg.min_robustness_rows
        ));
    }
    Ok(f)
}

fn explainability(
    e: &WindowEvaluation,
    cfg: &TrustConfig,
) -> std::result::Result<Findings, String> {
    let x = section(&e.explainability)?;
    if x.fidelity < x.min_fidelity {
        return Err(format!(
            "surrogate fidelity {:.2} below {}",
            x.fidelity, x.min_fidelity
        ));
    }
    let d = x.attribution_drift.ok_or("no reference importances")?;
    let mut f = Findings::new();
    f.add(
        cfg.attribution_drift.score(d),
        format!("feature attributions shifted by {d:.2} (total variation)"),
    );
    Ok(f)
}

fn worst<'a, T>(items: impl Iterator<Item = (&'a str, Option<T>)>) -> Option<(&'a str, T)>
where
    T: PartialOrd + Copy,
{
    items
        .filter_map(|(n, v)| v.map(|v| (n, v)))
        .fold(None, |acc: Option<(&str, T)>, (n, v)| match acc {
            Some((_, best)) if best >= v => acc,
            _ => Some((n, v)),
        })
}

fn data_quality(e: &WindowEvaluation, cfg: &TrustConfig) -> std::result::Result<Findings, String> {
    let q = section(&e.quality)?;
    if q.features.is_empty() {
        return Err("no feature counters".into());
    }
    let mut f = Findings::new();
    let feats = || q.features.iter();
    if let Some((n, r)) = worst(feats().map(|x| (x.feature.as_str(), Some(x.excess_bad_rate())))) {
        f.add(
            cfg.bad_rate.score(r),
            format!(
                "feature `{n}`: {:.1} % missing or invalid above baseline",
                100.0 * r
            ),
        );
    }
    if let Some((n, r)) = worst(feats().map(|x| (x.feature.as_str(), x.out_of_range_share))) {
        f.add(
            cfg.out_of_range.score(r),
            format!(
                "feature `{n}`: {:.1} % of values outside the reference range",
                100.0 * r
            ),
        );
    }
    if let Some((n, r)) = worst(feats().map(|x| (x.feature.as_str(), x.unseen_share))) {
        f.add(
            cfg.unseen_categories.score(r),
            format!("feature `{n}`: {:.1} % unseen categories", 100.0 * r),
        );
    }
    for (name, _) in &q.rejected {
        f.add(0.0, format!("feature `{name}`: malformed sketch rejected"));
    }
    if let Some(s) = q.schema.as_ref().filter(|s| s.changes() > 0) {
        let score = (100.0 - cfg.schema_change_penalty * s.changes() as f64).max(0.0);
        f.add(
            score,
            format!(
                "schema changed: appeared {:?}, disappeared {:?}, kind changed {:?}",
                s.appeared, s.disappeared, s.kind_changed
            ),
        );
    }
    Ok(f)
}

fn operations(e: &WindowEvaluation, cfg: &TrustConfig) -> std::result::Result<Findings, String> {
    let o = section(&e.operations)?;
    let mut f = Findings::new();
    if let Some(r) = o.error_rate {
        f.add(
            cfg.error_rate.score(r),
            format!("error rate {:.2} %", 100.0 * r),
        );
    }
    if let (Some(l), Some(ramp)) = (&o.latency, cfg.p99_latency) {
        f.add(
            ramp.score(l.p99 as f64),
            format!("p99 latency {} µs", l.p99),
        );
    }
    if let Some(ratio) = o.volume.as_ref().and_then(|v| v.ratio) {
        let log2 = if ratio > 0.0 {
            ratio.log2().abs()
        } else {
            f64::INFINITY
        };
        f.add(
            cfg.volume_log2_ratio.score(log2),
            format!("volume {:.2}× its usual level", ratio),
        );
    }
    if f.items.is_empty() {
        return Err("no rows, latency or volume history".into());
    }
    Ok(f)
}

/// The most costly reason of each component first (so one component cannot crowd out the
/// others), then the rest in order of impact.
fn top_reasons(sorted: Vec<Reason>, limit: usize) -> Vec<Reason> {
    let mut seen = std::collections::BTreeSet::new();
    let (mut first, mut rest): (Vec<Reason>, Vec<Reason>) =
        sorted.into_iter().partition(|r| seen.insert(r.component));
    first.append(&mut rest);
    first.truncate(limit);
    first
}

/// Weighted mean of the available component scores; weights renormalised over them.
/// Monotone: lowering any one score never raises the result.
pub fn combine(
    scores: &BTreeMap<Component, f64>,
    weights: &BTreeMap<Component, f64>,
) -> Option<f64> {
    let (mut num, mut den) = (0.0, 0.0);
    for (c, s) in scores {
        let w = weights.get(c).copied().unwrap_or(0.0);
        num += w * s.clamp(0.0, 100.0);
        den += w;
    }
    (den > 0.0).then(|| num / den)
}

/// EWMA (seeded with the oldest score) and least-squares slope over the last window.
pub fn trend(history: &[f64], current: f64, alpha: f64, window: usize) -> Trend {
    let all: Vec<f64> = history
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .chain([current])
        .collect();
    let ewma = all
        .iter()
        .skip(1)
        .fold(all[0], |acc, v| alpha * v + (1.0 - alpha) * acc);
    let tail = &all[all.len().saturating_sub(window.max(2))..];
    let n = tail.len() as f64;
    let slope = (tail.len() >= 2).then(|| {
        let mx = (n - 1.0) / 2.0;
        let my = tail.iter().sum::<f64>() / n;
        let sxy: f64 = tail
            .iter()
            .enumerate()
            .map(|(i, y)| (i as f64 - mx) * (y - my))
            .sum();
        let sxx: f64 = (0..tail.len()).map(|i| (i as f64 - mx).powi(2)).sum();
        sxy / sxx
    });
    Trend {
        ewma,
        slope,
        windows: all.len(),
    }
}

type Rule = fn(&WindowEvaluation, &TrustConfig) -> std::result::Result<Findings, String>;

const RULES: [(Component, Rule); 7] = [
    (Component::Performance, performance),
    (Component::Drift, drift),
    (Component::Fairness, fairness),
    (Component::Robustness, robustness),
    (Component::ExplainabilityStability, explainability),
    (Component::DataQuality, data_quality),
    (Component::Operations, operations),
];

/// Every component's score (or why it is left out), with renormalised weights, and the
/// findings of the scored ones.
fn score_components(
    e: &WindowEvaluation,
    cfg: &TrustConfig,
) -> (Vec<ComponentScore>, Vec<(Component, Findings)>) {
    let mut findings = Vec::new();
    let mut components: Vec<ComponentScore> = RULES
        .iter()
        .map(|&(c, rule)| {
            let (score, left_out) = match rule(e, cfg).map(|f| (f.score(), f)) {
                Ok((Some(s), f)) => {
                    findings.push((c, f));
                    (Some(s), None)
                }
                Ok((None, _)) => (None, Some("no findings".to_owned())),
                Err(reason) => (None, Some(reason)),
            };
            ComponentScore {
                component: c,
                score,
                weight: cfg.weight(c),
                effective_weight: 0.0,
                left_out,
            }
        })
        .collect();
    let total: f64 = components
        .iter()
        .filter(|c| c.score.is_some())
        .map(|c| c.weight)
        .sum();
    if total > 0.0 {
        for c in components.iter_mut().filter(|c| c.score.is_some()) {
            c.effective_weight = c.weight / total;
        }
    }
    (components, findings)
}

/// Findings below 100 as reasons, costliest first (ties: the more severe finding).
fn rank_reasons(
    components: &[ComponentScore],
    findings: Vec<(Component, Findings)>,
    limit: usize,
) -> Vec<Reason> {
    let effective: BTreeMap<Component, f64> = components
        .iter()
        .map(|c| (c.component, c.effective_weight))
        .collect();
    let mut ranked: Vec<(Reason, f64)> = findings
        .into_iter()
        .flat_map(|(c, f)| {
            let w = effective.get(&c).copied().unwrap_or(0.0);
            f.items
                .into_iter()
                .filter(|i| i.1 < 100.0)
                .map(move |(text, score, severity)| {
                    let impact = w * (100.0 - score);
                    (
                        Reason {
                            component: c,
                            text,
                            score,
                            impact,
                        },
                        severity,
                    )
                })
        })
        .collect();
    ranked.sort_by(|a, b| {
        b.0.impact
            .total_cmp(&a.0.impact)
            .then(b.1.total_cmp(&a.1))
            .then_with(|| a.0.text.cmp(&b.0.text))
    });
    top_reasons(ranked.into_iter().map(|r| r.0).collect(), limit)
}

/// The trust score of one evaluated window. `history` holds earlier scores of the same model
/// version, oldest first.
pub fn trust_score(e: &WindowEvaluation, cfg: &TrustConfig, history: &[f64]) -> Result<TrustScore> {
    cfg.validate()?;
    let (components, findings) = score_components(e, cfg);
    let scores: BTreeMap<Component, f64> = components
        .iter()
        .filter_map(|c| c.score.map(|s| (c.component, s)))
        .collect();
    let weights = components.iter().map(|c| (c.component, c.weight)).collect();
    let score = combine(&scores, &weights);
    Ok(TrustScore {
        score,
        reasons: rank_reasons(&components, findings, cfg.top_reasons),
        components,
        trend: score.map(|s| trend(history, s, cfg.ewma_alpha, cfg.trend_window)),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ramps_map_both_directions() {
        let down = Ramp::new(0.0, 0.5);
        assert_eq!(down.score(0.0), 100.0);
        assert_eq!(down.score(0.25), 50.0);
        assert_eq!(down.score(9.0), 0.0);
        let up = Ramp::new(1.0, 0.5);
        assert_eq!(up.score(0.75), 50.0);
        assert_eq!(up.score(f64::NAN), 0.0);
    }

    #[test]
    fn trend_slope_and_ewma() {
        let t = trend(&[50.0, 60.0, 70.0], 80.0, 0.5, 12);
        assert!((t.slope.unwrap() - 10.0).abs() < 1e-12);
        // 50 → 55 → 62.5 → 71.25
        assert!((t.ewma - 71.25).abs() < 1e-12);
        assert_eq!(trend(&[], 40.0, 0.3, 12).slope, None);
    }

    fn component() -> impl Strategy<Value = Component> {
        (0usize..7).prop_map(|i| Component::ALL[i])
    }

    proptest! {
        #[test]
        fn lowering_a_component_never_raises_the_score(
            scores in proptest::collection::btree_map(component(), 0.0f64..=100.0, 1..7),
            weights in proptest::collection::vec(0.0f64..=1.0, 7),
            pick in 0usize..7,
            drop in 0.0f64..=100.0,
        ) {
            let weights: BTreeMap<Component, f64> = Component::ALL.iter().copied().zip(weights).collect();
            let before = combine(&scores, &weights);
            let key = *scores.keys().nth(pick % scores.len()).unwrap();
            let mut worse = scores.clone();
            *worse.get_mut(&key).unwrap() = (scores[&key] - drop).max(0.0);
            let after = combine(&worse, &weights);
            match (before, after) {
                (Some(b), Some(a)) => prop_assert!(a <= b + 1e-9, "{a} > {b}"),
                (None, None) => {}
                other => prop_assert!(false, "availability changed: {other:?}"),
            }
            if let Some(b) = before { prop_assert!((0.0..=100.0).contains(&b)); }
        }

        #[test]
        fn ramps_are_monotone(full in -10.0f64..10.0, span in 0.01f64..10.0, a in -30.0f64..30.0, d in 0.0f64..30.0) {
            let r = Ramp::new(full, full + span);
            prop_assert!(r.score(a + d) <= r.score(a));
            let r = Ramp::new(full, full - span);
            prop_assert!(r.score(a - d) <= r.score(a));
        }
    }
}
