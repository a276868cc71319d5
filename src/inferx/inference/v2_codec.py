"""The Open Inference Protocol (KServe V2) on the wire: JSON tensors and the binary tensor
extension, both ways. Pure functions: bytes in, arrays out, and back; no model knowledge.

A request body is ``JSON || binary``: the ``Inference-Header-Content-Length`` header says where
the JSON ends, and each input with ``parameters.binary_data_size`` takes its bytes, in input
order. Binary tensors are little-endian and row-major; a BYTES element is a 4-byte
little-endian length followed by its bytes.
"""

from __future__ import annotations

import json
import math
import re
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from inferx.errors import InferxError

DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}
_JSON_KINDS = {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}
_HEADER_LENGTH = re.compile(r"^[0-9]{1,12}$")
_LENGTH = struct.Struct("<I")
MAX_NAME = 256
MAX_PARAMETERS = 64


class MalformedRequest(InferxError):
    status, title = 400, "Malformed inference request"


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on top of the body size limit: what one request may declare."""

    max_inputs: int = 64
    max_outputs: int = 16
    max_elements: int = 2_000_000
    max_dims: int = 8


@dataclass(frozen=True, slots=True)
class Tensor:
    """A decoded input. BYTES arrays hold ``str`` (JSON) or ``bytes`` (binary) objects."""

    name: str
    datatype: str
    array: np.ndarray


@dataclass(frozen=True, slots=True)
class OutputRequest:
    name: str
    binary: bool | None


@dataclass(frozen=True, slots=True)
class InferRequest:
    id: str | None
    parameters: dict[str, Any]
    inputs: list[Tensor]
    outputs: list[OutputRequest] | None

    @property
    def binary_output(self) -> bool:
        """The request-wide default for outputs that do not say (``binary_data_output``)."""
        return self.parameters.get("binary_data_output") is True


@dataclass(frozen=True, slots=True)
class OutputTensor:
    name: str
    datatype: str
    array: np.ndarray
    binary: bool


# -- request -------------------------------------------------------------------------------


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo ``Content-Encoding: gzip|deflate`` (tritonclient's request compression), never
    inflating past ``limit`` bytes."""
    name = (encoding or "identity").strip().lower()
    if name == "identity":
        return body
    if name not in ("gzip", "deflate"):
        raise MalformedRequest(f"Content-Encoding {encoding!r} is not supported (gzip, deflate).")
    inflater = zlib.decompressobj(wbits=31 if name == "gzip" else 15)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise MalformedRequest(f"The body is not valid {name} data.") from exc
    if len(out) > limit or inflater.unconsumed_tail:
        raise MalformedRequest(f"The decompressed body exceeds {limit} bytes.")
    return out


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    """The JSON part and the binary part, from ``Inference-Header-Content-Length``."""
    if header_length is None:
        return body, memoryview(b"")
    value = header_length.strip()
    if not _HEADER_LENGTH.match(value) or not 0 < int(value) <= len(body):
        raise MalformedRequest(
            f"Inference-Header-Content-Length must be a byte count from 1 to the body's "
            f"{len(body)} bytes; got {header_length[:40]!r}."
        )
    n = int(value)
    return body[:n], memoryview(body)[n:]


def decode_request(
    body: bytes, header_length: str | None = None, limits: Limits | None = None
) -> InferRequest:
    """Parse an inference request; every shape, size and datatype checked before any copy."""
    limits = limits or Limits()
    head, binary = split_body(body, header_length)
    doc = _load_json(head)
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise MalformedRequest("`inputs` must be a non-empty list of tensors.")
    if len(raw_inputs) > limits.max_inputs:
        raise MalformedRequest(f"{len(raw_inputs)} inputs; at most {limits.max_inputs}.")
    tensors: list[Tensor] = []
    offset = elements = 0
    for index, raw in enumerate(raw_inputs):
        name, datatype, shape, size, data = _input_spec(index, raw, limits)
        count = math.prod(shape)
        elements += count
        if elements > limits.max_elements:
            raise MalformedRequest(
                f"The inputs hold more than {limits.max_elements} elements in all."
            )
        if size is None:
            array = _from_json(name, datatype, shape, count, data)
        else:
            chunk = binary[offset : offset + size]
            if len(chunk) != size:
                raise MalformedRequest(
                    f"Input {name!r} declares binary_data_size {size} but only {len(chunk)} "
                    "bytes of binary data remain."
                )
            offset += size
            array = _from_binary(name, datatype, shape, count, chunk)
        tensors.append(Tensor(name, datatype, array))
    if len({t.name for t in tensors}) != len(tensors):
        raise MalformedRequest("Input names must be unique.")
    if offset != len(binary):
        raise MalformedRequest(
            f"{len(binary)} bytes of binary data follow the JSON but the inputs declare {offset}."
        )
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise MalformedRequest("`id` must be a string.")
    return InferRequest(
        id=request_id,
        parameters=_parameters(doc.get("parameters"), "parameters"),
        inputs=tensors,
        outputs=_outputs(doc.get("outputs"), limits),
    )


