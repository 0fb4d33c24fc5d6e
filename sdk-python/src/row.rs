//! The per-row fast path: one walk over the features dict, keys matched to column indices
//! through a cache keyed by the key objects' addresses, values read without allocating.
//!
//! Dicts built the same way (a literal in the user's code, a model server's request parser)
//! present the same interned key objects in the same order, so the usual lookup is one pointer
//! comparison per key. Cached keys are kept alive, so an address can never be reused by another
//! object while it is in the cache.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use neurocloak_core::{FeatureKind, Value};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::cell::Cell;

/// Distinct key objects remembered; beyond it (keys rebuilt for every row, e.g. by a JSON
/// parser) lookups go by name, which is slower but correct.
const MAX_CACHED_KEYS: usize = 4096;
/// Rows with up to this many features are assembled on the stack.
pub const STACK_FEATURES: usize = 64;

/// Where a key's value goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Feature(usize, FeatureKind),
    /// Not in the schema (or not a string): counted as an extra feature.
    Extra,
}

/// Addresses are already well spread; a multiply mixes the low bits that alignment zeroes.
#[derive(Default)]
struct PtrHasher(u64);

impl Hasher for PtrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
    }
}

#[derive(Default)]
pub struct KeyCache {
    /// Slot of the key seen at each dict position last time.
    order: Vec<(usize, Slot)>,
    by_ptr: HashMap<usize, Slot, BuildHasherDefault<PtrHasher>>,
    held: Vec<Py<PyAny>>,
}

impl KeyCache {
    #[inline]
    fn get(&mut self, pos: usize, key: *mut ffi::PyObject) -> Option<Slot> {
        let addr = key as usize;
        if let Some(&(a, slot)) = self.order.get(pos)
            && a == addr
        {
            return Some(slot);
        }
        let slot = *self.by_ptr.get(&addr)?;
        self.remember_order(pos, addr, slot);
        Some(slot)
    }

    fn insert(&mut self, pos: usize, key: &Bound<'_, PyAny>, slot: Slot) {
        if self.by_ptr.len() >= MAX_CACHED_KEYS {
            return;
        }
        let addr = key.as_ptr() as usize;
        self.held.push(key.clone().unbind());
        self.by_ptr.insert(addr, slot);
        self.remember_order(pos, addr, slot);
    }

    fn remember_order(&mut self, pos: usize, addr: usize, slot: Slot) {
        if pos < self.order.len() {
            self.order[pos] = (addr, slot);
        } else if pos == self.order.len() {
            self.order.push((addr, slot));
        }
    }
}

/// Resolves a key by name; `Extra` for names outside the schema and for non-string keys.
pub type Resolve<'r> = &'r dyn Fn(&str) -> Slot;

/// A value a feature of this kind can never accept, so the core counts a type mismatch for
/// objects that have no `Value` (lists, dicts, arbitrary objects).
pub fn mismatch_for(kind: FeatureKind) -> Value<'static> {
    match kind {
        FeatureKind::Categorical => Value::Number(f64::NAN),
        _ => Value::Text(""),
    }
}

