"""The Open Inference Protocol over HTTP: tritonclient against a live server (a real socket),
KServe-style JSON and binary bodies through the ASGI client, errors both clients can read,
access rules, quotas and the prediction log."""

from __future__ import annotations

import asyncio
import gzip
import json
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_iris

from inferx.errors import InvalidInput
from inferx.inference.targets import Target
from inferx.inference.v2 import describe, label_tensor, model_input
from inferx.inference.v2_codec import InferRequest, Tensor

UPLOAD = "/api/v1/models/upload"
IRIS = load_iris().data
ROWS = IRIS[[0, 50, 100, 149]]
GENEROUS = {"quota_free_per_minute": 10_000, "quota_free_per_day": 0}
MIXED_ROWS = [["red", 1.5], ["blue", -2.0], ["green", 0.25]]


@pytest.fixture(scope="module")
def mixed_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pipeline over a string column and a number column, with string labels."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(0)
    colours = rng.choice(["red", "green", "blue"], size=120)
    numbers = rng.normal(size=120)
    x = np.array([[c, n] for c, n in zip(colours, numbers, strict=True)], dtype=object)
    y = np.where(colours == "red", "warm", np.where(numbers > 0, "up", "down"))
    prep = ColumnTransformer(
        [("c", OneHotEncoder(handle_unknown="ignore"), [0]), ("n", "passthrough", [1])]
    )
    model = Pipeline([("prep", prep), ("clf", LogisticRegression(max_iter=500))]).fit(x, y)
    path = tmp_path_factory.mktemp("v2") / "mixed.pkl"
    path.write_bytes(pickle.dumps(model))
    return path


