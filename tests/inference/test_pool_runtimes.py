"""The pool with its production loader: real scikit-learn pickles through the allow-list."""

from __future__ import annotations

import asyncio
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from inferx.inference.batcher import Batcher
from inferx.inference.pool import (
    InferencePool,
    ModelInputRejected,
    ModelLoadFailed,
    PoolConfig,
)
from inferx.kit.sandbox import SandboxLimits

X_IRIS, Y_IRIS = load_iris(return_X_y=True)
NAMES = np.array(["setosa", "versicolor", "virginica"])


class Exploit:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo owned",))


@pytest.fixture
async def pool() -> InferencePool:
    config = PoolConfig(
        workers=2,
        start_timeout_s=30.0,
        stop_timeout_s=2.0,
        limits=SandboxLimits(memory_bytes=3 << 30),
    )
    async with InferencePool(config) as pool:
        yield pool


def dump(obj: object, path: Path) -> str:
    path.write_bytes(pickle.dumps(obj))
    return str(path)


async def test_sklearn_pickles_predict_like_in_process(pool: InferencePool, tmp_path: Path) -> None:
    logreg = LogisticRegression(max_iter=500).fit(X_IRIS, NAMES[Y_IRIS])
    forest = RandomForestClassifier(n_estimators=10, random_state=0).fit(X_IRIS, Y_IRIS)
    lr_path, rf_path = dump(logreg, tmp_path / "lr.pkl"), dump(forest, tmp_path / "rf.pkl")
    lr, rf = await asyncio.gather(
        pool.predict("lr", lr_path, "sklearn", X_IRIS, True, 30.0),
        pool.predict("rf", rf_path, "sklearn", X_IRIS, True, 30.0),
    )
    np.testing.assert_array_equal(lr.prediction, logreg.predict(X_IRIS))
    np.testing.assert_allclose(lr.probabilities, logreg.predict_proba(X_IRIS))  # type: ignore[arg-type]
    assert lr.classes == NAMES.tolist()
    np.testing.assert_array_equal(rf.prediction, forest.predict(X_IRIS))
    assert rf.classes == [0, 1, 2]


async def test_batched_single_rows_through_the_real_runtime(
    pool: InferencePool, tmp_path: Path
) -> None:
    logreg = LogisticRegression(max_iter=500).fit(X_IRIS, Y_IRIS)
    path = dump(logreg, tmp_path / "lr.pkl")
    batcher = Batcher(pool)
    results = await asyncio.gather(
        *(
            batcher.predict("lr", path, "sklearn", X_IRIS[i : i + 1], False, 30.0)
            for i in range(150)
        )
    )
    got = np.concatenate([r.prediction for r in results])
    np.testing.assert_array_equal(got, logreg.predict(X_IRIS))
    assert batcher.stats().calls < 150


async def test_unsafe_pickle_is_refused_in_the_worker(pool: InferencePool, tmp_path: Path) -> None:
    path = dump(Exploit(), tmp_path / "evil.pkl")
    with pytest.raises(ModelLoadFailed, match="system"):
        await pool.predict("evil", path, "sklearn", X_IRIS[:1], False, 30.0)
    assert all(s.restarts == 0 for s in pool.stats())


async def test_wrong_feature_count_is_the_callers_fault(
    pool: InferencePool, tmp_path: Path
) -> None:
    path = dump(LogisticRegression(max_iter=500).fit(X_IRIS, Y_IRIS), tmp_path / "lr.pkl")
    with pytest.raises(ModelInputRejected) as caught:
        await pool.predict("lr", path, "sklearn", np.ones((1, 3)), False, 30.0)
    assert caught.value.status == 422
