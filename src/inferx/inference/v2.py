"""Open Inference Protocol (KServe V2) at ``/v2``: health, server and model metadata, infer.

Tensors are decoded by ``v2_codec`` and checked here against the version's inputs; inference
then goes through ``service.run_logged`` like ``/api/v1/predict``: logged, cached and counted
the same way. ``{name}`` is a model id or the name of a model the caller owns.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import structlog
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from inferx import __version__
from inferx.auth.dependencies import CurrentPrincipal, Principal
from inferx.context import AppContext, Ctx, Session
from inferx.errors import InferxError, InvalidInput, problem
from inferx.health.endpoints import dependency_checks
from inferx.inference import service
from inferx.inference.engine import ModelOutputInvalid, Outcome
from inferx.inference.targets import ModelNotFound, Target, select_version
from inferx.inference.v2_codec import (
    DATATYPES,
    InferRequest,
    Limits,
    OutputTensor,
    Tensor,
    decode_request,
    decompress,
    encode_response,
)
from inferx.quotas.dependencies import PredictionQuota

log = structlog.get_logger("inferx.inference")

SERVER_NAME = "inferx"
EXTENSIONS = ["binary_tensor_data"]
LIMITS = Limits()
SINGLE_INPUT = "input-0"
_VERSION = re.compile(r"^[0-9]{1,7}$")
_SCHEMA_DATATYPES = {"float64": "FP64", "float32": "FP32", "int64": "INT64", "object": "BYTES"}
_ONNX_DATATYPES = {
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(float16)": "FP16",
    "tensor(int64)": "INT64",
    "tensor(int32)": "INT32",
    "tensor(int8)": "INT8",
    "tensor(uint8)": "UINT8",
    "tensor(bool)": "BOOL",
    "tensor(string)": "BYTES",
}
_BOOLS = {"true": True, "false": False, "1": True, "0": False}
VERSION_DOC: dict[str, Any] = {
    "parameters": [
        {"name": "version", "in": "path", "required": True, "schema": {"type": "string"}}
    ]
}
INFER_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "JSON, or JSON followed by binary tensors (binary tensor extension: "
        "`Inference-Header-Content-Length` gives the JSON's length).",
        "content": {
            "application/json": {
                "schema": {"type": "object", "required": ["inputs"]},
                "example": {
                    "id": "42",
                    "inputs": [
                        {
                            "name": "input-0",
                            "shape": [1, 4],
                            "datatype": "FP64",
                            "data": [[5.1, 3.5, 1.4, 0.2]],
                        }
                    ],
                    "outputs": [{"name": "predict"}],
                },
            }
        },
    }
}


class V2Route(APIRoute):
    """Errors stay problem documents but also carry the protocol's ``error`` field (all that
    tritonclient reads), as ``application/json`` (the only type the KServe client reads it
    from). A body over the size limit is left to the middleware, which closes the connection."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except InferxError as exc:
                return _error(request, exc.status, exc.title, exc.detail, exc.headers, exc.extra)
            except (HTTPException, ClientDisconnect):
                raise
            except Exception as exc:
                log.error("request.unhandled_error", error_type=type(exc).__name__, exc_info=exc)
                detail = "An unexpected error occurred; quote the request_id."
                return _error(request, 500, "Internal server error", detail, {}, {})

        return handle


def _error(
    request: Request,
    status: int,
    title: str,
    detail: str,
    headers: dict[str, str],
    extra: dict[str, Any],
) -> Response:
    response = problem(request, status, title, detail, headers=headers, **extra, error=detail)
    response.headers["content-type"] = "application/json"
    return response


router = APIRouter(prefix="/v2", tags=["open inference protocol"], route_class=V2Route)


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ModelReady(BaseModel):
    name: str
    ready: bool


@dataclass(frozen=True, slots=True)
class Port:
    """One input tensor a version takes: 2-D, ``[rows, width]``."""

    name: str
    datatype: str
    width: int | None


async def model_version(request: Request) -> int | None:
    raw = request.path_params.get("version")
    if raw is None:
        return None
    if not _VERSION.match(raw) or int(raw) < 1:
        raise ModelNotFound(f"No version {raw[:20]!r} of model {request.path_params['name']}.")
    return int(raw)


