"""The allow-list unpickler: real models load and predict identically, real attacks never run."""

from __future__ import annotations

import builtins
import functools
import importlib
import io
import operator
import os
import pickle
import socket
import struct
import subprocess
import sys
import warnings
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from inferx.inference.runtimes.base import ModelLoadError
from inferx.registry import safe_pickle
from inferx.registry.safe_pickle import (
    PickleBomb,
    UnsafePickle,
    is_allowed_global,
    safe_load,
    safe_loads,
)

sys.path.insert(0, str(Path(__file__).parent))  # import mode "importlib" adds no test dirs
from model_zoo import Payload, Trained, touch_payload, trained_zoo  # noqa: E402

MODELS = sorted(trained_zoo())
JOBLIB_COMPRESSIONS = [0, 3, ("gzip", 3), ("bz2", 3), ("xz", 3), ("lzma", 3)]


@pytest.fixture(scope="module")
def zoo() -> dict[str, Trained]:
    return trained_zoo()


def assert_same_predictions(loaded: Any, trained: Trained) -> None:
    assert type(loaded) is type(trained.model)
    np.testing.assert_array_equal(loaded.predict(trained.X), trained.model.predict(trained.X))
    if hasattr(trained.model, "predict_proba"):
        np.testing.assert_array_equal(
            loaded.predict_proba(trained.X), trained.model.predict_proba(trained.X)
        )


# --- legitimate models ---------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("name", MODELS)
def test_pickled_models_predict_identically(
    zoo: dict[str, Trained], name: str, protocol: int, tmp_path: Path
) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(zoo[name].model, protocol=protocol))
    assert_same_predictions(safe_load(path), zoo[name])


@pytest.mark.parametrize("compress", JOBLIB_COMPRESSIONS, ids=str)
@pytest.mark.parametrize("name", MODELS)
def test_joblib_models_predict_identically(
    zoo: dict[str, Trained], name: str, compress: Any, tmp_path: Path
) -> None:
    path = tmp_path / "model.joblib"
    joblib.dump(zoo[name].model, path, compress=compress)
    assert_same_predictions(safe_load(str(path)), zoo[name])


def test_accepts_an_open_file_and_keeps_numpy_arrays_writeable(
    zoo: dict[str, Trained], tmp_path: Path
) -> None:
    path = tmp_path / "forest.joblib"
    joblib.dump(zoo["forest_100"].model, path)
    with path.open("rb") as f:
        forest = safe_load(f)
    assert len(forest.estimators_) == 100
    assert forest.estimators_[0].tree_.value.flags.writeable


def test_joblib_arrays_keep_dtype_shape_and_order(tmp_path: Path) -> None:
    arrays = {
        "f": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
        "i": np.arange(6, dtype=">i4").reshape(2, 3),  # big-endian comes back native
        "empty": np.zeros((0, 5)),
        "objects": np.array(["a", 1, None], dtype=object),
    }
    path = tmp_path / "arrays.joblib"
    joblib.dump(arrays, path)
    loaded = safe_load(path)
    for key, array in arrays.items():
        np.testing.assert_array_equal(loaded[key], array)
        assert loaded[key].shape == array.shape
    assert loaded["i"].dtype.isnative


@pytest.mark.parametrize("xgb_or_lgbm", ["xgboost", "lightgbm"])
def test_xgboost_and_lightgbm_sklearn_wrappers(
    zoo: dict[str, Trained], xgb_or_lgbm: str, tmp_path: Path
) -> None:
    library = pytest.importorskip(xgb_or_lgbm)
    iris = zoo["logreg_iris"].X
    labels = zoo["logreg_iris"].model.predict(iris)
    if xgb_or_lgbm == "xgboost":
        model = library.XGBClassifier(n_estimators=5, n_jobs=1).fit(iris, labels)
    else:
        model = library.LGBMClassifier(n_estimators=5, verbose=-1).fit(iris, labels)
    path = tmp_path / "model.joblib"
    joblib.dump(model, path, compress=3)
    assert_same_predictions(safe_load(path), Trained(model, iris))


def test_numpy_1_module_names_load_without_deprecation_warnings(zoo: dict[str, Trained]) -> None:
    data = pickle.dumps(zoo["logreg_iris"].model, protocol=2)
    assert b"numpy._core.multiarray" in data
    old_style = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_same_predictions(safe_loads(old_style), zoo["logreg_iris"])


