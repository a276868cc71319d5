"""Tell a model file's framework from its content (magic bytes and structure).

The file name is only used in messages and a client's declared framework can only confirm
what the content says: a ``model.onnx`` that is really a pickle is a pickle.
"""

from __future__ import annotations

import json
import mmap
import os
import re
import zipfile
from collections.abc import Iterator
from typing import Any

from inferx.inference.runtimes.base import MissingExtra, ModelLoadError
from inferx.registry.safe_pickle import compression_of, open_decompressed

FRAMEWORKS = ("sklearn", "skops", "onnx", "xgboost", "lightgbm", "torchscript")
_ALIASES = {
    "scikit-learn": "sklearn",
    "pickle": "sklearn",
    "joblib": "sklearn",
    "torch": "torchscript",
    "pytorch": "torchscript",
}

MAX_ZIP_ENTRIES = 10_000
MAX_ZIP_UNCOMPRESSED = 2 << 30
MAX_ZIP_RATIO = 100
MAX_SKOPS_SCHEMA = 64 << 20
ONNX_PARSE_LIMIT = 64 << 20  # confirm with the onnx package only below this size
_RATIO_FLOOR = 16 << 20  # small archives may compress as well as they like
_HEAD = 64 << 10

# protobuf field number -> wire type, for onnx.ModelProto and onnx.GraphProto
_MODEL_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2, 26: 2}
_GRAPH_FIELDS = {1: 2, 2: 2, 5: 2, 10: 2, 11: 2, 12: 2, 13: 2, 14: 2, 15: 2, 16: 2}
_UBJ_LENGTHS = {ord("i"): 1, ord("U"): 1, ord("I"): 2, ord("l"): 4, ord("L"): 8}


class UnsupportedModelFile(ModelLoadError):
    """The content is not a model file InferX can load (or contradicts what was declared)."""


def canonical_framework(name: str) -> str:
    """``"scikit-learn"`` -> ``"sklearn"``; an unknown name raises UnsupportedModelFile."""
    framework = _ALIASES.get(name.strip().lower(), name.strip().lower())
    if framework not in FRAMEWORKS:
        raise UnsupportedModelFile(
            f"unknown framework {name!r}; expected one of {', '.join(FRAMEWORKS)}"
        )
    return framework


def detect_framework(path: str, filename: str | None = None, declared: str | None = None) -> str:
    """The framework of the model file at `path`, judged by its content alone."""
    expected = canonical_framework(declared) if declared else None
    label = filename or os.path.basename(path)
    with open(path, "rb") as f:
        head = f.read(_HEAD)
    if not head.strip():
        raise UnsupportedModelFile(f"{label} is empty")
    detected = _sniff(path, head)
    if detected is None:
        raise UnsupportedModelFile(
            f"{label} is not a model file InferX can load (pickle/joblib, skops, ONNX, "
            "XGBoost JSON/UBJSON, LightGBM text or TorchScript)"
        )
    if expected is not None and expected != detected:
        raise UnsupportedModelFile(
            f"{label} was declared as {expected} but its content is a {detected} model"
        )
    return detected


def _sniff(path: str, head: bytes) -> str | None:
    if head.startswith(b"PK\x03\x04"):
        return _sniff_zip(path)
    if zipfile.is_zipfile(path):
        raise UnsupportedModelFile("the file hides a zip archive behind other content")
    if is_pickle_header(head):
        return "sklearn"
    method = compression_of(head)
    if method is not None:
        return _sniff_compressed(path, method)
    if _is_lightgbm(head):
        return "lightgbm"
    if _is_xgboost(head):
        return "xgboost"
    if _is_onnx(path):
        return "onnx"
    return None


def is_pickle_header(head: bytes) -> bool:
    """Protocol 2-5 pickles (what pickle.dump and joblib.dump write) open with PROTO n."""
    return len(head) >= 3 and head[0] == 0x80 and 2 <= head[1] <= 5


def _sniff_compressed(path: str, method: str) -> str | None:
    if method == "joblib-legacy":
        raise UnsupportedModelFile("joblib files written before joblib 0.10 are not supported")
    with open(path, "rb") as raw:
        try:
            first = open_decompressed(raw, method).read(3)
        except MissingExtra as exc:
            raise UnsupportedModelFile(
                f"{method}-compressed joblib files need inferx[{exc.extra}]; "
                "or re-save with joblib.dump(..., compress=3)"
            ) from exc
        except Exception:  # any decoder failure means "not this format"
            return None
    return "sklearn" if is_pickle_header(first) else None


def _is_lightgbm(head: bytes) -> bool:
    starts = head.startswith(b"tree\n") or head.startswith(b"tree\r\n")
    return starts and re.search(rb"^version=v\d+\r?$", head, re.MULTILINE) is not None


def _is_xgboost(head: bytes) -> bool:
    if re.match(rb'\s*\{\s*"(learner|version)"\s*:', head):
        return True
    # UBJSON: '{', a length-typed key, then the key itself.
    if len(head) < 3 or head[0] != ord("{") or head[1] not in _UBJ_LENGTHS:
        return False
    width = _UBJ_LENGTHS[head[1]]
    length = int.from_bytes(head[2 : 2 + width], "big")
    return head[2 + width : 2 + width + length] in (b"learner", b"version")


