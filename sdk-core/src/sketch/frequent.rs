//! Frequent items of a categorical column (Misra–Gries, in its mergeable form).

use hashbrown::HashTable;
use neurocloak_proto as pb;

use super::rng::hash_bytes;
use crate::error::invalid;

/// Default number of items kept exactly.
pub const DEFAULT_CAPACITY: u32 = 128;
const MAX_CAPACITY: u32 = 1 << 16;
/// Longest value accepted from the wire.
pub const MAX_VALUE_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    value: Box<str>,
    hash: u64,
    count: u64,
}

/// Counts of the most frequent values. Exact while the number of distinct values is at most
/// `capacity`; beyond that every reported count `c` satisfies `c <= true <= c + max_error`
/// (Agarwal et al. 2012, "Mergeable summaries").
///
/// Between reductions the table may hold up to `2·capacity` values, which makes the reduction
/// (subtract the `(capacity+1)`-th largest count from every count) amortised O(1) per update.
#[derive(Debug, Clone)]
pub struct FrequentItems {
    capacity: u32,
    total: u64,
    max_error: u64,
    entries: Vec<Entry>,
    table: HashTable<u32>,
}

impl Default for FrequentItems {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl PartialEq for FrequentItems {
    fn eq(&self, o: &Self) -> bool {
        self.to_proto() == o.to_proto()
    }
}

impl FrequentItems {
    /// An empty summary keeping `capacity` items (clamped to `1..=65536`).
    pub fn new(capacity: u32) -> Self {
        Self {
            capacity: capacity.clamp(1, MAX_CAPACITY),
            total: 0,
            max_error: 0,
            entries: Vec::new(),
            table: HashTable::new(),
        }
    }

    /// Items kept exactly.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }
    /// Sum of all weights added.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Adds one occurrence of `value`.
    pub fn update(&mut self, value: &str) {
        self.update_hashed(value, hash_bytes(value.as_bytes()), 1);
    }

    /// Adds `weight` occurrences of `value` whose [`hash_bytes`] is `hash` (callers that also
    /// feed a HyperLogLog hash once).
    #[inline]
    pub fn update_hashed(&mut self, value: &str, hash: u64, weight: u64) {
        self.total = self.total.saturating_add(weight);
        self.add(value, hash, weight);
    }

    fn add(&mut self, value: &str, hash: u64, weight: u64) {
        let entries = &mut self.entries;
        if let Some(&i) = self
            .table
            .find(hash, |&i| short_eq(&entries[i as usize].value, value))
        {
            let e = &mut entries[i as usize];
            e.count = e.count.saturating_add(weight);
            return;
        }
        let idx = entries.len() as u32;
        entries.push(Entry {
            value: value.into(),
            hash,
            count: weight,
        });
        self.table
            .insert_unique(hash, idx, |&i| entries[i as usize].hash);
        if self.entries.len() > 2 * self.capacity as usize {
            self.reduce();
        }
    }

    /// The count below which items are dropped to get back to `capacity` items: the
    /// `(capacity+1)`-th largest count, or 0 when there is room.
    fn threshold(&self) -> u64 {
        let cap = self.capacity as usize;
        if self.entries.len() <= cap {
            return 0;
        }
        let mut counts: Vec<u64> = self.entries.iter().map(|e| e.count).collect();
        let (_, t, _) = counts.select_nth_unstable_by(cap, |a, b| b.cmp(a));
        *t
    }

    fn reduce(&mut self) {
        let t = self.threshold();
        if t == 0 {
            return;
        }
        self.max_error = self.max_error.saturating_add(t);
        self.entries.retain_mut(|e| {
            e.count = e.count.saturating_sub(t);
            e.count > 0
        });
        self.rebuild_table();
    }

    fn rebuild_table(&mut self) {
        self.table.clear();
        let entries = &self.entries;
        for (i, e) in entries.iter().enumerate() {
            self.table
                .insert_unique(e.hash, i as u32, |&j| entries[j as usize].hash);
        }
    }

    /// Upper bound on how much any reported count is below the true count.
    pub fn max_error(&self) -> u64 {
        self.max_error + self.threshold()
    }

