//! The monitor's settings and the column layout that recording resolves feature names against.

use std::collections::HashMap;

use neurocloak_proto as pb;
use pb::{FeatureKind, TaskType};

use super::value::Value;
use crate::sketch::short_eq;

/// Settings every window of a monitor records with (derived once from the config).
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub identity: pb::ModelIdentity,
    pub task: TaskType,
    pub classes: Vec<String>,
    pub window_ms: i64,
    pub reservoir: u32,
    /// A row with an id is hash-sampled when `hash(id) < threshold`.
    pub hash_threshold: u64,
    pub max_string: usize,
    pub max_records: usize,
    pub max_hash_samples: usize,
    pub strict: bool,
    pub seed: u64,
}

impl Settings {
    pub fn is_classification(&self) -> bool {
        matches!(
            self.task,
            TaskType::BinaryClassification | TaskType::MulticlassClassification
        )
    }

    /// Class index of a prediction or label: a class name, an integral index, or a boolean for
    /// binary tasks. `Ok(None)` when missing, `Err` when it names no class.
    pub fn class_index(&self, v: Value<'_>) -> Result<Option<usize>, ()> {
        let n = self.classes.len();
        match v {
            Value::Missing => Ok(None),
            Value::Number(x) if x.fract() == 0.0 && x >= 0.0 && (x as usize) < n => {
                Ok(Some(x as usize))
            }
            Value::Text(s) => self.classes.iter().position(|c| c == s).map(Some).ok_or(()),
            Value::Bool(b) if n == 2 => Ok(Some(usize::from(b))),
            _ => Err(()),
        }
    }

    /// One probability per class in [0, 1]; a binary task may give only P(class 1). Empty when
    /// no scores were given, `Err` when they do not fit.
    pub fn scores<'s>(&self, s: &'s [f64], buf: &'s mut [f64; 2]) -> Result<&'s [f64], ()> {
        if s.is_empty() || !self.is_classification() {
            return if s.is_empty() { Ok(s) } else { Err(()) };
        }
        if s.iter().any(|p| !(0.0..=1.0).contains(p)) {
            return Err(());
        }
        if s.len() == self.classes.len() {
            Ok(s)
        } else if s.len() == 1 && self.classes.len() == 2 {
            *buf = [1.0 - s[0], s[0]];
            Ok(&buf[..])
        } else {
            Err(())
        }
    }
}

/// Most sensitive attributes; with up to 4 every intersection is profiled, beyond that only
/// each attribute alone and all of them together.
pub(crate) const MAX_SENSITIVE: usize = 8;

/// Feature names, kinds and reference edges, fixed for the lifetime of a window.
#[derive(Debug)]
pub(crate) struct Layout {
    pub names: Vec<String>,
    pub kinds: Vec<FeatureKind>,
    pub index: HashMap<String, usize>,
    pub edges: Vec<Option<Vec<f64>>>,
    /// Column indices of sensitive attributes, sorted by attribute name.
    pub sensitive: Vec<usize>,
    pub schema: pb::Schema,
}

impl Layout {
    pub fn new(
        features: Vec<(String, FeatureKind)>,
        sensitive: &[String],
        settings: &Settings,
        inferred: bool,
    ) -> Self {
        let mut names = Vec::with_capacity(features.len());
        let mut kinds = Vec::with_capacity(features.len());
        let mut index = HashMap::with_capacity(features.len());
        for (name, kind) in features {
            if index.contains_key(&name) {
                continue;
            }
            index.insert(name.clone(), names.len());
            names.push(name);
            kinds.push(kind);
        }
        let mut sens: Vec<(String, usize)> = sensitive
            .iter()
            .filter_map(|s| index.get(s).map(|&i| (s.clone(), i)))
            .collect();
        sens.sort();
        sens.dedup();
        let schema = pb::Schema {
            features: names
                .iter()
                .zip(&kinds)
                .map(|(n, k)| pb::FeatureSpec {
                    name: n.clone(),
                    kind: *k as i32,
                    sensitive: sensitive.contains(n),
                })
                .collect(),
            task: settings.task as i32,
            classes: settings.classes.clone(),
            inferred,
        };
        Self {
            edges: vec![None; names.len()],
            names,
            kinds,
            index,
            sensitive: sens
                .into_iter()
                .map(|(_, i)| i)
                .take(MAX_SENSITIVE)
                .collect(),
            schema,
        }
    }

    /// The same layout with reference edges for some numeric features.
    pub fn with_edges(&self, edges: &std::collections::BTreeMap<String, Vec<f64>>) -> Self {
        let mut e = self.edges.clone();
        for (name, edges) in edges {
            if let Some(&i) = self.index.get(name)
                && self.kinds[i] == FeatureKind::Numeric
            {
                e[i] = Some(edges.clone());
            }
        }
        Self {
            names: self.names.clone(),
            kinds: self.kinds.clone(),
            index: self.index.clone(),
            edges: e,
            sensitive: self.sensitive.clone(),
            schema: self.schema.clone(),
        }
    }

    /// Column index of `name`, trying the row position first: rows usually list features in
    /// schema order, and comparing one string is cheaper than hashing it.
    #[inline]
    pub fn resolve(&self, name: &str, position: usize) -> Option<usize> {
        if self.names.get(position).is_some_and(|n| short_eq(n, name)) {
            return Some(position);
        }
        self.index.get(name).copied()
    }
}

/// Kind inferred from a first value: numbers are numeric, strings categorical, booleans
/// boolean, and a missing value defaults to numeric.
pub(crate) fn infer_kind(v: &Value<'_>) -> FeatureKind {
    match v {
        Value::Text(_) => FeatureKind::Categorical,
        Value::Bool(_) => FeatureKind::Boolean,
        Value::Number(_) | Value::Missing => FeatureKind::Numeric,
    }
}

#[cfg(test)]
mod tests {
    use crate::sketch::short_eq;

    #[test]
    fn short_eq_matches_str_eq() {
        let words = [
            "",
            "a",
            "ab",
            "abcdefg",
            "abcdefgh",
            "abcdefgi",
            "abcdefghijklmnop",
            "abcdefghijklmnoq",
            "abcdefghijklmnopq",
            "bbcdefghijklmnop",
        ];
        for a in words {
            for b in words {
                assert_eq!(short_eq(a, b), a == b, "{a:?} {b:?}");
            }
        }
    }
}
