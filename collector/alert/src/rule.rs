//! The alert rule model (what users write, what the collector stores) and its validation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{AlertError, Result, Violation};
use crate::selector::{Selector, truncate_for_message};

/// Largest rule body [`Rule::from_json`] accepts, in bytes.
pub const MAX_RULE_JSON_BYTES: usize = 64 * 1024;
/// Upper bound for `for_windows` and `resolve_after_windows`.
pub const MAX_WINDOWS: i64 = 1000;
const MAX_ID_LEN: usize = 128;
const MAX_NAME_LEN: usize = 200;
const MAX_LABELS: usize = 32;
const MAX_LABEL_KEY_LEN: usize = 64;
const MAX_LABEL_VALUE_LEN: usize = 256;
const MAX_CHANNELS: usize = 16;
/// Renotifying more often than this turns an alert into noise people mute.
const MIN_RENOTIFY_SECS: u64 = 60;

/// How the observed value is compared with the threshold; the alert breaches when
/// `value <comparator> threshold` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Comparator {
    #[serde(rename = ">", alias = "gt")]
    Gt,
    #[serde(rename = ">=", alias = "gte")]
    Gte,
    #[serde(rename = "<", alias = "lt")]
    Lt,
    #[serde(rename = "<=", alias = "lte")]
    Lte,
}

impl Comparator {
    /// Whether `value <self> threshold` holds.
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Self::Gt => value > threshold,
            Self::Gte => value >= threshold,
            Self::Lt => value < threshold,
            Self::Lte => value <= threshold,
        }
    }

    /// The symbol used in messages.
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Gt => ">",
            Self::Gte => ">=",
            Self::Lt => "<",
            Self::Lte => "<=",
        }
    }

    fn alerts_when_high(self) -> bool {
        matches!(self, Self::Gt | Self::Gte)
    }
}

/// How urgent a firing alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

/// Who else hears about a firing alert that nobody acknowledged in time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Escalation {
    /// Seconds after the alert started firing.
    pub after_secs: u64,
    /// Channel id notified on escalation.
    pub channel: String,
}

/// An alert rule. Windows counts are signed so that a negative value reaches [`Rule::validate`]
/// and gets a message naming the field, rather than a generic deserializer error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub id: String,
    pub project: String,
    /// Only windows of this model (any model when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Only windows of this model version (any version when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub name: String,
    /// Metric selector, see [`crate::selector`].
    pub metric: String,
    pub comparator: Comparator,
    pub threshold: f64,
    /// A firing alert resolves only once the value is no longer `<comparator> resolve_threshold`.
    /// Must lie on the healthy side of `threshold`; defaults to `threshold` (no hysteresis band).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolve_threshold: Option<f64>,
    /// Consecutive breaching windows before the alert fires (pending until then).
    #[serde(default = "one")]
    pub for_windows: i64,
    /// Consecutive healthy windows before a firing alert resolves.
    #[serde(default = "one")]
    pub resolve_after_windows: i64,
    pub severity: Severity,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Channel ids notified on fire, resolve and renotify.
    #[serde(default)]
    pub channels: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation: Option<Escalation>,
    /// Repeat the fire notification this often while firing and unacknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renotify_secs: Option<u64>,
}

fn one() -> i64 {
    1
}

impl Rule {
    /// Parses a rule from a JSON body (as received by the collector's API), bounding its size.
    /// Parse failures are [`AlertError::MalformedRule`] (HTTP 400); call [`Rule::validate`]
    /// afterwards for the content checks (HTTP 422).
    pub fn from_json(body: &[u8]) -> Result<Self> {
        if body.len() > MAX_RULE_JSON_BYTES {
            return Err(AlertError::MalformedRule(format!(
                "body is {} bytes, the limit is {MAX_RULE_JSON_BYTES}",
                body.len()
            )));
        }
        serde_json::from_slice(body).map_err(|e| AlertError::MalformedRule(e.to_string()))
    }

