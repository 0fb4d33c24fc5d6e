"""A nightly batch job that scores loan applications in chunks, and the follow-up job that
reports which loans defaulted weeks later — both monitored by NeuroCloak.

    # tonight: score the batch, write the scores, log every chunk with log_batch
    python score.py score --rows 200000 --chunk 50000 --out scores.csv
    # weeks later, another process: log the outcomes by prediction id with log_labels
    python score.py labels --scores scores.csv

Both commands print one JSON line (what was logged and the SDK's delivery counters) and exit
non-zero if anything was dropped on the way to the agent.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import neurocloak

NUMERIC = ["amount", "term_months", "income", "debt_to_income", "credit_lines"]
CATEGORICAL = ["purpose", "home"]
PURPOSES = ["car", "home_improvement", "debt_consolidation", "education", "other"]
HOMES = ["rent", "own", "mortgage"]
CLASSES = ["repaid", "defaulted"]
# A default probability this high declines the application; the label is still logged, since
# the job scores for a risk report, not an approval decision.
THRESHOLD = 0.5


def applications(rng: np.random.Generator, n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "amount": rng.lognormal(9.5, 0.6, n),
            "term_months": rng.choice([12.0, 24.0, 36.0, 60.0], n),
            "income": rng.lognormal(10.8, 0.4, n),
            "debt_to_income": rng.beta(2, 6, n),
            "credit_lines": rng.poisson(5, n).astype(float),
            # Categoricals as pandas Categorical: the SDK reads codes + categories, no per-row str.
            "purpose": pd.Categorical(rng.choice(PURPOSES, n), categories=PURPOSES),
            "home": pd.Categorical(rng.choice(HOMES, n), categories=HOMES),
        }
    )


def default_probability(df: pd.DataFrame) -> np.ndarray:
    """The ground truth the synthetic world follows (unknown to the model)."""
    z = (-2.0 + 3.0 * df["debt_to_income"] + 0.8 * np.log(df["amount"] / df["income"] * 10)
         + 0.01 * df["term_months"] - 0.3 * (df["home"] == "own"))
    return np.asarray(1 / (1 + np.exp(-z)))


def design(df: pd.DataFrame) -> np.ndarray:
    one_hot = pd.get_dummies(df[CATEGORICAL], dtype=float)
    return np.column_stack([df[NUMERIC].to_numpy(), one_hot.to_numpy()])


def monitor(window_seconds: float) -> neurocloak.Monitor:
    return neurocloak.Monitor(
        project=os.environ.get("NEUROCLOAK_PROJECT", "lending"),
        model="default-risk",
        version="v3",
        environment="batch",
        task="binary",
        classes=CLASSES,
        features={**{n: "numeric" for n in NUMERIC}, **{n: "categorical" for n in CATEGORICAL}},
        window_seconds=window_seconds,
        # agent: $NEUROCLOAK_AGENT
    )


def finish(mon: neurocloak.Monitor, summary: dict[str, object]) -> int:
    delivered = mon.shutdown(timeout=30.0)
    stats = mon.stats()
    summary.update(stats=stats, flushed=delivered)
    print(json.dumps(summary), flush=True)
    return 0 if delivered and stats["dropped"] == 0 else 1


def score(args: argparse.Namespace) -> int:
    rng = np.random.default_rng(args.seed)
    train = applications(rng, 20_000)
    y = (rng.random(len(train)) < default_probability(train)).astype(int)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    model.fit(design(train), y)

    mon = monitor(args.window_seconds)
    train_scores = model.predict_proba(design(train))[:, 1]
    mon.set_reference(train, predictions=np.array(CLASSES)[(train_scores >= THRESHOLD).astype(int)],
                      labels=np.array(CLASSES)[y])

    batch = applications(rng, args.rows)
    outcome = (rng.random(args.rows) < default_probability(batch)).astype(int)
    ids = np.array([f"app-{args.seed}-{i:08d}" for i in range(args.rows)])
    scored = []
    started = time.perf_counter()
    for lo in range(0, args.rows, args.chunk):
        chunk = batch.iloc[lo : lo + args.chunk]
        t = time.perf_counter()
        p = model.predict_proba(design(chunk))[:, 1]
        per_row = (time.perf_counter() - t) / len(chunk)
        predictions = np.array(CLASSES)[(p >= THRESHOLD).astype(int)]
        mon.log_batch(chunk, predictions, ids=ids[lo : lo + args.chunk], scores=p,
                      latencies=np.full(len(chunk), per_row))
        scored.append(pd.DataFrame({"id": ids[lo : lo + args.chunk], "probability": p,
                                    "prediction": predictions,
                                    # Kept only so the labels job can replay "the future".
                                    "outcome": np.array(CLASSES)[outcome[lo : lo + args.chunk]]}))
    pd.concat(scored).to_csv(args.out, index=False)
    return finish(mon, {"job": "score", "rows": args.rows, "seconds": round(time.perf_counter() - started, 3)})


def labels(args: argparse.Namespace) -> int:
    scores = pd.read_csv(args.scores)
    # Only some outcomes are known so far (loans still running): a deterministic share of them.
    known = scores.sample(frac=args.share, random_state=args.seed)
    mon = monitor(args.window_seconds)
    ids = known["id"].tolist()
    outcomes = known["outcome"].tolist()
    mon.log_labels(ids, outcomes)
    accuracy = float((known["prediction"] == known["outcome"]).mean()) if len(known) else float("nan")
    return finish(mon, {"job": "labels", "labels": len(ids), "accuracy": accuracy})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--window-seconds", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=1)
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("score", help="score a batch and log it")
    s.add_argument("--rows", type=int, default=100_000)
    s.add_argument("--chunk", type=int, default=25_000)
    s.add_argument("--out", default="scores.csv")
    s.set_defaults(run=score)
    lab = sub.add_parser("labels", help="log known outcomes for earlier scores")
    lab.add_argument("--scores", default="scores.csv")
    lab.add_argument("--share", type=float, default=0.5)
    lab.set_defaults(run=labels)
    args = ap.parse_args(argv)
    if getattr(args, "rows", 1) <= 0 or getattr(args, "chunk", 1) <= 0:
        ap.error("--rows and --chunk must be positive")
    if not 0.0 <= getattr(args, "share", 0.0) <= 1.0:
        ap.error("--share must be within [0, 1]")
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
