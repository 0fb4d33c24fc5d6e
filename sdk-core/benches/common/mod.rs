//! Shared setup of the sdk-core benchmarks: the DESIGN §8 schema of 20 numeric and
//! 5 categorical features.

#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;

use neurocloak_core::sketch::rng::SplitMix64;
use neurocloak_core::{FeatureKind, MemorySink, Monitor, MonitorConfig};

pub const NUMERIC: usize = 20;
pub const CATEGORICAL: usize = 5;
pub const CATEGORIES: [&str; 8] = [
    "red", "green", "blue", "cyan", "magenta", "yellow", "black", "white",
];

pub fn names() -> Vec<String> {
    (0..NUMERIC)
        .map(|i| format!("num_{i}"))
        .chain((0..CATEGORICAL).map(|i| format!("cat_{i}")))
        .collect()
}

pub fn monitor() -> Monitor {
    let mut cfg = MonitorConfig::new("bench", "model", "1");
    cfg.features = Some(
        names()
            .into_iter()
            .enumerate()
            .map(|(i, n)| {
                let kind = if i < NUMERIC {
                    FeatureKind::Numeric
                } else {
                    FeatureKind::Categorical
                };
                (n, kind)
            })
            .collect(),
    );
    Monitor::with_sink(cfg, Arc::new(MemorySink::new())).unwrap()
}

/// Column-major synthetic data: normal-ish numerics and skewed categories.
pub struct Data {
    pub numeric: Vec<Vec<f64>>,
    pub categorical: Vec<Vec<&'static str>>,
}

pub fn data(rows: usize, seed: u64) -> Data {
    let mut rng = SplitMix64::new(seed);
    let numeric = (0..NUMERIC)
        .map(|j| {
            (0..rows)
                .map(|_| {
                    let u: f64 = (0..4).map(|_| rng.unit()).sum::<f64>() - 2.0;
                    u * (j as f64 + 1.0) + j as f64
                })
                .collect()
        })
        .collect();
    let categorical = (0..CATEGORICAL)
        .map(|_| {
            (0..rows)
                .map(|_| {
                    let u = rng.unit();
                    CATEGORIES[((u * u) * CATEGORIES.len() as f64) as usize]
                })
                .collect()
        })
        .collect();
    Data {
        numeric,
        categorical,
    }
}
