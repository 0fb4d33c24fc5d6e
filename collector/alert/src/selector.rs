//! Metric selectors: which number(s) of a per-window metrics document a rule looks at.
//!
//! A selector is a dotted path from a documented root (`trust_score`, `drift.dataset_share`,
//! `operations.latency_p99_ms`). A segment written `*` matches every key of the object at that
//! level and turns the selector into one *subject* per key, so `drift.features.*.psi` watches
//! each feature separately. Keys containing dots or stars are written in double quotes
//! (`drift.features."income.v2".psi`, with `\"` and `\\` escapes).
//!
//! Arrays are walked too, so reports serialized as lists of named objects need no reshaping:
//! a segment matches an array element by index or by the element's identifying field (the
//! first string among [`NAME_FIELDS`]), and `*` over an array names each subject that way.

use std::borrow::Cow;

use serde_json::Value;

use crate::error::{AlertError, Result};

/// Top-level keys of the metrics document a rule may start from. Keeping the list closed
/// turns a typo such as `trustscore` into a 422 when the rule is saved, instead of a rule
/// that silently never sees data.
pub const METRIC_ROOTS: &[&str] = &[
    "trust_score",
    "components",
    "performance",
    "drift",
    "fairness",
    "quality",
    "robustness",
    "explainability",
    "operations",
];

/// Fields that name an element of an array, in the order they are tried.
pub const NAME_FIELDS: &[&str] = &["name", "feature", "attribute", "group", "id"];

/// Longest selector accepted, in bytes.
pub const MAX_SELECTOR_LEN: usize = 256;
/// Most segments a selector may have.
pub const MAX_SEGMENTS: usize = 8;
/// Most `*` segments in one selector; each one multiplies the subject count.
pub const MAX_WILDCARDS: usize = 3;
/// Keys longer than this are not turned into subjects (they are counted as rejected instead),
/// so one pathological document cannot bloat persisted alert state.
pub const MAX_SUBJECT_KEY_LEN: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Wildcard,
}

/// A parsed, validated selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    text: String,
    segments: Vec<Segment>,
}

/// One value read from a document: the subject it belongs to (`""` without wildcards,
/// matched keys joined with `/` otherwise) and the number, or `None` when the document has
/// no finite number there ("no data").
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub subject: String,
    pub value: Option<f64>,
}

/// Everything a selector read from one document.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Samples {
    pub samples: Vec<Sample>,
    /// Subjects that were dropped because the per-rule cap was reached or their key was
    /// longer than [`MAX_SUBJECT_KEY_LEN`].
    pub rejected: u64,
}

impl Selector {
    /// Parses `text`, checking the syntax, the limits and the root.
    pub fn parse(text: &str) -> Result<Self> {
        let invalid = |reason: String| AlertError::InvalidSelector {
            selector: truncate_for_message(text),
            reason,
        };
        if text.is_empty() {
            return Err(invalid("selector is empty".into()));
        }
        if text.len() > MAX_SELECTOR_LEN {
            return Err(invalid(format!("longer than {MAX_SELECTOR_LEN} bytes")));
        }
        let segments = split_segments(text).map_err(invalid)?;
        if segments.len() > MAX_SEGMENTS {
            return Err(invalid(format!("more than {MAX_SEGMENTS} segments")));
        }
        let wildcards = segments.iter().filter(|s| **s == Segment::Wildcard).count();
        if wildcards > MAX_WILDCARDS {
            return Err(invalid(format!("more than {MAX_WILDCARDS} `*` segments")));
        }
        match segments.first() {
            Some(Segment::Key(root)) if METRIC_ROOTS.contains(&root.as_str()) => {}
            Some(Segment::Key(root)) => {
                return Err(invalid(format!(
                    "unknown metric root `{}`; known roots: {}",
                    truncate_for_message(root),
                    METRIC_ROOTS.join(", ")
                )));
            }
            _ => {
                return Err(invalid(
                    "the first segment must be a metric root, not `*`".into(),
                ));
            }
        }
        Ok(Self {
            text: text.to_owned(),
            segments,
        })
    }

    /// The selector as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the selector can produce more than one subject.
    pub fn has_wildcard(&self) -> bool {
        self.segments.contains(&Segment::Wildcard)
    }

    /// Reads every subject this selector names in `doc`, keeping at most `max_subjects`.
    pub fn read(&self, doc: &Value, max_subjects: usize) -> Samples {
        let mut out = Samples::default();
        let mut subject = Vec::new();
        walk(&self.segments, doc, &mut subject, max_subjects, &mut out);
        if out.samples.is_empty() && !self.has_wildcard() {
            out.samples.push(Sample {
                subject: String::new(),
                value: None,
            });
        }
        out
    }
}

