"""Drift evaluation of 1 M rows × 10 features, reference vs current: NeuroCloak against
Evidently 0.7.23's DataDriftPreset on the same DataFrames, in the same run (DESIGN §8: ≤ 1 s,
Evidently ≈ 39–43 s).

Run through `bench/python/run_drift.sh` (release wheel, release agent and collector, the
benchmark's own venv with the peers' pinned versions).

What is timed, and what is not:

* **NeuroCloak SDK** (in-process, `agent="memory"`): `set_reference(reference)` +
  `log_batch(current)` + `windows()` (closing the window, merging its parts). This is the
  whole "logging" part; nothing leaves the process.
* **NeuroCloak evaluation** has no Python entry point: it runs in the collector (crate
  `neurocloak-evaluate`). So the same logging is repeated with a real agent and a real
  collector (release binaries, embedded SQLite store), and the time is measured from the
  moment the window is due (it has ended, the SDK has handed everything to the agent and
  the collector's grace period, set to 0, is over) until the collector has stored the
  evaluation (its `evaluated_ms`, same machine clock). That includes the agent's forward
  (compression, gRPC), the collector's durable ingest, its poll interval (50 ms), loading
  the reference, merging, evaluating drift *and* everything else a window gets (quality,
  robustness, explainability on the sampled rows, trust score) and storing the result.
  Waiting for the wall-clock window to end is not counted: it is a deployment choice
  (window length), not work.
* **Evidently**: `Report([DataDriftPreset()]).run(current, reference)`, which computes the
  drift from the raw rows (normalised Wasserstein for numeric columns, Jensen-Shannon for
  categoricals at this size: the same default rule NeuroCloak follows).

DataFrame construction is outside every timer; both libraries get the same objects.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[2]
NUMERIC = [f"x{i}" for i in range(8)]
CATEGORICAL = ["c0", "c1"]
# Features the current data shifts on purpose, so that both tools have drift to find.
SHIFTED = {"x0", "x1", "x2", "c0"}
MODEL = "drift-bench"
PROJECT = "bench"


def frames(rows: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)

    def frame(current: bool) -> pd.DataFrame:
        cols: dict[str, Any] = {}
        for i, name in enumerate(NUMERIC):
            mean = 0.5 if current and name in SHIFTED else 0.0
            scale = 1.0 + 0.25 * i
            cols[name] = rng.normal(mean, scale, rows)
        c0_p = [0.2, 0.3, 0.5] if current else [0.5, 0.3, 0.2]
        cols["c0"] = pd.Categorical(rng.choice(["a", "b", "c"], rows, p=c0_p), categories=["a", "b", "c"])
        cols["c1"] = pd.Categorical(rng.choice(["u", "v", "w", "z"], rows), categories=["u", "v", "w", "z"])
        return pd.DataFrame(cols)

    reference, current = frame(False), frame(True)
    predictions = current["x0"].to_numpy() * 0.3 + current["x3"].to_numpy() * 0.1
    return reference, current, predictions


def monitor_kwargs(window_seconds: float) -> dict[str, Any]:
    return dict(
        project=PROJECT, model=MODEL, version="1", task="regression",
        features={**{n: "numeric" for n in NUMERIC}, **{n: "categorical" for n in CATEGORICAL}},
        window_seconds=window_seconds, seed=1,
    )


def sdk_in_memory(ref: pd.DataFrame, cur: pd.DataFrame, preds: np.ndarray) -> float:
    import neurocloak

    mon = neurocloak.Monitor(**monitor_kwargs(10 * 365 * 86400.0), agent="memory")
    t = time.perf_counter()
    mon.set_reference(ref)
    mon.log_batch(cur, preds)
    windows = mon.windows()
    elapsed = time.perf_counter() - t
    mon.shutdown(1.0)
    # Verify what was timed: one window holding every current row and every feature.
    assert len(windows) == 1 and windows[0]["rows"] == len(cur), [w["rows"] for w in windows]
    assert sorted(windows[0]["features"]) == sorted(NUMERIC + CATEGORICAL)
    return elapsed


def through_collector(ref: pd.DataFrame, cur: pd.DataFrame, preds: np.ndarray,
                      window_seconds: float) -> tuple[float, float, float, dict[str, Any]]:
    """(SDK seconds, seconds from hand-over to the agent until the collector stored the window,
    seconds from "window due" to "evaluation stored", the evaluation)."""
    import neurocloak

    sys.path.insert(0, str(REPO / "examples" / "sidecar"))
    from localstack import Stack, wait_for

    os.environ["NEUROCLOAK_PIPELINE_GRACE_MS"] = "0"
    os.environ["NEUROCLOAK_PIPELINE_POLL_MS"] = "50"
    with Stack(PROJECT, merge_grace_ms=0) as stack:
        mon = neurocloak.Monitor(**monitor_kwargs(window_seconds), agent=stack.agent_uds)
        # Start right after a window boundary so the whole batch lands in one window.
        time.sleep(window_seconds - time.time() % window_seconds + 0.02)
        t = time.perf_counter()
        start = time.time()
        mon.set_reference(ref)
        mon.log_batch(cur, preds)
        sdk = time.perf_counter() - t
        if not mon.shutdown(30.0):
            raise RuntimeError(f"the agent did not take the windows: {mon.stats()}")
        handed_over = time.time()
        window_start_ms = int(start // window_seconds * window_seconds * 1000)
        window_end = (window_start_ms + window_seconds * 1000) / 1000
        if handed_over > window_end:
            raise RuntimeError(f"logging took {handed_over - start:.2f} s, over the {window_seconds} s window")
        record = wait_for("the evaluation",
                          lambda: stack.latest_evaluations(MODEL, version="1").get(window_start_ms),
                          timeout=120.0)
        received = max(w["received_ms"] for w in stack.windows(MODEL)) / 1000
        due = max(received, window_end)
        return sdk, received - handed_over, record["evaluated_ms"] / 1000 - due, record["evaluation"]


def evidently_run(ref: pd.DataFrame, cur: pd.DataFrame) -> tuple[float, dict[str, float]]:
    from evidently import Report
    from evidently.presets import DataDriftPreset

    t = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)
    elapsed = time.perf_counter() - t
    scores: dict[str, float] = {}
    for metric in snapshot.dict()["metrics"]:
        column = metric["config"].get("column")
        if metric["config"]["type"].endswith("ValueDrift") and column:
            scores[column] = float(metric["value"])
    return elapsed, scores


def exact_scores(ref: pd.Series, cur: pd.Series, numeric: bool) -> tuple[float, float]:
    """(exact value of NeuroCloak's statistic, exact value of Evidently's)."""
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import wasserstein_distance

    if numeric:
        w = float(wasserstein_distance(ref, cur) / np.std(ref))
        return w, w
    cats = sorted(set(ref.cat.categories) | set(cur.cat.categories))
    p = ref.value_counts().reindex(cats, fill_value=0).to_numpy(dtype=float)
    q = cur.value_counts().reindex(cats, fill_value=0).to_numpy(dtype=float)
    return float(jensenshannon(p, q, base=2)), float(jensenshannon(p, q))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--repeats", type=int, default=3, help="in-memory SDK runs (best is reported)")
    ap.add_argument("--window-seconds", type=float, default=4.0)
    ap.add_argument("--skip-evidently", action="store_true")
    args = ap.parse_args()

    ref, cur, preds = frames(args.rows, args.seed)
    print(f"data: reference {len(ref):,} rows, current {len(cur):,} rows, "
          f"{len(NUMERIC)} numeric + {len(CATEGORICAL)} categorical features; shifted: {sorted(SHIFTED)}")

    memory = [sdk_in_memory(ref, cur, preds) for _ in range(args.repeats)]
    print(f"neurocloak SDK in memory (set_reference + log_batch + windows): best {min(memory):.3f} s "
          f"of {args.repeats} ({', '.join(f'{m:.3f}' for m in memory)})")

    sdk, transport_s, evaluation_s, evaluation = through_collector(ref, cur, preds, args.window_seconds)
    drift = evaluation["drift"]
    if drift["status"] != "evaluated" or evaluation["rows"] != len(cur):
        raise RuntimeError(f"unexpected evaluation: rows {evaluation['rows']}, drift {drift['status']}")
    ours = {f["feature"]: f for f in drift["result"]["features"]}
    print(f"neurocloak SDK with a real agent (set_reference + log_batch): {sdk:.3f} s")
    print(f"neurocloak SDK hand-over → window stored by the collector: {transport_s:.3f} s "
          "(includes up to the agent's 200 ms batching linger; overlaps the window's wall-clock wait)")
    print(f"neurocloak collector: window due → evaluation stored: {evaluation_s:.3f} s")
    total = min(memory) + evaluation_s
    print(f"neurocloak total (best in-memory SDK + evaluation): {total:.3f} s")
    print(f"neurocloak total (SDK with the agent + evaluation): {sdk + evaluation_s:.3f} s")

    if args.skip_evidently:
        return
    evidently_s, theirs = evidently_run(ref, cur)
    print(f"evidently 0.7.23 DataDriftPreset: {evidently_s:.3f} s")
    print(f"ratio evidently / neurocloak: {evidently_s / total:.1f}x (target: total <= 1 s)")

    # Exact values from the raw rows (not timed), to show how far each tool is from them.
    # Evidently's Jensen-Shannon uses scipy's default natural log; NeuroCloak's is base 2 (DESIGN §5).
    print(f"\n{'feature':8} {'test':15} {'neurocloak':>11} {'exact':>8} {'evidently':>10} {'exact':>8}  drifted (nc/ev)")
    for name in NUMERIC + CATEGORICAL:
        f = ours[name]
        ev = theirs.get(name, math.nan)
        ours_exact, theirs_exact = exact_scores(ref[name], cur[name], name in NUMERIC)
        print(f"{name:8} {f['test']:15} {f['score']:11.4f} {ours_exact:8.4f} {ev:10.4f} {theirs_exact:8.4f}  "
              f"{f['drifted']!s:5} / {ev >= f['threshold']!s:5}")
    disagree = [n for n in NUMERIC + CATEGORICAL if ours[n]["drifted"] != (theirs.get(n, math.nan) >= ours[n]["threshold"])]
    print(f"drift decisions that differ: {disagree or 'none'}")


if __name__ == "__main__":
    main()
