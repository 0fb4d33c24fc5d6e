//! KLL quantile sketch (Karnin, Lang, Liberty 2016) in the lazy, DataSketches-style variant.
//!
//! Wire meaning (read by the evaluator): `levels[i]` holds items of weight `2^i`; level 0 is an
//! unsorted append buffer, every higher level is sorted ascending. `n = Σ len(levels[i])·2^i`
//! holds exactly, because a compaction turns `2m` items of weight `w` into `m` of weight `2w`.
//!
//! # Error bound
//! A compaction at level `h` sorts the level, keeps every other item starting at a random offset
//! (one fair coin from the serialized generator), and so moves the estimated rank of any fixed
//! value by `0` or `±2^h` with mean zero. A level is only compacted when it holds at least its
//! capacity `c_h` (which only shrinks as the sketch grows), so the `m_h` compactions at level `h`
//! satisfy `m_h·(c_h − 1)·2^h ≤ n`. Azuma–Hoeffding then gives, for one query and with
//! probability at least `1 − δ`,
//!
//! `|rank_est − rank_true| / n ≤ ε(δ) = sqrt(2·ln(2/δ)·(S + B/4) / n)`,
//! `S = Σ_{h<H−1} 2^h/(c_h − 1)`,
//!
//! computed from the sketch's own `k`, `n` and height `H` by [`Kll::rank_error_bound`].
//!
//! The `B/4` term is the bottom sampler (KLL paper §3): once the sketch is tall, level 0 is cut
//! into blocks of `B = 2^s` arrival-ordered items, `s = max(0, H − ⌈log2 k⌉ − 1)`, and one random
//! item per block moves straight to level `s`. Each block moves a rank by at most `B` with mean
//! zero, and the blocks cover at most `n` items, which adds `n·B/4` to the Hoeffding variance
//! proxy — a few per cent of `n·S` — while only one item in `B` ever needs sorting. For
//! k = 200 this is ≈ 2.9 % at δ = 0.01 for n = 10^6; the measured error is about half of
//! that (see `docs/sdk-core.md`). [`Kll::uniform_rank_error_bound`] bounds every query at once
//! (union bound over a quantile grid), which is what a KS statistic needs. Merging keeps the
//! bound: both parts' compactions obey the same inequality against the merged `n`.

use neurocloak_proto as pb;

use super::rng::SplitMix64;
use crate::error::invalid;

/// Default accuracy parameter (DESIGN §2 asks for k ≥ 200).
pub const DEFAULT_K: u32 = 200;
/// Smallest capacity of any level.
const MIN_CAP: u64 = 8;
/// Weights up to 2^60: more than enough for any u64 count of items.
const MAX_LEVELS: usize = 61;
/// Largest accepted `k`; keeps a decoded sketch's memory bounded.
const MAX_K: u32 = 1 << 16;
/// Seed of a fresh sketch's coin; the same for every process so identical input gives identical
/// bytes.
pub const DEFAULT_SEED: u64 = 0x6E65_7572_6F63_6C6B;

/// Maps a finite f64 to a u64 with the same order, so levels sort with integer compares.
#[inline]
fn key(x: f64) -> u64 {
    let b = x.to_bits();
    if b >> 63 == 1 { !b } else { b | (1 << 63) }
}

#[inline]
fn unkey(k: u64) -> f64 {
    if k >> 63 == 1 {
        f64::from_bits(k & !(1 << 63))
    } else {
        f64::from_bits(!k)
    }
}

/// Capacity of level `h` in a sketch of height `height`: `ceil(k·(2/3)^depth)`, at least 8,
/// computed in integers so every platform gets the same schedule.
fn level_capacity(k: u32, height: usize, h: usize) -> u64 {
    let depth = (height - 1 - h) as u32;
    if depth > 30 {
        return MIN_CAP;
    }
    let num = u128::from(k) << depth;
    let den = 3u128.pow(depth);
    (num.div_ceil(den) as u64).max(MIN_CAP)
}

/// Level the bottom sampler feeds in a sketch of height `height`: `max(0, H − ⌈log2 k⌉ − 1)`,
/// so its blocks of `2^s` items stay far below the top level's weight (see the module docs).
fn sampler_level(k: u32, height: usize) -> usize {
    let lg = (32 - (k - 1).leading_zeros()) as usize;
    height.saturating_sub(lg + 1).min(height.saturating_sub(2))
}

