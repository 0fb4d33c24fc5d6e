//! Property tests: the engine is fed arbitrary metrics documents (NaN spelled as strings,
//! nulls, nested junk, missing paths, huge numbers) and must never panic, keep its bounds, and
//! never resolve an alert on missing data alone.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use neurocloak_alert::{
    Comparator, Engine, EngineConfig, NotificationKind, Revised, Rule, RuleState, Severity, Status,
    backtest,
};
use proptest::prelude::*;
use serde_json::{Map, Number, Value, json};

const KEYS: &[&str] = &[
    "trust_score",
    "drift",
    "features",
    "income",
    "age",
    "psi",
    "dataset_share",
    "fairness",
    "sex",
    "disparate_impact",
    "operations",
    "latency_p99_ms",
    "name",
    "0",
    "",
];

const SELECTORS: &[&str] = &[
    "trust_score",
    "drift.dataset_share",
    "drift.features.*.psi",
    "drift.features.income.psi",
    "fairness.*.disparate_impact",
    "operations.latency_p99_ms",
    "drift.*.*.psi",
    "drift.features.0.psi",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<f64>().prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
        (-2.0f64..2.0).prop_map(|f| json!(f)),
        (0.0f64..100.0).prop_map(|f| json!(f)),
        any::<i64>().prop_map(|i| json!(i)),
        any::<u64>().prop_map(|u| json!(u)),
        prop_oneof![
            Just("NaN"),
            Just("inf"),
            Just("-Infinity"),
            Just("0.5"),
            Just("")
        ]
        .prop_map(|s| json!(s)),
        ".{0,40}".prop_map(Value::String),
    ]
}

fn doc() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(prop::sample::select(KEYS), inner, 0..6).prop_map(|m| {
                Value::Object(
                    m.into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect::<Map<_, _>>(),
                )
            }),
        ]
    })
}

fn rule() -> impl Strategy<Value = Rule> {
    (
        prop::sample::select(SELECTORS),
        prop::sample::select(vec![
            Comparator::Gt,
            Comparator::Gte,
            Comparator::Lt,
            Comparator::Lte,
        ]),
        -1.0f64..100.0,
        1i64..4,
        1i64..4,
    )
        .prop_map(
            |(metric, comparator, threshold, for_windows, resolve_after)| Rule {
                id: "prop".into(),
                project: "p".into(),
                model: None,
                version: None,
                name: "prop".into(),
                metric: metric.into(),
                comparator,
                threshold,
                resolve_threshold: None,
                for_windows,
                resolve_after_windows: resolve_after,
                severity: Severity::Warning,
                labels: BTreeMap::new(),
                channels: vec!["hook".into()],
                escalation: None,
                renotify_secs: Some(60),
            },
        )
}

/// Windows: a step forward (possibly zero or backwards) and a document.
fn windows() -> impl Strategy<Value = Vec<(i64, Value)>> {
    prop::collection::vec((-1i64..3, doc()), 1..25)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn engine_never_panics_and_keeps_its_bounds(rule in rule(), windows in windows()) {
        let engine = Engine::new(EngineConfig { max_subjects: 4, history_cap: 16, ..EngineConfig::default() });
        let mut state = RuleState::new("prop", "scope");
        let mut window = 0i64;
        let mut ids = std::collections::BTreeSet::new();
        for (i, (step, doc)) in windows.iter().enumerate() {
            window += step * 60_000;
            let now = i as i64 * 60_000;
            let (next, actions) = engine.observe(&state, &rule, window, doc, now).unwrap();
            let (next, timer_actions) = engine.tick(&next, &rule, now + 30_000).unwrap();
            state = next;
            prop_assert!(state.alerts.len() <= 4);
            prop_assert!(state.history.len() <= 16);
            for alert in state.alerts.values() {
                prop_assert!(alert.status != Status::Inactive);
                if alert.status == Status::Firing {
                    prop_assert!(alert.firing_since_ms.is_some());
                }
                if let Some(v) = alert.last_value {
                    prop_assert!(v.is_finite());
                }
            }
            for action in actions.iter().chain(&timer_actions) {
                prop_assert!(action.notification.value.is_none_or(f64::is_finite));
                prop_assert!(serde_json::to_vec(&action.notification).is_ok());
                // Receivers drop repeated ids, so two different events sharing one would lose
                // a notification.
                prop_assert!(ids.insert(action.notification.id.clone()), "id reused: {:?}", action);
            }
            if let Some(key) = state.alerts.values().find(|a| a.status == Status::Firing).map(|a| a.dedup_key.clone()) {
                state = engine.acknowledge(&state, &key, "prop", now).unwrap();
            }
        }
        let history: Vec<(i64, Value)> = windows.into_iter().enumerate().map(|(i, (_, d))| (i as i64, d)).collect();
        backtest(&rule, &history).unwrap();
    }

    #[test]
    fn missing_or_non_numeric_data_never_resolves(rule in rule(), junk in prop::collection::vec(doc(), 1..20)) {
        // Make the alert fire on a clean breaching value first.
        let breaching = match rule.comparator {
            Comparator::Gt | Comparator::Gte => rule.threshold + 1.0,
            Comparator::Lt | Comparator::Lte => rule.threshold - 1.0,
        };
        let mut doc = json!({});
        set_path(&mut doc, &rule.metric.replace('*', "income"), json!(breaching));
        let engine = Engine::default();
        let mut state = RuleState::new("prop", "");
        for w in 0..rule.for_windows {
            state = engine.observe(&state, &rule, w, &doc, w).unwrap().0;
        }
        prop_assert!(state.alerts.values().any(|a| a.status == Status::Firing), "{:?}", state);
        // Then only documents whose selected values are not numbers: strip every number.
        for (i, mut junk) in junk.into_iter().enumerate() {
            strip_numbers(&mut junk);
            let w = rule.for_windows + i as i64;
            let (next, actions) = engine.observe(&state, &rule, w, &junk, w).unwrap();
            state = next;
            prop_assert!(actions.iter().all(|a| a.notification.kind != NotificationKind::Resolve));
        }
        prop_assert!(state.alerts.values().any(|a| a.status == Status::Firing));
    }
}

