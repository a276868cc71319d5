from __future__ import annotations

import json
import pickle
import struct

import numpy as np
import pytest

from inferx.inference.ipc import (
    MAX_HEADER,
    PREFIX,
    FrameReader,
    ProtocolError,
    decode_arrays,
    encode_frame,
)


def roundtrip(header: dict, arrays: list[np.ndarray], **reader_args) -> tuple[dict, list]:
    frames = FrameReader(**reader_args).feed(encode_frame(header, arrays))
    assert len(frames) == 1
    head, payload = frames[0]
    return head, decode_arrays(head, payload)


def raw_frame(header: dict, payload: bytes = b"") -> bytes:
    head = json.dumps(header).encode()
    return PREFIX.pack(len(head), len(payload)) + head + payload


@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype=np.float64).reshape(3, 4),
        np.arange(6, dtype=np.float32).reshape(2, 3).T,  # not C-contiguous
        np.array([True, False]),
        np.array([-1, 2, 3], dtype=np.int8),
        np.array([1, 2], dtype=np.uint64),
        np.array([1.5], dtype=np.float16),
        np.array([1.0, 2.0], dtype=">f8"),  # big-endian survives as such
        np.zeros((0, 5)),
    ],
)
def test_numeric_arrays_travel_as_raw_bytes(array: np.ndarray) -> None:
    head, [back] = roundtrip({"id": 1}, [array])
    assert head["id"] == 1
    assert head["arrays"][0] == [array.dtype.str, list(array.shape)]
    assert back.dtype == array.dtype
    np.testing.assert_array_equal(back, array)


def test_strings_and_objects_travel_as_json() -> None:
    labels = np.array([["setosa", "virginica"]])
    mixed = np.array(["a", 1, 2.5, None, True, np.int64(7)], dtype=object)
    _, [s, o] = roundtrip({}, [labels, mixed])
    assert s.dtype == object and s.tolist() == [["setosa", "virginica"]]
    assert o.dtype == object and o.tolist() == ["a", 1, 2.5, None, True, 7]


def test_headers_mean_what_the_standard_json_encoder_would_write() -> None:
    # orjson encodes the common headers; what it would refuse or turn into null (NaN,
    # infinities, integers past 64 bits, numpy scalars) must come through as before.
    values = np.array([float("nan"), float("inf"), 2**70, "é\ud800", None, 1.1], dtype=object)
    header = {"id": 3, "ms": float("-inf"), "classes": [2**65, np.float64(0.5), "ünï"]}
    head, [back] = roundtrip(header, [values])
    assert head["ms"] == float("-inf")
    assert head["classes"] == [2**65, 0.5, "ünï"] and type(head["classes"][0]) is int
    assert back[0] != back[0] and back[1] == float("inf") and back[2] == 2**70
    assert back[3:].tolist() == ["é\ud800", None, 1.1]
    plain, _ = roundtrip({"id": 4, "key": "ünï", "ok": True, "ms": 0.125}, [])
    assert plain == {"id": 4, "key": "ünï", "ok": True, "ms": 0.125}


def test_unsupported_dtypes_are_refused_at_encode() -> None:
    with pytest.raises(TypeError):
        encode_frame({}, [np.array([1 + 2j])])
    with pytest.raises(TypeError):
        encode_frame({}, [np.array(["2020-01-01"], dtype="datetime64[D]")])


def test_payload_arrays_are_read_only_unless_asked() -> None:
    data = encode_frame({}, [np.ones(3)])
    head, payload = FrameReader().feed(data)[0]
    assert not decode_arrays(head, payload)[0].flags.writeable
    head, payload = FrameReader(writable=True).feed(data)[0]
    assert decode_arrays(head, payload)[0].flags.writeable


def test_frames_split_at_any_byte_boundary() -> None:
    stream = b"".join(encode_frame({"id": i}, [np.full((2, 2), i)]) for i in range(5))
    reader = FrameReader()
    got = []
    for i in range(0, len(stream), 7):
        got.extend(reader.feed(stream[i : i + 7]))
    assert [h["id"] for h, _ in got] == list(range(5))
    assert reader.buffered == 0
    assert decode_arrays(*got[3])[0].tolist() == [[3, 3], [3, 3]]


def test_several_frames_in_one_read() -> None:
    reader = FrameReader()
    frames = reader.feed(encode_frame({"id": 1}) + encode_frame({"id": 2}) + b"\x05")
    assert [h["id"] for h, _ in frames] == [1, 2]
    assert reader.buffered == 1


def test_oversized_frame_is_refused_before_it_is_buffered() -> None:
    reader = FrameReader(max_frame=1024)
    with pytest.raises(ProtocolError, match="exceeds"):
        reader.feed(struct.pack("<II", 10, 0x7FFFFFFF))


def test_oversized_header_is_refused_even_within_the_frame_limit() -> None:
    reader = FrameReader(max_frame=1 << 30)
    with pytest.raises(ProtocolError, match="exceeds"):
        reader.feed(struct.pack("<II", MAX_HEADER + 1, 0))


def test_one_long_string_does_not_inflate_a_string_array() -> None:
    values = ["x" * 100_000] + ["a"] * 10_000
    _, [back] = roundtrip({}, [np.array(values, dtype=object)])
    assert back.dtype == object and back.nbytes == 8 * len(values)


@pytest.mark.parametrize(
    ("descs", "payload"),
    [
        ([["|O", [1]]], pickle.dumps(["owned"])),  # object dtype as raw bytes: never
        ([["O", [1]]], b"\0" * 8),
        ([["V8", [1]]], b"\0" * 8),
        ([["<c16", [1]]], b"\0" * 16),
        ([["[('a','<f8')]", [1]]], b"\0" * 8),
        ([["<f8", [2]]], b"\0" * 8),  # shape larger than the bytes sent
        ([["<f8", [1]]], b"\0" * 16),  # trailing bytes
        ([["<f8", [-1]]], b""),
        ([["<f8", [1.5]]], b"\0" * 8),
        ([["<f8", [1] * 9]], b"\0" * 8),  # too many dimensions
        ([["<f8", "1"]], b"\0" * 8),
        ([["str", [2], ["a"]]], b""),  # length mismatch
        ([["str", [1], [1]]], b""),
        ([["obj", [1], [{"__reduce__": 1}]]], b""),
        ([["obj", [1], [["nested"]]]], b""),
        ([["pickle", [1], ["x"]]], b""),
        ("notalist", b""),
        ([42], b""),
    ],
)
def test_malformed_arrays_are_protocol_errors(descs: object, payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_arrays({"arrays": descs}, payload)


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b"[" * 100_000])
def test_bad_headers_are_protocol_errors(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        FrameReader().feed(PREFIX.pack(len(body), 0) + body)


def test_a_pickle_payload_is_never_unpickled(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("pickle used")

    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    frame = raw_frame({"id": 1, "arrays": [["|O", [1]]]}, pickle.dumps(["owned"]))
    head, payload = FrameReader().feed(frame)[0]
    with pytest.raises(ProtocolError):
        decode_arrays(head, payload)
