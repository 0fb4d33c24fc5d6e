//! Reference profile from training data: the usual sketches plus exact quantile bins.

use std::collections::BTreeMap;

use neurocloak_proto as pb;

use super::window::{MAX_COLUMNS, WindowProfile};
use crate::error::invalid;
use crate::sketch::FixedBins;

/// Number of equal-probability bins between the reference's minimum and maximum.
pub const REFERENCE_BINS: usize = 10;

/// Edges at the 0 %, 10 %, …, 100 % quantiles of the finite values (numpy's default "linear"
/// interpolation), duplicates removed. With the two open-ended bins of [`FixedBins`] this gives
/// 10 inner bins plus one below the reference minimum and one at or above its maximum
/// (DESIGN §5). `None` when there is no finite value.
pub fn decile_edges(values: &[f64]) -> Option<Vec<f64>> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_unstable_by(f64::total_cmp);
    let last = (v.len() - 1) as f64;
    let mut edges: Vec<f64> = Vec::with_capacity(REFERENCE_BINS + 1);
    for i in 0..=REFERENCE_BINS {
        let pos = last * i as f64 / REFERENCE_BINS as f64;
        let lo = pos.floor() as usize;
        let hi = pos.ceil() as usize;
        let frac = pos - lo as f64;
        let q = v[lo] + (v[hi] - v[lo]) * frac;
        // -0.0 and 0.0 compare equal but would make two edges; keep one.
        if edges.last().is_none_or(|e| q > *e) {
            edges.push(if q == 0.0 { 0.0 } else { q });
        }
    }
    Some(edges)
}

/// A reference profile: training data summarised like a window, plus per numeric feature the
/// exact bins at its deciles (with the training data's own counts in them).
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceProfile {
    /// Model identity.
    pub identity: pb::ModelIdentity,
    /// The training data's profile (its numeric columns carry the same bins).
    pub profile: WindowProfile,
    /// Exact decile bins per numeric feature.
    pub bins: BTreeMap<String, FixedBins>,
    /// When the reference was built, ms since the Unix epoch.
    pub created_ms: i64,
}

impl ReferenceProfile {
    /// The bins' edges per feature, to install into a monitor's later windows.
    pub fn edges(&self) -> BTreeMap<String, Vec<f64>> {
        self.bins
            .iter()
            .map(|(k, b)| (k.clone(), b.edges().to_vec()))
            .collect()
    }

    /// Encodes to the wire type.
    pub fn to_proto(&self) -> pb::ReferenceProfile {
        pb::ReferenceProfile {
            identity: Some(self.identity.clone()),
            profile: Some(self.profile.to_proto()),
            bins: self
                .bins
                .iter()
                .map(|(k, b)| (k.clone(), b.to_proto()))
                .collect(),
            created_ms: self.created_ms,
        }
    }

    /// Decodes and validates.
    pub fn from_proto(p: &pb::ReferenceProfile) -> crate::Result<Self> {
        let profile = p
            .profile
            .as_ref()
            .ok_or_else(|| invalid("ReferenceProfile", "missing profile"))?;
        if p.bins.len() > MAX_COLUMNS {
            return Err(invalid("ReferenceProfile", "too many bins"));
        }
        Ok(Self {
            identity: p
                .identity
                .clone()
                .ok_or_else(|| invalid("ReferenceProfile", "missing identity"))?,
            profile: WindowProfile::from_proto(profile)?,
            bins: p
                .bins
                .iter()
                .map(|(k, b)| Ok((k.clone(), FixedBins::from_proto(b)?)))
                .collect::<crate::Result<_>>()?,
            created_ms: p.created_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn deciles_match_numpy_linear() {
        let v: Vec<f64> = (0..=100).map(f64::from).collect();
        let e = decile_edges(&v).unwrap();
        assert_eq!(e, (0..=10).map(|i| f64::from(i * 10)).collect::<Vec<_>>());
        // numpy.quantile([1, 2, 3, 4], 0.1) == 1.3
        let e = decile_edges(&[4.0, 1.0, 3.0, 2.0, f64::NAN]).unwrap();
        assert!((e[1] - 1.3).abs() < 1e-12);
        assert_eq!(decile_edges(&[5.0, 5.0]).unwrap(), vec![5.0]);
        assert!(decile_edges(&[f64::NAN]).is_none());
    }
}
