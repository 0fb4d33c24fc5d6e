//! Per-shard, per-window accumulators: the hot path. Everything here is owned by one shard, so
//! nothing is shared or locked per value; a closed accumulator becomes a [`WindowProfile`].

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

use neurocloak_proto as pb;
use pb::FeatureKind;

use super::layout::{Layout, Settings};
use super::value::{
    Batch, Column, ColumnData, Prediction, Value, cell_of, truncate, valid_id, valid_timestamp_ms,
};
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
/// Group of rows whose key arrived after a window already had 1024 distinct groups.
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
        if xs.is_empty() {
            return;
        }
        let m = Moments::of_slice(xs);
        self.moments.merge(&m);
        if let Some(b) = &mut self.bins {
            b.push_slice(xs);
        }
        let (lo, hi) = (
            m.min().unwrap_or(f64::INFINITY),
            m.max().unwrap_or(f64::NEG_INFINITY),
        );
        self.kll.update_finite(xs, lo, hi);
    }

    /// Adds a slice: counts the non-finite values, and when there are none hands the slice
    /// itself to the sketches (no copy).
    fn push_slice(&mut self, xs: &[f64]) {
        // Chunks keep each level-0 sort small and the memory bounded whatever the batch size.
        for c in xs.chunks(PENDING) {
            if c.iter().all(|x| x.is_finite()) {
                self.counters.count += c.len() as u64;
                self.add_finite(c);
            } else {
                for &x in c {
                    self.push(x);
                }
            }
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

/// Prediction or label of a classification task: counts per class index, turned into a
/// categorical profile over the class names when the window closes.
#[derive(Debug)]
pub(crate) struct ClassAcc {
    counters: Counters,
    counts: Vec<u64>,
}

impl ClassAcc {
    /// Class counts as exact frequent items. No HyperLogLog: the classes are known, and its
    /// 4 KB of registers would dominate the column.
    fn into_profile(self, classes: &[String]) -> ColumnProfile {
        let mut items = FrequentItems::new(classes.len().max(1) as u32);
        for (name, &c) in classes.iter().zip(&self.counts) {
            if c > 0 {
                items.update_hashed(name, hash_bytes(name.as_bytes()), c);
            }
        }
        ColumnProfile {
            kind: FeatureKind::Categorical,
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

/// Where the feature values of the row being finished come from.
#[derive(Clone, Copy)]
enum RowSrc<'r, 'v> {
    Named(&'r [(&'r str, Value<'v>)]),
    Indexed(&'r [Value<'v>]),
    Batch {
        batch: &'r Batch<'v>,
        positions: &'r [Option<usize>],
        row: usize,
    },
}

impl<'v> RowSrc<'_, 'v> {
    /// Value of schema column `i`.
    fn feature(&self, layout: &Layout, i: usize) -> Value<'v> {
        match *self {
            RowSrc::Named(f) => {
                let name = &layout.names[i];
                f.get(i)
                    .filter(|(n, _)| n == name)
                    .or_else(|| f.iter().find(|(n, _)| n == name))
                    .map_or(Value::Missing, |(_, v)| *v)
            }
            RowSrc::Indexed(v) => v.get(i).copied().unwrap_or(Value::Missing),
            RowSrc::Batch {
                batch,
                positions,
                row,
            } => positions[i]
                .and_then(|pos| batch.features[pos].value(row))
                .unwrap_or(Value::Missing),
        }
    }

    /// Every value of the row by name, including features outside the schema.
    fn all(&self, layout: &Layout) -> Vec<(String, Value<'v>)> {
        match *self {
            RowSrc::Named(f) => f.iter().map(|(n, v)| ((*n).to_owned(), *v)).collect(),
            RowSrc::Indexed(v) => layout
                .names
                .iter()
                .zip(v)
                .map(|(n, v)| (n.clone(), *v))
                .collect(),
            RowSrc::Batch { batch, row, .. } => batch
                .features
                .iter()
                .map(|c| (c.name.to_owned(), c.value(row).unwrap_or(Value::Missing)))
                .collect(),
        }
    }
}

/// Prediction or label column: a class counter for classification, a numeric column otherwise.
#[derive(Debug)]
enum OutcomeCol {
    Class(ClassAcc),
    Num(NumAcc),
}

impl OutcomeCol {
    fn new(s: &Settings) -> Self {
        if s.is_classification() {
            OutcomeCol::Class(ClassAcc {
                counters: Counters::default(),
                counts: vec![0; s.classes.len()],
            })
        } else {
            OutcomeCol::Num(NumAcc::new(None))
        }
    }

    /// Counts the value; returns its class index for classification.
    #[inline]
    fn record(&mut self, s: &Settings, v: Value<'_>) -> Option<usize> {
        match self {
            OutcomeCol::Num(a) => {
                match v {
                    Value::Number(x) => a.push(x),
                    other => {
                        a.counters.count += 1;
                        if other == Value::Missing {
                            a.counters.missing += 1;
                        } else {
                            a.counters.type_mismatch += 1;
                        }
                    }
                }
                None
            }
            OutcomeCol::Class(a) => {
                a.counters.count += 1;
                match s.class_index(v) {
                    Ok(Some(i)) => {
                        a.counts[i] += 1;
                        Some(i)
                    }
                    Ok(None) => {
                        a.counters.missing += 1;
                        None
                    }
                    Err(()) => {
                        a.counters.type_mismatch += 1;
                        None
                    }
                }
            }
        }
    }

    fn counters(&mut self) -> &mut Counters {
        match self {
            OutcomeCol::Class(a) => &mut a.counters,
            OutcomeCol::Num(a) => &mut a.counters,
        }
    }

    fn into_profile(self, s: &Settings) -> ColumnProfile {
        match self {
            OutcomeCol::Class(a) => a.into_profile(&s.classes),
            OutcomeCol::Num(a) => a.into_profile(),
        }
    }
}

/// Outcome of a row resolved against the task.
struct Resolved<'s> {
    predicted: Option<usize>,
    label: Option<usize>,
    scores: &'s [f64],
}

/// One shard's accumulator for one window.
#[derive(Debug)]
pub(crate) struct WindowAcc {
    pub start: i64,
    pub layout: Arc<Layout>,
    /// Created before any schema was known (by a latency or error record): adopts the
    /// monitor's layout on its first row.
    pub placeholder: bool,
    settings: Arc<Settings>,
    rows: u64,
    cols: Vec<ColAcc>,
    marks: Vec<u32>,
    generation: u32,
    prediction: OutcomeCol,
    label: OutcomeCol,
    outcomes: Outcomes,
    out: RowOutputs,
    pub latency: Option<Latency>,
    pub errors: u64,
    extra_features: u64,
    /// Robustness probes recorded into this window (capped like a merge).
    pub robustness: Vec<pb::RobustnessProbe>,
    pub robustness_dropped: u64,
}

/// Per-row products beyond the columns: group outcomes, samples and prediction records.
#[derive(Debug)]
struct RowOutputs {
    groups: HashMap<String, GroupProfile>,
    key_buf: String,
    keys: Vec<String>,
    reservoir: Reservoir,
    hash_sampled: Vec<pb::SampledRow>,
    predictions: Vec<pb::PredictionRecord>,
    predictions_dropped: u64,
}

impl RowOutputs {
    /// Counts the row in each of its sensitive groups (keys left in `self.keys` for the
    /// prediction record).
    fn record_groups(
        &mut self,
        settings: &Settings,
        layout: &Layout,
        src: RowSrc<'_, '_>,
        p: &Prediction<'_>,
        r: &Resolved<'_>,
    ) {
        self.keys.clear();
        if layout.sensitive.is_empty() {
            return;
        }
        group_keys(settings, layout, src, &mut self.keys, &mut self.key_buf);
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
                        outcomes: empty_outcomes(settings),
                    }),
            };
            g.count += 1;
            record_outcome(&mut g.outcomes, p, r);
        }
    }

    /// Reservoir, hash sampling by id and the prediction record for delayed labels. Rows are
    /// only materialised when a sampler keeps them.
    fn record_samples(
        &mut self,
        settings: &Settings,
        layout: &Layout,
        src: RowSrc<'_, '_>,
        p: &Prediction<'_>,
        ts: i64,
        scores: &[f64],
    ) {
        if let Some(slot) = self.reservoir.offer() {
            let row = sampled_row(settings, p, ts, src.all(layout));
            self.reservoir.put(slot, row);
        }
        let Some(id) = p.id else {
            return;
        };
        if !valid_id(id) {
            // The row is in every statistic; only its label join is lost, and counted.
            self.predictions_dropped += 1;
            return;
        }
        if hash_bytes(id.as_bytes()) < settings.hash_threshold
            && self.hash_sampled.len() < settings.max_hash_samples
        {
            self.hash_sampled
                .push(sampled_row(settings, p, ts, src.all(layout)));
        }
        if self.predictions.len() < settings.max_records {
            self.predictions.push(pb::PredictionRecord {
                id: id.to_owned(),
                timestamp_ms: ts,
                prediction: Some(p.prediction.to_proto(settings.max_string)),
                scores: scores.to_vec(),
                groups: self.keys.clone(),
            });
        } else {
            self.predictions_dropped += 1;
        }
    }
}

