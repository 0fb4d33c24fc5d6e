"""NeuroCloak Python SDK vs whylogs, measured in one run on the same data.

1. per-row ``Monitor.log`` of a 25-feature row (20 numeric + 5 categorical),
   dicts built beforehand, vs whylogs' row API (``DatasetProfile.track(row=...)``);
2. ``Monitor.log_batch`` of a 1 M x 25 pandas DataFrame (categoricals as pandas
   ``Categorical``) vs ``whylogs.log(df)``.

Run through ``bench/python/run.sh`` (its own venv: whylogs 1.6.4 needs numpy < 2).
Targets (docs/python.md): log <= 1 us/row, log_batch >= 2 M rows/s.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from typing import Any

import numpy as np
import pandas as pd

import neurocloak

N_NUMERIC = 20
N_CATEGORICAL = 5
CATEGORIES = [f"c{i}" for i in range(12)]


def make_frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {f"num_{j}": rng.normal(j, 1 + j / 10, rows) for j in range(N_NUMERIC)}
    for j in range(N_CATEGORICAL):
        codes = rng.integers(0, len(CATEGORIES), rows)
        data[f"cat_{j}"] = pd.Categorical.from_codes(codes, CATEGORIES)
    return pd.DataFrame(data)


def make_rows(frame: pd.DataFrame, rows: int) -> list[dict[str, Any]]:
    head = frame.head(rows)
    return [
        {k: (float(v) if isinstance(v, (float, np.floating)) else str(v)) for k, v in rec.items()}
        for rec in head.to_dict("records")
    ]


def monitor(agent: str = "http://127.0.0.1:9") -> neurocloak.Monitor:
    schema = {f"num_{j}": "numeric" for j in range(N_NUMERIC)}
    schema.update({f"cat_{j}": "categorical" for j in range(N_CATEGORICAL)})
    # An hour-long window: nothing closes (and nothing ships) while the clock runs, so the
    # numbers are the recording path alone. Nothing listens on port 9.
    return neurocloak.Monitor(
        project="bench",
        model="bench",
        version="1",
        task="regression",
        features=schema,
        window_seconds=3600,
        agent=agent,
    )


def best_of(repeats: int, fn: Any) -> float:
    times = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_rows(rows: list[dict[str, Any]], loops: int) -> float:
    mon = monitor()
    preds = [float(i % 7) for i in range(len(rows))]
    log = mon.log

    def run() -> None:
        for row, p in zip(rows, preds):
            log(row, p)

    run()  # warm the key cache and schema
    per_row = best_of(loops, run) / len(rows)
    mon.shutdown(0.1)
    return per_row


def bench_whylogs_rows(rows: list[dict[str, Any]]) -> float:
    from whylogs.core import DatasetProfile

    profile = DatasetProfile()
    profile.track(row=rows[0])
    start = time.perf_counter()
    for row in rows:
        profile.track(row=row)
    return (time.perf_counter() - start) / len(rows)


def bench_batch(frame: pd.DataFrame, loops: int) -> float:
    mon = monitor()
    preds = frame["num_0"].to_numpy() * 2.0
    mon.log_batch(frame.head(1000), preds[:1000])
    seconds = best_of(loops, lambda: mon.log_batch(frame, preds))
    mon.shutdown(0.1)
    return len(frame) / seconds


def verify_batch(frame: pd.DataFrame) -> None:
    """The timed call really recorded every cell: same call on an in-memory monitor."""
    mon = monitor(agent="memory")
    mon.log_batch(frame, frame["num_0"].to_numpy())
    (window,) = mon.windows()
    assert window["rows"] == len(frame), window["rows"]
    for name, col in window["features"].items():
        assert col["count"] == len(frame), (name, col["count"])
        if col["kind"] == "categorical":
            assert sum(c for _, c in col["top"]) == len(frame), name
        else:
            assert col["mean"] is not None and abs(col["mean"] - frame[name].mean()) < 1e-9 * max(1.0, abs(col["mean"]))


def bench_whylogs_batch(frame: pd.DataFrame) -> float:
    import whylogs as why

    start = time.perf_counter()
    why.log(frame)
    return len(frame) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000, help="batch rows")
    parser.add_argument("--row-samples", type=int, default=100_000, help="rows for per-row log")
    parser.add_argument("--whylogs-row-samples", type=int, default=500)
    parser.add_argument("--skip-whylogs", action="store_true")
    args = parser.parse_args()

    frame = make_frame(args.rows, seed=7)
    rows = make_rows(frame, args.row_samples)
    results: dict[str, float] = {}

    results["neurocloak_log_us"] = bench_rows(rows, loops=5) * 1e6
    results["neurocloak_log_batch_rows_per_s"] = bench_batch(frame, loops=3)
    verify_batch(frame)
    if not args.skip_whylogs:
        results["whylogs_row_us"] = bench_whylogs_rows(rows[: args.whylogs_row_samples]) * 1e6
        results["whylogs_batch_rows_per_s"] = bench_whylogs_batch(frame)
        results["log_speedup_vs_whylogs"] = results["whylogs_row_us"] / results["neurocloak_log_us"]
        results["batch_speedup_vs_whylogs"] = (
            results["neurocloak_log_batch_rows_per_s"] / results["whylogs_batch_rows_per_s"]
        )

    print(f"rows: {args.rows} x ({N_NUMERIC} numeric + {N_CATEGORICAL} categorical)")
    print(f"neurocloak log         : {results['neurocloak_log_us']:8.3f} us/row   (target <= 1 us)")
    print(f"neurocloak log_batch   : {results['neurocloak_log_batch_rows_per_s'] / 1e6:8.3f} M rows/s (target >= 2 M)")
    if not args.skip_whylogs:
        print(f"whylogs track(row=)    : {results['whylogs_row_us']:8.1f} us/row")
        print(f"whylogs log(df)        : {results['whylogs_batch_rows_per_s'] / 1e3:8.1f} k rows/s")
        print(f"ratio log              : {results['log_speedup_vs_whylogs']:8.0f}x faster than whylogs")
        print(f"ratio log_batch        : {results['batch_speedup_vs_whylogs']:8.0f}x faster than whylogs")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
