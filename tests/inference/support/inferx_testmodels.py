"""Test-only models and a *trusted* loader (plain pickle on files the tests wrote themselves).

Imported both by the tests and, by name, inside the inference workers (tests put this
directory on the workers' PYTHONPATH). Plain pickle is acceptable here only because every file
is created by the test that loads it; production goes through inferx.inference.runtimes.
"""

from __future__ import annotations

import ctypes
import json
import os
import pickle
import resource
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

LOADER = "inferx_testmodels:trusted_load"
SUPPORT_DIR = str(Path(__file__).resolve().parent)


class Loaded:
    """The LoadedModel shape the worker expects."""

    framework = "test"

    def __init__(self, obj: Any, nbytes: int) -> None:
        self.obj = obj
        self.nbytes_estimate = nbytes
        classes = getattr(obj, "classes_", None)
        self.classes = None if classes is None else list(np.asarray(classes).tolist())

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.obj.predict(X))

    def predict_proba(self, X: np.ndarray) -> np.ndarray | None:
        method = getattr(self.obj, "predict_proba", None)
        return None if method is None else np.asarray(method(X))


def trusted_load(path: str, framework: str) -> Loaded:
    data = Path(path).read_bytes()
    obj = pickle.loads(data)
    if isinstance(obj, LoadBomb):
        raise ValueError(obj.message)
    return Loaded(obj, len(data) + getattr(obj, "extra_bytes", 0))


def write(directory: Path, name: str, obj: Any) -> str:
    path = directory / f"{name}.pkl"
    path.write_bytes(pickle.dumps(obj))
    return str(path)


class SumModel:
    """predict: row sums; predict_proba: two columns from the sums; classes 0/1."""

    classes_ = [0, 1]

    def __init__(self, extra_bytes: int = 0) -> None:
        self.extra_bytes = extra_bytes

    def predict(self, X: np.ndarray) -> np.ndarray:
        return X.sum(axis=1)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-X.sum(axis=1)))
        return np.column_stack([1.0 - p, p])


class EchoModel:
    """Returns the first column as given (object inputs come back as objects)."""

    def predict(self, X: np.ndarray) -> np.ndarray:
        return X[:, 0]


class LabelModel:
    """String predictions (travel as JSON in the frame header)."""

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.where(X[:, 0] > 0, "pos", "neg")


class RaiseModel:
    def predict(self, X: np.ndarray) -> np.ndarray:
        raise ValueError("boom from the model")


class PoisonRowModel:
    """Fails for any batch holding a row whose first feature is negative."""

    def predict(self, X: np.ndarray) -> np.ndarray:
        if (X[:, 0] < 0).any():
            raise ValueError("negative input")
        return X[:, 0] * 2


class SleepModel:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def predict(self, X: np.ndarray) -> np.ndarray:
        time.sleep(self.seconds)
        return X[:, 0]


class ExitModel:
    def predict(self, X: np.ndarray) -> np.ndarray:
        os._exit(3)


class SegfaultModel:
    def predict(self, X: np.ndarray) -> np.ndarray:
        ctypes.string_at(0)
        return X[:, 0]


class HogModel:
    """Asks for far more address space than the sandbox allows (never touches it)."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes

    def predict(self, X: np.ndarray) -> np.ndarray:
        block = np.ones(self.nbytes, dtype=np.uint8)
        return X[:, 0] + block[0]


class LoadBomb:
    """The trusted loader raises for this one: a load failure."""

    def __init__(self, message: str) -> None:
        self.message = message


class ProbeModel:
    """Reports what the model code can see: environment, limits, network, identity."""

    def predict(self, X: np.ndarray) -> np.ndarray:
        report = json.dumps(
            {
                "env": dict(os.environ),
                "rlimit_as": resource.getrlimit(resource.RLIMIT_AS)[0],
                "rlimit_core": resource.getrlimit(resource.RLIMIT_CORE)[0],
                "rlimit_fsize": resource.getrlimit(resource.RLIMIT_FSIZE)[0],
                "interfaces": [name for _, name in socket.if_nameindex()],
                "connect": _try_connect(),
                "pid": os.getpid(),
                "open_fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
            }
        )
        return np.array([report] * len(X), dtype=object)


def _try_connect() -> str:
    try:
        with socket.create_connection(("1.1.1.1", 53), timeout=0.5):
            return "connected"
    except OSError as exc:
        return type(exc).__name__


class EvilModel:
    """Writes a hostile frame straight onto the worker's socket, then answers normally."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def predict(self, X: np.ndarray) -> np.ndarray:
        fd = int(sys.argv[sys.argv.index("--fd") + 1])
        os.write(fd, _hostile_frame(self.mode))
        return X[:, 0]


def _frame(header: dict[str, Any], payload: bytes = b"") -> bytes:
    head = json.dumps(header).encode()
    return struct.pack("<II", len(head), len(payload)) + head + payload


def _hostile_frame(mode: str) -> bytes:
    if mode == "huge":
        return struct.pack("<II", 16, 0x7FFFFFFF)
    if mode == "pickle":
        payload = pickle.dumps(["owned"])
        return _frame({"id": 1, "ok": True, "arrays": [["|O", [1]]]}, payload)
    if mode == "forged":
        return _frame({"id": 999_999, "ok": True, "arrays": [["<f8", [1]]]}, b"\0" * 8)
    raise ValueError(mode)
