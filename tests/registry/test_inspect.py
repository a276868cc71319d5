"""Model metadata, the sample-row check, the input schema, and the sandbox CLI."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inferx.inference.runtimes.base import ModelLoadError
from inferx.registry.inspect import infer_input_schema, inspect_model, json_safe

sys.path.insert(0, str(Path(__file__).parent))  # import mode "importlib" adds no test dirs
from model_zoo import Trained, touch_payload, trained_zoo  # noqa: E402

SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture(scope="module")
def zoo() -> dict[str, Trained]:
    return trained_zoo()


def _pickle(obj: Any, path: Path) -> str:
    path.write_bytes(pickle.dumps(obj))
    return str(path)


def test_sklearn_metadata(zoo: dict[str, Trained], tmp_path: Path) -> None:
    meta = inspect_model(_pickle(zoo["scaled_logreg"].model, tmp_path / "m.pkl"), "sklearn")
    assert meta == json.loads(json.dumps(meta))
    assert meta["framework"] == "sklearn"
    assert meta["library"] == "scikit-learn"
    assert meta["estimator_class"] == "sklearn.pipeline.Pipeline"
    assert meta["classes"] == [0, 1, 2] and all(type(c) is int for c in meta["classes"])
    assert (meta["n_features"], meta["output_kind"], meta["has_predict_proba"]) == (
        4,
        "classifier",
        True,
    )
    assert meta["input_dtype"] == "float64"
    assert meta["verified"] is True
    assert meta["saved_with_version"] == meta["library_version"]


def test_saved_with_version_comes_from_the_pickle(zoo: dict[str, Trained], tmp_path: Path) -> None:
    import sklearn

    blob = pickle.dumps(zoo["linreg"].model, protocol=4)
    current = sklearn.__version__.encode()
    assert blob.count(current) == 1
    old = b"0.0." + b"9" * (len(current) - 4)
    (tmp_path / "old.pkl").write_bytes(blob.replace(current, old))
    meta = inspect_model(str(tmp_path / "old.pkl"), "sklearn")
    assert meta["saved_with_version"] == old.decode()
    assert meta["library_version"] == sklearn.__version__


def test_string_features_and_their_schema(zoo: dict[str, Trained], tmp_path: Path) -> None:
    meta = inspect_model(_pickle(zoo["onehot_pipeline"].model, tmp_path / "m.pkl"), "sklearn")
    assert meta["verified"] is True  # sample rows use a known category, not 0
    assert infer_input_schema(meta) == {
        "n_features": 2,
        "features": [{"name": "x0", "dtype": "string"}, {"name": "x1", "dtype": "float"}],
        "dtype": "object",
    }


def test_regressor_and_clusterer(zoo: dict[str, Trained], tmp_path: Path) -> None:
    gbr = inspect_model(_pickle(zoo["gbr"].model, tmp_path / "g.pkl"), "sklearn")
    assert (gbr["output_kind"], gbr["classes"], gbr["has_predict_proba"]) == (
        "regressor",
        None,
        False,
    )
    kmeans = inspect_model(_pickle(zoo["kmeans"].model, tmp_path / "k.pkl"), "sklearn")
    assert kmeans["output_kind"] == "other"


def test_onnx_metadata_lists_inputs_and_outputs(zoo: dict[str, Trained], tmp_path: Path) -> None:
    skl2onnx = pytest.importorskip("skl2onnx")
    iris = zoo["logreg_iris"]
    proto = skl2onnx.to_onnx(iris.model, iris.X[:1].astype(np.float32))
    (tmp_path / "m.onnx").write_bytes(proto.SerializeToString())
    meta = inspect_model(str(tmp_path / "m.onnx"), "onnx")
    assert meta["library"] == "onnxruntime"
    assert meta["inputs"] == [{"name": "X", "shape": [None, 4], "type": "tensor(float)"}]
    assert [o["name"] for o in meta["outputs"]] == ["output_label", "output_probability"]
    assert meta["classes"] == [0, 1, 2]
    assert meta["verified"] is True
    assert infer_input_schema(meta) == {"n_features": 4, "features": None, "dtype": "float32"}


def test_a_model_that_cannot_predict_is_refused(zoo: dict[str, Trained], tmp_path: Path) -> None:
    broken = pickle.loads(pickle.dumps(zoo["logreg_iris"].model))
    broken.coef_ = np.zeros((3, 7))  # claims 4 features, multiplies by 7
    with pytest.raises(ModelLoadError, match="does not predict on a sample row"):
        inspect_model(_pickle(broken, tmp_path / "m.pkl"), "sklearn")


def test_infer_input_schema_from_metadata() -> None:
    assert infer_input_schema({"n_features": None}) is None
    assert infer_input_schema({"n_features": 0}) is None
    named = {"n_features": 2, "feature_names": ["age", "city"], "input_dtype": "float64"}
    assert infer_input_schema(named) == {
        "n_features": 2,
        "features": [{"name": "age", "dtype": "float"}, {"name": "city", "dtype": "float"}],
        "dtype": "float64",
    }
    mismatched = {"n_features": 3, "feature_names": ["a"], "input_dtype": "float32"}
    assert infer_input_schema(mismatched) == {"n_features": 3, "features": None, "dtype": "float32"}


def test_json_safe() -> None:
    value = {1: np.int64(3), "a": (np.float32(0.5), float("nan")), "b": np.array([b"x"])}
    assert json_safe(value) == {"1": 3, "a": [0.5, None], "b": ["x"]}


# --- the CLI run inside the sandbox --------------------------------------------------------


def _cli(*args: str, code: str | None = None) -> tuple[int, list[str]]:
    command = ["-c", code] if code else ["-m", "inferx.registry.inspect"]
    env = {**os.environ, "PYTHONPATH": SRC}
    done = subprocess.run(
        [sys.executable, *command, *args], capture_output=True, text=True, env=env, timeout=120
    )
    return done.returncode, done.stdout.splitlines()


def test_cli_prints_one_json_line(zoo: dict[str, Trained], tmp_path: Path) -> None:
    code, lines = _cli(_pickle(zoo["logreg_iris"].model, tmp_path / "m.pkl"), "sklearn")
    assert code == 0 and len(lines) == 1
    assert json.loads(lines[0])["classes"] == [0, 1, 2]


def test_cli_keeps_stdout_clean_of_other_prints(zoo: dict[str, Trained], tmp_path: Path) -> None:
    # Native libraries (LightGBM, XGBoost) write to file descriptor 1 directly.
    script = (
        "import os, sys\n"
        "from inferx.registry import inspect\n"
        "real = inspect.inspect_model\n"
        "def noisy(*args, **kwargs):\n"
        "    os.write(1, b'native noise\\n')\n"
        "    print('python noise')\n"
        "    return real(*args, **kwargs)\n"
        "inspect.inspect_model = noisy\n"
        "sys.exit(inspect.main(sys.argv[1:]))"
    )
    path = _pickle(zoo["linreg"].model, tmp_path / "m.pkl")
    code, lines = _cli(path, "sklearn", code=script)
    assert code == 0 and len(lines) == 1
    assert json.loads(lines[0])["output_kind"] == "regressor"


def test_cli_reports_unsafe_pickles(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    code, lines = _cli(_pickle(touch_payload(target), tmp_path / "evil.pkl"), "sklearn")
    assert code == 2 and len(lines) == 1
    error = json.loads(lines[0])
    assert error["kind"] == "unsafe_pickle"
    assert error["global"] == "posix.system"
    assert "posix.system" in error["error"]
    assert not target.exists()


def test_cli_reports_missing_extras_and_load_errors(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(b"\x08\x07")
    script = (
        "import sys; sys.modules['onnxruntime'] = None\n"
        "from inferx.registry.inspect import main; sys.exit(main(sys.argv[1:]))"
    )
    code, lines = _cli(str(tmp_path / "m.onnx"), "onnx", code=script)
    assert code == 2
    assert json.loads(lines[0]) | {"error": ""} == {
        "error": "",
        "kind": "missing_extra",
        "detail": "this model needs an optional dependency: install inferx[onnx]",
        "global": None,
        "extra": "onnx",
    }
    code, lines = _cli(str(tmp_path / "missing.pkl"), "sklearn")
    assert code == 2 and json.loads(lines[0])["kind"] == "load_error"
    code, lines = _cli("only-one-argument")
    assert code == 2 and "usage" in json.loads(lines[0])["error"]


def test_importing_inspect_stays_small() -> None:
    script = (
        "import sys, inferx.registry.inspect\n"
        "heavy = {'fastapi', 'starlette', 'sqlalchemy', 'pydantic', 'sklearn', 'onnxruntime',\n"
        "         'torch', 'xgboost', 'lightgbm', 'skops', 'redis', 'httpx', 'structlog'}\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in heavy\n"
        "                or m in ('inferx.config', 'inferx.db', 'inferx.app'))\n"
        "print(loaded)"
    )
    code, lines = _cli(code=script)
    assert code == 0 and lines == ["[]"]