impl WindowAcc {
    pub(crate) fn new(start: i64, layout: Arc<Layout>, settings: Arc<Settings>, salt: u64) -> Self {
        let seed = settings.seed ^ (start as u64).rotate_left(23) ^ salt.rotate_left(47);
        let mut acc = Self {
            start,
            placeholder: false,
            marks: Vec::new(),
            generation: 0,
            cols: Vec::new(),
            prediction: OutcomeCol::new(&settings),
            label: OutcomeCol::new(&settings),
            outcomes: empty_outcomes(&settings),
            out: RowOutputs {
                groups: HashMap::new(),
                key_buf: String::new(),
                keys: Vec::new(),
                reservoir: Reservoir::new(settings.reservoir, seed),
                hash_sampled: Vec::new(),
                predictions: Vec::new(),
                predictions_dropped: 0,
            },
            latency: None,
            errors: 0,
            extra_features: 0,
            robustness: Vec::new(),
            robustness_dropped: 0,
            rows: 0,
            layout: Arc::clone(&layout),
            settings,
        };
        acc.adopt(layout);
        acc
    }

    /// Rows recorded so far.
    pub(crate) fn rows(&self) -> u64 {
        self.rows
    }

    /// Switches to `layout`; only valid before the first row.
    pub(crate) fn adopt(&mut self, layout: Arc<Layout>) {
        debug_assert_eq!(self.rows, 0);
        self.cols = (0..layout.names.len())
            .map(|i| ColAcc::new(layout.kinds[i], layout.edges[i].as_ref()))
            .collect();
        self.marks = vec![0; layout.names.len()];
        self.layout = layout;
        self.placeholder = false;
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
        self.finish_row(p, now_ms, RowSrc::Named(features));
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
        self.finish_row(p, now_ms, RowSrc::Indexed(values));
    }

