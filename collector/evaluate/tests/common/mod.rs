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

use std::collections::BTreeMap;

use neurocloak_proto::v1::{
    ClassificationOutcomes, FeatureSpec, GroupProfile, Latency, ModelIdentity, Outcomes,
    ReferenceProfile, Reservoir, SampledRow, Schema, ScoreHistogram, TaskType, Value,
    WindowProfile, value,
};

/// Knobs of a synthetic window.
#[derive(Clone, Copy)]
pub struct Scenario {
    pub rows: usize,
    pub numeric: usize,
    pub categorical: usize,
    /// Mean shift (in std units) applied to the first `shifted` numeric features.
    pub shift: f64,
    pub shifted: usize,
    /// Share of rows whose categorical values come from an unseen category.
    pub unseen: f64,
    /// Extra selection-rate advantage of group M (fairness gap).
    pub bias: f64,
    /// Share of label flips (worse accuracy).
    pub noise: f64,
    pub seed: u64,
    /// Keep every item at level 0 (exact) instead of compacting with k = 200.
    pub exact: bool,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            rows: 5000,
            numeric: 20,
            categorical: 5,
            shift: 0.0,
            shifted: 0,
            unseen: 0.0,
            bias: 0.0,
            noise: 0.1,
            seed: 1,
            exact: false,
        }
    }
}

pub fn feature_name(i: usize, numeric: usize) -> String {
    if i < numeric {
        format!("num_{i:02}")
    } else {
        format!("cat_{:02}", i - numeric)
    }
}

struct Rows {
    numeric: Vec<Vec<f64>>,
    categorical: Vec<Vec<String>>,
    label: Vec<usize>,
    score: Vec<f64>,
    sex: Vec<&'static str>,
}

fn generate(s: &Scenario) -> Rows {
    let mut numeric = Vec::new();
    for f in 0..s.numeric {
        let mu = if f < s.shifted { s.shift } else { 0.0 };
        numeric.push(normal_samples(
            s.rows,
            mu + f as f64,
            1.0 + f as f64 / 10.0,
            s.seed * 1000 + f as u64,
        ));
    }
    let u = normal_samples(s.rows * (s.categorical + 3), 0.0, 1.0, s.seed * 7 + 3);
    let mut k = 0;
    let mut next = || {
        k += 1;
        statrs::distribution::ContinuousCDF::cdf(
            &statrs::distribution::Normal::standard(),
            u[k - 1],
        )
    };
    let mut categorical = Vec::new();
    for _ in 0..s.categorical {
        categorical.push(
            (0..s.rows)
                .map(|_| {
                    let r = next();
                    if r < s.unseen {
                        "never-seen".to_owned()
                    } else {
                        ["alpha", "beta", "gamma", "delta"][((r * r) * 4.0) as usize % 4].to_owned()
                    }
                })
                .collect(),
        );
    }
    let mut label = Vec::new();
    let mut score = Vec::new();
    let mut sex = Vec::new();
    for i in 0..s.rows {
        let g = if next() < 0.5 { "F" } else { "M" };
        let signal = numeric.first().map_or(0.0, |c| c[i]) - 0.0;
        let p = 1.0 / (1.0 + (-(signal * 1.5) - if g == "M" { s.bias * 3.0 } else { 0.0 }).exp());
        let y = usize::from(next() < p);
        let y = if next() < s.noise { 1 - y } else { y };
        label.push(y);
        score.push(p);
        sex.push(g);
    }
    Rows {
        numeric,
        categorical,
        label,
        score,
        sex,
    }
}

fn outcomes(rows: &Rows, idx: &[usize]) -> Outcomes {
    let mut confusion = vec![0u64; 4];
    let mut pos = vec![
        ScoreHistogram {
            counts: vec![0; 100],
        },
        ScoreHistogram {
            counts: vec![0; 100],
        },
    ];
    let mut neg = pos.clone();
    let mut predicted = vec![0u64; 2];
    let mut log_loss_sum = 0.0;
    for &i in idx {
        let p1 = rows.score[i];
        let pred = usize::from(p1 >= 0.5);
        let y = rows.label[i];
        confusion[y * 2 + pred] += 1;
        predicted[pred] += 1;
        for (k, p) in [(0, 1.0 - p1), (1, p1)] {
            let bin = ((p * 100.0) as usize).min(99);
            if y == k {
                pos[k].counts[bin] += 1
            } else {
                neg[k].counts[bin] += 1
            }
        }
        log_loss_sum -= (if y == 1 { p1 } else { 1.0 - p1 })
            .clamp(1e-15, 1.0 - 1e-15)
            .ln();
    }
    Outcomes {
        classification: Some(ClassificationOutcomes {
            confusion,
            n_classes: 2,
            positive_scores: pos,
            negative_scores: neg,
            log_loss_sum,
            scored: idx.len() as u64,
            labelled: idx.len() as u64,
            predicted,
        }),
        regression: None,
    }
}

fn latency_bytes(seed: u64, n: usize) -> Vec<u8> {
    use hdrhistogram::serialization::{Serializer, V2Serializer};
    let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
    for (i, v) in normal_samples(n, 0.0, 1.0, seed).into_iter().enumerate() {
        h.record((800.0 * (v * 0.4).exp()) as u64 + (i % 7) as u64)
            .unwrap();
    }
    let mut out = Vec::new();
    V2Serializer::new().serialize(&h, &mut out).unwrap();
    out
}

