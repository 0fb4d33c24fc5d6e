//! Data-quality counters of one column.

use neurocloak_proto as pb;

/// Counts of everything a column saw, good or bad. `count` includes bad values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Values seen, including missing and invalid ones.
    pub count: u64,
    /// Missing values (absent feature or explicit missing).
    pub missing: u64,
    /// NaN numbers.
    pub nan: u64,
    /// Positive infinities.
    pub pos_inf: u64,
    /// Negative infinities.
    pub neg_inf: u64,
    /// Values whose type did not match the column's kind.
    pub type_mismatch: u64,
    /// Strings cut to the configured maximum length.
    pub truncated: u64,
}

impl Counters {
    /// Values counted as missing, NaN, ±inf or type mismatch (at most `count`).
    pub fn issues(&self) -> u64 {
        self.missing + self.nan + self.pos_inf + self.neg_inf + self.type_mismatch
    }

    /// Adds another column's counters.
    pub fn merge(&mut self, o: &Counters) {
        self.count = self.count.saturating_add(o.count);
        self.missing = self.missing.saturating_add(o.missing);
        self.nan = self.nan.saturating_add(o.nan);
        self.pos_inf = self.pos_inf.saturating_add(o.pos_inf);
        self.neg_inf = self.neg_inf.saturating_add(o.neg_inf);
        self.type_mismatch = self.type_mismatch.saturating_add(o.type_mismatch);
        self.truncated = self.truncated.saturating_add(o.truncated);
    }

    /// Encodes to the wire type.
    pub fn to_proto(&self) -> pb::Counters {
        pb::Counters {
            count: self.count,
            missing: self.missing,
            nan: self.nan,
            pos_inf: self.pos_inf,
            neg_inf: self.neg_inf,
            type_mismatch: self.type_mismatch,
            truncated: self.truncated,
        }
    }

    /// Decodes from the wire type. Every combination of counts is representable, but a
    /// category count above `count` means the message is corrupt.
    pub fn from_proto(p: &pb::Counters) -> crate::Result<Self> {
        let c = Counters {
            count: p.count,
            missing: p.missing,
            nan: p.nan,
            pos_inf: p.pos_inf,
            neg_inf: p.neg_inf,
            type_mismatch: p.type_mismatch,
            truncated: p.truncated,
        };
        let bad = [c.missing, c.nan, c.pos_inf, c.neg_inf, c.type_mismatch];
        let sum = bad.iter().try_fold(0u64, |a, b| a.checked_add(*b));
        if sum.is_none_or(|s| s > c.count) || c.truncated > c.count {
            return Err(crate::error::invalid(
                "Counters",
                "issue counts exceed the value count",
            ));
        }
        Ok(c)
    }
}
