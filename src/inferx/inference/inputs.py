"""Turn a JSON ``input`` into the 2-D array a version expects, or a 422 naming row and field."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from inferx.errors import InvalidInput

NUMERIC = (int, float)
DTYPES = {"float32": np.float32, "float64": np.float64, "int64": np.int64, "object": object}


def to_array(data: Any, schema: dict[str, Any] | None, max_rows: int) -> np.ndarray:
    if not isinstance(data, list) or not data:
        raise InvalidInput("`input` must be a non-empty list of rows.")
    if len(data) > max_rows:
        raise InvalidInput(
            f"`input` has {len(data)} rows; at most {max_rows} per request (batch jobs take more)."
        )
    schema = schema or {}
    features = schema.get("features") or None
    width = schema.get("n_features") or (len(features) if features else None)
    if isinstance(data[0], dict):
        if not features:
            raise InvalidInput("This model version has no named features: send rows as lists.")
        rows = [_from_mapping(i, row, features) for i, row in enumerate(data)]
    else:
        rows = data
    kinds = [f.get("dtype", "float") for f in features] if features else None
    _check_rows(rows, width, kinds)
    dtype = DTYPES.get(schema.get("dtype", "float64"), np.float64)
    if kinds and "string" in kinds:
        dtype = object
    return np.asarray(rows, dtype=dtype)


def _from_mapping(index: int, row: Any, features: list[dict[str, Any]]) -> list[Any]:
    if not isinstance(row, dict):
        raise InvalidInput(f"input[{index}]: every row must be an object like the first one.")
    names = [f["name"] for f in features]
    unknown = set(row) - set(names)
    if unknown:
        raise InvalidInput(
            f"input[{index}]: unknown feature(s) {', '.join(sorted(map(str, unknown)))}."
        )
    missing = [n for n in names if n not in row]
    if missing:
        raise InvalidInput(f"input[{index}]: missing feature(s) {', '.join(missing)}.")
    return [row[n] for n in names]


def _check_rows(rows: list[Any], width: int | None, kinds: list[str] | None) -> None:
    expected = width or (len(rows[0]) if isinstance(rows[0], list) else None)
    for i, row in enumerate(rows):
        if not isinstance(row, list):
            raise InvalidInput(f"input[{i}]: a row must be a list of feature values.")
        if len(row) != expected:
            raise InvalidInput(f"input[{i}]: expected {expected} features, got {len(row)}.")
        for j, value in enumerate(row):
            kind = kinds[j] if kinds else "float"
            if kind == "string":
                if not isinstance(value, str):
                    raise InvalidInput(f"input[{i}][{j}]: expected a string, got {_type(value)}.")
                continue
            if type(value) not in NUMERIC and not (kind == "bool" and isinstance(value, bool)):
                raise InvalidInput(f"input[{i}][{j}]: expected a number, got {_type(value)}.")
            if isinstance(value, float) and not math.isfinite(value):
                raise InvalidInput(f"input[{i}][{j}]: NaN and infinity are not allowed.")


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__
