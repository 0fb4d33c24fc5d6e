"""End to end: a robustness probe run in the model process reaches the collector with its window
(SDK → real agent → real collector → REST) and is scored there.

Two probes run while the window is open: an unstable model (a classifier on a feature that the
noise swamps) and a constant one. The collector's robustness evaluation must carry their
rows-weighted stability — exactly the mean the test computes from the reports the SDK returned
— and the trust score's robustness component and reasons must reflect it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import neurocloak
from helpers import Stack, fast_stack, wait_for, wait_for_window_start

PROJECT = "probe"
MODEL = "shaky"
VERSION = "v1"
ENVIRONMENT = "production"
WINDOW_S = 2.0


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    with fast_stack(monkeypatch, PROJECT) as s:
        yield s


def frame(rng: np.random.Generator, n: int) -> pd.DataFrame:
    return pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.normal(size=n)})


def test_probe_stability_reaches_the_stored_evaluation_and_the_trust_score(stack: Stack) -> None:
    rng = np.random.default_rng(11)
    ref = frame(rng, 2000)
    cur = frame(rng, 600)
    model = LogisticRegression().fit(ref, (ref["a"] > 0).astype(int))
    with neurocloak.Monitor(project=PROJECT, model=MODEL, version=VERSION, environment=ENVIRONMENT,
                            task="binary", classes=["0", "1"],
                            features={"a": "numeric", "b": "numeric", "c": "numeric"},
                            window_seconds=WINDOW_S, agent=stack.agent_uds, seed=3) as mon:
        mon.set_reference(ref, predictions=model.predict(ref).astype(str))
        wait_for_window_start(WINDOW_S)
        started = time.time()
        mon.log_batch(cur, model.predict(cur).astype(str))
        shaky = mon.probe_robustness(model.predict, cur, noise=1.5, samples=300, repeats=3, seed=1)
        steady = mon.probe_robustness(lambda X: np.ones(len(X), dtype=int), cur, samples=100, repeats=2)
        assert time.time() - started < WINDOW_S / 2, "probing too slow to fit one window"
        assert mon.shutdown(10.0), "the agent did not take every window in time"
        stats = mon.stats()
    assert stats["dropped"] == 0 and stats["sent"] == stats["delivered"], stats
    assert 0.3 < shaky.stability < 0.95, shaky
    assert steady.stability == 1.0
    expected = (300 * shaky.stability + 100 * steady.stability) / 400
    window_start_ms = int(started // WINDOW_S * WINDOW_S * 1000)

    evaluation = wait_for(
        "the window's evaluation",
        lambda: stack.latest_evaluations(MODEL, version=VERSION).get(window_start_ms),
        timeout=30.0,
    )["evaluation"]
    assert evaluation["rows"] == len(cur)
    robustness = evaluation["robustness"]
    assert robustness["status"] == "evaluated", robustness
    stored = robustness["result"]["perturbation_stability"]
    assert stored is not None and math.isclose(stored, expected, rel_tol=0.0, abs_tol=1e-12), (stored, expected)

    trust = wait_for(
        "the window's trust score",
        lambda: stack.api(f"/models/{MODEL}/trust", version=VERSION, environment=ENVIRONMENT,
                          from_ms=window_start_ms, to_ms=window_start_ms + 1)["items"],
        timeout=10.0,
    )[0]["trust"]
    component = next(c for c in trust["components"] if c["component"] == "robustness")
    assert component["score"] is not None and component["score"] < 100.0, component
    reasons = [r["text"] for r in trust["reasons"] if r["component"] == "robustness"]
    assert f"perturbation stability {expected:.2f}" in reasons, trust["reasons"]
