//! Read-only views over the wire sketches (KLL, fixed bins, frequent items): validation,
//! cumulative distributions and the KLL rank-error bound every sketch-based statistic uses.

use std::collections::BTreeMap;

use neurocloak_proto::v1::{FixedBins, FrequentItems, Kll};

use crate::error::{EvalError, Result};

/// More levels than this would give items a weight of 2^64 or more: no real stream gets there.
const MAX_KLL_LEVELS: usize = 60;
/// Guard against absurd messages; 16 M items is far above any KLL state with k ≤ 65 536.
const MAX_KLL_ITEMS: usize = 1 << 24;

/// Failure probability of the rank-error bounds below: they hold with probability ≥ 99 %.
pub const RANK_ERROR_DELTA: f64 = 0.01;
/// The KLL error bound is a property of the SDK's compaction schedule and bottom sampler, so it
/// comes from sdk-core, which owns that algorithm and documents the proof:
/// one query, probability ≥ 1 − δ: ε(δ) = sqrt(2·ln(2/δ)·(S + B/4)/n); every query at once:
/// [`uniform_rank_error_bound`]. Both are 0 for a one-level sketch, which never compacted.
pub use neurocloak_core::sketch::{rank_error_bound, uniform_rank_error_bound};

/// A KLL sketch flattened into sorted `(value, weight)` pairs.
#[derive(Debug, Clone)]
pub struct WeightedSample {
    items: Vec<(f64, f64)>,
    total: f64,
    n: u64,
    rank_error: f64,
    /// The stream's range: the message's exact min/max widened to cover every item, since
    /// compaction may have dropped the extremes from the items.
    range: (f64, f64),
}

impl WeightedSample {
    /// Flattens a KLL message; level `i` items weigh 2^i.
    pub fn from_kll(kll: &Kll, what: &str) -> Result<Self> {
        if kll.levels.len() > MAX_KLL_LEVELS {
            return Err(EvalError::invalid(
                what,
                format!("KLL has {} levels (max {MAX_KLL_LEVELS})", kll.levels.len()),
            ));
        }
        let count: usize = kll.levels.iter().map(|l| l.items.len()).sum();
        if count > MAX_KLL_ITEMS {
            return Err(EvalError::invalid(what, format!("KLL holds {count} items")));
        }
        if count == 0 {
            return Err(EvalError::insufficient(format!("{what}: KLL items"), 0, 1));
        }
        let mut items = Vec::with_capacity(count);
        let mut weight = 1.0_f64;
        for level in &kll.levels {
            for &v in &level.items {
                if !v.is_finite() {
                    return Err(EvalError::invalid(
                        what,
                        format!("KLL item {v} is not finite"),
                    ));
                }
                items.push((v, weight));
            }
            weight *= 2.0;
        }
        items.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total: f64 = items.iter().map(|(_, w)| w).sum();
        // n = Σ len(levels[i])·2^i holds exactly for the SDK's sketch (compactions halve the
        // item count and double the weight); anything else is a corrupted or foreign sketch.
        if (total - kll.n as f64).abs() > 0.5 {
            return Err(EvalError::invalid(
                what,
                format!("KLL n = {} but its items weigh {total}", kll.n),
            ));
        }
        let (lo, hi) = (items[0].0, items[items.len() - 1].0);
        let range = if kll.min.is_finite() && kll.max.is_finite() {
            (kll.min.min(lo), kll.max.max(hi))
        } else {
            (lo, hi)
        };
        Ok(Self {
            items,
            total,
            range,
            n: kll.n,
            rank_error: uniform_rank_error_bound(kll.k, kll.n, kll.levels.len(), RANK_ERROR_DELTA),
        })
    }

    /// Stream length the sketch summarises.
    pub fn n(&self) -> u64 {
        self.n
    }

    /// Bound on |F̂(x) − F(x)| for every x; 0 when no compaction happened.
    pub fn rank_error(&self) -> f64 {
        self.rank_error
    }

