"""Smoke test: collector + agent, then the scoring job and, in a second process, the labels job;
the collector must hold every scored row and every label, and — once the window is evaluated —
report the same accuracy the labels job computed locally.

    python examples/batch-scoring/smoke_test.py     (scripts/test-examples.sh runs it)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "sidecar"))
from localstack import Stack, StackError, wait_for  # noqa: E402

PROJECT = "lending"
MODEL = "default-risk"
# The SDK keeps 20 000 prediction records per window and process for joining labels (more are
# counted in the window's `predictions_dropped`); the test stays within that so every label
# must join. See README "Limits".
ROWS = 20_000
CHUNK = 3_000  # not a divisor of ROWS: the last chunk is short
SHARE = 0.4


def job(stack: Stack, *args: str) -> dict[str, Any]:
    env = {**os.environ, "NEUROCLOAK_AGENT": stack.agent_uds, "NEUROCLOAK_PROJECT": PROJECT}
    out = subprocess.run([sys.executable, str(HERE / "score.py"), "--window-seconds", "2", *args],
                         env=env, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise StackError(f"score.py {args[0]} exited {out.returncode}:\n{out.stdout}\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def bad_arguments_are_refused() -> None:
    for args in (["score", "--rows", "0"], ["score", "--chunk", "-5"], ["labels", "--share", "1.5"]):
        out = subprocess.run([sys.executable, str(HERE / "score.py"), *args], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 2 and "must be" in out.stderr, (args, out.returncode, out.stderr[-300:])


def performance(stack: Stack, labels: int) -> dict[str, float] | None:
    """Labelled rows and accuracy over every window, from each window's newest evaluation;
    None until the labels are all joined. The batch may straddle a window boundary, so the
    accuracy is the label-weighted mean of the windows'."""
    newest = stack.latest_evaluations(MODEL, version="v3", environment="batch")
    joined = sum(int(i["inputs"]["joined_labels"]) for i in newest.values())
    if joined < labels:
        return None
    current = [i["evaluation"]["performance"]["result"]["current"] for i in newest.values()
               if i["inputs"]["joined_labels"]]
    labelled = sum(int(c["labelled"]) for c in current)
    accuracy = sum(c["accuracy"] * c["labelled"] for c in current) / labelled
    return {"labelled": labelled, "accuracy": accuracy, "windows": len(newest)}


def main() -> None:
    bad_arguments_are_refused()
    with Stack(PROJECT) as stack:
        scores = stack.dir / "scores.csv"
        scored = job(stack, "score", "--rows", str(ROWS), "--chunk", str(CHUNK), "--out", str(scores))
        labelled = job(stack, "labels", "--scores", str(scores), "--share", str(SHARE))
        for result in (scored, labelled):
            s = result["stats"]
            assert s["dropped"] == 0 and s["delivered"] == s["sent"] and s["queued"] == 0, result
        assert labelled["labels"] == int(ROWS * SHARE), labelled

        def all_rows() -> list[dict[str, Any]] | None:
            parts = stack.windows(MODEL)
            return parts if sum(int(p["rows"]) for p in parts) >= ROWS else None

        parts = wait_for(f"{ROWS} rows at the collector", all_rows, timeout=60)
        rows = sum(int(p["rows"]) for p in parts)
        assert rows == ROWS, f"collector has {rows} rows, the job logged {ROWS}"
        for start in {int(p["window_start_ms"]) for p in parts}:
            profile = stack.merged_window(MODEL, start, version="v3", environment="batch")["profile"]
            assert profile["predictions_dropped"] == 0, profile["predictions_dropped"]

        # Every payload the two jobs' SDKs delivered (reference, windows, label batches) is one
        # stored item: the agent merges only parts of the same window from different processes.
        sent = scored["stats"]["sent"] + labelled["stats"]["sent"]
        def items_stored() -> float | None:
            n = stack.metrics("collector").get("neurocloak_collector_ingest_items_stored_total", 0.0)
            return n if n >= sent else None

        stored = wait_for("every payload stored", items_stored, timeout=30)
        assert stored == sent, f"collector stored {stored} items, the SDKs delivered {sent}"

        # Evaluation runs after the window's grace period; labels join by prediction id.
        started = time.monotonic()
        perf = wait_for("evaluations with the labels joined",
                        lambda: performance(stack, labelled["labels"]), timeout=60)
        assert perf["labelled"] == labelled["labels"], perf
        assert abs(perf["accuracy"] - labelled["accuracy"]) < 1e-9, (perf, labelled["accuracy"])
        print(
            f"batch-scoring: ok — {ROWS} rows in {len(parts)} window part(s), {labelled['labels']} "
            f"delayed labels joined in {perf['windows']:.0f} window(s); collector accuracy "
            f"{perf['accuracy']:.4f} equals the job's; "
            f"evaluated {time.monotonic() - started:.1f} s after arrival"
        )


if __name__ == "__main__":
    main()
