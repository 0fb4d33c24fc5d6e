"""Exceptions raised by the NeuroCloak SDK.

Every exception derives from :class:`NeuroCloakError`. ``Monitor.log`` and
``Monitor.log_batch`` never raise for bad data unless the monitor is strict; bad
values are counted as data quality instead.
"""

from neurocloak._native import (
    BatchError,
    ClosedError,
    ConfigError,
    DataError,
    FlushTimeoutError,
    NeuroCloakError,
    ProtocolError,
    ShippingError,
)

__all__ = [
    "BatchError",
    "ClosedError",
    "ConfigError",
    "DataError",
    "FlushTimeoutError",
    "NeuroCloakError",
    "ProtocolError",
    "ShippingError",
]
