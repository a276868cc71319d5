"""Describe an uploaded model file: load it, read its metadata, check that it predicts.

``python -m inferx.registry.inspect <path> <framework>`` (run inside the sandbox) prints the
metadata as one JSON line and exits 0, or prints ``{"error", "kind", "detail", "global"}`` and
exits 2. Importing this module pulls in numpy and nothing of the web app.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from collections.abc import Iterable, Iterator
from typing import IO, Any

import numpy as np

from inferx.inference.runtimes import LoadedModel, ModelLoadError, load_model

_FEATURE_KINDS = {"f": "float", "i": "int", "u": "int", "b": "bool", "O": "string", "U": "string"}


def inspect_model(
    path: str, framework: str, *, extra_allowed: Iterable[str] = ()
) -> dict[str, Any]:
    """JSON-serialisable metadata of the model file; raises ModelLoadError (or a subclass)."""
    model = load_model(path, framework, extra_allowed=extra_allowed)
    meta: dict[str, Any] = {
        "framework": model.framework,
        "library": model.library,
        "library_version": model.library_version,
        "estimator_class": model.estimator_class,
        "n_features": model.n_features,
        "feature_names": model.feature_names,
        "feature_dtypes": model.feature_dtypes,
        "classes": model.classes,
        "output_kind": model.output_kind,
        "has_predict_proba": model.has_predict_proba,
        "input_dtype": str(model.input_dtype),
        "nbytes_estimate": model.nbytes_estimate,
        **model.describe(),
    }
    meta["verified"] = verify_predicts(model)
    return dict(json_safe(meta))


def verify_predicts(model: LoadedModel) -> bool:
    """Predict on two sample rows; False when the input width is unknown and no row can be built."""
    sample = model.sample_input(2)
    if sample is None:
        return False
    try:
        prediction = np.asarray(model.predict(sample))
        proba = model.predict_proba(sample)
    except Exception as exc:  # whatever the model's own code raises
        raise ModelLoadError(
            f"model does not predict on a sample row: {type(exc).__name__}: {exc}"
        ) from exc
    if prediction.shape[:1] != (2,) or (proba is not None and np.shape(proba)[:1] != (2,)):
        raise ModelLoadError(
            f"model does not predict on a sample row: 2 rows gave shape {prediction.shape}"
        )
    return True


def infer_input_schema(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The input a model expects, from its metadata: width, per-feature names/types, dtype."""
    n_features = meta.get("n_features")
    if not isinstance(n_features, int) or n_features <= 0:
        return None
    dtype = str(meta.get("input_dtype") or "float64")
    names = meta.get("feature_names")
    dtypes = meta.get("feature_dtypes")
    names = names if isinstance(names, list) and len(names) == n_features else None
    dtypes = dtypes if isinstance(dtypes, list) and len(dtypes) == n_features else None
    features = None
    if names or dtypes:
        default = _FEATURE_KINDS.get(np.dtype(dtype).kind, "float")
        features = [
            {
                "name": str(names[i]) if names else f"x{i}",
                "dtype": str(dtypes[i]) if dtypes else default,
            }
            for i in range(n_features)
        ]
    return {"n_features": n_features, "features": features, "dtype": dtype}


def json_safe(value: Any) -> Any:
    """numpy scalars/arrays, bytes, tuples and non-finite floats made JSON-friendly."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def error_record(exc: BaseException) -> dict[str, Any]:
    """What the CLI prints for a failure; `kind` is unsafe_pickle, missing_extra or load_error."""
    record: dict[str, Any] = {
        "error": str(exc) or type(exc).__name__,
        "kind": getattr(exc, "kind", "load_error")
        if isinstance(exc, ModelLoadError)
        else "load_error",
        "detail": getattr(exc, "detail", f"{type(exc).__name__}: {exc}"),
        "global": getattr(exc, "global_name", None),
    }
    for extra in ("extra", "types"):
        if hasattr(exc, extra):
            record[extra] = getattr(exc, extra)
    return record


@contextlib.contextmanager
def _stdout_reserved() -> Iterator[IO[str]]:
    """Send everything else (native libraries print too) to stderr; yield the real stdout."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    out = os.fdopen(os.dup(saved), "w")
    try:
        yield out
    finally:
        out.close()
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    with _stdout_reserved() as out:
        if len(args) != 2:
            record = error_record(
                ModelLoadError("usage: python -m inferx.registry.inspect PATH FW")
            )
            out.write(json.dumps(record) + "\n")
            return 2
        try:
            meta = inspect_model(args[0], args[1])
        except Exception as exc:  # reported as data, never as a traceback on stdout
            out.write(json.dumps(json_safe(error_record(exc))) + "\n")
            return 2
        out.write(json.dumps(meta) + "\n")
        return 0


if __name__ == "__main__":
    sys.exit(main())