fn total_capacity(k: u32, height: usize) -> u64 {
    (0..height).map(|h| level_capacity(k, height, h)).sum()
}

/// A mergeable quantile sketch over finite f64 values.
#[derive(Debug, Clone, PartialEq)]
pub struct Kll {
    k: u32,
    n: u64,
    levels: Vec<Vec<u64>>,
    retained: u64,
    /// Capacity of each level and their sum, recomputed only when the height changes.
    caps: Vec<u64>,
    total_cap: u64,
    rng: SplitMix64,
    min: f64,
    max: f64,
}

impl Default for Kll {
    fn default() -> Self {
        Self::new(DEFAULT_K)
    }
}

impl Kll {
    /// An empty sketch with accuracy parameter `k` (clamped to `8..=65536`).
    pub fn new(k: u32) -> Self {
        Self::with_seed(k, DEFAULT_SEED)
    }

    /// An empty sketch whose coin starts in `seed`.
    pub fn with_seed(k: u32, seed: u64) -> Self {
        let k = k.clamp(MIN_CAP as u32, MAX_K);
        Self {
            k,
            n: 0,
            levels: vec![Vec::new()],
            retained: 0,
            caps: vec![level_capacity(k, 1, 0)],
            total_cap: total_capacity(k, 1),
            rng: SplitMix64::new(seed),
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    /// Accuracy parameter.
    pub fn k(&self) -> u32 {
        self.k
    }
    /// Number of values summarised.
    pub fn n(&self) -> u64 {
        self.n
    }
    /// True when nothing was added.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
    /// Number of levels (height).
    pub fn height(&self) -> usize {
        self.levels.len()
    }
    /// Items kept in memory and on the wire.
    pub fn retained(&self) -> u64 {
        self.retained
    }
    /// Exact minimum, `None` when empty.
    pub fn min(&self) -> Option<f64> {
        (self.n > 0).then_some(self.min)
    }
    /// Exact maximum, `None` when empty.
    pub fn max(&self) -> Option<f64> {
        (self.n > 0).then_some(self.max)
    }

    /// Adds one finite value; non-finite values are ignored (the caller counts them).
    #[inline]
    pub fn update(&mut self, x: f64) {
        if !x.is_finite() {
            return;
        }
        self.push_key(x);
        self.compress();
    }

    /// Adds many values; non-finite ones are skipped. Compaction runs once per call, so a
    /// slice behaves as one large level-0 append followed by bulk sorts.
    pub fn update_slice(&mut self, xs: &[f64]) {
        if xs.iter().all(|x| x.is_finite()) {
            let (lo, hi) = xs
                .iter()
                .fold((self.min, self.max), |(lo, hi), &x| (lo.min(x), hi.max(x)));
            self.update_finite(xs, lo, hi);
            return;
        }
        for &x in xs {
            if x.is_finite() {
                self.push_key(x);
            }
        }
        self.compress();
    }

    /// Adds finite values whose minimum and maximum (merged with the sketch's own) the caller
    /// already computed, e.g. alongside the moments of the same slice.
    pub(crate) fn update_finite(&mut self, xs: &[f64], min: f64, max: f64) {
        debug_assert!(xs.iter().all(|x| x.is_finite()));
        self.levels[0].extend(xs.iter().map(|&x| key(x)));
        self.n += xs.len() as u64;
        self.retained += xs.len() as u64;
        self.min = self.min.min(min);
        self.max = self.max.max(max);
        self.compress();
    }

    #[inline]
    fn push_key(&mut self, x: f64) {
        self.levels[0].push(key(x));
        self.n += 1;
        self.retained += 1;
        self.min = self.min.min(x);
        self.max = self.max.max(x);
    }

    fn compress(&mut self) {
        while self.retained > self.total_cap {
            let height = self.levels.len();
            let Some(h) = (0..height).find(|&h| self.levels[h].len() as u64 >= self.caps[h]) else {
                // Unreachable: the total exceeds the sum of capacities, so some level exceeds its own.
                return;
            };
            let s = sampler_level(self.k, height);
            if h == 0 && s > 0 && self.levels[0].len() >= 1 << s {
                self.sample_down(s);
                continue;
            }
            if h + 1 == height {
                if height == MAX_LEVELS {
                    return;
                }
                self.levels.push(Vec::new());
                self.refresh_caps();
            }
            self.compact(h);
        }
    }

    fn refresh_caps(&mut self) {
        let height = self.levels.len();
        self.caps = (0..height)
            .map(|h| level_capacity(self.k, height, h))
            .collect();
        self.total_cap = self.caps.iter().sum();
    }

    /// Halves level `h` into level `h + 1`, keeping one item behind when the count is odd.
    fn compact(&mut self, h: usize) {
        let mut items = std::mem::take(&mut self.levels[h]);
        if h == 0 {
            items.sort_unstable();
        }
        let keep_one = items.len() % 2 == 1;
        let start = usize::from(keep_one) + usize::from(self.rng.coin());
        let before = items.len() as u64;
        let up = &mut self.levels[h + 1];
        let old = up.len();
        up.extend(items[start..].iter().step_by(2));
        // Both runs are sorted; the stable sort detects and merges them in linear time.
        if old > 0 {
            up.sort();
        }
        let moved = (up.len() - old) as u64;
        if keep_one {
            items.truncate(1);
        } else {
            items.clear();
        }
        self.retained -= before - moved - items.len() as u64;
        self.levels[h] = items;
    }

    /// The sampler: level 0 is cut into blocks of `2^s` items in arrival order and one random
    /// item of each block moves to level `s` with weight `2^s` (KLL paper, §3). Only those items
    /// get sorted, which is where the per-item cost of a large sketch goes otherwise.
    fn sample_down(&mut self, s: usize) {
        let b = 1usize << s;
        let mut lvl0 = std::mem::take(&mut self.levels[0]);
        let blocks = lvl0.len() / b;
        let mut picked: Vec<u64> = (0..blocks)
            .map(|j| lvl0[j * b + self.rng.below(b as u64) as usize])
            .collect();
        picked.sort_unstable();
        lvl0.drain(..blocks * b);
        self.levels[0] = lvl0;
        let up = &mut self.levels[s];
        let had = !up.is_empty();
        up.extend_from_slice(&picked);
        if had {
            up.sort();
        }
        self.retained -= (blocks * b - blocks) as u64;
    }

    /// Merges another sketch with the same `k`; the result summarises both streams. The coin
    /// stays this sketch's, so `a.merge(b)` is deterministic.
    pub fn merge(&mut self, o: &Kll) -> crate::Result<()> {
        if o.k != self.k {
            return Err(crate::CoreError::Incompatible(format!(
                "KLL k {} vs {}",
                self.k, o.k
            )));
        }
        if o.n == 0 {
            return Ok(());
        }
        let Some(n) = self.n.checked_add(o.n) else {
            return Err(crate::CoreError::Incompatible(
                "KLL item counts overflow u64".into(),
            ));
        };
        while self.levels.len() < o.levels.len() {
            self.levels.push(Vec::new());
        }
        self.refresh_caps();
        for (h, lvl) in o.levels.iter().enumerate() {
            let mine = &mut self.levels[h];
            let had = !mine.is_empty();
            mine.extend_from_slice(lvl);
            if h > 0 && had {
                mine.sort();
            }
        }
        self.n = n;
        self.retained += o.retained;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        self.compress();
        Ok(())
    }

    /// Normalised rank error that one query exceeds with probability at most `delta` (see the
    /// module docs for the proof). 0 while no compaction has happened.
    pub fn rank_error_bound(&self, delta: f64) -> f64 {
        rank_error_bound(self.k, self.n, self.levels.len(), delta)
    }

    /// Normalised rank error that *any* query exceeds with probability at most `delta`: a union
    /// bound over a grid of `m = ceil(1/ε)` true quantiles, plus the `1/m` a query can move
    /// between grid points.
    pub fn uniform_rank_error_bound(&self, delta: f64) -> f64 {
        uniform_rank_error_bound(self.k, self.n, self.levels.len(), delta)
    }

    /// All retained items with their weights, sorted by value, for rank and quantile queries.
    pub fn sorted_view(&self) -> SortedView {
        let mut items: Vec<(u64, u64)> = Vec::with_capacity(self.retained as usize);
        for (h, lvl) in self.levels.iter().enumerate() {
            items.extend(lvl.iter().map(|&k| (k, 1u64 << h)));
        }
        items.sort_unstable();
        let mut cum = 0u64;
        let mut values = Vec::with_capacity(items.len());
        let mut cumulative = Vec::with_capacity(items.len());
        for (k, w) in items {
            cum += w;
            values.push(unkey(k));
            cumulative.push(cum);
        }
        SortedView {
            values,
            cumulative,
            n: self.n,
            min: self.min,
            max: self.max,
        }
    }

    /// Estimated fraction of values `<= x`.
    pub fn rank(&self, x: f64) -> f64 {
        self.sorted_view().rank(x)
    }

    /// Estimated `q`-quantile (`q` clamped to [0, 1]); `None` when empty or `q` is NaN.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        self.sorted_view().quantile(q)
    }

    /// Encodes to the wire type (lossless: level 0 keeps its order, the coin its state).
    pub fn to_proto(&self) -> pb::Kll {
        let empty = self.n == 0;
        pb::Kll {
            k: self.k,
            n: self.n,
            levels: self
                .levels
                .iter()
                .map(|l| pb::KllLevel {
                    items: l.iter().map(|&k| unkey(k)).collect(),
                })
                .collect(),
            rng_state: self.rng.state(),
            min: if empty { 0.0 } else { self.min },
            max: if empty { 0.0 } else { self.max },
        }
    }

    /// Decodes and validates a sketch: `k` in range, at most 61 levels, finite items within
    /// `[min, max]`, higher levels sorted, `n` equal to the total weight, and no more items than
    /// the sketch's capacity (so a hostile message cannot make us hold more than it could
    /// legitimately need).
    pub fn from_proto(p: &pb::Kll) -> crate::Result<Self> {
        if p.k < MIN_CAP as u32 || p.k > MAX_K {
            return Err(invalid("Kll", format!("k {} outside 8..=65536", p.k)));
        }
        if p.levels.is_empty() || p.levels.len() > MAX_LEVELS {
            return Err(invalid("Kll", format!("{} levels", p.levels.len())));
        }
        let retained: u64 = p.levels.iter().map(|l| l.items.len() as u64).sum();
        if retained > total_capacity(p.k, p.levels.len()) {
            return Err(invalid("Kll", "more items than the sketch's capacity"));
        }
        let mut weight: u64 = 0;
        for (h, l) in p.levels.iter().enumerate() {
            let w = (l.items.len() as u64)
                .checked_mul(1u64 << h)
                .and_then(|w| weight.checked_add(w));
            weight = w.ok_or_else(|| invalid("Kll", "total weight overflows"))?;
        }
        if weight != p.n {
            return Err(invalid(
                "Kll",
                format!("n {} != total weight {weight}", p.n),
            ));
        }
        if p.n == 0 {
            if p.min != 0.0 || p.max != 0.0 {
                return Err(invalid("Kll", "empty sketch with min/max"));
            }
        } else if !(p.min.is_finite() && p.max.is_finite() && p.min <= p.max) {
            return Err(invalid("Kll", "min/max not finite or min > max"));
        }
        let mut levels = Vec::with_capacity(p.levels.len());
        for (h, l) in p.levels.iter().enumerate() {
            if l.items
                .iter()
                .any(|x| !(x.is_finite() && *x >= p.min && *x <= p.max))
            {
                return Err(invalid("Kll", "item not finite or outside [min, max]"));
            }
            let keys: Vec<u64> = l.items.iter().map(|&x| key(x)).collect();
            if h > 0 && keys.windows(2).any(|w| w[0] > w[1]) {
                return Err(invalid("Kll", format!("level {h} not sorted")));
            }
            levels.push(keys);
        }
        let mut s = Self {
            k: p.k,
            n: p.n,
            levels,
            retained,
            caps: Vec::new(),
            total_cap: 0,
            rng: SplitMix64::new(p.rng_state),
            min: if p.n == 0 { f64::INFINITY } else { p.min },
            max: if p.n == 0 { f64::NEG_INFINITY } else { p.max },
        };
        s.refresh_caps();
        Ok(s)
    }
}

/// [`Kll::rank_error_bound`] from a sketch's parameters, for readers of the wire type:
/// `k = kll.k`, `n = kll.n`, `height = kll.levels.len()`.
pub fn rank_error_bound(k: u32, n: u64, height: usize, delta: f64) -> f64 {
    if n == 0 || height <= 1 || !(delta > 0.0 && delta < 1.0) {
        return 0.0;
    }
    let k = k.clamp(MIN_CAP as u32, MAX_K);
    let height = height.min(MAX_LEVELS);
    let compactions: f64 = (0..height - 1)
        .map(|h| (1u64 << h) as f64 / (level_capacity(k, height, h) - 1) as f64)
        .sum();
    let sampler = (1u64 << sampler_level(k, height)) as f64 / 4.0;
    (2.0 * (2.0 / delta).ln() * (compactions + sampler) / n as f64)
        .sqrt()
        .min(1.0)
}

/// [`Kll::uniform_rank_error_bound`] from a sketch's parameters.
pub fn uniform_rank_error_bound(k: u32, n: u64, height: usize, delta: f64) -> f64 {
    let eps = rank_error_bound(k, n, height, delta);
    if eps == 0.0 {
        return 0.0;
    }
    let m = (1.0 / eps).ceil();
    (rank_error_bound(k, n, height, delta / (m + 1.0)) + 1.0 / m).min(1.0)
}

/// Retained items sorted with cumulative weights; answers many queries after one sort.
#[derive(Debug, Clone)]
pub struct SortedView {
    values: Vec<f64>,
    cumulative: Vec<u64>,
    n: u64,
    min: f64,
    max: f64,
}

impl SortedView {
    /// Sorted distinct-or-not retained values.
    pub fn values(&self) -> &[f64] {
        &self.values
    }
    /// Cumulative weight up to and including each value.
    pub fn cumulative(&self) -> &[u64] {
        &self.cumulative
    }

