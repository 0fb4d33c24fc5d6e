//! Mean, variance, min and max of the finite values of a column.

use neurocloak_proto as pb;

use crate::error::invalid;

/// Welford's running moments; merged with Chan et al.'s parallel formula so that merging
/// per-thread or per-process parts agrees with one pass over the concatenated stream up to
/// floating-point rounding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moments {
    n: u64,
    mean: f64,
    m2: f64,
    min: f64,
    max: f64,
}

impl Default for Moments {
    fn default() -> Self {
        Self {
            n: 0,
            mean: 0.0,
            m2: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl Moments {
    /// Number of values.
    pub fn n(&self) -> u64 {
        self.n
    }
    /// Mean (0 when empty).
    pub fn mean(&self) -> f64 {
        self.mean
    }
    /// Sum of squared deviations from the mean.
    pub fn m2(&self) -> f64 {
        self.m2
    }
    /// Population variance (0 when empty).
    pub fn variance(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.m2 / self.n as f64
        }
    }
    /// Smallest value, `None` when empty.
    pub fn min(&self) -> Option<f64> {
        (self.n > 0).then_some(self.min)
    }
    /// Largest value, `None` when empty.
    pub fn max(&self) -> Option<f64> {
        (self.n > 0).then_some(self.max)
    }

    /// Adds one value. The caller filters non-finite values: they are counted elsewhere and
    /// would poison every moment.
    #[inline]
    pub fn update(&mut self, x: f64) {
        debug_assert!(x.is_finite());
        self.merge(&Moments {
            n: 1,
            mean: x,
            m2: 0.0,
            min: x,
            max: x,
        });
    }

    /// Adds a slice of finite values: two passes over the slice (exact mean first, then the
    /// squared deviations), merged in with Chan's formula. Much faster than `update` per value
    /// because there is no division per element and the loops vectorise.
    pub fn push_slice(&mut self, xs: &[f64]) {
        self.merge(&Self::of_slice(xs));
    }

    /// Moments of a slice of finite values on their own.
    pub fn of_slice(xs: &[f64]) -> Moments {
        if xs.is_empty() {
            return Moments::default();
        }
        // Four independent accumulators let the loop use the vector units.
        let mut sum = [0.0f64; 4];
        let mut lo = [f64::INFINITY; 4];
        let mut hi = [f64::NEG_INFINITY; 4];
        let chunks = xs.chunks_exact(4);
        let rest = chunks.remainder();
        for c in chunks {
            for j in 0..4 {
                sum[j] += c[j];
                lo[j] = lo[j].min(c[j]);
                hi[j] = hi[j].max(c[j]);
            }
        }
        for (j, &x) in rest.iter().enumerate() {
            sum[j] += x;
            lo[j] = lo[j].min(x);
            hi[j] = hi[j].max(x);
        }
        let n = xs.len() as f64;
        let mut mean = (sum[0] + sum[1] + sum[2] + sum[3]) / n;
        if !mean.is_finite() {
            // The sum of huge finite values overflowed; the mean itself cannot.
            mean = xs.iter().map(|x| x / n).sum();
        }
        let mut m2 = [0.0f64; 4];
        let chunks = xs.chunks_exact(4);
        let rest = chunks.remainder();
        for c in chunks {
            for j in 0..4 {
                let d = c[j] - mean;
                m2[j] += d * d;
            }
        }
        for (j, &x) in rest.iter().enumerate() {
            m2[j] += (x - mean) * (x - mean);
        }
        Moments {
            n: xs.len() as u64,
            mean,
            m2: m2[0] + m2[1] + m2[2] + m2[3],
            min: lo[0].min(lo[1]).min(lo[2].min(lo[3])),
            max: hi[0].max(hi[1]).max(hi[2].max(hi[3])),
        }
    }

    /// Chan's parallel combination.
    pub fn merge(&mut self, o: &Moments) {
        if o.n == 0 {
            return;
        }
        if self.n == 0 {
            *self = *o;
            return;
        }
        let n = self.n.saturating_add(o.n);
        let (na, nb, nn) = (self.n as f64, o.n as f64, n as f64);
        let d = o.mean - self.mean;
        // A convex combination cannot overflow even when `d` does; m2 may saturate to +inf for
        // values near f64::MAX, which is the correct (if unhelpful) answer.
        self.mean = self.mean * (na / nn) + o.mean * (nb / nn);
        self.m2 += o.m2 + d * d * (na / nn) * nb;
        self.n = n;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }

    /// Encodes to the wire type; an empty sketch encodes as all zeros.
    pub fn to_proto(&self) -> pb::Moments {
        if self.n == 0 {
            return pb::Moments::default();
        }
        pb::Moments {
            n: self.n,
            mean: self.mean,
            m2: self.m2,
            min: self.min,
            max: self.max,
        }
    }

    /// Decodes and validates: finite fields, `m2 >= 0`, `min <= max`, all zeros when empty.
    pub fn from_proto(p: &pb::Moments) -> crate::Result<Self> {
        let fields = [p.mean, p.m2, p.min, p.max];
        if p.n == 0 {
            if fields.iter().any(|v| *v != 0.0) {
                return Err(invalid("Moments", "empty moments with non-zero fields"));
            }
            return Ok(Self::default());
        }
        if !(p.mean.is_finite() && p.min.is_finite() && p.max.is_finite()) {
            return Err(invalid("Moments", "non-finite mean, min or max"));
        }
        // m2 may legitimately saturate to +inf (values near f64::MAX), never NaN or negative.
        if p.m2.is_nan() || p.m2 < 0.0 || p.min > p.max {
            return Err(invalid("Moments", "NaN or negative m2, or min > max"));
        }
        Ok(Self {
            n: p.n,
            mean: p.mean,
            m2: p.m2,
            min: p.min,
            max: p.max,
        })
    }
}
