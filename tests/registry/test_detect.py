"""Content sniffing: every supported format is recognised, anything else is refused."""

from __future__ import annotations

import importlib.util
import json
import pickle
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest

from inferx.registry import detect
from inferx.registry.detect import UnsupportedModelFile, canonical_framework, detect_framework

sys.path.insert(0, str(Path(__file__).parent))  # import mode "importlib" adds no test dirs
from model_zoo import Trained, trained_zoo  # noqa: E402


@pytest.fixture(scope="module")
def iris() -> Trained:
    return trained_zoo()["logreg_iris"]


def _skops(model: Any, path: Path) -> Path:
    sio = pytest.importorskip("skops.io")
    sio.dump(model, path)
    return path


def _onnx(model: Any, X: np.ndarray, path: Path) -> Path:
    skl2onnx = pytest.importorskip("skl2onnx")
    path.write_bytes(skl2onnx.to_onnx(model, X[:1].astype(np.float32)).SerializeToString())
    return path


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_pickles(iris: Trained, tmp_path: Path, protocol: int) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(pickle.dumps(iris.model, protocol=protocol))
    assert detect_framework(str(path)) == "sklearn"


@pytest.mark.parametrize("compress", [0, 3, ("gzip", 3), ("bz2", 3), ("xz", 3), ("lzma", 3)])
def test_joblib_files(iris: Trained, tmp_path: Path, compress: Any) -> None:
    path = tmp_path / "model.joblib"
    joblib.dump(iris.model, path, compress=compress)
    assert detect_framework(str(path)) == "sklearn"


def test_skops(iris: Trained, tmp_path: Path) -> None:
    assert detect_framework(str(_skops(iris.model, tmp_path / "m.skops"))) == "skops"


def test_onnx_with_and_without_the_onnx_package(
    iris: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _onnx(iris.model, iris.X, tmp_path / "m.bin")
    assert detect_framework(str(path)) == "onnx"
    monkeypatch.setitem(sys.modules, "onnx", None)  # the structural check alone
    assert detect_framework(str(path)) == "onnx"
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(UnsupportedModelFile):
        detect_framework(str(truncated))


@pytest.mark.parametrize("suffix", ["json", "ubj"])
def test_xgboost(iris: Trained, tmp_path: Path, suffix: str) -> None:
    xgb = pytest.importorskip("xgboost")
    model = xgb.XGBClassifier(n_estimators=2, n_jobs=1).fit(iris.X, iris.model.predict(iris.X))
    model.save_model(tmp_path / f"m.{suffix}")
    renamed = tmp_path / "model.bin"
    (tmp_path / f"m.{suffix}").rename(renamed)
    assert detect_framework(str(renamed)) == "xgboost"


def test_lightgbm(iris: Trained, tmp_path: Path) -> None:
    lgb = pytest.importorskip("lightgbm")
    model = lgb.LGBMClassifier(n_estimators=2, verbose=-1).fit(iris.X, iris.model.predict(iris.X))
    model.booster_.save_model(tmp_path / "model.txt")
    assert detect_framework(str(tmp_path / "model.txt")) == "lightgbm"


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_torchscript_but_not_torch_save(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.Linear(4, 2))
    torch.jit.script(net).save(str(tmp_path / "scripted.pt"))
    assert detect_framework(str(tmp_path / "scripted.pt")) == "torchscript"
    torch.save(net.state_dict(), tmp_path / "weights.pt")
    with pytest.raises(UnsupportedModelFile, match=r"torch\.save"):
        detect_framework(str(tmp_path / "weights.pt"))


# --- declared frameworks and polyglots -----------------------------------------------------


def test_declared_framework_must_match_the_content(iris: Trained, tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"  # the extension lies
    path.write_bytes(pickle.dumps(iris.model))
    assert detect_framework(str(path), filename="model.onnx") == "sklearn"
    assert detect_framework(str(path), declared="scikit-learn") == "sklearn"
    with pytest.raises(UnsupportedModelFile) as info:
        detect_framework(str(path), filename="model.onnx", declared="onnx")
    assert "onnx" in info.value.detail and "sklearn" in info.value.detail
    assert "model.onnx" in info.value.detail


def test_unknown_declared_framework(iris: Trained, tmp_path: Path) -> None:
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps(iris.model))
    with pytest.raises(UnsupportedModelFile, match="unknown framework"):
        detect_framework(str(path), declared="tensorflow")
    assert canonical_framework("PyTorch") == "torchscript"


def test_pickle_with_a_zip_appended_is_refused(iris: Trained, tmp_path: Path) -> None:
    path = tmp_path / "polyglot.pkl"
    with zipfile.ZipFile(tmp_path / "payload.zip", "w") as archive:
        archive.writestr("schema.json", "{}")
    path.write_bytes(pickle.dumps(iris.model) + (tmp_path / "payload.zip").read_bytes())
    with pytest.raises(UnsupportedModelFile, match="hides a zip"):
        detect_framework(str(path))


def test_skops_with_an_extra_member_is_refused(iris: Trained, tmp_path: Path) -> None:
    path = _skops(iris.model, tmp_path / "m.skops")
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("payload.pkl", pickle.dumps("hello"))
    with pytest.raises(UnsupportedModelFile, match="unexpected members"):
        detect_framework(str(path))


def test_zip_is_neither_skops_nor_torchscript(tmp_path: Path) -> None:
    path = tmp_path / "m.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hi")
    with pytest.raises(UnsupportedModelFile, match="neither"):
        detect_framework(str(path))


