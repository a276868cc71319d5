"""The batch-size metric sees each model call once, with the rows it carried."""

from __future__ import annotations

import asyncio

import numpy as np

from inferx.inference.batcher import Batcher
from inferx.inference.pool import PredictResult


class SlowPool:
    def submit(self, key, path, framework, X, want_proba, timeout_s):
        future = asyncio.get_running_loop().create_future()

        def done() -> None:
            future.set_result(PredictResult(X[:, 0].copy(), None, None, 0, 0.1, X.shape[0]))

        asyncio.get_running_loop().call_later(0.02, done)
        return future


async def test_on_call_counts_calls_not_requests():
    calls: list[int] = []
    batcher = Batcher(SlowPool(), on_call=calls.append)
    rows = [np.array([[float(i), 0.0]]) for i in range(10)]
    results = await asyncio.gather(
        *[batcher.predict("k", "p", "sklearn", X, False, 5) for X in rows]
    )
    assert [r.prediction.tolist() for r in results] == [[float(i)] for i in range(10)]
    assert sum(calls) == 10 and len(calls) < 10  # merged while busy: fewer calls than requests
    assert calls[0] == 1  # the first request left at once, alone