Version = Annotated[int | None, Depends(model_version)]


@router.get("/health/live")
async def live() -> dict[str, bool]:
    """The server is live (checks no dependency)."""
    return {"live": True}


@router.get("/health/ready")
async def ready(ctx: Ctx) -> JSONResponse:
    """Ready for inference: 503 while shutting down or when a required dependency is down."""
    failing = ["shutdown"] if ctx.shutting_down else []
    if not failing:
        failing = [c["name"] for c in await dependency_checks(ctx) if c["status"] != "ok"]
    if failing:
        return JSONResponse({"ready": False, "failing": failing}, status_code=503)
    return JSONResponse({"ready": True})


@router.get("", response_model=ServerMetadata)
async def server_metadata() -> ServerMetadata:
    """Server name, version and the protocol extensions it supports."""
    return ServerMetadata(name=SERVER_NAME, version=__version__, extensions=EXTENSIONS)


@router.get("/models/{name}", response_model=ModelMetadata)
@router.get(
    "/models/{name}/versions/{version}", response_model=ModelMetadata, openapi_extra=VERSION_DOC
)
async def model_metadata(
    name: str, version: Version, principal: CurrentPrincipal, ctx: Ctx, session: Session
) -> ModelMetadata:
    """Inputs and outputs of a model's default version (or the one in the path)."""
    view = await ctx.targets.view(session, principal.user, name, needed="view")
    target = select_version(view, version)
    versions = [str(t.version) for t in view.versions if t.status in ("active", "deprecated")]
    return describe(name, versions, target)


@router.get("/models/{name}/ready", response_model=ModelReady)
@router.get(
    "/models/{name}/versions/{version}/ready", response_model=ModelReady, openapi_extra=VERSION_DOC
)
async def model_ready(
    name: str, version: Version, principal: CurrentPrincipal, ctx: Ctx, session: Session
) -> ModelReady:
    """200 when the version is served; 404 or 409 (not ready) otherwise."""
    await ctx.targets.resolve(session, principal.user, name, version, needed="view")
    return ModelReady(name=name, ready=True)


@router.post("/models/{name}/infer", response_class=Response, openapi_extra=INFER_DOC)
@router.post(
    "/models/{name}/versions/{version}/infer",
    response_class=Response,
    openapi_extra={**INFER_DOC, **VERSION_DOC},
)
async def infer(
    name: str,
    version: Version,
    request: Request,
    principal: CurrentPrincipal,
    quota: PredictionQuota,
    ctx: Ctx,
    session: Session,
) -> Response:
    """Infer on JSON or binary tensors (the body needs no Content-Type)."""
    start = time.perf_counter()
    target = await ctx.targets.resolve(session, principal.user, name, version)
    content, header_length, cache_hit = await run_infer(
        ctx, principal, target, name, await request.body(), request, start
    )
    headers = {**quota.headers, "X-Cache": "HIT" if cache_hit else "MISS"}
    if header_length is None:
        return Response(content, media_type="application/json", headers=headers)
    headers["Inference-Header-Content-Length"] = str(header_length)
    return Response(content, media_type="application/octet-stream", headers=headers)


async def run_infer(
    ctx: AppContext,
    principal: Principal,
    target: Target,
    name: str,
    body: bytes,
    request: Request,
    start: float,
) -> tuple[bytes, int | None, bool]:
    """Decode, check against the version, run (logged), encode: body, JSON length, cache hit."""
    limit = int(ctx.settings.max_body_mb * 1024 * 1024)
    raw = decompress(body, request.headers.get("content-encoding"), limit)
    req = decode_request(raw, request.headers.get("inference-header-content-length"), LIMITS)
    wanted = requested_outputs(target, req)
    X = model_input(target, req, ctx.settings.predict_max_rows)
    request_id: str | None = request.state.request_id
    outcome = await service.run_logged(ctx, principal, target, X, request_id, start)
    header = {"model_name": name, "model_version": str(target.version), "id": req.id or request_id}
    content, header_length = encode_response(header, output_tensors(outcome, wanted))
    return content, header_length, outcome.cache_hit


# -- what a version takes and gives, in protocol terms ---------------------------------------