def _load_json(head: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(head)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise MalformedRequest(
            "The inference request is not valid JSON (binary tensors need the "
            "Inference-Header-Content-Length header)."
        ) from exc
    if not isinstance(doc, dict):
        raise MalformedRequest("The inference request must be a JSON object.")
    return doc


def _input_spec(
    index: int, raw: Any, limits: Limits
) -> tuple[str, str, list[int], int | None, Any]:
    if not isinstance(raw, dict):
        raise MalformedRequest(f"inputs[{index}] must be an object.")
    name = raw.get("name")
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME:
        raise MalformedRequest(f"inputs[{index}].name must be a non-empty string.")
    datatype = raw.get("datatype")
    if datatype not in DATATYPES:
        raise MalformedRequest(
            f"Input {name!r}: unknown datatype {str(datatype)[:40]!r}; "
            f"one of {', '.join(DATATYPES)}."
        )
    shape = raw.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) > limits.max_dims
        or not all(type(d) is int and d >= 0 for d in shape)
    ):
        raise MalformedRequest(
            f"Input {name!r}: shape must be a list of at most {limits.max_dims} "
            "non-negative integers."
        )
    if math.prod(shape) > limits.max_elements:
        raise MalformedRequest(
            f"Input {name!r}: shape {shape} holds more than {limits.max_elements} elements."
        )
    size = _parameters(raw.get("parameters"), f"input {name!r} parameters").get("binary_data_size")
    if size is not None and (type(size) is not int or size < 0):
        raise MalformedRequest(f"Input {name!r}: binary_data_size must be a byte count.")
    if size is not None and "data" in raw:
        raise MalformedRequest(f"Input {name!r} has both `data` and binary_data_size.")
    if size is None and "data" not in raw:
        raise MalformedRequest(f"Input {name!r} has no `data` (nor binary_data_size).")
    return name, str(datatype), shape, size, raw.get("data")


