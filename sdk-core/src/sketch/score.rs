//! Equal-width histogram of scores on [0, 1], for AUC and calibration.

use neurocloak_proto as pb;

use crate::error::invalid;

/// Bins of every score histogram.
pub const SCORE_BINS: usize = 100;

/// Counts of scores in 100 equal bins; bin `i` is `[i/100, (i+1)/100)`, the last bin includes 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScoreHistogram {
    counts: Vec<u64>,
}

impl Default for ScoreHistogram {
    fn default() -> Self {
        Self {
            counts: vec![0; SCORE_BINS],
        }
    }
}

impl ScoreHistogram {
    /// Counts per bin.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// Bin of a score, `None` when it is NaN or outside [0, 1].
    #[inline]
    pub fn bin_of(score: f64) -> Option<usize> {
        if (0.0..=1.0).contains(&score) {
            Some(((score * SCORE_BINS as f64) as usize).min(SCORE_BINS - 1))
        } else {
            None
        }
    }

    /// Counts a score; returns false (and counts nothing) when it is not in [0, 1].
    #[inline]
    pub fn update(&mut self, score: f64) -> bool {
        match Self::bin_of(score) {
            Some(i) => {
                self.counts[i] += 1;
                true
            }
            None => false,
        }
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, o: &ScoreHistogram) {
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a = a.saturating_add(*b);
        }
    }

    /// Encodes to the wire type.
    pub fn to_proto(&self) -> pb::ScoreHistogram {
        pb::ScoreHistogram {
            counts: self.counts.clone(),
        }
    }

    /// Decodes; exactly 100 counts are required.
    pub fn from_proto(p: &pb::ScoreHistogram) -> crate::Result<Self> {
        if p.counts.len() != SCORE_BINS {
            return Err(invalid(
                "ScoreHistogram",
                format!("{} bins", p.counts.len()),
            ));
        }
        Ok(Self {
            counts: p.counts.clone(),
        })
    }
}
