"""A local NeuroCloak stack: one collector (embedded SQLite store) and one agent in front of it,
on random loopback ports and a temporary directory, torn down on exit.

The examples' smoke tests import :class:`Stack`; run it directly to try an example by hand:

    python examples/sidecar/localstack.py --project shop
    # prints NEUROCLOAK_AGENT=..., the collector URL and a read key, then waits for Ctrl-C

Binaries are looked up in ``$NEUROCLOAK_BIN_DIR``, then ``$CARGO_TARGET_DIR/debug``, then
``~/.cache/neurocloak/target/debug`` (where ``scripts/env.sh`` puts them).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")

# Startup includes opening SQLite and recovering the agent's queue; a loaded 2-core CI machine
# can take a few seconds for that.
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


class StackError(RuntimeError):
    """A process of the stack failed to start, or a check timed out; the message says which
    and carries the tail of the process's log."""


def binary(name: str) -> Path:
    dirs = []
    if os.environ.get("NEUROCLOAK_BIN_DIR"):
        dirs.append(Path(os.environ["NEUROCLOAK_BIN_DIR"]))
    if os.environ.get("CARGO_TARGET_DIR"):
        dirs.append(Path(os.environ["CARGO_TARGET_DIR"]) / "debug")
    dirs.append(Path.home() / ".cache/neurocloak/target/debug")
    for d in dirs:
        path = d / name
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise StackError(f"{name} not found in {[str(d) for d in dirs]}; run `cargo build --workspace --bins`")


