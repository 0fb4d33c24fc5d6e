"""Simulated credit-scoring model service for the NeuroCloak demo.

A parent process trains a logistic-regression model on synthetic applicants, records the
training data as the reference profile, then forks worker processes (as gunicorn does with
``--preload``). Each worker "serves" a stream of applicants and logs every prediction through
the real Python SDK; ground-truth labels arrive later (``log_labels``), as they do in lending.

At ``--drift-at`` seconds two things break at once, on purpose:
* data drift: a new acquisition channel brings younger applicants with higher ``income``,
  more debt, shorter credit histories and bigger loans;
* a fairness regression: a bad model update penalises applicants with ``sex=F``.

    python simulate.py --agent unix:///tmp/neurocloak/agent.sock --duration 120 --drift-at 60
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import uuid
from collections import deque
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

import neurocloak

NUMERIC = ["income", "age", "debt_ratio", "credit_history_months", "num_accounts", "loan_amount"]
CATEGORICAL = ["employment", "region", "sex"]
EMPLOYMENT = ["salaried", "self_employed", "unemployed", "retired"]
REGION = ["north", "south", "east", "west"]


def applicants(rng: np.random.Generator, n: int, drifted: bool) -> dict[str, np.ndarray]:
    income = rng.lognormal(mean=np.log(50_000), sigma=0.35, size=n)
    debt = rng.beta(2, 5, size=n)
    age = rng.integers(21, 75, size=n).astype(float)
    history = rng.gamma(4, 24, size=n)
    loan = rng.lognormal(mean=np.log(15_000), sigma=0.5, size=n)
    if drifted:
        # A new acquisition channel: younger applicants with higher incomes, more debt, shorter
        # credit histories and bigger loans than anything in the training data.
        income = income * 1.5
        debt = np.clip(debt + 0.15, 0, 1)
        age = np.clip(age - 12, 18, None)
        history = history * 0.5
        loan = loan * 1.8
    return {
        "income": income,
        "age": age,
        "debt_ratio": debt,
        "credit_history_months": history,
        "num_accounts": rng.poisson(4, size=n).astype(float),
        "loan_amount": loan,
        "employment": rng.choice(EMPLOYMENT, size=n, p=[0.6, 0.2, 0.1, 0.1]),
        "region": rng.choice(REGION, size=n),
        "sex": rng.choice(["F", "M"], size=n),
    }


def design(x: dict[str, np.ndarray]) -> np.ndarray:
    """Model inputs: scaled numerics plus one-hot employment (sex is deliberately not used)."""
    cols = [
        np.log(x["income"]) - np.log(50_000),
        (x["age"] - 45) / 15,
        (x["debt_ratio"] - 0.3) / 0.15,
        (x["credit_history_months"] - 96) / 48,
        (x["num_accounts"] - 4) / 2,
        np.log(x["loan_amount"]) - np.log(15_000),
    ]
    cols += [(x["employment"] == e).astype(float) for e in EMPLOYMENT[1:]]
    return np.column_stack(cols)


def true_repay_probability(x: dict[str, np.ndarray]) -> np.ndarray:
    z = design(x) @ np.array([1.2, 0.3, -1.5, 0.6, 0.1, -0.8, -0.3, -1.5, 0.2]) + 1.0
    return 1 / (1 + np.exp(-z))


def train(rng: np.random.Generator) -> tuple[LogisticRegression, dict[str, np.ndarray], np.ndarray]:
    x = applicants(rng, 20_000, drifted=False)
    y = (rng.random(20_000) < true_repay_probability(x)).astype(int)
    model = LogisticRegression(max_iter=500).fit(design(x), y)
    return model, x, y


def serve(worker: int, model: LogisticRegression, monitor: neurocloak.Monitor, args: argparse.Namespace) -> None:
    rng = np.random.default_rng(1000 + worker)
    pending_labels: deque[tuple[float, list[str], list[str]]] = deque()
    interval = args.batch / args.rate_per_worker
    served = 0
    while time.time() < args.end:
        tick = time.time()
        drifted = tick >= args.drift_time
        x = applicants(rng, args.batch, drifted)
        t0 = time.perf_counter()
        p = model.predict_proba(design(x))[:, 1]
        if drifted:
            # The "bad model update": a penalty on one group that the model never should have learnt.
            p = np.where(x["sex"] == "F", p * 0.55, p)
        latency = (time.perf_counter() - t0) / args.batch
        approved = np.where(p >= 0.5, "approve", "decline")
        ids = [uuid.uuid4().hex for _ in range(args.batch)]
        for i in range(args.batch):
            features = {k: (float(v[i]) if k in NUMERIC else str(v[i])) for k, v in x.items()}
            monitor.log(features, str(approved[i]), id=ids[i], latency=latency,
                        scores=[1.0 - float(p[i]), float(p[i])])
        served += args.batch
        # Ground truth (repaid or not) becomes known a few seconds later.
        truth = rng.random(args.batch) < true_repay_probability(x)
        pending_labels.append((tick + args.label_delay, ids, ["approve" if t else "decline" for t in truth]))
        while pending_labels and pending_labels[0][0] <= time.time():
            _, lid, lab = pending_labels.popleft()
            monitor.log_labels(lid, lab)
        time.sleep(max(0.0, interval - (time.time() - tick)))
    while pending_labels:
        _, lid, lab = pending_labels.popleft()
        monitor.log_labels(lid, lab)
    monitor.flush(10.0)
    stats = monitor.stats()
    print(f"worker {worker}: served {served} predictions; sdk stats {stats}", flush=True)
    monitor.shutdown(10.0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agent", default=os.environ.get("NEUROCLOAK_AGENT"))
    ap.add_argument("--project", default="demo")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--window-seconds", type=float, default=10.0)
    ap.add_argument("--duration", type=float, default=120.0)
    ap.add_argument("--drift-at", type=float, default=60.0)
    ap.add_argument("--rate-per-worker", type=float, default=200.0)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--label-delay", type=float, default=3.0)
    ap.add_argument("--timeline", help="write the drift and end times (epoch ms) to this JSON file")
    args = ap.parse_args()

    rng = np.random.default_rng(7)
    model, x_ref, y_ref = train(rng)
    monitor = neurocloak.Monitor(
        project=args.project,
        model="credit-scoring",
        version="v1",
        environment="demo",
        task="binary",
        features={**{k: "numeric" for k in NUMERIC}, **{k: "categorical" for k in CATEGORICAL}},
        classes=["decline", "approve"],
        sensitive=["sex"],
        window_seconds=args.window_seconds,
        agent=args.agent,
    )
    p_ref = model.predict_proba(design(x_ref))[:, 1]
    monitor.set_reference(
        {k: v for k, v in x_ref.items()},
        predictions=np.where(p_ref >= 0.5, "approve", "decline"),
        labels=np.where(y_ref == 1, "approve", "decline"),
    )
    monitor.flush(10.0)

    # Drift and the end fall on window boundaries, so every window is wholly before or after.
    w = args.window_seconds
    start = time.time()
    args.drift_time = math.ceil((start + args.drift_at) / w) * w
    args.end = math.ceil((start + args.duration) / w) * w
    if args.timeline:
        Path(args.timeline).write_text(json.dumps({"drift_ms": int(args.drift_time * 1000), "end_ms": int(args.end * 1000)}))
    print(f"model service: {args.workers} workers, drift and fairness regression at +{args.drift_at:.0f}s", flush=True)
    children = []
    for w in range(args.workers):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                serve(w, model, monitor, args)
            except BaseException as e:  # noqa: BLE001 - report and exit the worker
                print(f"worker {w} failed: {e!r}", file=sys.stderr, flush=True)
                code = 1
            finally:
                os._exit(code)
        children.append(pid)
    failed = 0
    for pid in children:
        _, status = os.waitpid(pid, 0)
        failed += int(status != 0)
    monitor.shutdown(10.0)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
