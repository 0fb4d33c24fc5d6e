"""Smoke test: collector + agent + this app under gunicorn (3 preloaded workers), real requests,
then the collector's read API must show every logged prediction, coming from several workers.

    python examples/fastapi-gunicorn/smoke_test.py     (scripts/test-examples.sh runs it)
"""

from __future__ import annotations

import math
import os
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "sidecar"))
from localstack import Stack, StackError, wait_for  # noqa: E402

PROJECT = "shop"
WORKERS = 3
REQUESTS = 240
MISSING_EVERY = 10  # every 10th request omits support_tickets


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def customer(i: int) -> dict[str, object]:
    body: dict[str, object] = {
        "tenure_months": float(i % 60),
        "monthly_spend": 20.0 + i % 50,
        "support_tickets": float(i % 4),
        "plan": ["basic", "plus", "premium"][i % 3],
        "region": ["north", "south", "east", "west"][i % 4],
    }
    if i % MISSING_EVERY == 0:
        del body["support_tickets"]
    return body


def check_rejects(client: httpx.Client) -> None:
    """Bad input is refused with 422 before it reaches the model or the monitor."""
    bad = [
        b'{"tenure_months": NaN}',
        b'{"tenure_months": Infinity}',
        b'{"tenure_months": "twelve"}',
        b'{"plan": "gold"}',
        b'{"unknown_field": 1}',
        b'{"region": "' + b"x" * 10_000 + b'"}',
        b"not json",
    ]
    for body in bad:
        r = client.post("/predict", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 422, (body[:40], r.status_code, r.text[:200])
    r = client.post("/labels", json={"ids": ["a", "b"], "labels": ["stays"]})
    assert r.status_code == 422, r.text


def main() -> None:
    with Stack(PROJECT) as stack:
        port = free_port()
        env = {
            "NEUROCLOAK_AGENT": stack.agent_uds,
            "NEUROCLOAK_PROJECT": PROJECT,
            "NEUROCLOAK_WINDOW_SECONDS": "2",
            "BIND": f"127.0.0.1:{port}",
            "WEB_CONCURRENCY": str(WORKERS),
        }
        gunicorn = str(Path(sys.executable).with_name("gunicorn"))
        app = stack.spawn("gunicorn", [gunicorn, "-c", str(HERE / "gunicorn.conf.py"),
                                       "--chdir", str(HERE), "app:app"], env)
        base = f"http://127.0.0.1:{port}"

        def up() -> bool:
            if app.proc.poll() is not None:
                raise StackError(f"gunicorn exited with {app.proc.returncode}:\n{app.tail()}")
            try:
                return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for("gunicorn to answer", up, timeout=90)

        # No keep-alive: every request is a new connection for the workers to accept, so the
        # kernel spreads them instead of one worker serving a few long-lived connections.
        limits = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(base_url=base, timeout=10, limits=limits) as client:
            check_rejects(client)
            # Parallel clients so that every worker gets a share of the requests.
            with ThreadPoolExecutor(8) as pool:
                answers = list(pool.map(lambda i: client.post("/predict", json=customer(i)), range(REQUESTS)))
            assert all(r.status_code == 200 for r in answers), [r.text for r in answers if r.status_code != 200][:3]
            scored = [r.json() for r in answers]
            assert all(0.0 <= s["probability"] <= 1.0 and math.isfinite(s["probability"]) for s in scored)
            workers = {s["worker"] for s in scored}
            assert len(workers) >= 2, f"all requests went to one worker: {workers}"
            ids = [s["id"] for s in scored[:50]]
            r = client.post("/labels", json={"ids": ids, "labels": ["stays"] * len(ids)})
            assert r.status_code == 200 and r.json() == {"accepted": 50}, r.text

        # Windows are 2 s long: they close, the workers ship them, the agent merges and forwards.
        def arrived() -> list[dict[str, object]] | None:
            parts = stack.windows("churn")
            rows = sum(int(p["rows"]) for p in parts)  # type: ignore[call-overload]
            return parts if rows >= REQUESTS else None

        started = time.monotonic()
        parts = wait_for(f"{REQUESTS} rows at the collector", arrived, timeout=60)
        rows = sum(int(p["rows"]) for p in parts)  # type: ignore[call-overload]
        assert rows == REQUESTS, f"collector has {rows} rows, app logged {REQUESTS}"

        missing = 0
        merged_parts = []
        for start in sorted({int(p["window_start_ms"]) for p in parts}):  # type: ignore[call-overload]
            w = stack.merged_window("churn", start, version="2024-06-01", environment="production")
            profile = w["profile"]
            assert profile["features"]["region"]["counters"]["type_mismatch"] == 0
            missing += profile["features"]["support_tickets"]["counters"]["missing"]
            merged_parts.append(profile["parts"])
        assert missing == REQUESTS // MISSING_EVERY, f"missing support_tickets {missing}"
        # Each worker that served a request shipped its own part of the window(s) it served in;
        # the merged windows must account for all of them (merged by the agent or on read).
        assert sum(merged_parts) >= len(workers), (merged_parts, workers)

        def joined() -> int | None:
            n = stack.joined_labels("churn")
            return n if n >= len(ids) else None

        labels = wait_for("the 50 labels joined by the evaluations", joined, timeout=60)
        assert labels == len(ids), labels

        agent = stack.metrics("agent")
        assert agent.get("neurocloak_agent_dropped_total{reason=\"corrupt\"}", 0) == 0
        collector = stack.metrics("collector")
        assert collector.get("neurocloak_collector_ingest_batches_total{outcome=\"rejected\"}", 0) == 0
        print(
            f"fastapi-gunicorn: ok — {REQUESTS} predictions from {len(workers)} workers arrived as "
            f"{len(parts)} window parts in {time.monotonic() - started:.1f} s; "
            f"{missing} missing values counted; worker parts per window {merged_parts}; "
            f"{labels} labels joined"
        )


if __name__ == "__main__":
    main()
