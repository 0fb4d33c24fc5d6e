//! Reconciliation: bringing a live rule state in line with windows whose metrics changed after
//! the engine observed them (a window re-evaluated once its late labels joined).
//!
//! The live state is the engine run over each window's metrics as first observed. When a
//! window at or before the last observed one is re-evaluated, [`Engine::reconcile`] replays the
//! stored metrics documents up to the last observed window through a fresh state (the
//! back-test path, [`crate::backtest`]) and moves the live alerts only by the difference: fire
//! if the replay is firing and the live alert is not, resolve if the live alert is firing and
//! the replay is not, pending/cleared history entries for the rest. Counters are taken from the
//! replay so later windows continue from it. Reconciling the same history twice changes nothing
//! the second time, so a repeated re-evaluation cannot notify twice.
//!
//! A replay of a suffix of history only knows the present if nothing before the suffix can
//! matter. Per subject that holds when the suffix contains a *settling run*:
//! - `for_windows` breaching values in a row: whatever came before, the alert is firing at the
//!   end of the run with no healthy count;
//! - `resolve_after_windows` healthy values in a row: whatever came before, the alert is not
//!   firing at the end of the run and counts nothing.
//!
//! ("In a row" counts windows with a value; windows without data are skipped, as live.) From
//! the end of such a run on, every starting state gives the same states, so the replay is
//! exact; `tests/engine_props.rs` checks this against a replay of the whole revised history. The whole state is known when the suffix reaches the first window the state
//! observed, because the live state started empty there too. A subject the history does not
//! settle (values inside the hysteresis band, too short a suffix, or no value at all: missing
//! data never resolves an alert) keeps its live state and is counted in
//! [`RuleState::unsettled_subjects`]: reconciliation never guesses. [`Engine::settled`] tells
//! a caller reading history newest first when it has read enough.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::backtest::replay;
use crate::engine::{
    Action, AlertState, Engine, RuleState, Status, TransitionKind, check_state, windows_needed,
};
use crate::error::{AlertError, Result};
use crate::rule::Rule;
use crate::selector::Selector;

/// A re-evaluated window and its new metrics document.
#[derive(Debug, Clone, Copy)]
pub struct Revised<'a> {
    pub window_start_ms: i64,
    pub doc: &'a Value,
}

/// What the replayed history says about one subject at the state's last window.
pub(crate) struct Truth {
    /// The replay's alert; None means inactive.
    pub(crate) alert: Option<AlertState>,
    /// The subject's newest value in the replayed windows.
    pub(crate) latest: Option<(i64, f64)>,
    /// Where the replay fired its current episode.
    pub(crate) fired_window_ms: i64,
    /// Where the replay last resolved, if it did.
    pub(crate) resolved_window_ms: Option<i64>,
    /// Where the replay's current pending run started.
    pub(crate) pending_window_ms: i64,
    pub(crate) revised_window_ms: i64,
}

/// Consecutive-run counters of one subject over the replayed windows.
#[derive(Debug, Default)]
struct Runs {
    breaching: u32,
    healthy: u32,
    settled: bool,
    latest: Option<(i64, f64)>,
}

/// The stored windows a reconciliation uses, and which subjects they settle.
struct Span<'a> {
    windows: BTreeMap<i64, &'a Value>,
    /// The windows reach the state's first one: every subject is settled.
    complete: bool,
    /// Only for the subjects asked about, so hostile documents cannot grow it unbounded.
    runs: BTreeMap<String, Runs>,
}

impl<'a> Span<'a> {
    /// The windows of `history` the state has observed (up to its last one, from its first
    /// one on), the first document of a window start winning as in live evaluation.
    fn new(state: &RuleState, history: &'a [(i64, Value)]) -> Self {
        let last = state.last_window_ms.unwrap_or(i64::MIN);
        let first = state.first_window_ms;
        let mut windows = BTreeMap::new();
        for (start, doc) in history {
            if *start <= last && first.is_none_or(|f| *start >= f) {
                windows.entry(*start).or_insert(doc);
            }
        }
        let complete = first.is_some_and(|f| history.iter().any(|(start, _)| *start <= f));
        Span {
            windows,
            complete,
            runs: BTreeMap::new(),
        }
    }

