//! Exact counts in bins at fixed edges (the reference's quantiles), for exact PSI / JS / χ².

use neurocloak_proto as pb;

use crate::error::invalid;

/// Most edges accepted from the wire; a reference has 11 per feature by default.
pub const MAX_EDGES: usize = 4096;

/// Counts of finite values in `(-inf, e0)`, `[e0, e1)`, …, `[e_last, +inf)` — the semantics of
/// the proto `FixedBins`: `counts.len() == edges.len() + 1`.
#[derive(Debug, Clone, PartialEq)]
pub struct FixedBins {
    edges: Vec<f64>,
    counts: Vec<u64>,
}

impl FixedBins {
    /// Empty bins at `edges`, which must be finite, strictly increasing and at most
    /// [`MAX_EDGES`] long.
    pub fn new(edges: Vec<f64>) -> crate::Result<Self> {
        check_edges(&edges)?;
        let counts = vec![0; edges.len() + 1];
        Ok(Self { edges, counts })
    }

    /// The bin edges.
    pub fn edges(&self) -> &[f64] {
        &self.edges
    }
    /// Counts per bin.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }
    /// Total of all counts.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Bin index of `x` (number of edges `<= x`).
    #[inline]
    pub fn bin_of(&self, x: f64) -> usize {
        self.edges.partition_point(|e| *e <= x)
    }

    /// Counts one value; NaN is ignored (counted by the column's counters instead).
    #[inline]
    pub fn update(&mut self, x: f64) {
        if !x.is_nan() {
            let i = self.bin_of(x);
            self.counts[i] += 1;
        }
    }

    /// Counts every value of a slice.
    pub fn push_slice(&mut self, xs: &[f64]) {
        for &x in xs {
            self.update(x);
        }
    }

    /// Adds counts of bins with bit-identical edges.
    pub fn merge(&mut self, o: &FixedBins) -> crate::Result<()> {
        let same = self.edges.len() == o.edges.len()
            && self
                .edges
                .iter()
                .zip(&o.edges)
                .all(|(a, b)| a.to_bits() == b.to_bits());
        if !same {
            return Err(crate::CoreError::Incompatible(
                "fixed bins with different edges".into(),
            ));
        }
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a = a.saturating_add(*b);
        }
        Ok(())
    }

    /// Encodes to the wire type.
    pub fn to_proto(&self) -> pb::FixedBins {
        pb::FixedBins {
            edges: self.edges.clone(),
            counts: self.counts.clone(),
        }
    }

    /// Decodes and validates edges and the number of counts.
    pub fn from_proto(p: &pb::FixedBins) -> crate::Result<Self> {
        check_edges(&p.edges)?;
        if p.counts.len() != p.edges.len() + 1 {
            return Err(invalid("FixedBins", "counts.len() != edges.len() + 1"));
        }
        if p.counts
            .iter()
            .try_fold(0u64, |a, c| a.checked_add(*c))
            .is_none()
        {
            return Err(invalid("FixedBins", "counts overflow"));
        }
        Ok(Self {
            edges: p.edges.clone(),
            counts: p.counts.clone(),
        })
    }
}

fn check_edges(edges: &[f64]) -> crate::Result<()> {
    if edges.len() > MAX_EDGES {
        return Err(invalid("FixedBins", format!("{} edges", edges.len())));
    }
    if edges.iter().any(|e| !e.is_finite()) {
        return Err(invalid("FixedBins", "non-finite edge"));
    }
    if edges.windows(2).any(|w| w[0] >= w[1]) {
        return Err(invalid("FixedBins", "edges not strictly increasing"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bins_follow_the_proto_semantics() {
        let mut b = FixedBins::new(vec![0.0, 1.0]).unwrap();
        for x in [-1.0, 0.0, 0.5, 1.0, 7.0, f64::NAN, f64::NEG_INFINITY] {
            b.update(x);
        }
        assert_eq!(b.counts(), &[2, 2, 2]);
        assert!(FixedBins::new(vec![1.0, 1.0]).is_err());
        assert!(FixedBins::new(vec![f64::NAN]).is_err());
    }
}
