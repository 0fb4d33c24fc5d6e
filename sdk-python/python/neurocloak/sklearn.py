"""A scikit-learn estimator wrapper that monitors every prediction.

``MonitoredEstimator(estimator, monitor)`` behaves like the estimator (every
attribute not defined here is the estimator's) but ``fit`` also records the
training data as the monitor's reference, and ``predict`` / ``predict_proba``
log each batch with its latency and class scores. scikit-learn itself is not
imported: anything with ``fit`` / ``predict`` works.
"""

from __future__ import annotations

import time
from typing import Any

from neurocloak._monitor import Monitor


class MonitoredEstimator:
    """Wraps a fitted or unfitted estimator; see the module documentation."""

    def __init__(self, estimator: Any, monitor: Monitor, *, log_scores: bool = True) -> None:
        self.estimator = estimator
        self.monitor = monitor
        self.log_scores = log_scores and hasattr(estimator, "predict_proba")

    def fit(self, X: Any, y: Any = None, **fit_params: Any) -> MonitoredEstimator:
        """Fit the estimator, then record ``X`` (with its predictions and ``y``) as the reference."""
        self.estimator.fit(X, y, **fit_params)
        self.monitor.set_reference(X, predictions=self.estimator.predict(X), labels=y)
        return self

    def predict(self, X: Any) -> Any:
        start = time.perf_counter()
        try:
            predictions = self.estimator.predict(X)
            scores = self.estimator.predict_proba(X) if self.log_scores else None
        except Exception:
            self.monitor.log_error(latency=time.perf_counter() - start)
            raise
        self._log(X, predictions, scores, time.perf_counter() - start)
        return predictions

    def predict_proba(self, X: Any) -> Any:
        start = time.perf_counter()
        try:
            scores = self.estimator.predict_proba(X)
        except Exception:
            self.monitor.log_error(latency=time.perf_counter() - start)
            raise
        predictions = self.estimator.classes_[scores.argmax(axis=1)]
        self._log(X, predictions, scores, time.perf_counter() - start)
        return scores

    def _log(self, X: Any, predictions: Any, scores: Any, latency: float) -> None:
        rows = len(predictions)
        per_row = latency / rows if rows else latency
        self.monitor.log_batch(X, predictions, scores=scores, latencies=[per_row] * rows)

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes not found on the wrapper: classes_, score, get_params...
        if name in ("estimator", "monitor", "log_scores"):
            raise AttributeError(name)
        return getattr(self.estimator, name)
