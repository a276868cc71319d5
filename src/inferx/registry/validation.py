"""Validate an upload in the sandbox (never in the API process) and turn the verdict into errors."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from inferx.config import Settings
from inferx.errors import InferxError, InvalidInput
from inferx.kit.sandbox import SandboxLimits, SandboxTimeout, run_sandboxed


class UnsafeModel(InferxError):
    status, title = 422, "Unsafe model file"


class UnsupportedModel(InferxError):
    status, title = 422, "Unsupported model file"


class MissingFrameworkExtra(InferxError):
    status, title = 422, "Framework not installed"


async def validate_model_file(
    settings: Settings,
    slots: asyncio.Semaphore,
    path: Path,
    filename: str | None,
    declared: str | None,
) -> tuple[str, dict[str, Any]]:
    """Returns (framework, metadata) or raises a 422 that says what is wrong with the file."""
    argv = [
        sys.executable,
        "-m",
        "inferx.registry.sandbox_main",
        str(path),
        filename or "-",
        declared or "-",
        json.dumps(settings.pickle_allow),
        "1" if settings.allow_pickle else "0",
    ]
    limits = SandboxLimits(
        memory_bytes=settings.sandbox_memory_mb << 20,
        cpu_seconds=int(settings.validation_timeout_s) + 1,
        file_size_bytes=64 << 20,
    )
    try:
        async with slots:  # each validation is a process that may use gigabytes
            code, out, _err = await asyncio.to_thread(
                run_sandboxed, argv, settings.validation_timeout_s, limits=limits
            )
    except SandboxTimeout as exc:
        raise InvalidInput(
            f"Validating the model took longer than {settings.validation_timeout_s:g} s."
        ) from exc
    verdict = _last_json_line(out)
    if verdict is None:
        reason = "it ran out of memory or crashed" if code < 0 or code == 1 else f"exit code {code}"
        raise UnsupportedModel(f"The model could not be validated: {reason}.")
    if verdict.get("ok"):
        return str(verdict["framework"]), dict(verdict["metadata"])
    kind, detail = verdict.get("kind"), str(verdict.get("detail", "invalid model"))
    if kind == "unsafe_pickle":
        name = verdict.get("global")
        raise UnsafeModel(detail, **({"global": name} if name else {}))
    if kind == "missing_extra":
        extra = verdict.get("extra")
        raise MissingFrameworkExtra(detail, **({"extra": extra} if extra else {}))
    raise UnsupportedModel(detail)


def _last_json_line(out: str) -> dict[str, Any] | None:
    for line in reversed(out.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None
