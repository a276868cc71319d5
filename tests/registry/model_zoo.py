"""Tiny real models trained once per test process, and real malicious pickle payloads.

A helper module rather than fixtures in conftest.py: test modules import what they need."""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.cluster import KMeans
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_iris, make_classification, make_regression
from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeRegressor


@dataclass
class Trained:
    model: Any
    X: np.ndarray


class Payload:
    """Pickles as `func(*args)`: what an attacker's __reduce__ returns."""

    def __init__(self, func: Callable[..., Any], *args: Any) -> None:
        self.func = func
        self.args = args

    def __reduce__(self) -> tuple[Any, ...]:
        return self.func, self.args


def touch_payload(target: Path) -> Payload:
    return Payload(os.system, f"touch {target}")


def _string_frame() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    colour = rng.choice(["red", "green", "blue"], size=60)
    size = rng.normal(size=60)
    X = np.column_stack([colour, size]).astype(object)
    X[:, 1] = size
    return X, ((colour == "red") ^ (size > 0)).astype(int)


def _train() -> dict[str, Trained]:
    X, y = load_iris(return_X_y=True)
    X20, y20 = make_classification(300, 20, random_state=0)
    Xr, yr = make_regression(80, 5, noise=0.1, random_state=0)
    Xs, ys = _string_frame()
    encoded = ColumnTransformer([("colour", OneHotEncoder(), [0])], remainder="passthrough")
    return {
        "logreg_iris": Trained(LogisticRegression(max_iter=500).fit(X, y), X),
        "forest_100": Trained(RandomForestClassifier(100, random_state=0).fit(X20, y20), X20),
        "scaled_logreg": Trained(
            make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y), X
        ),
        "linreg": Trained(LinearRegression().fit(Xr, yr), Xr),
        "gbr": Trained(GradientBoostingRegressor(n_estimators=20, random_state=0).fit(Xr, yr), Xr),
        "svc_proba": Trained(SVC(probability=True, random_state=0).fit(X, y), X),
        "kmeans": Trained(KMeans(3, n_init=2, random_state=0).fit(X), X),
        "tree_reg": Trained(DecisionTreeRegressor(max_depth=4).fit(Xr, yr), Xr),
        "mlp": Trained(MLPClassifier((8,), max_iter=50, random_state=0).fit(X, y), X),
        "onehot_pipeline": Trained(make_pipeline(encoded, LogisticRegression()).fit(Xs, ys), Xs),
        "log1p_pipeline": Trained(
            make_pipeline(FunctionTransformer(np.log1p), LinearRegression()).fit(X, X[:, 0]), X
        ),
        "knn_kdtree": Trained(KNeighborsClassifier(algorithm="kd_tree").fit(X, y), X),
        "grid_search": Trained(
            GridSearchCV(LogisticRegression(max_iter=300), {"C": [0.1, 1.0]}, cv=2).fit(X, y), X
        ),
    }


@functools.cache
def trained_zoo() -> dict[str, Trained]:
    """Every model of the zoo, trained once per test process."""
    with warnings.catch_warnings():
        # Fitting noise, not behaviour under test: SVC's probability flag is deprecated in
        # sklearn 1.9 and the small MLP stops before converging.
        warnings.filterwarnings("ignore", "The `probability` parameter", FutureWarning)
        warnings.filterwarnings("ignore", "Stochastic Optimizer", UserWarning)
        return _train()
