//! Zero-copy views of numpy arrays through `__array_interface__` (the buffer protocol is not
//! in the stable ABI before Python 3.11, and the wheel targets abi3-py310).

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

/// Element types read in place. Anything else goes through Python objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F64,
    F32,
    I64,
    I32,
    I16,
    I8,
    U64,
    U32,
    U16,
    U8,
    Bool,
}

impl Dtype {
    /// Parses a native-endian numpy typestr (`<f8`, `|b1`, ...).
    fn parse(typestr: &str) -> Option<Self> {
        let native = if cfg!(target_endian = "little") {
            '<'
        } else {
            '>'
        };
        let mut chars = typestr.chars();
        let order = chars.next()?;
        if order != native && order != '|' && order != '=' {
            return None;
        }
        Some(match chars.as_str() {
            "f8" => Self::F64,
            "f4" => Self::F32,
            "i8" => Self::I64,
            "i4" => Self::I32,
            "i2" => Self::I16,
            "i1" => Self::I8,
            "u8" => Self::U64,
            "u4" => Self::U32,
            "u2" => Self::U16,
            "u1" => Self::U8,
            "b1" => Self::Bool,
            _ => return None,
        })
    }

    pub fn size(self) -> usize {
        match self {
            Self::F64 | Self::I64 | Self::U64 => 8,
            Self::F32 | Self::I32 | Self::U32 => 4,
            Self::I16 | Self::U16 => 2,
            Self::I8 | Self::U8 | Self::Bool => 1,
        }
    }

    pub fn is_integer(self) -> bool {
        !matches!(self, Self::F64 | Self::F32 | Self::Bool)
    }
}

/// A 1-D array borrowed from Python. It holds no reference: the caller keeps the array alive
/// (it is an argument of the running call) for as long as the view is used.
#[derive(Debug, Clone, Copy)]
pub struct ArrayView {
    ptr: *const u8,
    len: usize,
    stride: isize,
    pub dtype: Dtype,
}

// SAFETY: the view is only read, and only while the Python call that owns the array runs;
// it crosses threads solely to be read while the GIL is released during that call.
unsafe impl Send for ArrayView {}
unsafe impl Sync for ArrayView {}

impl ArrayView {
    /// Reads `obj.__array_interface__`; `Ok(None)` when `obj` is not a 1-D array of a dtype
    /// that can be read in place.
    pub fn from_py(obj: &Bound<'_, PyAny>) -> PyResult<Option<Self>> {
        let Ok(iface) = obj.getattr(pyo3::intern!(obj.py(), "__array_interface__")) else {
            return Ok(None);
        };
        let iface = iface
            .cast_into::<PyDict>()
            .map_err(|_| PyTypeError::new_err("__array_interface__ is not a dict"))?;
        let typestr: String = item(&iface, "typestr")?.extract()?;
        let Some(dtype) = Dtype::parse(&typestr) else {
            return Ok(None);
        };
        let shape: Vec<usize> = item(&iface, "shape")?.extract()?;
        let [len] = shape[..] else {
            return Err(PyValueError::new_err(format!(
                "expected a 1-dimensional array, got shape {shape:?}"
            )));
        };
        let data = item(&iface, "data")?;
        let data = data
            .cast::<PyTuple>()
            .map_err(|_| PyTypeError::new_err("array data is not a (pointer, readonly) tuple"))?;
        let addr: usize = data.get_item(0)?.extract()?;
        let stride = match iface.get_item("strides")? {
            Some(s) if !s.is_none() => {
                let strides: Vec<isize> = s.extract()?;
                strides.first().copied().unwrap_or(dtype.size() as isize)
            }
            _ => dtype.size() as isize,
        };
        if len > 0 && addr == 0 {
            return Err(PyValueError::new_err("array has a null data pointer"));
        }
        Ok(Some(Self {
            ptr: addr as *const u8,
            len,
            stride,
            dtype,
        }))
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Element `i` as f64 (integers and booleans converted). `i` must be `< len`.
    pub fn f64_at(&self, i: usize) -> f64 {
        debug_assert!(i < self.len);
        // SAFETY: i < len, so the element lies inside the array numpy described; unaligned
        // reads because strided views (structured arrays) need not be aligned.
        unsafe {
            let p = self.ptr.offset(self.stride * i as isize);
            match self.dtype {
                Dtype::F64 => p.cast::<f64>().read_unaligned(),
                Dtype::F32 => f64::from(p.cast::<f32>().read_unaligned()),
                Dtype::I64 => p.cast::<i64>().read_unaligned() as f64,
                Dtype::I32 => f64::from(p.cast::<i32>().read_unaligned()),
                Dtype::I16 => f64::from(p.cast::<i16>().read_unaligned()),
                Dtype::I8 => f64::from(p.cast::<i8>().read_unaligned()),
                Dtype::U64 => p.cast::<u64>().read_unaligned() as f64,
                Dtype::U32 => f64::from(p.cast::<u32>().read_unaligned()),
                Dtype::U16 => f64::from(p.cast::<u16>().read_unaligned()),
                Dtype::U8 => f64::from(p.read()),
                Dtype::Bool => f64::from(u8::from(p.read() != 0)),
            }
        }
    }

    /// Element `i` as a signed integer code (for dictionary-encoded columns). `i < len`.
    pub fn i64_at(&self, i: usize) -> i64 {
        match self.dtype {
            Dtype::U64 => {
                // SAFETY: as in `f64_at`.
                let v = unsafe {
                    self.ptr
                        .offset(self.stride * i as isize)
                        .cast::<u64>()
                        .read_unaligned()
                };
                i64::try_from(v).unwrap_or(i64::MAX)
            }
            Dtype::F64 | Dtype::F32 => {
                let v = self.f64_at(i);
                if v.is_finite() { v as i64 } else { -1 }
            }
            _ => self.f64_at(i) as i64,
        }
    }

    /// All values as f64, borrowing when possible and converting (one copy) otherwise.
    pub fn values_f64(&self) -> std::borrow::Cow<'_, [f64]> {
        match self.as_slice::<f64>() {
            Some(s) => std::borrow::Cow::Borrowed(s),
            None => std::borrow::Cow::Owned((0..self.len).map(|i| self.f64_at(i)).collect()),
        }
    }
}