    /// Width of the stream's value range (≥ the items' range).
    pub fn range_width(&self) -> f64 {
        self.range.1 - self.range.0
    }

    pub fn min(&self) -> f64 {
        self.items.first().map_or(f64::NAN, |i| i.0)
    }

    pub fn max(&self) -> f64 {
        self.items.last().map_or(f64::NAN, |i| i.0)
    }

    /// Weighted population standard deviation of the items.
    pub fn std(&self) -> f64 {
        let mean = self.items.iter().map(|(v, w)| v * w).sum::<f64>() / self.total;
        let var = self
            .items
            .iter()
            .map(|(v, w)| w * (v - mean) * (v - mean))
            .sum::<f64>()
            / self.total;
        var.sqrt()
    }

    /// Share of weight strictly below `x`.
    pub fn cdf_lt(&self, x: f64) -> f64 {
        let idx = self.items.partition_point(|i| i.0 < x);
        self.prefix_weight(idx) / self.total
    }

    /// Share of weight at or below `x`.
    pub fn cdf_le(&self, x: f64) -> f64 {
        let idx = self.items.partition_point(|i| i.0 <= x);
        self.prefix_weight(idx) / self.total
    }

    fn prefix_weight(&self, idx: usize) -> f64 {
        self.items[..idx].iter().map(|i| i.1).sum()
    }

    /// Smallest item whose cumulative share reaches `q` (lower quantile).
    pub fn quantile(&self, q: f64) -> f64 {
        let target = q.clamp(0.0, 1.0) * self.total;
        let mut acc = 0.0;
        for &(v, w) in &self.items {
            acc += w;
            if acc >= target {
                return v;
            }
        }
        self.max()
    }

    /// Walks the union of both samples' distinct values in order and calls
    /// `f(value, next_value, F_a(value), F_b(value))`, where `next_value` is `None` at the end.
    /// Both KS and Wasserstein-1 are sums/maxima over this walk.
    pub fn merge_walk(&self, other: &Self, mut f: impl FnMut(f64, Option<f64>, f64, f64)) {
        let (a, b) = (&self.items, &other.items);
        let (mut i, mut j) = (0, 0);
        let (mut wa, mut wb) = (0.0, 0.0);
        while i < a.len() || j < b.len() {
            let v = match (a.get(i), b.get(j)) {
                (Some(x), Some(y)) => x.0.min(y.0),
                (Some(x), None) => x.0,
                (None, Some(y)) => y.0,
                (None, None) => break,
            };
            while i < a.len() && a[i].0 <= v {
                wa += a[i].1;
                i += 1;
            }
            while j < b.len() && b[j].0 <= v {
                wb += b[j].1;
                j += 1;
            }
            let next = match (a.get(i), b.get(j)) {
                (Some(x), Some(y)) => Some(x.0.min(y.0)),
                (Some(x), None) => Some(x.0),
                (None, Some(y)) => Some(y.0),
                (None, None) => None,
            };
            f(v, next, wa / self.total, wb / other.total);
        }
    }
}

/// Checks the `FixedBins` invariants: `counts.len() == edges.len() + 1`, finite
/// non-decreasing edges.
pub fn validate_bins(bins: &FixedBins, what: &str) -> Result<()> {
    if bins.edges.is_empty() {
        return Err(EvalError::invalid(what, "fixed bins without edges"));
    }
    if bins.counts.len() != bins.edges.len() + 1 {
        return Err(EvalError::invalid(
            what,
            format!(
                "fixed bins have {} counts for {} edges (want edges + 1)",
                bins.counts.len(),
                bins.edges.len()
            ),
        ));
    }
    if bins.edges.iter().any(|e| !e.is_finite()) {
        return Err(EvalError::invalid(what, "fixed bin edge is not finite"));
    }
    if bins.edges.windows(2).any(|w| w[1] < w[0]) {
        return Err(EvalError::invalid(what, "fixed bin edges are not sorted"));
    }
    Ok(())
}

