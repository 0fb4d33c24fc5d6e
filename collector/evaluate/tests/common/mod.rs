//! Test helpers: build wire profiles from raw samples, the way an SDK would.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use neurocloak_proto::v1::{
    CategoricalProfile, ColumnProfile, Counters, FeatureKind, FixedBins, FrequentItem,
    FrequentItems, Kll, KllLevel, Moments, NumericProfile,
};

/// Lossless KLL state: every item at level 0 (weight 1) — valid before any compaction.
pub fn exact_kll(values: &[f64]) -> Kll {
    Kll {
        k: 200,
        n: values.len() as u64,
        levels: vec![KllLevel {
            items: values.to_vec(),
        }],
        min: values.iter().copied().fold(f64::INFINITY, f64::min),
        max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        ..Default::default()
    }
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A compacted KLL state built the textbook way: level h holds up to k·(2/3)^(depth) items
/// (at least 8); a full level is sorted and every other item (random offset) moves up with
/// twice the weight; an odd item stays behind, so total weight stays n.
pub fn compacted_kll(values: &[f64], k: u32, seed: u64) -> Kll {
    let mut levels: Vec<Vec<f64>> = vec![Vec::new()];
    let mut rng = seed;
    for &v in values {
        levels[0].push(v);
        let mut h = 0;
        loop {
            let depth = levels.len() - 1 - h;
            let cap = ((f64::from(k) * (2.0f64 / 3.0).powi(depth as i32)).ceil() as usize).max(8);
            if levels[h].len() < cap {
                break;
            }
            let mut buf = std::mem::take(&mut levels[h]);
            buf.sort_by(f64::total_cmp);
            if buf.len() % 2 == 1 {
                levels[h].push(buf.pop().unwrap());
            }
            let offset = (splitmix(&mut rng) & 1) as usize;
            if h + 1 == levels.len() {
                levels.push(Vec::new());
            }
            levels[h + 1].extend(buf.iter().skip(offset).step_by(2));
            h += 1;
            if h >= levels.len() {
                break;
            }
        }
    }
    Kll {
        k,
        n: values.len() as u64,
        levels: levels.into_iter().map(|items| KllLevel { items }).collect(),
        min: values.iter().copied().fold(f64::INFINITY, f64::min),
        max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        rng_state: rng,
    }
}

pub fn moments(values: &[f64]) -> Moments {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    Moments {
        n: values.len() as u64,
        mean,
        m2: values.iter().map(|v| (v - mean) * (v - mean)).sum(),
        min: values.iter().copied().fold(f64::INFINITY, f64::min),
        max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    }
}

/// counts[0] = (-inf, e0), counts[i] = [e(i-1), e(i)), last = [e_last, +inf).
pub fn bin_counts(values: &[f64], edges: &[f64]) -> FixedBins {
    let mut counts = vec![0u64; edges.len() + 1];
    for v in values {
        counts[edges.partition_point(|e| e <= v)] += 1;
    }
    FixedBins {
        edges: edges.to_vec(),
        counts,
    }
}

/// Deciles of `values` (min … max, 11 edges), as a reference computes them.
pub fn decile_edges(values: &[f64]) -> Vec<f64> {
    let mut s = values.to_vec();
    s.sort_by(f64::total_cmp);
    (0..=10)
        .map(|i| s[((s.len() - 1) as f64 * f64::from(i) / 10.0).round() as usize])
        .collect()
}

pub fn numeric_column(values: &[f64], kll: Kll, bins: Option<FixedBins>) -> ColumnProfile {
    ColumnProfile {
        kind: FeatureKind::Numeric as i32,
        counters: Some(Counters {
            count: values.len() as u64,
            ..Default::default()
        }),
        numeric: Some(NumericProfile {
            moments: Some(moments(values)),
            kll: Some(kll),
            bins,
        }),
        categorical: None,
    }
}

pub fn categorical_column(counts: &[(&str, u64)]) -> ColumnProfile {
    let total = counts.iter().map(|c| c.1).sum();
    ColumnProfile {
        kind: FeatureKind::Categorical as i32,
        counters: Some(Counters {
            count: total,
            ..Default::default()
        }),
        numeric: None,
        categorical: Some(CategoricalProfile {
            items: Some(FrequentItems {
                capacity: 64,
                total,
                items: counts
                    .iter()
                    .map(|(v, c)| FrequentItem {
                        value: (*v).into(),
                        count: *c,
                    })
                    .collect(),
                max_error: 0,
            }),
            hll: None,
        }),
    }
}

/// Deterministic normal samples: the quantile grid Φ⁻¹((i + ½)/n)·sd + mu, whose empirical
/// CDF is within 1/(2n) of the true one everywhere.
pub fn normal_grid(n: usize, mu: f64, sd: f64) -> Vec<f64> {
    use statrs::distribution::{ContinuousCDF, Normal};
    let d = Normal::new(mu, sd).unwrap();
    (0..n)
        .map(|i| d.inverse_cdf((i as f64 + 0.5) / n as f64))
        .collect()
}

/// Pseudo-random normal samples (Box-Muller over splitmix), reproducible by seed.
pub fn normal_samples(n: usize, mu: f64, sd: f64, seed: u64) -> Vec<f64> {
    let mut s = seed;
    let mut u = || ((splitmix(&mut s) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    (0..n)
        .map(|_| {
            let (a, b) = (u(), u());
            mu + sd * (-2.0 * a.ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos()
        })
        .collect()
}
