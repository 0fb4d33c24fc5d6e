//! JS values → core values. index.js packs a row into one `Float64Array` of numbers and one
//! `Uint8Array` of type tags, so one native call with two typed arrays reads a whole row:
//! crossing napi costs far more per argument and per string than reading a slot does.
//! Strings are interned once per monitor (tag `INTERNED`) and sent by id afterwards; strings
//! that are not interned travel in a per-call array (tag `TEXT`).

use neurocloak_core::monitor::{Prediction, Value};
use neurocloak_core::{CoreError, DataIssue, FeatureKind};

use crate::error::{Result, from_core, invalid_argument};

/// Type tag of one packed slot (index.js writes the same numbers).
const MISSING: u8 = 0;
const NUMBER: u8 = 1;
const TEXT: u8 = 2;
const BOOL: u8 = 3;
const INTERNED: u8 = 5;

/// Tagged slots after the features: prediction, label, timestamp (ms), latency (ms), and the
/// number of class scores, which follow the tagged slots in `values`.
pub const META_SLOTS: usize = 5;

/// Text standing in for an unrepresentable JS value where a text is a type mismatch.
const UNREPRESENTABLE: &str = "[object]";

/// Where the strings of a packed array live.
#[derive(Clone, Copy)]
pub struct Strings<'a> {
    /// Strings sent with this call.
    pub texts: &'a [String],
    /// The monitor's interned strings.
    pub interned: &'a [String],
}

/// The type tags of a packed row: bytes, or (for the row buffer index.js binds once) numbers
/// stored in the same `Float64Array` as the values.
#[derive(Clone, Copy)]
pub enum Tags<'a> {
    Bytes(&'a [u8]),
    Floats(&'a [f64]),
}

impl Tags<'_> {
    fn len(&self) -> usize {
        match self {
            Tags::Bytes(t) => t.len(),
            Tags::Floats(t) => t.len(),
        }
    }

    /// Tag `i < len`; a number that is no tag saturates into one no arm matches.
    fn get(&self, i: usize) -> u8 {
        match self {
            Tags::Bytes(t) => t[i],
            Tags::Floats(t) => t[i] as u8,
        }
    }
}

/// One packed row as index.js hands it over.
pub struct Packed<'a> {
    values: &'a [f64],
    tags: Tags<'a>,
    strings: Strings<'a>,
    width: usize,
    scores: &'a [f64],
}

impl<'a> Packed<'a> {
    /// Checks the shape once so that every slot read afterwards is in bounds. The class scores
    /// are the first `values[width + 4]` numbers of `scores_area`.
    pub fn new(
        values: &'a [f64],
        tags: Tags<'a>,
        scores_area: &'a [f64],
        strings: Strings<'a>,
    ) -> Result<Self> {
        let Some(width) = tags.len().checked_sub(META_SLOTS) else {
            return Err(invalid_argument("packed row: too few tags"));
        };
        if values.len() < tags.len() {
            return Err(invalid_argument("packed row: fewer values than tags"));
        }
        let k = values[width + 4];
        let scores = if tags.get(width + 4) == NUMBER && k >= 1.0 {
            scores_area
                .get(..k as usize)
                .ok_or_else(|| invalid_argument("packed row: score count past the values"))?
        } else {
            &[]
        };
        Ok(Self {
            values,
            tags,
            strings,
            width,
            scores,
        })
    }

    /// A row in one array: values, then tags, then the scores area.
    pub fn split(values: &'a [f64], tags: &'a [u8], strings: Strings<'a>) -> Result<Self> {
        let scores_area = values.get(tags.len()..).unwrap_or_default();
        Self::new(values, Tags::Bytes(tags), scores_area, strings)
    }

