"""Type stubs for the PyO3 extension module ``neurocloak._native``."""

from collections.abc import Mapping
from typing import Any

__version__: str

def _fork_gate_close() -> None: ...
def _fork_gate_open() -> None: ...

class NeuroCloakError(Exception): ...
class ConfigError(NeuroCloakError): ...
class DataError(NeuroCloakError): ...
class BatchError(NeuroCloakError): ...
class ShippingError(NeuroCloakError): ...
class FlushTimeoutError(NeuroCloakError): ...
class ClosedError(NeuroCloakError): ...
class ProtocolError(NeuroCloakError): ...

class Monitor:
    def __new__(
        cls,
        *,
        project: str,
        model: str,
        version: str = ...,
        environment: str = ...,
        task: str | None = None,
        features: Mapping[str, str] | None = None,
        classes: list[str] | None = None,
        sensitive: list[str] | None = None,
        window_seconds: float = 60.0,
        reservoir_size: int = 256,
        agent: str | None = None,
        strict: bool = False,
        hash_sample_rate: float = 0.01,
        max_string_length: int = 1024,
        seed: int | None = None,
        max_prediction_records: int | None = None,
    ) -> Monitor: ...
    def log(
        self,
        features: Mapping[Any, Any],
        prediction: object,
        *,
        label: object | None = None,
        id: object | None = None,
        timestamp: object | None = None,
        latency: float | None = None,
        scores: object | None = None,
    ) -> None: ...
    def _log_columns(
        self,
        names: list[str],
        columns: list[Any],
        rows: int,
        predictions: object,
        labels: object | None,
        ids: object | None,
        timestamps: object | None,
        latencies: object | None,
        scores: object | None,
        scores_per_row: int,
    ) -> int: ...
    def _set_reference_columns(
        self,
        names: list[str],
        columns: list[Any],
        rows: int,
        predictions: object | None,
        labels: object | None,
    ) -> None: ...
    def log_labels(self, ids: object, labels: object) -> None: ...
    def log_error(self, *, latency: float | None = None) -> None: ...
    def _record_robustness(
        self,
        *,
        stability: float,
        rows: int,
        repeats: int,
        noise: float,
        dropout: float,
        discrete: bool,
        feature_sensitivity: Mapping[str, float],
    ) -> None: ...
    def flush(self, timeout: float = 5.0) -> bool: ...
    def shutdown(self, timeout: float = 5.0) -> bool: ...
    def stats(self) -> dict[str, int]: ...
    def windows(self) -> list[dict[str, Any]]: ...
    @property
    def feature_names(self) -> list[str]: ...
    @property
    def agent(self) -> str: ...
    def _before_fork(self) -> None: ...
    def _after_fork_parent(self) -> None: ...
    def _after_fork_child(self) -> None: ...