    /// Checks everything that can be checked without data; reports every problem at once.
    pub fn validate<S: AsRef<str>>(&self, known_channels: &[S]) -> Result<()> {
        let mut v = Vec::new();
        check_id(&mut v, "id", &self.id);
        check_text(&mut v, "project", &self.project, MAX_ID_LEN);
        if let Some(model) = &self.model {
            check_text(&mut v, "model", model, MAX_ID_LEN);
        }
        if let Some(version) = &self.version {
            check_text(&mut v, "version", version, MAX_ID_LEN);
        }
        check_text(&mut v, "name", &self.name, MAX_NAME_LEN);
        if let Err(e) = Selector::parse(&self.metric) {
            v.push(Violation::new("metric", e.to_string()));
        }
        self.check_thresholds(&mut v);
        check_windows(&mut v, "for_windows", self.for_windows);
        check_windows(&mut v, "resolve_after_windows", self.resolve_after_windows);
        self.check_labels(&mut v);
        self.check_channels(&mut v, known_channels);
        if self.renotify_secs.is_some_and(|s| s < MIN_RENOTIFY_SECS) {
            v.push(Violation::new(
                "renotify_secs",
                format!("must be at least {MIN_RENOTIFY_SECS} seconds"),
            ));
        }
        if v.is_empty() {
            Ok(())
        } else {
            Err(AlertError::InvalidRule(v))
        }
    }

    /// The threshold a firing alert must leave before it can resolve.
    pub fn resolve_threshold(&self) -> f64 {
        self.resolve_threshold.unwrap_or(self.threshold)
    }

    /// Whether `value` breaches the rule.
    pub fn breaches(&self, value: f64) -> bool {
        self.comparator.holds(value, self.threshold)
    }

    /// Whether `value` counts towards resolving a firing alert.
    pub fn is_healthy(&self, value: f64) -> bool {
        !self.comparator.holds(value, self.resolve_threshold())
    }

    /// Whether the rule watches windows of this model version.
    pub fn applies_to(&self, project: &str, model: &str, version: &str) -> bool {
        self.project == project
            && self.model.as_deref().is_none_or(|m| m == model)
            && self.version.as_deref().is_none_or(|v| v == version)
    }

    /// The parsed metric selector.
    pub fn selector(&self) -> Result<Selector> {
        Selector::parse(&self.metric)
    }

    fn check_thresholds(&self, v: &mut Vec<Violation>) {
        if !self.threshold.is_finite() {
            v.push(Violation::new(
                "threshold",
                "must be a finite number (not NaN or infinity)",
            ));
        }
        let Some(resolve) = self.resolve_threshold else {
            return;
        };
        if !resolve.is_finite() {
            v.push(Violation::new(
                "resolve_threshold",
                "must be a finite number (not NaN or infinity)",
            ));
            return;
        }
        let wrong_side = if self.comparator.alerts_when_high() {
            resolve > self.threshold
        } else {
            resolve < self.threshold
        };
        if wrong_side && self.threshold.is_finite() {
            let side = if self.comparator.alerts_when_high() {
                "at or below"
            } else {
                "at or above"
            };
            v.push(Violation::new(
                "resolve_threshold",
                format!(
                    "{resolve} is on the breaching side: with `{} {}` it must be {side} {}",
                    self.comparator.symbol(),
                    self.threshold,
                    self.threshold
                ),
            ));
        }
    }

    fn check_labels(&self, v: &mut Vec<Violation>) {
        if self.labels.len() > MAX_LABELS {
            v.push(Violation::new(
                "labels",
                format!("at most {MAX_LABELS} labels"),
            ));
        }
        for (key, value) in &self.labels {
            let field = format!("labels.{}", truncate_for_message(key));
            if key.is_empty() || key.len() > MAX_LABEL_KEY_LEN {
                v.push(Violation::new(
                    &field,
                    format!("key must be 1..={MAX_LABEL_KEY_LEN} bytes"),
                ));
            }
            if value.len() > MAX_LABEL_VALUE_LEN {
                v.push(Violation::new(
                    &field,
                    format!("value exceeds {MAX_LABEL_VALUE_LEN} bytes"),
                ));
            }
        }
    }