    /// Number of feature slots.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Slot `i` as a core value; `Err(())` for a JS value no core type represents.
    pub fn cell(&self, i: usize) -> std::result::Result<Value<'a>, ()> {
        decode(self.values[i], self.tags.get(i), self.strings)
    }

    /// Feature slot `i`; an unrepresentable JS value becomes `stand_in` (a value the core counts
    /// as a type mismatch for this feature's kind) or, in strict mode, a type-mismatch error.
    pub fn feature(
        &self,
        i: usize,
        name: &str,
        stand_in: Value<'static>,
        strict: bool,
    ) -> Result<Value<'a>> {
        match self.cell(i) {
            Ok(v) => Ok(v),
            Err(()) if strict => Err(data_error(name, DataIssue::TypeMismatch)),
            Err(()) => Ok(stand_in),
        }
    }

    /// The prediction part of the row.
    pub fn prediction(&self, id: Option<&'a str>, strict: bool) -> Result<Prediction<'a>> {
        let base = self.width;
        let prediction = self
            .cell(base)
            .or_else(|()| invalid("prediction", strict))?;
        let label = self.cell(base + 1).or_else(|()| invalid("label", strict))?;
        let timestamp_ms = match self.cell(base + 2) {
            Ok(Value::Number(t)) if t.is_finite() => Some(t as i64),
            Ok(Value::Missing) => None,
            // A bad timestamp cannot be counted anywhere; the recording time stands in for it.
            _ if strict => return Err(data_error("timestamp", DataIssue::TypeMismatch)),
            _ => None,
        };
        Ok(Prediction {
            id,
            timestamp_ms,
            prediction,
            label,
            scores: self.scores,
        })
    }

    /// Latency slot in milliseconds, when given as a finite, non-negative number.
    pub fn latency_ms(&self) -> Option<f64> {
        match self.cell(self.width + 3) {
            Ok(Value::Number(ms)) if ms.is_finite() && ms >= 0.0 => Some(ms),
            _ => None,
        }
    }
}

/// One packed slot (`x` with its tag) as a core value; `Err(())` for a JS value no core type
/// represents.
pub fn decode<'a>(x: f64, tag: u8, strings: Strings<'a>) -> std::result::Result<Value<'a>, ()> {
    let text = |table: &'a [String]| -> std::result::Result<Value<'a>, ()> {
        // An index past the table is a packing bug, not user data: treat it as invalid.
        let s = table.get(x as usize).filter(|_| x >= 0.0).ok_or(())?;
        Ok(Value::Text(s.as_str()))
    };
    match tag {
        MISSING => Ok(Value::Missing),
        NUMBER => Ok(Value::Number(x)),
        TEXT => text(strings.texts),
        INTERNED => text(strings.interned),
        BOOL => Ok(Value::Bool(x != 0.0)),
        _ => Err(()),
    }
}

/// Prediction and label slots: a text names no class and is not a regression target, so the
/// core counts it as an invalid outcome.
fn invalid<'a>(name: &str, strict: bool) -> Result<Value<'a>> {
    if strict {
        Err(data_error(name, DataIssue::TypeMismatch))
    } else {
        Ok(Value::Text(UNREPRESENTABLE))
    }
}

/// What stands in for a JS value no core type represents (object, function, symbol) in a
/// feature of `kind`: a value of another kind, so the core counts a type mismatch.
pub fn stand_in(kind: Option<FeatureKind>) -> Value<'static> {
    match kind {
        Some(FeatureKind::Categorical) => Value::Number(f64::NAN),
        _ => Value::Text(UNREPRESENTABLE),
    }
}

