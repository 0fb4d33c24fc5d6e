//! Group fairness from per-group outcome counts: selection rate, TPR and FPR per group, and
//! the gaps between groups of each sensitive attribute and each intersection of attributes.

use std::collections::BTreeMap;

use neurocloak_proto::v1::GroupProfile;
use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FairnessConfig {
    /// Groups with fewer rows are listed but not judged.
    pub min_group_size: u64,
    /// The favourable outcome (class index) for selection rate and TPR/FPR.
    pub positive_class: u32,
    /// Four-fifths rule: disparate impact below this fails.
    pub disparate_impact_threshold: f64,
}

impl Default for FairnessConfig {
    fn default() -> Self {
        Self {
            min_group_size: 30,
            positive_class: 1,
            disparate_impact_threshold: 0.8,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupRates {
    /// Group key, e.g. "sex=F" or "race=A&sex=F".
    pub group: String,
    pub count: u64,
    pub labelled: u64,
    pub selection_rate: Option<f64>,
    pub true_positive_rate: Option<f64>,
    pub false_positive_rate: Option<f64>,
    /// Selection rate divided by the highest group selection rate.
    pub impact_ratio: Option<f64>,
    /// False when the group is below `min_group_size` and left out of the gaps.
    pub judged: bool,
}

/// Gaps across the groups of one attribute (e.g. "sex") or intersection (e.g. "race&sex").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributeFairness {
    pub attribute: String,
    pub groups: Vec<GroupRates>,
    pub demographic_parity_difference: Option<f64>,
    pub demographic_parity_ratio: Option<f64>,
    pub equalized_odds_difference: Option<f64>,
    pub equal_opportunity_difference: Option<f64>,
    /// Lowest impact ratio among judged groups (= demographic parity ratio).
    pub disparate_impact: Option<f64>,
    /// True when some judged group's impact ratio is below the four-fifths threshold.
    pub four_fifths_violation: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FairnessReport {
    pub attributes: Vec<AttributeFairness>,
}

/// Splits "race=A&sex=F" into the attribute set "race&sex".
fn attribute_of(key: &str) -> Result<String> {
    let mut names = Vec::new();
    for part in key.split('&') {
        let Some((name, _)) = part.split_once('=') else {
            return Err(EvalError::invalid(
                "group key",
                format!("`{key}` is not attr=value"),
            ));
        };
        if name.is_empty() {
            return Err(EvalError::invalid(
                "group key",
                format!("`{key}` has an empty attribute"),
            ));
        }
        names.push(name);
    }
    Ok(names.join("&"))
}

fn rates(key: &str, g: &GroupProfile, cfg: &FairnessConfig) -> Result<GroupRates> {
    let what = format!("group `{key}`");
    let mut out = GroupRates {
        group: key.to_owned(),
        count: g.count,
        labelled: 0,
        selection_rate: None,
        true_positive_rate: None,
        false_positive_rate: None,
        impact_ratio: None,
        judged: g.count >= cfg.min_group_size.max(1),
    };
    let Some(c) = g.outcomes.as_ref().and_then(|o| o.classification.as_ref()) else {
        return Ok(out);
    };
    let n = c.n_classes as usize;
    let pos = cfg.positive_class as usize;
    if n < 2 || pos >= n || n > 4096 || c.confusion.len() != n * n {
        return Err(EvalError::invalid(
            what,
            "confusion matrix does not match n_classes / positive class",
        ));
    }
    let cell = |l: usize, p: usize| c.confusion[l * n + p] as f64;
    let labelled: f64 = c.confusion.iter().map(|&v| v as f64).sum();
    out.labelled = labelled as u64;
    // Selection rate covers every row with a prediction, labelled or not.
    if c.predicted.len() == n {
        let all: f64 = c.predicted.iter().map(|&v| v as f64).sum();
        out.selection_rate = (all > 0.0).then(|| c.predicted[pos] as f64 / all);
    } else if !c.predicted.is_empty() {
        return Err(EvalError::invalid(
            what,
            "predicted counts do not match n_classes",
        ));
    } else if labelled > 0.0 {
        out.selection_rate = Some((0..n).map(|l| cell(l, pos)).sum::<f64>() / labelled);
    }
    let actual_pos: f64 = (0..n).map(|p| cell(pos, p)).sum();
    let actual_neg = labelled - actual_pos;
    let false_pos: f64 = (0..n).filter(|&l| l != pos).map(|l| cell(l, pos)).sum();
    out.true_positive_rate = (actual_pos > 0.0).then(|| cell(pos, pos) / actual_pos);
    out.false_positive_rate = (actual_neg > 0.0).then(|| false_pos / actual_neg);
    Ok(out)
}

/// max − min over the judged groups that have the rate; `None` below two groups.
fn spread(groups: &[GroupRates], f: fn(&GroupRates) -> Option<f64>) -> Option<(f64, f64)> {
    let v: Vec<f64> = groups.iter().filter(|g| g.judged).filter_map(f).collect();
    if v.len() < 2 {
        return None;
    }
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    Some((min, max))
}

pub fn evaluate_fairness(
    groups: &BTreeMap<String, GroupProfile>,
    cfg: &FairnessConfig,
) -> Result<FairnessReport> {
    if !(cfg.disparate_impact_threshold > 0.0 && cfg.disparate_impact_threshold <= 1.0) {
        return Err(EvalError::InvalidConfig(format!(
            "fairness.disparate_impact_threshold = {}, want (0, 1]",
            cfg.disparate_impact_threshold
        )));
    }
    let mut by_attribute: BTreeMap<String, Vec<GroupRates>> = BTreeMap::new();
    for (key, g) in groups {
        by_attribute
            .entry(attribute_of(key)?)
            .or_default()
            .push(rates(key, g, cfg)?);
    }
    let attributes = by_attribute
        .into_iter()
        .map(|(attribute, mut groups)| {
            let sr = spread(&groups, |g| g.selection_rate);
            let tpr = spread(&groups, |g| g.true_positive_rate);
            let fpr = spread(&groups, |g| g.false_positive_rate);
            if let Some((_, max)) = sr.filter(|s| s.1 > 0.0) {
                for g in &mut groups {
                    g.impact_ratio = g.selection_rate.map(|s| s / max);
                }
            }
            let dp_ratio = sr.map(|(min, max)| if max > 0.0 { min / max } else { 1.0 });
            let eo = match (tpr, fpr) {
                (Some(t), Some(f)) => Some((t.1 - t.0).max(f.1 - f.0)),
                _ => None,
            };
            AttributeFairness {
                attribute,
                four_fifths_violation: dp_ratio.is_some_and(|r| r < cfg.disparate_impact_threshold),
                groups,
                demographic_parity_difference: sr.map(|(min, max)| max - min),
                demographic_parity_ratio: dp_ratio,
                equalized_odds_difference: eo,
                equal_opportunity_difference: tpr.map(|(min, max)| max - min),
                disparate_impact: dp_ratio,
            }
        })
        .collect();
    Ok(FairnessReport { attributes })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn attribute_keys_parse() {
        assert_eq!(attribute_of("race=A&sex=F").unwrap(), "race&sex");
        assert!(attribute_of("nonsense").is_err());
        assert!(attribute_of("=x").is_err());
    }
}