def _varint(buf: Any, pos: int, end: int) -> tuple[int, int] | None:
    value = shift = 0
    while pos < end and shift < 64:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    return None


def _fields(buf: Any, start: int, end: int, schema: dict[int, int]) -> Iterator[tuple[int, int]]:
    """(field number, start offset) of each top-level protobuf field; ValueError if invalid."""
    pos = start
    while pos < end:
        key = _varint(buf, pos, end)
        if key is None or schema.get(key[0] >> 3) != key[0] & 7:
            raise ValueError("not this message")
        field, pos = key[0] >> 3, key[1]
        value = _varint(buf, pos, end)
        if value is None:
            raise ValueError("truncated")
        yield field, value[1]
        pos = value[1] + (value[0] if schema[field] == 2 else 0)
        if pos > end:
            raise ValueError("truncated")
        if field == 7:
            yield from ((-f, p) for f, p in _fields(buf, value[1], pos, _GRAPH_FIELDS))


def _is_onnx(path: str) -> bool:
    size = os.path.getsize(path)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        try:
            seen = {field for field, _ in _fields(buf, 0, size, _MODEL_FIELDS)}
        except ValueError:
            return False
        # ir_version, a graph, and at least one graph output (-12).
        if not {1, 7, -12} <= seen:
            return False
        return size > ONNX_PARSE_LIMIT or _onnx_parses(buf[:])


def _onnx_parses(data: bytes) -> bool:
    try:
        import onnx
    except ImportError:
        return True
    try:
        model = onnx.ModelProto.FromString(data)
    except Exception:  # protobuf raises DecodeError and others
        return False
    return model.ir_version > 0 and len(model.graph.output) > 0


def check_archive(path: str) -> list[str]:
    """The member names of a zip model file, after refusing bombs and unsafe member names."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise UnsupportedModelFile(f"corrupt zip archive: {exc}") from exc
    if len(infos) > MAX_ZIP_ENTRIES:
        raise UnsupportedModelFile(f"zip archive has more than {MAX_ZIP_ENTRIES} members")
    total = sum(info.file_size for info in infos)
    packed = sum(info.compress_size for info in infos)
    if total > MAX_ZIP_UNCOMPRESSED or (
        total > _RATIO_FLOOR and total > MAX_ZIP_RATIO * max(packed, 1)
    ):
        raise UnsupportedModelFile("zip archive inflates too much (zip bomb?)")
    names = [info.filename for info in infos]
    if len(set(names)) != len(names):
        raise UnsupportedModelFile("zip archive has duplicate member names")
    for info in infos:
        parts = info.filename.split("/")
        if info.filename.startswith("/") or "\\" in info.filename or ".." in parts:
            raise UnsupportedModelFile(f"zip member with an unsafe path: {info.filename!r}")
        if info.flag_bits & 0x1:
            raise UnsupportedModelFile("encrypted zip archives are not supported")
    return names


def _sniff_zip(path: str) -> str:
    names = check_archive(path)
    torchscript = _is_torchscript(names)
    if "schema.json" in names:
        if torchscript:
            raise UnsupportedModelFile("zip archive is both a skops file and TorchScript")
        check_skops_members(path, names)
        return "skops"
    if torchscript:
        return "torchscript"
    if any(name.endswith("data.pkl") for name in names):
        raise UnsupportedModelFile(
            "torch.save() archives are pickles that run code when loaded; "
            "export with torch.jit.script/trace or to ONNX"
        )
    raise UnsupportedModelFile("zip archive is neither a skops file nor a TorchScript archive")


def _is_torchscript(names: list[str]) -> bool:
    prefixes = {name.split("/")[0] for name in names if name.endswith("/constants.pkl")}
    return any(
        f"{prefix}/data.pkl" in names and any(name.startswith(f"{prefix}/code/") for name in names)
        for prefix in prefixes
    )


def _referenced_files(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("file"), str):
            yield node["file"]
        for value in node.values():
            yield from _referenced_files(value)
    elif isinstance(node, list):
        for value in node:
            yield from _referenced_files(value)


def check_skops_members(path: str, names: list[str]) -> None:
    """A skops archive holds schema.json and exactly the files its schema refers to."""
    with zipfile.ZipFile(path) as archive:
        if archive.getinfo("schema.json").file_size > MAX_SKOPS_SCHEMA:
            raise UnsupportedModelFile("skops schema.json is too large")
        try:
            schema = json.loads(archive.read("schema.json"))
        except (ValueError, RecursionError) as exc:
            raise UnsupportedModelFile(f"skops schema.json is not valid JSON: {exc}") from exc
    if not isinstance(schema, dict) or "protocol" not in schema or "__loader__" not in schema:
        raise UnsupportedModelFile("schema.json is not a skops schema")
    extra = set(names) - set(_referenced_files(schema)) - {"schema.json"}
    if extra:
        raise UnsupportedModelFile(f"skops file has unexpected members: {sorted(extra)[:5]}")
