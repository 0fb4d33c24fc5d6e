"""End to end with real processes: gunicorn (4 forked workers) → agent → collector.

Every row every worker logged must be stored by the collector, and shutting gunicorn down
must not hang (each worker's exit hook flushes with a bounded timeout)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from conftest import binary, free_port, start_agent, start_process, stop_process, wait_for_port

APPS = Path(__file__).parent / "apps"
PROJECT = "p"
WORKERS = 4
REQUESTS = 400


@pytest.fixture
def stack(workdir: Path) -> Iterator[dict[str, Any]]:
    collector_bin = binary("neurocloak-collector")
    cdir = workdir / "collector"
    boot = subprocess.run(
        [str(collector_bin), "admin", "bootstrap", "--org", "o", "--project", PROJECT, "--data-dir", str(cdir)],
        capture_output=True,
        check=True,
        timeout=60,
    )
    created = json.loads(boot.stdout)
    api_key = created.get("api_key") or created["key"]["api_key"]
    grpc, http = free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        collector = start_process(
            [str(collector_bin), "serve", "--data-dir", str(cdir), "--grpc-addr", f"127.0.0.1:{grpc}",
             "--http-addr", f"127.0.0.1:{http}", "--jobs-enabled", "false"],
            workdir / "collector.log",
        )
        procs.append(collector)
        wait_for_port(http, collector, timeout=60)
        agent, _, _ = start_agent(workdir, f"http://127.0.0.1:{grpc}", api_key)
        procs.append(agent)
        yield {"api_key": api_key, "http": http, "agent": f"unix://{workdir / 'agent.sock'}", "dir": workdir}
    finally:
        for p in reversed(procs):
            stop_process(p)


def stored_rows(http: int, api_key: str) -> int:
    total, cursor = 0, None
    while True:
        url = f"http://127.0.0.1:{http}/api/v1/projects/{PROJECT}/models/gunicorn-model/windows?limit=1000"
        if cursor:
            url += f"&cursor={cursor}"
        req = urllib.request.Request(url, headers={"x-api-key": api_key})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                page = json.loads(resp.read())
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return 0
            raise
        total += sum(int(item["rows"]) for item in page["items"])
        cursor = page.get("next_cursor")
        if not cursor:
            return total


def wait_for_workers(log: Path, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    booted = 0
    while time.monotonic() < deadline:
        booted = log.read_text().count("Booting worker")
        if booted >= WORKERS:
            return
        if proc.poll() is not None:
            raise AssertionError(f"gunicorn exited with {proc.returncode}\n{log.read_text()}")
        time.sleep(0.1)
    raise AssertionError(f"only {booted} of {WORKERS} gunicorn workers booted in {timeout} s\n{log.read_text()}")


def test_every_row_from_every_gunicorn_worker_arrives(stack: dict[str, Any]) -> None:
    port = free_port()
    # Each request holds its (sync) worker for a few milliseconds, so with 8 concurrent clients
    # an idle worker always accepts the next connection and the requests spread.
    env = {**os.environ, "NC_PROJECT": PROJECT, "NC_AGENT": stack["agent"], "PYTHONPATH": str(APPS),
           "NC_HOLD_SECONDS": "0.005"}
    gunicorn = start_process(
        [sys.executable, "-m", "gunicorn", "--preload", "-w", str(WORKERS), "-b", f"127.0.0.1:{port}",
         "--graceful-timeout", "10", "wsgi_model:app"],
        stack["dir"] / "gunicorn.log",
        env,
    )
    try:
        wait_for_port(port, gunicorn, timeout=60)
        # The port listens as soon as the arbiter binds it, before the workers exist; a request
        # sent then is served by whichever worker boots first. Wait for all of them.
        wait_for_workers(stack["dir"] / "gunicorn.log", gunicorn, timeout=60)

        def call(i: int) -> int:
            body = json.dumps({"a": (i % 7) - 3.0, "b": (i % 5) - 2.0, "c": float(i)}).encode()
            req = urllib.request.Request(f"http://127.0.0.1:{port}/", data=body, method="POST")
            with urllib.request.urlopen(req, timeout=30) as resp:
                return int(json.loads(resp.read())["pid"])

        with ThreadPoolExecutor(8) as pool:
            pids = list(pool.map(call, range(REQUESTS)))
        assert len(set(pids)) > 1, "requests should spread over several workers"
    finally:
        started = time.monotonic()
        code = stop_process(gunicorn, timeout=30)
        shutdown_seconds = time.monotonic() - started
    log = (stack["dir"] / "gunicorn.log").read_text()
    assert code == 0, log
    assert shutdown_seconds < 15, f"shutdown took {shutdown_seconds:.1f} s"
    deadline = time.monotonic() + 60
    rows = 0
    while time.monotonic() < deadline:
        rows = stored_rows(stack["http"], stack["api_key"])
        if rows >= REQUESTS:
            break
        time.sleep(0.5)
    assert rows == REQUESTS, f"collector stored {rows} of {REQUESTS} rows\n{log}"