async def _upload(client: Any, headers: dict[str, str], path: Path, name: str) -> dict[str, Any]:
    r = await client.post(
        UPLOAD, files={"file": (path.name, path.read_bytes())}, data={"name": name}, headers=headers
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _predict(client: Any, headers: dict[str, str], model_id: str, rows: Any) -> Any:
    r = await client.post(
        f"/api/v1/predict/{model_id}", json={"input": np.asarray(rows).tolist()}, headers=headers
    )
    assert r.status_code == 200, r.text
    return r.json()


def _tensor(rows: Any, datatype: str = "FP64", name: str = "input-0") -> dict[str, Any]:
    array = np.asarray(rows)
    return {"name": name, "shape": list(array.shape), "datatype": datatype, "data": array.tolist()}


def _body(*inputs: dict[str, Any], **extra: Any) -> bytes:
    return json.dumps({"inputs": list(inputs), **extra}).encode()


def _binary_outputs(r: Any) -> dict[str, Any]:
    """A binary response decoded by hand, as the KServe client does."""
    length = int(r.headers["inference-header-content-length"])
    doc = json.loads(r.content[:length])
    rest, arrays = r.content[length:], {}
    for out in doc["outputs"]:
        size = out["parameters"]["binary_data_size"]
        chunk, rest = rest[:size], rest[size:]
        if out["datatype"] == "BYTES":
            arrays[out["name"]] = _bytes_elements(chunk)
        else:
            dtype = {"FP64": "<f8", "INT64": "<i8"}[out["datatype"]]
            arrays[out["name"]] = np.frombuffer(chunk, dtype=dtype).reshape(out["shape"]).tolist()
    return arrays


def _bytes_elements(raw: bytes) -> list[str]:
    items, pos = [], 0
    while pos < len(raw):
        (n,) = struct.unpack_from("<I", raw, pos)
        items.append(raw[pos + 4 : pos + 4 + n].decode())
        pos += 4 + n
    return items


# -- the version's side of the protocol, without HTTP ----------------------------------------


def _target(framework: str, schema: dict[str, Any], **details: Any) -> Target:
    import uuid

    return Target(
        model_id=uuid.uuid4(),
        owner_id=uuid.uuid4(),
        name="m",
        model_version_id=uuid.uuid4(),
        version=3,
        status="active",
        framework=framework,
        storage_key="k",
        sha256="0" * 64,
        input_schema=schema,
        details=details,
    )


def _request(*tensors: Tensor) -> InferRequest:
    return InferRequest(id=None, parameters={}, inputs=list(tensors), outputs=None)


def test_an_onnx_graph_with_several_inputs_takes_them_by_name_in_graph_order():
    graph = [
        {"name": "num", "shape": [None, 2], "type": "tensor(float)"},
        {"name": "colour", "shape": [None, 1], "type": "tensor(string)"},
    ]
    target = _target("onnx", {"n_features": 3, "dtype": "object"}, inputs=graph, classes=["a"])
    meta = describe("m", ["3"], target)
    assert [(t.name, t.datatype, t.shape) for t in meta.inputs] == [
        ("num", "FP32", [-1, 2]),
        ("colour", "BYTES", [-1, 1]),
    ]
    assert meta.outputs[0].datatype == "BYTES" and meta.platform == "onnx"
    colour = Tensor("colour", "BYTES", np.array([[b"red"], [b"blue"]], dtype=object))
    num = Tensor("num", "FP64", np.array([[1.0, 2.0], [3.0, 4.0]]))
    X = model_input(target, _request(colour, num), max_rows=10)
    assert X.dtype == object and X.tolist() == [[1.0, 2.0, "red"], [3.0, 4.0, "blue"]]
    with pytest.raises(InvalidInput, match="missing: colour, unknown: other"):
        model_input(target, _request(num, Tensor("other", "FP64", np.ones((2, 1)))), 10)
    with pytest.raises(InvalidInput, match="same number of rows"):
        model_input(target, _request(num, Tensor("colour", "BYTES", colour.array[:1])), 10)


@pytest.mark.parametrize(
    ("tensor", "dtype", "expected"),
    [
        (Tensor("x", "INT32", np.array([[1, 2]], dtype=np.int32)), "float64", [[1.0, 2.0]]),
        (Tensor("x", "FP64", np.array([[1.0, 2.0]])), "int64", [[1, 2]]),
        (Tensor("x", "BOOL", np.array([[True, False]])), "float32", [[1.0, 0.0]]),
    ],
)
def test_numeric_tensors_are_cast_to_the_version_dtype(tensor, dtype, expected):
    X = model_input(_target("sklearn", {"n_features": 2, "dtype": dtype}), _request(tensor), 10)
    assert X.dtype == np.dtype(dtype) and X.tolist() == expected


@pytest.mark.parametrize(
    ("tensor", "needle"),
    [
        (Tensor("x", "FP64", np.array([[1.5, 2.0]])), "whole numbers (INT64)"),
        (Tensor("x", "UINT64", np.array([[2**63, 1]], dtype=np.uint64)), "out of the INT64 range"),
        (Tensor("x", "FP64", np.array([[np.inf, 1.0]])), "NaN and infinity"),
        (Tensor("x", "FP64", np.ones((0, 2))), "no rows"),
        (Tensor("x", "FP64", np.ones((11, 2))), "at most 10 per request"),
    ],
)
def test_tensors_that_do_not_fit_are_422(tensor, needle):
    with pytest.raises(InvalidInput) as info:
        model_input(_target("sklearn", {"n_features": 2, "dtype": "int64"}), _request(tensor), 10)
    assert needle in info.value.detail


@pytest.mark.parametrize(
    ("values", "datatype", "expected"),
    [
        ([0, 2], "INT64", [0, 2]),
        (["a", "b"], "BYTES", ["a", "b"]),
        ([1.5, None], "FP64", [1.5, None]),
        ([True, False], "BOOL", [True, False]),
        ([[1.0, 2.0], [3.0, 4.0]], "FP64", [[1.0, 2.0], [3.0, 4.0]]),
        ([1, "a"], "BYTES", ["1", "a"]),
    ],
)
def test_predictions_become_tensors(values, datatype, expected):
    array, got = label_tensor(values)
    assert got == datatype
    as_list = [None if isinstance(v, float) and np.isnan(v) else v for v in array.tolist()]
    assert as_list == expected


# -- tritonclient against a live server ----------------------------------------------------


async def test_tritonclient_against_a_live_server(
    make_api, make_settings, model_files, live_server
):
    import httpx

    api = await make_api(make_settings(**GENEROUS))
    async with (
        live_server(api.app) as url,
        httpx.AsyncClient(base_url=f"http://{url}", timeout=60) as http,
    ):
        headers = await api.user("ada@example.com")
        key = (await api.api_key(headers))["key"]
        auth = {"X-API-Key": key}
        iris = await _upload(http, headers, model_files["iris.pkl"], "iris")
        onnx = await _upload(http, headers, model_files["iris.onnx"], "iris-onnx")
        expected = {
            "iris": await _predict(http, auth, iris["id"], ROWS),
            "iris-onnx": await _predict(http, auth, onnx["id"], ROWS),
        }
        await asyncio.to_thread(_triton_checks, url, auth, expected, onnx["id"])
        r = await http.get("/v2/models/iris/ready", headers={"X-API-Key": "mlp_wrong"})
        assert r.status_code == 401 and r.json()["error"] == "Invalid API key."


def _triton_checks(url: str, key: dict[str, str], expected: dict[str, Any], onnx_id: str) -> None:
    """Synchronous (gevent inside): runs in a worker thread while the loop serves."""
    import tritonclient.http as tc
    from tritonclient.utils import InferenceServerException

    def auth() -> dict[str, str]:
        # A fresh dict per call: tritonclient adds Inference-Header-Content-Length to the
        # headers dict it is given, so a reused dict would carry it into a JSON request.
        return dict(key)

    def rows_input(name: str, datatype: str, binary: bool = True) -> Any:
        tensor = tc.InferInput(name, list(ROWS.shape), datatype)
        values = ROWS.astype(np.float64 if datatype == "FP64" else np.float32)
        tensor.set_data_from_numpy(values, binary_data=binary)
        return tensor

    with tc.InferenceServerClient(url) as client:
        assert client.is_server_live() and client.is_server_ready()
        server = client.get_server_metadata()
        assert server["name"] == "inferx" and server["extensions"] == ["binary_tensor_data"]
        meta = client.get_model_metadata("iris", headers=auth())
        assert meta["platform"] == "sklearn" and meta["versions"] == ["1"]
        assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
        assert meta["outputs"] == [
            {"name": "predict", "datatype": "INT64", "shape": [-1]},
            {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 3]},
        ]
        meta = client.get_model_metadata(onnx_id, "1", headers=auth())  # by id, and versioned
        assert meta["platform"] == "onnx" and meta["name"] == onnx_id
        assert meta["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]
        assert client.is_model_ready("iris", headers=auth())
        assert client.is_model_ready("iris", "1", headers=auth())
        assert not client.is_model_ready("iris", "7", headers=auth())
        assert not client.is_model_ready("nope", headers=auth())

        # Binary tensors both ways (tritonclient's default), FP32 and FP64 into both runtimes.
        for model, name in (("iris", "input-0"), ("iris-onnx", "X")):
            for datatype in ("FP64", "FP32"):
                result = client.infer(model, [rows_input(name, datatype)], headers=auth())
                assert result.as_numpy("predict").tolist() == expected[model]["prediction"]
                np.testing.assert_allclose(
                    result.as_numpy("predict_proba"),
                    expected[model]["probabilities"],
                    rtol=1e-5,
                    atol=1e-6,
                )

        # JSON both ways, one requested output, the request id echoed, a pinned version.
        result = client.infer(
            "iris",
            [rows_input("input-0", "FP64", binary=False)],
            model_version="1",
            outputs=[tc.InferRequestedOutput("predict", binary_data=False)],
            request_id="req-42",
            headers=auth(),
        )
        response = result.get_response()
        assert response["id"] == "req-42" and response["model_version"] == "1"
        assert response["outputs"] == [
            {
                "name": "predict",
                "datatype": "INT64",
                "shape": [4],
                "data": expected["iris"]["prediction"],
            }
        ]
        # Only the probabilities, binary; a gzip-compressed request.
        result = client.infer(
            "iris",
            [rows_input("input-0", "FP64")],
            outputs=[tc.InferRequestedOutput("predict_proba")],
            request_compression_algorithm="gzip",
            headers=auth(),
        )
        assert result.as_numpy("predict") is None
        assert result.as_numpy("predict_proba").shape == (4, 3)

        # Errors arrive as readable InferenceServerExceptions (the body's "error" field).
        refusals = [
            (lambda: client.get_model_metadata("iris", headers={"X-API-Key": "mlp_x"}), "401"),
            (lambda: client.infer("iris", [rows_input("input-0", "FP64")]), "401"),
            (lambda: client.infer("nope", [rows_input("input-0", "FP64")], headers=auth()), "404"),
            (lambda: client.get_model_metadata("iris", "7", headers=auth()), "404"),
        ]
        for call, status in refusals:
            with pytest.raises(InferenceServerException) as info:
                call()
            assert info.value.status() == status and info.value.message(), info.value
        narrow = tc.InferInput("input-0", [4, 3], "FP64")
        narrow.set_data_from_numpy(np.ascontiguousarray(ROWS[:, :3]))
        with pytest.raises(InferenceServerException) as info:
            client.infer("iris", [narrow], headers=auth())
        assert info.value.status() == "422"
        assert "Input 'input-0': expected shape [-1, 4]" in info.value.message()
        with pytest.raises(InferenceServerException) as info:
            client.infer("iris", [rows_input("input-0", "FP64")], headers={"X-API-Key": "mlp_x"})
        assert info.value.message() == "Invalid API key."


# -- KServe-style JSON and binary bodies through the ASGI client ----------------------------


async def test_plain_json_requests(make_api, make_settings, model_files):
    api = await make_api(make_settings(**GENEROUS))
    headers = await api.user("ds@example.com")
    auth = {"X-API-Key": (await api.api_key(headers))["key"]}
    model = await _upload(api.client, headers, model_files["iris.pkl"], "iris")
    expected = await _predict(api.client, auth, model["id"], ROWS)
    url = "/v2/models/iris/infer"
    flat = {**_tensor(ROWS), "data": ROWS.ravel().tolist()}
    for tensor in (_tensor(ROWS), flat):
        # No Content-Type, unknown top-level fields tolerated, request parameters ignored.
        body = _body(tensor, id="abc", model_name="iris", parameters={"priority": 1})
        r = await api.client.post(url, content=body, headers=auth)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/json"
        doc = r.json()
        assert doc["id"] == "abc" and doc["model_name"] == "iris" and doc["model_version"] == "1"
        predict, proba = doc["outputs"]
        assert predict == {
            "name": "predict",
            "datatype": "INT64",
            "shape": [4],
            "data": expected["prediction"],
        }
        assert proba["shape"] == [4, 3] and proba["datatype"] == "FP64"
        np.testing.assert_allclose(
            np.reshape(proba["data"], (4, 3)), expected["probabilities"], rtol=1e-9
        )
    # Same rows, so the result cache answers; by id and by version too; the request id is
    # the response id when the body has none.
    r = await api.client.post(
        f"/v2/models/{model['id']}/versions/1/infer", content=_body(_tensor(ROWS)), headers=auth
    )
    assert r.status_code == 200 and r.headers["x-cache"] == "HIT"
    assert r.json()["id"] == r.headers["x-request-id"] and r.json()["model_name"] == model["id"]
    # Integer features into a float model; binary output when asked, per output or for all.
    body = _body(
        _tensor(np.rint(ROWS).astype(int), "INT64"),
        outputs=[
            {"name": "predict_proba", "parameters": {"binary_data": True}},
            {"name": "predict"},
        ],
    )
    r = await api.client.post(url, content=body, headers=auth)
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    length = int(r.headers["inference-header-content-length"])
    outputs = json.loads(r.content[:length])["outputs"]
    assert [o["name"] for o in outputs] == ["predict_proba", "predict"]
    assert outputs[0]["parameters"] == {"binary_data_size": 4 * 3 * 8} and "data" in outputs[1]
    assert np.frombuffer(r.content[length:], "<f8").shape == (12,)
    r = await api.client.post(
        url, content=_body(_tensor(ROWS), parameters={"binary_data_output": True}), headers=auth
    )
    decoded = _binary_outputs(r)
    assert decoded["predict"] == expected["prediction"]
    np.testing.assert_allclose(decoded["predict_proba"], expected["probabilities"], rtol=1e-9)
    # A binary request the way the KServe client sends one.
    raw = ROWS.astype("<f4").tobytes()
    head = json.dumps(
        {
            "id": "k",
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [4, 4],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
        }
    ).encode()
    r = await api.client.post(
        url,
        content=head + raw,
        headers={
            **auth,
            "content-type": "application/octet-stream",
            "inference-header-content-length": str(len(head)),
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == expected["prediction"]
    # gzip-compressed bodies are accepted.
    r = await api.client.post(
        url,
        content=gzip.compress(_body(_tensor(ROWS))),
        headers={**auth, "content-encoding": "gzip"},
    )
    assert r.status_code == 200 and r.json()["outputs"][0]["data"] == expected["prediction"]
    # Every infer is logged like /predict, rows counted.
    await api.ctx.prediction_log.flush()
    history = (await api.client.get("/api/v1/predictions", headers=auth)).json()
    assert history["total"] == 8 and {p["rows"] for p in history["items"]} == {4}


def _binary_request(size: int, data: bytes, header: str | None = None) -> tuple[bytes, dict]:
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [1, 4],
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": size},
                }
            ]
        }
    ).encode()
    return head + data, {"inference-header-content-length": header or str(len(head))}