fn walk<'a>(
    segments: &[Segment],
    node: &'a Value,
    subject: &mut Vec<Cow<'a, str>>,
    max_subjects: usize,
    out: &mut Samples,
) {
    let Some((head, rest)) = segments.split_first() else {
        if out.samples.len() >= max_subjects {
            out.rejected += 1;
            return;
        }
        out.samples.push(Sample {
            subject: subject.join("/"),
            value: finite_number(node),
        });
        return;
    };
    match head {
        Segment::Key(key) => match child(node, key) {
            Some(next) => walk(rest, next, subject, max_subjects, out),
            // Only a concrete path reports "no data" for a missing key; under a wildcard the
            // subject still exists (its key was matched), so it reports no data as well.
            None if !subject.is_empty() => {
                if out.samples.len() >= max_subjects {
                    out.rejected += 1;
                } else {
                    out.samples.push(Sample {
                        subject: subject.join("/"),
                        value: None,
                    });
                }
            }
            None => {}
        },
        Segment::Wildcard => {
            let entries: Vec<(Cow<'a, str>, &'a Value)> = match node {
                Value::Object(map) => {
                    // Sorted, whatever map type serde_json was built with (another crate in the
                    // build can turn on `preserve_order`): which subjects come first, and so
                    // which ones a subject cap cuts, must not depend on feature unification.
                    let mut e: Vec<_> = map
                        .iter()
                        .map(|(k, v)| (Cow::Borrowed(k.as_str()), v))
                        .collect();
                    e.sort_by(|a, b| a.0.cmp(&b.0));
                    e
                }
                Value::Array(items) => items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        (
                            element_name(v).map_or(Cow::Owned(i.to_string()), Cow::Borrowed),
                            v,
                        )
                    })
                    .collect(),
                _ => return,
            };
            for (key, next) in entries {
                if key.len() > MAX_SUBJECT_KEY_LEN {
                    out.rejected += 1;
                    continue;
                }
                subject.push(key);
                walk(rest, next, subject, max_subjects, out);
                subject.pop();
            }
        }
    }
}

fn child<'a>(node: &'a Value, key: &str) -> Option<&'a Value> {
    match node {
        Value::Object(map) => map.get(key),
        Value::Array(items) => match key.parse::<usize>() {
            Ok(i) => items.get(i),
            Err(_) => items.iter().find(|item| element_name(item) == Some(key)),
        },
        _ => None,
    }
}

fn element_name(item: &Value) -> Option<&str> {
    let Value::Object(map) = item else {
        return None;
    };
    NAME_FIELDS
        .iter()
        .find_map(|field| map.get(*field).and_then(Value::as_str))
}

/// JSON cannot carry NaN or infinities, so producers write them as `null` or strings; both,
/// like any other non-number, are "no data" rather than a guessed value.
fn finite_number(value: &Value) -> Option<f64> {
    value.as_f64().filter(|v| v.is_finite())
}

fn split_segments(text: &str) -> std::result::Result<Vec<Segment>, String> {
    let mut segments = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let segment = match chars.peek() {
            Some('"') => {
                chars.next();
                let mut key = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => key.push(c),
                            _ => return Err("only \\\" and \\\\ escapes are allowed".into()),
                        },
                        Some(c) => key.push(c),
                        None => return Err("unterminated quoted segment".into()),
                    }
                }
                Segment::Key(key)
            }
            _ => {
                let mut raw = String::new();
                while let Some(&c) = chars.peek() {
                    if c == '.' {
                        break;
                    }
                    if c == '"' {
                        return Err("a quote may only start a segment".into());
                    }
                    if c.is_whitespace() || c.is_control() {
                        return Err("unquoted segments cannot contain whitespace".into());
                    }
                    raw.push(c);
                    chars.next();
                }
                match raw.as_str() {
                    "" => return Err(format!("empty segment at position {}", segments.len() + 1)),
                    "*" => Segment::Wildcard,
                    _ if raw.contains('*') => {
                        return Err(
                            "`*` must be a whole segment (quote keys containing `*`)".into()
                        );
                    }
                    _ => Segment::Key(raw),
                }
            }
        };
        segments.push(segment);
        match chars.next() {
            None => return Ok(segments),
            Some('.') => {}
            Some(c) => return Err(format!("expected `.` after a quoted segment, found `{c}`")),
        }
    }
}

