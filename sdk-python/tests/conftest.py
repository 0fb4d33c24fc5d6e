"""Shared fixtures: monitors that record without shipping, and real agent processes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import neurocloak
from helpers import ONE_WINDOW

# Port 9 (discard) on loopback: nothing listens, so windows queue and are counted as
# dropped at shutdown; used by tests that only look at what was recorded.
NOWHERE = "http://127.0.0.1:9"

SCHEMA = {"age": "numeric", "income": "numeric", "city": "categorical", "member": "boolean"}


@pytest.fixture
def make_monitor() -> Iterator[Callable[..., neurocloak.Monitor]]:
    made: list[neurocloak.Monitor] = []

    def make(**overrides: Any) -> neurocloak.Monitor:
        kwargs: dict[str, Any] = dict(
            project="p",
            model="m",
            version="1",
            task="binary",
            classes=["no", "yes"],
            features=dict(SCHEMA),
            window_seconds=ONE_WINDOW,
            agent="memory",
        )
        kwargs.update(overrides)
        mon = neurocloak.Monitor(**kwargs)
        made.append(mon)
        return mon

    yield make
    for mon in made:
        mon.shutdown(0.1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def binary(name: str) -> Path:
    """A workspace binary built by scripts/test-python.sh (NEUROCLOAK_BIN_DIR)."""
    bin_dir = os.environ.get("NEUROCLOAK_BIN_DIR")
    candidates = [Path(bin_dir) / name] if bin_dir else []
    target = os.environ.get("CARGO_TARGET_DIR", str(Path.home() / ".cache/neurocloak/target"))
    candidates.append(Path(target) / "debug" / name)
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise FileNotFoundError(f"{name} not built; run scripts/test-python.sh (looked in {candidates})")


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="neurocloak-py-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def start_process(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def start_agent(workdir: Path, collector: str, api_key: str) -> tuple[subprocess.Popen[bytes], int, int]:
    """A real agent on random loopback ports (and a socket in `workdir`); returns (process,
    tcp port, http port)."""
    tcp, http = free_port(), free_port()
    proc = start_process(
        [str(binary("neurocloak-agent")), "--data-dir", str(workdir / "agent"),
         "--uds-path", str(workdir / "agent.sock"), "--tcp-addr", f"127.0.0.1:{tcp}",
         "--http-addr", f"127.0.0.1:{http}", "--collector", collector, "--api-key", api_key,
         "--linger-ms", "50", "--merge-grace-ms", "200", "--backoff-initial-ms", "20",
         "--backoff-max-ms", "300", "--drain-timeout-ms", "1000"],
        workdir / "agent.log",
    )
    wait_for_port(tcp, proc)
    return proc, tcp, http


def agent_metrics(http: int) -> dict[str, float]:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = out.get(name, 0.0) + float(value)
    return out
