//! Data quality (missing / invalid rates, out-of-reference-range share, unseen categories,
//! schema changes) and the robustness input derived from it: the out-of-distribution share of
//! sampled live rows.

use std::collections::{BTreeMap, BTreeSet};

use neurocloak_proto::v1::{ColumnProfile, FixedBins, SampledRow, WindowProfile, value};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::sketch::{WeightedSample, category_counts, validate_bins};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureQuality {
    pub feature: String,
    pub count: u64,
    pub missing_rate: f64,
    /// NaN, ±inf and type mismatches over count.
    pub invalid_rate: f64,
    pub truncated: u64,
    /// Baseline's missing + invalid rate, to separate new problems from old habits.
    pub baseline_bad_rate: Option<f64>,
    /// Share of numeric values outside [reference min, reference max].
    pub out_of_range_share: Option<f64>,
    /// Share of categorical values the reference never listed.
    pub unseen_share: Option<f64>,
    /// Up to 10 unseen values, most frequent first.
    pub unseen_values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchemaChange {
    pub appeared: Vec<String>,
    pub disappeared: Vec<String>,
    /// Features whose kind differs from the baseline's.
    pub kind_changed: Vec<String>,
    /// Rows with a feature outside the schema or missing one of its features.
    pub extra_feature_rows: u64,
}

impl SchemaChange {
    pub fn changes(&self) -> usize {
        self.appeared.len() + self.disappeared.len() + self.kind_changed.len()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityReport {
    pub features: Vec<FeatureQuality>,
    pub schema: Option<SchemaChange>,
    /// Features that could not be read (malformed sketches), with the reason.
    pub rejected: Vec<(String, String)>,
}

impl FeatureQuality {
    /// Missing + invalid rate above the baseline's (never negative).
    pub fn excess_bad_rate(&self) -> f64 {
        let now = self.missing_rate + self.invalid_rate;
        (now - self.baseline_bad_rate.unwrap_or(0.0)).max(0.0)
    }
}

fn bad_rates(col: &ColumnProfile) -> Option<(u64, f64, f64, u64)> {
    let c = col.counters.as_ref()?;
    if c.count == 0 {
        return None;
    }
    let n = c.count as f64;
    let invalid = c
        .nan
        .saturating_add(c.pos_inf)
        .saturating_add(c.neg_inf)
        .saturating_add(c.type_mismatch);
    Some((
        c.count,
        (c.missing as f64 / n).min(1.0),
        (invalid as f64 / n).min(1.0),
        c.truncated,
    ))
}

/// Reference range of a numeric column: its moments' (or sketch's) min and max.
fn reference_range(col: &ColumnProfile) -> Option<(f64, f64)> {
    let num = col.numeric.as_ref()?;
    if let Some(m) = num
        .moments
        .as_ref()
        .filter(|m| m.n > 0 && m.min.is_finite() && m.max.is_finite() && m.min <= m.max)
    {
        return Some((m.min, m.max));
    }
    let s = WeightedSample::from_kll(num.kll.as_ref()?, "reference").ok()?;
    Some((s.min(), s.max()))
}

fn out_of_range(
    col: &ColumnProfile,
    range: (f64, f64),
    ref_bins: Option<&FixedBins>,
) -> Result<Option<f64>> {
    let Some(num) = col.numeric.as_ref() else {
        return Ok(None);
    };
    // Exact when the window's bins are the reference's min..max edges: the two open end bins.
    if let (Some(cb), Some(rb)) = (num.bins.as_ref(), ref_bins)
        && cb.edges == rb.edges
        && cb.edges.first() == Some(&range.0)
        && cb.edges.last() == Some(&range.1)
    {
        validate_bins(cb, "current bins")?;
        let total: f64 = cb.counts.iter().map(|&c| c as f64).sum();
        if total == 0.0 {
            return Ok(None);
        }
        let outside = cb.counts[0] as f64 + cb.counts[cb.counts.len() - 1] as f64;
        // The last bin is [max, +inf): values equal to the maximum are inside the range but
        // counted there, so this overstates by at most their share.
        return Ok(Some(outside / total));
    }
    let Some(kll) = num.kll.as_ref() else {
        return Ok(None);
    };
    let s = WeightedSample::from_kll(kll, "current")?;
    Ok(Some(s.cdf_lt(range.0) + (1.0 - s.cdf_le(range.1))))
}

pub fn evaluate_quality(
    current: &WindowProfile,
    baseline: Option<&WindowProfile>,
    reference_bins: &BTreeMap<String, FixedBins>,
) -> QualityReport {
    let mut features = Vec::new();
    let mut rejected = Vec::new();
    for (name, col) in &current.features {
        let Some((count, missing_rate, invalid_rate, truncated)) = bad_rates(col) else {
            continue;
        };
        let base = baseline.and_then(|b| b.features.get(name));
        let mut q = FeatureQuality {
            feature: name.clone(),
            count,
            missing_rate,
            invalid_rate,
            truncated,
            baseline_bad_rate: base.and_then(bad_rates).map(|(_, m, i, _)| m + i),
            out_of_range_share: None,
            unseen_share: None,
            unseen_values: Vec::new(),
        };
        if let Some(base) = base
            && let Err(e) = compare_values(&mut q, col, base, reference_bins.get(name))
        {
            rejected.push((name.clone(), e.to_string()));
        }
        features.push(q);
    }
    QualityReport {
        features,
        schema: baseline.map(|b| schema_change(current, b)),
        rejected,
    }
}

fn compare_values(
    q: &mut FeatureQuality,
    col: &ColumnProfile,
    base: &ColumnProfile,
    bins: Option<&FixedBins>,
) -> Result<()> {
    if let Some(range) = reference_range(base) {
        q.out_of_range_share = out_of_range(col, range, bins)?;
    }
    let cur_items = col.categorical.as_ref().and_then(|c| c.items.as_ref());
    let ref_items = base.categorical.as_ref().and_then(|c| c.items.as_ref());
    if let (Some(cur), Some(reference)) = (cur_items, ref_items) {
        let known: BTreeSet<&str> = reference.items.iter().map(|i| i.value.as_str()).collect();
        let counts = category_counts(cur, "current categories")?;
        let total: f64 = counts.values().sum();
        let mut unseen: Vec<(&String, f64)> = counts
            .iter()
            .filter(|(k, _)| {
                k.as_str() != crate::sketch::OTHER_CATEGORY && !known.contains(k.as_str())
            })
            .map(|(k, &c)| (k, c))
            .collect();
        unseen.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
        if total > 0.0 {
            q.unseen_share = Some(unseen.iter().fold(0.0, |acc, u| acc + u.1) / total);
        }
        q.unseen_values = unseen.iter().take(10).map(|u| u.0.clone()).collect();
    }
    Ok(())
}

fn kinds(p: &WindowProfile) -> BTreeMap<String, i32> {
    let mut out: BTreeMap<String, i32> = p
        .features
        .iter()
        .map(|(k, c)| (k.clone(), c.kind))
        .collect();
    if let Some(schema) = &p.schema {
        for f in &schema.features {
            out.entry(f.name.clone()).or_insert(f.kind);
        }
    }
    out
}

pub fn schema_change(current: &WindowProfile, baseline: &WindowProfile) -> SchemaChange {
    let (cur, base) = (kinds(current), kinds(baseline));
    SchemaChange {
        appeared: cur
            .keys()
            .filter(|k| !base.contains_key(*k))
            .cloned()
            .collect(),
        disappeared: base
            .keys()
            .filter(|k| !cur.contains_key(*k))
            .cloned()
            .collect(),
        kind_changed: cur
            .iter()
            .filter(|(k, kind)| {
                base.get(*k)
                    .is_some_and(|b| *b != **kind && *b != 0 && **kind != 0)
            })
            .map(|(k, _)| k.clone())
            .collect(),
        extra_feature_rows: current.extra_features,
    }
}

/// Out-of-distribution share of sampled live rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OodReport {
    pub rows: usize,
    pub out_of_distribution: usize,
    pub share: f64,
    /// Features most often responsible, with their row counts.
    pub by_feature: BTreeMap<String, usize>,
}

/// A row is out of distribution when any numeric feature lies outside the reference range
/// or any categorical value is one the reference never listed. Reservoir and hash-sampled rows
/// are combined (deduplicated by id).
pub fn ood_share(current: &WindowProfile, baseline: &WindowProfile) -> Option<OodReport> {
    let mut ranges = BTreeMap::new();
    let mut known: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (name, col) in &baseline.features {
        if let Some(r) = reference_range(col) {
            ranges.insert(name.as_str(), r);
        }
        if let Some(items) = col
            .categorical
            .as_ref()
            .and_then(|c| c.items.as_ref())
            .filter(|i| i.total > 0)
        {
            known.insert(
                name.as_str(),
                items.items.iter().map(|i| i.value.as_str()).collect(),
            );
        }
    }
    let mut seen = BTreeSet::new();
    let rows: Vec<&SampledRow> = current
        .reservoir
        .iter()
        .flat_map(|r| r.rows.iter())
        .chain(current.hash_sampled.iter())
        .filter(|r| r.id.is_empty() || seen.insert(r.id.as_str()))
        .collect();
    if rows.is_empty() {
        return None;
    }
    let mut by_feature = BTreeMap::new();
    let mut ood = 0;
    for row in &rows {
        let mut any = false;
        for (name, v) in &row.features {
            let outside = match &v.kind {
                Some(value::Kind::Number(x)) => ranges
                    .get(name.as_str())
                    .is_some_and(|(lo, hi)| !x.is_finite() || x < lo || x > hi),
                Some(value::Kind::Text(t)) => known
                    .get(name.as_str())
                    .is_some_and(|k| !k.contains(t.as_str())),
                _ => false,
            };
            if outside {
                any = true;
                *by_feature.entry(name.clone()).or_insert(0) += 1;
            }
        }
        ood += usize::from(any);
    }
    Some(OodReport {
        rows: rows.len(),
        out_of_distribution: ood,
        share: ood as f64 / rows.len() as f64,
        by_feature,
    })
}
