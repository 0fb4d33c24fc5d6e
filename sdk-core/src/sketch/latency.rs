//! Latency distribution in an HdrHistogram (microseconds, 3 significant digits, up to 1 hour).

use std::time::Duration;

use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use neurocloak_proto as pb;

use crate::error::invalid;

/// Largest latency kept apart from the rest; longer ones saturate into the top bucket.
pub const MAX_LATENCY_US: u64 = 3_600_000_000;
const SIGFIG: u8 = 3;
/// The V2 encoding of a full 3-digit histogram up to an hour is far below this.
const MAX_ENCODED: usize = 1 << 20;
const V2_COOKIE: u32 = 0x1c84_9303 | 0x10;
const V2_HEADER: usize = 40;

/// Latencies in microseconds.
#[derive(Debug, Clone)]
pub struct Latency {
    hist: Histogram<u64>,
}

impl PartialEq for Latency {
    fn eq(&self, o: &Self) -> bool {
        self.hist == o.hist
    }
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    /// An empty histogram (about 190 KB: create it only when a latency is recorded).
    pub fn new() -> Self {
        // Only invalid constants can make this fail, and ours are valid (covered by tests).
        #[allow(clippy::expect_used)]
        let hist = Histogram::new_with_bounds(1, MAX_LATENCY_US, SIGFIG).expect("valid bounds");
        Self { hist }
    }

    /// Records one latency; above an hour it saturates.
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.hist.saturating_record(us.clamp(1, MAX_LATENCY_US));
    }

    /// Number of recorded latencies.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// The underlying histogram, for quantile queries.
    pub fn histogram(&self) -> &Histogram<u64> {
        &self.hist
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, o: &Latency) -> crate::Result<()> {
        self.hist
            .add(&o.hist)
            .map_err(|e| crate::CoreError::Incompatible(format!("latency histograms: {e:?}")))
    }

    /// Encodes in the HdrHistogram V2 format.
    pub fn to_proto(&self) -> pb::Latency {
        let mut hdr_v2 = Vec::new();
        // Serializing into a Vec cannot fail for a histogram we built; an empty payload would be
        // rejected by `from_proto`, so a failure is visible rather than silent.
        let _ = V2Serializer::new().serialize(&self.hist, &mut hdr_v2);
        pb::Latency { hdr_v2 }
    }

    /// Decodes a V2 histogram after checking its header, so a hostile header cannot ask for a
    /// huge allocation; then folds it into our standard bounds.
    pub fn from_proto(p: &pb::Latency) -> crate::Result<Self> {
        let b = &p.hdr_v2;
        if b.len() < V2_HEADER || b.len() > MAX_ENCODED {
            return Err(invalid("Latency", format!("{} bytes", b.len())));
        }
        let be32 = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let be64 = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_be_bytes(a)
        };
        if be32(0) != V2_COOKIE {
            return Err(invalid("Latency", "not an uncompressed V2 histogram"));
        }
        if be32(4) as usize != b.len() - V2_HEADER {
            return Err(invalid("Latency", "payload length mismatch"));
        }
        if be32(12) != u32::from(SIGFIG) || be64(16) != 1 || be64(24) != MAX_LATENCY_US {
            return Err(invalid("Latency", "unexpected histogram bounds"));
        }
        let hist: Histogram<u64> = Deserializer::new()
            .deserialize(&mut b.as_slice())
            .map_err(|e| invalid("Latency", format!("{e:?}")))?;
        Ok(Self { hist })
    }
}
