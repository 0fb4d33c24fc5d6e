//! Uniform samples of raw rows: a per-window reservoir and the checks on sampled rows that come
//! from the wire.

use neurocloak_proto as pb;

use crate::error::invalid;
use crate::sketch::MAX_VALUE_BYTES;
use crate::sketch::rng::SplitMix64;

/// Default reservoir size (DESIGN §2).
pub const DEFAULT_RESERVOIR: u32 = 256;
/// Largest reservoir accepted from configuration or the wire.
pub const MAX_RESERVOIR: u32 = 1 << 16;
/// Most features a sampled row may carry on the wire.
const MAX_ROW_FIELDS: usize = 1 << 16;

/// A uniform sample without replacement of `min(capacity, seen)` rows (Vitter's algorithm R).
/// Equality compares what goes on the wire, not the generator's state.
#[derive(Debug, Clone)]
pub struct Reservoir {
    capacity: u32,
    seen: u64,
    rows: Vec<pb::SampledRow>,
    rng: SplitMix64,
}

impl PartialEq for Reservoir {
    fn eq(&self, o: &Self) -> bool {
        (self.capacity, self.seen, &self.rows) == (o.capacity, o.seen, &o.rows)
    }
}

impl Reservoir {
    /// An empty reservoir whose choices follow `seed`.
    pub fn new(capacity: u32, seed: u64) -> Self {
        Self {
            capacity: capacity.min(MAX_RESERVOIR),
            seen: 0,
            rows: Vec::new(),
            rng: SplitMix64::new(seed),
        }
    }

    /// Rows the reservoir can hold.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }
    /// Rows offered so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }
    /// The sample.
    pub fn rows(&self) -> &[pb::SampledRow] {
        &self.rows
    }

    /// Offers one row; returns the slot to store it in, or `None` when it is not sampled. The
    /// caller builds the row only when it is kept, so the hot path allocates nothing for the
    /// rows the reservoir skips.
    #[inline]
    pub fn offer(&mut self) -> Option<usize> {
        self.seen += 1;
        if self.rows.len() < self.capacity as usize {
            return Some(self.rows.len());
        }
        let j = self.rng.below(self.seen) as usize;
        (j < self.capacity as usize).then_some(j)
    }

    /// Stores a row in the slot `offer` returned.
    pub fn put(&mut self, slot: usize, row: pb::SampledRow) {
        if slot < self.rows.len() {
            self.rows[slot] = row;
        } else {
            self.rows.push(row);
        }
    }

    /// Merges another reservoir so that the result is a uniform sample of the union: each of
    /// the `min(capacity, seen_a + seen_b)` slots is drawn from side A with probability
    /// `remaining_a / (remaining_a + remaining_b)` (populations counted by `seen`, not by sample
    /// size), and then uniformly from that side's sample — i.e. sampling without replacement from
    /// the union. The coin is seeded from both sides' counts, so merges are reproducible.
    pub fn merge(&mut self, o: &Reservoir) -> crate::Result<()> {
        if o.capacity != self.capacity {
            return Err(crate::CoreError::Incompatible(format!(
                "reservoir capacity {} vs {}",
                self.capacity, o.capacity
            )));
        }
        let mut rng =
            SplitMix64::new(self.rng.state() ^ self.seen.rotate_left(17) ^ o.seen.rotate_left(41));
        let mut a = std::mem::take(&mut self.rows);
        let mut b = o.rows.clone();
        let (mut ra, mut rb) = (self.seen, o.seen);
        let total = self.seen.saturating_add(o.seen);
        let want = (self.capacity as u64).min(total) as usize;
        let mut out = Vec::with_capacity(want);
        while out.len() < want && !(a.is_empty() && b.is_empty()) {
            let from_a = !a.is_empty() && (b.is_empty() || rng.below(ra.saturating_add(rb)) < ra);
            let side = if from_a { &mut a } else { &mut b };
            let i = rng.below(side.len() as u64) as usize;
            out.push(side.swap_remove(i));
            if from_a {
                ra = ra.saturating_sub(1);
            } else {
                rb = rb.saturating_sub(1);
            }
        }
        self.rows = out;
        self.seen = total;
        self.rng = rng;
        Ok(())
    }