@pytest.mark.parametrize("member", ["../escape.npy", "/abs.npy", "a\\b.npy"])
def test_zip_members_with_unsafe_paths(tmp_path: Path, member: str) -> None:
    path = tmp_path / "m.skops"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("schema.json", json.dumps({"protocol": 2, "__loader__": "x"}))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # zipfile warns about odd names
            archive.writestr(member, b"x")
    with pytest.raises(UnsupportedModelFile, match="unsafe path"):
        detect_framework(str(path))


def test_zip_bombs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(detect, "_RATIO_FLOOR", 1 << 20)
    path = tmp_path / "bomb.skops"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("schema.json", b" " * (4 << 20))
    with pytest.raises(UnsupportedModelFile, match="zip bomb"):
        detect_framework(str(path))
    monkeypatch.setattr(detect, "MAX_ZIP_ENTRIES", 3)
    many = tmp_path / "many.skops"
    with zipfile.ZipFile(many, "w") as archive:
        for i in range(4):
            archive.writestr(f"{i}.npy", b"x")
    with pytest.raises(UnsupportedModelFile, match="more than 3 members"):
        detect_framework(str(many))


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "empty"),
        (b"hello, world\n", "not a model file"),
        (b"xyz not zlib at all", "not a model file"),
        (np.lib.format.magic(1, 0) + b"{'descr': '<f8'}", "not a model file"),
        (b"\x1f\x8b\x08\x00" + b"\x00" * 20, "not a model file"),
        (b"ZF0x1a" + b"\x00" * 20, "before joblib 0.10"),
        (b"\x04\x22\x4d\x18" + b"\x00" * 20, "lz4"),
        (b'{"foo": 1}', "not a model file"),
        (b"tree\nno version here\n", "not a model file"),
    ],
)
def test_unsupported_content(tmp_path: Path, content: bytes, match: str) -> None:
    if match == "lz4" and importlib.util.find_spec("lz4") is not None:
        pytest.skip("with lz4 installed these bytes are decompressed, not refused")
    path = tmp_path / "upload.bin"
    path.write_bytes(content)
    with pytest.raises(UnsupportedModelFile, match=match):
        detect_framework(str(path))


def test_gzipped_non_pickle_is_refused(tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(b"just some text"))
    with pytest.raises(UnsupportedModelFile, match="not a model file"):
        detect_framework(str(path))
