"""Prediction stability under perturbation, measured by calling the real model.

Rows are sampled from the input, numeric features get Gaussian noise scaled to
each feature's spread and, with probability ``dropout``, a feature is replaced
by a neutral value (numeric: the median; other: the most frequent value) — the
way a missing value is usually imputed. The perturbed rows go through the
user's own predict function, and the predictions are compared with those of the
unperturbed rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from neurocloak import _columns


@dataclass(frozen=True)
class RobustnessReport:
    """What :func:`probe` measured.

    ``stability`` is in [0, 1], higher is more robust: for discrete predictions
    the share of perturbed predictions equal to the unperturbed one; for numeric
    predictions ``1 / (1 + mean |change| / spread)`` where ``spread`` is the
    standard deviation of the unperturbed predictions (1 when that is 0).
    ``feature_sensitivity`` gives the same instability (1 - stability) when only
    that feature is perturbed.
    """

    rows: int
    repeats: int
    noise: float
    dropout: float
    discrete: bool
    stability: float
    flip_rate: float | None
    mean_abs_change: float | None
    feature_sensitivity: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "repeats": self.repeats,
            "noise": self.noise,
            "dropout": self.dropout,
            "discrete": self.discrete,
            "stability": self.stability,
            "flip_rate": self.flip_rate,
            "mean_abs_change": self.mean_abs_change,
            "feature_sensitivity": dict(self.feature_sensitivity),
        }


class _Table:
    """Sampled rows kept in the caller's own type so the model receives what it expects."""

    def __init__(self, data: object, rows: np.ndarray[Any, Any]) -> None:
        self.kind: str
        if _columns._is_pandas_frame(data):
            self.kind = "pandas"
            frame: Any = data
            self.frame = frame.iloc[rows].reset_index(drop=True)
            self.names = [str(c) for c in self.frame.columns]
        elif isinstance(data, np.ndarray) and data.ndim == 2:
            self.kind = "numpy"
            self.matrix = np.array(data[rows])
            self.names = [f"f{j}" for j in range(data.shape[1])]
        else:
            raise TypeError(f"probe_robustness takes a pandas DataFrame or a 2-D numpy array, got {type(data).__name__}")

    def column(self, j: int) -> np.ndarray[Any, Any]:
        if self.kind == "pandas":
            return np.asarray(self.frame.iloc[:, j].to_numpy())
        return np.asarray(self.matrix[:, j])

    def numeric(self, j: int) -> bool:
        col = self.column(j)
        return col.dtype.kind in "iuf"

    def with_columns(self, replaced: dict[int, np.ndarray[Any, Any]]) -> object:
        if self.kind == "pandas":
            out = self.frame.copy()
            for j, values in replaced.items():
                name = out.columns[j]
                dtype = out[name].dtype
                out[name] = values.astype(dtype) if str(dtype) != "category" else values
            return out
        matrix = self.matrix.astype(np.float64) if self.matrix.dtype.kind in "iu" else self.matrix.copy()
        for j, values in replaced.items():
            matrix[:, j] = values
        return matrix


def probe(
    predict: Callable[[Any], Any],
    X: object,
    *,
    noise: float = 0.05,
    dropout: float = 0.0,
    samples: int = 200,
    repeats: int = 5,
    seed: int = 0,
) -> RobustnessReport:
    """Measure how stable ``predict`` is when ``X``'s rows are perturbed.

    ``noise`` is the Gaussian noise's standard deviation as a fraction of each
    numeric feature's standard deviation; ``dropout`` the probability that a cell
    is replaced by its column's neutral value. ``predict`` is called
    ``1 + repeats + features`` times on at most ``samples`` rows.
    """
    for name, value in (("noise", noise), ("dropout", dropout)):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if dropout > 1:
        raise ValueError(f"dropout must be at most 1, got {dropout!r}")
    if samples < 1 or repeats < 1:
        raise ValueError("samples and repeats must be at least 1")
    n = _rows(X)
    if n == 0:
        raise ValueError("probe_robustness needs at least one row")
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(n, size=min(samples, n), replace=False))
    table = _Table(X, picked)
    base = _predictions(predict(table.with_columns({})), len(picked))
    discrete = base.dtype.kind not in "fc"
    spread = float(np.std(base)) if not discrete else 1.0
    spread = spread if spread > 0 and math.isfinite(spread) else 1.0
    features = range(len(table.names))

    def instability(columns: range | list[int]) -> tuple[float, float]:
        replaced = {j: _perturb(table, j, noise, dropout, rng) for j in columns}
        out = _predictions(predict(table.with_columns(replaced)), len(picked))
        if discrete:
            flips = float(np.mean(out != base))
            return flips, flips
        change = float(np.nanmean(np.abs(out.astype(np.float64) - base.astype(np.float64))))
        return change, 1.0 - 1.0 / (1.0 + change / spread)

    results = [instability(features) for _ in range(repeats)]
    raw = float(np.mean([r[0] for r in results]))
    unstable = float(np.mean([r[1] for r in results]))
    sensitivity = {table.names[j]: round(instability([j])[1], 12) for j in features}
    return RobustnessReport(
        rows=len(picked),
        repeats=repeats,
        noise=noise,
        dropout=dropout,
        discrete=discrete,
        stability=1.0 - unstable,
        flip_rate=raw if discrete else None,
        mean_abs_change=None if discrete else raw,
        feature_sensitivity=sensitivity,
    )


def _rows(X: object) -> int:
    try:
        return len(X)  # type: ignore[arg-type]
    except TypeError as e:
        raise TypeError(f"probe_robustness takes a table, got {type(X).__name__}") from e


def _predictions(out: object, rows: int) -> np.ndarray[Any, Any]:
    arr = np.asarray(out)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1 or arr.shape[0] != rows:
        raise ValueError(f"predict returned shape {arr.shape} for {rows} rows; expected one prediction per row")
    return arr


def _perturb(table: _Table, j: int, noise: float, dropout: float, rng: np.random.Generator) -> np.ndarray[Any, Any]:
    col = table.column(j)
    numeric = col.dtype.kind in "iuf"
    out = col.astype(np.float64) if numeric else col.astype(object)
    if numeric and noise > 0:
        finite = out[np.isfinite(out)]
        scale = float(np.std(finite)) if finite.size else 0.0
        out = out + rng.normal(0.0, noise * scale, size=out.shape)
        if col.dtype.kind in "iu":
            out = np.rint(out)
    if dropout > 0:
        mask = rng.random(out.shape[0]) < dropout
        out[mask] = _neutral(col, numeric)
    return out


def _neutral(col: np.ndarray[Any, Any], numeric: bool) -> object:
    if numeric:
        finite = col[np.isfinite(col.astype(np.float64))]
        return float(np.median(finite)) if finite.size else 0.0
    values, counts = np.unique(col.astype(str), return_counts=True)
    most = str(values[int(np.argmax(counts))])
    for v in col:
        if str(v) == most:
            return v
    return most
