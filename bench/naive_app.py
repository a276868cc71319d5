"""The naive peer: FastAPI that ``joblib.load``s the models once and calls ``predict`` per request.

Both variants live in one app, each measured on its own: ``POST /def/{model}`` is a plain
``def`` route (FastAPI runs it in its thread pool), ``POST /async/{model}`` an ``async def``
route (``predict`` runs on, and blocks, the event loop). Body: ``{"input": [[...], ...]}``.

Run: BENCH_MODEL_DIR=dir uvicorn naive_app:app --app-dir bench --loop uvloop --http httptools
(``dir`` holds ``lr.joblib`` and ``rf.joblib``.)
"""

from __future__ import annotations

import os
from pathlib import Path

import joblib
import numpy as np
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

MODELS = {
    path.stem: joblib.load(path)
    for path in sorted(Path(os.environ["BENCH_MODEL_DIR"]).glob("*.joblib"))
}

app = FastAPI()


class Body(BaseModel):
    input: list[list[float]]


def _predict(name: str, body: Body) -> dict[str, list]:
    model = MODELS.get(name)
    if model is None:
        raise HTTPException(404, "no such model")
    return {"prediction": model.predict(np.asarray(body.input)).tolist()}


@app.post("/def/{name}")
def predict_def(name: str, body: Body) -> dict[str, list]:
    return _predict(name, body)


@app.post("/async/{name}")
async def predict_async(name: str, body: Body) -> dict[str, list]:
    return _predict(name, body)