    /// Oldest first.
    fn windows(&self) -> impl Iterator<Item = (i64, &'a Value)> + '_ {
        self.windows.iter().map(|(start, doc)| (*start, *doc))
    }

    /// Counts the runs of `subjects` over the windows.
    fn track(&mut self, rule: &Rule, selector: &Selector, subjects: &BTreeSet<String>, max: usize) {
        let needed_breaching = windows_needed(rule.for_windows);
        let needed_healthy = windows_needed(rule.resolve_after_windows);
        for (start, doc) in &self.windows {
            for sample in selector.read(doc, max).samples {
                let Some(value) = sample.value else { continue };
                if !subjects.contains(&sample.subject) {
                    continue;
                }
                let r = self.runs.entry(sample.subject).or_default();
                r.latest = Some((*start, value));
                if rule.breaches(value) {
                    r.breaching = r.breaching.saturating_add(1);
                    r.healthy = 0;
                } else {
                    r.breaching = 0;
                    r.healthy = if rule.is_healthy(value) {
                        r.healthy.saturating_add(1)
                    } else {
                        0
                    };
                }
                r.settled |= r.breaching >= needed_breaching || r.healthy >= needed_healthy;
            }
        }
    }

    /// A subject without a single value in the span is never settled: missing data does not
    /// resolve an alert here either.
    fn settles(&self, subject: &str) -> bool {
        self.runs
            .get(subject)
            .is_some_and(|r| self.complete || r.settled)
    }
}

impl Engine {
    /// Whether `history` (stored windows as `(window_start_ms, metrics document)`, any order)
    /// decides the present state of every subject the re-evaluation may have changed: those the
    /// state tracks and those with a value in the revised document. A caller reads history
    /// newest first from the state's last window until this holds (or its own bound is hit).
    pub fn settled(
        &self,
        state: &RuleState,
        rule: &Rule,
        revised: Revised<'_>,
        history: &[(i64, Value)],
    ) -> Result<bool> {
        check_state(state, rule)?;
        let selector = rule.selector()?;
        let mut span = Span::new(state, history);
        if span.complete {
            return Ok(true);
        }
        let max = self.config.max_subjects_per_window;
        let mut subjects: BTreeSet<String> = state.alerts.keys().cloned().collect();
        let revised_samples = selector.read(revised.doc, max).samples;
        subjects.extend(
            revised_samples
                .into_iter()
                .filter(|s| s.value.is_some())
                .map(|s| s.subject),
        );
        span.track(rule, &selector, &subjects, max);
        Ok(subjects.iter().all(|s| span.settles(s)))
    }

