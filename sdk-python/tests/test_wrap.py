"""monitor.wrap and the scikit-learn wrapper record inputs, outputs, latency and errors."""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import neurocloak
from helpers import snapshot
from neurocloak.sklearn import MonitoredEstimator

Make = Callable[..., neurocloak.Monitor]


def test_wrap_logs_row_prediction_and_latency(make_monitor: Make) -> None:
    mon = make_monitor()

    @mon.wrap
    def predict(features: dict[str, Any]) -> str:
        time.sleep(0.002)
        return "yes" if features["age"] > 40 else "no"

    assert predict({"age": 50.0, "income": 1, "city": "a", "member": True}) == "yes"
    assert predict.__name__ == "predict"
    snap = snapshot(mon)
    assert snap["rows"] == 1
    assert snap["latency_count"] == 1
    assert snap["latency_max_s"] >= 0.002


def test_wrap_counts_exceptions_and_reraises(make_monitor: Make) -> None:
    mon = make_monitor()

    class ModelDown(RuntimeError):
        pass

    @mon.wrap
    def predict(features: dict[str, Any]) -> str:
        raise ModelDown("boom")

    for _ in range(3):
        with pytest.raises(ModelDown):
            predict({"age": 1.0})
    snap = snapshot(mon)
    assert snap["errors"] == 3
    assert snap["rows"] == 0


def test_wrap_of_batch_predict(make_monitor: Make) -> None:
    mon = make_monitor(features={"x": "numeric"}, task="regression", classes=None)
    wrapped = mon.wrap(lambda X: X["x"].to_numpy() * 2.0)
    out = wrapped(pd.DataFrame({"x": np.arange(10.0)}))
    assert list(out[:3]) == [0.0, 2.0, 4.0]
    snap = snapshot(mon)
    assert snap["rows"] == 10
    assert snap["prediction"]["mean"] == pytest.approx(9.0)


def test_sklearn_estimator_wrapper(make_monitor: Make) -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=400), "b": rng.normal(size=400)})
    y = np.where(X["a"] + X["b"] > 0, "yes", "no")
    mon = make_monitor(features={"a": "numeric", "b": "numeric"})
    model = MonitoredEstimator(LogisticRegression(), mon).fit(X, y)
    preds = model.predict(X.head(50))
    assert list(model.classes_) == ["no", "yes"]
    assert (preds == model.estimator.predict(X.head(50))).all()
    snap = snapshot(mon)
    assert snap["rows"] == 50
    assert snap["features"]["a"]["bins"] > 0  # fit() set the reference


def test_wrap_of_a_list_of_rows(make_monitor: Make) -> None:
    mon = make_monitor()
    wrapped = mon.wrap(lambda rows: ["yes" if r["age"] > 40 else "no" for r in rows])
    rows = [{"age": 50.0, "income": 1, "city": "a", "member": True}, {"age": 20.0}]
    assert wrapped(rows) == ["yes", "no"]
    snap = snapshot(mon)
    assert snap["rows"] == 2
    assert snap["latency_count"] == 2
    with pytest.raises(TypeError, match="cannot record"):
        mon.wrap(lambda x: x)(42)