class Process:
    """A child process whose stdout is scanned for its `... listening k=v ...` line and whose
    output is kept in a log file for error messages."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, env: dict[str, str] | None = None):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")
        self._lines: list[str] = []
        self._listening = threading.Event()
        self.fields: dict[str, str] = {}
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # Ctrl-C in a terminal goes to the stack, which stops us
        )
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            self._lines.append(line)
            if " listening " in line and not self._listening.is_set():
                self.fields = dict(re.findall(r"(\w+)=(\S+)", line))
                self._listening.set()

    def wait_listening(self, timeout: float = START_TIMEOUT) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._listening.wait(0.05):
                return self.fields
            if self.proc.poll() is not None:
                raise StackError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
        raise StackError(f"{self.name} not listening after {timeout} s:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(self._lines[-5:] + text[-lines:])

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM (both binaries drain on it), SIGKILL if it overstays."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def run_json(argv: list[str]) -> dict[str, Any]:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=START_TIMEOUT)
    if out.returncode != 0:
        raise StackError(f"{' '.join(argv[:3])} failed ({out.returncode}):\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _raise_exit(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


class Stack:
    """Collector + agent for one project. Use as a context manager; ``keep_dir`` leaves the
    temporary directory (logs, SQLite file, agent queue) for inspection."""

    def __init__(self, project: str, *, org: str = "examples", keep_dir: bool = False,
                 merge_grace_ms: int = 500):
        self.project = project
        self.org = org
        self.keep_dir = keep_dir
        self.merge_grace_ms = merge_grace_ms
        self.dir = Path(tempfile.mkdtemp(prefix="neurocloak-example-"))
        self.processes: list[Process] = []
        self.ingest_key = ""
        self.read_key = ""
        self.collector_http = ""
        self.collector_grpc = ""
        self.agent_uds = ""
        self.agent_tcp = ""
        self.agent_http = ""

    def __enter__(self) -> Stack:
        # A CI timeout sends SIGTERM: turn it into an exception so `with` still stops the
        # children (they run in their own sessions and would otherwise outlive us).
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _raise_exit)
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is not None:
            print(self.logs(), flush=True)
        self.stop()

    def start(self) -> None:
        collector = str(binary("neurocloak-collector"))
        store = ["--data-dir", str(self.dir / "collector")]
        boot = run_json([collector, "admin", "bootstrap", "--org", self.org, "--project", self.project,
                         "--key-name", "agent", *store])
        self.ingest_key = boot["api_key"]
        # The read API gets its own read-only key: the agent's key never leaves the pod.
        self.read_key = run_json([collector, "admin", "create-key", "--project", self.project,
                                  "--name", "reader", "--scopes", "read", *store])["api_key"]
        c = self.spawn("collector", [collector, "serve", *store, "--grpc-addr", "127.0.0.1:0",
                                     "--http-addr", "127.0.0.1:0"])
        fields = c.wait_listening()
        self.collector_grpc, self.collector_http = fields["grpc"], f"http://{fields['http']}"
        uds = self.dir / "agent.sock"
        a = self.spawn(
            "agent",
            [str(binary("neurocloak-agent")), "--uds-path", str(uds), "--tcp-addr", "127.0.0.1:0",
             "--http-addr", "127.0.0.1:0", "--data-dir", str(self.dir / "agent"),
             "--collector", f"http://{self.collector_grpc}",
             "--merge-grace-ms", str(self.merge_grace_ms), "--linger-ms", "200",
             "--backoff-max-ms", "2000", "--agent-id", f"example-{self.project}"],
            # The key goes through the environment, not argv, so `ps` does not show it.
            env={"NEUROCLOAK_AGENT_API_KEY": self.ingest_key},
        )
        fields = a.wait_listening()
        self.agent_uds, self.agent_tcp = f"unix://{fields['uds']}", f"http://{fields['tcp']}"
        self.agent_http = f"http://{fields['http']}"

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Process:
        p = Process(name, argv, self.dir, env)
        self.processes.append(p)
        return p

    def stop(self) -> None:
        # Reverse order: the app before the agent before the collector, so data drains forward.
        for p in reversed(self.processes):
            p.stop()
        self.processes.clear()
        if not self.keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ({p.log_path})\n{p.tail()}" for p in self.processes)

    # -- reading back what arrived -------------------------------------------------------------

    def api(self, path: str, **query: object) -> Any:
        """GET a collector REST path with the read key; raises on non-2xx with the body."""
        q = urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        url = f"{self.collector_http}/api/v1/projects/{self.project}{path}" + (f"?{q}" if q else "")
        req = urllib.request.Request(url, headers={"x-api-key": self.read_key})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise StackError(f"GET {url} -> {e.code}: {e.read()[:500]!r}") from e

    def windows(self, model: str, **query: object) -> list[dict[str, Any]]:
        """Every stored window part of a model (all pages), newest first."""
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = self.api(f"/models/{model}/windows", limit=1000, cursor=cursor, **query)
            items.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                return items

    def merged_window(self, model: str, start_ms: int, version: str, environment: str) -> dict[str, Any]:
        result: dict[str, Any] = self.api(f"/models/{model}/windows/{start_ms}", version=version,
                                          environment=environment)
        return result

    def latest_evaluations(self, model: str, **query: object) -> dict[int, dict[str, Any]]:
        """The newest evaluation of each window (a window is re-evaluated when late parts or
        labels arrive), keyed by window start."""
        newest: dict[int, dict[str, Any]] = {}
        for item in self.api(f"/models/{model}/evaluations", limit=1000, **query)["items"]:
            start = int(item["window_start_ms"])
            if start not in newest or item["evaluated_ms"] > newest[start]["evaluated_ms"]:
                newest[start] = item
        return newest

    def joined_labels(self, model: str, **query: object) -> int:
        """Labels the collector has joined to this model's predictions, over all windows."""
        return sum(int(e["inputs"]["joined_labels"]) for e in self.latest_evaluations(model, **query).values())

    def metrics(self, which: str) -> dict[str, float]:
        """Prometheus samples of the collector or the agent, keyed by `name{labels}`."""
        base = self.collector_http if which == "collector" else self.agent_http
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as r:
            text = r.read().decode()
        samples: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                samples[key] = float(value)
        return samples


def wait_for(what: str, check: Callable[[], T | None], timeout: float) -> T:
    """Polls `check` until it returns something other than None/False; the last value it
    returned is in the error so a failure says how far it got."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last  # type: ignore[return-value]
        time.sleep(0.25)
    raise StackError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--project", default="examples")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    with Stack(args.project, keep_dir=args.keep) as stack:
        print(f"export NEUROCLOAK_AGENT={stack.agent_uds}")
        print(f"export NEUROCLOAK_COLLECTOR={stack.collector_http}")
        print(f"export NEUROCLOAK_READ_KEY={stack.read_key}")
        print(f"# logs in {stack.dir}; Ctrl-C stops both processes", flush=True)
        # Blocked, then waited for: the stack's own teardown runs instead of a traceback.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        signal.sigwait({signal.SIGINT, signal.SIGTERM})


if __name__ == "__main__":
    main()
