#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Robustness probes: recorded into the open window, refused when malformed, shipped with the
//! window, and merged so that the result does not depend on how parts are grouped or ordered.

mod common;

use neurocloak_core::profile::{MAX_PROBES, WindowProfile, merge_parts, window_stability};
use neurocloak_core::{CoreError, Monitor, Prediction, Value};
use neurocloak_proto as pb;
use proptest::prelude::*;
use prost::Message;

fn probe(stability: f64, rows: u64) -> pb::RobustnessProbe {
    pb::RobustnessProbe {
        stability,
        rows,
        repeats: 3,
        noise: 0.1,
        dropout: 0.05,
        discrete: true,
        feature_sensitivity: [("x".to_owned(), 1.0 - stability)].into(),
        probe_time_ms: 0,
    }
}

fn log_one(m: &Monitor) {
    m.log(
        &[("x", Value::Number(1.0))],
        &Prediction {
            prediction: Value::Number(0.5),
            ..Prediction::default()
        },
    )
    .unwrap();
}

#[test]
fn a_recorded_probe_ships_with_its_window() {
    let (m, sink) = common::monitor(|_| {});
    log_one(&m);
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    m.record_robustness(probe(0.8, 200)).unwrap();
    m.record_robustness(probe(0.4, 50)).unwrap();
    let w = common::flushed(&m, &sink);
    assert_eq!(w.robustness.len(), 2);
    assert_eq!(w.robustness_dropped, 0);
    for p in &w.robustness {
        // The coarse clock may lag the precise one by a few ms.
        assert!(p.probe_time_ms >= before - 10, "{}", p.probe_time_ms);
    }
    let s = window_stability(&w.robustness).unwrap();
    assert!(
        (s - (0.8 * 200.0 + 0.4 * 50.0) / 250.0).abs() < 1e-12,
        "{s}"
    );
}

#[test]
fn a_probe_alone_still_ships_a_window() {
    let (m, sink) = common::monitor(|_| {});
    m.record_robustness(probe(0.9, 10)).unwrap();
    let w = common::flushed(&m, &sink);
    assert_eq!(w.rows, 0);
    assert_eq!(w.robustness.len(), 1);
}

#[test]
fn more_probes_than_the_cap_keep_the_newest_and_count_the_rest() {
    let (m, sink) = common::monitor(|_| {});
    for i in 0..(MAX_PROBES + 5) {
        m.record_robustness(probe(i as f64 / 100.0, 10)).unwrap();
    }
    let w = common::flushed(&m, &sink);
    assert_eq!(w.robustness.len(), MAX_PROBES);
    assert_eq!(w.robustness_dropped, 5);
}

#[test]
fn malformed_probes_are_refused_and_leave_nothing_behind() {
    let (m, sink) = common::monitor(|_| {});
    log_one(&m);
    let spoilt: Vec<fn(&mut pb::RobustnessProbe)> = vec![
        |p| p.stability = f64::NAN,
        |p| p.stability = 1.0 + 1e-9,
        |p| p.noise = f64::INFINITY,
        |p| p.dropout = -0.5,
        |p| p.rows = 0,
        |p| p.repeats = 0,
        |p| {
            p.feature_sensitivity.insert("y".into(), f64::NEG_INFINITY);
        },
        |p| {
            p.feature_sensitivity.insert("z".repeat(100_000), 0.5);
        },
    ];
    for spoil in spoilt {
        let mut p = probe(0.5, 10);
        spoil(&mut p);
        let e = m.record_robustness(p).expect_err("should be refused");
        assert!(
            matches!(e, CoreError::InvalidProto { what, .. } if what == "RobustnessProbe"),
            "{e}"
        );
    }
    let w = common::flushed(&m, &sink);
    assert!(w.robustness.is_empty());
    m.shutdown(std::time::Duration::from_secs(1)).unwrap();
    assert!(matches!(
        m.record_robustness(probe(0.5, 10)),
        Err(CoreError::Shutdown)
    ));
}

