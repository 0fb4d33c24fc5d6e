//! Robustness probe results carried by a window: their validation, their merge and the
//! window's stability that the collector scores.
//!
//! A probe calls the real model (only the SDK can), so its result travels with the window that
//! was open when it was recorded. Merging keeps the [`MAX_PROBES`] most recent probes of the
//! multiset union (ties: the smaller encoding first) and counts the others as dropped. Keeping
//! the top of a total order of a multiset union is associative and commutative, so the agent
//! and the collector get the same probes whatever order the parts arrive in.

use std::cmp::Reverse;

use neurocloak_proto as pb;
use prost::Message as _;

/// Most probes one window keeps.
pub const MAX_PROBES: usize = 16;
/// Most features in a probe's sensitivity map (the collector's default feature limit).
pub const MAX_PROBE_FEATURES: usize = 2000;
/// Longest feature name in a sensitivity map, in bytes (the collector's name limit).
pub const MAX_PROBE_NAME_LEN: usize = 256;

/// What is wrong with a probe: the field (relative to the probe, e.g. `stability` or
/// `feature_sensitivity["age"]`), which kind of problem, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeIssue {
    /// The offending field.
    pub field: String,
    /// The kind of problem (a bounded label, e.g. for a rejects metric).
    pub kind: ProbeIssueKind,
    /// What was wrong with it.
    pub why: String,
}

/// Kinds of [`ProbeIssue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeIssueKind {
    /// A number that is not finite or outside its range (counts of 0 included).
    Number,
    /// A sensitivity map with too many features.
    Count,
    /// A feature name that is empty, too long or holds control characters.
    Name,
}

impl std::fmt::Display for ProbeIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.why)
    }
}

fn issue(field: impl Into<String>, why: impl Into<String>) -> ProbeIssue {
    ProbeIssue {
        field: field.into(),
        kind: ProbeIssueKind::Number,
        why: why.into(),
    }
}

fn unit(field: &str, x: f64) -> Result<(), ProbeIssue> {
    if x.is_finite() && (0.0..=1.0).contains(&x) {
        Ok(())
    } else {
        Err(issue(field, format!("{x} is not in [0, 1]")))
    }
}

/// Checks one probe: every number finite and in its range, at least one row and one repeat,
/// a bounded sensitivity map with valid feature names. The SDK refuses such a probe when it is
/// recorded and the collector when it arrives, so both apply exactly this check.
pub fn check_probe(p: &pb::RobustnessProbe) -> Result<(), ProbeIssue> {
    unit("stability", p.stability)?;
    unit("dropout", p.dropout)?;
    if !p.noise.is_finite() || p.noise < 0.0 {
        return Err(issue(
            "noise",
            format!("{} is not a finite number >= 0", p.noise),
        ));
    }
    if p.rows == 0 {
        return Err(issue("rows", "must be at least 1"));
    }
    if p.repeats == 0 {
        return Err(issue("repeats", "must be at least 1"));
    }
    if p.probe_time_ms < 0 {
        return Err(issue("probe_time_ms", "before the Unix epoch"));
    }
    let n = p.feature_sensitivity.len();
    if n > MAX_PROBE_FEATURES {
        return Err(ProbeIssue {
            kind: ProbeIssueKind::Count,
            ..issue(
                "feature_sensitivity",
                format!("{n} features, limit {MAX_PROBE_FEATURES}"),
            )
        });
    }
    for (name, s) in &p.feature_sensitivity {
        let field = || format!("feature_sensitivity[{name:?}]");
        if name.is_empty() || name.len() > MAX_PROBE_NAME_LEN || name.chars().any(char::is_control)
        {
            return Err(ProbeIssue {
                kind: ProbeIssueKind::Name,
                ..issue(
                    field(),
                    format!(
                        "feature names must be 1..={MAX_PROBE_NAME_LEN} bytes without control characters"
                    ),
                )
            });
        }
        unit(&field(), *s)?;
    }
    Ok(())
}

/// Adds `other`'s probes (and its dropped count) to `mine`, keeping the [`MAX_PROBES`] most
/// recent in canonical order (newest first, ties by encoding); the rest add to `dropped`.
pub fn merge_probes(
    mine: &mut Vec<pb::RobustnessProbe>,
    dropped: &mut u64,
    other: &[pb::RobustnessProbe],
    other_dropped: u64,
) {
    mine.extend(other.iter().cloned());
    *dropped = dropped.saturating_add(other_dropped);
    if mine.len() > 1 {
        mine.sort_by_cached_key(|p| (Reverse(p.probe_time_ms), p.encode_to_vec()));
    }
    if mine.len() > MAX_PROBES {
        *dropped = dropped.saturating_add((mine.len() - MAX_PROBES) as u64);
        mine.truncate(MAX_PROBES);
    }
}

