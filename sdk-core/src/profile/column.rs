//! Profile of one column (a feature, the prediction or the label).

use neurocloak_proto as pb;
use pb::FeatureKind;

use crate::error::invalid;
use crate::sketch::{Counters, FixedBins, FrequentItems, Hll, Kll, Moments};

/// Sketches of a numeric column's finite values.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NumericProfile {
    /// Mean, variance, min, max.
    pub moments: Moments,
    /// Quantiles.
    pub kll: Kll,
    /// Exact counts at the reference's quantile edges, once a reference is known.
    pub bins: Option<FixedBins>,
}

/// Sketches of a categorical (or boolean) column.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CategoricalProfile {
    /// Most frequent values with counts.
    pub items: FrequentItems,
    /// Distinct-value estimate; absent for booleans.
    pub hll: Option<Hll>,
}

/// Counters plus the sketches that fit the column's kind.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnProfile {
    /// Numeric, categorical or boolean.
    pub kind: FeatureKind,
    /// Data-quality counters.
    pub counters: Counters,
    /// Present for numeric columns.
    pub numeric: Option<NumericProfile>,
    /// Present for categorical and boolean columns.
    pub categorical: Option<CategoricalProfile>,
}

impl ColumnProfile {
    /// An empty profile of the given kind.
    pub fn new(kind: FeatureKind) -> Self {
        let (numeric, categorical) = match kind {
            FeatureKind::Numeric => (Some(NumericProfile::default()), None),
            FeatureKind::Categorical => (
                None,
                Some(CategoricalProfile {
                    items: FrequentItems::default(),
                    hll: Some(Hll::default()),
                }),
            ),
            FeatureKind::Boolean => (None, Some(CategoricalProfile::default())),
            FeatureKind::Unspecified => (None, None),
        };
        Self {
            kind,
            counters: Counters::default(),
            numeric,
            categorical,
        }
    }

    /// Merges a profile of the same column. A column whose kind differs (two processes that
    /// inferred different kinds) cannot be combined value by value; its values are counted as
    /// type mismatches so nothing disappears silently.
    pub fn merge(&mut self, o: &ColumnProfile) -> crate::Result<()> {
        if o.kind != self.kind {
            let c = &mut self.counters;
            c.count = c.count.saturating_add(o.counters.count);
            c.type_mismatch = c.type_mismatch.saturating_add(o.counters.count);
            return Ok(());
        }
        self.counters.merge(&o.counters);
        merge_opt(&mut self.numeric, &o.numeric, |a, b| {
            a.moments.merge(&b.moments);
            a.kll.merge(&b.kll)?;
            merge_opt(&mut a.bins, &b.bins, |x, y| x.merge(y))
        })?;
        merge_opt(&mut self.categorical, &o.categorical, |a, b| {
            a.items.merge(&b.items)?;
            merge_opt(&mut a.hll, &b.hll, |x, y| x.merge(y))
        })
    }

    /// Encodes to the wire type.
    pub fn to_proto(&self) -> pb::ColumnProfile {
        pb::ColumnProfile {
            kind: self.kind as i32,
            counters: Some(self.counters.to_proto()),
            numeric: self.numeric.as_ref().map(|n| pb::NumericProfile {
                moments: Some(n.moments.to_proto()),
                kll: Some(n.kll.to_proto()),
                bins: n.bins.as_ref().map(FixedBins::to_proto),
            }),
            categorical: self.categorical.as_ref().map(|c| pb::CategoricalProfile {
                items: Some(c.items.to_proto()),
                hll: c.hll.as_ref().map(Hll::to_proto),
            }),
        }
    }

    /// Decodes and validates every sketch.
    pub fn from_proto(p: &pb::ColumnProfile) -> crate::Result<Self> {
        let kind = FeatureKind::try_from(p.kind)
            .map_err(|_| invalid("ColumnProfile", format!("unknown kind {}", p.kind)))?;
        let counters = Counters::from_proto(&p.counters.unwrap_or_default())?;
        let numeric = match &p.numeric {
            None => None,
            Some(n) => Some(NumericProfile {
                moments: Moments::from_proto(&n.moments.unwrap_or_default())?,
                kll: match &n.kll {
                    Some(k) => Kll::from_proto(k)?,
                    None => return Err(invalid("NumericProfile", "missing kll")),
                },
                bins: n.bins.as_ref().map(FixedBins::from_proto).transpose()?,
            }),
        };
        let categorical = match &p.categorical {
            None => None,
            Some(c) => Some(CategoricalProfile {
                items: match &c.items {
                    Some(i) => FrequentItems::from_proto(i)?,
                    None => return Err(invalid("CategoricalProfile", "missing items")),
                },
                hll: c.hll.as_ref().map(Hll::from_proto).transpose()?,
            }),
        };
        Ok(Self {
            kind,
            counters,
            numeric,
            categorical,
        })
    }
}

/// Merges two optional parts: both present → `f`, only the other → a copy of it.
pub(crate) fn merge_opt<T: Clone>(
    a: &mut Option<T>,
    b: &Option<T>,
    f: impl FnOnce(&mut T, &T) -> crate::Result<()>,
) -> crate::Result<()> {
    match (a.as_mut(), b) {
        (Some(x), Some(y)) => f(x, y),
        (None, Some(y)) => {
            *a = Some(y.clone());
            Ok(())
        }
        _ => Ok(()),
    }
}