    /// Everything after the feature columns: outcomes, groups, samples, prediction records.
    fn finish_row(&mut self, p: &Prediction<'_>, now_ms: i64, src: RowSrc<'_, '_>) {
        let settings = &*self.settings;
        let layout = &*self.layout;
        self.rows += 1;
        let mut buf = [0.0; 2];
        let issues_before = self.prediction.counters().issues();
        let predicted = self.prediction.record(settings, p.prediction);
        let label = if p.label == Value::Missing {
            None
        } else {
            self.label.record(settings, p.label)
        };
        let scores = match settings.scores(p.scores, &mut buf) {
            Ok(sc) => sc,
            Err(()) => {
                // One issue per value keeps `issues <= count`: a row whose prediction was already
                // counted as bad is not counted twice.
                let c = self.prediction.counters();
                if c.issues() == issues_before {
                    c.type_mismatch += 1;
                }
                &[]
            }
        };
        let r = Resolved {
            predicted,
            label,
            scores,
        };
        record_outcome(&mut self.outcomes, p, &r);
        self.out.record_groups(settings, layout, src, p, &r);
        let ts = p.timestamp_ms.unwrap_or(now_ms);
        self.out
            .record_samples(settings, layout, src, p, ts, r.scores);
    }

    /// Records a columnar batch. The caller has validated it (`n` rows).
    pub(crate) fn log_batch(&mut self, batch: &Batch<'_>, n: usize, now_ms: i64) {
        let max_len = self.settings.max_string;
        let mut positions: Vec<Option<usize>> = vec![None; self.cols.len()];
        let mut extra = false;
        for (pos, col) in batch.features.iter().enumerate() {
            match self.layout.resolve(col.name, pos) {
                Some(i) if positions[i].is_none() => {
                    positions[i] = Some(pos);
                    self.cols[i].record_column(col, n, max_len);
                }
                _ => extra = true,
            }
        }
        for (i, p) in positions.iter().enumerate() {
            if p.is_none() {
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
            || batch.scores.is_some()
            || !self.layout.sensitive.is_empty();
        if per_row {
            for row in 0..n {
                let p = Prediction {
                    id: match batch.ids.map(|c| c.cell(row)) {
                        Some(Some(Value::Text(s))) => Some(s),
                        _ => None,
                    },
                    timestamp_ms: batch
                        .timestamps_ms
                        .map(|t| t[row])
                        .filter(|&t| valid_timestamp_ms(t)),
                    prediction: cell_of(batch.predictions, row),
                    label: cell_of(batch.labels, row),
                    scores: batch.scores.map_or(&[][..], |s| {
                        &s[row * batch.scores_per_row..(row + 1) * batch.scores_per_row]
                    }),
                };
                let src = RowSrc::Batch {
                    batch,
                    positions: &positions,
                    row,
                };
                self.finish_row(&p, now_ms, src);
            }
            return;
        }
        // Only the reservoir needs rows: materialise the ones it keeps.
        self.rows += n as u64;
        for row in 0..n {
            if let Some(slot) = self.out.reservoir.offer() {
                let p = Prediction {
                    timestamp_ms: batch
                        .timestamps_ms
                        .map(|t| t[row])
                        .filter(|&t| valid_timestamp_ms(t)),
                    ..Prediction::default()
                };
                let src = RowSrc::Batch {
                    batch,
                    positions: &positions,
                    row,
                };
                let ts = p.timestamp_ms.unwrap_or(now_ms);
                let r = sampled_row(&self.settings, &p, ts, src.all(&self.layout));
                self.out.reservoir.put(slot, r);
            }
        }
    }

    /// The profile of what this shard recorded.
    pub(crate) fn into_profile(self) -> WindowProfile {
        let s = &*self.settings;
        let mut w = WindowProfile::new(
            s.identity.clone(),
            self.layout.schema.clone(),
            self.start,
            s.window_ms,
        );
        w.rows = self.rows;
        w.features = self
            .layout
            .names
            .iter()
            .cloned()
            .zip(self.cols.into_iter().map(ColAcc::into_profile))
            .collect();
        w.prediction = Some(self.prediction.into_profile(s));
        w.label = Some(self.label.into_profile(s));
        w.outcomes = Some(self.outcomes);
        w.groups = self.out.groups.into_iter().collect();
        w.latency = self.latency;
        w.errors = self.errors;
        w.reservoir = Some(self.out.reservoir);
        w.hash_sampled = self.out.hash_sampled;
        w.predictions = self.out.predictions;
        w.predictions_dropped = self.out.predictions_dropped;
        w.extra_features = self.extra_features;
        w.robustness = self.robustness;
        w.robustness_dropped = self.robustness_dropped;
        w
    }
}

/// Group keys of a row: `attr=value` per sensitive attribute and `a=x&b=y` per intersection
/// (attributes in name order); with more than 4 attributes only singles and the full set.
fn group_keys(
    settings: &Settings,
    layout: &Layout,
    src: RowSrc<'_, '_>,
    keys: &mut Vec<String>,
    buf: &mut String,
) {
    let sens = &layout.sensitive;
    let m = sens.len();
    let mut texts: Vec<(usize, String)> = Vec::with_capacity(m);
    for &i in sens {
        let mut t = String::new();
        match src.feature(layout, i) {
            Value::Missing => t.push_str(MISSING_TEXT),
            Value::Text(s) => t.push_str(truncate(s, settings.max_string).0),
            Value::Bool(b) => t.push_str(if b { "true" } else { "false" }),
            Value::Number(x) => {
                let _ = write!(t, "{x}");
            }
        }
        texts.push((i, t));
    }
    let masks: Vec<u32> = if m <= 4 {
        (1..(1u32 << m)).collect()
    } else {
        (0..m as u32)
            .map(|b| 1 << b)
            .chain([(1u32 << m) - 1])
            .collect()
    };
    for mask in masks {
        buf.clear();
        for (b, (i, t)) in texts.iter().enumerate() {
            if mask >> b & 1 == 1 {
                if !buf.is_empty() {
                    buf.push('&');
                }
                buf.push_str(&layout.names[*i]);
                buf.push('=');
                buf.push_str(t);
            }
        }
        keys.push(buf.clone());
    }
}

fn sampled_row(
    settings: &Settings,
    p: &Prediction<'_>,
    ts: i64,
    features: Vec<(String, Value<'_>)>,
) -> pb::SampledRow {
    let max_len = settings.max_string;
    pb::SampledRow {
        id: p
            .id
            .filter(|id| valid_id(id))
            .map(str::to_owned)
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

fn record_outcome(o: &mut Outcomes, p: &Prediction<'_>, r: &Resolved<'_>) {
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