    /// Encodes to the wire type.
    pub fn to_proto(&self) -> pb::Reservoir {
        pb::Reservoir {
            capacity: self.capacity,
            seen: self.seen,
            rows: self.rows.clone(),
        }
    }

    /// Decodes: `rows.len() == min(capacity, seen)` and every row within size limits.
    pub fn from_proto(p: &pb::Reservoir) -> crate::Result<Self> {
        if p.capacity > MAX_RESERVOIR {
            return Err(invalid("Reservoir", format!("capacity {}", p.capacity)));
        }
        if p.rows.len() as u64 != (p.capacity as u64).min(p.seen) {
            return Err(invalid("Reservoir", "rows.len() != min(capacity, seen)"));
        }
        for r in &p.rows {
            check_row(r)?;
        }
        Ok(Self {
            capacity: p.capacity,
            seen: p.seen,
            rows: p.rows.clone(),
            rng: SplitMix64::new(p.seen ^ 0x5EED),
        })
    }
}

fn check_value(v: &Option<pb::Value>) -> crate::Result<()> {
    if let Some(pb::Value {
        kind: Some(pb::value::Kind::Text(t)),
    }) = v
        && t.len() > MAX_VALUE_BYTES
    {
        return Err(invalid("Value", "text longer than 1 MiB"));
    }
    Ok(())
}

/// Size checks on a sampled row from the wire.
pub(crate) fn check_row(r: &pb::SampledRow) -> crate::Result<()> {
    if r.id.len() > MAX_VALUE_BYTES || r.features.len() > MAX_ROW_FIELDS {
        return Err(invalid("SampledRow", "oversized id or too many features"));
    }
    if r.scores.len() > super::outcomes::MAX_CLASSES as usize {
        return Err(invalid("SampledRow", "too many scores"));
    }
    for (k, v) in &r.features {
        if k.len() > MAX_VALUE_BYTES {
            return Err(invalid("SampledRow", "oversized feature name"));
        }
        check_value(&Some(v.clone()))?;
    }
    check_value(&r.prediction)?;
    check_value(&r.label)
}

/// Size checks on a prediction record from the wire.
pub(crate) fn check_record(r: &pb::PredictionRecord) -> crate::Result<()> {
    if r.id.len() > MAX_VALUE_BYTES
        || r.scores.len() > super::outcomes::MAX_CLASSES as usize
        || r.groups.len() > MAX_ROW_FIELDS
        || r.groups.iter().any(|g| g.len() > MAX_VALUE_BYTES)
    {
        return Err(invalid("PredictionRecord", "oversized field"));
    }
    check_value(&r.prediction)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn fill(r: &mut Reservoir, ids: std::ops::Range<u32>) {
        for i in ids {
            if let Some(slot) = r.offer() {
                r.put(
                    slot,
                    pb::SampledRow {
                        id: i.to_string(),
                        ..Default::default()
                    },
                );
            }
        }
    }

    /// Merging a reservoir of 900 rows with one of 100 rows must pick each row with the same
    /// probability 10/1000; weighting by sample size instead of `seen` would pick the small side's
    /// rows 9 times as often.
    #[test]
    fn merge_is_uniform_over_the_union() {
        let mut hits = vec![0u32; 1000];
        let trials = 2000;
        for t in 0..trials {
            let mut a = Reservoir::new(10, t);
            let mut b = Reservoir::new(10, t + 1_000_000);
            fill(&mut a, 0..900);
            fill(&mut b, 900..1000);
            a.merge(&b).unwrap();
            assert_eq!(a.rows().len(), 10);
            assert_eq!(a.seen(), 1000);
            for r in a.rows() {
                hits[r.id.parse::<usize>().unwrap()] += 1;
            }
        }
        let small: u32 = hits[900..].iter().sum();
        // Expected 100 * 10/1000 * trials = 2000; 5 sigma is about ±220.
        assert!(
            (1780..=2220).contains(&small),
            "small side picked {small} times"
        );
    }
}
