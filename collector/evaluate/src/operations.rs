//! Operational health: latency percentiles from the HdrHistogram, error rate, and volume
//! against its usual level.

use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;
use neurocloak_proto::v1::WindowProfile;
use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};

/// HdrHistogram V2 payloads above this are refused before decoding (a window's histogram is
/// a few KB; this leaves room for wide ranges without letting a message allocate gigabytes).
const MAX_HDR_BYTES: usize = 4 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OperationsConfig {
    /// Fewer recent windows than this: volume is not judged.
    pub min_volume_history: usize,
}

impl Default for OperationsConfig {
    fn default() -> Self {
        Self {
            min_volume_history: 3,
        }
    }
}

/// Latency percentiles in the unit the SDK records (microseconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50: u64,
    pub p95: u64,
    pub p99: u64,
    pub max: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeSummary {
    pub rows: u64,
    /// Median of the recent window volumes.
    pub usual: f64,
    /// rows / usual (∞ is reported as `None` when the usual level is zero).
    pub ratio: Option<f64>,
    /// (rows − median) / (1.4826 · MAD): a robust z-score.
    pub robust_z: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationsReport {
    pub latency: Option<LatencySummary>,
    pub latency_error: Option<String>,
    pub errors: u64,
    /// errors / (rows + errors): rows are successful predictions, errors failed ones.
    pub error_rate: Option<f64>,
    pub volume: Option<VolumeSummary>,
}

pub fn latency(bytes: &[u8]) -> Result<Option<LatencySummary>> {
    if bytes.is_empty() {
        return Ok(None);
    }
    if bytes.len() > MAX_HDR_BYTES {
        return Err(EvalError::Latency(format!(
            "{} bytes exceeds {MAX_HDR_BYTES}",
            bytes.len()
        )));
    }
    let mut reader = bytes;
    let h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut reader)
        .map_err(|e| EvalError::Latency(format!("{e:?}")))?;
    if h.is_empty() {
        return Ok(None);
    }
    Ok(Some(LatencySummary {
        count: h.len(),
        p50: h.value_at_quantile(0.50),
        p95: h.value_at_quantile(0.95),
        p99: h.value_at_quantile(0.99),
        max: h.max(),
    }))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        0.5 * (v[m - 1] + v[m])
    }
}

pub fn volume(rows: u64, recent: &[u64], cfg: &OperationsConfig) -> Option<VolumeSummary> {
    if recent.len() < cfg.min_volume_history.max(1) {
        return None;
    }
    let mut v: Vec<f64> = recent.iter().map(|&r| r as f64).collect();
    let usual = median(&mut v);
    let mut dev: Vec<f64> = v.iter().map(|x| (x - usual).abs()).collect();
    let mad = median(&mut dev);
    let x = rows as f64;
    Some(VolumeSummary {
        rows,
        usual,
        ratio: (usual > 0.0).then(|| x / usual),
        robust_z: (mad > 0.0).then(|| (x - usual) / (1.4826 * mad)),
    })
}

pub fn evaluate_operations(
    current: &WindowProfile,
    recent_volumes: &[u64],
    cfg: &OperationsConfig,
) -> OperationsReport {
    let (latency, latency_error) = match current.latency.as_ref().map(|l| latency(&l.hdr_v2)) {
        Some(Ok(l)) => (l, None),
        Some(Err(e)) => (None, Some(e.to_string())),
        None => (None, None),
    };
    let attempts = current.rows.saturating_add(current.errors);
    OperationsReport {
        latency,
        latency_error,
        errors: current.errors,
        error_rate: (attempts > 0).then(|| current.errors as f64 / attempts as f64),
        volume: volume(current.rows, recent_volumes, cfg),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use hdrhistogram::serialization::{Serializer, V2Serializer};

    #[test]
    fn latency_percentiles_round_trip() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        for v in 1..=1000u64 {
            h.record(v * 10).unwrap();
        }
        let mut bytes = Vec::new();
        V2Serializer::new().serialize(&h, &mut bytes).unwrap();
        let l = latency(&bytes).unwrap().unwrap();
        assert_eq!(l.count, 1000);
        assert!((l.p50 as f64 - 5000.0).abs() <= 5.0, "{l:?}");
        assert!((l.p99 as f64 - 9900.0).abs() <= 10.0, "{l:?}");
        assert!(latency(&bytes[..bytes.len() / 2]).is_err());
        assert!(latency(b"garbage bytes here").is_err());
    }

    #[test]
    fn volume_uses_median_and_mad() {
        let cfg = OperationsConfig::default();
        assert!(volume(10, &[10, 10], &cfg).is_none());
        let v = volume(50, &[100, 110, 90, 100], &cfg).unwrap();
        assert_eq!(v.usual, 100.0);
        assert_eq!(v.ratio, Some(0.5));
        assert!(v.robust_z.unwrap() < -3.0);
    }
}