# --- attacks -------------------------------------------------------------------------------


def _payloads(target: Path) -> list[tuple[str, Any]]:
    touch = f"touch {target}"
    return [
        ("posix.system" if os.name == "posix" else "nt.system", touch_payload(target)),
        ("builtins.eval", Payload(eval, f"__import__('os').system({touch!r})")),
        ("builtins.exec", Payload(exec, f"import os; os.system({touch!r})")),
        ("subprocess.Popen", Payload(subprocess.Popen, ["touch", str(target)])),
        ("functools.partial", Payload(functools.partial(os.system, touch))),
        (
            "operator.methodcaller",
            Payload(operator.methodcaller("system", touch), Payload(importlib.import_module, "os")),
        ),
        ("importlib.import_module", Payload(importlib.import_module, "os")),
        ("builtins.getattr", Payload(getattr, Payload(__import__, "os"), "system")),
    ]


@pytest.mark.parametrize("index", range(8))
@pytest.mark.parametrize("container", ["pickle", "joblib", "joblib-zlib"])
def test_malicious_payloads_are_refused_naming_the_global(
    index: int, container: str, tmp_path: Path
) -> None:
    target = tmp_path / "pwned"
    global_name, payload = _payloads(target)[index]
    path = tmp_path / "evil.bin"
    if container == "pickle":
        path.write_bytes(pickle.dumps(payload))
    else:
        joblib.dump(payload, path, compress=3 if container == "joblib-zlib" else 0)
    with pytest.raises(UnsafePickle) as info:
        safe_load(path)
    assert info.value.global_name == global_name
    assert global_name in str(info.value)
    assert not target.exists()


def test_payload_nested_in_a_fitted_estimator_is_refused(
    zoo: dict[str, Trained], tmp_path: Path
) -> None:
    target = tmp_path / "pwned"
    model = pickle.loads(pickle.dumps(zoo["scaled_logreg"].model))
    model.steps[-1][1].evil_ = touch_payload(target)
    for blob in (pickle.dumps(model), _joblib_bytes(model, tmp_path)):
        with pytest.raises(UnsafePickle, match="system"):
            safe_loads(blob)
    assert not target.exists()


def test_payload_inside_a_joblib_object_array_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    path = tmp_path / "evil.joblib"
    joblib.dump({"weights": np.array([1.0, touch_payload(target)], dtype=object)}, path)
    with pytest.raises(UnsafePickle, match="system"):
        safe_load(path)
    assert not target.exists()


def _joblib_bytes(obj: Any, tmp_path: Path) -> bytes:
    path = tmp_path / "obj.joblib"
    joblib.dump(obj, path)
    return path.read_bytes()


def _listener() -> socket.socket:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.setblocking(False)
    return server


def _connections(server: socket.socket) -> int:
    count = 0
    while True:
        try:
            conn, _ = server.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


def test_socket_payload_never_connects(tmp_path: Path) -> None:
    server = _listener()
    try:
        payload = Payload(socket.create_connection, server.getsockname())
        for blob in (pickle.dumps(payload), _joblib_bytes(payload, tmp_path)):
            with pytest.raises(UnsafePickle) as info:
                safe_loads(blob)
            assert info.value.global_name == "socket.create_connection"
        assert _connections(server) == 0
    finally:
        server.close()


def test_the_payloads_are_live_under_plain_pickle(tmp_path: Path) -> None:
    """Control: the same bytes do run under pickle.loads (in a throwaway process)."""
    target = tmp_path / "pwned"
    server = _listener()
    try:
        blob = pickle.dumps(
            [touch_payload(target), Payload(socket.create_connection, server.getsockname())]
        )
        script = "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"
        subprocess.run([sys.executable, "-c", script], input=blob, check=True, timeout=30)
        assert target.exists()
        assert _connections(server) == 1
    finally:
        server.close()


def _op(code: bytes, *parts: bytes) -> bytes:
    return code + b"".join(parts)


def _short_str(text: str) -> bytes:
    raw = text.encode()
    return pickle.SHORT_BINUNICODE + bytes([len(raw)]) + raw


