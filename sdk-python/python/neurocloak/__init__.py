"""NeuroCloak SDK: live statistical monitoring of machine-learning models.

Create one :class:`Monitor` per model version, call :meth:`Monitor.log` (or
:meth:`Monitor.log_batch`) for every prediction; a background thread ships
per-window profiles to the NeuroCloak agent. See ``docs/python.md``.
"""

from neurocloak import errors
from neurocloak._monitor import Monitor
from neurocloak._native import __version__
from neurocloak.robustness import RobustnessReport

__all__ = ["Monitor", "RobustnessReport", "__version__", "errors"]
