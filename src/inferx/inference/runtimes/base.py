"""What every runtime returns, and the errors loading a model file can raise."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Literal

import numpy as np

OutputKind = Literal["classifier", "regressor", "other"]
FeatureDtype = Literal["float", "int", "string", "bool"]


class ModelLoadError(Exception):
    """A model file could not be turned into a callable model; ``detail`` says why."""

    kind = "load_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class MissingExtra(ModelLoadError):
    """The framework's library is not installed; ``pip install inferx[extra]`` fixes it."""

    kind = "missing_extra"

    def __init__(self, extra: str) -> None:
        super().__init__(f"this model needs an optional dependency: install inferx[{extra}]")
        self.extra = extra


class InputError(ValueError):
    """The input array does not fit the model (wrong rank or number of features)."""


def require(module: str, extra: str) -> ModuleType:
    """Import an optional framework lazily, or raise MissingExtra naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(extra) from exc


@dataclass(eq=False, kw_only=True)
class LoadedModel(ABC):
    """A loaded model behind one interface: 2-D array in, 1-D (or 2-D) array out."""

    framework: str
    library: str
    library_version: str
    estimator_class: str
    classes: list[Any] | None = None
    n_features: int | None = None
    feature_names: list[str] | None = None
    feature_dtypes: list[FeatureDtype] | None = None
    input_dtype: np.dtype[Any] = field(default_factory=lambda: np.dtype(np.float64))
    output_kind: OutputKind = "other"
    nbytes_estimate: int = 0

    @abstractmethod
    def predict(self, X: np.ndarray) -> np.ndarray: ...

    def predict_proba(self, X: np.ndarray) -> np.ndarray | None:
        return None

    @property
    def has_predict_proba(self) -> bool:
        return False

    def describe(self) -> dict[str, Any]:
        """Framework-specific metadata (JSON-serialisable) added to the model's record."""
        return {}

    def sample_input(self, rows: int = 2) -> np.ndarray | None:
        """Rows the model must accept, used to check an upload really predicts."""
        if self.n_features is None:
            return None
        if self.input_dtype == np.dtype(object):
            return np.zeros((rows, self.n_features)).astype(object)
        return np.zeros((rows, self.n_features), dtype=self.input_dtype)

    def prepare(self, X: np.ndarray) -> np.ndarray:
        """Check the shape and cast to the dtype the runtime wants."""
        X = np.asarray(X)
        if X.ndim != 2:
            raise InputError(f"expected a 2-D array of rows, got {X.ndim} dimension(s)")
        if self.n_features is not None and X.shape[1] != self.n_features:
            raise InputError(f"expected {self.n_features} features per row, got {X.shape[1]}")
        if X.dtype == self.input_dtype or self.input_dtype == np.dtype(object):
            return X
        try:
            return X.astype(self.input_dtype)
        except (TypeError, ValueError) as exc:
            raise InputError(f"input cannot be converted to {self.input_dtype}: {exc}") from exc