fn data_error(name: &str, issue: DataIssue) -> napi::Error<crate::error::Code> {
    from_core(CoreError::Data {
        feature: name.to_owned(),
        issue,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn strings<'a>(texts: &'a [String], interned: &'a [String]) -> Strings<'a> {
        Strings { texts, interned }
    }

    #[test]
    fn cells_decode_every_tag() {
        let texts = vec!["raw".to_owned()];
        let interned = vec!["a".to_owned(), "b".to_owned()];
        let s = strings(&texts, &interned);
        let values = [1.5, 0.0, 1.0, 1.0, 0.0, 9.0];
        let tags = [NUMBER, TEXT, INTERNED, BOOL, MISSING, 4];
        let cell = |i: usize| decode(values[i], tags[i], s);
        assert_eq!(cell(0), Ok(Value::Number(1.5)));
        assert_eq!(cell(1), Ok(Value::Text("raw")));
        assert_eq!(cell(2), Ok(Value::Text("b")));
        assert_eq!(cell(3), Ok(Value::Bool(true)));
        assert_eq!(cell(4), Ok(Value::Missing));
        assert_eq!(cell(5), Err(()));
    }

    #[test]
    fn string_indices_out_of_range_are_invalid_not_a_panic() {
        let s = strings(&[], &[]);
        for x in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e300] {
            assert_eq!(decode(x, TEXT, s), Err(()));
            assert_eq!(decode(x, INTERNED, s), Err(()));
        }
    }

    #[test]
    fn packed_rows_check_their_shape() {
        let s = strings(&[], &[]);
        assert!(
            Packed::split(&[0.0; 4], &[0; 4], s).is_err(),
            "fewer tags than meta slots"
        );
        assert!(
            Packed::split(&[0.0; 5], &[0; 6], s).is_err(),
            "fewer values than tags"
        );
        // Score count pointing past the values.
        let mut values = [0.0; 7];
        let mut tags = [MISSING; 6];
        values[1 + 4] = 3.0;
        tags[1 + 4] = NUMBER;
        assert!(Packed::split(&values, &tags, s).is_err());
        values[1 + 4] = 1.0;
        values[6] = 0.25;
        let row = Packed::split(&values, &tags, s).expect("one score fits");
        assert_eq!(row.width(), 1);
        assert_eq!(
            row.prediction(None, false).expect("lenient").scores,
            &[0.25]
        );
    }

    #[test]
    fn a_bound_row_keeps_tags_as_numbers_between_values_and_scores() {
        let s = strings(&[], &[]);
        // values (1 feature + 5 meta), tags as numbers, then two scores.
        let row = [
            2.0, 1.0, 0.0, 0.0, 0.0, 2.0, // values; the score count (2) sits in slot 1 + 4
            1.0, 1.0, 0.0, 0.0, 0.0, 1.0, // tags
            0.3, 0.7, // scores
        ];
        let p = Packed::new(&row[..6], Tags::Floats(&row[6..12]), &row[12..], s).expect("shape");
        assert_eq!(p.cell(0), Ok(Value::Number(2.0)));
        assert_eq!(p.prediction(None, true).expect("valid").scores, &[0.3, 0.7]);
        // A tag that is no tag (NaN, 300) is an unrepresentable value, never a panic.
        let odd = [f64::NAN, 300.0, 0.0, 0.0, 0.0, 0.0];
        let p = Packed::new(&row[..6], Tags::Floats(&odd), &[], s).expect("shape");
        assert_eq!(p.cell(0), Ok(Value::Missing), "NaN saturates to tag 0");
        assert_eq!(p.cell(1), Err(()));
    }

    #[test]
    fn meta_slots_map_to_the_prediction() {
        let s = strings(&[], &[]);
        // One feature, then prediction, label, timestamp, latency, score count.
        let values = [7.0, 1.0, 0.0, 1_700_000_000_123.0, 3.5, 0.0];
        let tags = [NUMBER, NUMBER, BOOL, NUMBER, NUMBER, MISSING];
        let row = Packed::split(&values, &tags, s).expect("shape");
        let p = row.prediction(Some("id-1"), true).expect("valid");
        assert_eq!(p.prediction, Value::Number(1.0));
        assert_eq!(p.label, Value::Bool(false));
        assert_eq!(p.timestamp_ms, Some(1_700_000_000_123));
        assert_eq!(p.id, Some("id-1"));
        assert!(p.scores.is_empty());
        assert_eq!(row.latency_ms(), Some(3.5));
    }

    #[test]
    fn unrepresentable_values_are_mismatches_or_strict_errors() {
        let s = strings(&[], &[]);
        let values = [0.0, 0.0, 0.0, f64::NAN, -1.0, 0.0];
        let tags = [4, 4, MISSING, NUMBER, NUMBER, MISSING];
        let row = Packed::split(&values, &tags, s).expect("shape");
        let categorical = stand_in(Some(FeatureKind::Categorical));
        assert!(
            matches!(row.feature(0, "f", categorical, false), Ok(Value::Number(x)) if x.is_nan())
        );
        assert_eq!(
            row.feature(0, "f", stand_in(Some(FeatureKind::Numeric)), false)
                .ok(),
            Some(Value::Text(UNREPRESENTABLE))
        );
        let err = row.feature(0, "f", categorical, true).expect_err("strict");
        assert_eq!(err.status, crate::error::Code::InvalidData);
        assert!(err.reason.contains('f'));
        // Lenient: an invalid prediction becomes a text no class is named after; a NaN
        // timestamp falls back to the recording time; a negative latency is not recorded.
        let p = row.prediction(None, false).expect("lenient");
        assert_eq!(p.prediction, Value::Text(UNREPRESENTABLE));
        assert_eq!(p.timestamp_ms, None);
        assert_eq!(row.latency_ms(), None);
        assert!(row.prediction(None, true).is_err());
    }
}