    /// Kept items as `(value, count)`, most frequent first, ties by value.
    pub fn items(&self) -> Vec<(&str, u64)> {
        let t = self.threshold();
        let mut v: Vec<(&str, u64)> = self
            .entries
            .iter()
            .filter(|e| e.count > t)
            .map(|e| (&*e.value, e.count - t))
            .collect();
        v.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        v
    }

    /// Estimated count of one value (0 when not kept).
    pub fn count_of(&self, value: &str) -> u64 {
        self.items()
            .iter()
            .find(|(v, _)| *v == value)
            .map_or(0, |(_, c)| *c)
    }

    /// Merges a summary with the same capacity.
    pub fn merge(&mut self, o: &FrequentItems) -> crate::Result<()> {
        if o.capacity != self.capacity {
            return Err(crate::CoreError::Incompatible(format!(
                "frequent items capacity {} vs {}",
                self.capacity, o.capacity
            )));
        }
        self.total = self.total.saturating_add(o.total);
        self.max_error = self.max_error.saturating_add(o.max_error);
        for e in &o.entries {
            self.add(&e.value, e.hash, e.count);
        }
        Ok(())
    }

    /// Encodes to the wire type, reduced to `capacity` items in canonical order (count
    /// descending, then value), so equal summaries encode to equal bytes.
    pub fn to_proto(&self) -> pb::FrequentItems {
        pb::FrequentItems {
            capacity: self.capacity,
            total: self.total,
            items: self
                .items()
                .into_iter()
                .map(|(v, c)| pb::FrequentItem {
                    value: v.to_owned(),
                    count: c,
                })
                .collect(),
            max_error: self.max_error(),
        }
    }

    /// Decodes and validates: capacity in range, at most `capacity` items, positive counts
    /// whose sum does not exceed `total`, no duplicates, canonical order.
    pub fn from_proto(p: &pb::FrequentItems) -> crate::Result<Self> {
        if p.capacity == 0 || p.capacity > MAX_CAPACITY {
            return Err(invalid("FrequentItems", format!("capacity {}", p.capacity)));
        }
        if p.items.len() > p.capacity as usize {
            return Err(invalid("FrequentItems", "more items than capacity"));
        }
        let mut sum = 0u64;
        for it in &p.items {
            if it.count == 0 || it.value.len() > MAX_VALUE_BYTES {
                return Err(invalid("FrequentItems", "zero count or oversized value"));
            }
            sum = sum
                .checked_add(it.count)
                .ok_or_else(|| invalid("FrequentItems", "counts overflow"))?;
        }
        if sum > p.total {
            return Err(invalid("FrequentItems", "counts exceed total"));
        }
        let canonical = p.items.windows(2).all(|w| {
            w[0].count > w[1].count || (w[0].count == w[1].count && w[0].value < w[1].value)
        });
        if !canonical {
            return Err(invalid(
                "FrequentItems",
                "items duplicated or not in canonical order",
            ));
        }
        let mut s = Self::new(p.capacity);
        s.total = p.total;
        s.max_error = p.max_error;
        for it in &p.items {
            s.add(&it.value, hash_bytes(it.value.as_bytes()), it.count);
        }
        Ok(s)
    }
}

/// String equality without a `memcmp` call for the short names features usually have: two
/// overlapping 8-byte loads cover 8..=16 bytes, a byte loop covers fewer.
#[inline]
pub(crate) fn short_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[at..at + 8]);
        u64::from_ne_bytes(w)
    };
    match n {
        0..=7 => a.iter().zip(b).all(|(x, y)| x == y),
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_below_capacity_and_bounded_above() {
        let mut f = FrequentItems::new(4);
        for (v, n) in [("a", 10), ("b", 5), ("c", 3), ("d", 1)] {
            for _ in 0..n {
                f.update(v);
            }
        }
        assert_eq!(f.items(), vec![("a", 10), ("b", 5), ("c", 3), ("d", 1)]);
        assert_eq!(f.max_error(), 0);
        for i in 0..100 {
            f.update(&format!("x{i}"));
        }
        let err = f.max_error();
        assert!(err > 0);
        let a = f.count_of("a");
        assert!(a <= 10 && a + err >= 10);
        assert!(f.items().len() <= 4);
    }
}
