"""Smoke test: collector + agent, then the Rust service (its SDK talking TCP to the agent) over
several 2 s windows; the collector must hold every logged row, count every NaN amount and every
failed request, and join every chargeback label.

    python examples/rust-service/smoke_test.py [path/to/rust-service]   (scripts/test-examples.sh runs it)
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "sidecar"))
from localstack import Stack, StackError, binary, wait_for  # noqa: E402

PROJECT = "payments"
MODEL = "fraud-scorer"
VERSION, ENVIRONMENT = "1.4.2", "production"


def run_service(stack: Stack, exe: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([exe, "--agent", stack.agent_tcp, "--project", PROJECT, *args],
                          capture_output=True, text=True, timeout=180)


def main() -> None:
    exe = sys.argv[1] if len(sys.argv) > 1 else str(binary("rust-service"))
    with Stack(PROJECT) as stack:
        for bad in (["--label-share", "2"], ["--window-seconds", "nan"], ["--threads", "0"],
                    ["--requests", "-1"]):
            out = run_service(stack, exe, *bad)
            assert out.returncode != 0 and out.stderr.strip(), (bad, out.returncode, out.stderr)

        # 3 threads x 2000 requests, 1 ms apart: the run spans at least two 2 s windows.
        out = run_service(stack, exe, "--requests", "6000", "--threads", "3", "--pause-us", "1000",
                          "--window-seconds", "2", "--nan-every", "100", "--fail-every", "250")
        if out.returncode != 0:
            raise StackError(f"rust-service exited {out.returncode}:\n{out.stdout}\n{out.stderr[-3000:]}")
        run: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        s = run["stats"]
        assert run["shutdown"] == "ok" and s["dropped"] == 0 and s["delivered"] == s["sent"], run
        # NaN on every 100th request except the failed ones (every 250th): 60 - 12.
        assert (run["requests"], run["errors"], run["nan_amounts"]) == (6000, 24, 48), run

        def all_rows() -> list[dict[str, Any]] | None:
            parts = stack.windows(MODEL)
            return parts if sum(int(p["rows"]) for p in parts) >= run["logged"] else None

        parts = wait_for(f"{run['logged']} rows at the collector", all_rows, timeout=60)
        rows = sum(int(p["rows"]) for p in parts)
        assert rows == run["logged"], f"collector has {rows} rows, the service logged {run['logged']}"
        starts = sorted({int(p["window_start_ms"]) for p in parts})
        assert len(starts) >= 2, f"expected the run to span several windows, got {starts}"

        nan = errors = 0
        for start in starts:
            profile = stack.merged_window(MODEL, start, VERSION, ENVIRONMENT)["profile"]
            nan += profile["features"]["amount"]["counters"]["nan"]
            errors += profile["errors"]
            assert profile["features"]["country"]["counters"]["type_mismatch"] == 0
        assert (nan, errors) == (run["nan_amounts"], run["errors"]), (nan, errors, run)

        started = time.monotonic()

        def joined() -> int | None:
            n = stack.joined_labels(MODEL)
            return n if n >= run["labels"] else None

        labels = wait_for("every label joined by the evaluations", joined, timeout=60)
        assert labels == run["labels"], (labels, run["labels"])
        print(
            f"rust-service: ok — {rows} rows over {len(starts)} windows (TCP), {nan} NaN amounts "
            f"and {errors} errors counted, {labels} labels joined "
            f"({time.monotonic() - started:.1f} s to evaluate)"
        )


if __name__ == "__main__":
    main()
