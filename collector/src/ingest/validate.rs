//! Checks every field of an incoming batch and turns it into a storable [`Batch`].
//! A rejection names the field path (`items[3].window.features["age"].numeric.kll`), so an
//! agent's operator can see at once what was wrong.

use neurocloak_core::profile::ProbeIssueKind;
use neurocloak_proto::v1::{
    ColumnProfile, FixedBins, IngestBatch, LabelBatch, ModelIdentity, ReferenceProfile, SampledRow,
    Value, WindowProfile, ingest_item::Payload, value::Kind,
};
use prost::Message as _;

use crate::store::{Batch, BatchItem, LabelPart, ModelKey, ReferenceRecord, WindowPart, item_id};

/// Bounds on what a batch may contain. Defaults fit a 16 MiB message comfortably.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Limits {
    pub max_items: usize,
    pub max_id_len: usize,
    pub max_name_len: usize,
    pub max_features: usize,
    pub max_labels: usize,
    pub max_sampled_rows: usize,
    pub max_text_len: usize,
    pub max_kll_items: usize,
    pub min_window_ms: i64,
    pub max_window_ms: i64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_items: 1000,
            max_id_len: 128,
            max_name_len: 256,
            max_features: 2000,
            max_labels: 100_000,
            max_sampled_rows: 10_000,
            max_text_len: 4096,
            max_kll_items: 100_000,
            min_window_ms: 1000,
            max_window_ms: 86_400_000,
        }
    }
}

/// Why a batch was refused: the metric label and the message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Short, bounded reason for the rejects metric (`identity`, `window`, `number`, …).
    pub reason: &'static str,
    pub message: String,
}

type Check<T = ()> = Result<T, Rejection>;

fn reject(reason: &'static str, path: &str, what: impl std::fmt::Display) -> Rejection {
    Rejection {
        reason,
        message: format!("{path}: {what}"),
    }
}

/// Validates `batch` for `project_id` (the caller's project) and builds the records to store.
pub fn validate(
    batch: &IngestBatch,
    project_id: &str,
    limits: &Limits,
    received_ms: i64,
) -> Check<Batch> {
    check_token("batch_id", &batch.batch_id, limits.max_id_len)?;
    check_token("agent_id", &batch.agent_id, limits.max_id_len)?;
    if batch.items.is_empty() {
        return Err(reject("count", "items", "batch has no items"));
    }
    if batch.items.len() > limits.max_items {
        let n = batch.items.len();
        return Err(reject(
            "count",
            "items",
            format!("{n} items, limit {}", limits.max_items),
        ));
    }
    let mut items = Vec::with_capacity(batch.items.len());
    for (i, item) in batch.items.iter().enumerate() {
        let path = format!("items[{i}]");
        let id = item_id(&batch.batch_id, i);
        let v = Validator { limits, project_id };
        let stored = match &item.payload {
            None => return Err(reject("missing", &path, "item has no payload")),
            Some(Payload::Window(w)) => {
                let path = format!("{path}.window");
                let key = v.window(&path, w)?;
                BatchItem::Window(WindowPart {
                    id,
                    key,
                    window_start_ms: w.window_start_ms,
                    window_length_ms: w.window_length_ms,
                    rows: w.rows,
                    agent_id: batch.agent_id.clone(),
                    batch_id: batch.batch_id.clone(),
                    received_ms,
                    profile: w.encode_to_vec(),
                })
            }
            Some(Payload::Labels(l)) => {
                let key = v.labels(&format!("{path}.labels"), l)?;
                BatchItem::Labels(LabelPart {
                    id,
                    key,
                    count: l.labels.len() as u64,
                    batch_id: batch.batch_id.clone(),
                    received_ms,
                    payload: l.encode_to_vec(),
                })
            }
            Some(Payload::Reference(r)) => {
                let key = v.reference(&format!("{path}.reference"), r)?;
                BatchItem::Reference(ReferenceRecord {
                    id,
                    key,
                    created_ms: r.created_ms,
                    received_ms,
                    payload: r.encode_to_vec(),
                })
            }
        };
        items.push(stored);
    }
    Ok(Batch {
        project_id: project_id.to_owned(),
        batch_id: batch.batch_id.clone(),
        agent_id: batch.agent_id.clone(),
        received_ms,
        items,
    })
}

