//! Distribution-free statistics over binned shares and weighted samples: PSI, Jensen-Shannon,
//! chi-square, two-sample KS (with the Kolmogorov p-value) and Wasserstein-1.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ChiSquared, ContinuousCDF};

use crate::error::{EvalError, Result};
use crate::sketch::WeightedSample;

/// Population stability index, Σ (q − p)·ln(q/p), both shares floored at `floor` so an empty
/// bin contributes a finite amount (the floored shares are not renormalised).
pub fn psi(reference: &[f64], current: &[f64], floor: f64) -> f64 {
    let (p, q) = (normalise(reference), normalise(current));
    p.iter()
        .zip(&q)
        .map(|(&p, &q)| {
            let (p, q) = (p.max(floor), q.max(floor));
            (q - p) * (q / p).ln()
        })
        .sum()
}

/// PSI bands from common credit-risk practice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PsiBand {
    /// PSI < 0.1
    Stable,
    /// 0.1 ≤ PSI ≤ 0.25
    Moderate,
    /// PSI > 0.25
    Significant,
}

impl PsiBand {
    pub fn of(psi: f64) -> Self {
        if psi < 0.1 {
            Self::Stable
        } else if psi <= 0.25 {
            Self::Moderate
        } else {
            Self::Significant
        }
    }
}

/// Jensen-Shannon distance with base-2 logarithms (in [0, 1]); the square root of the
/// divergence, as `scipy.spatial.distance.jensenshannon(p, q, base=2)`.
pub fn jensen_shannon(reference: &[f64], current: &[f64]) -> f64 {
    let (p, q) = (normalise(reference), normalise(current));
    let kl = |a: f64, m: f64| if a > 0.0 { a * (a / m).log2() } else { 0.0 };
    let div: f64 = p
        .iter()
        .zip(&q)
        .map(|(&p, &q)| {
            let m = 0.5 * (p + q);
            0.5 * kl(p, m) + 0.5 * kl(q, m)
        })
        .sum();
    div.max(0.0).sqrt()
}

/// Chi-square goodness of fit of observed counts against reference shares.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChiSquareResult {
    pub statistic: f64,
    pub dof: u64,
    pub p_value: f64,
}

/// Expected counts are `Σ observed × share`, with reference shares floored at `floor` and
/// renormalised, so a category the reference never saw gives a large but finite statistic.
pub fn chi_square(reference: &[f64], observed: &[f64], floor: f64) -> Result<ChiSquareResult> {
    if reference.len() < 2 {
        return Err(EvalError::insufficient(
            "chi-square categories",
            reference.len() as u64,
            2,
        ));
    }
    let total: f64 = observed.iter().sum();
    if total <= 0.0 {
        return Err(EvalError::insufficient("chi-square observations", 0, 1));
    }
    let floored: Vec<f64> = normalise(reference).iter().map(|p| p.max(floor)).collect();
    let shares = normalise(&floored);
    let statistic: f64 = observed
        .iter()
        .zip(&shares)
        .map(|(&o, &s)| {
            let e = s * total;
            (o - e) * (o - e) / e
        })
        .sum();
    let dof = reference.len() as u64 - 1;
    let dist =
        ChiSquared::new(dof as f64).map_err(|e| EvalError::invalid("chi-square", e.to_string()))?;
    Ok(ChiSquareResult {
        statistic,
        dof,
        p_value: dist.sf(statistic),
    })
}

/// Two-sample Kolmogorov-Smirnov result from two quantile sketches.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KsResult {
    /// sup |F_ref − F_cur| over the merged items.
    pub statistic: f64,
    /// ε₁ + ε₂: the true D lies within `statistic ± error_bound`.
    pub error_bound: f64,
    /// n·m/(n+m).
    pub n_eff: f64,
    pub p_value: f64,
    /// p-values at D + ε and D − ε: the range the exact p-value can take.
    pub p_value_range: (f64, f64),
    /// False when D ≤ ε₁ + ε₂, i.e. the observed difference may be sketch error alone.
    pub reliable: bool,
}

pub fn ks(reference: &WeightedSample, current: &WeightedSample) -> KsResult {
    let mut d: f64 = 0.0;
    reference.merge_walk(current, |_, _, fa, fb| d = d.max((fa - fb).abs()));
    let error_bound = reference.rank_error() + current.rank_error();
    let (n, m) = (reference.n() as f64, current.n() as f64);
    let n_eff = n * m / (n + m);
    let p = |d: f64| kolmogorov_sf(stephens_lambda(d.clamp(0.0, 1.0), n_eff));
    KsResult {
        statistic: d,
        error_bound,
        n_eff,
        p_value: p(d),
        p_value_range: (p(d + error_bound), p(d - error_bound)),
        reliable: d > error_bound,
    }
}

/// Stephens' small-sample correction: λ = (√n + 0.12 + 0.11/√n)·D.
pub fn stephens_lambda(d: f64, n_eff: f64) -> f64 {
    let s = n_eff.sqrt();
    (s + 0.12 + 0.11 / s) * d
}

