"""Monitor.log_batch and set_reference from numpy, pandas and pyarrow."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import neurocloak
from helpers import snapshot
from neurocloak.errors import BatchError

Make = Callable[..., neurocloak.Monitor]


def frame(n: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.normal(40, 10, n),
            "income": rng.integers(0, 10_000, n),
            "city": pd.Categorical(rng.choice(["paris", "lyon", "nice"], n)),
            "member": rng.random(n) < 0.3,
        }
    )


def test_dataframe_matches_row_by_row(make_monitor: Make) -> None:
    df = frame(500)
    preds = np.where(df["age"] > 40, "yes", "no")
    batch, rows = make_monitor(), make_monitor()
    assert batch.log_batch(df, preds) == 500
    for rec, p in zip(df.to_dict("records"), preds):
        rows.log({k: (str(v) if k == "city" else v) for k, v in rec.items()}, p)
    a, b = snapshot(batch)["features"], snapshot(rows)["features"]
    for name in ("age", "income", "member"):
        assert a[name]["count"] == b[name]["count"] == 500
        assert a[name]["mean"] == pytest.approx(b[name]["mean"], rel=1e-12)
        assert (a[name]["min"], a[name]["max"]) == (b[name]["min"], b[name]["max"])
    assert a["city"]["top"] == b["city"]["top"]


def test_numpy_matrix_uses_schema_order(make_monitor: Make) -> None:
    mon = make_monitor(features={"x": "numeric", "y": "numeric"}, task="regression", classes=None)
    X = np.arange(20, dtype=np.float64).reshape(10, 2)  # columns are strided views
    mon.log_batch(X, X[:, 0] * 2)
    feats = snapshot(mon)["features"]
    assert feats["x"]["mean"] == pytest.approx(9.0)
    assert feats["y"]["mean"] == pytest.approx(10.0)


def test_arrow_table_with_nulls_and_dictionary(make_monitor: Make) -> None:
    mon = make_monitor()
    table = pa.table(
        {
            "age": pa.array([1.0, None, 3.0]),
            "income": pa.array([1, 2, 3], type=pa.int32()),
            "city": pa.array(["a", "b", None]).dictionary_encode(),
            "member": pa.array([True, False, None]),
        }
    )
    mon.log_batch(table, ["no", "yes", "no"])
    feats = snapshot(mon)["features"]
    assert feats["age"]["missing"] == 1
    assert feats["age"]["mean"] == pytest.approx(2.0)
    assert feats["city"]["missing"] == 1
    assert feats["member"]["missing"] == 1
    assert feats["income"]["mean"] == pytest.approx(2.0)


def test_mixed_dtypes_in_a_dataframe_are_counted(make_monitor: Make) -> None:
    mon = make_monitor()
    df = pd.DataFrame(
        {
            "age": pd.Series([1, "two", None, 4.0, np.inf], dtype=object),
            "income": pd.array([1, None, 3, 4, 5], dtype="Int64"),
            "city": ["a", 1, None, "b" * 100_000, "c"],
            "member": [True, False, None, "yes", 1],
        }
    )
    mon.log_batch(df, ["no"] * 5)
    feats = snapshot(mon)["features"]
    assert feats["age"]["count"] == 5
    assert feats["age"]["type_mismatch"] == 1
    assert feats["age"]["missing"] == 1
    assert feats["age"]["pos_inf"] == 1
    assert feats["income"]["missing"] == 1
    assert feats["income"]["mean"] == pytest.approx(13 / 4)
    assert feats["city"]["missing"] == 1
    assert feats["city"]["truncated"] == 1


def test_nan_and_inf_in_numeric_columns(make_monitor: Make) -> None:
    mon = make_monitor(features={"x": "numeric"}, task="regression", classes=None)
    x = np.array([1.0, np.nan, np.inf, -np.inf, 3.0], dtype=np.float32)
    mon.log_batch({"x": x}, np.zeros(5))
    f = snapshot(mon)["features"]["x"]
    assert (f["nan"], f["pos_inf"], f["neg_inf"]) == (1, 1, 1)
    assert f["mean"] == pytest.approx(2.0)


@pytest.mark.parametrize(
    "data,preds",
    [
        ({"age": np.zeros(3), "income": np.zeros(4)}, np.zeros(3)),  # ragged columns
        ({"age": np.zeros(3)}, np.zeros(5)),  # predictions of another length
        ({"age": np.zeros((3, 2))}, np.zeros(3)),  # 2-D column
        ("not a table", np.zeros(3)),
        (np.zeros((3, 7)), np.zeros(3)),  # more columns than the schema names
    ],
)
def test_malformed_batches_raise(make_monitor: Make, data: Any, preds: Any) -> None:
    mon = make_monitor()
    with pytest.raises((BatchError, ValueError, TypeError)):
        mon.log_batch(data, preds)


def test_categorical_codes_out_of_range_are_rejected(make_monitor: Make) -> None:
    mon = make_monitor()
    with pytest.raises((BatchError, ValueError)):
        mon._log_columns(
            ["city"], [(np.array([0, 5], dtype=np.int8), ["a"])], 2, ["no", "no"], None, None, None, None, None, 0
        )


def test_labels_ids_and_scores(make_monitor: Make) -> None:
    mon = make_monitor()
    df = frame(100)
    scores = np.random.default_rng(0).random(100)
    preds = np.where(scores > 0.5, "yes", "no")
    mon.log_batch(df, preds, labels=preds, ids=[f"id{i}" for i in range(100)], scores=scores)
    snap = snapshot(mon)
    assert snap["label"]["count"] == 100
    mon.log_labels([f"id{i}" for i in range(10)], ["yes"] * 10)


def test_set_reference_then_log(make_monitor: Make) -> None:
    mon = make_monitor()
    ref = frame(2000, seed=3)
    mon.set_reference(ref, predictions=np.where(ref["age"] > 40, "yes", "no"))
    mon.log_batch(frame(100), ["no"] * 100)
    assert snapshot(mon)["features"]["age"]["bins"] > 0


def test_log_batch_of_zero_rows(make_monitor: Make) -> None:
    mon = make_monitor()
    assert mon.log_batch(frame(0), np.array([], dtype=object)) == 0
    assert snapshot(mon)["rows"] == 0


def test_series_and_index_inputs(make_monitor: Make) -> None:
    mon = make_monitor(features={"x": "numeric", "c": "categorical"}, task="regression", classes=None)
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0], "c": pd.Categorical(["a", "b", "a"])})
    mon.log_batch({"x": df["x"], "c": df["c"]}, pd.Series([0.5, 1.5, 2.5]), labels=pd.Series([1.0, 2.0, 3.0]))
    snap = snapshot(mon)
    assert snap["rows"] == 3
    assert snap["features"]["x"]["mean"] == pytest.approx(2.0)
    assert snap["features"]["c"]["top"] == [("a", 2), ("b", 1)]
    assert snap["prediction"]["mean"] == pytest.approx(1.5)
