"""The inference worker process: loads models on demand and answers predict requests.

Started by ``InferencePool`` inside the sandbox launcher as
``python -m inferx.inference.worker --fd N --config JSON``; it talks to the API process over
the inherited socket ``N`` with ``ipc`` frames, one request at a time, and exits on EOF.
Untrusted model code runs here, so nothing in this process is trusted by the API process.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

from inferx.inference import ipc
from inferx.inference.cache import ModelCache
from inferx.kit.sandbox import network_isolated

DETAIL_LIMIT = 2000
RECV_SIZE = 1 << 18


class Model(Protocol):
    """What a loader returns (``inferx.inference.runtimes.LoadedModel`` fits).

    A model may also offer ``predict_with_proba(X) -> (labels, probabilities)``, used instead
    of two calls when probabilities are asked for.
    """

    @property
    def classes(self) -> Any: ...

    @property
    def nbytes_estimate(self) -> int: ...

    def predict(self, X: np.ndarray) -> Any: ...

    def predict_proba(self, X: np.ndarray) -> Any: ...


Loader = Callable[[str, str], Model]


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    worker_id: int
    loader: str = "inferx.inference.runtimes:load_model"
    cache_max_bytes: int = 2 << 30
    cache_max_items: int = 32
    max_frame_bytes: int = ipc.DEFAULT_MAX_FRAME
    preload: tuple[str, ...] = ()

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> WorkerConfig:
        data = json.loads(text)
        data["preload"] = tuple(data.get("preload", ()))
        return cls(**data)


def resolve_loader(spec: str) -> Loader:
    """``"package.module:function"`` -> the function."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"loader must look like 'module:function', got {spec!r}")
    loader: Loader = getattr(importlib.import_module(module_name), attr)
    return loader


