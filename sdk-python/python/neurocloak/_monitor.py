"""The user-facing :class:`Monitor`: the native recorder plus the Python-only
conveniences (tabular inputs, the predict-function wrapper, robustness probes,
context manager) and the process hooks (fork, exit)."""

from __future__ import annotations

import atexit
import functools
import os
import time
import weakref
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from neurocloak import _columns, _native
from neurocloak.robustness import RobustnessReport, probe

P = ParamSpec("P")
R = TypeVar("R")

# Monitors alive in this process, for the fork and exit hooks. Weak, so that a
# monitor the user drops is not kept alive by the SDK itself.
_LIVE: weakref.WeakSet[Monitor] = weakref.WeakSet()

# Bounded so that a dead agent cannot hold up interpreter exit.
EXIT_FLUSH_TIMEOUT = 2.0


class Monitor(_native.Monitor):
    """Watches one model version: every ``log`` feeds per-window sketches that a
    background thread ships to the NeuroCloak agent.

    Parameters
    ----------
    project, model, version, environment:
        The model's identity; every window shipped carries it.
    task:
        ``"binary"``, ``"multiclass"`` or ``"regression"``; ``"binary"`` when
        omitted.
    features:
        Mapping of feature name to ``"numeric"``, ``"categorical"`` or ``"boolean"``;
        ``None`` infers the schema from the first rows.
    classes:
        Class names in index order (classification); index 1 is the positive class
        of a binary task.
    sensitive:
        Names of sensitive features; outcomes are also counted per group for fairness.
    window_seconds:
        Tumbling window length, aligned to wall-clock multiples.
    reservoir_size:
        Raw rows sampled per window.
    agent:
        ``unix:///path.sock`` or ``http://host:port``; defaults to ``$NEUROCLOAK_AGENT``.
    strict:
        Raise :class:`neurocloak.errors.DataError` for bad data instead of only
        counting it.
    max_prediction_records:
        Prediction records (id, time, prediction, scores, groups) kept per window
        in this process for joining delayed labels; ``None`` keeps the default
        of 20 000. Rows with an id beyond the cap are counted in
        ``predictions_dropped`` and their labels cannot be joined. 0 to 100 000.
    """

    def __init__(self, **kwargs: Any) -> None:
        # The native __new__ has consumed the arguments; only the process hooks remain.
        _LIVE.add(self)

    def __enter__(self) -> Monitor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    def log_batch(
        self,
        data: object,
        predictions: object,
        *,
        labels: object | None = None,
        ids: object | None = None,
        timestamps: object | None = None,
        latencies: object | None = None,
        scores: object | None = None,
    ) -> int:
        """Record many rows at once from a pandas DataFrame, a pyarrow Table, a
        mapping of columns or a 2-D numpy array (columns in schema order).

        Numeric columns are read in place, without a copy, and the GIL is released
        while the core processes them. Returns the number of rows recorded.
        """
        names, columns, rows = _columns.table(data, self.feature_names or None)
        flat_scores, per_row = _columns.scores_matrix(scores, rows)
        return self._log_columns(
            names,
            columns,
            rows,
            _columns.column(predictions),
            _columns.optional_column(labels, rows, "labels"),
            _columns.optional_column(ids, rows, "ids"),
            _columns.optional_column(timestamps, rows, "timestamps"),
            _columns.optional_column(latencies, rows, "latencies"),
            flat_scores,
            per_row,
        )

    def set_reference(
        self,
        data: object,
        predictions: object | None = None,
        labels: object | None = None,
    ) -> None:
        """Profile training data as the reference that drift is measured against.

        The reference's quantile edges become fixed bins in every later window, so
        PSI and chi-square are exact. Accepts the same inputs as :meth:`log_batch`.
        """
        names, columns, rows = _columns.table(data, self.feature_names or None)
        self._set_reference_columns(
            names,
            columns,
            rows,
            _columns.optional_column(predictions, rows, "predictions"),
            _columns.optional_column(labels, rows, "labels"),
        )

    def wrap(self, predict: Callable[P, R]) -> Callable[P, R]:
        """Monitor a predict function: its first argument is logged as the input
        (a dict logs one row; a table logs a batch), its result as the
        prediction, with the call's latency. An exception is counted as a
        prediction error and re-raised unchanged. Usable as a decorator.
        """

        @functools.wraps(predict)
        def monitored(*args: P.args, **kwargs: P.kwargs) -> R:
            start = time.perf_counter()
            try:
                result = predict(*args, **kwargs)
            except BaseException:
                self.log_error(latency=time.perf_counter() - start)
                raise
            latency = time.perf_counter() - start
            inputs = args[0] if args else next(iter(kwargs.values()), None)
            self._log_call(inputs, result, latency)
            return result

        return monitored

    def _log_call(self, inputs: object, result: object, latency: float) -> None:
        if isinstance(inputs, Mapping):
            self.log(inputs, result, latency=latency)
            return
        try:
            rows = len(inputs)  # type: ignore[arg-type]
        except TypeError:
            raise TypeError(
                f"monitor.wrap: cannot record an input of type {type(inputs).__name__}; "
                "pass a dict (one row), a list of dicts or a table"
            ) from None
        per_row = latency / rows if rows else latency
        if isinstance(inputs, (list, tuple)) and all(isinstance(r, Mapping) for r in inputs):
            outputs = list(result)  # type: ignore[call-overload]
            if len(outputs) != rows:
                raise ValueError(f"monitor.wrap: {rows} inputs but {len(outputs)} predictions")
            for features, prediction in zip(inputs, outputs):
                self.log(features, prediction, latency=per_row)
            return
        self.log_batch(inputs, result, latencies=[per_row] * rows)

    def probe_robustness(
        self,
        predict: Callable[[Any], Any],
        X: object,
        *,
        noise: float = 0.05,
        dropout: float = 0.0,
        samples: int = 200,
        repeats: int = 5,
        seed: int = 0,
    ) -> RobustnessReport:
        """Perturb up to ``samples`` rows of ``X`` and call the real ``predict`` on
        them (see :func:`neurocloak.robustness.probe`), record the result into the
        window open now (:meth:`record_robustness`) and return it.

        The collector scores the window's rows-weighted stability in its robustness
        evaluation and trust score. A result that cannot be recorded (a stability
        that is not a number because ``predict`` returned NaN) raises
        :class:`neurocloak.errors.ProtocolError`; nothing is recorded then.
        """
        report = probe(predict, X, noise=noise, dropout=dropout, samples=samples, repeats=repeats, seed=seed)
        self.record_robustness(report)
        return report

    def record_robustness(self, report: RobustnessReport) -> None:
        """Record a robustness probe's result into the window open now, so that it
        reaches the collector with that window. Numbers must be finite and in range
        (stability, dropout and sensitivities in [0, 1], noise >= 0, rows and
        repeats >= 1, at most 2000 features); otherwise
        :class:`neurocloak.errors.ProtocolError` names the field. A window keeps its
        16 most recent probes.
        """
        self._record_robustness(
            stability=report.stability,
            rows=report.rows,
            repeats=report.repeats,
            noise=report.noise,
            dropout=report.dropout,
            discrete=report.discrete,
            feature_sensitivity=report.feature_sensitivity,
        )


def _before_fork() -> None:
    # Close the gate before taking any lock: from here until the fork, threads about to take a
    # core lock wait without the GIL instead of blocking the forking thread (see fork.rs).
    _native._fork_gate_close()
    for monitor in list(_LIVE):
        monitor._before_fork()


def _after_fork(method: str) -> Callable[[], None]:
    def hook() -> None:
        try:
            for monitor in list(_LIVE):
                getattr(monitor, method)()
        finally:
            _native._fork_gate_open()

    return hook


def _flush_at_exit() -> None:
    for monitor in list(_LIVE):
        monitor.shutdown(EXIT_FLUSH_TIMEOUT)


os.register_at_fork(
    before=_before_fork,
    after_in_parent=_after_fork("_after_fork_parent"),
    after_in_child=_after_fork("_after_fork_child"),
)
atexit.register(_flush_at_exit)


__all__ = ["EXIT_FLUSH_TIMEOUT", "Monitor"]
