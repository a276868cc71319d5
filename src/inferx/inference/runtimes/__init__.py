"""Turn a model file into a LoadedModel; each framework's library is imported only when used."""

from __future__ import annotations

import importlib
from collections.abc import Iterable

from inferx.inference.runtimes.base import (
    InputError,
    LoadedModel,
    MissingExtra,
    ModelLoadError,
)

FRAMEWORKS = ("sklearn", "skops", "onnx", "xgboost", "lightgbm", "torchscript")

__all__ = [
    "FRAMEWORKS",
    "InputError",
    "LoadedModel",
    "MissingExtra",
    "ModelLoadError",
    "load_model",
]


def load_model(path: str, framework: str, *, extra_allowed: Iterable[str] = ()) -> LoadedModel:
    """Load the model file at `path` with the runtime of `framework` (as detect_framework says).

    `extra_allowed` widens the pickle/skops allow-list ("module.Name"); it is operator
    configuration and must never come from a client.
    """
    if framework not in FRAMEWORKS:
        raise ModelLoadError(f"unknown framework {framework!r}")
    runtime = importlib.import_module(f"inferx.inference.runtimes.{framework}")
    model: LoadedModel = runtime.load(path, extra_allowed=tuple(extra_allowed))
    return model
