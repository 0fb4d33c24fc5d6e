"""probe_robustness calls the real model on perturbed rows."""

from __future__ import annotations

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