def input_ports(target: Target) -> list[Port]:
    """The ONNX graph's inputs, else one 2-D tensor from the version's input schema."""
    schema = target.input_schema or {}
    width = schema.get("n_features") or len(schema.get("features") or []) or None
    graph = target.details.get("inputs") if target.framework == "onnx" else None
    if isinstance(graph, list) and graph and all(isinstance(p, dict) for p in graph):
        ports = [
            Port(str(p.get("name")), _ONNX_DATATYPES.get(str(p.get("type")), "FP32"), _width(p))
            for p in graph
        ]
        if len(ports) == 1 and ports[0].width is None:
            return [Port(ports[0].name, ports[0].datatype, width)]
        return ports
    datatype = _SCHEMA_DATATYPES.get(str(schema.get("dtype", "float64")), "FP64")
    return [Port(SINGLE_INPUT, datatype, width)]


def _width(port: dict[str, Any]) -> int | None:
    shape = port.get("shape")
    if isinstance(shape, list) and len(shape) == 2 and isinstance(shape[1], int):
        return shape[1]
    return None


def output_names(target: Target) -> list[str]:
    return ["predict", "predict_proba"] if target.has_proba else ["predict"]


def describe(name: str, versions: list[str], target: Target) -> ModelMetadata:
    inputs = [
        TensorMetadata(name=p.name, datatype=p.datatype, shape=[-1, p.width or -1])
        for p in input_ports(target)
    ]
    outputs = [TensorMetadata(name="predict", datatype=_label_datatype(target), shape=[-1])]
    if target.has_proba:
        n_classes = len(target.classes or []) or -1
        outputs.append(TensorMetadata(name="predict_proba", datatype="FP64", shape=[-1, n_classes]))
    return ModelMetadata(
        name=name, versions=versions, platform=target.framework, inputs=inputs, outputs=outputs
    )


def _label_datatype(target: Target) -> str:
    classes = target.classes
    if not classes:
        return "FP64"
    if all(isinstance(c, bool) for c in classes):
        return "BOOL"
    if all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return "INT64"
    if all(isinstance(c, str) for c in classes):
        return "BYTES"
    return "FP64"


def requested_outputs(target: Target, req: InferRequest) -> list[tuple[str, bool]]:
    """(name, binary) per output to return; ``parameters.binary_data`` beats the request's."""
    available = output_names(target)
    if req.outputs is None:
        return [(name, req.binary_output) for name in available]
    for out in req.outputs:
        if out.name not in available:
            raise InvalidInput(
                f"Unknown output {out.name!r}; this model has {', '.join(available)}."
            )
    return [
        (out.name, req.binary_output if out.binary is None else out.binary) for out in req.outputs
    ]


def model_input(target: Target, req: InferRequest, max_rows: int) -> np.ndarray:
    """The 2-D array the version takes, from the request's tensors; 422 naming the input."""
    ports = input_ports(target)
    if len(ports) == 1:
        if len(req.inputs) != 1:
            raise InvalidInput(
                f"This model takes one input ({ports[0].name!r}); got {len(req.inputs)}."
            )
        schema = target.input_schema or {}
        features = schema.get("features") or []
        kinds = [str(f.get("dtype", "float")) for f in features] if features else None
        blocks = [_block(ports[0], req.inputs[0], kinds)]
    else:
        given = {t.name: t for t in req.inputs}
        missing = [p.name for p in ports if p.name not in given]
        unknown = sorted(set(given) - {p.name for p in ports})
        if missing or unknown:
            raise InvalidInput(
                f"This model takes inputs {', '.join(p.name for p in ports)}; "
                f"missing: {', '.join(missing) or '-'}, unknown: {', '.join(unknown) or '-'}."
            )
        blocks = [_block(p, given[p.name], None) for p in ports]
    rows = blocks[0].shape[0]
    if any(b.shape[0] != rows for b in blocks):
        raise InvalidInput("All inputs must have the same number of rows (first dimension).")
    if rows == 0:
        raise InvalidInput("The inputs hold no rows.")
    if rows > max_rows:
        raise InvalidInput(
            f"The inputs hold {rows} rows; at most {max_rows} per request (batch jobs take more)."
        )
    if len(blocks) == 1:
        return blocks[0]
    if len({b.dtype for b in blocks}) == 1:
        return np.concatenate(blocks, axis=1)
    return np.concatenate([b.astype(object) for b in blocks], axis=1)


