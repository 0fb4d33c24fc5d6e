"""A churn model served by FastAPI under gunicorn, every prediction logged through NeuroCloak.

The model is trained at import on synthetic customers (no download). With gunicorn's
``--preload`` the import — training, the ``Monitor`` and its reference profile — happens once
in the master, and the forked workers inherit it: the SDK notices the fork and gives each
worker its own empty queue and shipping thread. The agent sidecar merges the workers' windows.

    NEUROCLOAK_AGENT=unix:///tmp/neurocloak/agent.sock gunicorn -c gunicorn.conf.py app:app
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Annotated, Literal

import numpy as np
import pandas as pd
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder

import neurocloak

PLANS = ["basic", "plus", "premium"]
REGIONS = ["north", "south", "east", "west"]
NUMERIC = ["tenure_months", "monthly_spend", "support_tickets"]
CATEGORICAL = ["plan", "region"]
CLASSES = ["stays", "churns"]

# Finite, bounded numbers: FastAPI answers 422 for NaN, ±inf, strings or absurd values, so the
# model never sees them. A missing value is allowed (the model handles it) and NeuroCloak
# counts it in the window's data-quality counters.
Finite = Annotated[float, Field(allow_inf_nan=False, ge=-1e9, le=1e9)]


class Customer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenure_months: Finite | None = None
    monthly_spend: Finite | None = None
    support_tickets: Finite | None = None
    plan: Literal["basic", "plus", "premium"] | None = None
    region: Annotated[str, Field(max_length=64)] | None = None


class Scored(BaseModel):
    id: str
    prediction: str
    probability: float
    worker: int


class Labels(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: Annotated[list[Annotated[str, Field(min_length=1, max_length=128)]], Field(max_length=10_000)]
    labels: list[Literal["stays", "churns"]]


def customers(rng: np.random.Generator, n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "tenure_months": rng.gamma(2.0, 12.0, n),
            "monthly_spend": rng.lognormal(3.5, 0.4, n),
            "support_tickets": rng.poisson(1.5, n).astype(float),
            "plan": rng.choice(PLANS, n, p=[0.5, 0.3, 0.2]),
            "region": rng.choice(REGIONS, n),
        }
    )


def churn(df: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    logit = -1.0 - 0.05 * df["tenure_months"] + 0.6 * df["support_tickets"] + 0.5 * (df["plan"] == "basic")
    return (rng.random(len(df)) < 1 / (1 + np.exp(-logit))).astype(int)


def train(seed: int = 7) -> tuple[Pipeline, pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = customers(rng, 5_000)
    y = churn(x, rng)
    encode = ColumnTransformer(
        [("cat", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL)], remainder="passthrough"
    )
    # Gradient boosting handles missing numerics natively, so a request may omit any of them.
    model = make_pipeline(encode, HistGradientBoostingClassifier(max_iter=50, random_state=seed))
    model.fit(x, y)
    return model, x, y


model, train_x, train_y = train()

monitor = neurocloak.Monitor(
    project=os.environ.get("NEUROCLOAK_PROJECT", "shop"),
    model="churn",
    version=os.environ.get("MODEL_VERSION", "2024-06-01"),
    environment=os.environ.get("MODEL_ENVIRONMENT", "production"),
    task="binary",
    classes=CLASSES,
    features={**{n: "numeric" for n in NUMERIC}, **{n: "categorical" for n in CATEGORICAL}},
    sensitive=["region"],
    window_seconds=float(os.environ.get("NEUROCLOAK_WINDOW_SECONDS", "60")),
    # agent: $NEUROCLOAK_AGENT, the sidecar's Unix socket by default
)
monitor.set_reference(train_x, predictions=np.array(CLASSES)[model.predict(train_x)],
                      labels=np.array(CLASSES)[train_y])

app = FastAPI(title="churn model")


@app.exception_handler(RequestValidationError)
async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
    # FastAPI's default 422 echoes the offending input, and a NaN or infinity in it cannot be
    # written as JSON (the client would get a 500); report where and why, without the value.
    errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
              for e in exc.errors()]
    return JSONResponse(status_code=422, content={"detail": errors})


@app.get("/healthz")
def healthz() -> dict[str, object]:
    return {"ok": True, "worker": os.getpid(), "neurocloak": monitor.stats()}


@app.post("/predict")
def predict(customer: Customer) -> Scored:
    start = time.perf_counter()
    row = customer.model_dump()
    frame = pd.DataFrame([row], columns=NUMERIC + CATEGORICAL).astype(
        {n: float for n in NUMERIC}
    )
    try:
        p = float(model.predict_proba(frame)[0, 1])
    except Exception:
        monitor.log_error(latency=time.perf_counter() - start)
        raise
    label = CLASSES[int(p >= 0.5)]
    request_id = uuid.uuid4().hex
    # None values are recorded as missing, not dropped: they are the data-quality signal.
    monitor.log(row, label, id=request_id, scores=[1 - p, p], latency=time.perf_counter() - start)
    return Scored(id=request_id, prediction=label, probability=p, worker=os.getpid())


@app.post("/labels")
def labels(body: Labels) -> dict[str, int]:
    """Ground truth for earlier predictions (by the ids /predict returned), e.g. from a CRM job."""
    if len(body.ids) != len(body.labels):
        raise HTTPException(422, f"{len(body.ids)} ids but {len(body.labels)} labels")
    monitor.log_labels(body.ids, body.labels)
    return {"accepted": len(body.ids)}
