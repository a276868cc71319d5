"""Message framing between the API process and inference workers.

A frame is ``<u32 header length><u32 payload length><JSON header><payload>``. Numeric arrays
travel as raw bytes in the payload, described in the header under ``"arrays"`` by
``[dtype, shape]``; string and object arrays travel as ``[kind, shape, flat JSON list]``.

The worker runs untrusted model code, so everything it sends is decoded here with JSON and
``np.frombuffer`` only: no pickle, only plain dtypes, every size checked against the bytes
actually received, and every frame bounded. String arrays come back with dtype object.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

PREFIX = struct.Struct("<II")
DEFAULT_MAX_FRAME = 64 << 20
# JSON expands in memory (a 2-byte "0," becomes an 8-byte list slot), so the header is held
# to a smaller bound than the raw payload.
MAX_HEADER = 8 << 20
MAX_NDIM = 8

_PLAIN_DTYPE = re.compile(r"[<>|=]?(b1|[iu][1248]|f[248])")
_SCALARS = (str, int, float, bool, type(None))
# The fallback encoder for what orjson refuses or would change (see _dumps), built once.
_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=True)
_JSON_IN = json.JSONDecoder()
# dtype strings already accepted by _PLAIN_DTYPE (a few dozen at most), to skip the regex
_DTYPES: dict[str, np.dtype[Any]] = {}


class ProtocolError(Exception):
    """The peer sent something that is not a valid frame; the connection cannot be trusted."""


def encode_frame(header: dict[str, Any], arrays: Sequence[np.ndarray] = ()) -> bytes:
    """One frame holding ``header`` plus ``arrays`` (raw bytes for numbers, JSON otherwise)."""
    buffers: list[memoryview] = []
    size = 0
    if arrays:
        header = {**header, "arrays": [_describe(a, buffers) for a in arrays]}
        for buffer in buffers:
            size += buffer.nbytes
    head = _dumps(header)
    return b"".join((PREFIX.pack(len(head), size), head, *buffers))


def _dumps(header: dict[str, Any]) -> bytes:
    """``header`` as JSON: orjson's bytes when they mean what the stdlib's would, else those."""
    try:
        head = orjson.dumps(header)
    except TypeError:  # integers past 64 bits, numpy scalars, lone surrogates, non-str keys
        return _JSON.encode(header).encode()
    if b"null" in head:  # orjson writes NaN and infinities as null; the stdlib keeps them
        return _JSON.encode(header).encode()
    return head


def _describe(array: np.ndarray, buffers: list[memoryview]) -> list[Any]:
    kind = array.dtype.kind
    shape = list(array.shape)
    if kind in "biuf" and _plain_dtype(array.dtype.str) is not None:
        if array.size:
            buffers.append(np.ascontiguousarray(array).data.cast("B"))
        return [array.dtype.str, shape]
    if kind in "US":
        flat = array.ravel().tolist()
        return ["str", shape, [v.decode("utf-8", "replace") if kind == "S" else v for v in flat]]
    if kind == "O":
        return ["obj", shape, [json_scalar(v) for v in array.ravel().tolist()]]
    raise TypeError(f"arrays of dtype {array.dtype} cannot be sent")


def json_scalar(value: Any) -> Any:
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def decode_arrays(header: dict[str, Any], payload: bytes | bytearray) -> list[np.ndarray]:
    """The arrays a frame carries; raises ProtocolError on anything malformed."""
    descs = header.get("arrays", [])
    if not isinstance(descs, list):
        raise ProtocolError("arrays must be a list")
    arrays: list[np.ndarray] = []
    offset = 0
    for desc in descs:
        if not isinstance(desc, list) or len(desc) not in (2, 3) or not isinstance(desc[0], str):
            raise ProtocolError("bad array descriptor")
        shape = _shape(desc[1])
        if len(desc) == 2:
            array, offset = _raw_array(desc[0], shape, payload, offset)
        else:
            array = _json_array(desc[0], shape, desc[2])
        arrays.append(array)
    if offset != len(payload):
        raise ProtocolError("payload length does not match the arrays it carries")
    return arrays


def _shape(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or len(value) > MAX_NDIM:
        raise ProtocolError("bad array shape")
    if not all(type(d) is int and d >= 0 for d in value):
        raise ProtocolError("bad array shape")
    return tuple(value)


def _raw_array(
    dtype_str: str, shape: tuple[int, ...], payload: bytes | bytearray, offset: int
) -> tuple[np.ndarray, int]:
    dtype = _plain_dtype(dtype_str)
    if dtype is None:
        raise ProtocolError(f"dtype {dtype_str!r} is not accepted")
    count = math.prod(shape)
    end = offset + count * dtype.itemsize
    if end > len(payload):
        raise ProtocolError("array runs past the end of the payload")
    if count == 0:
        return np.empty(shape, dtype=dtype), end
    flat = np.frombuffer(payload, dtype=dtype, count=count, offset=offset)
    return flat.reshape(shape), end


def _plain_dtype(dtype_str: str) -> np.dtype[Any] | None:
    dtype = _DTYPES.get(dtype_str)
    if dtype is None and _PLAIN_DTYPE.fullmatch(dtype_str):
        dtype = _DTYPES[dtype_str] = np.dtype(dtype_str)
    return dtype


def _json_array(kind: str, shape: tuple[int, ...], values: Any) -> np.ndarray:
    if not isinstance(values, list) or len(values) != math.prod(shape):
        raise ProtocolError("JSON array length does not match its shape")
    if kind == "str":
        if not all(type(v) is str for v in values):
            raise ProtocolError("str array holds a non-string")
    elif kind == "obj":
        if not all(isinstance(v, _SCALARS) for v in values):
            raise ProtocolError("object array holds a non-scalar")
    else:
        raise ProtocolError(f"unknown array kind {kind!r}")
    # Object dtype even for strings: a fixed-width "<U" array is sized by its longest
    # string, so one long label among many short ones would multiply memory.
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array.reshape(shape)


class FrameReader:
    """Incremental parser: ``feed`` bytes as they arrive, get back the frames they complete."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME, *, writable: bool = False) -> None:
        self.max_frame = max_frame
        self._writable = writable
        self._buf = bytearray()

    def feed(self, data: bytes | memoryview) -> list[tuple[dict[str, Any], bytes | bytearray]]:
        """``(header, payload)`` for each frame completed by ``data``; payload is a fresh copy."""
        if self._buf:
            self._buf += data
            frames, used = self._split(self._buf)
            del self._buf[:used]
        else:
            # Common case: one whole frame per read, parsed without copying into the buffer.
            frames, used = self._split(data)
            if used < len(data):
                self._buf += data[used:]
        return frames

    def _split(
        self, buf: bytes | bytearray | memoryview
    ) -> tuple[list[tuple[dict[str, Any], Any]], int]:
        frames = []
        start = 0
        with memoryview(buf) as view:
            while len(buf) - start >= PREFIX.size:
                head_len, payload_len = PREFIX.unpack_from(buf, start)
                total = PREFIX.size + head_len + payload_len
                if total > self.max_frame or head_len > MAX_HEADER:
                    raise ProtocolError(f"frame of {total} bytes exceeds the limits")
                if len(buf) - start < total:
                    break
                body = start + PREFIX.size
                header = _parse_header(view[body : body + head_len])
                chunk = view[body + head_len : start + total]
                frames.append((header, bytearray(chunk) if self._writable else bytes(chunk)))
                start += total
        return frames, start

    @property
    def buffered(self) -> int:
        return len(self._buf)


def _parse_header(raw: memoryview) -> dict[str, Any]:
    try:
        header = _JSON_IN.decode(str(raw, "utf-8"))
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise ProtocolError("header is not an object")
    return header
