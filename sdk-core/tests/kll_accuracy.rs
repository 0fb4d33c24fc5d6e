#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! KLL rank error against exact ranks, compared with the bound the sketch documents
//! (`Kll::rank_error_bound` for one query, `Kll::uniform_rank_error_bound` for all at once).

use neurocloak_core::sketch::Kll;
use neurocloak_core::sketch::rng::SplitMix64;

const DELTA: f64 = 0.01;

/// Largest |estimated − exact| normalised rank over every retained value and a grid of
/// quantiles, with exact ranks from the sorted input.
fn max_rank_error(sketch: &Kll, sorted: &[f64]) -> f64 {
    let n = sorted.len() as f64;
    let view = sketch.sorted_view();
    let exact = |x: f64| sorted.partition_point(|v| *v <= x) as f64 / n;
    let mut queries: Vec<f64> = view.values().to_vec();
    queries.extend((0..=1000).map(|i| sorted[((sorted.len() - 1) * i) / 1000]));
    queries
        .iter()
        .map(|&x| (view.rank(x) - exact(x)).abs())
        .fold(0.0, f64::max)
}

fn check(name: &str, data: Vec<f64>) -> f64 {
    let mut s = Kll::default();
    for chunk in data.chunks(1000) {
        s.update_slice(chunk);
    }
    let mut sorted = data;
    sorted.sort_unstable_by(f64::total_cmp);
    assert_eq!(s.n(), sorted.len() as u64);
    assert_eq!(s.min(), sorted.first().copied());
    assert_eq!(s.max(), sorted.last().copied());
    let err = max_rank_error(&s, &sorted);
    let single = s.rank_error_bound(DELTA);
    let uniform = s.uniform_rank_error_bound(DELTA);
    println!(
        "{name}: n={} retained={} max rank error {err:.5}, bound one query {single:.5}, all queries {uniform:.5}",
        s.n(),
        s.retained()
    );
    assert!(
        err <= uniform,
        "{name}: error {err} above the uniform bound {uniform}"
    );
    err
}

fn rng_data(n: usize, seed: u64, f: impl Fn(f64) -> f64) -> Vec<f64> {
    let mut r = SplitMix64::new(seed);
    (0..n).map(|_| f(r.unit())).collect()
}

#[test]
fn sorted_reversed_and_equal_inputs() {
    let n = 1_000_000;
    let up: Vec<f64> = (0..n).map(f64::from).collect();
    let down: Vec<f64> = up.iter().rev().copied().collect();
    check("sorted", up);
    check("reversed", down);
    let err = check("all equal", vec![42.0; n as usize]);
    assert_eq!(err, 0.0, "a constant stream has no rank error");
}

#[test]
fn heavy_tailed_inputs() {
    let n = 1_000_000;
    // Pareto(alpha = 1.1) and standard Cauchy by inversion.
    check("pareto", rng_data(n, 1, |u| (1.0 - u).powf(-1.0 / 1.1)));
    check(
        "cauchy",
        rng_data(n, 2, |u| (std::f64::consts::PI * (u - 0.5)).tan()),
    );
    check("uniform", rng_data(n, 3, |u| u));
}

/// 10^7 items: a permutation of 0..n (so exact ranks are known without sorting), fed one by
/// one, and in its sorted order in slices.
#[test]
fn ten_million_items() {
    let n: u64 = 10_000_000;
    let p: u64 = 7_368_787; // coprime with 10^7, so i*p mod n is a permutation
    let mut s = Kll::default();
    for i in 0..n {
        s.update(((i * p) % n) as f64);
    }
    let view = s.sorted_view();
    let err = view
        .values()
        .iter()
        .map(|&x| (view.rank(x) - (x + 1.0) / n as f64).abs())
        .fold(0.0, f64::max);
    let uniform = s.uniform_rank_error_bound(DELTA);
    println!(
        "10^7 permuted: retained={} max rank error {err:.5}, bound one query {:.5}, all queries {uniform:.5}",
        s.retained(),
        s.rank_error_bound(DELTA)
    );
    assert!(err <= uniform);
    assert!(s.retained() < 1000, "retained {}", s.retained());
}

/// The empirical failure rate of the one-query bound must stay below its δ: 100 independent
/// sketches (different seeds) of 10^5 shuffled items, median query.
#[test]
fn one_query_bound_holds_with_its_probability() {
    let n = 100_000u64;
    let mut failures = 0;
    let mut worst: f64 = 0.0;
    for seed in 0..100u64 {
        let mut s = Kll::with_seed(200, seed);
        let p = 48_271u64;
        let data: Vec<f64> = (0..n).map(|i| ((i * p + seed) % n) as f64).collect();
        // Slices of the size the monitor hands over.
        for chunk in data.chunks(256) {
            s.update_slice(chunk);
        }
        let x = (n / 2) as f64;
        let err = (s.rank(x) - (x + 1.0) / n as f64).abs();
        worst = worst.max(err);
        failures += u32::from(err > s.rank_error_bound(0.05));
    }
    println!(
        "median query over 100 seeds: worst error {worst:.5}, bound exceeded {failures} times"
    );
    // δ = 0.05 allows 5 of 100 on average; 15 would be a 1-in-10^4 event for a valid bound.
    assert!(failures <= 15);
}