/// Error messages echo user input; cap it so a megabyte selector does not become a megabyte
/// error body.
pub(crate) fn truncate_for_message(text: &str) -> String {
    const LIMIT: usize = 64;
    if text.len() <= LIMIT {
        return text.to_owned();
    }
    let mut end = LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    fn values(selector: &str, doc: &Value) -> Vec<(String, Option<f64>)> {
        Selector::parse(selector)
            .unwrap()
            .read(doc, 100)
            .samples
            .into_iter()
            .map(|s| (s.subject, s.value))
            .collect()
    }

    #[test]
    fn concrete_paths_read_numbers_and_report_missing_as_no_data() {
        let doc = json!({"trust_score": 71.5, "operations": {"latency_p99_ms": 12}});
        assert_eq!(
            values("trust_score", &doc),
            vec![(String::new(), Some(71.5))]
        );
        assert_eq!(
            values("operations.latency_p99_ms", &doc),
            vec![(String::new(), Some(12.0))]
        );
        assert_eq!(
            values("operations.volume_ratio", &doc),
            vec![(String::new(), None)]
        );
        assert_eq!(
            values("drift.dataset_share", &json!({"drift": "NaN"})),
            vec![(String::new(), None)]
        );
    }

    #[test]
    fn wildcard_yields_one_subject_per_key() {
        let doc = json!({"drift": {"features": {
            "age": {"psi": 0.3}, "income": {"psi": 0.05}, "zip": {"js": 0.2}, "bad": {"psi": null}
        }}});
        assert_eq!(
            values("drift.features.*.psi", &doc),
            vec![
                ("age".to_owned(), Some(0.3)),
                ("bad".to_owned(), None),
                ("income".to_owned(), Some(0.05)),
                ("zip".to_owned(), None),
            ]
        );
        let nested =
            json!({"fairness": {"sex": {"f": {"ratio": 0.7}}, "race": {"x": {"ratio": 1}}}});
        assert_eq!(
            values("fairness.*.*.ratio", &nested),
            vec![
                ("race/x".to_owned(), Some(1.0)),
                ("sex/f".to_owned(), Some(0.7)),
            ]
        );
    }

    #[test]
    fn arrays_of_named_objects_work_like_objects() {
        let doc = json!({"fairness": {"attributes": [
            {"attribute": "sex", "disparate_impact": 0.7},
            {"attribute": "race", "disparate_impact": 0.9},
            {"disparate_impact": 1.0}
        ]}});
        assert_eq!(
            values("fairness.attributes.*.disparate_impact", &doc),
            vec![
                ("sex".to_owned(), Some(0.7)),
                ("race".to_owned(), Some(0.9)),
                ("2".to_owned(), Some(1.0)),
            ]
        );
        assert_eq!(
            values("fairness.attributes.race.disparate_impact", &doc),
            vec![(String::new(), Some(0.9))]
        );
        assert_eq!(
            values("fairness.attributes.0.disparate_impact", &doc),
            vec![(String::new(), Some(0.7))]
        );
    }

    #[test]
    fn quoted_segments_hold_dots() {
        let doc = json!({"drift": {"features": {"income.v2": {"psi": 0.4}}}});
        assert_eq!(
            values(r#"drift.features."income.v2".psi"#, &doc),
            vec![(String::new(), Some(0.4))]
        );
    }

    #[test]
    fn oversized_keys_are_rejected_not_made_into_subjects() {
        let long = "k".repeat(MAX_SUBJECT_KEY_LEN + 1);
        let doc = json!({"drift": {"features": {long: {"psi": 1}, "ok": {"psi": 2}}}});
        let read = Selector::parse("drift.features.*.psi")
            .unwrap()
            .read(&doc, 100);
        assert_eq!(
            read.samples,
            vec![Sample {
                subject: "ok".into(),
                value: Some(2.0)
            }]
        );
        assert_eq!(read.rejected, 1);
    }

    #[test]
    fn subject_cap_counts_rejections() {
        let doc =
            json!({"drift": {"features": {"a": {"psi": 1}, "b": {"psi": 2}, "c": {"psi": 3}}}});
        let read = Selector::parse("drift.features.*.psi")
            .unwrap()
            .read(&doc, 2);
        assert_eq!(read.samples.len(), 2);
        assert_eq!(read.rejected, 1);
    }

    #[test]
    fn bad_selectors_are_rejected_with_reasons() {
        let cases = [
            ("", "empty"),
            ("trustscore", "unknown metric root `trustscore`"),
            ("*.psi", "first segment"),
            ("drift..psi", "empty segment"),
            ("drift.fea*", "whole segment"),
            ("drift.\"open", "unterminated"),
            ("drift.a b", "whitespace"),
            ("drift.*.*.*.*", "more than 3"),
        ];
        for (selector, expected) in cases {
            let err = Selector::parse(selector).unwrap_err().to_string();
            assert!(err.contains(expected), "{selector:?} gave {err:?}");
        }
        let long = format!("drift.{}", "x".repeat(MAX_SELECTOR_LEN));
        let err = Selector::parse(&long).unwrap_err().to_string();
        assert!(err.contains("longer than") && err.len() < 200, "{err}");
    }
}
