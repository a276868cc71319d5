"""The worker's request handling, in-process (the socket loop is covered by test_pool)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import inferx_testmodels as tm
import numpy as np
import pytest

from inferx.inference.worker import Worker, WorkerConfig, _linger_s, _receive, resolve_loader

X = np.arange(6, dtype=np.float64).reshape(3, 2)


@pytest.fixture
def worker() -> Worker:
    config = WorkerConfig(worker_id=0, loader=tm.LOADER, cache_max_bytes=1 << 20)
    return Worker(config, resolve_loader(config.loader))


def ask(worker: Worker, path: str, proba: bool = False, key: str = "k") -> tuple[dict, list]:
    header = {"id": 7, "op": "predict", "key": key, "path": path, "framework": "t", "proba": proba}
    return worker.handle(header, [X])


def test_predict_reply(worker: Worker, tmp_path: Path) -> None:
    reply, arrays = ask(worker, tm.write(tmp_path, "sum", tm.SumModel()), proba=True)
    assert reply["id"] == 7 and reply["ok"] is True
    assert reply["classes"] == [0, 1] and reply["cache"][0] == 1
    assert arrays[0].tolist() == [1.0, 5.0, 9.0] and arrays[1].shape == (3, 2)


def test_model_and_load_errors_are_replies(worker: Worker, tmp_path: Path) -> None:
    reply, arrays = ask(worker, tm.write(tmp_path, "raise", tm.RaiseModel()))
    assert (reply["ok"], reply["error"], arrays) == (False, "model", [])
    assert reply["detail"] == "ValueError: boom from the model"
    reply, _ = ask(worker, tm.write(tmp_path, "bomb", tm.LoadBomb("nope")), key="b")
    assert (reply["error"], reply["detail"]) == ("load", "ValueError: nope")


def test_wrong_row_count_from_a_model_is_a_model_error(worker: Worker, tmp_path: Path) -> None:
    class Short:
        def predict(self, X: np.ndarray) -> np.ndarray:
            return X[:1, 0]

    worker.cache.get_or_load("short", lambda: tm.Loaded(Short(), 1))
    reply, _ = ask(worker, "/unused", key="short")
    assert reply["error"] == "model"
    assert reply["detail"] == "ValueError: predict returned shape (1,) for 3 rows"


def test_predict_with_proba_is_used_when_offered(worker: Worker) -> None:
    class Both(tm.Loaded):
        def predict(self, X: np.ndarray) -> np.ndarray:
            raise AssertionError("two passes")

        def predict_with_proba(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return X[:, 0], np.column_stack([X[:, 0], X[:, 1]])

    worker.cache.get_or_load("both", lambda: Both(tm.SumModel(), 1))
    reply, arrays = ask(worker, "/unused", proba=True, key="both")
    assert reply["ok"] and arrays[0].tolist() == [0.0, 2.0, 4.0]


def test_evict_and_stats(worker: Worker, tmp_path: Path) -> None:
    ask(worker, tm.write(tmp_path, "sum", tm.SumModel()))
    stats, _ = worker.handle({"id": 1, "op": "stats"}, [])
    assert stats["stats"]["keys"] == ["k"]
    assert worker.handle({"id": 2, "op": "evict", "key": "k"}, [])[0]["evicted"] is True
    assert worker.handle({"id": 3, "op": "nope"}, [])[0]["error"] == "bad_request"


def test_loader_spec_must_name_a_function() -> None:
    with pytest.raises(ValueError):
        resolve_loader("inferx.inference.runtimes")


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(None, 0.0), (0, 0.0), (-5, 0.0), ("100", 0.0), (True, 0.0), (250, 0.00025), (10**9, 0.1)],
)
def test_linger_comes_from_the_request_and_is_bounded(value, seconds):
    header = {} if value is None else {"linger_us": value}
    assert _linger_s(header) == pytest.approx(seconds)


def test_receive_polls_then_blocks():
    a, b = socket.socketpair()
    inbox = bytearray(64)
    try:
        a.send(b"early")
        assert _receive(b, inbox, 0.05) == 5 and bytes(inbox[:5]) == b"early"
        started = time.perf_counter()
        timer = threading.Timer(0.15, lambda: a.send(b"late"))
        timer.start()
        assert _receive(b, inbox, 0.01) == 4  # polled 10 ms, then waited in recv
        assert time.perf_counter() - started >= 0.14
        timer.join()
    finally:
        a.close()
        b.close()
