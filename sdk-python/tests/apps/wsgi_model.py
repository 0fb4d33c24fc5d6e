"""A small model server for the gunicorn test: a real scikit-learn model behind a WSGI app,
monitored by a module-level Monitor created before gunicorn forks its workers (--preload)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

import neurocloak

rng = np.random.default_rng(0)
X = rng.normal(size=(500, 3))
y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
model = LogisticRegression().fit(X, y)
HOLD_SECONDS = float(os.environ.get("NC_HOLD_SECONDS", "0"))

monitor = neurocloak.Monitor(
    project=os.environ["NC_PROJECT"],
    model="gunicorn-model",
    version="1",
    task="binary",
    features={"a": "numeric", "b": "numeric", "c": "numeric"},
    window_seconds=1.0,
    agent=os.environ["NC_AGENT"],
)


@monitor.wrap
def predict(features: dict[str, float]) -> int:
    row = np.array([[features["a"], features["b"], features["c"]]])
    return int(model.predict(row)[0])


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    size = int(environ.get("CONTENT_LENGTH") or 0)
    features = json.loads(environ["wsgi.input"].read(size))
    prediction = predict(features)
    if HOLD_SECONDS:
        time.sleep(HOLD_SECONDS)
    body = json.dumps({"prediction": prediction, "pid": os.getpid()}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
