"""Helpers shared by the test modules."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import neurocloak

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "sidecar"))
from localstack import Stack, wait_for  # noqa: E402

__all__ = ["ONE_WINDOW", "Stack", "fast_stack", "snapshot", "wait_for", "wait_for_window_start"]

# Windows aligned to multiples of ~10 years since the epoch: a test never straddles two.
ONE_WINDOW = 10 * 365 * 86400.0


def snapshot(mon: neurocloak.Monitor) -> dict[str, Any]:
    """The single window an in-memory monitor recorded so far (closing it)."""
    windows = mon.windows()
    assert len(windows) <= 1, f"expected one window, got {len(windows)}"
    if not windows:
        return {"rows": 0, "features": {}, "errors": 0}
    return windows[0]


@contextmanager
def fast_stack(monkeypatch: pytest.MonkeyPatch, project: str) -> Iterator[Stack]:
    """A real agent and collector serving `project`, with short grace and poll so a window is
    evaluated about a second after it closes."""
    monkeypatch.setenv("NEUROCLOAK_PIPELINE_GRACE_MS", "1000")
    monkeypatch.setenv("NEUROCLOAK_PIPELINE_POLL_MS", "200")
    with Stack(project, merge_grace_ms=200) as s:
        yield s


def wait_for_window_start(window_s: float, margin: float = 0.05) -> None:
    """Sleeps to just after a window boundary so that everything logged next fits one window."""
    now = time.time()
    time.sleep(window_s - now % window_s + margin)