@pytest.mark.parametrize(
    ("blob", "global_name"),
    [
        # Strings stored in the memo, popped, then fetched back for STACK_GLOBAL: scanners
        # that track the stack statically lose the thread; find_class does not.
        (
            b"\x80\x04"
            + _short_str("posix")
            + pickle.MEMOIZE
            + _short_str("system")
            + pickle.MEMOIZE
            + pickle.POP
            + pickle.POP
            + _short_str("decoy")
            + pickle.BINGET
            + b"\x00"
            + pickle.BINGET
            + b"\x01"
            + pickle.STACK_GLOBAL
            + _short_str("touch x")
            + pickle.TUPLE1
            + pickle.REDUCE
            + pickle.STOP,
            "posix.system",
        ),
        (b"cposix\nsystem\n(S'touch x'\ntR.", "posix.system"),
        (b"(S'touch x'\niposix\nsystem\n.", "posix.system"),  # INST opcode
        (b"\x80\x02c__builtin__\neval\n(S'1'\ntR.", "builtins.eval"),  # Python 2 spelling
        (b"\x80\x02cnt\nsystem\n(S'x'\ntR.", "nt.system"),
        (
            b"\x80\x04"
            + _short_str("sklearn.pipeline")
            + _short_str("Pipeline.__init__.__globals__")
            + pickle.STACK_GLOBAL
            + pickle.STOP,
            "sklearn.pipeline.Pipeline.__init__.__globals__",
        ),
        (b"\x80\x02cnumpy\nload\n.", "numpy.load"),
        (b"\x80\x02cnumpy.testing\nrun_threaded\n.", "numpy.testing.run_threaded"),
        (b"\x80\x02csklearn.utils\ncheck_array\n.", "sklearn.utils.check_array"),
        (b"\x80\x02csklearn.utils._testing\nTempMemmap\n.", "sklearn.utils._testing.TempMemmap"),
        (b"\x80\x02csklearn.utils.parallel\nParallel\n.", "sklearn.utils.parallel.Parallel"),
        (b"\x80\x02cjoblib.numpy_pickle\nNDArrayWrapper\n.", "joblib.numpy_pickle.NDArrayWrapper"),
        (b"\x80\x02ccopyreg\n_reconstructor\n.", "copyreg._reconstructor"),
        (b"\x80\x02cbuiltins\nobject\n.", "builtins.object"),
        (
            b"\x80\x02cnumpy._core\n_ufunc_reconstruct\nX\x02\x00\x00\x00osX\x06\x00\x00\x00system\x86R.",
            "os.system",
        ),
        (b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x04\x00\x00\x00zlib\x86R.", "zlib"),
        (b"\x80\x04\x8c\x01x\x94Q.", "persistent id"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_hand_crafted_opcodes_are_refused(blob: bytes, global_name: str) -> None:
    with pytest.raises(UnsafePickle) as info:
        safe_loads(blob)
    assert global_name in info.value.global_name


def test_build_cannot_monkey_patch_an_allowed_class() -> None:
    from sklearn._loss.loss import HalfSquaredError

    state = {"pwned": True}
    blob = (
        b"\x80\x02csklearn._loss.loss\nHalfSquaredError\n"
        + b"N"
        + pickle.dumps(state, protocol=2)[2:-1]
        + pickle.TUPLE2
        + pickle.BUILD
        + pickle.STOP
    )
    with pytest.raises(UnsafePickle, match="may not change a class"):
        safe_loads(blob)
    assert not hasattr(HalfSquaredError, "pwned")


def test_function_valued_params_allow_numpy_ufuncs_only(tmp_path: Path) -> None:
    from sklearn.preprocessing import FunctionTransformer

    X = np.abs(trained_zoo()["linreg"].X)
    safe = FunctionTransformer(np.log1p).fit(X)
    np.testing.assert_array_equal(safe_loads(pickle.dumps(safe)).transform(X), np.log1p(X))
    with pytest.raises(UnsafePickle) as info:
        safe_loads(pickle.dumps(FunctionTransformer(np.clip)))
    assert info.value.global_name == "numpy.clip"


# --- resources -----------------------------------------------------------------------------


def test_bytearray8_longer_than_the_file_is_a_bomb() -> None:
    blob = b"\x80\x05" + pickle.BYTEARRAY8 + struct.pack("<Q", 1 << 40) + pickle.STOP
    with pytest.raises(PickleBomb):
        safe_loads(blob)


@pytest.mark.parametrize(
    "constructor",
    [
        b"c__builtin__\nbytearray\nJ\x00\x00\x00\x7f\x85R",
        b"c__builtin__\nbytes\nJ\x00\x00\x00\x7f\x85R",
        b"c__builtin__\nlist\nc__builtin__\nrange\nJ\x00\x00\x00\x7f\x85R\x85R",
        b"cnumpy\nvoid\nJ\x00\x00\x00\x7f\x85R",
        # an object array must be filled with None, touching every page
        b"cnumpy\nndarray\nJ\x00\x00\x00\x7f\x85cnumpy\ndtype\nX\x02\x00\x00\x00O8\x85R\x86R",
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nJ\x00\x00\x00\x7f\x85"
        b"X\x01\x00\x00\x00b\x87R",
    ],
)
def test_huge_allocations_are_refused(constructor: bytes) -> None:
    with pytest.raises(PickleBomb, match="too much memory"):
        safe_loads(b"\x80\x02" + constructor + b".")


def test_compression_bomb_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(safe_pickle, "MIN_DECOMPRESSED_LIMIT", 1 << 20)
    path = tmp_path / "bomb.joblib"
    path.write_bytes(zlib.compress(pickle.dumps(b"\0" * (8 << 20)), 9))
    with pytest.raises(PickleBomb, match="inflates"):
        safe_load(path)


def test_truncated_joblib_array_is_refused(zoo: dict[str, Trained], tmp_path: Path) -> None:
    blob = _joblib_bytes(zoo["forest_100"].model, tmp_path)
    with pytest.raises(ModelLoadError):
        safe_loads(blob[: len(blob) // 2])


def test_trailing_data_after_stop_is_refused(zoo: dict[str, Trained]) -> None:
    with pytest.raises(ModelLoadError, match="unexpected bytes"):
        safe_loads(pickle.dumps(zoo["linreg"].model) + b"PK\x05\x06 hidden zip")


def test_garbage_is_a_load_error_not_a_crash() -> None:
    with pytest.raises(ModelLoadError):
        safe_load(io.BytesIO(b"\x80\x04not a pickle at all"))


# --- operator allow-list -------------------------------------------------------------------


def test_operators_can_extend_the_allow_list_but_not_with_dangerous_names() -> None:
    blob = pickle.dumps(Counter("abca"))
    with pytest.raises(UnsafePickle, match="collections.Counter"):
        safe_loads(blob)
    assert safe_loads(blob, extra_allowed=["collections.Counter"]) == Counter("abca")
    evil = pickle.dumps(Payload(eval, "1 + 1"))
    with pytest.raises(UnsafePickle, match="builtins.eval"):
        safe_loads(evil, extra_allowed=["builtins.eval"])
    with pytest.raises(UnsafePickle, match="posix.system"):
        safe_loads(pickle.dumps(Payload(os.system, "true")), extra_allowed=["posix.system"])
    with pytest.raises(UnsafePickle, match="numpy.load"):
        safe_loads(pickle.dumps(Payload(np.load, "x.npy")), extra_allowed=["numpy.load"])


@pytest.mark.parametrize(
    ("name", "allowed"),
    [
        ("sklearn.linear_model._logistic.LogisticRegression", True),
        ("sklearn.tree._tree.Tree", True),
        ("numpy.float64", True),
        ("numpy.log1p", True),
        ("scipy.sparse._csr.csr_matrix", True),
        ("builtins.dict", True),
        ("builtins.getattr", False),
        ("numpy.load", False),
        ("sklearn.utils.validation.check_array", False),
        ("sklearn.linear_model._logistic.np", False),
        ("os.system", False),
        ("nonexistent", False),
    ],
)
def test_is_allowed_global(name: str, allowed: bool) -> None:
    assert is_allowed_global(name) is allowed


def test_logistic_regression_class_really_is_the_sklearn_one() -> None:
    assert safe_pickle.resolve_global("sklearn.linear_model", "LogisticRegression") is (
        LogisticRegression
    )
    assert safe_pickle.resolve_global("builtins", "set") is builtins.set
