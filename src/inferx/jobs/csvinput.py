"""CSV rows for a batch job: the header row is mapped to the version's input schema and every
value is converted as it is read, a chunk at a time, so a large file never sits in memory.

Blocking (file reads): drive the iterator from a thread."""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from inferx.errors import InvalidInput

MAX_COLUMNS = 10_000
_INT = re.compile(r"[+-]?\d+")
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def _plan(
    header: list[str], schema: dict[str, Any], width: int | None
) -> tuple[list[int], list[str]]:
    """Which CSV column feeds each feature, and the feature's kind."""
    header = [h.strip() for h in header]
    if len(header) > MAX_COLUMNS:
        raise InvalidInput(f"The CSV has {len(header)} columns; at most {MAX_COLUMNS}.")
    features = schema.get("features") or None
    if features:
        names = [str(f["name"]) for f in features]
        dupes = sorted({h for h in header if header.count(h) > 1})
        if dupes:
            raise InvalidInput(f"CSV header: column(s) {', '.join(dupes)} appear more than once.")
        missing = [n for n in names if n not in header]
        if missing:
            raise InvalidInput(f"CSV header: missing feature column(s) {', '.join(missing)}.")
        unknown = [h for h in header if h not in names]
        if unknown:
            raise InvalidInput(f"CSV header: unknown column(s) {', '.join(unknown)}.")
        return [header.index(n) for n in names], [str(f.get("dtype", "float")) for f in features]
    if width is not None and len(header) != width:
        raise InvalidInput(
            f"CSV header: the model takes {width} features; the header has {len(header)} columns."
        )
    return list(range(len(header))), ["float"] * len(header)


def _value(text: str, kind: str, line: int, column: str) -> Any:
    where = f"CSV line {line}, column {column!r}"
    if kind == "string":
        return text
    value = text.strip()
    if not value:
        raise InvalidInput(f"{where}: empty value.")
    if kind == "bool" and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    if _INT.fullmatch(value):
        return int(value)
    try:
        number = float(value)
    except ValueError:
        raise InvalidInput(f"{where}: {value[:40]!r} is not a number.") from None
    if not math.isfinite(number):
        raise InvalidInput(f"{where}: NaN and infinity are not allowed.")
    return number


def read_chunks(
    path: Path,
    schema: dict[str, Any] | None,
    width: int | None,
    chunk_rows: int,
    max_rows: int,
) -> Iterator[list[list[Any]]]:
    """Yield lists of at most ``chunk_rows`` converted rows, in file order."""
    schema = schema or {}
    with path.open("r", encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        try:
            header = next(reader, None)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise InvalidInput(f"The CSV header cannot be read: {exc}.") from None
        if not header:
            raise InvalidInput("The CSV is empty: it needs a header row and at least one row.")
        columns, kinds = _plan(header, schema, width)
        names = [header[c].strip() for c in columns]
        chunk: list[list[Any]] = []
        count = 0
        try:
            for record in reader:
                if not record:
                    continue
                line = reader.line_num
                if len(record) != len(header):
                    raise InvalidInput(
                        f"CSV line {line}: {len(record)} values, the header has {len(header)}."
                    )
                count += 1
                if count > max_rows:
                    raise InvalidInput(f"The CSV has more than {max_rows} rows, the job limit.")
                chunk.append(
                    [
                        _value(record[c], k, line, n)
                        for c, k, n in zip(columns, kinds, names, strict=True)
                    ]
                )
                if len(chunk) >= chunk_rows:
                    yield chunk
                    chunk = []
        except (csv.Error, UnicodeDecodeError) as exc:
            raise InvalidInput(f"The CSV cannot be read: {exc}.") from None
        if chunk:
            yield chunk
        elif count == 0:
            raise InvalidInput("The CSV has a header but no rows.")