async def test_errors_are_problem_documents_with_an_error_field(
    make_api, make_settings, model_files
):
    api = await make_api(make_settings(**GENEROUS))
    headers = await api.user("ds@example.com")
    await _upload(api.client, headers, model_files["iris.pkl"], "iris")
    row = IRIS[:1]
    cases: list[tuple[str, bytes, dict[str, str], int, str]] = [
        ("not JSON", b"{nope", {}, 400, "not valid JSON"),
        ("empty", b"", {}, 400, "not valid JSON"),
        ("no inputs", _body(), {}, 400, "`inputs` must be a non-empty list"),
        (
            "data length",
            _body({**_tensor(IRIS[:2]), "data": IRIS[:2].ravel().tolist()[:7]}),
            {},
            400,
            "Input 'input-0': shape [2, 4] holds 8 elements but `data` has 7",
        ),
        ("datatype", _body(_tensor(row, "FLOAT64")), {}, 400, "unknown datatype 'FLOAT64'"),
        (
            "elements",
            _body({"name": "input-0", "shape": [1_000_000, 4], "datatype": "FP64", "data": []}),
            {},
            400,
            "more than 2000000 elements",
        ),
        ("header garbage", *_binary_request(32, b"\0" * 32, "12abc"), 400, "Inference-Header"),
        ("header too long", *_binary_request(32, b"\0" * 32, "99999"), 400, "Inference-Header"),
        ("binary size", *_binary_request(32, b"\0" * 24), 400, "only 24 bytes"),
        ("width", _body(_tensor(IRIS[:2, :3])), {}, 422, "expected shape [-1, 4]"),
        ("rank", _body(_tensor(IRIS[:2].reshape(2, 2, 2))), {}, 422, "got [2, 2, 2]"),
        ("bytes", _body(_tensor([["a"] * 4], "BYTES")), {}, 422, "takes FP64 numbers, not BYTES"),
        ("nan", _body(_tensor(row)).replace(b"5.1", b"NaN"), {}, 422, "NaN and infinity"),
        ("rows", _body(_tensor(np.ones((1001, 4)))), {}, 422, "at most 1000 per request"),
        ("two inputs", _body(_tensor(row), _tensor(row, name="b")), {}, 422, "takes one input"),
        ("output", _body(_tensor(row), outputs=[{"name": "x"}]), {}, 422, "Unknown output 'x'"),
    ]
    for label, content, extra, status, needle in cases:
        r = await api.client.post(
            "/v2/models/iris/infer", content=content, headers={**headers, **extra}
        )
        assert r.status_code == status, (label, r.text)
        assert r.headers["content-type"] == "application/json", label
        doc = r.json()
        assert needle in doc["error"] and doc["detail"] == doc["error"], (label, doc)
        assert doc["status"] == status and doc["request_id"] == r.headers["x-request-id"]
    for path in ("/v2/models/iris/versions/abc", "/v2/models/iris/versions/9/ready"):
        r = await api.client.get(path, headers=headers)
        assert r.status_code == 404 and "version" in r.json()["error"], r.text