    /// Estimated fraction of values `<= x` (0 when empty).
    pub fn rank(&self, x: f64) -> f64 {
        if self.n == 0 || x.is_nan() {
            return 0.0;
        }
        let i = self.values.partition_point(|v| *v <= x);
        if i == 0 {
            0.0
        } else {
            self.cumulative[i - 1] as f64 / self.n as f64
        }
    }

    /// Smallest retained value whose cumulative weight reaches `q·n`; `q = 0` gives the exact
    /// minimum and `q = 1` the exact maximum.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.n == 0 || q.is_nan() {
            return None;
        }
        let q = q.clamp(0.0, 1.0);
        if q == 0.0 {
            return Some(self.min);
        }
        if q == 1.0 {
            return Some(self.max);
        }
        let target = (q * self.n as f64).ceil() as u64;
        let i = self.cumulative.partition_point(|c| *c < target);
        Some(self.values.get(i).copied().unwrap_or(self.max))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn key_order_matches_float_order() {
        let xs = [
            -f64::MAX,
            -1.5,
            -f64::MIN_POSITIVE,
            -0.0,
            0.0,
            5e-324,
            1.0,
            f64::MAX,
        ];
        for w in xs.windows(2) {
            assert!(key(w[0]) < key(w[1]), "{} {}", w[0], w[1]);
        }
        for x in xs {
            assert_eq!(unkey(key(x)).to_bits(), x.to_bits());
        }
    }

    #[test]
    fn weight_is_conserved() {
        let mut s = Kll::default();
        for i in 0..100_003 {
            s.update(f64::from(i));
        }
        let w: u64 = s
            .levels
            .iter()
            .enumerate()
            .map(|(h, l)| l.len() as u64 * (1 << h))
            .sum();
        assert_eq!(w, s.n());
        assert!(s.retained() <= total_capacity(s.k, s.height()));
    }

    #[test]
    fn small_streams_are_exact() {
        let mut s = Kll::default();
        for i in (0..100).rev() {
            s.update(f64::from(i));
        }
        assert_eq!(s.rank(49.0), 0.5);
        assert_eq!(s.quantile(0.5), Some(49.0));
        assert_eq!(s.rank_error_bound(0.01), 0.0);
    }
}
