"""Turns the tabular inputs users hand to ``log_batch`` and ``set_reference``
(numpy arrays, pandas DataFrames, pyarrow Tables, mappings of columns) into the
column forms the native module reads.

The native module accepts, per column:

* a 1-D numpy array of a numeric or boolean dtype, read in place through its
  ``__array_interface__`` pointer (no copy, any stride);
* a ``(codes, categories)`` tuple for dictionary-encoded columns (pandas
  ``Categorical``, arrow dictionaries), codes < 0 meaning missing;
* any other sequence (object arrays, lists), converted value by value.

Only object/str columns and nullable extension dtypes cost a conversion here;
numeric columns stay where they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Union

import numpy as np

Column = Union["np.ndarray[Any, Any]", tuple["np.ndarray[Any, Any]", list[object]], Sequence[object]]

# dtype kinds read in place: bool, signed, unsigned, float.
_NATIVE_KINDS = frozenset("biuf")


def _is_pandas_frame(obj: object) -> bool:
    return type(obj).__module__.startswith("pandas") and hasattr(obj, "columns") and hasattr(obj, "dtypes")


def _is_pandas_series(obj: object) -> bool:
    # Not hasattr(obj, "cat"): that accessor raises on non-categorical Series.
    return type(obj).__module__.startswith("pandas") and type(obj).__name__ == "Series"


def _is_arrow_table(obj: object) -> bool:
    return type(obj).__module__.startswith("pyarrow") and hasattr(obj, "column_names")


def _is_arrow_array(obj: object) -> bool:
    return type(obj).__module__.startswith("pyarrow") and hasattr(obj, "type") and hasattr(obj, "null_count")


def column(values: object) -> Column:
    """One column in a form the native module reads, copying only when unavoidable."""
    if isinstance(values, np.ndarray):
        return _numpy_column(values)
    if _is_pandas_series(values):
        return _pandas_column(values)
    if _is_arrow_array(values):
        return _arrow_column(values)
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"expected a column (array, Series or sequence), got {type(values).__name__}")
    return values


def _numpy_column(arr: np.ndarray[Any, Any]) -> Column:
    if arr.ndim != 1:
        raise ValueError(f"a column must be 1-dimensional, got shape {arr.shape}")
    if arr.dtype.kind in _NATIVE_KINDS and arr.dtype.byteorder in "=|":
        return arr
    if arr.dtype.kind in _NATIVE_KINDS:
        return arr.astype(arr.dtype.newbyteorder("="))
    return arr.tolist()  # type: ignore[no-any-return]


def _pandas_column(series: Any) -> Column:
    dtype = series.dtype
    if str(dtype) == "category":
        codes = series.cat.codes.to_numpy()
        categories = [None if c is None else str(c) for c in series.cat.categories.tolist()]
        return (codes, categories)
    if isinstance(dtype, np.dtype) and dtype.kind in _NATIVE_KINDS:
        return _numpy_column(series.to_numpy(copy=False))
    kind = getattr(dtype, "kind", "O")
    if kind in "iuf":
        # Nullable extension dtypes (Int64, Float64): pd.NA becomes NaN only for floats,
        # so integers go through objects to keep "missing" distinct from "NaN".
        if kind == "f":
            return np.asarray(series.to_numpy(dtype=np.float64, na_value=np.nan))
        return series.astype(object).where(series.notna(), None).tolist()  # type: ignore[no-any-return]
    if kind == "b":
        return series.astype(object).where(series.notna(), None).tolist()  # type: ignore[no-any-return]
    return series.to_numpy(dtype=object).tolist()  # type: ignore[no-any-return]


def _arrow_column(array: Any) -> Column:
    import pyarrow as pa

    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    typ = array.type
    if pa.types.is_dictionary(typ):
        codes = array.indices.fill_null(-1).to_numpy(zero_copy_only=False)
        categories = [None if c is None else str(c) for c in array.dictionary.to_pylist()]
        return (codes, categories)
    numeric = pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_boolean(typ)
    if numeric and array.null_count == 0:
        # Zero copy for fixed-width types without nulls (booleans are bit-packed, so copied).
        return _numpy_column(array.to_numpy(zero_copy_only=False))
    return array.to_pylist()  # type: ignore[no-any-return]


def table(data: object, names: Sequence[str] | None = None) -> tuple[list[str], list[Column], int]:
    """Split a table into named columns; returns (names, columns, rows)."""
    if _is_pandas_frame(data):
        frame: Any = data
        cols = [str(c) for c in frame.columns]
        return cols, [_pandas_column(frame[c]) for c in frame.columns], len(frame)
    if _is_arrow_table(data):
        tbl: Any = data
        return list(tbl.column_names), [_arrow_column(c) for c in tbl.columns], tbl.num_rows
    if isinstance(data, Mapping):
        cols = [str(k) for k in data]
        columns = [column(v) for v in data.values()]
        return cols, columns, _common_length(cols, columns)
    if isinstance(data, np.ndarray):
        return _numpy_table(data, names)
    raise TypeError(
        "expected a pandas DataFrame, a pyarrow Table, a mapping of columns or a numpy array, "
        f"got {type(data).__name__}"
    )


def _numpy_table(arr: np.ndarray[Any, Any], names: Sequence[str] | None) -> tuple[list[str], list[Column], int]:
    if arr.dtype.names is not None:
        fields = list(arr.dtype.names)
        return fields, [_numpy_column(arr[f]) for f in fields], len(arr)
    if arr.ndim != 2:
        raise ValueError(f"a numpy table must be 2-dimensional, got shape {arr.shape}")
    n_cols = arr.shape[1]
    if names is None:
        cols = [f"f{j}" for j in range(n_cols)]
    elif len(names) != n_cols:
        raise ValueError(f"{n_cols} columns but the schema names {len(names)} features")
    else:
        cols = list(names)
    # Column views are strided, not copied; the native side reads them by stride.
    return cols, [_numpy_column(arr[:, j]) for j in range(n_cols)], arr.shape[0]


def _common_length(names: Sequence[str], columns: Sequence[Column]) -> int:
    lengths = {name: _length(c) for name, c in zip(names, columns)}
    distinct = set(lengths.values())
    if len(distinct) > 1:
        raise ValueError(f"columns have different lengths: {lengths}")
    return distinct.pop() if distinct else 0


def _length(col: Column) -> int:
    if isinstance(col, tuple):
        return len(col[0])
    return len(col)


def optional_column(values: object | None, rows: int, what: str) -> Column | None:
    if values is None:
        return None
    col = column(values)
    if _length(col) != rows:
        raise ValueError(f"{what} has {_length(col)} entries for {rows} rows")
    return col


def scores_matrix(scores: object | None, rows: int) -> tuple[np.ndarray[Any, Any] | None, int]:
    """Class scores flattened row-major as float64, with the number per row; a 1-D array is
    P(positive class) of a binary task."""
    if scores is None:
        return None, 0
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2 or arr.shape[0] != rows:
        raise ValueError(f"scores must have shape ({rows}, classes), got {arr.shape}")
    return np.ascontiguousarray(arr).reshape(-1), int(arr.shape[1])