    fn check_channels<S: AsRef<str>>(&self, v: &mut Vec<Violation>, known: &[S]) {
        let is_known = |id: &str| known.iter().any(|k| k.as_ref() == id);
        if self.channels.len() > MAX_CHANNELS {
            v.push(Violation::new(
                "channels",
                format!("at most {MAX_CHANNELS} channels"),
            ));
        }
        for (i, channel) in self.channels.iter().enumerate() {
            if !is_known(channel) {
                v.push(Violation::new(
                    format!("channels[{i}]"),
                    format!("unknown channel `{}`", truncate_for_message(channel)),
                ));
            }
        }
        if let Some(escalation) = &self.escalation {
            if escalation.after_secs == 0 {
                v.push(Violation::new(
                    "escalation.after_secs",
                    "must be greater than zero",
                ));
            }
            if !is_known(&escalation.channel) {
                v.push(Violation::new(
                    "escalation.channel",
                    format!(
                        "unknown channel `{}`",
                        truncate_for_message(&escalation.channel)
                    ),
                ));
            }
        }
    }
}

fn check_id(v: &mut Vec<Violation>, field: &str, id: &str) {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':');
    if id.is_empty() || id.len() > MAX_ID_LEN || !id.chars().all(allowed) {
        v.push(Violation::new(
            field,
            format!("must be 1..={MAX_ID_LEN} characters of [A-Za-z0-9-_.:]"),
        ));
    }
}

fn check_text(v: &mut Vec<Violation>, field: &str, text: &str, max: usize) {
    if text.trim().is_empty() {
        v.push(Violation::new(field, "must not be empty"));
    } else if text.len() > max {
        v.push(Violation::new(field, format!("longer than {max} bytes")));
    } else if text.chars().any(char::is_control) {
        v.push(Violation::new(field, "must not contain control characters"));
    }
}

