"""ONNX models through onnxruntime (CPU, one thread), refusing external data and custom ops."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inferx.inference.runtimes.base import (
    FeatureDtype,
    LoadedModel,
    ModelLoadError,
    OutputKind,
    require,
)

STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft"})
_DTYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
    "tensor(string)": object,
}
_CLASS_ATTRIBUTES = ("classlabels_int64s", "classlabels_ints", "classlabels_strings")


@dataclass(frozen=True)
class Port:
    name: str
    shape: list[int | None] | None
    type: str

    @property
    def dtype(self) -> np.dtype[Any]:
        return np.dtype(_DTYPES.get(self.type, np.float32))

    @property
    def width(self) -> int | None:
        """Columns this input takes from a 2-D batch, when its shape says so."""
        if self.shape is not None and len(self.shape) == 2:
            return self.shape[1]
        return None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": self.shape, "type": self.type}


@dataclass(eq=False, kw_only=True)
class OnnxModel(LoadedModel):
    session: Any
    inputs: list[Port]
    outputs: list[Port]
    proba_output: str | None = None
    producer: str = ""
    opsets: dict[str, int] | None = None

    def predict(self, X: np.ndarray) -> np.ndarray:
        (out,) = self.session.run([self.outputs[0].name], self._feeds(self.prepare(X)))
        out = np.asarray(out)
        if self.output_kind == "regressor" and out.ndim == 2 and out.shape[1] == 1:
            return out.ravel()
        return out

    def predict_proba(self, X: np.ndarray) -> np.ndarray | None:
        if self.proba_output is None:
            return None
        (out,) = self.session.run([self.proba_output], self._feeds(self.prepare(X)))
        if isinstance(out, list):  # ZipMap: one {class: probability} dict per row
            keys = self.classes if self.classes is not None else list(out[0]) if out else []
            return np.array([[row[k] for k in keys] for row in out], dtype=np.float64)
        return np.asarray(out)

    @property
    def has_predict_proba(self) -> bool:
        return self.proba_output is not None

    def describe(self) -> dict[str, Any]:
        return {
            "inputs": [port.as_dict() for port in self.inputs],
            "outputs": [port.as_dict() for port in self.outputs],
            "producer": self.producer,
            "opsets": self.opsets,
        }

    def _feeds(self, X: np.ndarray) -> dict[str, np.ndarray]:
        if len(self.inputs) == 1:
            return {self.inputs[0].name: _cast(X, self.inputs[0].dtype)}
        feeds, start = {}, 0
        for port in self.inputs:
            width = port.width or 0
            feeds[port.name] = _cast(X[:, start : start + width], port.dtype)
            start += width
        return feeds


def _cast(X: np.ndarray, dtype: np.dtype[Any]) -> np.ndarray:
    if dtype == np.dtype(object):
        return np.asarray(X).astype(str)
    return np.ascontiguousarray(X, dtype=dtype)


def load(path: str, *, extra_allowed: Iterable[str] = ()) -> OnnxModel:
    ort = require("onnxruntime", "onnx")
    onnx = require("onnx", "onnx")
    data = Path(path).read_bytes()
    try:
        proto = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf raises DecodeError and others
        raise ModelLoadError(f"not a valid ONNX model: {exc}") from exc
    check_no_external_data(proto, onnx)
    check_operator_domains(proto)
    session = _session(ort, data)
    inputs = [_port(arg) for arg in session.get_inputs()]
    outputs = [_port(arg) for arg in session.get_outputs()]
    proba = _proba_output(outputs)
    kind = _output_kind(outputs, proba)
    return OnnxModel(
        framework="onnx",
        library="onnxruntime",
        library_version=str(ort.__version__),
        estimator_class=proto.graph.name or "onnx graph",
        classes=_class_labels(proto, onnx) if kind == "classifier" else None,
        n_features=_n_features(inputs),
        feature_names=_feature_names(inputs),
        feature_dtypes=_feature_dtypes(inputs),
        input_dtype=_input_dtype(inputs),
        output_kind=kind,
        nbytes_estimate=len(data),
        session=session,
        inputs=inputs,
        outputs=outputs,
        proba_output=proba,
        producer=f"{proto.producer_name} {proto.producer_version}".strip(),
        opsets={entry.domain or "ai.onnx": int(entry.version) for entry in proto.opset_import},
    )


def _session(ort: Any, data: bytes) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    try:
        # From bytes, not a path: there is no model directory to resolve external files in.
        return ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelLoadError(f"onnxruntime cannot load the model: {exc}") from exc


def _graphs(graph: Any) -> Iterator[Any]:
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("g"):
                yield from _graphs(attribute.g)
            for subgraph in attribute.graphs:
                yield from _graphs(subgraph)


def _nodes(proto: Any) -> Iterator[Any]:
    for graph in _graphs(proto.graph):
        yield from graph.node
    for function in proto.functions:
        for node in function.node:
            yield node
            for attribute in node.attribute:
                for subgraph in [attribute.g, *attribute.graphs]:
                    for graph in _graphs(subgraph):
                        yield from graph.node


def _tensors(proto: Any) -> Iterator[Any]:
    for graph in _graphs(proto.graph):
        yield from graph.initializer
        for sparse in graph.sparse_initializer:
            yield from (sparse.values, sparse.indices)
    for node in _nodes(proto):
        for attribute in node.attribute:
            yield attribute.t
            yield from attribute.tensors
            for sparse in [attribute.sparse_tensor, *attribute.sparse_tensors]:
                yield from (sparse.values, sparse.indices)


def check_no_external_data(proto: Any, onnx: Any) -> None:
    """Refuse tensors stored outside the file: their paths could point anywhere on disk."""
    for tensor in _tensors(proto):
        if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data):
            location = next((e.value for e in tensor.external_data if e.key == "location"), "?")
            raise ModelLoadError(
                f"ONNX models with external data are not accepted (tensor {tensor.name!r} "
                f"refers to {location!r}); save the model with its weights inside the file"
            )


def check_operator_domains(proto: Any) -> None:
    """Refuse custom operators: they need native libraries we never load."""
    local = {(function.domain, function.name) for function in proto.functions}
    for node in _nodes(proto):
        if node.domain not in STANDARD_DOMAINS and (node.domain, node.op_type) not in local:
            raise ModelLoadError(f"custom ONNX operator {node.domain}.{node.op_type} is refused")


def _port(arg: Any) -> Port:
    shape = arg.shape if isinstance(arg.shape, list) else None
    dims = None if shape is None else [d if isinstance(d, int) else None for d in shape]
    return Port(name=arg.name, shape=dims, type=str(arg.type))


def _proba_output(outputs: list[Port]) -> str | None:
    if len(outputs) < 2 or outputs[0].type not in ("tensor(int64)", "tensor(string)"):
        return None
    second = outputs[1]
    if second.type.startswith("seq(map(") or second.type in ("tensor(float)", "tensor(double)"):
        return second.name
    return None


def _output_kind(outputs: list[Port], proba: str | None) -> OutputKind:
    if proba is not None:
        return "classifier"
    if len(outputs) == 1 and outputs[0].type in ("tensor(float)", "tensor(double)"):
        return "regressor"
    return "other"


def _class_labels(proto: Any, onnx: Any) -> list[Any] | None:
    for node in _nodes(proto):
        for attribute in node.attribute:
            if attribute.name in _CLASS_ATTRIBUTES:
                values = onnx.helper.get_attribute_value(attribute)
                return [v.decode() if isinstance(v, bytes) else int(v) for v in values]
    return None


def _n_features(inputs: list[Port]) -> int | None:
    widths = [port.width for port in inputs]
    if not widths or any(width is None for width in widths):
        return None
    return sum(w for w in widths if w is not None)


def _feature_names(inputs: list[Port]) -> list[str] | None:
    if len(inputs) > 1 and all(port.width == 1 for port in inputs):
        return [port.name for port in inputs]
    return None


def _feature_dtypes(inputs: list[Port]) -> list[FeatureDtype] | None:
    if len(inputs) < 2 or _n_features(inputs) is None:
        return None
    kinds: dict[str, FeatureDtype] = {"O": "string", "b": "bool", "i": "int", "u": "int"}
    return [kinds.get(port.dtype.kind, "float") for port in inputs for _ in range(port.width or 0)]


def _input_dtype(inputs: list[Port]) -> np.dtype[Any]:
    dtypes = {port.dtype for port in inputs}
    if len(dtypes) == 1:
        return dtypes.pop()
    return np.dtype(object)
