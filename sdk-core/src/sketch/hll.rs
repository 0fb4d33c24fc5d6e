//! HyperLogLog distinct-count estimator (Flajolet et al. 2007, with linear counting for small
//! cardinalities).

use neurocloak_proto as pb;

use crate::error::invalid;

/// Default precision: 2^12 one-byte registers, standard error 1.04/√4096 ≈ 1.6 %.
pub const DEFAULT_PRECISION: u32 = 12;
const MIN_P: u32 = 4;
const MAX_P: u32 = 18;

/// A HyperLogLog sketch fed with 64-bit hashes (see [`super::rng::hash_bytes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hll {
    p: u32,
    registers: Vec<u8>,
}

impl Default for Hll {
    fn default() -> Self {
        Self::new(DEFAULT_PRECISION)
    }
}

impl Hll {
    /// An empty sketch with `2^p` registers, `p` clamped to `4..=18`.
    pub fn new(p: u32) -> Self {
        let p = p.clamp(MIN_P, MAX_P);
        Self {
            p,
            registers: vec![0; 1 << p],
        }
    }

    /// Precision (log2 of the register count).
    pub fn precision(&self) -> u32 {
        self.p
    }

    /// Adds a value by its hash.
    #[inline]
    pub fn update_hash(&mut self, h: u64) {
        let idx = (h >> (64 - self.p)) as usize;
        // The guard bit bounds the rank at 64 - p + 1 even when the remaining bits are zero.
        let w = (h << self.p) | (1 << (self.p - 1));
        let rank = (w.leading_zeros() + 1) as u8;
        let r = &mut self.registers[idx];
        if rank > *r {
            *r = rank;
        }
    }

    /// Adds a value by its bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.update_hash(super::rng::hash_bytes(bytes));
    }

    /// Estimated number of distinct values.
    pub fn estimate(&self) -> f64 {
        let m = self.registers.len() as f64;
        let alpha = match self.registers.len() {
            16 => 0.673,
            32 => 0.697,
            64 => 0.709,
            _ => 0.7213 / (1.0 + 1.079 / m),
        };
        let mut sum = 0.0;
        let mut zeros = 0usize;
        for &r in &self.registers {
            sum += 1.0 / (1u64 << r) as f64;
            zeros += usize::from(r == 0);
        }
        let raw = alpha * m * m / sum;
        if raw <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln()
        } else {
            raw
        }
    }

    /// Register-wise maximum with a sketch of the same precision.
    pub fn merge(&mut self, o: &Hll) -> crate::Result<()> {
        if o.p != self.p {
            return Err(crate::CoreError::Incompatible(format!(
                "HLL precision {} vs {}",
                self.p, o.p
            )));
        }
        for (a, b) in self.registers.iter_mut().zip(&o.registers) {
            *a = (*a).max(*b);
        }
        Ok(())
    }

    /// Encodes to the wire type.
    pub fn to_proto(&self) -> pb::Hll {
        pb::Hll {
            precision: self.p,
            registers: self.registers.clone(),
        }
    }

    /// Decodes and validates precision, register count and register values.
    pub fn from_proto(p: &pb::Hll) -> crate::Result<Self> {
        if !(MIN_P..=MAX_P).contains(&p.precision) {
            return Err(invalid("Hll", format!("precision {}", p.precision)));
        }
        if p.registers.len() != 1 << p.precision {
            return Err(invalid("Hll", "register count != 2^precision"));
        }
        let max_rank = (64 - p.precision + 1) as u8;
        if p.registers.iter().any(|r| *r > max_rank) {
            return Err(invalid("Hll", "register value out of range"));
        }
        Ok(Self {
            p: p.precision,
            registers: p.registers.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_within_a_few_standard_errors() {
        for n in [0u64, 10, 1000, 100_000] {
            let mut h = Hll::default();
            for i in 0..n {
                h.update(&i.to_le_bytes());
            }
            let e = h.estimate();
            let tol = 0.065 * n as f64 + 1.0; // 4 standard errors
            assert!((e - n as f64).abs() <= tol, "n={n} estimate={e}");
        }
    }
}
