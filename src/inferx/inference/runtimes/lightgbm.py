"""LightGBM models saved as LightGBM's text format (``Booster.save_model``)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inferx.inference.runtimes.base import LoadedModel, ModelLoadError, OutputKind, require

_CLASSIFIERS = ("binary", "multiclass", "multiclassova")
_OTHER = ("lambdarank", "rank_xendcg", "custom")


@dataclass(eq=False, kw_only=True)
class LightGBMModel(LoadedModel):
    booster: Any
    objective: str

    def predict(self, X: np.ndarray) -> np.ndarray:
        raw = self._raw(X)
        if self.output_kind != "classifier":
            return raw
        index = raw.argmax(axis=1) if raw.ndim == 2 else (raw > 0.5).astype(np.intp)
        return np.asarray(self.classes)[index]

    def predict_proba(self, X: np.ndarray) -> np.ndarray | None:
        if not self.has_predict_proba:
            return None
        raw = self._raw(X)
        return raw if raw.ndim == 2 else np.column_stack([1 - raw, raw])

    @property
    def has_predict_proba(self) -> bool:
        return self.output_kind == "classifier"

    def describe(self) -> dict[str, Any]:
        return {"objective": self.objective}

    def _raw(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.predict(self.prepare(X), num_threads=1))


def load(path: str, *, extra_allowed: Iterable[str] = ()) -> LightGBMModel:
    lgb = require("lightgbm", "lightgbm")
    try:
        text = Path(path).read_text(encoding="utf-8")
        booster = lgb.Booster(model_str=text)
    except (UnicodeDecodeError, lgb.basic.LightGBMError) as exc:
        raise ModelLoadError(f"LightGBM cannot load the model: {exc}") from exc
    objective = _header(text, "objective") or "custom"
    kind = _output_kind(objective)
    n_classes = max(int(_header(text, "num_class") or 1), 2)
    names = booster.feature_name()
    generic = all(re.fullmatch(r"Column_\d+", name) for name in names)
    return LightGBMModel(
        framework="lightgbm",
        library="lightgbm",
        library_version=str(lgb.__version__),
        estimator_class="lightgbm.Booster",
        classes=list(range(n_classes)) if kind == "classifier" else None,
        n_features=int(booster.num_feature()),
        feature_names=None if generic else list(names),
        output_kind=kind,
        nbytes_estimate=len(text),
        booster=booster,
        objective=objective,
    )


def _header(text: str, key: str) -> str | None:
    match = re.search(rf"^{key}=(\S+)", text, re.MULTILINE)
    return match.group(1) if match else None


def _output_kind(objective: str) -> OutputKind:
    if objective in _CLASSIFIERS:
        return "classifier"
    if objective in _OTHER:
        return "other"
    return "regressor"