const MIN: i64 = 60_000;

/// Trust score below 50; resolves at or above `50 + band`.
fn trust_rule(for_windows: i64, resolve_after_windows: i64, band: f64) -> Rule {
    Rule {
        id: "trust".into(),
        project: "p".into(),
        model: None,
        version: None,
        name: "trust".into(),
        metric: "trust_score".into(),
        comparator: Comparator::Lt,
        threshold: 50.0,
        resolve_threshold: Some(50.0 + band),
        for_windows,
        resolve_after_windows,
        severity: Severity::Critical,
        labels: BTreeMap::new(),
        channels: vec!["hook".into()],
        escalation: None,
        renotify_secs: None,
    }
}

/// Windows 0.. carrying these trust scores (`None`: no data).
fn trust_docs(values: &[Option<f64>]) -> Vec<(i64, Value)> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let doc = v.map_or(json!({}), |v| json!({"trust_score": v}));
            (i as i64 * MIN, doc)
        })
        .collect()
}

fn observe_all(engine: &Engine, rule: &Rule, docs: &[(i64, Value)]) -> RuleState {
    let mut state = RuleState::new(&rule.id, "m@1");
    for (w, doc) in docs {
        state = engine.observe(&state, rule, *w, doc, *w).unwrap().0;
    }
    state
}

fn firing(state: &RuleState) -> bool {
    state.alerts.values().any(|a| a.status == Status::Firing)
}

fn counts(state: &RuleState) -> (u32, u32) {
    state
        .alerts
        .values()
        .next()
        .map_or((0, 0), |a| (a.breaching_windows, a.healthy_windows))
}

fn trust_values(len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<Option<f64>>> {
    prop::collection::vec(
        prop_oneof![1 => Just(None), 4 => (0.0f64..100.0).prop_map(Some)],
        len,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// One window of an observed history gets a new value (a re-evaluation). Reading the stored
    /// history newest first only until `settled` holds, `reconcile` must leave the live state
    /// where a replay of the whole revised history ends — firing or not, with the same counts —
    /// notify only that difference, and change nothing when run again.
    #[test]
    fn reconciling_agrees_with_a_replay_of_the_revised_history(
        for_windows in 1i64..4,
        resolve_after in 1i64..4,
        band in 0.0f64..10.0,
        prefix in trust_values(0..10),
        suffix in trust_values(1..10),
        pick in any::<prop::sample::Index>(),
        new_value in 0.0f64..100.0,
    ) {
        let rule = trust_rule(for_windows, resolve_after, band);
        let engine = Engine::default();
        let old: Vec<Option<f64>> = prefix.iter().chain(&suffix).copied().collect();
        let j = prefix.len() + pick.index(suffix.len());
        let mut new = old.clone();
        new[j] = Some(new_value);
        let live = observe_all(&engine, &rule, &trust_docs(&old));
        let stored = trust_docs(&new);
        let truth = observe_all(&engine, &rule, &stored);
        let revised = Revised { window_start_ms: j as i64 * MIN, doc: &stored[j].1 };
        let mut read = Vec::new();
        for entry in stored.iter().rev() {
            read.push(entry.clone());
            if engine.settled(&live, &rule, revised, &read).unwrap() {
                break;
            }
        }
        let (next, actions) = engine.reconcile(&live, &rule, revised, &read, 0).unwrap();
        prop_assert_eq!(firing(&next), firing(&truth), "read {} of {} windows", read.len(), stored.len());
        prop_assert_eq!(counts(&next), counts(&truth));
        let notified: Vec<NotificationKind> = actions.iter().map(|a| a.notification.kind).collect();
        let expected = match (firing(&live), firing(&truth)) {
            (false, true) => vec![NotificationKind::Fire],
            (true, false) => vec![NotificationKind::Resolve],
            _ => vec![],
        };
        prop_assert_eq!(notified, expected);
        let (again, more) = engine.reconcile(&next, &rule, revised, &read, 1).unwrap();
        prop_assert!(more.is_empty());
        prop_assert_eq!(&again.alerts, &next.alerts);
        prop_assert_eq!(again.next_seq, next.next_seq);
    }
}

fn set_path(doc: &mut Value, path: &str, value: Value) {
    let mut node = doc;
    for key in path.split('.') {
        if !node.is_object() {
            *node = json!({});
        }
        node = node
            .as_object_mut()
            .unwrap()
            .entry(key.to_owned())
            .or_insert(Value::Null);
    }
    *node = value;
}

fn strip_numbers(doc: &mut Value) {
    match doc {
        Value::Number(n) => *doc = Value::String(n.to_string()),
        Value::Array(items) => items.iter_mut().for_each(strip_numbers),
        Value::Object(map) => map.values_mut().for_each(strip_numbers),
        _ => {}
    }
}
