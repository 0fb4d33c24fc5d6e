"""Concurrent logging from several Python threads loses nothing."""

from __future__ import annotations

import threading
from typing import Callable

import numpy as np

import neurocloak
from helpers import snapshot

Make = Callable[..., neurocloak.Monitor]


def test_four_threads_rows_and_batches(make_monitor: Make) -> None:
    mon = make_monitor(features={"x": "numeric", "c": "categorical"}, task="regression", classes=None)
    per_thread = 5_000
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for i in range(per_thread):
                mon.log({"x": float(i), "c": f"t{k}"}, float(k))
            mon.log_batch({"x": np.arange(1000.0), "c": [f"t{k}"] * 1000}, np.full(1000, float(k)))
        except BaseException as e:  # surfaced below; a thread's exception is otherwise lost
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    snap = snapshot(mon)
    assert snap["rows"] == 4 * (per_thread + 1000)
    x = snap["features"]["x"]
    assert x["count"] == 4 * (per_thread + 1000)
    expected = 4 * (sum(range(per_thread)) + sum(range(1000))) / x["count"]
    assert abs(x["mean"] - expected) < 1e-6
    assert sorted(v for v, _ in snap["features"]["c"]["top"]) == ["t0", "t1", "t2", "t3"]
