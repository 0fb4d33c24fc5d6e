"""End to end against oracles: SDK → real agent → real collector → REST, compared with scipy,
scikit-learn and fairlearn computed on the raw rows the test generated.

The data carry known shifts (one numeric feature unchanged, one mean-shifted, one with a
changed scale; one categorical unchanged, one with moved shares; a sensitive attribute whose
two groups get different decision thresholds), so a wrong number cannot hide behind a
"no drift" result. Every current row lands in one window, so the collector's evaluation and
the oracle see exactly the same data (checked through the evaluation's row count).

Tolerances (docs/metrics.md states the bounds the evaluator guarantees):
* PSI, Jensen-Shannon, chi-square on numeric features: the SDK counts the current rows in
  exact bins at the reference's deciles (numpy's default "linear" quantiles, `binning: exact`),
  so they are the same sums over the same counts: 1e-9.
* The same statistics on categoricals (exact frequent items below capacity): 1e-9.
* KS D and Wasserstein-1 come from KLL sketches (k = 200) that compact at these sizes: the
  oracle must lie within the `error_bound` the collector reports (ε_ref + ε_cur for D; the
  CDF error times the value ranges for W1), plus 1e-12 for rounding.
* accuracy / precision / recall / F1 / selection rates / TPR / FPR are ratios of exact
  counts: 1e-12. Log loss is a sum of logs accumulated in another order: 1e-9.
* ROC AUC uses 100-bin score histograms: within the reported `roc_auc_error_bound`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (
    demographic_parity_difference,
    demographic_parity_ratio,
    equalized_odds_difference,
)
from scipy.spatial.distance import jensenshannon
from scipy.stats import chisquare, ks_2samp, wasserstein_distance
from sklearn.metrics import accuracy_score, f1_score, log_loss, precision_score, recall_score, roc_auc_score

import neurocloak
from helpers import Stack, fast_stack, wait_for, wait_for_window_start

PROJECT = "oracle"
MODEL = "scorer"
VERSION = "v1"
ENVIRONMENT = "production"
CLASSES = ["deny", "grant"]
NUMERIC = ["stable", "shifted", "scaled"]
CATEGORICAL = ["color", "region", "group"]
SCHEMA = {**{f: "numeric" for f in NUMERIC}, **{f: "categorical" for f in CATEGORICAL}}
N_REF = 4000
N_BATCH = 2600
N_ROWS = 400  # logged one by one through `log`, after the batch
WINDOW_S = 2.0

EXACT = 1e-9
RATIO = 1e-12
ROUNDING = 1e-12
EMPTY_BIN_FLOOR = 1e-4


# -- data with known shifts -------------------------------------------------------------------


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def make_frame(rng: np.random.Generator, n: int, *, current: bool) -> pd.DataFrame:
    colors = ["red", "green", "blue"]
    regions = ["north", "south", "east", "west"]
    region_p = [0.1, 0.2, 0.3, 0.4] if current else [0.4, 0.3, 0.2, 0.1]
    return pd.DataFrame(
        {
            "stable": rng.normal(0.0, 1.0, n),
            "shifted": rng.normal(0.8 if current else 0.0, 1.0, n),
            "scaled": rng.normal(5.0, 2.5 if current else 1.0, n),
            "color": rng.choice(colors, n, p=[0.5, 0.3, 0.2]),
            "region": rng.choice(regions, n, p=region_p),
            "group": rng.choice(["a", "b"], n, p=[0.55, 0.45]),
        }
    )


def outcomes(rng: np.random.Generator, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(P(grant), predicted class index, true class index). Group "b" faces a stricter threshold:
    a known selection-rate gap for the fairness oracle."""
    logit = 1.2 * df["stable"].to_numpy() - 0.6 * df["shifted"].to_numpy() + 0.3 * (df["scaled"].to_numpy() - 5)
    score = sigmoid(logit)
    threshold = np.where(df["group"].to_numpy() == "a", 0.45, 0.6)
    predicted = (score >= threshold).astype(int)
    truth = (rng.random(len(df)) < sigmoid(logit + 0.3)).astype(int)
    return score, predicted, truth


# -- oracles on the raw data ------------------------------------------------------------------


def decile_edges(values: np.ndarray) -> np.ndarray:
    """docs/metrics.md: the reference's 0 %, 10 %, …, 100 % quantiles, numpy's default
    ("linear") method, duplicates removed."""
    return np.unique(np.quantile(values, np.linspace(0.0, 1.0, 11)))


def bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts in (−∞, e₀), [e₀, e₁), …, [e_last, +∞)."""
    return np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)


def psi(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    p = np.maximum(ref_counts / ref_counts.sum(), EMPTY_BIN_FLOOR)
    q = np.maximum(cur_counts / cur_counts.sum(), EMPTY_BIN_FLOOR)
    return float(np.sum((q - p) * np.log(q / p)))


def binned_oracle(ref_counts: np.ndarray, cur_counts: np.ndarray) -> dict[str, float]:
    shares = np.maximum(ref_counts / ref_counts.sum(), EMPTY_BIN_FLOOR)
    expected = cur_counts.sum() * shares / shares.sum()
    chi = chisquare(cur_counts, expected)
    return {
        "psi": psi(ref_counts, cur_counts),
        "js": float(jensenshannon(ref_counts, cur_counts, base=2)),
        "chi2": float(chi.statistic),
        "chi2_p": float(chi.pvalue),
    }


def category_counts(ref: pd.Series, cur: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    cats = sorted(set(ref) | set(cur))
    return (
        np.array([(ref == c).sum() for c in cats], dtype=float),
        np.array([(cur == c).sum() for c in cats], dtype=float),
    )


# -- the stack --------------------------------------------------------------------------------


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    with fast_stack(monkeypatch, PROJECT) as s:
        yield s


def log_current(mon: neurocloak.Monitor, cur: pd.DataFrame, score: np.ndarray, pred: np.ndarray,
                truth: np.ndarray) -> None:
    names = np.array(CLASSES, dtype=object)
    batch = slice(0, N_BATCH)
    mon.log_batch(cur.iloc[batch], names[pred[batch]], labels=names[truth[batch]], scores=score[batch],
                  ids=[f"b{i}" for i in range(N_BATCH)])
    # The rest row by row, as plain Python values (the `log` fast path).
    records = cur.iloc[N_BATCH:].to_dict("records")
    for i, row in enumerate(records, start=N_BATCH):
        mon.log(row, CLASSES[pred[i]], label=CLASSES[truth[i]], id=f"r{i}",
                scores=[1.0 - float(score[i]), float(score[i])])


def test_collector_evaluation_matches_oracles(stack: Stack) -> None:
    rng = np.random.default_rng(20261129)
    ref = make_frame(rng, N_REF, current=False)
    cur = make_frame(rng, N_BATCH + N_ROWS, current=True)
    _, ref_pred, ref_truth = outcomes(rng, ref)  # set_reference takes no scores
    score, pred, truth = outcomes(rng, cur)

    names = np.array(CLASSES, dtype=object)
    with neurocloak.Monitor(project=PROJECT, model=MODEL, version=VERSION, environment=ENVIRONMENT,
                            task="binary", classes=CLASSES, features=SCHEMA, sensitive=["group"],
                            window_seconds=WINDOW_S, agent=stack.agent_uds, seed=7) as mon:
        mon.set_reference(ref, predictions=names[ref_pred], labels=names[ref_truth])
        wait_for_window_start(WINDOW_S)
        started = time.time()
        log_current(mon, cur, score, pred, truth)
        assert time.time() - started < WINDOW_S / 2, "logging too slow to fit one window"
        assert mon.shutdown(10.0), "the agent did not take every window in time"
        stats = mon.stats()
    assert stats["dropped"] == 0 and stats["sent"] == stats["delivered"], stats
    window_start_ms = int(started // WINDOW_S * WINDOW_S * 1000)

    evaluation = wait_for(
        "the window's evaluation",
        lambda: stack.latest_evaluations(MODEL, version=VERSION).get(window_start_ms),
        timeout=30.0,
    )
    result = evaluation["evaluation"]
    assert result["rows"] == N_BATCH + N_ROWS, "the current rows did not all land in one window"
    assert result["baseline"] == "reference"
    check_drift(result["drift"], ref, cur, names[ref_pred], names[pred])
    check_performance(result["performance"], score, pred, truth)
    check_fairness(result["fairness"], cur["group"].to_numpy(), pred, truth)


def evaluated(section: dict[str, Any]) -> Any:
    assert section["status"] == "evaluated", section
    return section["result"]


def close(reported: float | None, oracle: float, tol: float, what: str) -> None:
    assert reported is not None, f"{what}: not reported (oracle {oracle})"
    assert math.isclose(reported, oracle, rel_tol=0.0, abs_tol=tol), \
        f"{what}: collector {reported!r}, oracle {oracle!r}, |diff| {abs(reported - oracle):.3g} > {tol}"


def check_binned(got: dict[str, Any], oracle: dict[str, float], name: str) -> None:
    assert got["binning"] == "exact", f"{name}: bins not exact ({got['binning']})"
    close(got["psi"]["value"], oracle["psi"], EXACT, f"{name} PSI")
    close(got["jensen_shannon"], oracle["js"], EXACT, f"{name} Jensen-Shannon")
    close(got["chi_square"]["statistic"], oracle["chi2"], EXACT * max(1.0, oracle["chi2"]), f"{name} chi-square")
    close(got["chi_square"]["p_value"], oracle["chi2_p"], EXACT, f"{name} chi-square p")


def check_drift(section: dict[str, Any], ref: pd.DataFrame, cur: pd.DataFrame, ref_pred: np.ndarray,
                cur_pred: np.ndarray) -> None:
    drift = evaluated(section)
    by_name = {f["feature"]: f for f in drift["features"]}
    assert sorted(by_name) == sorted(SCHEMA), drift["skipped"]
    for name in NUMERIC:
        got, r, c = by_name[name], ref[name].to_numpy(), cur[name].to_numpy()
        edges = decile_edges(r)
        check_binned(got, binned_oracle(bin_counts(r, edges), bin_counts(c, edges)), name)
        # KLL sketches: the exact statistic must lie within the bound the collector reports.
        ks = got["ks"]
        close(ks["statistic"], float(ks_2samp(r, c).statistic), ks["error_bound"] + ROUNDING, f"{name} KS D")
        w = got["wasserstein"]
        close(w["normalized"], wasserstein_distance(r, c) / r.std(), w["normalized_error_bound"] + ROUNDING,
              f"{name} Wasserstein / std")
    for name in CATEGORICAL:
        check_binned(by_name[name], binned_oracle(*category_counts(ref[name], cur[name])), name)
    check_binned(drift["prediction"], binned_oracle(*category_counts(pd.Series(ref_pred), pd.Series(cur_pred))),
                 "prediction")
    # The known shifts, as the default test (Wasserstein / JS at 0.1 for 4000 reference rows) sees them.
    drifted = {name for name, f in by_name.items() if f["drifted"]}
    assert drifted == {"shifted", "scaled", "region"}, drifted
    assert drift["dataset_drift"] is True  # 3 of 6 features: the 50 % rule


def check_performance(section: dict[str, Any], score: np.ndarray, pred: np.ndarray, truth: np.ndarray) -> None:
    got = evaluated(section)["current"]
    assert got["labelled"] == len(truth)
    close(got["accuracy"], accuracy_score(truth, pred), RATIO, "accuracy")
    close(got["precision"], precision_score(truth, pred, zero_division=0), RATIO, "precision")
    close(got["recall"], recall_score(truth, pred, zero_division=0), RATIO, "recall")
    close(got["f1"], f1_score(truth, pred, zero_division=0), RATIO, "F1")
    close(got["macro_f1"], f1_score(truth, pred, average="macro", zero_division=0), RATIO, "macro F1")
    close(got["log_loss"], log_loss(truth, score), EXACT, "log loss")
    # 100-bin score histograms: pairs sharing a bin count ½, bounded by the reported error.
    close(got["roc_auc"], roc_auc_score(truth, score), got["roc_auc_error_bound"] + ROUNDING, "ROC AUC")


def check_fairness(section: dict[str, Any], group: np.ndarray, pred: np.ndarray, truth: np.ndarray) -> None:
    attrs = {a["attribute"]: a for a in evaluated(section)["attributes"]}
    got = attrs["group"]
    kw = {"y_true": truth, "y_pred": pred, "sensitive_features": group}
    close(got["demographic_parity_difference"], demographic_parity_difference(**kw), RATIO, "DP difference")
    close(got["demographic_parity_ratio"], demographic_parity_ratio(**kw), RATIO, "DP ratio")
    close(got["equalized_odds_difference"], equalized_odds_difference(**kw), RATIO, "equalized odds difference")
    # Group "b" has the stricter threshold: the gap the data were built with must show.
    rates = {g["group"]: g["selection_rate"] for g in got["groups"]}
    assert rates["group=a"] > rates["group=b"], rates
    assert got["four_fifths_violation"] is True