/// The window's prediction stability: the rows-weighted mean of its probes' stabilities,
/// Σ rowsᵢ·stabilityᵢ / Σ rowsᵢ, so a probe over 1000 rows counts ten times one over 100.
/// `None` without probes. Probes that fail [`check_probe`] are ignored.
pub fn window_stability(probes: &[pb::RobustnessProbe]) -> Option<f64> {
    let (weighted, rows) =
        probes
            .iter()
            .filter(|p| check_probe(p).is_ok())
            .fold((0.0, 0.0), |(w, n), p| {
                let r = p.rows as f64;
                (w + r * p.stability, n + r)
            });
    // Rounding can leave the mean a hair outside [0, 1]; evaluation refuses that.
    (rows > 0.0).then(|| (weighted / rows).clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn probe(stability: f64, rows: u64, t: i64) -> pb::RobustnessProbe {
        pb::RobustnessProbe {
            stability,
            rows,
            repeats: 5,
            noise: 0.05,
            dropout: 0.1,
            discrete: true,
            feature_sensitivity: [("age".to_owned(), 0.2)].into(),
            probe_time_ms: t,
        }
    }

    #[test]
    fn hostile_numbers_name_their_field() {
        type Spoil = fn(&mut pb::RobustnessProbe);
        let cases: [(Spoil, &str); 14] = [
            (|p| p.stability = f64::NAN, "stability"),
            (|p| p.stability = f64::INFINITY, "stability"),
            (|p| p.stability = -0.01, "stability"),
            (|p| p.stability = 1.5, "stability"),
            (|p| p.dropout = f64::NEG_INFINITY, "dropout"),
            (|p| p.dropout = 2.0, "dropout"),
            (|p| p.noise = f64::NAN, "noise"),
            (|p| p.noise = -1.0, "noise"),
            (|p| p.rows = 0, "rows"),
            (|p| p.repeats = 0, "repeats"),
            (|p| p.probe_time_ms = -1, "probe_time_ms"),
            (
                |p| {
                    p.feature_sensitivity.insert("age".into(), f64::NAN);
                },
                "feature_sensitivity[\"age\"]",
            ),
            (
                |p| {
                    p.feature_sensitivity.insert("a\u{0}b".into(), 0.5);
                },
                "feature_sensitivity[\"a\\0b\"]",
            ),
            (
                |p| {
                    p.feature_sensitivity = (0..=MAX_PROBE_FEATURES)
                        .map(|i| (format!("f{i}"), 0.0))
                        .collect();
                },
                "feature_sensitivity",
            ),
        ];
        for (spoil, field) in cases {
            let mut p = probe(0.9, 100, 1);
            assert!(check_probe(&p).is_ok());
            spoil(&mut p);
            let e = check_probe(&p).expect_err(field);
            assert_eq!(e.field, field, "{e}");
        }
        let kind = |spoil: fn(&mut pb::RobustnessProbe)| {
            let mut p = probe(0.9, 100, 1);
            spoil(&mut p);
            check_probe(&p).map_err(|e| e.kind)
        };
        assert_eq!(kind(|_| {}), Ok(()));
        assert_eq!(kind(|p| p.rows = 0), Err(ProbeIssueKind::Number));
        assert_eq!(
            kind(|p| {
                p.feature_sensitivity
                    .insert("x".repeat(MAX_PROBE_NAME_LEN + 1), 0.1);
            }),
            Err(ProbeIssueKind::Name)
        );
        assert_eq!(
            kind(|p| {
                p.feature_sensitivity.insert(String::new(), 0.1);
            }),
            Err(ProbeIssueKind::Name)
        );
        assert_eq!(
            kind(|p| {
                p.feature_sensitivity = (0..=MAX_PROBE_FEATURES)
                    .map(|i| (format!("f{i}"), 0.0))
                    .collect();
            }),
            Err(ProbeIssueKind::Count)
        );
    }

    #[test]
    fn stability_is_rows_weighted() {
        assert_eq!(window_stability(&[]), None);
        let s = window_stability(&[probe(1.0, 900, 1), probe(0.0, 100, 2)]).unwrap();
        assert!((s - 0.9).abs() < 1e-12, "{s}");
        let bad = probe(f64::NAN, 1_000_000, 3);
        let s = window_stability(&[probe(0.5, 10, 1), bad]).unwrap();
        assert!((s - 0.5).abs() < 1e-12, "{s}");
    }

    #[test]
    fn merge_keeps_the_newest_and_counts_the_rest() {
        let mut mine: Vec<_> = (0..10).map(|t| probe(0.5, 10, t)).collect();
        let mut dropped = 3;
        let other: Vec<_> = (10..20).map(|t| probe(0.5, 10, t)).collect();
        merge_probes(&mut mine, &mut dropped, &other, 2);
        assert_eq!(mine.len(), MAX_PROBES);
        assert_eq!(dropped, 3 + 2 + 4);
        let times: Vec<i64> = mine.iter().map(|p| p.probe_time_ms).collect();
        assert_eq!(times, (4..20).rev().collect::<Vec<_>>());
    }
}
