"""Monitor.log: recording, data-quality counting of bad input, strict mode."""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import pytest

import neurocloak
from helpers import snapshot
from neurocloak.errors import ConfigError, DataError, NeuroCloakError

Make = Callable[..., neurocloak.Monitor]


def row(**over: Any) -> dict[str, Any]:
    r: dict[str, Any] = {"age": 30.0, "income": 1000, "city": "paris", "member": True}
    r.update(over)
    return r


def test_rows_and_moments_are_recorded(make_monitor: Make) -> None:
    mon = make_monitor()
    for i in range(100):
        mon.log(row(age=float(i)), "yes" if i % 2 else "no")
    snap = snapshot(mon)
    assert snap["rows"] == 100
    age = snap["features"]["age"]
    assert age["count"] == 100
    assert age["mean"] == pytest.approx(49.5)
    assert (age["min"], age["max"]) == (0.0, 99.0)
    assert snap["features"]["city"]["kind"] == "categorical"
    assert snap["features"]["member"]["kind"] == "boolean"
    assert snap["prediction"]["count"] == 100


def test_bad_numbers_are_counted_not_raised(make_monitor: Make) -> None:
    mon = make_monitor()
    mon.log(row(age=math.nan), "no")
    mon.log(row(age=math.inf), "no")
    mon.log(row(age=-math.inf), "no")
    mon.log(row(age=None), "no")
    mon.log(row(age="thirty"), "no")
    mon.log(row(age=[1, 2]), "no")
    mon.log(row(age=10**400), "no")  # beyond f64: an infinity, not an exception
    mon.log(row(age=np.float32(2.5)), "no")
    mon.log(row(age=np.int64(7)), "no")
    age = snapshot(mon)["features"]["age"]
    assert age["count"] == 9
    assert age["nan"] == 1
    assert age["pos_inf"] == 2
    assert age["neg_inf"] == 1
    assert age["missing"] == 1
    assert age["type_mismatch"] == 2
    assert age["mean"] == pytest.approx(4.75)


def test_missing_and_extra_keys_are_counted(make_monitor: Make) -> None:
    mon = make_monitor()
    r = row()
    del r["income"]
    mon.log(r, "yes")
    mon.log(row(unexpected=1.0), "yes")
    snap = snapshot(mon)
    assert snap["features"]["income"]["missing"] == 1
    assert snap["extra_features"] >= 1
    assert "unexpected" not in snap["features"]


def test_non_string_keys_do_not_raise(make_monitor: Make) -> None:
    mon = make_monitor()
    mon.log({**row(), 3: 1.0, None: "x"}, "no")  # type: ignore[dict-item]
    assert snapshot(mon)["rows"] == 1


def test_huge_strings_are_truncated_and_counted(make_monitor: Make) -> None:
    mon = make_monitor()
    mon.log(row(city="x" * 5_000_000), "no")
    mon.log(row(city="\ud800"), "no")  # lone surrogate: not UTF-8
    city = snapshot(mon)["features"]["city"]
    assert city["count"] == 2
    assert city["truncated"] == 1
    assert city["type_mismatch"] == 1


def test_strict_mode_raises_typed_errors(make_monitor: Make) -> None:
    mon = make_monitor(strict=True)
    mon.log(row(), "yes")
    with pytest.raises(DataError, match="age"):
        mon.log(row(age=math.nan), "yes")
    with pytest.raises(DataError):
        mon.log(row(age="thirty"), "yes")
    assert issubclass(DataError, NeuroCloakError)


def test_optional_arguments(make_monitor: Make) -> None:
    mon = make_monitor()
    mon.log(row(), "yes", label="no", id="req-1", timestamp=1.7e9, latency=0.004, scores=[0.2, 0.8])
    snap = snapshot(mon)
    assert snap["label"]["count"] == 1
    assert snap["latency_count"] == 1


def test_non_mapping_features_is_a_type_error(make_monitor: Make) -> None:
    mon = make_monitor()
    with pytest.raises(TypeError):
        mon.log([1, 2, 3], "no")  # type: ignore[arg-type]


def test_schema_is_inferred_from_first_row(make_monitor: Make) -> None:
    mon = make_monitor(features=None)
    mon.log({"a": 1.5, "b": "red", "c": False}, "no")
    mon.log({"a": 2.5, "b": "blue", "c": True}, "yes")
    feats = snapshot(mon)["features"]
    assert {k: v["kind"] for k, v in feats.items()} == {"a": "numeric", "b": "categorical", "c": "boolean"}


@pytest.mark.parametrize(
    "bad",
    [
        {"project": ""},
        {"window_seconds": 0},
        {"window_seconds": math.nan},
        {"features": {"a": "complex"}},
        {"task": "clustering"},
        {"agent": "ftp://nope"},
        {"reservoir_size": -1},
    ],
)
def test_invalid_configuration_raises(make_monitor: Make, bad: dict[str, Any]) -> None:
    with pytest.raises((ConfigError, ValueError, OverflowError, TypeError)):
        make_monitor(**bad)


