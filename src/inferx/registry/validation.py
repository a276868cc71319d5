"""Validate an upload in the sandbox (never in the API process) and turn the verdict into errors."""

from __future__ import annotations

import asyncio
import copy
import json
import sys
from collections import OrderedDict
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


VerdictKey = tuple[str, str, str]
Verdict = tuple[str, dict[str, Any]]


class Validator:
    """Runs validations (bounded: each is a process that may use gigabytes) and remembers the
    verdict for content it has accepted before, so re-uploading an artefact is instant."""

    def __init__(self, settings: Settings, *, concurrency: int, remember: int = 1000) -> None:
        self._settings = settings
        self._slots = asyncio.Semaphore(concurrency)
        self._verdicts: OrderedDict[VerdictKey, Verdict] = OrderedDict()
        self._running: dict[VerdictKey, asyncio.Future[Verdict]] = {}
        self._remember = remember

    async def validate(
        self, path: Path, filename: str | None, declared: str | None, sha256: str
    ) -> tuple[str, dict[str, Any]]:
        key = (sha256, declared or "", Path(filename or "").suffix.lower())
        known = self._verdicts.get(key)
        if known is None:
            running = self._running.get(key)
            if running is not None:  # the same content is being validated right now: share it
                known = await asyncio.shield(running)
            else:
                known = await self._run(key, path, filename, declared)
        return known[0], copy.deepcopy(known[1])

    async def _run(
        self, key: VerdictKey, path: Path, filename: str | None, declared: str | None
    ) -> Verdict:
        future: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
        self._running[key] = future
        try:
            async with self._slots:
                verdict = await validate_model_file(self._settings, path, filename, declared)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody else needs to
            raise
        finally:
            self._running.pop(key, None)
        future.set_result(verdict)
        self._verdicts[key] = verdict
        while len(self._verdicts) > self._remember:
            self._verdicts.popitem(last=False)
        return verdict


async def validate_model_file(
    settings: Settings, path: Path, filename: str | None, declared: str | None
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
