"""XGBoost models saved in XGBoost's own JSON or UBJSON format (never pickles)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inferx.inference.runtimes.base import LoadedModel, ModelLoadError, OutputKind, require

_PROBA_OBJECTIVES = ("binary:logistic", "multi:softprob")


@dataclass(eq=False, kw_only=True)
class XGBoostModel(LoadedModel):
    booster: Any
    objective: str

    def predict(self, X: np.ndarray) -> np.ndarray:
        raw = np.asarray(self.booster.inplace_predict(self.prepare(X)))
        if self.output_kind != "classifier":
            return raw
        if raw.ndim == 2:
            index = raw.argmax(axis=1)
        elif self.objective == "binary:logistic":
            index = (raw > 0.5).astype(np.intp)
        elif self.objective == "binary:logitraw":
            index = (raw > 0).astype(np.intp)
        else:  # multi:softmax and binary:hinge already answer class indices
            index = raw.astype(np.intp)
        return np.asarray(self.classes)[index]

    def predict_proba(self, X: np.ndarray) -> np.ndarray | None:
        if not self.has_predict_proba:
            return None
        raw = np.asarray(self.booster.inplace_predict(self.prepare(X)))
        return raw if raw.ndim == 2 else np.column_stack([1 - raw, raw])

    @property
    def has_predict_proba(self) -> bool:
        return self.objective in _PROBA_OBJECTIVES

    def describe(self) -> dict[str, Any]:
        return {"objective": self.objective}


def load(path: str, *, extra_allowed: Iterable[str] = ()) -> XGBoostModel:
    xgb = require("xgboost", "xgboost")
    data = Path(path).read_bytes()
    booster = xgb.Booster()
    try:
        booster.load_model(bytearray(data))
        booster.set_param({"nthread": 1})
        learner = json.loads(booster.save_config())["learner"]
    except (xgb.core.XGBoostError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"XGBoost cannot load the model: {exc}") from exc
    objective = str(learner["objective"]["name"])
    kind = _output_kind(objective)
    n_classes = max(int(learner["learner_model_param"].get("num_class", 0)), 2)
    names = booster.feature_names
    return XGBoostModel(
        framework="xgboost",
        library="xgboost",
        library_version=str(xgb.__version__),
        estimator_class="xgboost.Booster",
        classes=list(range(n_classes)) if kind == "classifier" else None,
        n_features=int(booster.num_features()),
        feature_names=list(names) if names else None,
        input_dtype=np.dtype(np.float32),
        output_kind=kind,
        nbytes_estimate=len(data),
        booster=booster,
        objective=objective,
    )


def _output_kind(objective: str) -> OutputKind:
    if objective.startswith(("binary:", "multi:")):
        return "classifier"
    if objective.startswith(("reg:", "count:", "survival:")):
        return "regressor"
    return "other"
