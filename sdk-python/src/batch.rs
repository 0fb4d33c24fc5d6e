//! Columns handed over by `neurocloak._columns` → core `ColumnData`, borrowing wherever the
//! memory allows it.
//!
//! Three steps with growing borrows: [`Source`] holds the Python objects (so every borrowed
//! string and buffer stays alive), [`Buf`] borrows from it and owns only what had to be
//! converted, and `Buf::data` lends the core its `ColumnData`.

use neurocloak_core::{ColumnData, FeatureKind};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString, PyTuple};

use crate::array::ArrayView;
use crate::cell::Cell;

/// A column as it came from Python, kept alive for the duration of the call.
pub enum Source<'py> {
    Array(ArrayView),
    Dictionary {
        codes: ArrayView,
        categories: Vec<Bound<'py, PyAny>>,
    },
    Objects(Vec<Bound<'py, PyAny>>),
}

impl<'py> Source<'py> {
    pub fn from_py(obj: &Bound<'py, PyAny>) -> PyResult<Self> {
        if let Some(view) = ArrayView::from_py(obj)? {
            return Ok(Self::Array(view));
        }
        if let Ok(t) = obj.cast::<PyTuple>() {
            if t.len() != 2 {
                return Err(PyTypeError::new_err(
                    "a dictionary column is a (codes, categories) pair",
                ));
            }
            let codes = ArrayView::from_py(&t.get_item(0)?)?
                .filter(|c| c.dtype.is_integer())
                .ok_or_else(|| PyTypeError::new_err("dictionary codes must be an integer array"))?;
            let categories = t.get_item(1)?.try_iter()?.collect::<PyResult<Vec<_>>>()?;
            return Ok(Self::Dictionary { codes, categories });
        }
        if obj.is_instance_of::<PyString>() {
            return Err(PyTypeError::new_err(
                "a column must be a sequence, not a str",
            ));
        }
        let items = match obj.cast::<PyList>() {
            Ok(list) => list.iter().collect(),
            Err(_) => obj.try_iter()?.collect::<PyResult<Vec<_>>>()?,
        };
        Ok(Self::Objects(items))
    }

    pub fn len(&self) -> usize {
        match self {
            Self::Array(a) => a.len(),
            Self::Dictionary { codes, .. } => codes.len(),
            Self::Objects(o) => o.len(),
        }
    }
}

/// Validity bitmap (bit set = present), least-significant bit first, as Arrow lays it out.
fn bitmap(present: impl ExactSizeIterator<Item = bool>) -> Vec<u8> {
    let mut bits = vec![0u8; present.len().div_ceil(8)];
    for (i, p) in present.enumerate() {
        bits[i / 8] |= u8::from(p) << (i % 8);
    }
    bits
}