    /// Brings `state` in line with `history` after the window `revised` was re-evaluated:
    /// replays the stored windows up to the state's last one and applies only the difference
    /// (see the module docs). `history` should hold the windows read so far, at least until
    /// [`Engine::settled`] holds; windows after the state's last one (not observed yet) and
    /// before its first one (not watched then) are ignored. The input state is untouched.
    pub fn reconcile(
        &self,
        state: &RuleState,
        rule: &Rule,
        revised: Revised<'_>,
        history: &[(i64, Value)],
        now_ms: i64,
    ) -> Result<(RuleState, Vec<Action>)> {
        check_state(state, rule)?;
        match state.last_window_ms {
            Some(last) if revised.window_start_ms <= last => {}
            _ => {
                return Err(AlertError::InvalidArgument(format!(
                    "window {} is after the last one observed; observe it instead",
                    revised.window_start_ms
                )));
            }
        }
        let selector = rule.selector()?;
        let mut span = Span::new(state, history);
        // The replay keeps the live bounds, so a hostile history costs no more than live.
        let replayed = replay(self, rule, &state.scope, span.windows())?;
        let subjects: BTreeSet<String> = state
            .alerts
            .keys()
            .chain(replayed.alerts.keys())
            .cloned()
            .collect();
        span.track(
            rule,
            &selector,
            &subjects,
            self.config.max_subjects_per_window,
        );
        let mut next = state.clone();
        let mut unsettled = 0;
        let mut step = self.step(&mut next, rule, now_ms);
        for subject in &subjects {
            // A subject the replay had no room for is absent there without being healthy.
            let known = span.settles(subject)
                && (replayed.alerts.contains_key(subject) || replayed.rejected_subjects == 0);
            if !known {
                unsettled += 1;
                continue;
            }
            let truth = truth(&replayed, &span, subject, revised.window_start_ms);
            step.adopt(subject, &truth, self.config.max_subjects);
        }
        let actions = step.actions;
        next.reconciled_windows += 1;
        next.unsettled_subjects += unsettled;
        next.alerts.retain(|_, a| a.status != Status::Inactive);
        Ok((next, actions))
    }
}

fn truth(replayed: &RuleState, span: &Span<'_>, subject: &str, revised: i64) -> Truth {
    let last_at = |kind| {
        replayed
            .history
            .iter()
            .rev()
            .find(|t| t.subject == subject && t.kind == kind)
            .and_then(|t| t.window_start_ms)
    };
    let alert = replayed.alerts.get(subject).cloned();
    let latest = span.runs.get(subject).and_then(|r| r.latest);
    Truth {
        fired_window_ms: alert
            .as_ref()
            .and_then(|a| a.fired_window_ms)
            .unwrap_or(revised),
        resolved_window_ms: last_at(TransitionKind::Resolved),
        pending_window_ms: last_at(TransitionKind::Pending)
            .or(latest.map(|(w, _)| w))
            .unwrap_or(revised),
        revised_window_ms: revised,
        alert,
        latest,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::engine::tests::{MIN, observe_each, psi_rule};
    use crate::engine::{EngineConfig, NotificationKind};
    use crate::rule::Escalation;
    use serde_json::json;

    /// Accuracy below 0.8 for 2 windows; resolves after 2 windows at or above 0.85; pages after
    /// a minute and never renotifies. Otherwise the engine tests' trust rule.
    fn accuracy_rule() -> Rule {
        Rule {
            id: "acc".into(),
            name: "Accuracy".into(),
            metric: "performance.accuracy".into(),
            threshold: 0.8,
            resolve_threshold: Some(0.85),
            escalation: Some(Escalation {
                after_secs: 60,
                channel: "pager".into(),
            }),
            renotify_secs: None,
            ..crate::engine::tests::rule()
        }
    }

    fn doc(accuracy: Option<f64>) -> Value {
        accuracy.map_or(json!({}), |a| json!({"performance": {"accuracy": a}}))
    }

    /// Windows 0.. with these accuracies, as the store would hold them.
    fn stored(values: &[Option<f64>]) -> Vec<(i64, Value)> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| (i as i64 * MIN, doc(*v)))
            .collect()
    }

    /// The live state after observing `values` as windows 0.. (each once, in order).
    fn live(rule: &Rule, values: &[Option<f64>]) -> (RuleState, Vec<Action>) {
        let (state, actions) = observe_each(rule, &stored(values));
        (state, actions.into_iter().flatten().collect())
    }

    /// The accuracy rule firing on the first breaching window.
    fn at_once() -> Rule {
        Rule {
            for_windows: 1,
            ..accuracy_rule()
        }
    }

