//! The values callers hand to the monitor: one cell ([`Value`]), the prediction that goes with a
//! row ([`Prediction`]) and borrowed columnar batches ([`Batch`]).

use neurocloak_proto as pb;

/// One cell of a row. Borrowed: logging a row copies nothing up front.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Value<'a> {
    /// No value.
    #[default]
    Missing,
    /// A number (any f64, including NaN and ±inf, which are counted).
    Number(f64),
    /// A string.
    Text(&'a str),
    /// A boolean.
    Bool(bool),
}

impl From<f64> for Value<'_> {
    fn from(v: f64) -> Self {
        Value::Number(v)
    }
}
impl From<f32> for Value<'_> {
    fn from(v: f32) -> Self {
        Value::Number(f64::from(v))
    }
}
impl From<i64> for Value<'_> {
    fn from(v: i64) -> Self {
        Value::Number(v as f64)
    }
}
impl From<bool> for Value<'_> {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl<'a> From<&'a str> for Value<'a> {
    fn from(v: &'a str) -> Self {
        Value::Text(v)
    }
}
impl<'a, T: Into<Value<'a>>> From<Option<T>> for Value<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Missing, Into::into)
    }
}

impl Value<'_> {
    /// The wire form (text cut to `max_len` bytes at a character boundary).
    pub fn to_proto(&self, max_len: usize) -> pb::Value {
        use pb::value::Kind;
        pb::Value {
            kind: match *self {
                Value::Missing => None,
                Value::Number(x) => Some(Kind::Number(x)),
                Value::Text(s) => Some(Kind::Text(truncate(s, max_len).0.to_owned())),
                Value::Bool(b) => Some(Kind::Flag(b)),
            },
        }
    }
}

/// Longest prediction id (bytes) the collector accepts; it refuses a whole window part or label
/// batch holding a longer one, so the SDK never ships one.
pub const MAX_ID_LEN: usize = 128;

/// Whether the collector accepts `id` as a prediction id: non-empty, at most [`MAX_ID_LEN`]
/// bytes, no control characters. Ids are never cut to fit: a cut id would join another
/// prediction's label.
#[inline]
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && !id.chars().any(char::is_control)
}

/// Whether a batch's event time (ms since the epoch) is plausible: after the epoch and before
/// the year 3000. Bindings turn NaN into 0 and ±inf into the i64 extremes when they convert a
/// float column; such a row falls back to its recording time, as `log` does with a bad
/// timestamp.
#[inline]
pub fn valid_timestamp_ms(t: i64) -> bool {
    (1..32_503_680_000_000).contains(&t)
}

/// Cuts `s` to at most `max` bytes without splitting a character; true when it was cut.
#[inline]
pub(crate) fn truncate(s: &str, max: usize) -> (&str, bool) {
    if s.len() <= max {
        return (s, false);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (&s[..end], true)
}

/// What the model said about a row, and optionally the truth.
///
/// For classification, `prediction` and `label` are a class name (`Text`), a class index
/// (`Number`) or, for binary tasks, `Bool` (true = class 1). `scores` holds one probability per
/// class, or for a binary task either two or just P(class 1).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Prediction<'a> {
    /// Prediction id, used to join delayed labels and for hash sampling.
    pub id: Option<&'a str>,
    /// Event time; defaults to now. Windows are chosen by the recording time, this is kept in
    /// samples and prediction records.
    pub timestamp_ms: Option<i64>,
    /// The model's output.
    pub prediction: Value<'a>,
    /// Ground truth, when already known.
    pub label: Value<'a>,
    /// Class probabilities.
    pub scores: &'a [f64],
}

