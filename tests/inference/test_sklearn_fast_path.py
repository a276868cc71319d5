"""The forest fast path must give exactly what scikit-learn gives."""

from __future__ import annotations

import joblib
import numpy as np
import pytest
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.svm import SVC

from inferx.inference.runtimes import load_model


@pytest.mark.parametrize(
    "estimator",
    [
        RandomForestClassifier(n_estimators=30, random_state=0),
        ExtraTreesClassifier(n_estimators=30, random_state=0),
        LogisticRegression(max_iter=500),
        SVC(probability=True, random_state=0),
    ],
    ids=lambda e: type(e).__name__,
)
@pytest.mark.filterwarnings("ignore:The `probability` parameter was deprecated:FutureWarning")
def test_fast_paths_match_sklearn_exactly(tmp_path, estimator):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 6))
    y = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
    estimator.fit(X, y)
    path = tmp_path / "m.joblib"
    joblib.dump(estimator, path)
    model = load_model(str(path), "sklearn")
    T = rng.normal(size=(200, 6))
    assert np.array_equal(model.predict(T), estimator.predict(T))
    assert np.array_equal(model.predict_proba(T), estimator.predict_proba(T))
    labels, proba = model.predict_with_proba(T)
    assert np.array_equal(labels, estimator.predict(T))
    assert np.array_equal(proba, estimator.predict_proba(T))