    fn revised(history: &[(i64, Value)], window: i64) -> Revised<'_> {
        let doc = &history.iter().find(|(w, _)| *w == window).unwrap().1;
        Revised {
            window_start_ms: window,
            doc,
        }
    }

    fn kinds(actions: &[Action]) -> Vec<NotificationKind> {
        actions.iter().map(|a| a.notification.kind).collect()
    }

    #[test]
    fn late_values_fire_once_and_reconciling_again_changes_nothing() {
        let rule = accuracy_rule();
        let engine = Engine::default();
        let (state, actions) = live(&rule, &[None; 5]);
        assert!(actions.is_empty() && state.alerts.is_empty());

        // Window 0's labels arrive: one breaching window is only pending.
        let h = stored(&[Some(0.5), None, None, None, None]);
        let (state, actions) = engine
            .reconcile(&state, &rule, revised(&h, 0), &h, 1_000)
            .unwrap();
        assert!(actions.is_empty());
        let alert = state.alerts.values().next().unwrap();
        assert_eq!(
            (alert.status, alert.breaching_windows),
            (Status::Pending, 1)
        );
        assert_eq!(state.history[0].kind, TransitionKind::Pending);

        // Window 1's labels make two breaching windows in a row: it fires, labelled with the
        // window the run completed in.
        let h = stored(&[Some(0.5), Some(0.6), None, None, None]);
        let (state, actions) = engine
            .reconcile(&state, &rule, revised(&h, MIN), &h, 2_000)
            .unwrap();
        assert_eq!(kinds(&actions), vec![NotificationKind::Fire]);
        let fire = &actions[0].notification;
        assert_eq!(fire.window_start_ms, Some(MIN));
        assert_eq!(fire.value, Some(0.6));
        assert_eq!(fire.firing_since_ms, Some(2_000));
        assert_eq!(actions[0].channels, vec!["hook".to_owned()]);
        let alert = state.alerts.values().next().unwrap();
        assert_eq!(alert.status, Status::Firing);
        assert_eq!(alert.fired_window_ms, Some(MIN));
        assert_eq!(
            state.last_window_ms,
            Some(4 * MIN),
            "the live position does not move"
        );
        assert_eq!(state.reconciled_windows, 2);

        // The same revision again, or another window's unchanged revision: nothing new.
        for window in [MIN, 0, 3 * MIN] {
            let (again, actions) = engine
                .reconcile(&state, &rule, revised(&h, window), &h, 3_000)
                .unwrap();
            assert!(actions.is_empty(), "window {window}: {actions:?}");
            assert_eq!(again.alerts, state.alerts);
            assert_eq!(again.next_seq, state.next_seq);
        }

        // Escalation runs from when it fired live, and the live engine carries on from the
        // replayed counters: two healthy windows resolve it.
        let (state, escalated) = engine.tick(&state, &rule, 2_000 + 60_000).unwrap();
        assert_eq!(kinds(&escalated), vec![NotificationKind::Escalate]);
        let (state, a) = engine
            .observe(&state, &rule, 5 * MIN, &doc(Some(0.9)), 70_000)
            .unwrap();
        assert!(a.is_empty());
        let (state, a) = engine
            .observe(&state, &rule, 6 * MIN, &doc(Some(0.9)), 80_000)
            .unwrap();
        assert_eq!(kinds(&a), vec![NotificationKind::Resolve]);
        assert_eq!(a[0].channels, vec!["hook".to_owned(), "pager".to_owned()]);
        let fired: Vec<_> = state
            .history
            .iter()
            .filter(|t| t.kind == TransitionKind::Fired)
            .collect();
        assert_eq!(fired.len(), 1);
    }

    #[test]
    fn a_re_evaluation_that_withdraws_the_breach_resolves_the_firing_alert() {
        let rule = at_once();
        let engine = Engine::default();
        let (state, actions) = live(&rule, &[Some(0.9), Some(0.5), None]);
        assert_eq!(kinds(&actions), vec![NotificationKind::Fire]);
        let first_fire = actions[0].notification.id.clone();
        let (state, _) = engine.tick(&state, &rule, 10 * MIN).unwrap();

        // More labels for window 1 lift its accuracy: it never breached.
        let h = stored(&[Some(0.9), Some(0.88), None]);
        let (state, actions) = engine
            .reconcile(&state, &rule, revised(&h, MIN), &h, 11 * MIN)
            .unwrap();
        assert_eq!(kinds(&actions), vec![NotificationKind::Resolve]);
        // Resolution reaches the escalation channel too, since it was paged.
        assert_eq!(
            actions[0].channels,
            vec!["hook".to_owned(), "pager".to_owned()]
        );
        assert_eq!(actions[0].notification.window_start_ms, Some(MIN));
        assert_eq!(actions[0].notification.value, Some(0.88));
        let alert = state.alerts.values().next().unwrap();
        assert_eq!(alert.status, Status::Resolved);
        assert_eq!((alert.breaching_windows, alert.healthy_windows), (0, 0));
        let (again, actions) = engine
            .reconcile(&state, &rule, revised(&h, MIN), &h, 12 * MIN)
            .unwrap();
        assert!(actions.is_empty());
        assert_eq!(again.history, state.history);

        // A later revision puts the breach back in the same window: a new episode, whose
        // notification a receiver must not drop as a repeat of the withdrawn one.
        let h = stored(&[Some(0.9), Some(0.4), None]);
        let (state, actions) = engine
            .reconcile(&state, &rule, revised(&h, MIN), &h, 13 * MIN)
            .unwrap();
        assert_eq!(kinds(&actions), vec![NotificationKind::Fire]);
        assert_eq!(actions[0].notification.window_start_ms, Some(MIN));
        assert_ne!(actions[0].notification.id, first_fire);
        assert_eq!(state.alerts.values().next().unwrap().episode, 2);
    }

    #[test]
    fn late_healthy_windows_resolve_where_the_replay_resolves() {
        let rule = at_once();
        let engine = Engine::default();
        let (state, _) = live(&rule, &[Some(0.5), None, None, None]);
        // Labels for windows 1 and 2 arrive (healthy); window 3 still has none.
        let h = stored(&[Some(0.5), Some(0.9), Some(0.95), None]);
        let (_, actions) = engine
            .reconcile(&state, &rule, revised(&h, 2 * MIN), &h, 5 * MIN)
            .unwrap();
        assert_eq!(kinds(&actions), vec![NotificationKind::Resolve]);
        assert_eq!(actions[0].notification.window_start_ms, Some(2 * MIN));
        // One healthy window is not enough (resolve after 2): still firing, count kept.
        let (state, _) = live(&rule, &[Some(0.5), None, None, None]);
        let h = stored(&[Some(0.5), Some(0.9), None, None]);
        let (state, actions) = engine
            .reconcile(&state, &rule, revised(&h, MIN), &h, 5 * MIN)
            .unwrap();
        assert!(actions.is_empty());
        let alert = state.alerts.values().next().unwrap();
        assert_eq!((alert.status, alert.healthy_windows), (Status::Firing, 1));
        let (_, a) = engine
            .observe(&state, &rule, 4 * MIN, &doc(Some(0.9)), 6 * MIN)
            .unwrap();
        assert_eq!(kinds(&a), vec![NotificationKind::Resolve]);
    }

    #[test]
    fn unsettled_subjects_keep_their_live_state_and_are_counted() {
        let rule = at_once();
        let engine = Engine::default();
        let (state, _) = live(&rule, &[Some(0.5), None, None, None, None, None]);
        // Only the newest windows were read, all inside the hysteresis band (0.8..0.85): they
        // neither fire nor resolve, and nothing before them is known.
        let h: Vec<_> =
            stored(&[None, None, None, Some(0.82), Some(0.81), Some(0.83)]).split_off(3);
        let r = revised(&h, 4 * MIN);
        assert!(!engine.settled(&state, &rule, r, &h).unwrap());
        let (next, actions) = engine.reconcile(&state, &rule, r, &h, 0).unwrap();
        assert!(actions.is_empty());
        assert_eq!(next.alerts, state.alerts);
        assert_eq!(next.unsettled_subjects, 1);
        // Read back to the first window observed: everything is known, and it keeps firing
        // (band values never resolve), now with the replayed values.
        let h = stored(&[Some(0.5), None, None, Some(0.82), Some(0.81), Some(0.83)]);
        assert!(engine.settled(&state, &rule, r, &h).unwrap());
        let (next, actions) = engine.reconcile(&state, &rule, r, &h, 0).unwrap();
        assert!(actions.is_empty());
        let alert = next.alerts.values().next().unwrap();
        assert_eq!(
            (alert.status, alert.last_value),
            (Status::Firing, Some(0.83))
        );
        assert_eq!(next.unsettled_subjects, 0);
    }

    #[test]
    fn a_settling_run_is_enough_history() {
        let rule = accuracy_rule();
        let engine = Engine::default();
        let (state, _) = live(&rule, &[Some(0.5), Some(0.5), None, None, None]);
        // The two newest windows breach: whatever came before, it is firing.
        let h = stored(&[None, None, None, Some(0.4), Some(0.3)]).split_off(3);
        assert!(
            engine
                .settled(&state, &rule, revised(&h, 3 * MIN), &h)
                .unwrap()
        );
        let (next, actions) = engine
            .reconcile(&state, &rule, revised(&h, 3 * MIN), &h, 0)
            .unwrap();
        assert!(actions.is_empty(), "already firing: {actions:?}");
        assert_eq!(next.alerts.values().next().unwrap().status, Status::Firing);
        // One of them alone settles nothing.
        let h = stored(&[None, None, None, None, Some(0.3)]).split_off(4);
        assert!(
            !engine
                .settled(&state, &rule, revised(&h, 4 * MIN), &h)
                .unwrap()
        );
    }

    #[test]
    fn wildcard_subjects_are_reconciled_separately() {
        let rule = Rule {
            resolve_after_windows: 1,
            ..psi_rule()
        };
        let engine = Engine::default();
        let psi =
            |a: f64, b: f64| json!({"drift": {"features": {"a": {"psi": a}, "b": {"psi": b}}}});
        let mut state = RuleState::new(&rule.id, "m@1");
        let mut fired = Vec::new();
        for (w, d) in [(0, psi(0.3, 0.1)), (MIN, psi(0.3, 0.1))] {
            let (next, a) = engine.observe(&state, &rule, w, &d, w).unwrap();
            state = next;
            fired.extend(a);
        }
        assert_eq!(fired.len(), 1);
        // Window 1 is revised: a recovers, b breaches.
        let h = vec![(0, psi(0.3, 0.1)), (MIN, psi(0.05, 0.4))];
        let (state, actions) = engine
            .reconcile(&state, &rule, revised(&h, MIN), &h, 5)
            .unwrap();
        let got: Vec<_> = actions
            .iter()
            .map(|a| (a.notification.subject.as_str(), a.notification.kind))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a", NotificationKind::Resolve),
                ("b", NotificationKind::Fire)
            ]
        );
        assert_eq!(state.alerts["a"].status, Status::Resolved);
        assert_eq!(state.alerts["b"].status, Status::Firing);
    }

    #[test]
    fn the_subject_bound_holds_for_reconciled_alerts_too() {
        let rule = psi_rule();
        let engine = Engine::new(EngineConfig {
            max_subjects: 2,
            ..EngineConfig::default()
        });
        let mut state = RuleState::new(&rule.id, "m@1");
        for w in [0, MIN] {
            state = engine.observe(&state, &rule, w, &json!({}), w).unwrap().0;
        }
        let many: serde_json::Map<String, Value> = (0..50)
            .map(|i| (format!("f{i:02}-{}", "x".repeat(200)), json!({"psi": 0.9})))
            .collect();
        let doc = json!({"drift": {"features": many}});
        let h = vec![(0, json!({})), (MIN, doc)];
        let (next, actions) = engine
            .reconcile(&state, &rule, revised(&h, MIN), &h, 0)
            .unwrap();
        assert_eq!(actions.len(), 2);
        assert_eq!(next.alerts.len(), 2);
        assert!(next.alerts.values().all(|a| a.status == Status::Firing));
    }

    #[test]
    fn wrong_calls_are_errors_that_leave_the_state_alone() {
        let rule = accuracy_rule();
        let engine = Engine::default();
        let (state, _) = live(&rule, &[Some(0.5)]);
        let h = stored(&[Some(0.5), Some(0.5)]);
        let err = engine
            .reconcile(&state, &rule, revised(&h, MIN), &h, 0)
            .unwrap_err();
        assert_eq!(err.http_status(), 400, "{err}");
        let fresh = RuleState::new("acc", "m@1");
        assert!(
            engine
                .reconcile(&fresh, &rule, revised(&h, 0), &h, 0)
                .is_err()
        );
        let other = Rule {
            id: "other".into(),
            ..rule.clone()
        };
        let err = engine
            .reconcile(&state, &other, revised(&h, 0), &h, 0)
            .unwrap_err();
        assert!(matches!(err, AlertError::StateMismatch { .. }));
        // Junk documents are no data, never an error or a resolution.
        let junk = vec![
            (0, json!({"performance": {"accuracy": "NaN"}})),
            (0, json!([1, 2])),
        ];
        let (next, actions) = engine
            .reconcile(&state, &rule, revised(&junk, 0), &junk, 0)
            .unwrap();
        assert!(actions.is_empty());
        assert_eq!(next.alerts, state.alerts);
    }
}
