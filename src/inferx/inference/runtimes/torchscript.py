"""TorchScript archives (``torch.jit.save``); plain ``torch.save`` pickles are never loaded.

A model can describe itself in an extra file ``inferx.json`` saved with
``torch.jit.save(m, path, _extra_files={"inferx.json": ...})``: ``n_features``,
``feature_names``, ``classes``, ``output_kind`` and ``output`` ("logits" or "probabilities").
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inferx.inference.runtimes.base import LoadedModel, ModelLoadError, OutputKind, require
from inferx.registry.detect import check_archive

METADATA_FILE = "inferx.json"
_KINDS: tuple[OutputKind, ...] = ("classifier", "regressor", "other")


@dataclass(eq=False, kw_only=True)
class TorchScriptModel(LoadedModel):
    module: Any
    torch: Any
    outputs_probabilities: bool = False

    def predict(self, X: np.ndarray) -> np.ndarray:
        out = self._forward(X)
        if self.output_kind == "classifier" and out.ndim == 2:
            index = out.argmax(axis=1)
            return np.asarray(self.classes)[index] if self.classes else index
        if self.output_kind == "regressor" and out.ndim == 2 and out.shape[1] == 1:
            return out.ravel()
        return out

    def predict_proba(self, X: np.ndarray) -> np.ndarray | None:
        if not self.has_predict_proba:
            return None
        out = self._forward(X)
        if self.outputs_probabilities:
            return out
        shifted = np.exp(out - out.max(axis=1, keepdims=True))
        return np.asarray(shifted / shifted.sum(axis=1, keepdims=True))

    @property
    def has_predict_proba(self) -> bool:
        return self.output_kind == "classifier"

    def _forward(self, X: np.ndarray) -> np.ndarray:
        tensor = self.torch.from_numpy(np.ascontiguousarray(self.prepare(X)))
        with self.torch.inference_mode():
            out = self.module(tensor)
        if isinstance(out, tuple | list):
            out = out[0]
        if not isinstance(out, self.torch.Tensor):
            raise ModelLoadError(f"the model returned a {type(out).__name__}, not a tensor")
        return np.asarray(out.detach().cpu().numpy())


def load(path: str, *, extra_allowed: Iterable[str] = ()) -> TorchScriptModel:
    torch = require("torch", "torch")
    check_archive(path)
    data = Path(path).read_bytes()
    _single_thread(torch)
    extra = {METADATA_FILE: ""}
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", r".*torch\.jit.* is deprecated", DeprecationWarning)
            module = torch.jit.load(io.BytesIO(data), map_location="cpu", _extra_files=extra)
    except (RuntimeError, ValueError) as exc:
        raise ModelLoadError(f"not a loadable TorchScript archive: {exc}") from exc
    module.eval()
    meta = _metadata(extra[METADATA_FILE])
    kind = meta.get("output_kind", "other")
    names = meta.get("feature_names")
    return TorchScriptModel(
        framework="torchscript",
        library="torch",
        library_version=str(torch.__version__),
        estimator_class=f"torch.jit.ScriptModule:{module.original_name}",
        classes=list(meta["classes"]) if isinstance(meta.get("classes"), list) else None,
        n_features=_n_features(meta, module),
        feature_names=[str(n) for n in names] if isinstance(names, list) else None,
        input_dtype=np.dtype(np.float32),
        output_kind=kind if kind in _KINDS else "other",
        nbytes_estimate=len(data),
        module=module,
        torch=torch,
        outputs_probabilities=meta.get("output") == "probabilities",
    )


def _single_thread(torch: Any) -> None:
    torch.set_num_threads(1)
    # Only settable before the process's first parallel work.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)


def _metadata(raw: str | bytes) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        meta = json.loads(raw)
    except ValueError as exc:
        raise ModelLoadError(f"{METADATA_FILE} in the archive is not valid JSON") from exc
    if not isinstance(meta, dict):
        raise ModelLoadError(f"{METADATA_FILE} in the archive must hold a JSON object")
    return meta


def _n_features(meta: dict[str, Any], module: Any) -> int | None:
    declared = meta.get("n_features")
    if isinstance(declared, int) and declared > 0:
        return declared
    # Without metadata, a first 2-D weight (a Linear layer) tells the input width.
    for name, parameter in module.named_parameters():
        if name.endswith("weight") and parameter.dim() == 2:
            return int(parameter.shape[1])
        break
    return None
