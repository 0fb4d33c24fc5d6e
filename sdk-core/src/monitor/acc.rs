//! Per-shard, per-window accumulators: the hot path. Everything here is owned by one shard, so
//! nothing is shared or locked per value; a closed accumulator becomes a [`WindowProfile`].

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

use neurocloak_proto as pb;
use pb::FeatureKind;

use super::layout::{Layout, Settings};
use super::value::{Batch, Column, ColumnData, Prediction, Value, cell_of, truncate};
use crate::error::DataIssue;
use crate::profile::{
    CategoricalProfile, ClassificationOutcomes, ColumnProfile, GroupProfile, NumericProfile,
    Outcomes, RegressionOutcomes, Reservoir, WindowProfile,
};
use crate::sketch::rng::hash_bytes;
use crate::sketch::{Counters, FixedBins, FrequentItems, Hll, Kll, Latency, Moments};

/// Finite values buffered per numeric column before moments, bins and the KLL see them in bulk.
const PENDING: usize = 256;
/// Most distinct group keys per window; further rows are counted under [`OVERFLOW_GROUP`].
const MAX_GROUPS: usize = 1024;
/// Group of rows whose key did not fit under [`MAX_GROUPS`].
pub const OVERFLOW_GROUP: &str = "__other__";
const MISSING_TEXT: &str = "<missing>";

/// What would be counted for `v` in a column of `kind` (used by strict mode before recording).
pub(crate) fn issue_of(kind: FeatureKind, v: Value<'_>, max_len: usize) -> Option<DataIssue> {
    match (kind, v) {
        (_, Value::Missing) => Some(DataIssue::Missing),
        (FeatureKind::Numeric, Value::Number(x)) => {
            if x.is_nan() {
                Some(DataIssue::NaN)
            } else if x == f64::INFINITY {
                Some(DataIssue::PosInf)
            } else if x == f64::NEG_INFINITY {
                Some(DataIssue::NegInf)
            } else {
                None
            }
        }
        (FeatureKind::Categorical, Value::Text(s)) => {
            (s.len() > max_len).then_some(DataIssue::TooLong)
        }
        (FeatureKind::Boolean, Value::Bool(_)) => None,
        _ => Some(DataIssue::TypeMismatch),
    }
}

#[derive(Debug)]
pub(crate) struct NumAcc {
    counters: Counters,
    pending: Vec<f64>,
    moments: Moments,
    kll: Kll,
    bins: Option<FixedBins>,
}

impl NumAcc {
    fn new(edges: Option<&Vec<f64>>) -> Self {
        Self {
            counters: Counters::default(),
            pending: Vec::with_capacity(PENDING),
            moments: Moments::default(),
            kll: Kll::default(),
            bins: edges.and_then(|e| FixedBins::new(e.clone()).ok()),
        }
    }

    #[inline]
    fn push(&mut self, x: f64) {
        self.counters.count += 1;
        if x.is_finite() {
            self.pending.push(x);
            if self.pending.len() == PENDING {
                self.drain();
            }
        } else if x.is_nan() {
            self.counters.nan += 1;
        } else if x > 0.0 {
            self.counters.pos_inf += 1;
        } else {
            self.counters.neg_inf += 1;
        }
    }

    fn drain(&mut self) {
        let p = std::mem::take(&mut self.pending);
        self.add_finite(&p);
        self.pending = p;
        self.pending.clear();
    }

    fn add_finite(&mut self, xs: &[f64]) {
        self.moments.push_slice(xs);
        if let Some(b) = &mut self.bins {
            b.push_slice(xs);
        }
        self.kll.update_slice(xs);
    }

    /// Adds a slice: counts the non-finite values, and when there are none hands the slice
    /// itself to the sketches (no copy).
    fn push_slice(&mut self, xs: &[f64]) {
        self.counters.count += xs.len() as u64;
        if xs.iter().all(|x| x.is_finite()) {
            self.add_finite(xs);
            return;
        }
        for &x in xs {
            self.counters.count -= 1;
            self.push(x);
        }
    }

    fn into_profile(mut self) -> ColumnProfile {
        self.drain();
        ColumnProfile {
            kind: FeatureKind::Numeric,
            counters: self.counters,
            numeric: Some(NumericProfile {
                moments: self.moments,
                kll: self.kll,
                bins: self.bins,
            }),
            categorical: None,
        }
    }
}

