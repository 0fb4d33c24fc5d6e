"""Helpers shared by the test modules."""

from __future__ import annotations

from typing import Any

import neurocloak

# Windows aligned to multiples of ~10 years since the epoch: a test never straddles two.
ONE_WINDOW = 10 * 365 * 86400.0


def snapshot(mon: neurocloak.Monitor) -> dict[str, Any]:
    """The single window an in-memory monitor recorded so far (closing it)."""
    windows = mon.windows()
    assert len(windows) <= 1, f"expected one window, got {len(windows)}"
    if not windows:
        return {"rows": 0, "features": {}, "errors": 0}
    return windows[0]
