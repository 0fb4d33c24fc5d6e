"""A forked child (gunicorn's model) keeps recording with its own empty state."""

from __future__ import annotations

import faulthandler
import json
import os
import sys
import threading
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

import neurocloak
from conftest import agent_metrics, free_port, start_agent, stop_process
from helpers import ONE_WINDOW, snapshot

Make = Callable[..., neurocloak.Monitor]


def run_in_child(body: Callable[[], object]) -> object:
    """Forks, runs `body` in the child and returns what it returned (as JSON)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 0
        try:
            os.close(read)
            payload = json.dumps(body()).encode()
        except BaseException as e:
            payload = json.dumps({"error": repr(e)}).encode()
            code = 1
        with os.fdopen(write, "wb") as f:
            f.write(payload)
        os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    result = json.loads(data)
    assert os.waitstatus_to_exitcode(status) == 0, result
    return result


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() with threads running
def test_child_starts_empty_and_parent_keeps_its_rows(make_monitor: Make) -> None:
    mon = make_monitor(features={"x": "numeric"}, task="regression", classes=None)
    for i in range(10):
        mon.log({"x": float(i)}, 0.0)

    def child() -> object:
        for i in range(3):
            mon.log({"x": 100.0 + i}, 1.0)
        snap = snapshot(mon)
        return {"rows": snap["rows"], "mean": snap["features"]["x"]["mean"], "stats": mon.stats()}

    got = run_in_child(child)
    assert isinstance(got, dict)
    assert (got["rows"], got["mean"]) == (3, 101.0)
    assert got["stats"]["sent"] == 1  # only the child's own window
    snap = snapshot(mon)
    assert snap["rows"] == 10
    assert snap["features"]["x"]["mean"] == pytest.approx(4.5)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_fork_while_other_threads_log(make_monitor: Make) -> None:
    """Forks 30 times while three threads log rows and batches. Regressions: (1) a thread that
    took the GIL between the at-fork hooks waited for a shard lock held for the fork; (2) a
    thread parked at the gate during one fork got the GIL during the next one and went on."""
    mon = make_monitor(features={"x": "numeric"}, task="regression", classes=None)
    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            mon.log({"x": 1.0}, 0.0)
            mon.log({"x": np.float32(1.0)}, 0.0)  # the path that runs Python code mid-row
            mon.log_batch({"x": np.ones(1000)}, np.zeros(1000))

    threads = [threading.Thread(target=busy) for _ in range(3)]
    interval = sys.getswitchinterval()
    # A hang fails the test (with every thread's stack) instead of hanging the suite.
    faulthandler.dump_traceback_later(60, exit=True)
    sys.setswitchinterval(1e-6)
    for t in threads:
        t.start()
    try:
        for _ in range(30):
            # The child must see none of the parent's rows, and not deadlock either.
            got = run_in_child(lambda: (mon.log({"x": 2.0}, 0.0), snapshot(mon)["rows"])[1])
            assert got == 1
    finally:
        stop.set()
        for t in threads:
            t.join()
        sys.setswitchinterval(interval)
        faulthandler.cancel_dump_traceback_later()
    assert snapshot(mon)["rows"] > 0


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_fork_after_threads_logged(make_monitor: Make) -> None:
    """The gunicorn shape: the parent recorded from several threads, then forks workers that
    log on their own; each worker sees only its rows and the parent keeps its own."""
    mon = make_monitor(features={"x": "numeric"}, task="regression", classes=None)

    def work() -> None:
        for _ in range(200):
            mon.log({"x": 1.0}, 0.0)
        mon.log_batch({"x": np.ones(500)}, np.zeros(500))

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(4):
        got = run_in_child(lambda: (mon.log({"x": float(k)}, 0.0), snapshot(mon)["rows"])[1])
        assert got == 1
    assert snapshot(mon)["rows"] == 3 * 700


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_forked_workers_deliver_to_a_real_agent(workdir: Path) -> None:
    # No collector behind it: the agent acknowledges once a push is in its disk queue.
    agent, tcp, http = start_agent(workdir, f"http://127.0.0.1:{free_port()}", "unused-key")
    try:
        mon = neurocloak.Monitor(
            project="p", model="fork", version="1", task="regression",
            features={"x": "numeric"}, window_seconds=ONE_WINDOW, agent=f"http://127.0.0.1:{tcp}",
        )
        mon.log({"x": 1.0}, 0.0)

        def child() -> object:
            for i in range(50):
                mon.log({"x": float(i)}, 0.0)
            flushed = mon.shutdown(10.0)
            return {"flushed": flushed, **mon.stats()}

        results = [run_in_child(child) for _ in range(3)]
        for r in results:
            assert isinstance(r, dict)
            assert r["flushed"] is True, r
            # The child's queue started empty: only its own window, delivered, nothing dropped.
            assert (r["sent"], r["delivered"], r["dropped"], r["queued"]) == (1, 1, 0, 0), r
        assert mon.shutdown(10.0)
        s = mon.stats()
        assert (s["sent"], s["delivered"], s["dropped"]) == (1, 1, 0)
        received = agent_metrics(http).get("neurocloak_agent_received_total", 0.0)
        assert received == 4, received
    finally:
        stop_process(agent)
