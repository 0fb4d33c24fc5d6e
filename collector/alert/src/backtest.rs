//! Back-testing: replaying stored windows through the live engine to answer "when would this
//! rule have fired and resolved?".

use serde_json::Value;

use crate::engine::{Engine, EngineConfig, RuleState, Transition};
use crate::error::Result;
use crate::rule::Rule;

/// Every lifecycle transition `rule` would have produced over `history`
/// (`(window_start_ms, metrics document)` pairs). Windows are replayed in time order (the input
/// is sorted first; duplicates of a window start are ignored like in live evaluation) with
/// `now` equal to the window start. Timers (escalation, renotify) are not simulated: they depend
/// on acknowledgements that history does not contain.
pub fn backtest(rule: &Rule, history: &[(i64, Value)]) -> Result<Vec<Transition>> {
    let mut ordered: Vec<&(i64, Value)> = history.iter().collect();
    ordered.sort_by_key(|(start, _)| *start);
    // The replay keeps all history; only the per-rule subject bound stays.
    let engine = Engine::new(EngineConfig {
        history_cap: usize::MAX,
        ..EngineConfig::default()
    });
    let windows = ordered.into_iter().map(|(start, doc)| (*start, doc));
    Ok(replay(&engine, rule, "backtest", windows)?.history)
}

/// Feeds `windows` (oldest first) through a fresh state with `now` equal to each window start.
/// Back-tests and reconciliation both go through here, so both see exactly what the live
/// engine would have done.
pub(crate) fn replay<'a>(
    engine: &Engine,
    rule: &Rule,
    scope: &str,
    windows: impl IntoIterator<Item = (i64, &'a Value)>,
) -> Result<RuleState> {
    let mut state = RuleState::new(rule.id.clone(), scope);
    for (start, doc) in windows {
        (state, _) = engine.observe(&state, rule, start, doc, start)?;
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::engine::TransitionKind;
    use serde_json::json;

    const MINUTE: i64 = 60_000;

    /// A stored hour of windows: feature `income` drifts from minute 10 to minute 24, feature
    /// `age` has one isolated spike at minute 40 and a data gap at minutes 15–16.
    fn history() -> Vec<(i64, Value)> {
        (0..60)
            .map(|m| {
                let income = if (10..25).contains(&m) {
                    0.31 + 0.001 * m as f64
                } else {
                    0.04
                };
                let age = match m {
                    40 => json!(0.5),
                    15 | 16 => json!(null),
                    _ => json!(0.02),
                };
                let doc = json!({"drift": {"features": {
                    "income": {"psi": income}, "age": {"psi": age}
                }}});
                (1_800_000_000_000 + m * MINUTE, doc)
            })
            .collect()
    }

    fn rule() -> Rule {
        Rule::from_json(
            br#"{"id":"psi","project":"p","name":"Feature PSI","metric":"drift.features.*.psi",
                 "comparator":">","threshold":0.25,"resolve_threshold":0.1,"for_windows":3,
                 "resolve_after_windows":2,"severity":"warning"}"#,
        )
        .unwrap()
    }

    #[test]
    fn finds_the_firing_and_resolving_windows() {
        let mut h = history();
        h.reverse(); // stored order must not matter
        let transitions = backtest(&rule(), &h).unwrap();
        let t0 = 1_800_000_000_000;
        let at = |subject: &str, kind| {
            transitions
                .iter()
                .filter(|t| t.subject == subject && t.kind == kind)
                .map(|t| (t.window_start_ms.unwrap() - t0) / MINUTE)
                .collect::<Vec<_>>()
        };
        // Drift starts at 10: pending at 10, fires on the third breaching window (12),
        // healthy from 25, resolves on the second healthy window (26).
        assert_eq!(at("income", TransitionKind::Pending), vec![10]);
        assert_eq!(at("income", TransitionKind::Fired), vec![12]);
        assert_eq!(at("income", TransitionKind::Resolved), vec![26]);
        // The single spike goes pending and is cleared; it never fires.
        assert_eq!(at("age", TransitionKind::Pending), vec![40]);
        assert_eq!(at("age", TransitionKind::Cleared), vec![41]);
        assert!(at("age", TransitionKind::Fired).is_empty());
        assert_eq!(transitions.len(), 5);
    }

    #[test]
    fn invalid_selector_is_an_error_not_an_empty_result() {
        let mut r = rule();
        r.metric = "nope.x".into();
        assert!(backtest(&r, &history()).is_err());
    }
}