/// A window profile as an SDK would send it; with `edges`, numeric columns carry fixed bins.
pub fn window(s: &Scenario, edges: Option<&BTreeMap<String, Vec<f64>>>) -> WindowProfile {
    let rows = generate(s);
    let mut features = BTreeMap::new();
    let mut specs = Vec::new();
    for (f, values) in rows.numeric.iter().enumerate() {
        let name = feature_name(f, s.numeric);
        let kll = if s.exact {
            exact_kll(values)
        } else {
            compacted_kll(values, 200, s.seed + f as u64)
        };
        let bins = edges
            .and_then(|e| e.get(&name))
            .map(|e| bin_counts(values, e));
        features.insert(name.clone(), numeric_column(values, kll, bins));
        specs.push(FeatureSpec {
            name,
            kind: FeatureKind::Numeric as i32,
            sensitive: false,
        });
    }
    for (c, values) in rows.categorical.iter().enumerate() {
        let name = feature_name(s.numeric + c, s.numeric);
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        for v in values {
            *counts.entry(v).or_default() += 1;
        }
        let pairs: Vec<(&str, u64)> = counts.into_iter().collect();
        features.insert(name.clone(), categorical_column(&pairs));
        specs.push(FeatureSpec {
            name,
            kind: FeatureKind::Categorical as i32,
            sensitive: false,
        });
    }
    let all: Vec<usize> = (0..s.rows).collect();
    let mut groups = BTreeMap::new();
    for g in ["F", "M"] {
        let idx: Vec<usize> = all.iter().copied().filter(|&i| rows.sex[i] == g).collect();
        groups.insert(
            format!("sex={g}"),
            GroupProfile {
                count: idx.len() as u64,
                outcomes: Some(outcomes(&rows, &idx)),
            },
        );
    }
    let sampled: Vec<SampledRow> = (0..s.rows.min(256))
        .map(|i| {
            let mut f: BTreeMap<String, Value> = BTreeMap::new();
            for (j, col) in rows.numeric.iter().enumerate() {
                f.insert(
                    feature_name(j, s.numeric),
                    Value {
                        kind: Some(value::Kind::Number(col[i])),
                    },
                );
            }
            for (j, col) in rows.categorical.iter().enumerate() {
                f.insert(
                    feature_name(s.numeric + j, s.numeric),
                    Value {
                        kind: Some(value::Kind::Text(col[i].clone())),
                    },
                );
            }
            SampledRow {
                id: format!("{}-{i}", s.seed),
                timestamp_ms: 0,
                features: f,
                prediction: Some(Value {
                    kind: Some(value::Kind::Number(f64::from(u8::from(
                        rows.score[i] >= 0.5,
                    )))),
                }),
                label: Some(Value {
                    kind: Some(value::Kind::Number(rows.label[i] as f64)),
                }),
                scores: vec![1.0 - rows.score[i], rows.score[i]],
            }
        })
        .collect();
    let scores: Vec<f64> = rows.score.clone();
    WindowProfile {
        identity: Some(ModelIdentity {
            project: "demo".into(),
            model: "credit".into(),
            version: "1".into(),
            environment: "prod".into(),
        }),
        schema: Some(Schema {
            features: specs,
            task: TaskType::BinaryClassification as i32,
            classes: vec!["no".into(), "yes".into()],
            inferred: false,
        }),
        window_start_ms: 1_764_400_000_000,
        window_length_ms: 60_000,
        rows: s.rows as u64,
        features,
        prediction: Some(numeric_column(
            &scores,
            if s.exact {
                exact_kll(&scores)
            } else {
                compacted_kll(&scores, 200, 99)
            },
            None,
        )),
        label: None,
        outcomes: Some(outcomes(&rows, &all)),
        groups,
        latency: Some(Latency {
            hdr_v2: latency_bytes(s.seed, s.rows),
        }),
        errors: (s.rows / 500) as u64,
        reservoir: Some(Reservoir {
            capacity: 256,
            seen: s.rows as u64,
            rows: sampled,
        }),
        hash_sampled: Vec::new(),
        predictions: Vec::new(),
        predictions_dropped: 0,
        extra_features: 0,
        parts: 1,
        robustness: Vec::new(),
        robustness_dropped: 0,
    }
}

/// A reference profile (exact decile bins per numeric feature) and the edges for windows.
pub fn reference(s: &Scenario) -> (ReferenceProfile, BTreeMap<String, Vec<f64>>) {
    let rows = generate(s);
    let edges: BTreeMap<String, Vec<f64>> = rows
        .numeric
        .iter()
        .enumerate()
        .map(|(f, v)| (feature_name(f, s.numeric), decile_edges(v)))
        .collect();
    let profile = window(s, Some(&edges));
    let bins = profile
        .features
        .iter()
        .filter_map(|(k, c)| {
            c.numeric
                .as_ref()
                .and_then(|n| n.bins.clone())
                .map(|b| (k.clone(), b))
        })
        .collect();
    (
        ReferenceProfile {
            identity: profile.identity.clone(),
            profile: Some(profile),
            bins,
            created_ms: 0,
        },
        edges,
    )
}