class ModelError(Exception):
    """Raised while serving a request; ``kind`` tells the API process which error to raise."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


class Worker:
    """Request handling, independent of the socket so it can be tested in-process."""

    def __init__(self, config: WorkerConfig, loader: Loader) -> None:
        self.config = config
        self.loader = loader
        self.cache: ModelCache[Model] = ModelCache(config.cache_max_bytes, config.cache_max_items)

    def hello(self) -> dict[str, Any]:
        return {"op": "hello", "pid": os.getpid(), "network_isolated": network_isolated()}

    def handle(
        self, header: dict[str, Any], arrays: list[np.ndarray]
    ) -> tuple[dict[str, Any], list[np.ndarray]]:
        reply: dict[str, Any] = {"id": header.get("id")}
        try:
            out_header, out_arrays = self._dispatch(header, arrays)
        except ModelError as exc:
            reply.update(ok=False, error=exc.kind, detail=exc.detail[:DETAIL_LIMIT])
            return reply, []
        reply.update(ok=True, **out_header)
        reply["cache"] = [len(self.cache), self.cache.nbytes]
        return reply, out_arrays

    def _dispatch(
        self, header: dict[str, Any], arrays: list[np.ndarray]
    ) -> tuple[dict[str, Any], list[np.ndarray]]:
        op = header.get("op")
        if op == "predict":
            return self._predict(header, arrays)
        if op == "evict":
            return {"evicted": self.cache.evict(str(header.get("key")))}, []
        if op == "stats":
            return {"stats": asdict(self.cache.stats(with_keys=True))}, []
        raise ModelError("bad_request", f"unknown op {op!r}")

    def _predict(
        self, header: dict[str, Any], arrays: list[np.ndarray]
    ) -> tuple[dict[str, Any], list[np.ndarray]]:
        if len(arrays) != 1:
            raise ModelError("bad_request", "predict takes exactly one input array")
        X = arrays[0]
        model = self._model(str(header["key"]), str(header["path"]), str(header["framework"]))
        started = time.perf_counter()
        try:
            prediction, proba = _run(model, X, bool(header.get("proba")))
            classes = None if proba is None else _classes(model)
        except BaseException as exc:  # the model's own code, even sys.exit(), fails the request
            raise ModelError(_error_kind(exc), _describe(exc)) from None
        out: dict[str, Any] = {"ms": (time.perf_counter() - started) * 1000.0}
        if proba is None:
            return out, [prediction]
        out["classes"] = classes
        return out, [prediction, proba]

    def _model(self, key: str, path: str, framework: str) -> Model:
        def load() -> Model:
            try:
                return self.loader(path, framework)
            except BaseException as exc:  # an untrusted file: report it, do not die
                raise ModelError("load", _describe(exc)) from None

        model = self.cache.get(key)
        if model is not None:  # the common case: no stat(), no closure call
            return model
        try:
            return self.cache.get_or_load(key, load, size_hint=_file_size(path))
        except ModelError:
            raise
        except BaseException as exc:  # e.g. a loaded object without a usable nbytes_estimate
            raise ModelError("load", _describe(exc)) from None


def _run(model: Model, X: np.ndarray, want_proba: bool) -> tuple[np.ndarray, np.ndarray | None]:
    both = getattr(model, "predict_with_proba", None) if want_proba else None
    if callable(both):
        # Optional: a runtime that can derive labels from one probability pass saves a call.
        raw_prediction, raw = both(X)
    else:
        raw_prediction = model.predict(X)
        raw = model.predict_proba(X) if want_proba else None
    prediction = _check_output(raw_prediction, X, "predict")
    return prediction, None if raw is None else _check_output(raw, X, "predict_proba")


def _check_output(value: Any, X: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim == 0 or array.shape[0] != X.shape[0]:
        raise ValueError(f"{what} returned shape {array.shape} for {X.shape[0]} rows")
    if array.dtype.kind not in "biufUSO":
        raise TypeError(f"{what} returned unsupported dtype {array.dtype}")
    return array


def _classes(model: Model) -> list[Any] | None:
    classes = getattr(model, "classes", None)
    if classes is None:
        return None
    return [ipc.json_scalar(c) for c in np.asarray(classes).ravel().tolist()]


def _error_kind(exc: BaseException) -> str:
    # Runtimes raise InputError (a ValueError) for inputs of the wrong shape or type: the
    # caller's fault (422), not the model's. Matched by name so any loader can use it.
    return "input" if type(exc).__name__ == "InputError" else "model"


def _describe(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:  # an exception from model code may not even print
        text = "(unprintable)"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def serve(sock: socket.socket, worker: Worker) -> None:
    """Answer frames from ``sock`` until EOF."""
    reader = ipc.FrameReader(worker.config.max_frame_bytes, writable=True)
    # One buffer for every read: recv(n) would allocate (and shrink) n bytes per call.
    inbox = bytearray(RECV_SIZE)
    view = memoryview(inbox)
    sock.sendall(ipc.encode_frame(worker.hello()))
    linger_s = 0.0
    while True:
        size = _receive(sock, inbox, linger_s)
        if not size:
            return
        for header, payload in reader.feed(view[:size]):
            sock.sendall(_answer(worker, header, payload))
            linger_s = _linger_s(header)


MAX_LINGER_S = 0.1


def _linger_s(header: dict[str, Any]) -> float:
    """How long to poll for the next request after this one (the API asks, for a lone client:
    its next request then finds this process awake)."""
    value = header.get("linger_us", 0)
    if type(value) is not int or value <= 0:
        return 0.0
    return min(value / 1e6, MAX_LINGER_S)


def _receive(sock: socket.socket, inbox: bytearray, linger_s: float) -> int:
    if linger_s:
        deadline = time.perf_counter() + linger_s
        while time.perf_counter() < deadline:
            try:
                return sock.recv_into(inbox, 0, socket.MSG_DONTWAIT)
            except BlockingIOError:
                continue
    return sock.recv_into(inbox)


def _answer(worker: Worker, header: dict[str, Any], payload: bytes | bytearray) -> bytes:
    reply, arrays = worker.handle(header, ipc.decode_arrays(header, payload))
    try:
        frame = ipc.encode_frame(reply, arrays)
    except (TypeError, ValueError) as exc:
        return _failure(reply["id"], _describe(exc))
    head_len, _ = ipc.PREFIX.unpack_from(frame)
    if len(frame) > worker.config.max_frame_bytes or head_len > ipc.MAX_HEADER:
        return _failure(reply["id"], f"output of {len(frame)} bytes exceeds the reply limit")
    return frame


def _failure(request_id: Any, detail: str) -> bytes:
    return ipc.encode_frame({"id": request_id, "ok": False, "error": "model", "detail": detail})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="inferx.inference.worker")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--config", required=True)
    args = parser.parse_args(argv)
    config = WorkerConfig.from_json(args.config)
    for module in config.preload:
        importlib.import_module(module)
    gc.freeze()  # the imports stay for good: no full collection walks them (~60 ms each)
    worker = Worker(config, resolve_loader(config.loader))
    with socket.socket(fileno=args.fd) as sock:
        try:
            serve(sock, worker)
        except (BrokenPipeError, ConnectionResetError):
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
