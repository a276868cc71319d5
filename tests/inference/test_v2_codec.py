"""The Open Inference Protocol codec on its own: bytes in, arrays out, and back."""

from __future__ import annotations

import gzip
import json
import struct
import zlib

import numpy as np
import pytest

from inferx.inference.v2_codec import (
    DATATYPES,
    Limits,
    MalformedRequest,
    OutputTensor,
    decode_bytes,
    decode_request,
    decompress,
    encode_bytes,
    encode_response,
    split_body,
)


def _json(*inputs, **extra):
    return json.dumps({"inputs": list(inputs), **extra}).encode()


def _input(name="x", shape=(2, 2), datatype="FP64", data=(1, 2, 3, 4), **extra):
    data = list(data) if isinstance(data, tuple) else data
    return {"name": name, "shape": list(shape), "datatype": datatype, "data": data, **extra}


def _binary(inputs, chunks, **extra):
    head = json.dumps({"inputs": inputs, **extra}).encode()
    return head + b"".join(chunks), str(len(head))


@pytest.mark.parametrize(
    ("datatype", "data", "expected"),
    [
        ("FP64", [[1.5, 2], [3, 4]], np.array([[1.5, 2], [3, 4]])),
        ("FP32", [1.5, 2, 3, 4], np.array([[1.5, 2], [3, 4]], dtype=np.float32)),
        ("INT64", [[1, 2], [3, 4]], np.array([[1, 2], [3, 4]])),
        ("UINT8", [0, 255, 3, 4], np.array([[0, 255], [3, 4]], dtype=np.uint8)),
        ("BOOL", [[True, False], [False, True]], np.array([[True, False], [False, True]])),
        ("BYTES", [["a", "bé"], ["c", ""]], np.array([["a", "bé"], ["c", ""]], dtype=object)),
    ],
)
def test_json_tensors_flat_or_nested(datatype, data, expected):
    req = decode_request(_json(_input(datatype=datatype, data=data)))
    (tensor,) = req.inputs
    assert tensor.name == "x" and tensor.datatype == datatype
    assert tensor.array.dtype == expected.dtype and tensor.array.shape == (2, 2)
    assert (tensor.array == expected).all()


def test_request_fields_and_defaults():
    body = _json(
        _input(parameters={"content_type": "np"}),
        id="req-1",
        model_name="ignored",  # the KServe client adds it: unknown fields are tolerated
        parameters={"binary_data_output": True, "priority": 0},
        outputs=[
            {"name": "predict"},
            {"name": "predict_proba", "parameters": {"binary_data": False}},
        ],
    )
    req = decode_request(body)
    assert req.id == "req-1" and req.binary_output is True
    assert [(o.name, o.binary) for o in req.outputs or []] == [
        ("predict", None),
        ("predict_proba", False),
    ]
    assert decode_request(_json(_input())).outputs is None
    assert decode_request(_json(_input())).binary_output is False


@pytest.mark.parametrize("datatype", [d for d in DATATYPES if d != "BYTES"])
def test_binary_tensors_every_numeric_datatype(datatype):
    dtype = DATATYPES[datatype]
    values = np.array([[1, 0, 1], [0, 1, 1]]).astype(dtype)
    body, length = _binary(
        [
            {
                "name": "x",
                "shape": [2, 3],
                "datatype": datatype,
                "parameters": {"binary_data_size": values.nbytes},
            }
        ],
        [values.tobytes()],
    )
    (tensor,) = decode_request(body, length).inputs
    assert tensor.array.dtype == dtype and (tensor.array == values).all()


def test_binary_and_json_inputs_mixed_with_bytes_elements():
    words = [b"red", b"", "gr\u00fcn".encode()]
    raw = b"".join(struct.pack("<I", len(w)) + w for w in words)
    floats = np.array([1.0, 2.0, 3.0], dtype="<f4")
    body, length = _binary(
        [
            {
                "name": "w",
                "shape": [3, 1],
                "datatype": "BYTES",
                "parameters": {"binary_data_size": len(raw)},
            },
            _input("j", (1, 1), "INT32", [7]),
            {"name": "f", "shape": [3], "datatype": "FP32", "parameters": {"binary_data_size": 12}},
        ],
        [raw, floats.tobytes()],
    )
    w, j, f = decode_request(body, length).inputs
    assert w.array.shape == (3, 1) and list(w.array.ravel()) == words
    assert j.array.tolist() == [[7]] and f.array.tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{nope", "not valid JSON"),
        (b"[]", "JSON object"),
        (b"[" * 100_000, "not valid JSON"),
        (_json(), "non-empty list"),
        (json.dumps({"inputs": [1]}).encode(), "inputs[0] must be an object"),
        (_json(_input(datatype="BF16")), "unknown datatype 'BF16'"),
        (_json(_input(datatype="FLOAT")), "unknown datatype 'FLOAT'"),
        (_json(_input(shape=(2, -1))), "non-negative integers"),
        (_json(_input(shape=(2, 2.0))), "non-negative integers"),
        (_json(_input(shape=[1] * 9, data=[1])), "at most 8"),
        (_json(_input(shape=(2, 3))), "shape [2, 3] holds 6 elements but `data` has 4"),
        (_json(_input(data=[[1, 2], [3]])), "ragged"),
        (_json(_input(data=[1, 2, "x", 4])), "FP64 data must be numbers"),
        (_json(_input(data=[1, 2, None, 4])), "FP64 data must be numbers"),
        (_json(_input(datatype="INT64", data=[1, 2.5, 3, 4])), "integers"),
        (_json(_input(datatype="INT8", data=[1, 300, 3, 4])), "out of the INT8 range"),
        (_json(_input(datatype="BOOL", data=[1, 0, 1, 0])), "true/false"),
        (_json(_input(datatype="BYTES", data=["a", 1, "b", "c"])), "must be strings"),
        (_json({"name": "x", "shape": [1], "datatype": "FP64"}), "has no `data`"),
        (_json(_input(data=5)), "`data` must be a list"),
        (_json(_input(), _input()), "unique"),
        (_json(_input(), id=5), "`id` must be a string"),
        (_json(_input(), outputs=[{"nom": "x"}]), "outputs[0]"),
        (
            _json(_input(), outputs=[{"name": "p", "parameters": {"binary_data": 1}}]),
            "true or false",
        ),
        (_json(_input(), parameters=[1]), "must be an object"),
    ],
)
def test_malformed_requests_are_400_naming_the_problem(body, needle):
    with pytest.raises(MalformedRequest) as info:
        decode_request(body)
    assert info.value.status == 400 and needle in info.value.detail


