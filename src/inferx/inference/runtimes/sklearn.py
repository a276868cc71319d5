"""scikit-learn (and sklearn-API) estimators from pickle/joblib files, via the allow-list loader."""

from __future__ import annotations

import importlib
import inspect
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from inferx.inference.runtimes.base import (
    FeatureDtype,
    LoadedModel,
    ModelLoadError,
    OutputKind,
    require,
)
from inferx.registry.safe_pickle import read_pickle_bytes, safe_loads

_LIBRARIES = {"sklearn": "scikit-learn", "xgboost": "xgboost", "lightgbm": "lightgbm"}


@dataclass(eq=False, kw_only=True)
class SklearnModel(LoadedModel):
    estimator: Any
    proba: bool = False
    saved_with_version: str | None = None
    # raw input column -> categories a fitted encoder knows for it
    categories: dict[int, np.ndarray] = field(default_factory=dict)
    # which of the fast paths below fits the estimator, if any (see _fast_path)
    fast: FastPath = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.fast = _fast_path(self.estimator) if self.n_features is not None else None

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = self.prepare(X)
        if self.fast == "forest":
            return self._labels(self._forest_proba(X))
        scores = self._linear_scores(X) if self.fast is not None else None
        if scores is None:
            return np.asarray(self.estimator.predict(self._frame(X)))
        return scores if self.fast == "linear" else self._logistic_labels(scores)

    def predict_proba(self, X: np.ndarray) -> np.ndarray | None:
        if not self.proba:
            return None
        X = self.prepare(X)
        if self.fast == "forest":
            return self._forest_proba(X)
        scores = self._linear_scores(X) if self.fast == "logistic" else None
        if scores is None:
            return np.asarray(self.estimator.predict_proba(self._frame(X)))
        return _logistic_proba(scores)

    def predict_with_proba(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Labels and probabilities from one pass when the labels are the argmax anyway."""
        if self.fast == "logistic":
            X = self.prepare(X)
            scores = self._linear_scores(X)
            if scores is not None:
                labels = self._logistic_labels(scores)  # before the softmax reuses scores
                return labels, _logistic_proba(scores)
            return self.predict(X), self.predict_proba(X)
        if self.proba and type(self.estimator).__name__ in ARGMAX_CLASSIFIERS:
            proba = self.predict_proba(X)
            assert proba is not None
            return self._labels(proba), proba
        return self.predict(X), self.predict_proba(X)

    def _labels(self, proba: np.ndarray) -> np.ndarray:
        return np.asarray(self.estimator.classes_).take(np.argmax(proba, axis=1), axis=0)

    def _forest_proba(self, X: np.ndarray) -> np.ndarray:
        # What the forest's predict_proba computes, minus its per-call joblib dispatch and
        # each tree's fitted/feature checks, which cost more than the trees themselves for
        # the few rows of a real-time request. prepare() has checked the feature count.
        X32 = np.ascontiguousarray(X, dtype=np.float32)
        trees = self.estimator.estimators_
        n_classes = self.estimator.n_classes_
        total = trees[0].tree_.predict(X32)[:, :n_classes].astype(np.float64)
        for tree in trees[1:]:
            total += tree.tree_.predict(X32)[:, :n_classes]
        total /= len(trees)
        return total

    def _linear_scores(self, X: np.ndarray) -> np.ndarray | None:
        """``decision_function`` as sklearn computes it, without its per-call validation.

        None sends the call to sklearn: inputs it would reject (NaN, inf) give non-finite
        scores, and sklearn raises its own error for them.
        """
        if X.dtype != np.float64 or X.ndim != 2:
            return None
        coef = self.estimator.coef_
        scores = (X @ coef.T if coef.ndim == 2 else X @ coef) + self.estimator.intercept_
        if not np.isfinite(scores).all():
            return None
        if self.fast == "logistic" and scores.shape[1] == 1:
            return scores.reshape(-1)
        return np.asarray(scores)

    def _logistic_labels(self, scores: np.ndarray) -> np.ndarray:
        # LinearClassifierMixin.predict: the sign of the score, or its argmax.
        indices = (scores > 0).astype(np.intp) if scores.ndim == 1 else scores.argmax(axis=1)
        return np.asarray(self.estimator.classes_).take(indices, axis=0)

    @property
    def has_predict_proba(self) -> bool:
        return self.proba

    def describe(self) -> dict[str, Any]:
        return {"saved_with_version": self.saved_with_version}

    def sample_input(self, rows: int = 2) -> np.ndarray | None:
        sample = super().sample_input(rows)
        if sample is None or not self.categories:
            return sample
        sample = sample.astype(object)
        for column, known in self.categories.items():
            if len(known):
                sample[:, column] = known[0]
        return sample

    def _frame(self, X: np.ndarray) -> Any:
        # Estimators fitted on a DataFrame select columns by name; give them one if we can.
        if self.feature_names is None:
            return X
        try:
            import pandas as pd
        except ImportError:
            return X
        return pd.DataFrame(X, columns=self.feature_names)


# Classifiers whose predict() is exactly the argmax of predict_proba() (not SVC: Platt scaling).
ARGMAX_CLASSIFIERS = frozenset(
    {
        "RandomForestClassifier",
        "ExtraTreesClassifier",
        "DecisionTreeClassifier",
        "ExtraTreeClassifier",
        "LogisticRegression",
    }
)


FastPath = Literal["forest", "logistic", "linear"] | None

_LINEAR_REGRESSORS = ("LinearRegression", "Ridge", "Lasso", "ElasticNet")


def _fast_path(estimator: Any) -> FastPath:
    """The fast path that computes exactly what ``estimator``'s own methods compute, if any.

    Only for these exact sklearn classes (a subclass may override anything) fitted on arrays:
    estimators fitted on a DataFrame select columns by name, which the fast paths do not.
    """
    if getattr(estimator, "feature_names_in_", None) is not None:
        return None
    cls = type(estimator)
    if cls.__module__.startswith("sklearn.ensemble") and cls.__name__ in (
        "RandomForestClassifier",
        "ExtraTreesClassifier",
    ):
        return "forest" if getattr(estimator, "n_outputs_", 1) == 1 else None
    if not cls.__module__.startswith("sklearn.linear_model"):
        return None
    linear_model = require("sklearn.linear_model", "sklearn")
    if cls.__name__ not in ("LogisticRegression", *_LINEAR_REGRESSORS):
        return None
    if cls is not getattr(linear_model, cls.__name__, None) or not _dense_coefficients(estimator):
        return None
    if cls.__name__ != "LogisticRegression":
        return "linear"
    # Versions whose LogisticRegression still takes multi_class may compute one-vs-rest
    # probabilities; those keep sklearn's own predict_proba.
    if "multi_class" in inspect.signature(cls).parameters:
        return None
    # Binary models hold one row of coefficients: sklearn switches on the class count.
    binary = np.size(getattr(estimator, "classes_", ())) <= 2
    return (
        "logistic" if estimator.coef_.ndim == 2 and binary == (len(estimator.coef_) == 1) else None
    )


def _dense_coefficients(estimator: Any) -> bool:
    coef = getattr(estimator, "coef_", None)
    intercept = getattr(estimator, "intercept_", None)
    return (
        isinstance(coef, np.ndarray)  # not after sparsify()
        and coef.dtype.kind == "f"
        and coef.ndim in (1, 2)
        and isinstance(intercept, np.ndarray | float | int)
    )


def _logistic_proba(scores: np.ndarray) -> np.ndarray:
    """LogisticRegression.predict_proba from its decision scores (consumes ``scores``)."""
    if scores.ndim == 1:  # binary: the logistic of the one score, as [1 - p, p]
        from scipy.special import expit

        positive = expit(scores, out=scores)
        return np.stack([1 - positive, positive], axis=1)
    # sklearn.utils.extmath.softmax, operation for operation
    scores -= scores.max(axis=1).reshape(-1, 1)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=1).reshape(-1, 1)
    return scores


def load(path: str, *, extra_allowed: Iterable[str] = ()) -> SklearnModel:
    data = read_pickle_bytes(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        estimator = safe_loads(data, extra_allowed)
    return from_estimator(
        estimator,
        framework="sklearn",
        nbytes=len(data),
        saved_with_version=saved_sklearn_version(caught),
    )


def saved_sklearn_version(caught: list[warnings.WarningMessage]) -> str | None:
    """The scikit-learn version a model was saved with, as its unpickling warned about."""
    for message in caught:
        original = getattr(message.message, "original_sklearn_version", None)
        if isinstance(original, str):
            return original
    return None


def from_estimator(
    estimator: Any, *, framework: str, nbytes: int, saved_with_version: str | None = None
) -> SklearnModel:
    if not callable(getattr(estimator, "predict", None)):
        raise ModelLoadError(
            f"the file holds a {type(estimator).__name__}, not a model with a predict() method"
        )
    root = type(estimator).__module__.split(".")[0]
    library = _LIBRARIES.get(root, root)
    n_features = getattr(estimator, "n_features_in_", None)
    names = getattr(estimator, "feature_names_in_", None)
    categories = _column_categories(estimator)
    return SklearnModel(
        framework=framework,
        library=library,
        library_version=_version(root),
        estimator_class=f"{type(estimator).__module__}.{type(estimator).__qualname__}",
        classes=_to_list(getattr(estimator, "classes_", None)),
        n_features=int(n_features) if isinstance(n_features, int | np.integer) else None,
        feature_names=[str(n) for n in names] if names is not None else None,
        feature_dtypes=_feature_dtypes(categories, n_features),
        input_dtype=np.dtype(object) if _has_strings(categories) else np.dtype(np.float64),
        output_kind=_output_kind(estimator),
        nbytes_estimate=nbytes,
        estimator=estimator,
        proba=hasattr(estimator, "predict_proba"),
        saved_with_version=saved_with_version or _version("sklearn"),
        categories=categories,
    )


def _version(root: str) -> str:
    try:
        return str(importlib.import_module(root).__version__)
    except (ImportError, AttributeError):
        return "unknown"


def _to_list(values: Any) -> list[Any] | None:
    if values is None:
        return None
    if isinstance(values, np.ndarray):
        return list(values.tolist())
    return [_to_list(v) if isinstance(v, np.ndarray) else v for v in values]


def _output_kind(estimator: Any) -> OutputKind:
    base = require("sklearn.base", "sklearn")
    try:
        if base.is_classifier(estimator):
            return "classifier"
        if base.is_regressor(estimator):
            return "regressor"
    except Exception:  # estimators outside sklearn may not implement tags
        kind = getattr(estimator, "_estimator_type", None)
        if kind in ("classifier", "regressor"):
            return kind  # type: ignore[no-any-return]
    return "other"


def _first_step(estimator: Any) -> Any:
    """The step that sees the raw input columns."""
    while hasattr(estimator, "steps") and estimator.steps:
        estimator = estimator.steps[0][1]
    return estimator


def _column_categories(estimator: Any) -> dict[int, np.ndarray]:
    first = _first_step(estimator)
    per_transformer = getattr(first, "_transformer_to_input_indices", None)
    if isinstance(per_transformer, dict) and hasattr(first, "transformers_"):
        found: dict[int, np.ndarray] = {}
        for name, transformer, _ in first.transformers_:
            known = getattr(_first_step(transformer), "categories_", None)
            columns = per_transformer.get(name)
            if known is not None and columns is not None and len(columns) == len(known):
                found.update(zip((int(c) for c in columns), known, strict=True))
        return found
    known = getattr(first, "categories_", None)
    if known is not None and len(known) == getattr(first, "n_features_in_", -1):
        return dict(enumerate(known))
    return {}


def _has_strings(categories: dict[int, np.ndarray]) -> bool:
    return any(np.asarray(known).dtype.kind in "OUS" for known in categories.values())


def _feature_dtypes(
    categories: dict[int, np.ndarray], n_features: Any
) -> list[FeatureDtype] | None:
    if not categories or not isinstance(n_features, int | np.integer):
        return None
    kinds: dict[str, FeatureDtype] = {"O": "string", "U": "string", "S": "string", "b": "bool"}
    kinds |= {"i": "int", "u": "int"}
    return [
        kinds.get(np.asarray(categories[i]).dtype.kind, "float") if i in categories else "float"
        for i in range(int(n_features))
    ]