fn item<'py>(d: &Bound<'py, PyDict>, key: &str) -> PyResult<Bound<'py, PyAny>> {
    d.get_item(key)?
        .ok_or_else(|| PyValueError::new_err(format!("__array_interface__ has no {key:?}")))
}

/// Element types a contiguous, aligned view can be borrowed as.
pub trait Element: Copy {
    const DTYPE: Dtype;
}
impl Element for f64 {
    const DTYPE: Dtype = Dtype::F64;
}
impl Element for f32 {
    const DTYPE: Dtype = Dtype::F32;
}
impl Element for i64 {
    const DTYPE: Dtype = Dtype::I64;
}

impl ArrayView {
    /// The values as a `&[T]` when they are contiguous, aligned `T`s (no copy).
    pub fn as_slice<T: Element>(&self) -> Option<&[T]> {
        let size = std::mem::size_of::<T>();
        let contiguous = self.dtype == T::DTYPE && self.stride == size as isize;
        if !contiguous || self.ptr.align_offset(std::mem::align_of::<T>()) != 0 {
            return None;
        }
        // SAFETY: numpy guarantees `len` elements of `stride` bytes from `ptr` while the array
        // lives; the checks above make them contiguous, aligned values of type T.
        Some(unsafe { std::slice::from_raw_parts(self.ptr.cast::<T>(), self.len) })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn typestrs() {
        assert_eq!(Dtype::parse("<f8"), Some(Dtype::F64));
        assert_eq!(Dtype::parse("|b1"), Some(Dtype::Bool));
        assert_eq!(Dtype::parse("|u1"), Some(Dtype::U8));
        assert_eq!(
            Dtype::parse(">f8"),
            None,
            "foreign byte order is converted in Python"
        );
        assert_eq!(Dtype::parse("<U3"), None);
        assert_eq!(Dtype::parse(""), None);
    }

    #[test]
    fn strided_and_unaligned_reads() {
        // Three f64 values interleaved with i32s, as in a packed structured array.
        let mut bytes = [0u8; 3 * 12 + 1];
        for (i, x) in [1.5f64, -2.0, 3.25].iter().enumerate() {
            let at = 1 + i * 12;
            bytes[at..at + 8].copy_from_slice(&x.to_ne_bytes());
        }
        let view = ArrayView {
            ptr: bytes[1..].as_ptr(),
            len: 3,
            stride: 12,
            dtype: Dtype::F64,
        };
        assert!(view.as_slice::<f64>().is_none());
        assert_eq!(&*view.values_f64(), &[1.5, -2.0, 3.25]);
    }

    #[test]
    fn contiguous_f64_is_borrowed() {
        let data = [1.0f64, 2.0, 3.0];
        let view = ArrayView {
            ptr: data.as_ptr().cast(),
            len: 3,
            stride: 8,
            dtype: Dtype::F64,
        };
        let s = view.as_slice::<f64>().unwrap();
        assert_eq!(s.as_ptr(), data.as_ptr());
        assert!(matches!(view.values_f64(), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn from_numpy_like_interface() {
        Python::initialize();
        Python::attach(|py| {
            let code = c"type('A', (), {'__array_interface__': {'typestr': '<i8', 'shape': (0,), 'data': (0, False), 'strides': None}})()";
            let obj = py.eval(code, None, None).unwrap();
            let view = ArrayView::from_py(&obj).unwrap().unwrap();
            assert_eq!((view.len(), view.dtype), (0, Dtype::I64));
            let bad = py
                .eval(c"type('B', (), {'__array_interface__': {'typestr': '<f8', 'shape': (2, 2), 'data': (8, False)}})()", None, None)
                .unwrap();
            assert!(ArrayView::from_py(&bad).is_err());
            let null = py
                .eval(c"type('C', (), {'__array_interface__': {'typestr': '<f8', 'shape': (2,), 'data': (0, False)}})()", None, None)
                .unwrap();
            assert!(ArrayView::from_py(&null).is_err());
            let plain = py.eval(c"[1, 2]", None, None).unwrap();
            assert!(ArrayView::from_py(&plain).unwrap().is_none());
        });
    }
}
