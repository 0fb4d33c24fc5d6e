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

/// One packed row as index.js hands it over.
pub struct Packed<'a> {
    values: &'a [f64],
    tags: &'a [u8],
    strings: Strings<'a>,
    width: usize,
    scores: &'a [f64],
}

impl<'a> Packed<'a> {
    /// Checks the shape once so that every slot read afterwards is in bounds.
    pub fn new(values: &'a [f64], tags: &'a [u8], strings: Strings<'a>) -> Result<Self> {
        let Some(width) = tags.len().checked_sub(META_SLOTS) else {
            return Err(invalid_argument("packed row: too few tags"));
        };
        if values.len() < tags.len() {
            return Err(invalid_argument("packed row: fewer values than tags"));
        }
        let k = values[width + 4];
        let scores = if tags[width + 4] == NUMBER && k >= 1.0 {
            values
                .get(tags.len()..tags.len().saturating_add(k as usize))
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

    /// Number of feature slots.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Slot `i` as a core value; `Err(())` for a JS value no core type represents.
    pub fn cell(&self, i: usize) -> std::result::Result<Value<'a>, ()> {
        cell(self.values, self.tags, self.strings, i)
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

/// Slot `i` (`i < tags.len() <= values.len()`) of a packed array as a core value; `Err(())` for
/// a JS value no core type represents.
pub fn cell<'a>(
    values: &[f64],
    tags: &[u8],
    strings: Strings<'a>,
    i: usize,
) -> std::result::Result<Value<'a>, ()> {
    let x = values[i];
    let text = |table: &'a [String]| {
        // An index past the table is a packing bug, not user data: treat it as invalid.
        let s = table.get(x as usize).filter(|_| x >= 0.0).ok_or(())?;
        Ok(Value::Text(s.as_str()))
    };
    match tags[i] {
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