/// Survival function of the Kolmogorov distribution, Q(λ) = 2 Σ (−1)^{j−1} e^{−2j²λ²}
/// (the same function as `scipy.special.kolmogorov`). Below λ = 1 the alternating series
/// converges slowly, so the Jacobi-theta form of the CDF is used there instead.
pub fn kolmogorov_sf(lambda: f64) -> f64 {
    if lambda.is_nan() {
        return f64::NAN;
    }
    if lambda <= 0.0 {
        return 1.0;
    }
    if lambda < 1.0 {
        let pi2 = std::f64::consts::PI * std::f64::consts::PI;
        let cdf: f64 = (1..=20)
            .map(|j| {
                let k = f64::from(2 * j - 1);
                (-k * k * pi2 / (8.0 * lambda * lambda)).exp()
            })
            .sum::<f64>()
            * (2.0 * std::f64::consts::PI).sqrt()
            / lambda;
        return (1.0 - cdf).clamp(0.0, 1.0);
    }
    let sum: f64 = (1..=100)
        .map(|j| {
            let j = f64::from(j);
            let sign = if j as u32 % 2 == 1 { 1.0 } else { -1.0 };
            sign * (-2.0 * j * j * lambda * lambda).exp()
        })
        .sum();
    (2.0 * sum).clamp(0.0, 1.0)
}

/// Wasserstein-1 distance between two sketches.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WassersteinResult {
    pub distance: f64,
    /// Distance divided by the reference's standard deviation (floored at 0.001).
    pub normalized: f64,
    /// Bound on |distance − exact| from the rank errors: ε₁·range₁ + ε₂·range₂.
    pub error_bound: f64,
    /// `error_bound` in units of the reference standard deviation.
    pub normalized_error_bound: f64,
}

/// ∫ |F_ref − F_cur| dx over the merged items; `reference_std` normalises it.
pub fn wasserstein(
    reference: &WeightedSample,
    current: &WeightedSample,
    reference_std: f64,
) -> WassersteinResult {
    let mut distance = 0.0;
    reference.merge_walk(current, |v, next, fa, fb| {
        if let Some(next) = next {
            distance += (fa - fb).abs() * (next - v);
        }
    });
    // |Ŵ − W| ≤ ∫|F̂₁ − F₁| + ∫|F̂₂ − F₂|, and each CDF error is ≤ ε and vanishes outside that
    // sketch's exactly known [min, max].
    let error_bound = reference.rank_error() * reference.range_width()
        + current.rank_error() * current.range_width();
    let std = if reference_std.is_finite() {
        reference_std.max(0.001)
    } else {
        0.001
    };
    WassersteinResult {
        distance,
        normalized: distance / std,
        error_bound,
        normalized_error_bound: error_bound / std,
    }
}

/// Shares summing to one; an all-zero vector stays zero.
pub fn normalise(counts: &[f64]) -> Vec<f64> {
    let total: f64 = counts.iter().sum();
    if total > 0.0 {
        counts.iter().map(|c| c / total).collect()
    } else {
        counts.to_vec()
    }
}

/// Benjamini-Hochberg adjusted p-values (q-values), in input order.
pub fn benjamini_hochberg(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut q = vec![0.0; m];
    let mut running = 1.0_f64;
    for (rank, &i) in order.iter().enumerate().rev() {
        running = running.min(p[i] * m as f64 / (rank + 1) as f64);
        q[i] = running.min(1.0);
    }
    q
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn kolmogorov_matches_known_values() {
        // Q(1.3581) ≈ 0.05 and Q(1.6276) ≈ 0.01 (classic critical values).
        assert!((kolmogorov_sf(1.3581) - 0.05).abs() < 2e-4);
        assert!((kolmogorov_sf(1.6276) - 0.01).abs() < 1e-4);
        // Both branches agree where they meet.
        let below = kolmogorov_sf(1.0 - 1e-12);
        let sum: f64 = (1..=100)
            .map(|j| {
                let j = f64::from(j);
                let s = if j as u32 % 2 == 1 { 1.0 } else { -1.0 };
                s * (-2.0 * j * j).exp()
            })
            .sum();
        assert!((below - 2.0 * sum).abs() < 1e-10);
        assert_eq!(kolmogorov_sf(0.0), 1.0);
        assert!(kolmogorov_sf(0.2) > 0.999);
    }

    #[test]
    fn psi_and_js_of_identical_shares_are_zero() {
        let p = [1.0, 2.0, 3.0];
        assert_eq!(psi(&p, &p, 1e-4), 0.0);
        assert_eq!(jensen_shannon(&p, &p), 0.0);
        // Disjoint support: JS distance is 1 in base 2.
        assert!((jensen_shannon(&[1.0, 0.0], &[0.0, 1.0]) - 1.0).abs() < 1e-12);
        assert_eq!(PsiBand::of(0.41), PsiBand::Significant);
        assert_eq!(PsiBand::of(0.1), PsiBand::Moderate);
    }

    #[test]
    fn bh_is_monotone_and_bounded() {
        let q = benjamini_hochberg(&[0.01, 0.04, 0.03, 0.2]);
        assert!((q[0] - 0.04).abs() < 1e-12);
        assert!((q[1] - 0.04 * 4.0 / 3.0).abs() < 1e-12);
        assert!((q[2] - 0.04 * 4.0 / 3.0).abs() < 1e-12);
        assert!((q[3] - 0.2).abs() < 1e-12);
        assert!(q.iter().all(|&v| (0.0..=1.0).contains(&v)));
        assert!(chi_square(&[1.0], &[1.0], 1e-4).is_err());
    }
}
