#!/usr/bin/env python3
"""Test vectors for neurocloak-evaluate, computed by scipy / scikit-learn / fairlearn.

Writes vectors.json next to this file. Each case holds the *inputs as the wire carries them*
(bin counts, category counts, raw samples for the KLL tests, confusion matrices, score
histograms, error sums, per-group confusion) and the *expected values from the reference
libraries*. The Rust tests (tests/oracle.rs) rebuild the protobuf messages from the inputs and
compare. Deterministic: a fixed seed and sorted keys, so `--check` can verify the committed
file is what this script produces.

Run: $NEUROCLOAK_VENV/bin/python collector/evaluate/oracle/gen_vectors.py [--check]
"""

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    equal_opportunity_difference,
    equalized_odds_difference,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from scipy import special, stats
from scipy.spatial.distance import jensenshannon
from sklearn import metrics

FLOOR = 1e-4
SCORE_BINS = 100
rng = np.random.default_rng(20261129)


def psi(ref, cur):
    p = np.asarray(ref, float) / np.sum(ref)
    q = np.asarray(cur, float) / np.sum(cur)
    p = np.where(p < FLOOR, FLOOR, p)
    q = np.where(q < FLOOR, FLOOR, q)
    return float(np.sum((q - p) * np.log(q / p)))


def chi_square(ref, cur):
    p = np.asarray(ref, float) / np.sum(ref)
    p = np.maximum(p, FLOOR)
    p = p / p.sum()
    obs = np.asarray(cur, float)
    res = stats.chisquare(obs, f_exp=p * obs.sum())
    return {"statistic": float(res.statistic), "p_value": float(res.pvalue), "dof": len(obs) - 1}


def binned_case(name, ref, cur, labels=None):
    return {
        "name": name,
        "labels": labels,
        "reference": [int(v) for v in ref],
        "current": [int(v) for v in cur],
        "psi": psi(ref, cur),
        "jensen_shannon": float(jensenshannon(np.asarray(ref, float), np.asarray(cur, float), base=2)),
        "chi_square": chi_square(ref, cur),
    }


def drift_binned():
    out = []
    ref_sample = rng.normal(0, 1, 5000)
    edges = np.quantile(ref_sample, np.linspace(0, 1, 11))

    def counts(x):
        # counts[0] = (-inf, e0), counts[i] = [e(i-1), e(i)), last = [e_last, +inf)
        idx = np.searchsorted(edges, x, side="right")
        return np.bincount(idx, minlength=len(edges) + 1)

    ref_counts = counts(ref_sample)
    for mu, sd in [(0.0, 1.0), (0.3, 1.0), (1.0, 1.5), (-2.0, 0.5)]:
        cur = rng.normal(mu, sd, 3000)
        case = binned_case(f"normal mu={mu} sd={sd}", ref_counts, counts(cur))
        case["edges"] = [float(e) for e in edges]
        out.append(case)
    cats = ["a", "b", "c", "d", "e"]
    ref = rng.multinomial(2000, [0.4, 0.3, 0.15, 0.1, 0.05])
    for shares in ([0.4, 0.3, 0.15, 0.1, 0.05], [0.2, 0.2, 0.2, 0.2, 0.2], [0.7, 0.1, 0.1, 0.1, 0.0]):
        cur = rng.multinomial(800, shares)
        out.append(binned_case(f"categorical {shares}", ref, cur, cats))
    return out


def ks_cases():
    out = []
    for n, m, mu, sd in [(600, 500, 0.0, 1.0), (800, 700, 0.5, 1.2), (300, 900, 0.0, 1.0)]:
        a = np.round(rng.normal(0, 1, n), 3)
        b = np.round(rng.normal(mu, sd, m), 3)
        d = float(stats.ks_2samp(a, b).statistic)
        ne = n * m / (n + m)
        lam = (np.sqrt(ne) + 0.12 + 0.11 / np.sqrt(ne)) * d
        out.append({
            "reference": a.tolist(),
            "current": b.tolist(),
            "ks_statistic": d,
            "ks_p_value_stephens": float(special.kolmogorov(lam)),
            "wasserstein": float(stats.wasserstein_distance(a, b)),
            "reference_std": float(np.std(a)),
        })
    return out


def histograms(y, scores, k):
    """Per class k: histogram of P(class k) for rows labelled k, and for the others."""
    bins = np.minimum((scores[:, k] * SCORE_BINS).astype(int), SCORE_BINS - 1)
    pos = np.bincount(bins[y == k], minlength=SCORE_BINS)
    neg = np.bincount(bins[y != k], minlength=SCORE_BINS)
    return pos.tolist(), neg.tolist()


def ece(y, p, n_bins=10):
    """Expected calibration error of P(class 1) in equal-width bins (right-closed last)."""
    idx = np.minimum((p * SCORE_BINS).astype(int), SCORE_BINS - 1) // (SCORE_BINS // n_bins)
    total = 0.0
    for b in range(n_bins):
        mask = idx == b
        if mask.any():
            total += abs(np.sum(y[mask]) - np.sum(p[mask])) / len(y)
    return float(total)