def test_context_manager_and_stats(make_monitor: Make) -> None:
    with make_monitor() as mon:
        mon.log(row(), "yes")
        stats = mon.stats()
        assert set(stats) >= {"sent", "delivered", "dropped", "queued"}
        assert stats["sent"] == stats["delivered"] + stats["dropped"] + stats["queued"]


def test_bad_latency_keeps_the_row_and_strict_rejects_it(make_monitor: Make) -> None:
    mon = make_monitor()
    mon.log(row(), "yes", latency=math.nan)
    mon.log(row(), "yes", latency=-1.0)
    mon.log(row(), "yes", latency=0.01)
    snap = snapshot(mon)
    assert snap["rows"] == 3
    assert snap["latency_count"] == 1
    with pytest.raises(DataError, match="latency"):
        make_monitor(strict=True).log(row(), "yes", latency=math.nan)


def test_timestamps_accept_numbers_and_datetimes(make_monitor: Make) -> None:
    import datetime as dt

    mon = make_monitor()
    mon.log(row(), "yes", timestamp=1.7e9)
    mon.log(row(), "yes", timestamp=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc))
    with pytest.raises(TypeError):
        mon.log(row(), "yes", timestamp="yesterday")
    assert snapshot(mon)["rows"] == 2


def test_use_after_shutdown(make_monitor: Make) -> None:
    from neurocloak.errors import ClosedError

    mon = make_monitor()
    mon.log(row(), "yes")
    assert mon.shutdown(1.0) is True
    assert mon.shutdown(1.0) is True  # idempotent
    with pytest.raises(ClosedError):
        mon.log(row(), "yes")
    with pytest.raises(ClosedError):
        mon.log_batch({"age": np.zeros(2)}, ["no", "no"])


def test_timestamp_does_not_choose_the_window(make_monitor: Make) -> None:
    import time

    mon = make_monitor()
    mon.log(row(), "yes", id="old", timestamp=1.0)  # 1970: far before the open window
    snap = snapshot(mon)
    start, length = snap["window_start_ms"], snap["window_length_ms"]
    assert start <= time.time() * 1000 < start + length
    assert start > 1000
    assert snap["rows"] == 1


def test_prediction_record_cap_applies(make_monitor: Make) -> None:
    mon = make_monitor(max_prediction_records=3)
    for i in range(10):
        mon.log(row(), "yes", id=f"r{i}")
    mon.log(row(), "yes")  # no id: no record, not dropped
    snap = snapshot(mon)
    assert (snap["prediction_records"], snap["predictions_dropped"]) == (3, 7)

    default = make_monitor()
    for i in range(10):
        default.log(row(), "yes", id=f"r{i}")
    assert snapshot(default)["prediction_records"] == 10

    none_kept = make_monitor(max_prediction_records=np.int64(0))
    none_kept.log_batch({"age": np.arange(5.0)}, ["yes"] * 5, ids=[f"b{i}" for i in range(5)])
    snap = snapshot(none_kept)
    assert (snap["prediction_records"], snap["predictions_dropped"]) == (0, 5)


@pytest.mark.parametrize("bad", [-1, 100_001, 2**64, 10**30])
def test_prediction_record_cap_out_of_range(make_monitor: Make, bad: int) -> None:
    with pytest.raises(ConfigError, match=r"max_prediction_records must be an integer from 0 to 100000"):
        make_monitor(max_prediction_records=bad)


@pytest.mark.parametrize("bad", ["100", 5.0, True, [3]])
def test_prediction_record_cap_wrong_type(make_monitor: Make, bad: object) -> None:
    with pytest.raises(TypeError, match=r"max_prediction_records must be an int, got"):
        make_monitor(max_prediction_records=bad)


def test_ids_the_collector_would_refuse_never_leave_the_sdk(make_monitor: Make) -> None:
    from neurocloak.errors import BatchError

    too_long, fits = "x" * 129, "y" * 128
    mon = make_monitor()
    for rid in [too_long, "", "line\nbreak", fits]:
        mon.log(row(), "yes", id=rid)
    mon.log_batch({"age": np.arange(2.0)}, ["yes"] * 2, ids=[too_long, "ok"])
    snap = snapshot(mon)
    assert snap["rows"] == 6
    assert (snap["prediction_records"], snap["predictions_dropped"]) == (2, 4)

    with pytest.raises(BatchError, match=r"ids\[1\]"):
        mon.log_labels(["ok", too_long], ["yes", "no"])

    strict = make_monitor(strict=True)
    with pytest.raises(DataError):
        strict.log(row(), "yes", id=too_long)