fn check_windows(v: &mut Vec<Violation>, field: &str, windows: i64) {
    if !(1..=MAX_WINDOWS).contains(&windows) {
        v.push(Violation::new(
            field,
            format!("must be between 1 and {MAX_WINDOWS} windows, got {windows}"),
        ));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    type Mutation = Box<dyn Fn(&mut Rule)>;

    fn rule() -> Rule {
        Rule::from_json(
            br#"{"id":"r1","project":"p","name":"PSI","metric":"drift.features.*.psi",
                "comparator":">","threshold":0.25,"resolve_threshold":0.2,"for_windows":2,
                "severity":"warning","channels":["hook"],
                "escalation":{"after_secs":600,"channel":"pager"}}"#,
        )
        .unwrap()
    }

    fn messages(rule: &Rule) -> String {
        rule.validate(&["hook", "pager"]).unwrap_err().to_string()
    }

    #[test]
    fn a_good_rule_validates_and_round_trips() {
        let r = rule();
        r.validate(&["hook", "pager"]).unwrap();
        let json = serde_json::to_vec(&r).unwrap();
        assert_eq!(Rule::from_json(&json).unwrap(), r);
        assert!(r.breaches(0.3) && !r.breaches(0.25));
        assert!(!r.is_healthy(0.22) && r.is_healthy(0.2));
    }

    #[test]
    fn each_bad_definition_names_its_field() {
        let cases: Vec<(Mutation, &str)> = vec![
            (
                Box::new(|r| r.metric = "trustscore".into()),
                "metric: invalid metric selector",
            ),
            (
                Box::new(|r| r.metric = "latency.p99".into()),
                "unknown metric root `latency`",
            ),
            (
                Box::new(|r| r.threshold = f64::NAN),
                "threshold: must be a finite number",
            ),
            (
                Box::new(|r| r.threshold = f64::INFINITY),
                "threshold: must be a finite number",
            ),
            (
                Box::new(|r| r.resolve_threshold = Some(f64::NAN)),
                "resolve_threshold: must be",
            ),
            (
                Box::new(|r| r.for_windows = 0),
                "for_windows: must be between 1 and 1000",
            ),
            (Box::new(|r| r.for_windows = -3), "got -3"),
            (
                Box::new(|r| r.resolve_after_windows = 0),
                "resolve_after_windows: must be",
            ),
            (
                Box::new(|r| r.resolve_threshold = Some(0.3)),
                "0.3 is on the breaching side",
            ),
            (
                Box::new(|r| r.channels = vec!["nope".into()]),
                "channels[0]: unknown channel `nope`",
            ),
            (
                Box::new(|r| r.name = "  ".into()),
                "name: must not be empty",
            ),
            (
                Box::new(|r| r.name = "n".repeat(5000)),
                "name: longer than 200",
            ),
            (Box::new(|r| r.id = "bad id".into()), "id: must be"),
            (
                Box::new(|r| r.renotify_secs = Some(5)),
                "renotify_secs: must be at least 60",
            ),
            (
                Box::new(|r| {
                    r.escalation = Some(Escalation {
                        after_secs: 0,
                        channel: "x".into(),
                    })
                }),
                "escalation.channel: unknown channel `x`",
            ),
        ];
        for (mutate, expected) in cases {
            let mut r = rule();
            mutate(&mut r);
            let msg = messages(&r);
            assert!(msg.contains(expected), "expected {expected:?} in {msg:?}");
        }
    }

    #[test]
    fn resolve_side_depends_on_the_comparator() {
        let mut r = rule();
        r.comparator = Comparator::Lt;
        r.threshold = 60.0;
        r.resolve_threshold = Some(55.0);
        assert!(messages(&r).contains("must be at or above 60"));
        r.resolve_threshold = Some(65.0);
        r.validate(&["hook", "pager"]).unwrap();
    }

    #[test]
    fn several_problems_are_reported_together_with_status_422() {
        let mut r = rule();
        r.threshold = f64::NAN;
        r.for_windows = 0;
        let err = r.validate(&["hook", "pager"]).unwrap_err();
        assert_eq!(err.http_status(), 422);
        let AlertError::InvalidRule(list) = err else {
            panic!("wrong variant")
        };
        assert_eq!(list.len(), 2);
    }

    #[test]
    fn malformed_bodies_are_400() {
        for body in [
            &b"{"[..],
            br#"{"id":"r"}"#,
            br#"{"id":"r","project":"p","name":"n","metric":"trust_score","comparator":"~","threshold":1,"severity":"info"}"#,
            br#"{"id":"r","project":"p","name":"n","metric":"trust_score","comparator":"<","threshold":"NaN","severity":"info"}"#,
            br#"{"id":"r","project":"p","name":"n","metric":"trust_score","comparator":"<","threshold":1,"severity":"info","extra":1}"#,
        ] {
            let err = Rule::from_json(body).unwrap_err();
            assert_eq!(err.http_status(), 400, "{err}");
        }
        let huge = vec![b' '; MAX_RULE_JSON_BYTES + 1];
        assert!(
            Rule::from_json(&huge)
                .unwrap_err()
                .to_string()
                .contains("limit")
        );
    }

    #[test]
    fn scope_filters_apply() {
        let mut r = rule();
        assert!(r.applies_to("p", "m", "1"));
        r.model = Some("m".into());
        r.version = Some("2".into());
        assert!(!r.applies_to("p", "m", "1"));
        assert!(r.applies_to("p", "m", "2"));
        assert!(!r.applies_to("q", "m", "2"));
    }
}