async def test_bytes_tensors_for_a_model_of_strings(make_api, make_settings, mixed_model):
    api = await make_api(make_settings(**GENEROUS))
    headers = await api.user("ds@example.com")
    model = await _upload(api.client, headers, mixed_model, "mixed")
    expected = (
        await api.client.post(
            f"/api/v1/predict/{model['id']}", json={"input": MIXED_ROWS}, headers=headers
        )
    ).json()
    meta = (await api.client.get("/v2/models/mixed", headers=headers)).json()
    assert meta["inputs"] == [{"name": "input-0", "datatype": "BYTES", "shape": [-1, 2]}]
    assert meta["outputs"][0] == {"name": "predict", "datatype": "BYTES", "shape": [-1]}
    text = [[c, str(n)] for c, n in MIXED_ROWS]
    r = await api.client.post(
        "/v2/models/mixed/infer", content=_body(_tensor(text, "BYTES")), headers=headers
    )
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["datatype"] == "BYTES"
    assert r.json()["outputs"][0]["data"] == expected["prediction"]
    # Binary BYTES in (length-prefixed), binary BYTES out.
    raw = b"".join(struct.pack("<I", len(v.encode())) + v.encode() for row in text for v in row)
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [3, 2],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    r = await api.client.post(
        "/v2/models/mixed/infer",
        content=head + raw,
        headers={**headers, "inference-header-content-length": str(len(head))},
    )
    assert r.status_code == 200, r.text
    assert _binary_outputs(r)["predict"] == expected["prediction"]
    bad = [["red", "warm"]]
    r = await api.client.post(
        "/v2/models/mixed/infer", content=_body(_tensor(bad, "BYTES")), headers=headers
    )
    assert r.status_code == 422
    assert r.json()["error"] == "Input 'input-0'[0][1]: expected a float, got 'warm'."