def classification_case(n_classes, n):
    if n_classes == 2:
        y = rng.integers(0, 2, n)
        logit = 1.6 * (y - 0.5) + rng.normal(0, 1.1, n)
        p1 = 1 / (1 + np.exp(-logit))
        scores = np.column_stack([1 - p1, p1])
    else:
        y = rng.integers(0, n_classes, n)
        raw = rng.normal(0, 1, (n, n_classes))
        raw[np.arange(n), y] += 1.3
        scores = np.exp(raw) / np.exp(raw).sum(axis=1, keepdims=True)
    pred = scores.argmax(axis=1)
    conf = metrics.confusion_matrix(y, pred, labels=list(range(n_classes)))
    clipped = np.clip(scores[np.arange(n), y], 1e-15, 1 - 1e-15)
    pos, neg = zip(*(histograms(y, scores, k) for k in range(n_classes)))
    case = {
        "n_classes": n_classes,
        "confusion": conf.flatten().tolist(),
        "positive_scores": list(pos),
        "negative_scores": list(neg),
        "log_loss_sum": float(-np.sum(np.log(clipped))),
        "scored": n,
        "accuracy": float(metrics.accuracy_score(y, pred)),
        "precision_macro": float(metrics.precision_score(y, pred, average="macro", zero_division=0)),
        "recall_macro": float(metrics.recall_score(y, pred, average="macro", zero_division=0)),
        "f1_macro": float(metrics.f1_score(y, pred, average="macro", zero_division=0)),
        "log_loss": float(metrics.log_loss(y, scores, labels=list(range(n_classes)))),
    }
    if n_classes == 2:
        case.update({
            "precision": float(metrics.precision_score(y, pred, zero_division=0)),
            "recall": float(metrics.recall_score(y, pred, zero_division=0)),
            "f1": float(metrics.f1_score(y, pred, zero_division=0)),
            "roc_auc": float(metrics.roc_auc_score(y, scores[:, 1])),
            "ece": ece(y, scores[:, 1]),
        })
    else:
        case["roc_auc"] = float(metrics.roc_auc_score(y, scores, multi_class="ovr", average="macro"))
    return case


def regression_case(n):
    y = rng.normal(50, 12, n)
    y_hat = y + rng.normal(1.0, 4.0, n)
    err = y - y_hat
    return {
        "labelled": n,
        "sum_abs_error": float(np.sum(np.abs(err))),
        "sum_sq_error": float(np.sum(err**2)),
        "sum_abs_pct_error": float(np.sum(np.abs(err) / np.abs(y))),
        "pct_count": n,
        "sum_label": float(np.sum(y)),
        "sum_label_sq": float(np.sum(y**2)),
        "mae": float(metrics.mean_absolute_error(y, y_hat)),
        "rmse": float(np.sqrt(metrics.mean_squared_error(y, y_hat))),
        "mape": float(metrics.mean_absolute_percentage_error(y, y_hat)),
        "r2": float(metrics.r2_score(y, y_hat)),
    }


def fairness_case(n):
    sex = rng.choice(["F", "M"], n, p=[0.45, 0.55])
    race = rng.choice(["A", "B", "C"], n, p=[0.5, 0.3, 0.2])
    y = rng.integers(0, 2, n)
    bias = np.where(sex == "M", 0.5, 0.0) + np.where(race == "C", -0.4, 0.0)
    pred = ((1.2 * (y - 0.5) + bias + rng.normal(0, 1, n)) > 0.2).astype(int)
    df = pd.DataFrame({"sex": sex, "race": race})
    attributes = {"sex": df[["sex"]], "race": df[["race"]], "race&sex": df[["race", "sex"]]}
    groups = {}
    for cols in (["sex"], ["race"], ["race", "sex"]):
        keys = df[cols].apply(lambda r: "&".join(f"{c}={r[c]}" for c in cols), axis=1)
        for key in sorted(keys.unique()):
            m = (keys == key).to_numpy()
            groups[key] = {
                "count": int(m.sum()),
                "confusion": metrics.confusion_matrix(y[m], pred[m], labels=[0, 1]).flatten().tolist(),
                "predicted": np.bincount(pred[m], minlength=2).tolist(),
            }
    expected = {}
    for name, sf in attributes.items():
        sf_arg = sf.iloc[:, 0] if sf.shape[1] == 1 else sf
        mf = MetricFrame(
            metrics={"selection_rate": selection_rate, "tpr": true_positive_rate, "fpr": false_positive_rate},
            y_true=y, y_pred=pred, sensitive_features=sf_arg,
        )
        by_group = {}
        for idx, row in mf.by_group.iterrows():
            idx = idx if isinstance(idx, tuple) else (idx,)
            key = "&".join(f"{c}={v}" for c, v in zip(sf.columns, idx))
            by_group[key] = {k: float(row[k]) for k in ("selection_rate", "tpr", "fpr")}
        expected[name] = {
            "demographic_parity_difference": float(demographic_parity_difference(y, pred, sensitive_features=sf_arg)),
            "demographic_parity_ratio": float(demographic_parity_ratio(y, pred, sensitive_features=sf_arg)),
            "equalized_odds_difference": float(equalized_odds_difference(y, pred, sensitive_features=sf_arg)),
            "equal_opportunity_difference": float(equal_opportunity_difference(y, pred, sensitive_features=sf_arg)),
            "groups": by_group,
        }
    return {"groups": groups, "expected": expected}


def main():
    vectors = {
        "generator": "collector/evaluate/oracle/gen_vectors.py",
        "versions": {"numpy": np.__version__, "scipy": __import__("scipy").__version__,
                     "sklearn": __import__("sklearn").__version__, "fairlearn": __import__("fairlearn").__version__},
        "drift_binned": drift_binned(),
        "ks": ks_cases(),
        "classification": [classification_case(2, 1500), classification_case(3, 1200)],
        "regression": [regression_case(800)],
        "fairness": [fairness_case(3000)],
    }
    text = json.dumps(vectors, sort_keys=True, indent=1) + "\n"
    path = Path(__file__).with_name("vectors.json")
    if "--check" in sys.argv:
        if path.read_text() != text:
            sys.exit(f"{path} differs from a fresh generation; rerun without --check")
        print(f"{path} is up to date")
        return
    path.write_text(text)
    print(f"wrote {path} ({len(text)} bytes)")


if __name__ == "__main__":
    main()