/// A column ready for the core: borrowed when possible, converted otherwise.
pub enum Buf<'s> {
    F64(&'s [f64]),
    F32(&'s [f32]),
    I64(&'s [i64]),
    OwnedF64(Vec<f64>, Option<Vec<u8>>),
    Bool(Vec<bool>, Option<Vec<u8>>),
    Str(Vec<&'s str>, Option<Vec<u8>>),
    Dict(Vec<i32>, Vec<&'s str>),
    /// Values of several types (or of no supported type) in one column: no single
    /// `ColumnData` can carry their type mismatches, so such batches are recorded row by row.
    Mixed(Vec<Cell<'s>>),
}

impl<'s> Buf<'s> {
    pub fn new(src: &'s Source<'_>) -> PyResult<Self> {
        match src {
            Source::Array(a) => Ok(Self::from_array(a)),
            Source::Dictionary { codes, categories } => Self::from_dictionary(codes, categories),
            Source::Objects(items) => Ok(Self::from_objects(items)),
        }
    }

    fn from_array(a: &'s ArrayView) -> Self {
        if let Some(s) = a.as_slice::<f64>() {
            return Self::F64(s);
        }
        if let Some(s) = a.as_slice::<f32>() {
            return Self::F32(s);
        }
        if let Some(s) = a.as_slice::<i64>() {
            return Self::I64(s);
        }
        if a.dtype == crate::array::Dtype::Bool {
            // Copied: a numpy bool byte is not guaranteed to be 0 or 1 (views of uint8).
            return Self::Bool((0..a.len()).map(|i| a.f64_at(i) != 0.0).collect(), None);
        }
        Self::OwnedF64(a.values_f64().into_owned(), None)
    }

    fn from_dictionary(codes: &ArrayView, categories: &'s [Bound<'_, PyAny>]) -> PyResult<Self> {
        let mut values = Vec::with_capacity(categories.len());
        // A category that is None or not a usable string maps its rows to missing.
        let mut usable = Vec::with_capacity(categories.len());
        for c in categories {
            match Cell::read(c) {
                Cell::Text(s) => {
                    usable.push(true);
                    values.push(s);
                }
                _ => {
                    usable.push(false);
                    values.push("");
                }
            }
        }
        let mut out = Vec::with_capacity(codes.len());
        for i in 0..codes.len() {
            let c = codes.i64_at(i);
            let code = if c < 0 {
                -1
            } else {
                let idx = usize::try_from(c).unwrap_or(usize::MAX);
                match usable.get(idx) {
                    Some(true) => i32::try_from(c).map_err(|_| {
                        PyValueError::new_err(format!("dictionary code {c} out of range"))
                    })?,
                    Some(false) => -1,
                    // Left out of range on purpose: the core rejects the batch with BatchError.
                    None => i32::try_from(c).unwrap_or(i32::MAX),
                }
            };
            out.push(code);
        }
        Ok(Self::Dict(out, values))
    }

    fn from_objects(items: &'s [Bound<'_, PyAny>]) -> Self {
        let cells: Vec<Cell<'s>> = items.iter().map(Cell::read).collect();
        let (mut num, mut text, mut flag) = (false, false, false);
        let mut missing = false;
        for c in &cells {
            match c {
                Cell::Missing => missing = true,
                Cell::Number(_) => num = true,
                Cell::Text(_) => text = true,
                Cell::Flag(_) => flag = true,
                Cell::Unsupported => return Self::Mixed(cells),
            }
        }
        if u8::from(num) + u8::from(text) + u8::from(flag) > 1 {
            return Self::Mixed(cells);
        }
        let validity = missing.then(|| bitmap(cells.iter().map(|c| *c != Cell::Missing)));
        if text {
            let v = cells
                .iter()
                .map(|c| if let Cell::Text(s) = c { *s } else { "" })
                .collect();
            Self::Str(v, validity)
        } else if flag {
            let v = cells
                .iter()
                .map(|c| matches!(c, Cell::Flag(true)))
                .collect();
            Self::Bool(v, validity)
        } else {
            let v = cells
                .iter()
                .map(|c| {
                    if let Cell::Number(x) = c {
                        *x
                    } else {
                        f64::NAN
                    }
                })
                .collect();
            Self::OwnedF64(v, validity)
        }
    }

    /// Predictions, labels and ids have no validity bitmap in the core's batch: missing text
    /// becomes a dictionary code of -1, missing numbers stay NaN, missing flags go row by row.
    pub fn into_outcome(self) -> Self {
        match self {
            Self::Str(v, Some(valid)) => {
                let mut values: Vec<&'s str> = Vec::new();
                let mut index = std::collections::HashMap::new();
                let codes = v
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        if valid[i / 8] >> (i % 8) & 1 == 0 {
                            return -1;
                        }
                        *index.entry(*s).or_insert_with(|| {
                            values.push(s);
                            i32::try_from(values.len() - 1).unwrap_or(i32::MAX)
                        })
                    })
                    .collect();
                Self::Dict(codes, values)
            }
            Self::OwnedF64(v, Some(_)) => Self::OwnedF64(v, None),
            Self::Bool(v, Some(valid)) => Self::Mixed(
                v.iter()
                    .enumerate()
                    .map(|(i, b)| {
                        if valid[i / 8] >> (i % 8) & 1 == 0 {
                            Cell::Missing
                        } else {
                            Cell::Flag(*b)
                        }
                    })
                    .collect(),
            ),
            other => other,
        }
    }

    pub fn is_mixed(&self) -> bool {
        matches!(self, Self::Mixed(_))
    }

    /// The kind the core infers for this column when the schema is not known yet.
    pub fn inferred_kind(&self) -> FeatureKind {
        match self {
            Self::F64(_) | Self::F32(_) | Self::I64(_) | Self::OwnedF64(..) => FeatureKind::Numeric,
            Self::Bool(..) => FeatureKind::Boolean,
            Self::Str(..) | Self::Dict(..) => FeatureKind::Categorical,
            Self::Mixed(cells) => match cells.iter().find(|c| **c != Cell::Missing) {
                Some(Cell::Text(_)) => FeatureKind::Categorical,
                Some(Cell::Flag(_)) => FeatureKind::Boolean,
                _ => FeatureKind::Numeric,
            },
        }
    }

    /// The core's view of this column. `Mixed` has none (the caller goes row by row).
    pub fn data(&self) -> Option<ColumnData<'_>> {
        Some(match self {
            Self::F64(s) => ColumnData::F64(s),
            Self::F32(s) => ColumnData::F32(s),
            Self::I64(s) => ColumnData::I64(s),
            Self::OwnedF64(v, _) => ColumnData::F64(v),
            Self::Bool(v, _) => ColumnData::Bool(v),
            Self::Str(v, _) => ColumnData::Str(v),
            Self::Dict(codes, values) => ColumnData::Dictionary { codes, values },
            Self::Mixed(_) => return None,
        })
    }

    pub fn validity(&self) -> Option<&[u8]> {
        match self {
            Self::OwnedF64(_, v) | Self::Bool(_, v) | Self::Str(_, v) => v.as_deref(),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Self::F64(s) => s.len(),
            Self::F32(s) => s.len(),
            Self::I64(s) => s.len(),
            Self::OwnedF64(v, _) => v.len(),
            Self::Bool(v, _) => v.len(),
            Self::Str(v, _) => v.len(),
            Self::Dict(c, _) => c.len(),
            Self::Mixed(c) => c.len(),
        }
    }

    /// Row `i` as a cell, for the row-by-row path. `i < len`.
    pub fn cell(&self, i: usize) -> Cell<'_> {
        let valid = self.validity().is_none_or(|v| v[i / 8] >> (i % 8) & 1 == 1);
        if !valid {
            return Cell::Missing;
        }
        match self {
            Self::F64(s) => Cell::Number(s[i]),
            Self::F32(s) => Cell::Number(f64::from(s[i])),
            Self::I64(s) => Cell::Number(s[i] as f64),
            Self::OwnedF64(v, _) => Cell::Number(v[i]),
            Self::Bool(v, _) => Cell::Flag(v[i]),
            Self::Str(v, _) => Cell::Text(v[i]),
            Self::Dict(codes, values) => match usize::try_from(codes[i]) {
                Ok(c) => values.get(c).map_or(Cell::Unsupported, |s| Cell::Text(s)),
                Err(_) => Cell::Missing,
            },
            Self::Mixed(c) => c[i],
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn bitmap_is_lsb_first() {
        let bits = bitmap([true, false, true, true, false, false, false, false, true].into_iter());
        assert_eq!(bits, vec![0b0000_1101, 0b0000_0001]);
    }

    #[test]
    fn objects_pick_one_column_type_or_go_row_by_row() {
        Python::initialize();
        Python::attach(|py| {
            let items = |code: &str| -> Vec<Bound<'_, PyAny>> {
                py.eval(&std::ffi::CString::new(code).unwrap(), None, None)
                    .unwrap()
                    .try_iter()
                    .unwrap()
                    .map(Result::unwrap)
                    .collect()
            };
            let nums = items("[1, 2.5, None]");
            match Buf::from_objects(&nums) {
                Buf::OwnedF64(v, Some(valid)) => {
                    assert_eq!(&v[..2], &[1.0, 2.5]);
                    assert!(v[2].is_nan());
                    assert_eq!(valid, vec![0b011]);
                }
                _ => panic!("numbers with a None should be f64 + validity"),
            }
            let text = items("['a', None, 'b']");
            let buf = Buf::from_objects(&text);
            assert!(matches!(buf, Buf::Str(_, Some(_))));
            match buf.into_outcome() {
                Buf::Dict(codes, values) => {
                    assert_eq!(codes, vec![0, -1, 1]);
                    assert_eq!(values, vec!["a", "b"]);
                }
                _ => panic!("missing text in an outcome column should be dictionary-coded"),
            }
            let mixed = items("[1.0, 'x', True]");
            assert!(Buf::from_objects(&mixed).is_mixed());
            let odd = items("[[1], 2.0]");
            assert!(Buf::from_objects(&odd).is_mixed());
        });
    }
}