/// A borrowed column. Numeric slices are read in place; nothing is copied up front.
#[derive(Debug, Clone, Copy)]
pub enum ColumnData<'a> {
    /// f64 values.
    F64(&'a [f64]),
    /// f32 values.
    F32(&'a [f32]),
    /// i64 values.
    I64(&'a [i64]),
    /// Booleans.
    Bool(&'a [bool]),
    /// String slices.
    Str(&'a [&'a str]),
    /// Arrow `Utf8`: value `i` is `data[offsets[i]..offsets[i+1]]`; `offsets.len() == n + 1`.
    Utf8 {
        /// n + 1 non-decreasing offsets into `data`.
        offsets: &'a [i32],
        /// Concatenated UTF-8 bytes (invalid UTF-8 is counted as a type mismatch).
        data: &'a [u8],
    },
    /// Arrow `LargeUtf8` (64-bit offsets).
    LargeUtf8 {
        /// n + 1 non-decreasing offsets into `data`.
        offsets: &'a [i64],
        /// Concatenated UTF-8 bytes.
        data: &'a [u8],
    },
    /// Dictionary-encoded strings (pandas categorical, Arrow dictionary): a negative code is
    /// missing.
    Dictionary {
        /// One code per row.
        codes: &'a [i32],
        /// The dictionary.
        values: &'a [&'a str],
    },
}

impl<'a> ColumnData<'a> {
    /// Number of rows.
    pub fn len(&self) -> usize {
        match self {
            ColumnData::F64(v) => v.len(),
            ColumnData::F32(v) => v.len(),
            ColumnData::I64(v) => v.len(),
            ColumnData::Bool(v) => v.len(),
            ColumnData::Str(v) => v.len(),
            ColumnData::Utf8 { offsets, .. } => offsets.len().saturating_sub(1),
            ColumnData::LargeUtf8 { offsets, .. } => offsets.len().saturating_sub(1),
            ColumnData::Dictionary { codes, .. } => codes.len(),
        }
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks offsets and dictionary codes, so that reading any row afterwards cannot go out of
    /// bounds.
    pub(crate) fn validate(&self, name: &str) -> crate::Result<()> {
        let bad = |why: &str| Err(crate::CoreError::Batch(format!("column `{name}`: {why}")));
        match self {
            ColumnData::Utf8 { offsets, data } => {
                check_offsets(offsets.iter().map(|&o| i64::from(o)), data.len())
                    .map_or_else(|| bad("offsets out of range or decreasing"), |_| Ok(()))
            }
            ColumnData::LargeUtf8 { offsets, data } => {
                check_offsets(offsets.iter().copied(), data.len())
                    .map_or_else(|| bad("offsets out of range or decreasing"), |_| Ok(()))
            }
            ColumnData::Dictionary { codes, values } => {
                if codes.iter().any(|&c| c >= 0 && c as usize >= values.len()) {
                    bad("dictionary code out of range")
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    /// Cell `i` (`i < len`, offsets validated). Invalid UTF-8 reads as `None`.
    #[inline]
    pub(crate) fn cell(&self, i: usize) -> Option<Value<'a>> {
        Some(match *self {
            ColumnData::F64(v) => Value::Number(v[i]),
            ColumnData::F32(v) => Value::Number(f64::from(v[i])),
            ColumnData::I64(v) => Value::Number(v[i] as f64),
            ColumnData::Bool(v) => Value::Bool(v[i]),
            ColumnData::Str(v) => Value::Text(v[i]),
            ColumnData::Utf8 { offsets, data } => {
                let (a, b) = (offsets[i] as usize, offsets[i + 1] as usize);
                Value::Text(std::str::from_utf8(&data[a..b]).ok()?)
            }
            ColumnData::LargeUtf8 { offsets, data } => {
                let (a, b) = (offsets[i] as usize, offsets[i + 1] as usize);
                Value::Text(std::str::from_utf8(&data[a..b]).ok()?)
            }
            ColumnData::Dictionary { codes, values } => {
                let c = codes[i];
                if c < 0 {
                    Value::Missing
                } else {
                    Value::Text(values[c as usize])
                }
            }
        })
    }
}

/// Cell `i` of an optional column; missing when there is no column or the text is not UTF-8.
#[inline]
pub(crate) fn cell_of(c: Option<ColumnData<'_>>, i: usize) -> Value<'_> {
    c.and_then(|c| c.cell(i)).unwrap_or(Value::Missing)
}

fn check_offsets(offsets: impl Iterator<Item = i64>, len: usize) -> Option<()> {
    let mut prev = 0i64;
    let mut first = true;
    for o in offsets {
        if o < 0 || o as u64 > len as u64 || (!first && o < prev) {
            return None;
        }
        prev = o;
        first = false;
    }
    Some(())
}

/// A named column with an optional Arrow validity bitmap (bit `i` set = row `i` is valid,
/// least-significant bit first).
#[derive(Debug, Clone, Copy)]
pub struct Column<'a> {
    /// Feature name.
    pub name: &'a str,
    /// The values.
    pub data: ColumnData<'a>,
    /// Validity bitmap of at least `ceil(n / 8)` bytes.
    pub validity: Option<&'a [u8]>,
}

impl<'a> Column<'a> {
    /// A column without nulls.
    pub fn new(name: &'a str, data: ColumnData<'a>) -> Self {
        Self {
            name,
            data,
            validity: None,
        }
    }

    #[inline]
    pub(crate) fn is_valid(&self, i: usize) -> bool {
        self.validity.is_none_or(|v| v[i / 8] >> (i % 8) & 1 == 1)
    }

    /// Cell `i` with validity applied; `None` for undecodable text.
    #[inline]
    pub(crate) fn value(&self, i: usize) -> Option<Value<'a>> {
        if self.is_valid(i) {
            self.data.cell(i)
        } else {
            Some(Value::Missing)
        }
    }
}

/// A columnar batch of rows. Every column (and each optional per-row slice) must have the same
/// length.
#[derive(Debug, Clone, Default)]
pub struct Batch<'a> {
    /// Feature columns.
    pub features: Vec<Column<'a>>,
    /// Predictions, one per row.
    pub predictions: Option<ColumnData<'a>>,
    /// Labels, one per row.
    pub labels: Option<ColumnData<'a>>,
    /// Prediction ids, one per row (a string column).
    pub ids: Option<ColumnData<'a>>,
    /// Row-major class probabilities, `scores_per_row` per row.
    pub scores: Option<&'a [f64]>,
    /// Number of scores per row when `scores` is given.
    pub scores_per_row: usize,
    /// Event times, one per row.
    pub timestamps_ms: Option<&'a [i64]>,
}

impl Batch<'_> {
    /// Number of rows, after checking that all columns agree and all offsets are in range.
    pub fn validate(&self) -> crate::Result<usize> {
        let n = self
            .features
            .first()
            .map(|c| c.data.len())
            .or(self.predictions.map(|p| p.len()))
            .unwrap_or(0);
        let bad = |what: &str| Err(crate::CoreError::Batch(what.to_owned()));
        for c in &self.features {
            if c.data.len() != n {
                return bad(&format!(
                    "column `{}` has {} rows, expected {n}",
                    c.name,
                    c.data.len()
                ));
            }
            if c.validity.is_some_and(|v| v.len() < n.div_ceil(8)) {
                return bad(&format!("validity bitmap of `{}` too short", c.name));
            }
            c.data.validate(c.name)?;
        }
        for (what, col) in [
            ("predictions", self.predictions),
            ("labels", self.labels),
            ("ids", self.ids),
        ] {
            if let Some(c) = col {
                if c.len() != n {
                    return bad(&format!("{what} has {} rows, expected {n}", c.len()));
                }
                c.validate(what)?;
            }
        }
        if let Some(s) = self.scores
            && (self.scores_per_row == 0 || Some(s.len()) != n.checked_mul(self.scores_per_row))
        {
            return bad("scores length != rows * scores_per_row");
        }
        if self.timestamps_ms.is_some_and(|t| t.len() != n) {
            return bad("timestamps length != rows");
        }
        Ok(n)
    }
}