def test_limits_on_inputs_and_elements():
    limits = Limits(max_inputs=2, max_elements=10)
    with pytest.raises(MalformedRequest, match="at most 2"):
        decode_request(_json(_input("a"), _input("b"), _input("c")), limits=limits)
    with pytest.raises(MalformedRequest, match="more than 10 elements"):
        decode_request(_json(_input(shape=(10**12, 10**12))), limits=limits)
    with pytest.raises(MalformedRequest, match="more than 10 elements in all"):
        decode_request(_json(_input("a", (2, 4), data=[0] * 8), _input("b")), limits=limits)


@pytest.mark.parametrize("value", ["abc", "-1", "0", "1_0", "+5", "99999", "1e3", ""])
def test_header_length_must_be_a_byte_count_inside_the_body(value):
    with pytest.raises(MalformedRequest, match="Inference-Header-Content-Length"):
        split_body(b'{"inputs": []}', value)


@pytest.mark.parametrize(
    ("chunks", "size", "needle"),
    [
        ([b"\x00" * 8], 16, "only 8 bytes"),
        ([b"\x00" * 24], 24, "needs 16 bytes"),
        ([b"\x00" * 16, b"extra"], 16, "21 bytes of binary data follow the JSON"),
    ],
)
def test_binary_sizes_must_match_exactly(chunks, size, needle):
    body, length = _binary(
        [{"name": "x", "shape": [2], "datatype": "FP64", "parameters": {"binary_data_size": size}}],
        chunks,
    )
    with pytest.raises(MalformedRequest) as info:
        decode_request(body, length)
    assert needle in info.value.detail


def test_binary_and_data_together_are_refused():
    body, length = _binary([_input(parameters={"binary_data_size": 32})], [b"\x00" * 32])
    with pytest.raises(MalformedRequest, match="both"):
        decode_request(body, length)


@pytest.mark.parametrize(
    ("raw", "count", "needle"),
    [
        (b"\x05\x00\x00\x00abc", 1, "overruns"),
        (b"\x01\x00", 1, "ends inside element 0"),
        (b"\x01\x00\x00\x00ab", 1, "1 bytes left"),
        (b"\xff\xff\xff\xff", 1, "overruns"),
    ],
)
def test_bytes_elements_are_length_prefixed_exactly(raw, count, needle):
    with pytest.raises(MalformedRequest, match=needle):
        decode_bytes("w", raw, count)


def test_bytes_round_trip():
    values = np.array(["", "a", "h\u00e9llo", b"\x00\xff"], dtype=object)
    decoded = decode_bytes("w", encode_bytes(values), 4)
    assert list(decoded) == [b"", b"a", "h\u00e9llo".encode(), b"\x00\xff"]


def test_response_json_and_binary():
    labels = OutputTensor("predict", "BYTES", np.array(["a", "bb"], dtype=object), binary=True)
    proba = OutputTensor("predict_proba", "FP64", np.array([[0.5, np.nan], [1.0, 0.0]]), False)
    header = {"model_name": "m", "model_version": "1", "id": "r"}
    body, length = encode_response(header, [labels, proba])
    assert length is not None
    doc = json.loads(body[:length])
    assert doc["id"] == "r" and doc["outputs"][0] == {
        "name": "predict",
        "datatype": "BYTES",
        "shape": [2],
        "parameters": {"binary_data_size": 11},
    }
    assert doc["outputs"][1]["data"] == [0.5, None, 1.0, 0.0]  # JSON has no NaN
    assert list(decode_bytes("p", body[length:], 2)) == [b"a", b"bb"]
    body, length = encode_response(header, [OutputTensor("p", "INT64", np.array([1, 2]), False)])
    assert length is None and json.loads(body)["outputs"][0]["data"] == [1, 2]
    body, length = encode_response(header, [OutputTensor("p", "FP32", np.array([1.5]), True)])
    assert np.frombuffer(body[length:], dtype="<f4").tolist() == [1.5]


def test_decompression_is_bounded():
    raw = _json(_input())
    assert decompress(gzip.compress(raw), "gzip", 10_000) == raw
    assert decompress(zlib.compress(raw), "deflate", 10_000) == raw
    assert decompress(raw, None, 10) == raw
    with pytest.raises(MalformedRequest, match="exceeds 1000 bytes"):
        decompress(gzip.compress(b" " * 1_000_000), "gzip", 1000)
    with pytest.raises(MalformedRequest, match="not valid gzip"):
        decompress(b"plain", "gzip", 1000)
    with pytest.raises(MalformedRequest, match="not supported"):
        decompress(raw, "br", 1000)