async def test_access_rules_quota_and_readiness(make_api, make_settings, model_files):
    api = await make_api(make_settings(quota_free_per_minute=6))
    alice = await api.user("alice@example.com")
    bob = await api.user("bob@example.com")
    model = await _upload(api.client, alice, model_files["iris.pkl"], "iris")
    by_id = f"/v2/models/{model['id']}"
    body = _body(_tensor(IRIS[:1]))
    # Server-level endpoints need no credentials; model endpoints do.
    assert (await api.client.get("/v2/health/live")).json() == {"live": True}
    assert (await api.client.get("/v2/health/ready")).json() == {"ready": True}
    r = await api.client.get(by_id)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert "X-API-Key" in r.json()["error"]
    # Someone else's model is not found, by id or by name; "view" shows it; "use" runs it.
    for path in (by_id, f"{by_id}/ready", "/v2/models/iris"):
        assert (await api.client.get(path, headers=bob)).status_code == 404
    r = await api.client.post(f"{by_id}/infer", content=body, headers=bob)
    assert r.status_code == 404 and r.json()["error"] == f"No model {model['id']}."
    shares = f"/api/v1/models/{model['id']}/shares"
    share = {"email": "bob@example.com", "permission": "view"}
    assert (await api.client.post(shares, json=share, headers=alice)).status_code == 201
    assert (await api.client.get(by_id, headers=bob)).json()["versions"] == ["1"]
    assert (await api.client.get(f"{by_id}/ready", headers=bob)).json() == {
        "name": model["id"],
        "ready": True,
    }
    r = await api.client.post(f"{by_id}/infer", content=body, headers=bob)
    assert r.status_code == 403 and "'use' permission" in r.json()["error"]
    await api.client.post(shares, json={**share, "permission": "use"}, headers=alice)
    r = await api.client.post(f"{by_id}/infer", content=body, headers=bob)
    assert r.status_code == 200 and r.headers["ratelimit-limit"] == "6"
    assert (
        await api.client.post("/v2/models/iris/infer", content=body, headers=bob)
    ).status_code == 404
    # An archived version is not ready and not served.
    await api.client.patch(
        f"/api/v1/models/{model['id']}/versions/1", json={"status": "archived"}, headers=alice
    )
    r = await api.client.get("/v2/models/iris/versions/1/ready", headers=alice)
    assert r.status_code == 409 and "archived" in r.json()["error"]
    assert (
        await api.client.post("/v2/models/iris/infer", content=body, headers=alice)
    ).status_code == 409
    # The prediction quota counts infer calls like /predict calls (6 a minute; 1 used).
    statuses = [
        (await api.client.post(f"{by_id}/infer", content=body, headers=alice)).status_code
        for _ in range(6)
    ]
    assert statuses == [409] * 5 + [429]
    r = await api.client.post(f"{by_id}/infer", content=body, headers=alice)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert r.headers["ratelimit-remaining"] == "0" and "quota" in r.json()["error"].lower()