def _parameters(raw: Any, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or len(raw) > MAX_PARAMETERS:
        raise MalformedRequest(f"`{where}` must be an object of at most {MAX_PARAMETERS} keys.")
    return raw


def _outputs(raw: Any, limits: Limits) -> list[OutputRequest] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or len(raw) > limits.max_outputs:
        raise MalformedRequest(f"`outputs` must be a list of at most {limits.max_outputs}.")
    outputs: list[OutputRequest] = []
    for index, item in enumerate(raw):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or not name:
            raise MalformedRequest(f"outputs[{index}] must be an object with a `name`.")
        binary = _parameters(item.get("parameters"), f"output {name!r} parameters").get(
            "binary_data"
        )
        if binary is not None and not isinstance(binary, bool):
            raise MalformedRequest(f"Output {name!r}: binary_data must be true or false.")
        outputs.append(OutputRequest(name, binary))
    if len({o.name for o in outputs}) != len(outputs):
        raise MalformedRequest("Requested output names must be unique.")
    return outputs


def _from_json(name: str, datatype: str, shape: list[int], count: int, data: Any) -> np.ndarray:
    """``data`` flat or nested (row-major); element types must fit the datatype."""
    if not isinstance(data, list):
        raise MalformedRequest(f"Input {name!r}: `data` must be a list.")
    dtype = DATATYPES[datatype]
    try:
        array = np.array(data, dtype=object if datatype == "BYTES" else None)
    except (ValueError, TypeError, OverflowError) as exc:
        raise MalformedRequest(f"Input {name!r}: `data` is ragged or mixes types.") from exc
    if array.shape != tuple(shape) and not (array.ndim == 1 and array.size == count):
        raise MalformedRequest(
            f"Input {name!r}: shape {shape} holds {count} elements but `data` has "
            f"{array.size} (shape {list(array.shape)})."
        )
    if count == 0:
        return np.zeros(shape, dtype=dtype)
    if datatype == "BYTES":
        if not all(isinstance(v, str) for v in array.flat):
            raise MalformedRequest(f"Input {name!r}: BYTES data must be strings.")
        return array.reshape(shape)
    if array.dtype.kind not in _JSON_KINDS[dtype.kind]:
        expected = {"b": "true/false", "i": "integers", "u": "integers", "f": "numbers"}
        raise MalformedRequest(
            f"Input {name!r}: {datatype} data must be {expected[dtype.kind]} only."
        )
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if array.min() < info.min or array.max() > info.max:
            raise MalformedRequest(f"Input {name!r}: a value is out of the {datatype} range.")
    with np.errstate(over="ignore"):  # FP32/FP16 overflow becomes inf, refused downstream
        return array.astype(dtype).reshape(shape)


def _from_binary(
    name: str, datatype: str, shape: list[int], count: int, chunk: memoryview
) -> np.ndarray:
    if datatype == "BYTES":
        return decode_bytes(name, chunk, count).reshape(shape)
    dtype = DATATYPES[datatype]
    if len(chunk) != count * dtype.itemsize:
        raise MalformedRequest(
            f"Input {name!r}: shape {shape} of {datatype} needs {count * dtype.itemsize} bytes; "
            f"binary_data_size is {len(chunk)}."
        )
    if datatype == "BOOL":
        return np.frombuffer(chunk, dtype=np.uint8).astype(np.bool_).reshape(shape)
    return np.frombuffer(chunk, dtype=dtype).reshape(shape)


def decode_bytes(name: str, chunk: memoryview | bytes, count: int) -> np.ndarray:
    """``count`` length-prefixed elements filling ``chunk`` exactly, as ``bytes`` objects."""
    view = memoryview(chunk)
    items: list[bytes] = []
    pos, end = 0, len(view)
    for _ in range(count):
        if pos + 4 > end:
            raise MalformedRequest(f"Input {name!r}: BYTES data ends inside element {len(items)}.")
        (length,) = _LENGTH.unpack_from(view, pos)
        pos += 4
        if pos + length > end:
            raise MalformedRequest(f"Input {name!r}: BYTES element {len(items)} overruns the data.")
        items.append(bytes(view[pos : pos + length]))
        pos += length
    if pos != end:
        raise MalformedRequest(
            f"Input {name!r}: {end - pos} bytes left after its {count} BYTES elements."
        )
    array = np.empty(count, dtype=object)
    array[:] = items
    return array


# -- response ------------------------------------------------------------------------------


def encode_response(
    header: dict[str, Any], outputs: Sequence[OutputTensor]
) -> tuple[bytes, int | None]:
    """The response body, and the JSON length when binary outputs follow it (else None)."""
    entries: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for out in outputs:
        entry: dict[str, Any] = {
            "name": out.name,
            "datatype": out.datatype,
            "shape": list(out.array.shape),
        }
        if out.binary:
            raw = to_binary(out.array, out.datatype)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = to_json_data(out.array, out.datatype)
        entries.append(entry)
    head = json.dumps({**header, "outputs": entries}, separators=(",", ":"), allow_nan=False)
    encoded = head.encode()
    if not chunks:
        return encoded, None
    return b"".join([encoded, *chunks]), len(encoded)


def to_json_data(array: np.ndarray, datatype: str) -> list[Any]:
    """Flat, row-major; NaN and infinity become null (JSON has neither)."""
    if datatype == "BYTES":
        return [_text(v) for v in array.flat]
    values: list[Any] = array.ravel().tolist()
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        values = [v if math.isfinite(v) else None for v in values]
    return values


def to_binary(array: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        return encode_bytes(array)
    return np.ascontiguousarray(array, dtype=DATATYPES[datatype]).tobytes()


def encode_bytes(array: np.ndarray) -> bytes:
    parts: list[bytes] = []
    for value in array.flat:
        raw = value if isinstance(value, bytes) else str(value).encode()
        parts.append(_LENGTH.pack(len(raw)))
        parts.append(raw)
    return b"".join(parts)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
