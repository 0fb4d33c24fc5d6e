"""probe_robustness calls the real model on perturbed rows."""

from __future__ import annotations

import re
from typing import Any, Callable

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

import neurocloak

Make = Callable[..., neurocloak.Monitor]


def data(n: int = 500) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "noise": rng.normal(size=n)})


def test_constant_model_is_perfectly_stable(make_monitor: Make) -> None:
    report = make_monitor().probe_robustness(lambda X: np.zeros(len(X), dtype=int), data(), noise=0.5, dropout=0.5)
    assert report.stability == 1.0
    assert report.flip_rate == 0.0


def test_classifier_sensitivity_follows_its_weights(make_monitor: Make) -> None:
    X = data()
    y = (X["a"] > 0).astype(int)
    model = LogisticRegression().fit(X, y)
    calls: list[int] = []

    def predict(batch: Any) -> Any:
        calls.append(len(batch))
        return model.predict(batch)

    report = make_monitor().probe_robustness(predict, X, noise=0.3, samples=200, repeats=3)
    assert 0.5 < report.stability < 1.0
    assert report.feature_sensitivity["a"] > report.feature_sensitivity["noise"]
    assert calls == [200] * (1 + 3 + 3)
    assert report.as_dict()["rows"] == 200


def test_more_noise_is_less_stable(make_monitor: Make) -> None:
    X = data()
    model = LinearRegression().fit(X, 3 * X["a"] - X["b"])
    mon = make_monitor()
    low = mon.probe_robustness(model.predict, X, noise=0.01)
    high = mon.probe_robustness(model.predict, X, noise=1.0)
    assert not low.discrete
    assert high.mean_abs_change is not None and low.mean_abs_change is not None
    assert high.mean_abs_change > 10 * low.mean_abs_change
    assert low.stability > high.stability


def test_numpy_input_and_dropout(make_monitor: Make) -> None:
    X = data().to_numpy()
    model = LogisticRegression().fit(X, (X[:, 0] > 0).astype(int))
    report = make_monitor().probe_robustness(model.predict, X, noise=0.0, dropout=1.0)
    # Every cell replaced by its median: predictions collapse to one class.
    assert report.flip_rate is not None and report.flip_rate > 0.2


@pytest.mark.parametrize("kwargs", [{"noise": -1.0}, {"noise": float("nan")}, {"dropout": 1.5}, {"samples": 0}])
def test_invalid_arguments(make_monitor: Make, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        make_monitor().probe_robustness(lambda X: np.zeros(len(X)), data(), **kwargs)


def test_predict_returning_wrong_shape(make_monitor: Make) -> None:
    with pytest.raises(ValueError, match="one prediction per row"):
        make_monitor().probe_robustness(lambda X: np.zeros(3), data())


def test_probe_is_recorded_into_the_open_window(make_monitor: Make) -> None:
    X = data()
    model = LogisticRegression().fit(X, (X["a"] > 0).astype(int))
    mon = make_monitor()
    shaky = mon.probe_robustness(model.predict, X, noise=1.0, samples=300, repeats=2)
    steady = mon.probe_robustness(lambda b: np.zeros(len(b), dtype=int), X, samples=100, repeats=2)
    [window] = mon.windows()
    probes = sorted(window["robustness"], key=lambda p: p["rows"])
    assert [p["rows"] for p in probes] == [100, 300]
    assert probes[1]["stability"] == shaky.stability
    assert probes[1]["feature_sensitivity"] == shaky.feature_sensitivity
    assert probes[1]["noise"] == 1.0 and probes[1]["repeats"] == 2 and probes[1]["discrete"]
    assert probes[0]["stability"] == steady.stability == 1.0
    expected = (300 * shaky.stability + 100 * 1.0) / 400
    assert window["perturbation_stability"] == pytest.approx(expected, abs=1e-12)
    assert window["robustness_dropped"] == 0
    assert window["rows"] == 0  # a probe alone still ships its window


def report(**changes: Any) -> neurocloak.RobustnessReport:
    base = dict(rows=10, repeats=2, noise=0.1, dropout=0.0, discrete=True, stability=0.9, flip_rate=0.1,
                mean_abs_change=None, feature_sensitivity={"a": 0.1})
    base.update(changes)
    return neurocloak.RobustnessReport(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"stability": float("nan")}, "stability"),
        ({"stability": 1.5}, "stability"),
        ({"noise": float("inf")}, "noise"),
        ({"dropout": -0.1}, "dropout"),
        ({"rows": 0}, "rows"),
        ({"repeats": 0}, "repeats"),
        ({"feature_sensitivity": {"a": float("-inf")}}, 'feature_sensitivity["a"]'),
        ({"feature_sensitivity": {"": 0.5}}, 'feature_sensitivity[""]'),
        ({"feature_sensitivity": {f"f{i}": 0.0 for i in range(2001)}}, "feature_sensitivity"),
    ],
)
def test_a_bad_report_is_refused_naming_its_field(make_monitor: Make, changes: dict[str, Any], field: str) -> None:
    mon = make_monitor()
    with pytest.raises(neurocloak.errors.ProtocolError, match=re.escape(field)):
        mon.record_robustness(report(**changes))
    mon.record_robustness(report())
    [window] = mon.windows()
    assert len(window["robustness"]) == 1, "the refused report left nothing behind"


@pytest.mark.parametrize("changes", [{"rows": -1}, {"repeats": 2**32}, {"stability": "high"}])
def test_wrong_types_are_type_errors(make_monitor: Make, changes: dict[str, Any]) -> None:
    with pytest.raises((TypeError, OverflowError)):
        make_monitor().record_robustness(report(**changes))


def test_a_predict_returning_nan_raises_instead_of_recording_nan(make_monitor: Make) -> None:
    mon = make_monitor()
    with pytest.warns(RuntimeWarning), pytest.raises(neurocloak.errors.ProtocolError, match="stability"):
        mon.probe_robustness(lambda b: np.full(len(b), np.nan), data())
    assert mon.windows() == []