/// Category counts from a Misra-Gries summary. Mass the summary no longer attributes to a
/// listed item (`total − Σ counts`) is kept under [`OTHER_CATEGORY`] so no row is lost.
pub fn category_counts(items: &FrequentItems, what: &str) -> Result<BTreeMap<String, f64>> {
    let mut out = BTreeMap::new();
    let mut listed: u64 = 0;
    for item in &items.items {
        listed = listed
            .checked_add(item.count)
            .ok_or_else(|| EvalError::invalid(what, "frequent item counts overflow"))?;
        *out.entry(item.value.clone()).or_insert(0.0) += item.count as f64;
    }
    if listed > items.total {
        return Err(EvalError::invalid(
            what,
            format!(
                "frequent items list {listed} rows but total is {}",
                items.total
            ),
        ));
    }
    let other = items.total - listed;
    if other > 0 {
        *out.entry(OTHER_CATEGORY.to_owned()).or_insert(0.0) += other as f64;
    }
    Ok(out)
}

/// Bucket for rows a truncated frequent-items summary no longer attributes to a value.
pub const OTHER_CATEGORY: &str = "__other__";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use neurocloak_proto::v1::KllLevel;

    fn kll(levels: Vec<Vec<f64>>) -> Kll {
        let n = levels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.len() as u64) << i)
            .sum();
        Kll {
            k: 200,
            n,
            levels: levels.into_iter().map(|items| KllLevel { items }).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn weights_follow_levels() {
        let s = WeightedSample::from_kll(&kll(vec![vec![1.0], vec![2.0], vec![3.0]]), "x").unwrap();
        // weights 1, 2, 4 over total 7
        assert!((s.cdf_le(1.0) - 1.0 / 7.0).abs() < 1e-15);
        assert!((s.cdf_lt(3.0) - 3.0 / 7.0).abs() < 1e-15);
        assert_eq!(s.quantile(0.5), 3.0);
        assert!(s.rank_error() > 0.0);
    }

    #[test]
    fn exact_sketch_has_no_error_and_bad_items_are_rejected() {
        let s = WeightedSample::from_kll(&kll(vec![vec![2.0, 1.0]]), "x").unwrap();
        assert_eq!(s.rank_error(), 0.0);
        assert!(WeightedSample::from_kll(&kll(vec![vec![f64::NAN]]), "x").is_err());
        assert!(WeightedSample::from_kll(&kll(vec![]), "x").is_err());
        let mut wrong_n = kll(vec![vec![2.0, 1.0]]);
        wrong_n.n = 3;
        assert!(WeightedSample::from_kll(&wrong_n, "x").is_err());
        // sdk-core's documented figure: ≈ 2.9 % at δ = 0.01, n = 10^6, k = 200 (one query).
        let height = 13; // levels of a k = 200 sketch after 10^6 items
        let one = rank_error_bound(200, 1_000_000, height, 0.01);
        assert!(one > 0.01 && one < 0.04, "{one}");
        assert!(uniform_rank_error_bound(200, 1_000_000, height, 0.01) > one);
        assert_eq!(rank_error_bound(200, 1_000_000, 1, 0.01), 0.0);
    }

    #[test]
    fn bins_and_items_are_validated() {
        let ok = FixedBins {
            edges: vec![0.0, 1.0],
            counts: vec![1, 2, 3],
        };
        assert!(validate_bins(&ok, "x").is_ok());
        let short = FixedBins {
            edges: vec![0.0, 1.0],
            counts: vec![1, 2],
        };
        assert!(validate_bins(&short, "x").is_err());
        let unsorted = FixedBins {
            edges: vec![1.0, 0.0],
            counts: vec![1, 2, 3],
        };
        assert!(validate_bins(&unsorted, "x").is_err());
        let items = FrequentItems {
            total: 5,
            items: vec![neurocloak_proto::v1::FrequentItem {
                value: "a".into(),
                count: 7,
            }],
            ..Default::default()
        };
        assert!(category_counts(&items, "x").is_err());
    }
}
