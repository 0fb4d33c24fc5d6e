//! One Python value (a feature, prediction or label) read without allocating.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyInt, PyString};

/// A Python scalar as the core sees it. Text borrows the string's UTF-8 buffer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    Missing,
    Number(f64),
    Flag(bool),
    Text(&'a str),
    /// A value of a type no feature kind accepts (list, dict, arbitrary object) or a string
    /// that is not valid Unicode; counted as a type mismatch.
    Unsupported,
}

impl<'a> Cell<'a> {
    /// Any object. Exact built-in types take the fast path; subclasses and numpy scalars may
    /// run Python code (`__float__`), so `obj` must be an owned reference the caller keeps.
    pub fn read(obj: &'a Bound<'_, PyAny>) -> Self {
        if let Some(c) = Self::read_plain(obj.as_borrowed()) {
            return c;
        }
        // bool before int: bool is a subclass of int (and only exact bool exists).
        if obj.is_instance_of::<PyFloat>() {
            return obj.extract::<f64>().map_or(Self::Unsupported, Self::Number);
        }
        if obj.is_instance_of::<PyInt>() {
            return Self::Number(obj.extract::<f64>().unwrap_or_else(|_| overflow(obj)));
        }
        if obj.is_instance_of::<PyString>() {
            return utf8(obj.as_borrowed());
        }
        numpy_scalar(obj)
    }

    /// Exact `float`, `int`, `bool`, `str` and `None`, whose conversion runs no Python code;
    /// `None` for every other type.
    #[inline]
    pub fn read_plain(obj: Borrowed<'a, '_, PyAny>) -> Option<Self> {
        if obj.is_exact_instance_of::<PyFloat>() {
            // SAFETY: an exact float; PyFloat_AsDouble cannot fail on it.
            return Some(Self::Number(unsafe { ffi::PyFloat_AsDouble(obj.as_ptr()) }));
        }
        if obj.is_exact_instance_of::<PyString>() {
            return Some(utf8(obj));
        }
        if obj.is_none() {
            return Some(Self::Missing);
        }
        if obj.is_exact_instance_of::<PyBool>() {
            // SAFETY: comparing addresses with the True singleton reads nothing.
            return Some(Self::Flag(obj.as_ptr() == unsafe { ffi::Py_True() }));
        }
        if obj.is_exact_instance_of::<PyInt>() {
            // Integers beyond f64's range count as infinities rather than failing the row.
            return Some(Self::Number(
                obj.extract::<f64>().unwrap_or_else(|_| overflow(&obj)),
            ));
        }
        None
    }
}

/// The string's UTF-8 view, borrowed for as long as the string object lives.
fn utf8<'a>(s: Borrowed<'a, '_, PyAny>) -> Cell<'a> {
    let mut size: ffi::Py_ssize_t = 0;
    // SAFETY: `s` is a str (checked by the callers); the returned buffer is cached inside the
    // string object and lives as long as it does, which outlives 'a.
    let data = unsafe { ffi::PyUnicode_AsUTF8AndSize(s.as_ptr(), &mut size) };
    if data.is_null() {
        // Lone surrogates: not encodable. Clear the pending UnicodeEncodeError.
        drop(PyErr::take(s.py()));
        return Cell::Unsupported;
    }
    let Ok(len) = usize::try_from(size) else {
        return Cell::Unsupported;
    };
    // SAFETY: CPython guarantees `len` bytes of valid UTF-8 at `data`.
    let bytes = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) };
    std::str::from_utf8(bytes).map_or(Cell::Unsupported, Cell::Text)
}

fn overflow(obj: &Bound<'_, PyAny>) -> f64 {
    match obj.lt(0) {
        Ok(true) => f64::NEG_INFINITY,
        _ => f64::INFINITY,
    }
}

/// numpy scalars (np.int64, np.float32, np.bool_) are not Python numbers by type but carry a
/// `dtype`; anything else is unsupported rather than coerced, so that e.g. a list in a numeric
/// feature is a counted type mismatch.
fn numpy_scalar<'a>(obj: &'a Bound<'_, PyAny>) -> Cell<'a> {
    let py = obj.py();
    let kind = obj
        .getattr(pyo3::intern!(py, "dtype"))
        .and_then(|d| d.getattr(pyo3::intern!(py, "kind")))
        .and_then(|k| k.extract::<String>());
    let Ok(kind) = kind else {
        return Cell::Unsupported;
    };
    // 0-d arrays have a dtype too but are not scalars; require a scalar-shaped object.
    let is_array = obj
        .getattr(pyo3::intern!(py, "ndim"))
        .and_then(|n| n.extract::<usize>())
        .is_ok_and(|n| n > 0);
    if is_array {
        return Cell::Unsupported;
    }
    match kind.as_str() {
        "b" => obj.is_truthy().map_or(Cell::Unsupported, Cell::Flag),
        "i" | "u" | "f" => obj
            .call_method0(pyo3::intern!(py, "__float__"))
            .and_then(|f| f.extract::<f64>())
            .map_or(Cell::Unsupported, Cell::Number),
        _ => Cell::Unsupported,
    }
}