pub fn to_value(cell: Cell<'_>, kind: FeatureKind) -> Value<'_> {
    match cell {
        Cell::Missing => Value::Missing,
        Cell::Number(x) => Value::Number(x),
        Cell::Flag(b) => Value::Bool(b),
        Cell::Text(s) => Value::Text(s),
        Cell::Unsupported => mismatch_for(kind),
    }
}

/// Outcome of [`fill`].
pub struct Filled {
    /// Keys that matched a feature.
    pub matched: usize,
    /// Keys outside the schema.
    pub extra: usize,
}

/// Walks `dict` once and writes each feature's value into `out[index]` (which the caller
/// initialised to `Missing`). Returns `None` without touching the cache when a value needs
/// Python code to convert (numpy scalars, subclasses): the caller then uses [`fill_owned`].
pub fn fill<'py, 'a>(
    dict: &'a Bound<'py, PyDict>,
    cache: Option<&mut KeyCache>,
    resolve: Resolve<'_>,
    out: &mut [Value<'a>],
) -> Option<Filled> {
    let py = dict.py();
    let mut cache = cache;
    let mut pos: ffi::Py_ssize_t = 0;
    let mut index = 0usize;
    let mut filled = Filled {
        matched: 0,
        extra: 0,
    };
    let mut key: *mut ffi::PyObject = std::ptr::null_mut();
    let mut value: *mut ffi::PyObject = std::ptr::null_mut();
    // SAFETY: we hold the GIL; PyDict_Next yields borrowed references that stay valid while the
    // dict is not modified, and nothing in this loop runs Python code (`plain` values only; the
    // first other value makes us bail out before converting it).
    while unsafe { ffi::PyDict_Next(dict.as_ptr(), &mut pos, &mut key, &mut value) } != 0 {
        let v: Borrowed<'a, 'py, PyAny> = unsafe { Borrowed::from_ptr(py, value) };
        let cell = Cell::read_plain(v)?;
        let slot = match cache.as_deref_mut().and_then(|c| c.get(index, key)) {
            Some(s) => s,
            None => {
                let k = unsafe { Borrowed::from_ptr(py, key) };
                let slot = slot_of(&k, resolve);
                if let Some(c) = cache.as_deref_mut() {
                    c.insert(index, &k, slot);
                }
                slot
            }
        };
        index += 1;
        match slot {
            Slot::Feature(i, kind) => {
                if let Some(dst) = out.get_mut(i) {
                    *dst = to_value(cell, kind);
                    filled.matched += 1;
                }
            }
            Slot::Extra => filled.extra += 1,
        }
    }
    Some(filled)
}

fn slot_of(key: &Bound<'_, PyAny>, resolve: Resolve<'_>) -> Slot {
    match key.cast::<PyString>().map(|s| s.to_str()) {
        Ok(Ok(name)) => resolve(name),
        _ => Slot::Extra,
    }
}

/// The dict's entries as owned references, for rows whose values run Python code while being
/// converted (which could mutate the dict under a borrowed walk).
pub fn owned_items<'py>(dict: &Bound<'py, PyDict>) -> Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let py = dict.py();
    let mut items = Vec::with_capacity(dict.len());
    let mut pos: ffi::Py_ssize_t = 0;
    let mut key: *mut ffi::PyObject = std::ptr::null_mut();
    let mut value: *mut ffi::PyObject = std::ptr::null_mut();
    // SAFETY: as in `fill`; the references are made owned before any Python code can run.
    while unsafe { ffi::PyDict_Next(dict.as_ptr(), &mut pos, &mut key, &mut value) } != 0 {
        let k = unsafe { Borrowed::from_ptr(py, key) }.to_owned();
        let v = unsafe { Borrowed::from_ptr(py, value) }.to_owned();
        items.push((k, v));
    }
    items
}

/// Values of owned entries, read before any core lock is taken (reading may run Python code).
pub fn read_values<'a>(items: &'a [(Bound<'_, PyAny>, Bound<'_, PyAny>)]) -> Vec<Cell<'a>> {
    items.iter().map(|(_, v)| Cell::read(v)).collect()
}

/// [`fill`] over owned entries whose values [`read_values`] read: any value type, no cache.
pub fn fill_owned<'a>(
    items: &[(Bound<'_, PyAny>, Bound<'_, PyAny>)],
    cells: &[Cell<'a>],
    resolve: Resolve<'_>,
    out: &mut [Value<'a>],
) -> Filled {
    let mut filled = Filled {
        matched: 0,
        extra: 0,
    };
    for ((k, _), cell) in items.iter().zip(cells) {
        match slot_of(k, resolve) {
            Slot::Feature(i, kind) => {
                if let Some(dst) = out.get_mut(i) {
                    *dst = to_value(*cell, kind);
                    filled.matched += 1;
                }
            }
            Slot::Extra => filled.extra += 1,
        }
    }
    filled
}