#[derive(Debug)]
pub(crate) struct CatAcc {
    counters: Counters,
    items: FrequentItems,
    hll: Hll,
}

impl CatAcc {
    #[inline]
    fn push_text(&mut self, s: &str, max_len: usize, weight: u64) {
        let (s, cut) = truncate(s, max_len);
        self.counters.count += weight;
        if cut {
            self.counters.truncated += weight;
        }
        let h = hash_bytes(s.as_bytes());
        self.items.update_hashed(s, h, weight);
        self.hll.update_hash(h);
    }

    fn into_profile(self) -> ColumnProfile {
        ColumnProfile {
            kind: FeatureKind::Categorical,
            counters: self.counters,
            numeric: None,
            categorical: Some(CategoricalProfile {
                items: self.items,
                hll: Some(self.hll),
            }),
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct BoolAcc {
    counters: Counters,
    counts: [u64; 2],
}

impl BoolAcc {
    fn into_profile(self) -> ColumnProfile {
        let mut items = FrequentItems::default();
        for (b, name) in [(0, "false"), (1, "true")] {
            if self.counts[b] > 0 {
                items.update_hashed(name, hash_bytes(name.as_bytes()), self.counts[b]);
            }
        }
        ColumnProfile {
            kind: FeatureKind::Boolean,
            counters: self.counters,
            numeric: None,
            categorical: Some(CategoricalProfile { items, hll: None }),
        }
    }
}

#[derive(Debug)]
pub(crate) enum ColAcc {
    Num(NumAcc),
    Cat(CatAcc),
    Bool(BoolAcc),
}

impl ColAcc {
    pub(crate) fn new(kind: FeatureKind, edges: Option<&Vec<f64>>) -> Self {
        match kind {
            FeatureKind::Categorical => ColAcc::Cat(CatAcc {
                counters: Counters::default(),
                items: FrequentItems::default(),
                hll: Hll::default(),
            }),
            FeatureKind::Boolean => ColAcc::Bool(BoolAcc::default()),
            FeatureKind::Numeric | FeatureKind::Unspecified => ColAcc::Num(NumAcc::new(edges)),
        }
    }

    fn counters(&mut self) -> &mut Counters {
        match self {
            ColAcc::Num(a) => &mut a.counters,
            ColAcc::Cat(a) => &mut a.counters,
            ColAcc::Bool(a) => &mut a.counters,
        }
    }

    /// Counts `weight` values that are missing or of the wrong type.
    fn count_bad(&mut self, missing: bool, weight: u64) {
        let c = self.counters();
        c.count += weight;
        if missing {
            c.missing += weight;
        } else {
            c.type_mismatch += weight;
        }
    }

    #[inline]
    pub(crate) fn record(&mut self, v: Value<'_>, max_len: usize) {
        match (self, v) {
            (ColAcc::Num(a), Value::Number(x)) => a.push(x),
            (ColAcc::Cat(a), Value::Text(s)) => a.push_text(s, max_len, 1),
            (ColAcc::Bool(a), Value::Bool(b)) => {
                a.counters.count += 1;
                a.counts[usize::from(b)] += 1;
            }
            (me, v) => me.count_bad(v == Value::Missing, 1),
        }
    }

    /// Records a whole column of a batch.
    fn record_column(&mut self, col: &Column<'_>, n: usize, max_len: usize) {
        if col.validity.is_none() {
            match (&mut *self, &col.data) {
                (ColAcc::Num(a), ColumnData::F64(xs)) => return a.push_slice(xs),
                (ColAcc::Num(a), ColumnData::F32(xs)) => {
                    return push_converted(a, xs, |x| f64::from(*x));
                }
                (ColAcc::Num(a), ColumnData::I64(xs)) => {
                    return push_converted(a, xs, |x| *x as f64);
                }
                (ColAcc::Bool(a), ColumnData::Bool(bs)) => {
                    let t = bs.iter().filter(|b| **b).count() as u64;
                    a.counters.count += bs.len() as u64;
                    a.counts[1] += t;
                    a.counts[0] += bs.len() as u64 - t;
                    return;
                }
                (ColAcc::Cat(a), ColumnData::Dictionary { codes, values }) => {
                    return record_dictionary(a, codes, values, max_len);
                }
                _ => {}
            }
        }
        for i in 0..n {
            match col.value(i) {
                Some(v) => self.record(v, max_len),
                None => self.count_bad(false, 1),
            }
        }
    }

    pub(crate) fn into_profile(self) -> ColumnProfile {
        match self {
            ColAcc::Num(a) => a.into_profile(),
            ColAcc::Cat(a) => a.into_profile(),
            ColAcc::Bool(a) => a.into_profile(),
        }
    }
}

fn push_converted<T>(a: &mut NumAcc, xs: &[T], f: impl Fn(&T) -> f64) {
    let mut buf = [0.0f64; 512];
    for chunk in xs.chunks(buf.len()) {
        for (b, x) in buf.iter_mut().zip(chunk) {
            *b = f(x);
        }
        a.push_slice(&buf[..chunk.len()]);
    }
}

/// Counts codes first, then feeds each distinct dictionary value once with its weight.
fn record_dictionary(a: &mut CatAcc, codes: &[i32], values: &[&str], max_len: usize) {
    let mut counts = vec![0u64; values.len()];
    let mut missing = 0u64;
    for &c in codes {
        if c < 0 {
            missing += 1;
        } else {
            counts[c as usize] += 1;
        }
    }
    a.counters.count += missing;
    a.counters.missing += missing;
    for (v, &c) in values.iter().zip(&counts) {
        if c > 0 {
            a.push_text(v, max_len, c);
        }
    }
}

/// One shard's accumulator for one window.
#[derive(Debug)]
pub(crate) struct WindowAcc {
    pub start: i64,
    pub layout: Arc<Layout>,
    settings: Arc<Settings>,
    rows: u64,
    cols: Vec<ColAcc>,
    marks: Vec<u32>,
    generation: u32,
    prediction: ColAcc,
    label: ColAcc,
    outcomes: Outcomes,
    groups: HashMap<String, GroupProfile>,
    key_buf: String,
    keys: Vec<String>,
    pub latency: Option<Latency>,
    pub errors: u64,
    reservoir: Reservoir,
    hash_sampled: Vec<pb::SampledRow>,
    predictions: Vec<pb::PredictionRecord>,
    predictions_dropped: u64,
    extra_features: u64,
}

/// Outcome of a row resolved against the task.
struct Resolved<'s> {
    predicted: Option<usize>,
    label: Option<usize>,
    scores: &'s [f64],
}

impl WindowAcc {
    pub(crate) fn new(start: i64, layout: Arc<Layout>, settings: Arc<Settings>, salt: u64) -> Self {
        let cols = (0..layout.names.len())
            .map(|i| ColAcc::new(layout.kinds[i], layout.edges[i].as_ref()))
            .collect();
        let out_kind = if settings.is_classification() {
            FeatureKind::Categorical
        } else {
            FeatureKind::Numeric
        };
        let outcomes = if settings.is_classification() {
            Outcomes {
                classification: Some(ClassificationOutcomes::new(settings.classes.len() as u32)),
                regression: None,
            }
        } else {
            Outcomes {
                classification: None,
                regression: Some(RegressionOutcomes::default()),
            }
        };
        let seed = settings.seed ^ (start as u64).rotate_left(23) ^ salt.rotate_left(47);
        Self {
            start,
            marks: vec![0; layout.names.len()],
            generation: 0,
            cols,
            prediction: ColAcc::new(out_kind, None),
            label: ColAcc::new(out_kind, None),
            outcomes,
            groups: HashMap::new(),
            key_buf: String::new(),
            keys: Vec::new(),
            latency: None,
            errors: 0,
            reservoir: Reservoir::new(settings.reservoir, seed),
            hash_sampled: Vec::new(),
            predictions: Vec::new(),
            predictions_dropped: 0,
            extra_features: 0,
            rows: 0,
            layout,
            settings,
        }
    }

    /// Records a row given by feature name.
    pub(crate) fn log_named(
        &mut self,
        features: &[(&str, Value<'_>)],
        p: &Prediction<'_>,
        now_ms: i64,
    ) {
        let max_len = self.settings.max_string;
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.marks.fill(0);
            self.generation = 1;
        }
        let g = self.generation;
        let mut matched = 0usize;
        let mut extra = false;
        for (pos, (name, v)) in features.iter().enumerate() {
            match self.layout.resolve(name, pos) {
                Some(i) if self.marks[i] != g => {
                    self.marks[i] = g;
                    matched += 1;
                    self.cols[i].record(*v, max_len);
                }
                _ => extra = true,
            }
        }
        if matched < self.cols.len() {
            for (i, m) in self.marks.iter().enumerate() {
                if *m != g {
                    self.cols[i].record(Value::Missing, max_len);
                }
            }
            extra = true;
        }
        self.extra_features += u64::from(extra);
        let layout = Arc::clone(&self.layout);
        let lookup = |i: usize| {
            let name = &layout.names[i];
            features
                .get(i)
                .filter(|(n, _)| n == name)
                .or_else(|| features.iter().find(|(n, _)| n == name))
                .map_or(Value::Missing, |(_, v)| *v)
        };
        self.finish_row(p, now_ms, &lookup, &|| {
            features
                .iter()
                .map(|(n, v)| ((*n).to_owned(), *v))
                .collect()
        });
    }

    /// Records a row given in schema order.
    pub(crate) fn log_indexed(&mut self, values: &[Value<'_>], p: &Prediction<'_>, now_ms: i64) {
        let max_len = self.settings.max_string;
        let n = self.cols.len();
        for (c, v) in self.cols.iter_mut().zip(values) {
            c.record(*v, max_len);
        }
        for c in self.cols.iter_mut().skip(values.len()) {
            c.record(Value::Missing, max_len);
        }
        self.extra_features += u64::from(values.len() != n);
        let layout = Arc::clone(&self.layout);
        let lookup = |i: usize| values.get(i).copied().unwrap_or(Value::Missing);
        self.finish_row(p, now_ms, &lookup, &|| {
            layout
                .names
                .iter()
                .zip(values)
                .map(|(n, v)| (n.clone(), *v))
                .collect()
        });
    }

    /// Everything after the feature columns: outcomes, groups, samples, prediction records.
    fn finish_row<'v>(
        &mut self,
        p: &Prediction<'v>,
        now_ms: i64,
        feature: &dyn Fn(usize) -> Value<'v>,
        all_features: &dyn Fn() -> Vec<(String, Value<'v>)>,
    ) {
        self.rows += 1;
        let mut buf = [0.0; 2];
        let r = self.resolve(p, &mut buf);
        if !self.layout.sensitive.is_empty() {
            self.record_groups(p, &r, feature);
        } else {
            self.keys.clear();
        }
        self.record_outcome(p, &r);
        let ts = p.timestamp_ms.unwrap_or(now_ms);
        if let Some(slot) = self.reservoir.offer() {
            let row = self.sampled_row(p, ts, all_features());
            self.reservoir.put(slot, row);
        }
        if let Some(id) = p.id {
            self.record_id(id, p, ts, r.scores, all_features);
        }
    }

    fn resolve<'s>(&mut self, p: &Prediction<'s>, buf: &'s mut [f64; 2]) -> Resolved<'s> {
        let s = Arc::clone(&self.settings);
        let max_len = s.max_string;
        if !s.is_classification() {
            self.prediction.record(p.prediction, max_len);
            if p.label != Value::Missing {
                self.label.record(p.label, max_len);
            }
            return Resolved {
                predicted: None,
                label: None,
                scores: &[],
            };
        }
        let resolve_col =
            |col: &mut ColAcc, v: Value<'_>, record_missing: bool| match s.class_index(v) {
                Ok(Some(i)) => {
                    col.record(Value::Text(&s.classes[i]), max_len);
                    Some(i)
                }
                Ok(None) => {
                    if record_missing {
                        col.record(Value::Missing, max_len);
                    }
                    None
                }
                Err(()) => {
                    col.count_bad(false, 1);
                    None
                }
            };
        let predicted = resolve_col(&mut self.prediction, p.prediction, true);
        let label = resolve_col(&mut self.label, p.label, false);
        let scores = match s.scores(p.scores, buf) {
            Ok(sc) => sc,
            Err(()) => {
                self.prediction.counters().type_mismatch += 1;
                &[]
            }
        };
        Resolved {
            predicted,
            label,
            scores,
        }
    }

    fn record_outcome(&mut self, p: &Prediction<'_>, r: &Resolved<'_>) {
        record_outcome_into(&mut self.outcomes, p, r);
    }

    /// Builds the group keys of the row into `self.keys` and counts the row in each group.
    fn record_groups<'v>(
        &mut self,
        p: &Prediction<'_>,
        r: &Resolved<'_>,
        feature: &dyn Fn(usize) -> Value<'v>,
    ) {
        let sens = &self.layout.sensitive;
        let m = sens.len();
        let max_len = self.settings.max_string;
        let mut texts: Vec<(usize, String)> = Vec::with_capacity(m);
        for &i in sens {
            let mut t = String::new();
            match feature(i) {
                Value::Missing => t.push_str(MISSING_TEXT),
                Value::Text(s) => t.push_str(truncate(s, max_len).0),
                Value::Bool(b) => t.push_str(if b { "true" } else { "false" }),
                Value::Number(x) => {
                    let _ = write!(t, "{x}");
                }
            }
            texts.push((i, t));
        }
        self.keys.clear();
        let subsets: Vec<u32> = if m <= 4 {
            (1..(1u32 << m)).collect()
        } else {
            (0..m as u32)
                .map(|b| 1 << b)
                .chain([(1u32 << m) - 1])
                .collect()
        };
        for mask in subsets {
            let key = &mut self.key_buf;
            key.clear();
            for (b, (i, t)) in texts.iter().enumerate() {
                if mask >> b & 1 == 1 {
                    if !key.is_empty() {
                        key.push('&');
                    }
                    key.push_str(&self.layout.names[*i]);
                    key.push('=');
                    key.push_str(t);
                }
            }
            self.keys.push(key.clone());
        }
        let settings = Arc::clone(&self.settings);
        for key in &self.keys {
            let k = if self.groups.contains_key(key) || self.groups.len() < MAX_GROUPS {
                key.as_str()
            } else {
                OVERFLOW_GROUP
            };
            let g = match self.groups.get_mut(k) {
                Some(g) => g,
                None => self
                    .groups
                    .entry(k.to_owned())
                    .or_insert_with(|| GroupProfile {
                        count: 0,
                        outcomes: empty_outcomes(&settings),
                    }),
            };
            g.count += 1;
            record_outcome_into(&mut g.outcomes, p, r);
        }
    }

    fn sampled_row(
        &self,
        p: &Prediction<'_>,
        ts: i64,
        features: Vec<(String, Value<'_>)>,
    ) -> pb::SampledRow {
        let max_len = self.settings.max_string;
        pb::SampledRow {
            id: p
                .id
                .map(|s| truncate(s, max_len).0.to_owned())
                .unwrap_or_default(),
            timestamp_ms: ts,
            features: features
                .into_iter()
                .map(|(n, v)| (truncate(&n, max_len).0.to_owned(), v.to_proto(max_len)))
                .collect::<BTreeMap<_, _>>(),
            prediction: Some(p.prediction.to_proto(max_len)),
            label: Some(p.label.to_proto(max_len)),
            scores: p
                .scores
                .iter()
                .take(crate::profile::MAX_CLASSES as usize)
                .copied()
                .collect(),
        }
    }

    fn record_id<'v>(
        &mut self,
        id: &str,
        p: &Prediction<'v>,
        ts: i64,
        scores: &[f64],
        all_features: &dyn Fn() -> Vec<(String, Value<'v>)>,
    ) {
        let max_len = self.settings.max_string;
        let (id, _) = truncate(id, max_len);
        if hash_bytes(id.as_bytes()) < self.settings.hash_threshold
            && self.hash_sampled.len() < self.settings.max_hash_samples
        {
            let row = self.sampled_row(p, ts, all_features());
            self.hash_sampled.push(row);
        }
        if self.predictions.len() < self.settings.max_records {
            self.predictions.push(pb::PredictionRecord {
                id: id.to_owned(),
                timestamp_ms: ts,
                prediction: Some(p.prediction.to_proto(max_len)),
                scores: scores.to_vec(),
                groups: self.keys.clone(),
            });
        } else {
            self.predictions_dropped += 1;
        }
    }

    /// Records a columnar batch. The caller has validated it (`n` rows).
    pub(crate) fn log_batch(&mut self, batch: &Batch<'_>, n: usize, now_ms: i64) {
        let max_len = self.settings.max_string;
        let mut present = vec![false; self.cols.len()];
        let mut positions: Vec<Option<usize>> = vec![None; self.cols.len()];
        let mut extra = false;
        for (pos, col) in batch.features.iter().enumerate() {
            match self.layout.resolve(col.name, pos) {
                Some(i) if !present[i] => {
                    present[i] = true;
                    positions[i] = Some(pos);
                    self.cols[i].record_column(col, n, max_len);
                }
                _ => extra = true,
            }
        }
        for (i, p) in present.iter().enumerate() {
            if !p {
                self.cols[i].count_bad(true, n as u64);
                extra = true;
            }
        }
        if extra {
            self.extra_features += n as u64;
        }
        let per_row = batch.predictions.is_some()
            || batch.labels.is_some()
            || batch.ids.is_some()
            || !self.layout.sensitive.is_empty();
        if !per_row {
            self.sample_batch_rows(batch, n, now_ms);
            return;
        }
        for i in 0..n {
            self.batch_row(batch, &positions, i, now_ms);
        }
    }

    /// Reservoir sampling only (no per-row outcomes): the row is materialised when kept.
    fn sample_batch_rows(&mut self, batch: &Batch<'_>, n: usize, now_ms: i64) {
        self.rows += n as u64;
        for i in 0..n {
            if let Some(slot) = self.reservoir.offer() {
                let p = Prediction {
                    timestamp_ms: Some(batch.timestamps_ms.map_or(now_ms, |t| t[i])),
                    ..Prediction::default()
                };
                let row = self.sampled_row(&p, now_ms, batch_features(batch, i));
                self.reservoir.put(slot, row);
            }
        }
    }

    fn batch_row(&mut self, batch: &Batch<'_>, positions: &[Option<usize>], i: usize, now_ms: i64) {
        let id = match batch.ids.map(|c| c.cell(i)) {
            Some(Some(Value::Text(s))) => Some(s),
            _ => None,
        };
        let p = Prediction {
            id,
            timestamp_ms: batch.timestamps_ms.map(|t| t[i]),
            prediction: cell_of(batch.predictions, i),
            label: cell_of(batch.labels, i),
            scores: batch.scores.map_or(&[][..], |s| {
                &s[i * batch.scores_per_row..(i + 1) * batch.scores_per_row]
            }),
        };
        let feature = |c: usize| {
            positions[c]
                .and_then(|pos| batch.features[pos].value(i))
                .unwrap_or(Value::Missing)
        };
        self.finish_row(&p, now_ms, &feature, &|| batch_features(batch, i));
    }

    /// Merges another shard's accumulator of the same window into a profile.
    pub(crate) fn into_profile(self) -> WindowProfile {
        let mut w = WindowProfile::new(
            self.settings.identity.clone(),
            self.layout.schema.clone(),
            self.start,
            self.settings.window_ms,
        );
        w.rows = self.rows;
        w.features = self
            .layout
            .names
            .iter()
            .cloned()
            .zip(self.cols.into_iter().map(ColAcc::into_profile))
            .collect();
        w.prediction = Some(self.prediction.into_profile());
        w.label = Some(self.label.into_profile());
        w.outcomes = Some(self.outcomes);
        w.groups = self.groups.into_iter().collect();
        w.latency = self.latency;
        w.errors = self.errors;
        w.reservoir = Some(self.reservoir);
        w.hash_sampled = self.hash_sampled;
        w.predictions = self.predictions;
        w.predictions_dropped = self.predictions_dropped;
        w.extra_features = self.extra_features;
        w
    }
}

fn batch_features<'v>(batch: &Batch<'v>, i: usize) -> Vec<(String, Value<'v>)> {
    batch
        .features
        .iter()
        .map(|c| (c.name.to_owned(), c.value(i).unwrap_or(Value::Missing)))
        .collect()
}

fn empty_outcomes(s: &Settings) -> Outcomes {
    if s.is_classification() {
        Outcomes {
            classification: Some(ClassificationOutcomes::new(s.classes.len() as u32)),
            regression: None,
        }
    } else {
        Outcomes {
            classification: None,
            regression: Some(RegressionOutcomes::default()),
        }
    }
}

fn record_outcome_into(o: &mut Outcomes, p: &Prediction<'_>, r: &Resolved<'_>) {
    if let Some(c) = &mut o.classification {
        c.record(r.predicted, r.label, r.scores);
    }
    if let (Some(reg), Value::Number(y), Value::Number(l)) =
        (&mut o.regression, p.prediction, p.label)
        && y.is_finite()
        && l.is_finite()
    {
        reg.record(y, l);
    }
}
