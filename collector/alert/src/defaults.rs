//! The rules every new project starts with.

use std::collections::BTreeMap;

use crate::rule::{Comparator, Rule, Severity};

/// The default rules for `project`, with no channels (the project adds its own) — they fire
/// and show up in the UI and history even before anyone wires a webhook:
///
/// | id | metric | condition | for | severity |
/// |---|---|---|---|---|
/// | `default-trust-score` | `trust_score` | `< 60`, resolves `>= 65` | 3 windows | critical |
/// | `default-dataset-drift` | `drift.dataset_share` | `>= 0.5`, resolves `< 0.4` | 1 window | warning |
/// | `default-four-fifths` | `fairness.*.disparate_impact` | `< 0.8`, resolves `>= 0.85` | 2 windows | warning |
///
/// The resolve thresholds give each rule a hysteresis band, and all three need two healthy
/// windows to resolve, so a metric hovering at the threshold does not flap.
pub fn default_rules(project: &str) -> Vec<Rule> {
    let rule =
        |id: &str, name: &str, metric: &str, comparator, threshold, resolve, windows, severity| {
            Rule {
                id: format!("default-{id}"),
                project: project.to_owned(),
                model: None,
                version: None,
                name: name.to_owned(),
                metric: metric.to_owned(),
                comparator,
                threshold,
                resolve_threshold: Some(resolve),
                for_windows: windows,
                resolve_after_windows: 2,
                severity,
                labels: BTreeMap::from([("source".to_owned(), "default".to_owned())]),
                channels: Vec::new(),
                escalation: None,
                renotify_secs: None,
            }
        };
    vec![
        rule(
            "trust-score",
            "Trust score below 60",
            "trust_score",
            Comparator::Lt,
            60.0,
            65.0,
            3,
            Severity::Critical,
        ),
        rule(
            "dataset-drift",
            "Dataset drift: at least half of the features drifted",
            "drift.dataset_share",
            Comparator::Gte,
            0.5,
            0.4,
            1,
            Severity::Warning,
        ),
        rule(
            "four-fifths",
            "Four-fifths rule broken (disparate impact below 0.8)",
            "fairness.*.disparate_impact",
            Comparator::Lt,
            0.8,
            0.85,
            2,
            Severity::Warning,
        ),
    ]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::engine::{Engine, NotificationKind, RuleState};
    use serde_json::json;

    #[test]
    fn defaults_validate() {
        for rule in default_rules("proj") {
            rule.validate::<&str>(&[]).unwrap();
            assert!(rule.applies_to("proj", "any", "any"));
        }
    }

    #[test]
    fn defaults_fire_on_the_documented_conditions() {
        let [trust, drift, fairness] = default_rules("p").try_into().unwrap();
        let engine = Engine::default();
        let fires = |rule: &Rule, docs: &[serde_json::Value]| {
            let mut state = RuleState::new(rule.id.clone(), "m@1");
            let mut fired = Vec::new();
            for (i, doc) in docs.iter().enumerate() {
                let (next, actions) = engine
                    .observe(&state, rule, i as i64 * 60_000, doc, 0)
                    .unwrap();
                state = next;
                fired.extend(
                    actions
                        .iter()
                        .filter(|a| a.notification.kind == NotificationKind::Fire)
                        .map(|a| (i, a.notification.subject.clone())),
                );
            }
            fired
        };
        let t = |v: f64| json!({"trust_score": v});
        assert_eq!(
            fires(&trust, &[t(59.0), t(50.0), t(40.0)]),
            vec![(2, String::new())]
        );
        assert!(fires(&trust, &[t(59.0), t(50.0), t(61.0), t(40.0)]).is_empty());
        let d = |v: f64| json!({"drift": {"dataset_share": v}});
        assert_eq!(fires(&drift, &[d(0.2), d(0.5)]), vec![(1, String::new())]);
        let f = |sex: f64, race: f64| json!({"fairness": {"sex": {"disparate_impact": sex}, "race": {"disparate_impact": race}}});
        assert_eq!(
            fires(&fairness, &[f(0.7, 0.9), f(0.75, 0.79), f(0.9, 0.7)]),
            vec![(1, "sex".to_owned()), (2, "race".to_owned())]
        );
    }
}