/// Ids: non-empty, bounded, from a conservative alphabet (they become parts of storage keys).
fn check_token(path: &str, s: &str, max: usize) -> Check {
    if s.is_empty() {
        return Err(reject("identity", path, "must not be empty"));
    }
    if s.len() > max {
        return Err(reject(
            "identity",
            path,
            format!("{} bytes, limit {max}", s.len()),
        ));
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
    {
        return Err(reject(
            "identity",
            path,
            "only ASCII letters, digits and . _ : - allowed",
        ));
    }
    Ok(())
}

/// Names (models, versions, features): non-empty, bounded, no control characters. The path
/// is built only on failure, as this runs once per feature and per record.
fn check_name(s: &str, max: usize, path: impl FnOnce() -> String) -> Check {
    if s.is_empty() {
        return Err(reject("identity", &path(), "must not be empty"));
    }
    if s.len() > max {
        return Err(reject(
            "identity",
            &path(),
            format!("{} bytes, limit {max}", s.len()),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(reject(
            "identity",
            &path(),
            "control characters are not allowed",
        ));
    }
    Ok(())
}

/// The path is built only on failure: this runs for every sketch item of every feature.
fn check_finite(x: f64, path: impl FnOnce() -> String) -> Check {
    if x.is_finite() {
        Ok(())
    } else {
        Err(reject("number", &path(), format!("{x} is not finite")))
    }
}

struct Validator<'a> {
    limits: &'a Limits,
    project_id: &'a str,
}

impl Validator<'_> {
    fn identity(&self, path: &str, id: Option<&ModelIdentity>) -> Check<ModelKey> {
        let path = format!("{path}.identity");
        let id = id.ok_or_else(|| reject("missing", &path, "missing"))?;
        let max = self.limits.max_name_len;
        check_name(&id.project, max, || format!("{path}.project"))?;
        check_name(&id.model, max, || format!("{path}.model"))?;
        check_name(&id.version, max, || format!("{path}.version"))?;
        check_name(&id.environment, max, || format!("{path}.environment"))?;
        if id.project != self.project_id {
            return Err(reject(
                "project",
                &format!("{path}.project"),
                format!("{:?} is not the api key's project", id.project),
            ));
        }
        Ok(ModelKey {
            project_id: id.project.clone(),
            model: id.model.clone(),
            version: id.version.clone(),
            environment: id.environment.clone(),
        })
    }

    fn window(&self, path: &str, w: &WindowProfile) -> Check<ModelKey> {
        let key = self.identity(path, w.identity.as_ref())?;
        self.window_body(path, w)?;
        // The SDK's own decoder checks sketch invariants (KLL levels, HLL registers, bins):
        // what it refuses could never be merged on read, so it is refused now.
        neurocloak_core::WindowProfile::from_proto(w).map_err(|e| reject("sketch", path, e))?;
        Ok(key)
    }

    /// Everything but the identity (a reference's embedded profile shares it).
    fn window_body(&self, path: &str, w: &WindowProfile) -> Check {
        let l = self.limits;
        let len = w.window_length_ms;
        if len < l.min_window_ms || len > l.max_window_ms {
            return Err(reject(
                "window",
                &format!("{path}.window_length_ms"),
                format!("{len} outside [{}, {}]", l.min_window_ms, l.max_window_ms),
            ));
        }
        // Aligned windows are what lets parts from different processes merge (DESIGN §2).
        if w.window_start_ms < 0 || w.window_start_ms % len != 0 {
            return Err(reject(
                "window",
                &format!("{path}.window_start_ms"),
                format!(
                    "{} is not a non-negative multiple of window_length_ms {len}",
                    w.window_start_ms
                ),
            ));
        }
        if w.features.len() > l.max_features {
            let n = w.features.len();
            return Err(reject(
                "count",
                &format!("{path}.features"),
                format!("{n} features, limit {}", l.max_features),
            ));
        }
        if let Some(schema) = &w.schema {
            if schema.features.len() > l.max_features {
                return Err(reject(
                    "count",
                    &format!("{path}.schema.features"),
                    "too many features",
                ));
            }
            for (i, f) in schema.features.iter().enumerate() {
                check_name(&f.name, l.max_name_len, || {
                    format!("{path}.schema.features[{i}].name")
                })?;
            }
        }
        for (name, col) in &w.features {
            let fpath = format!("{path}.features[{name:?}]");
            check_name(name, l.max_name_len, || fpath.clone())?;
            self.column(&fpath, col)?;
        }
        if let Some(c) = &w.prediction {
            self.column(&format!("{path}.prediction"), c)?;
        }
        if let Some(c) = &w.label {
            self.column(&format!("{path}.label"), c)?;
        }
        for g in w.groups.keys() {
            check_name(g, l.max_name_len, || format!("{path}.groups[{g:?}]"))?;
        }
        if let Some(r) = &w.reservoir {
            self.rows(&format!("{path}.reservoir.rows"), &r.rows)?;
        }
        self.rows(&format!("{path}.hash_sampled"), &w.hash_sampled)?;
        if w.predictions.len() > l.max_labels {
            return Err(reject(
                "count",
                &format!("{path}.predictions"),
                "too many prediction records",
            ));
        }
        for (i, p) in w.predictions.iter().enumerate() {
            check_name(&p.id, l.max_id_len, || {
                format!("{path}.predictions[{i}].id")
            })?;
            self.scores(&format!("{path}.predictions[{i}].scores"), &p.scores)?;
        }
        self.probes(path, w)
    }

    /// Robustness probes: the SDK's own check, so whatever the SDK records is accepted and a
    /// hostile number is refused with its path rather than skewing the trust score.
    fn probes(&self, path: &str, w: &WindowProfile) -> Check {
        let max = neurocloak_core::profile::MAX_PROBES;
        if w.robustness.len() > max {
            return Err(reject(
                "count",
                &format!("{path}.robustness"),
                format!("{} probes, limit {max}", w.robustness.len()),
            ));
        }
        for (i, p) in w.robustness.iter().enumerate() {
            neurocloak_core::profile::check_probe(p).map_err(|e| {
                let reason = match e.kind {
                    ProbeIssueKind::Number => "number",
                    ProbeIssueKind::Count => "count",
                    ProbeIssueKind::Name => "identity",
                };
                reject(
                    reason,
                    &format!("{path}.robustness[{i}].{}", e.field),
                    e.why,
                )
            })?;
        }
        Ok(())
    }

    fn column(&self, path: &str, c: &ColumnProfile) -> Check {
        if let Some(n) = &c.numeric {
            if let Some(m) = n.moments.as_ref().filter(|m| m.n > 0) {
                check_finite(m.mean, || format!("{path}.numeric.moments.mean"))?;
                check_finite(m.m2, || format!("{path}.numeric.moments.m2"))?;
                check_finite(m.min, || format!("{path}.numeric.moments.min"))?;
                check_finite(m.max, || format!("{path}.numeric.moments.max"))?;
                if m.m2 < 0.0 {
                    return Err(reject(
                        "number",
                        &format!("{path}.numeric.moments.m2"),
                        "negative",
                    ));
                }
            }
            if let Some(k) = &n.kll {
                let kpath = format!("{path}.numeric.kll");
                let total: usize = k.levels.iter().map(|lv| lv.items.len()).sum();
                if total > self.limits.max_kll_items {
                    return Err(reject(
                        "count",
                        &kpath,
                        format!("{total} items, limit {}", self.limits.max_kll_items),
                    ));
                }
                for (li, lv) in k.levels.iter().enumerate() {
                    for (ii, x) in lv.items.iter().enumerate() {
                        check_finite(*x, || format!("{kpath}.levels[{li}].items[{ii}]"))?;
                    }
                }
            }
            if let Some(b) = &n.bins {
                self.bins(&format!("{path}.numeric.bins"), b)?;
            }
        }
        if let Some(cat) = &c.categorical {
            if let Some(fi) = &cat.items {
                if fi.items.len() > self.limits.max_features.max(fi.capacity as usize) {
                    return Err(reject(
                        "count",
                        &format!("{path}.categorical.items"),
                        "more items than capacity",
                    ));
                }
                for (i, it) in fi.items.iter().enumerate() {
                    if it.value.len() > self.limits.max_text_len {
                        return Err(reject(
                            "size",
                            &format!("{path}.categorical.items[{i}].value"),
                            "too long",
                        ));
                    }
                }
            }
            if let Some(h) = &cat.hll {
                let hpath = format!("{path}.categorical.hll");
                if !(4..=18).contains(&h.precision) {
                    return Err(reject(
                        "sketch",
                        &format!("{hpath}.precision"),
                        format!("{} outside [4, 18]", h.precision),
                    ));
                }
                if h.registers.len() != 1usize << h.precision {
                    return Err(reject(
                        "sketch",
                        &format!("{hpath}.registers"),
                        format!(
                            "{} registers, precision {} needs {}",
                            h.registers.len(),
                            h.precision,
                            1usize << h.precision
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn bins(&self, path: &str, b: &FixedBins) -> Check {
        if b.counts.len() != b.edges.len() + 1 {
            return Err(reject(
                "sketch",
                path,
                format!(
                    "{} counts for {} edges (need edges + 1)",
                    b.counts.len(),
                    b.edges.len()
                ),
            ));
        }
        for (i, e) in b.edges.iter().enumerate() {
            check_finite(*e, || format!("{path}.edges[{i}]"))?;
        }
        if b.edges.windows(2).any(|w| w[0] > w[1]) {
            return Err(reject("sketch", &format!("{path}.edges"), "not sorted"));
        }
        Ok(())
    }

    fn rows(&self, path: &str, rows: &[SampledRow]) -> Check {
        let l = self.limits;
        if rows.len() > l.max_sampled_rows {
            return Err(reject(
                "count",
                path,
                format!("{} rows, limit {}", rows.len(), l.max_sampled_rows),
            ));
        }
        for (i, r) in rows.iter().enumerate() {
            let rpath = format!("{path}[{i}]");
            if r.id.len() > l.max_id_len {
                return Err(reject("size", &format!("{rpath}.id"), "too long"));
            }
            if r.features.len() > l.max_features {
                return Err(reject(
                    "count",
                    &format!("{rpath}.features"),
                    "too many features",
                ));
            }
            for (name, v) in &r.features {
                self.value(&format!("{rpath}.features[{name:?}]"), v)?;
            }
            self.scores(&format!("{rpath}.scores"), &r.scores)?;
        }
        Ok(())
    }

    /// Sampled values may be non-finite (they are data-quality evidence); only text is bounded.
    fn value(&self, path: &str, v: &Value) -> Check {
        if let Some(Kind::Text(t)) = &v.kind
            && t.len() > self.limits.max_text_len
        {
            return Err(reject(
                "size",
                path,
                format!("{} bytes, limit {}", t.len(), self.limits.max_text_len),
            ));
        }
        Ok(())
    }

    fn scores(&self, path: &str, scores: &[f64]) -> Check {
        for (i, s) in scores.iter().enumerate() {
            if !s.is_finite() || !(0.0..=1.0).contains(s) {
                return Err(reject(
                    "number",
                    &format!("{path}[{i}]"),
                    format!("{s} is not a probability"),
                ));
            }
        }
        Ok(())
    }

    fn labels(&self, path: &str, b: &LabelBatch) -> Check<ModelKey> {
        let key = self.identity(path, b.identity.as_ref())?;
        if b.labels.is_empty() || b.labels.len() > self.limits.max_labels {
            return Err(reject(
                "count",
                &format!("{path}.labels"),
                format!(
                    "{} labels, need 1..={}",
                    b.labels.len(),
                    self.limits.max_labels
                ),
            ));
        }
        for (i, l) in b.labels.iter().enumerate() {
            let lpath = format!("{path}.labels[{i}]");
            check_name(&l.id, self.limits.max_id_len, || format!("{lpath}.id"))?;
            let value = l
                .label
                .as_ref()
                .ok_or_else(|| reject("missing", &format!("{lpath}.label"), "missing"))?;
            if let Some(Kind::Number(x)) = value.kind {
                check_finite(x, || format!("{lpath}.label"))?;
            }
            self.value(&format!("{lpath}.label"), value)?;
        }
        Ok(key)
    }

    fn reference(&self, path: &str, r: &ReferenceProfile) -> Check<ModelKey> {
        let key = self.identity(path, r.identity.as_ref())?;
        let ppath = format!("{path}.profile");
        let profile = r
            .profile
            .as_ref()
            .ok_or_else(|| reject("missing", &ppath, "missing"))?;
        if profile.identity.is_some() && profile.identity != r.identity {
            return Err(reject(
                "identity",
                &format!("{ppath}.identity"),
                "differs from the reference's identity",
            ));
        }
        // A reference covers training data, not a wall-clock window, so only its sketches count.
        for (name, col) in &profile.features {
            let fpath = format!("{ppath}.features[{name:?}]");
            check_name(name, self.limits.max_name_len, || fpath.clone())?;
            self.column(&fpath, col)?;
        }
        if r.bins.len() > self.limits.max_features {
            return Err(reject(
                "count",
                &format!("{path}.bins"),
                "too many features",
            ));
        }
        for (name, b) in &r.bins {
            let bpath = format!("{path}.bins[{name:?}]");
            check_name(name, self.limits.max_name_len, || bpath.clone())?;
            self.bins(&bpath, b)?;
        }
        neurocloak_core::ReferenceProfile::from_proto(r).map_err(|e| reject("sketch", path, e))?;
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use neurocloak_proto::v1::{IngestItem, LabelRecord};

    fn identity() -> ModelIdentity {
        ModelIdentity {
            project: "p".into(),
            model: "m".into(),
            version: "v1".into(),
            environment: "prod".into(),
        }
    }

    /// A small but complete window, built with the SDK's sketches.
    fn window() -> WindowProfile {
        let kind = neurocloak_proto::v1::FeatureKind::Numeric;
        let mut col = neurocloak_core::profile::ColumnProfile::new(kind);
        col.counters.count = 2;
        let numeric = col.numeric.as_mut().unwrap();
        for x in [1.0, 2.0] {
            numeric.moments.update(x);
            numeric.kll.update(x);
        }
        let mut features = std::collections::BTreeMap::new();
        features.insert("age".to_string(), col.to_proto());
        WindowProfile {
            identity: Some(identity()),
            window_start_ms: 120_000,
            window_length_ms: 60_000,
            rows: 2,
            features,
            parts: 1,
            ..Default::default()
        }
    }

    fn batch(payload: Payload) -> IngestBatch {
        IngestBatch {
            batch_id: "b-1".into(),
            agent_id: "a".into(),
            items: vec![IngestItem {
                payload: Some(payload),
            }],
        }
    }

    fn check(b: &IngestBatch) -> Result<Batch, Rejection> {
        validate(b, "p", &Limits::default(), 7)
    }

    fn rejected(b: &IngestBatch) -> Rejection {
        check(b).expect_err("should be rejected")
    }

    #[test]
    fn a_valid_window_becomes_a_part_with_a_derived_id() {
        let b = check(&batch(Payload::Window(window()))).unwrap();
        let BatchItem::Window(w) = &b.items[0] else {
            panic!("not a window")
        };
        assert_eq!(w.id, "b-1:0");
        assert_eq!(w.received_ms, 7);
        assert_eq!(
            WindowProfile::decode(w.profile.as_slice()).unwrap(),
            window()
        );
    }

    #[test]
    fn hostile_numbers_and_names_name_their_field() {
        for (bad, path) in [
            (
                f64::NAN,
                "items[0].window.features[\"age\"].numeric.moments.mean",
            ),
            (
                f64::INFINITY,
                "items[0].window.features[\"age\"].numeric.moments.mean",
            ),
            (
                f64::NEG_INFINITY,
                "items[0].window.features[\"age\"].numeric.moments.mean",
            ),
        ] {
            let mut w = window();
            let col = w.features.get_mut("age").unwrap();
            col.numeric.as_mut().unwrap().moments.as_mut().unwrap().mean = bad;
            let r = rejected(&batch(Payload::Window(w)));
            assert!(r.message.starts_with(path), "{}", r.message);
            assert_eq!(r.reason, "number");
        }
        let mut w = window();
        let col = w.features.remove("age").unwrap();
        w.features.insert("x".repeat(10_000), col);
        assert_eq!(rejected(&batch(Payload::Window(w))).reason, "identity");
        let mut w = window();
        w.identity.as_mut().unwrap().version = "v\u{0}1".into();
        let r = rejected(&batch(Payload::Window(w)));
        assert!(
            r.message.starts_with("items[0].window.identity.version"),
            "{}",
            r.message
        );
    }

    fn probe() -> neurocloak_proto::v1::RobustnessProbe {
        neurocloak_proto::v1::RobustnessProbe {
            stability: 0.9,
            rows: 100,
            repeats: 5,
            noise: 0.05,
            dropout: 0.0,
            discrete: true,
            feature_sensitivity: [("age".to_owned(), 0.1)].into(),
            probe_time_ms: 120_500,
        }
    }

    #[test]
    fn hostile_robustness_probes_name_their_field() {
        let mut w = window();
        w.robustness = vec![probe(), probe()];
        assert!(check(&batch(Payload::Window(w))).is_ok());
        type Spoil = fn(&mut neurocloak_proto::v1::RobustnessProbe);
        let cases: [(Spoil, &str, &str); 9] = [
            (|p| p.stability = f64::NAN, "stability", "number"),
            (|p| p.stability = f64::INFINITY, "stability", "number"),
            (|p| p.stability = 1.01, "stability", "number"),
            (|p| p.dropout = -0.1, "dropout", "number"),
            (|p| p.noise = f64::NEG_INFINITY, "noise", "number"),
            (|p| p.rows = 0, "rows", "number"),
            (|p| p.repeats = 0, "repeats", "number"),
            (
                |p| {
                    p.feature_sensitivity.insert("age".into(), f64::NAN);
                },
                "feature_sensitivity[\"age\"]",
                "number",
            ),
            (
                |p| {
                    p.feature_sensitivity.insert("x".repeat(10_000), 0.5);
                },
                "feature_sensitivity[",
                "identity",
            ),
        ];
        for (spoil, field, reason) in cases {
            let mut w = window();
            let mut bad = probe();
            spoil(&mut bad);
            w.robustness = vec![probe(), bad];
            let r = rejected(&batch(Payload::Window(w)));
            let want = format!("items[0].window.robustness[1].{field}");
            assert!(r.message.starts_with(&want), "{} (want {want})", r.message);
            assert_eq!(r.reason, reason, "{}", r.message);
        }
        let mut w = window();
        w.robustness = vec![probe(); neurocloak_core::profile::MAX_PROBES + 1];
        let r = rejected(&batch(Payload::Window(w)));
        assert!(
            r.message
                .starts_with("items[0].window.robustness: 17 probes"),
            "{}",
            r.message
        );
        let mut w = window();
        w.robustness = vec![probe()];
        w.robustness[0].feature_sensitivity = (0..=neurocloak_core::profile::MAX_PROBE_FEATURES)
            .map(|i| (format!("f{i}"), 0.0))
            .collect();
        let r = rejected(&batch(Payload::Window(w)));
        assert!(
            r.message
                .starts_with("items[0].window.robustness[0].feature_sensitivity: 2001 features"),
            "{}",
            r.message
        );
        assert_eq!(r.reason, "count");
    }

    #[test]
    fn windows_must_be_aligned_and_sane() {
        for (start, len, field) in [
            (120_001, 60_000, "window_start_ms"),
            (-60_000, 60_000, "window_start_ms"),
            (0, 0, "window_length_ms"),
            (0, -5, "window_length_ms"),
            (0, i64::MAX, "window_length_ms"),
        ] {
            let mut w = window();
            w.window_start_ms = start;
            w.window_length_ms = len;
            let r = rejected(&batch(Payload::Window(w)));
            assert!(
                r.message.starts_with(&format!("items[0].window.{field}")),
                "{}",
                r.message
            );
        }
    }

    #[test]
    fn batch_envelope_is_checked() {
        let mut b = batch(Payload::Window(window()));
        b.batch_id = String::new();
        assert!(rejected(&b).message.starts_with("batch_id"));
        b.batch_id = "id/with/slashes".into();
        assert!(rejected(&b).message.starts_with("batch_id"));
        b.batch_id = "b".repeat(129);
        assert!(rejected(&b).message.starts_with("batch_id"));
        let mut b = batch(Payload::Window(window()));
        b.items = vec![
            IngestItem {
                payload: Some(Payload::Window(window()))
            };
            1001
        ];
        assert!(rejected(&b).message.starts_with("items: 1001 items"));
        let b = IngestBatch {
            items: vec![IngestItem { payload: None }],
            ..batch(Payload::Window(window()))
        };
        assert_eq!(rejected(&b).message, "items[0]: item has no payload");
    }

    #[test]
    fn another_projects_identity_is_refused() {
        let mut w = window();
        w.identity.as_mut().unwrap().project = "q".into();
        let r = rejected(&batch(Payload::Window(w)));
        assert_eq!(r.reason, "project");
    }

    #[test]
    fn labels_need_ids_and_finite_values() {
        let label = |id: &str, x: f64| LabelRecord {
            id: id.into(),
            label: Some(Value {
                kind: Some(Kind::Number(x)),
            }),
            timestamp_ms: 0,
        };
        let ok = LabelBatch {
            identity: Some(identity()),
            labels: vec![label("a", 1.0)],
        };
        assert!(check(&batch(Payload::Labels(ok))).is_ok());
        let empty = LabelBatch {
            identity: Some(identity()),
            labels: vec![],
        };
        assert_eq!(rejected(&batch(Payload::Labels(empty))).reason, "count");
        let nan = LabelBatch {
            identity: Some(identity()),
            labels: vec![label("a", f64::NAN)],
        };
        let r = rejected(&batch(Payload::Labels(nan)));
        assert!(
            r.message.starts_with("items[0].labels.labels[0].label"),
            "{}",
            r.message
        );
        let no_id = LabelBatch {
            identity: Some(identity()),
            labels: vec![label("", 1.0)],
        };
        let r = rejected(&batch(Payload::Labels(no_id)));
        assert!(
            r.message.starts_with("items[0].labels.labels[0].id"),
            "{}",
            r.message
        );
    }

    #[test]
    fn reference_bins_must_fit_their_edges() {
        let mut r = ReferenceProfile {
            identity: Some(identity()),
            profile: Some(window()),
            ..Default::default()
        };
        r.bins.insert(
            "age".into(),
            FixedBins {
                edges: vec![1.0, 2.0],
                counts: vec![1, 2],
            },
        );
        let rej = rejected(&batch(Payload::Reference(r.clone())));
        assert!(
            rej.message.starts_with("items[0].reference.bins[\"age\"]"),
            "{}",
            rej.message
        );
        r.bins.insert(
            "age".into(),
            FixedBins {
                edges: vec![2.0, 1.0],
                counts: vec![1, 2, 3],
            },
        );
        assert!(
            rejected(&batch(Payload::Reference(r.clone())))
                .message
                .contains("not sorted")
        );
        r.bins.insert(
            "age".into(),
            FixedBins {
                edges: vec![1.0, 2.0],
                counts: vec![1, 2, 3],
            },
        );
        assert!(check(&batch(Payload::Reference(r))).is_ok());
    }
}