#[test]
fn a_hostile_wire_probe_fails_decoding() {
    let mut w = WindowProfile::new(
        pb::ModelIdentity::default(),
        pb::Schema::default(),
        0,
        60_000,
    )
    .to_proto();
    w.robustness = vec![probe(f64::NAN, 1)];
    assert!(WindowProfile::from_proto(&w).is_err());
    w.robustness = vec![probe(0.5, 1); MAX_PROBES + 1];
    assert!(WindowProfile::from_proto(&w).is_err());
    w.robustness = vec![probe(0.5, 1); MAX_PROBES];
    assert!(WindowProfile::from_proto(&w).is_ok());
}

fn part(probes: Vec<pb::RobustnessProbe>, dropped: u64) -> pb::WindowProfile {
    let mut w = WindowProfile::new(
        pb::ModelIdentity {
            project: "p".into(),
            model: "m".into(),
            version: "1".into(),
            environment: "prod".into(),
        },
        pb::Schema::default(),
        60_000,
        60_000,
    );
    w.robustness = probes;
    w.robustness_dropped = dropped;
    w.to_proto()
}

fn arb_probe() -> impl Strategy<Value = pb::RobustnessProbe> {
    (
        0.0f64..=1.0,
        1u64..5000,
        1u32..10,
        // Few distinct times, so ties (broken by the encoding) are common.
        0i64..6,
        proptest::collection::btree_map("[a-c]", 0.0f64..=1.0, 0..3),
    )
        .prop_map(
            |(stability, rows, repeats, t, feature_sensitivity)| pb::RobustnessProbe {
                stability,
                rows,
                repeats,
                noise: 0.05,
                dropout: 0.0,
                discrete: rows % 2 == 0,
                feature_sensitivity,
                probe_time_ms: 1_700_000_000_000 + t,
            },
        )
}

fn arb_part() -> impl Strategy<Value = pb::WindowProfile> {
    (
        proptest::collection::vec(arb_probe(), 0..=MAX_PROBES),
        0u64..4,
    )
        .prop_map(|(p, d)| part(p, d))
}

fn merged(parts: &[pb::WindowProfile]) -> Vec<u8> {
    let mut m = merge_parts(parts).unwrap();
    // `parts` adds up like the probes; only the probe fields are under test here.
    m.parts = 0;
    m.encode_to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn probe_merge_is_associative_and_commutative(a in arb_part(), b in arb_part(), c in arb_part()) {
        let ab_c = merged(&[merge_parts(&[a.clone(), b.clone()]).unwrap(), c.clone()]);
        let a_bc = merged(&[a.clone(), merge_parts(&[b.clone(), c.clone()]).unwrap()]);
        prop_assert!(ab_c == a_bc, "merge is not associative");
        let cba = merged(&[c.clone(), b.clone(), a.clone()]);
        prop_assert!(ab_c == cba, "merge is not commutative");
        let out = WindowProfile::from_proto(&merge_parts(&[a.clone(), b.clone(), c.clone()]).unwrap()).unwrap();
        let total: usize = [&a, &b, &c].iter().map(|p| p.robustness.len()).sum();
        let dropped: u64 = [&a, &b, &c].iter().map(|p| p.robustness_dropped).sum();
        prop_assert_eq!(out.robustness.len(), total.min(MAX_PROBES));
        prop_assert_eq!(out.robustness_dropped, dropped + (total - out.robustness.len()) as u64);
        // The kept probes are the newest ones.
        let mut times: Vec<i64> = [&a, &b, &c]
            .iter()
            .flat_map(|p| p.robustness.iter().map(|r| r.probe_time_ms))
            .collect();
        times.sort_unstable_by(|x, y| y.cmp(x));
        times.truncate(MAX_PROBES);
        let kept: Vec<i64> = out.robustness.iter().map(|p| p.probe_time_ms).collect();
        prop_assert_eq!(kept, times);
    }

    #[test]
    fn window_stability_stays_in_range_and_between_its_probes(a in arb_part()) {
        let s = window_stability(&a.robustness);
        prop_assert_eq!(s.is_none(), a.robustness.is_empty());
        if let Some(s) = s {
            let lo = a.robustness.iter().map(|p| p.stability).fold(f64::INFINITY, f64::min);
            let hi = a.robustness.iter().map(|p| p.stability).fold(f64::NEG_INFINITY, f64::max);
            prop_assert!((0.0..=1.0).contains(&s));
            prop_assert!(s >= lo - 1e-12 && s <= hi + 1e-12, "{} outside [{}, {}]", s, lo, hi);
        }
    }
}