def _block(port: Port, tensor: Tensor, kinds: list[str] | None) -> np.ndarray:
    array: np.ndarray = tensor.array
    where = f"Input {tensor.name!r}"
    if array.ndim != 2 or (port.width is not None and array.shape[1] != port.width):
        raise InvalidInput(
            f"{where}: expected shape [-1, {port.width or -1}] (rows, features), "
            f"got {list(array.shape)}."
        )
    if port.datatype == "BYTES":
        return _objects(where, array, kinds if kinds and len(kinds) == array.shape[1] else None)
    if tensor.datatype == "BYTES":
        raise InvalidInput(f"{where}: this model takes {port.datatype} numbers, not BYTES.")
    return _cast(where, array, DATATYPES[port.datatype].newbyteorder("="), port.datatype)


def _cast(where: str, array: np.ndarray, dtype: np.dtype[Any], datatype: str) -> np.ndarray:
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise InvalidInput(f"{where}: NaN and infinity are not allowed.")
    if dtype.kind in "iu" and array.size:
        if array.dtype.kind == "f" and not np.array_equal(array, np.trunc(array)):
            raise InvalidInput(f"{where}: this model takes whole numbers ({datatype}).")
        info = np.iinfo(dtype)
        if array.min() < info.min or array.max() > info.max:
            raise InvalidInput(f"{where}: a value is out of the {datatype} range.")
    with np.errstate(over="ignore"):
        out = array.astype(dtype)
    if dtype.kind == "f" and not np.isfinite(out).all():
        raise InvalidInput(f"{where}: a value is out of the {datatype} range.")
    return out


def _objects(where: str, array: np.ndarray, kinds: list[str] | None) -> np.ndarray:
    """Rows for a model that takes strings (or mixed columns): text, or numbers per kind."""
    if array.dtype != np.dtype(object):
        return _cast(where, array, array.dtype, "numeric").astype(object)
    out = np.empty(array.shape, dtype=object)
    for (i, j), value in np.ndenumerate(array):
        text = _decode(where, value)
        kind = kinds[j] if kinds else "string"
        out[i, j] = text if kind == "string" else _parse(f"{where}[{i}][{j}]", text, kind)
    return out


def _decode(where: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{where}: BYTES elements must be UTF-8 text.") from exc


def _parse(where: str, text: str, kind: str) -> Any:
    try:
        if kind == "bool":
            return _BOOLS[text.strip().lower()]
        value = int(text) if kind == "int" else float(text)
    except (KeyError, ValueError) as exc:
        raise InvalidInput(f"{where}: expected a {kind}, got {text[:40]!r}.") from exc
    if isinstance(value, float) and not np.isfinite(value):
        raise InvalidInput(f"{where}: NaN and infinity are not allowed.")
    return value


def output_tensors(outcome: Outcome, wanted: list[tuple[str, bool]]) -> list[OutputTensor]:
    outputs: list[OutputTensor] = []
    for name, binary in wanted:
        if name == "predict":
            array, datatype = label_tensor(outcome.prediction)
        elif outcome.probabilities is None:
            raise ModelOutputInvalid("The model returned no probabilities.")
        else:
            array, datatype = np.array(outcome.probabilities, dtype=np.float64), "FP64"
        outputs.append(OutputTensor(name, datatype, array, binary))
    return outputs


def label_tensor(values: list[Any]) -> tuple[np.ndarray, str]:
    """Predictions as a tensor: INT64 for integers, FP64 for numbers, BYTES for text."""
    array = np.asarray(values)
    kind = array.dtype.kind
    if kind == "b":
        return array, "BOOL"
    if kind == "i":
        return array.astype(np.int64), "INT64"
    if kind == "u":
        return array.astype(np.uint64), "UINT64"
    if kind == "f":
        return array.astype(np.float64), "FP64"
    if kind == "U":
        return array.astype(object), "BYTES"
    try:  # object: numbers with nulls (NaN from the model), or mixed labels
        return np.array(values, dtype=np.float64), "FP64"
    except (TypeError, ValueError):
        return array.astype(str).astype(object), "BYTES"
