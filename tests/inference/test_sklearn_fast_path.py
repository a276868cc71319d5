"""The forest and linear fast paths must give exactly what scikit-learn gives."""

from __future__ import annotations

import joblib
import numpy as np
import pytest
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.linear_model import (
    ElasticNet,
    Lasso,
    LinearRegression,
    LogisticRegression,
    Ridge,
    SGDRegressor,
)
from sklearn.svm import SVC

from inferx.inference.runtimes import load_model
from inferx.inference.runtimes.sklearn import from_estimator


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


def _load(tmp_path, estimator):
    path = tmp_path / "m.joblib"
    joblib.dump(estimator, path)
    return load_model(str(path), "sklearn")


@pytest.mark.parametrize(
    ("n_classes", "estimator"),
    [
        (2, LogisticRegression(max_iter=1000)),
        (2, LogisticRegression(solver="liblinear")),
        (2, LogisticRegression(fit_intercept=False, max_iter=1000)),
        (3, LogisticRegression(max_iter=1000)),
        (3, LogisticRegression(C=0.05, fit_intercept=False, max_iter=1000)),
        (5, LogisticRegression(solver="newton-cg", max_iter=1000)),
    ],
    ids=lambda v: str(v),
)
@pytest.mark.parametrize("labels", ["ints", "strings"])
def test_logistic_fast_path_matches_sklearn(tmp_path, n_classes, estimator, labels):
    rng = np.random.default_rng(n_classes)
    X = rng.normal(size=(400, 7))
    y = (X @ rng.normal(size=(7, n_classes))).argmax(axis=1)
    estimator.fit(X, np.array(["ab", "cd", "ef", "gh", "ij"])[y] if labels == "strings" else y)
    model = _load(tmp_path, estimator)
    assert model.fast == "logistic"
    T = rng.normal(scale=3.0, size=(300, 7))
    expected_labels, expected_proba = estimator.predict(T), estimator.predict_proba(T)
    np.testing.assert_array_equal(model.predict(T), expected_labels)
    np.testing.assert_allclose(model.predict_proba(T), expected_proba, rtol=1e-12, atol=0)
    labels_out, proba = model.predict_with_proba(T)
    np.testing.assert_array_equal(labels_out, expected_labels)
    np.testing.assert_allclose(proba, expected_proba, rtol=1e-12, atol=0)
    one_row, _ = model.predict_with_proba(T[:1])
    np.testing.assert_array_equal(one_row, expected_labels[:1])
    # float32 and integer rows are cast to float64 first, as sklearn does
    np.testing.assert_allclose(
        model.predict_proba(T.astype(np.float32)),
        estimator.predict_proba(T.astype(np.float32)),
        rtol=1e-12,
        atol=0,
    )
    ints = rng.integers(-3, 4, size=(50, 7))
    np.testing.assert_array_equal(model.predict(ints), estimator.predict(ints))


@pytest.mark.parametrize(
    "estimator",
    [LinearRegression(), Ridge(alpha=0.5), Lasso(alpha=0.01), ElasticNet(alpha=0.01)],
    ids=lambda e: type(e).__name__,
)
@pytest.mark.parametrize("targets", [None, 1, 3])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_linear_regressor_fast_path_matches_sklearn(tmp_path, estimator, targets, fit_intercept):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 6))
    coef = rng.normal(size=(6, targets or 1))
    y = X @ coef + 0.1 * rng.normal(size=(200, targets or 1)) + 2.0
    estimator.set_params(fit_intercept=fit_intercept).fit(X, y.ravel() if targets is None else y)
    model = _load(tmp_path, estimator)
    assert model.fast == "linear"
    T = rng.normal(scale=3.0, size=(150, 6))
    expected = estimator.predict(T)
    got = model.predict(T)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)
    np.testing.assert_allclose(model.predict(T[:1]), estimator.predict(T[:1]), rtol=1e-12, atol=0)


def test_non_finite_input_fails_as_sklearn_does(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 3))
    for estimator in (LogisticRegression().fit(X, X[:, 0] > 0), Ridge().fit(X, X[:, 1])):
        model = _load(tmp_path, estimator)
        assert model.fast is not None
        for bad in (np.nan, np.inf):
            T = X[:2].copy()
            T[1, 2] = bad
            with pytest.raises(ValueError, match="Input X contains"):
                estimator.predict(T)
            with pytest.raises(ValueError, match="Input X contains"):
                model.predict(T)
            if hasattr(estimator, "predict_proba"):
                with pytest.raises(ValueError, match="Input X contains"):
                    model.predict_with_proba(T)


class _OwnLogistic(LogisticRegression):
    pass


def test_fast_paths_only_for_exact_array_fitted_estimators(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 3))
    y = X[:, 0] > 0
    assert from_estimator(_OwnLogistic().fit(X, y), framework="sklearn", nbytes=0).fast is None
    sparse_coef = LogisticRegression().fit(X, y).sparsify()
    assert from_estimator(sparse_coef, framework="sklearn", nbytes=0).fast is None
    assert (
        from_estimator(SGDRegressor().fit(X, X[:, 0]), framework="sklearn", nbytes=0).fast is None
    )
    # as fitted on a DataFrame (pandas is not a dependency): columns are then chosen by name
    by_name = LogisticRegression().fit(X, y)
    by_name.feature_names_in_ = np.array(["a", "b", "c"], dtype=object)
    assert from_estimator(by_name, framework="sklearn", nbytes=0).fast is None
