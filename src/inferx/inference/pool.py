"""A pool of sandboxed inference worker processes, driven from the API's event loop.

Each worker is a ``python -m inferx.inference.worker`` subprocess started through the sandbox
launcher (fresh environment, rlimits, no network where allowed), connected by a Unix socket
pair read with ``loop.add_reader``: no thread and no task per request, one future each.

A version key always goes to the same worker (rendezvous hashing over the slots that are
running), so each model is loaded once. A request past its timeout fails with
``PredictTimeout`` and its worker is SIGKILLed and replaced; a worker that dies (segfault,
``os._exit``, rlimit) is replaced too, and its other in-flight requests fail with
``WorkerCrashed``. Nothing the worker sends is unpickled: see ``ipc``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import structlog

from inferx.errors import InferxError
from inferx.inference import ipc
from inferx.inference.worker import WorkerConfig
from inferx.kit.sandbox import SandboxLimits, build_env, kill_group, sandbox_command

log = structlog.get_logger("inferx.inference")

RECV_SIZE = 1 << 18
DETAIL_LIMIT = 2000
MAX_BACKOFF_S = 5.0
CONTROL_TIMEOUT_S = 5.0
EXIT_GRACE_S = 0.2


class InferenceError(InferxError):
    status, title = 500, "Inference error"


class PredictTimeout(InferenceError):
    status, title = 504, "Prediction timed out"


class WorkerCrashed(InferenceError):
    status, title = 503, "Inference worker crashed"


class ModelFailed(InferenceError):
    status, title = 500, "Model error"


class ModelInputRejected(ModelFailed):
    status, title = 422, "Invalid input"


class ModelLoadFailed(InferenceError):
    status, title = 500, "Model could not be loaded"


class ModelBusy(InferenceError):
    status, title = 503, "Model busy"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, headers={"Retry-After": "1"})


class ModelQuarantined(InferenceError):
    status, title = 503, "Model temporarily disabled"

    def __init__(self, detail: str | None = None, *, retry_after: float = 30.0) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, math.ceil(retry_after)))})


class PoolClosed(InferenceError):
    status, title = 503, "Inference pool not running"


# what a class label may be, as a tuple: isinstance() with a tuple beats a union per call
_CLASS_TYPES = (str, int, float, bool)

_REPLY_ERRORS: dict[str, type[InferenceError]] = {
    "load": ModelLoadFailed,
    "input": ModelInputRejected,
    "model": ModelFailed,
}


@dataclass(slots=True)
class PredictResult:
    prediction: np.ndarray
    probabilities: np.ndarray | None
    classes: list[Any] | None
    worker_id: int
    compute_ms: float
    batch_size: int = 1  # rows in the model call that produced this result


@dataclass(frozen=True, slots=True)
class PoolConfig:
    workers: int | None = None  # None: os.cpu_count()
    loader: str = "inferx.inference.runtimes:load_model"
    cache_max_bytes: int = 2 << 30
    cache_max_items: int = 32
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    max_frame_bytes: int = ipc.DEFAULT_MAX_FRAME
    start_timeout_s: float = 60.0
    stop_timeout_s: float = 10.0
    preload: tuple[str, ...] = ()  # modules each worker imports before saying hello
    pythonpath: tuple[str, ...] = ()  # extra import roots for the worker (tests, plugins)
    worker_stderr: bool = True  # False: discard what workers print
    # A version that kills its worker this many times in a row is refused for quarantine_s,
    # so one crash-looping model cannot keep taking down the models sharing its worker.
    quarantine_after: int = 3
    quarantine_s: float = 30.0
    python: str = sys.executable
    # A lone request (``solo()`` true) polls its worker's socket up to this long for the answer
    # instead of going back to the event loop to sleep: at low load that saves a sleep and a
    # wake-up per prediction (~15% of a small model's latency here); 0 turns it off.
    poll_s: float = 0.0
    solo: Callable[[], bool] = lambda: False


@dataclass(slots=True)
class WorkerStats:
    worker_id: int
    pid: int | None
    alive: bool
    restarts: int
    models: int
    bytes: int
    in_flight: int
    network_isolated: bool | None


@dataclass(slots=True)
class _Pending:
    future: asyncio.Future[Any]
    timer: asyncio.TimerHandle
    op: str
    rows: int
    key: str
    timeout_s: float


class _Channel:
    """Non-blocking frame I/O on one socket, driven by the loop's reader/writer callbacks."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        max_frame: int,
        on_frame: Callable[[dict[str, Any], bytes], None],
        on_lost: Callable[[str], None],
    ) -> None:
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._reader = ipc.FrameReader(max_frame)
        self._inbox = bytearray(RECV_SIZE)
        self._outbox = bytearray()
        self._on_frame = on_frame
        self._on_lost = on_lost
        self.closed = False
        sock.setblocking(False)
        loop.add_reader(self._fd, self._readable)

    def send(self, data: bytes) -> None:
        if self.closed:
            return
        if self._outbox:
            self._outbox += data
            return
        try:
            sent = self._sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self._loop.call_soon(self._on_lost, f"send failed: {exc}")
            return
        if sent < len(data):
            self._outbox += memoryview(data)[sent:]
            self._loop.add_writer(self._fd, self._writable)

    def _writable(self) -> None:
        try:
            sent = self._sock.send(self._outbox)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._on_lost(f"send failed: {exc}")
            return
        del self._outbox[:sent]
        if not self._outbox:
            self._loop.remove_writer(self._fd)

    def poll(self, future: asyncio.Future[Any], seconds: float) -> None:
        """Read replies without the loop until ``future`` is answered or ``seconds`` pass."""
        deadline = time.perf_counter() + seconds
        while not future.done() and not self.closed and time.perf_counter() < deadline:
            self._readable()

    def _readable(self) -> None:
        try:
            size = self._sock.recv_into(self._inbox)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            size = 0
        if size == 0:
            self._on_lost("connection closed")
            return
        try:
            frames = self._reader.feed(memoryview(self._inbox)[:size])
        except ipc.ProtocolError as exc:
            self._on_lost(f"protocol violation: {exc}")
            return
        for header, payload in frames:
            if self.closed:
                return
            self._on_frame(header, payload)  # type: ignore[arg-type]

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._loop.remove_reader(self._fd)
        if self._outbox:
            self._loop.remove_writer(self._fd)
        self._sock.close()


class _Slot:
    """One worker position; its process is replaced when it dies, the slot stays."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.proc: subprocess.Popen[bytes] | None = None
        self.channel: _Channel | None = None
        self.pending: dict[int, _Pending] = {}
        self.ids = itertools.count(1)
        self.restarts = 0
        self.failures = 0
        self.said_hello = False
        self.ready = asyncio.Event()
        self.network_isolated: bool | None = None
        self.models = 0
        self.bytes = 0
        self.respawn: asyncio.TimerHandle | None = None


class InferencePool:
    """N sandboxed worker processes; ``predict`` routes each version key to one of them."""

    def __init__(self, config: PoolConfig | None = None) -> None:
        self.config = config or PoolConfig()
        count = self.config.workers or os.cpu_count() or 1
        self._slots = [_Slot(i) for i in range(count)]
        self._rankings: dict[str, tuple[int, ...]] = {}
        self._strikes: dict[str, int] = {}
        self._quarantined: dict[str, float] = {}
        self._unreaped: set[asyncio.Future[int]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._home: str | None = None
        self._env: dict[str, str] = {}
        self._running = False

    async def __aenter__(self) -> InferencePool:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start every worker and wait until each has said hello."""
        if self._running:
            return
        self._loop = asyncio.get_running_loop()
        self._home = tempfile.mkdtemp(prefix="inferx-workers-")
        limits = self.config.limits
        if limits.uid is not None and os.geteuid() == 0:
            os.chown(self._home, limits.uid, limits.gid if limits.gid is not None else -1)
        self._env = build_env(self._home, pythonpath=self.config.pythonpath)
        self._running = True
        for slot in self._slots:
            self._spawn(slot)
        waits = [slot.ready.wait() for slot in self._slots]
        try:
            await asyncio.wait_for(asyncio.gather(*waits), self.config.start_timeout_s)
        except TimeoutError:
            await self.stop()
            raise RuntimeError("inference workers did not start in time") from None

    async def stop(self, timeout_s: float | None = None) -> None:
        """Let in-flight requests finish (bounded), then end every worker and reap it."""
        if not self._running:
            return
        self._running = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.config.stop_timeout_s if timeout_s is None else timeout_s)
        in_flight = [p.future for slot in self._slots for p in slot.pending.values()]
        if in_flight:
            await asyncio.wait(in_flight, timeout=max(0.0, deadline - loop.time()))
        for slot in self._slots:
            if slot.respawn is not None:
                slot.respawn.cancel()
            _fail_all(slot, PoolClosed, "the inference pool stopped")
            if slot.channel is not None:
                slot.channel.close()  # EOF: the worker leaves its loop and exits
        if self._unreaped:
            grace = max(0.5, min(2.0, deadline - loop.time()))
            await asyncio.wait(self._unreaped, timeout=grace)
        for slot in self._slots:
            self._lose(slot, "the inference pool stopped", PoolClosed)
        if self._unreaped:
            await asyncio.wait(self._unreaped, timeout=5.0)
        if self._home is not None:
            shutil.rmtree(self._home, ignore_errors=True)

    # --- requests -------------------------------------------------------------------------

    async def predict(
        self,
        version_key: str,
        path: str,
        framework: str,
        X: np.ndarray,
        want_proba: bool,
        timeout_s: float,
    ) -> PredictResult:
        """Run ``X`` through the model stored at ``path`` on the worker owning ``version_key``."""
        return await self.submit(version_key, path, framework, X, want_proba, timeout_s)

    def submit(
        self,
        version_key: str,
        path: str,
        framework: str,
        X: np.ndarray,
        want_proba: bool,
        timeout_s: float,
    ) -> asyncio.Future[PredictResult]:
        """Like ``predict`` but returns the future at once (the batcher's entry point)."""
        if X.ndim == 0:
            raise ValueError("X must have at least one dimension")
        if self._quarantined:
            self._check_quarantine(version_key)
        slot = self._route(version_key)
        header = {
            "op": "predict",
            "key": version_key,
            "path": path,
            "framework": framework,
            "proba": want_proba,
        }
        return self._request(slot, header, (X,), "predict", timeout_s, X.shape[0], version_key)

    async def evict(self, version_key: str) -> int:
        """Drop ``version_key`` from every worker's cache; returns how many held it."""
        futures = [
            self._request(slot, {"op": "evict", "key": version_key}, (), "evict", CONTROL_TIMEOUT_S)
            for slot in self._live_slots()
        ]
        results = await asyncio.gather(*futures, return_exceptions=True)
        return sum(1 for r in results if r is True)

    async def cache_stats(self) -> list[dict[str, Any] | None]:
        """Each worker's model cache (keys, bytes, hits...), asked of the workers themselves."""
        slots = self._live_slots()
        futures = [
            self._request(slot, {"op": "stats"}, (), "stats", CONTROL_TIMEOUT_S) for slot in slots
        ]
        results = await asyncio.gather(*futures, return_exceptions=True)
        return [r if isinstance(r, dict) else None for r in results]

    def stats(self) -> list[WorkerStats]:
        return [
            WorkerStats(
                worker_id=slot.index,
                pid=slot.proc.pid if slot.proc is not None else None,
                alive=slot.proc is not None and slot.said_hello,
                restarts=slot.restarts,
                models=slot.models,
                bytes=slot.bytes,
                in_flight=len(slot.pending),
                network_isolated=slot.network_isolated,
            )
            for slot in self._slots
        ]

    def worker_for(self, version_key: str) -> int:
        """The worker id ``version_key`` is routed to right now."""
        return self._route(version_key).index

    # --- internals ------------------------------------------------------------------------

    def _live_slots(self) -> list[_Slot]:
        return [slot for slot in self._slots if slot.channel is not None]

    def _route(self, key: str) -> _Slot:
        if not self._running:
            raise PoolClosed("the inference pool is not running")
        ranking = self._rankings.get(key)
        if ranking is None:
            ranking = self._rank(key)
        for index in ranking:
            slot = self._slots[index]
            if slot.channel is not None:
                return slot
        raise WorkerCrashed("no inference worker is running; retry shortly")

    def _rank(self, key: str) -> tuple[int, ...]:
        def score(index: int) -> bytes:
            return hashlib.blake2b(f"{index}\0{key}".encode(), digest_size=8).digest()

        ranking = tuple(sorted(range(len(self._slots)), key=score, reverse=True))
        if len(self._rankings) >= 65536:
            self._rankings.clear()
        self._rankings[key] = ranking
        return ranking

    def _request(
        self,
        slot: _Slot,
        header: dict[str, Any],
        arrays: tuple[np.ndarray, ...],
        op: str,
        timeout_s: float,
        rows: int = 0,
        key: str = "",
    ) -> asyncio.Future[Any]:
        assert self._loop is not None and slot.channel is not None
        request_id = next(slot.ids)
        header["id"] = request_id
        solo = bool(self.config.poll_s) and not slot.pending and self.config.solo()
        if solo:  # a lone client: the worker polls for its next request as long as we poll
            header["linger_us"] = round(self.config.poll_s * 1e6)
        frame = ipc.encode_frame(header, arrays)
        head_len, _ = ipc.PREFIX.unpack_from(frame)
        if len(frame) > self.config.max_frame_bytes or head_len > ipc.MAX_HEADER:
            raise ValueError(f"input of {len(frame)} bytes exceeds the inference frame limit")
        loop = self._loop
        future: asyncio.Future[Any] = loop.create_future()
        timer = loop.call_at(loop.time() + timeout_s, self._expired, slot, request_id)
        slot.pending[request_id] = _Pending(future, timer, op, rows, key, timeout_s)
        slot.channel.send(frame)
        if solo:
            slot.channel.poll(future, self.config.poll_s)
        return future

    def _expired(self, slot: _Slot, request_id: int) -> None:
        pending = slot.pending.pop(request_id, None)
        if pending is None:
            return
        if not pending.future.done():
            pending.future.set_exception(
                PredictTimeout(f"the model did not answer within {pending.timeout_s:g} s")
            )
        if pending.op == "predict":
            reason = f"inference worker {slot.index} was killed: a prediction hung"
            self._lose(slot, reason, culprit=pending.key)

    def _on_frame(self, slot: _Slot, header: dict[str, Any], payload: bytes) -> None:
        request_id = header.get("id")
        if request_id is None and header.get("op") == "hello" and not slot.said_hello:
            self._hello(slot, header)
            return
        if not isinstance(request_id, int) or request_id not in slot.pending:
            self._lose(slot, f"protocol violation: unexpected reply id {request_id!r}")
            return
        pending = slot.pending.pop(request_id)
        pending.timer.cancel()
        try:
            outcome = _outcome(slot, pending, header, payload)
        except (ipc.ProtocolError, TypeError, ValueError) as exc:
            slot.pending[request_id] = pending  # failed with the others, as WorkerCrashed
            self._lose(slot, f"protocol violation: {exc}")
            return
        _note_cache(slot, header.get("cache"))
        if self._strikes:
            self._strikes.pop(pending.key, None)
        if pending.future.done():
            return
        if isinstance(outcome, BaseException):
            pending.future.set_exception(outcome)
        else:
            pending.future.set_result(outcome)

    def _hello(self, slot: _Slot, header: dict[str, Any]) -> None:
        slot.said_hello = True
        slot.failures = 0
        slot.network_isolated = header.get("network_isolated") is True
        slot.ready.set()
        log.debug("inference.worker_ready", worker_id=slot.index, pid=header.get("pid"))

    # --- worker processes -----------------------------------------------------------------

    def _spawn(self, slot: _Slot) -> None:
        assert self._loop is not None and self._home is not None
        slot.respawn = None
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            proc = subprocess.Popen(
                sandbox_command(self._worker_argv(slot, child.fileno()), self.config.limits),
                env=self._env,
                cwd=self._home,
                stdin=subprocess.DEVNULL,
                stdout=2 if self.config.worker_stderr else subprocess.DEVNULL,
                stderr=None if self.config.worker_stderr else subprocess.DEVNULL,
                pass_fds=(child.fileno(),),
                start_new_session=True,
            )
        except OSError as exc:
            parent.close()
            log.error("inference.worker_spawn_failed", worker_id=slot.index, error=str(exc))
            self._schedule_respawn(slot, failed=True)
            return
        finally:
            child.close()
        slot.proc = proc
        slot.said_hello = False
        slot.models = slot.bytes = 0
        slot.channel = _Channel(
            self._loop,
            parent,
            self.config.max_frame_bytes,
            lambda header, payload: self._on_frame(slot, header, payload),
            lambda reason: self._disconnected(slot, proc, reason),
        )
        exited = _watch_exit(self._loop, proc)
        self._unreaped.add(exited)
        exited.add_done_callback(self._unreaped.discard)
        exited.add_done_callback(lambda f: self._exited(slot, proc, f))

    def _worker_argv(self, slot: _Slot, fd: int) -> list[str]:
        config = WorkerConfig(
            worker_id=slot.index,
            loader=self.config.loader,
            cache_max_bytes=self.config.cache_max_bytes,
            cache_max_items=self.config.cache_max_items,
            max_frame_bytes=self.config.max_frame_bytes,
            preload=self.config.preload,
        )
        worker = [self.config.python, "-m", "inferx.inference.worker", "--fd", str(fd)]
        return [*worker, "--config", config.to_json()]

    def _exited(
        self, slot: _Slot, proc: subprocess.Popen[bytes], done: asyncio.Future[int]
    ) -> None:
        code = None if done.cancelled() else done.result()
        self._lose_if_current(
            slot, proc, f"inference worker {slot.index} died ({_exit_reason(code)})"
        )

    def _disconnected(self, slot: _Slot, proc: subprocess.Popen[bytes], reason: str) -> None:
        if slot.proc is not proc or slot.channel is None:
            return
        if not reason.startswith("connection closed"):
            self._lose(slot, f"inference worker {slot.index} dropped: {reason}")
            return
        # EOF: the exit status usually follows within microseconds and names the cause
        # (e.g. SIGSEGV); a worker that closed its socket but lives on is killed shortly.
        assert self._loop is not None
        slot.channel.close()
        slot.channel = None
        reason = f"inference worker {slot.index} closed its connection"
        self._loop.call_later(EXIT_GRACE_S, self._lose_if_current, slot, proc, reason)

    def _lose_if_current(self, slot: _Slot, proc: subprocess.Popen[bytes], reason: str) -> None:
        if slot.proc is proc:
            self._lose(slot, reason)

    def _lose(
        self,
        slot: _Slot,
        reason: str,
        error: type[InferenceError] = WorkerCrashed,
        culprit: str | None = None,
    ) -> None:
        """Detach and kill ``slot``'s process, fail its in-flight requests, start a new one."""
        proc, channel = slot.proc, slot.channel
        if proc is None:
            return
        slot.proc = slot.channel = None
        if channel is not None:
            channel.close()
        kill_group(proc.pid)
        if culprit is None:
            # The worker answers in order, so the oldest prediction is the one it was running.
            culprit = next((p.key for p in slot.pending.values() if p.op == "predict"), None)
        _fail_all(slot, error, reason[:DETAIL_LIMIT])
        if not self._running:
            return
        slot.restarts += 1
        log.warning(
            "inference.worker_lost", worker_id=slot.index, pid=proc.pid, reason=reason, key=culprit
        )
        if culprit is not None:
            self._strike(culprit)
        self._schedule_respawn(slot, failed=not slot.said_hello)

    def _strike(self, key: str) -> None:
        strikes = self._strikes.get(key, 0) + 1
        if strikes < self.config.quarantine_after:
            self._strikes[key] = strikes
            return
        assert self._loop is not None
        self._strikes.pop(key, None)
        self._quarantined[key] = self._loop.time() + self.config.quarantine_s
        log.warning("inference.model_quarantined", key=key, seconds=self.config.quarantine_s)

    def _check_quarantine(self, key: str) -> None:
        until = self._quarantined.get(key)
        if until is None:
            return
        assert self._loop is not None
        left = until - self._loop.time()
        if left <= 0:
            del self._quarantined[key]
            return
        raise ModelQuarantined(
            f"model version {key} repeatedly crashed its inference worker; retry in {left:.0f} s",
            retry_after=left,
        )

    def _schedule_respawn(self, slot: _Slot, *, failed: bool) -> None:
        if not self._running or self._loop is None:
            return
        slot.failures = slot.failures + 1 if failed else 0
        if slot.failures == 0:
            self._spawn(slot)
            return
        delay = min(MAX_BACKOFF_S, 0.05 * 2**slot.failures)
        slot.respawn = self._loop.call_later(delay, self._spawn, slot)


def _outcome(slot: _Slot, pending: _Pending, header: dict[str, Any], payload: bytes) -> Any:
    """The value (or exception) a worker's reply resolves to; raises on malformed replies."""
    if header.get("ok") is not True:
        detail = str(header.get("detail", ""))[:DETAIL_LIMIT]
        kind = header.get("error")
        return _REPLY_ERRORS.get(kind if isinstance(kind, str) else "model", ModelFailed)(detail)
    if pending.op == "evict":
        return header.get("evicted") is True
    if pending.op == "stats":
        stats = header.get("stats")
        if not isinstance(stats, dict):
            raise ipc.ProtocolError("stats reply without stats")
        return stats
    arrays = ipc.decode_arrays(header, payload)
    rows = pending.rows
    if not 1 <= len(arrays) <= 2 or any(a.ndim == 0 or len(a) != rows for a in arrays):
        raise ipc.ProtocolError("predict reply does not match the request's rows")
    classes = header.get("classes")
    if classes is not None and not (
        isinstance(classes, list) and all(isinstance(c, _CLASS_TYPES) for c in classes)
    ):
        raise ipc.ProtocolError("bad classes")
    return PredictResult(
        prediction=arrays[0],
        probabilities=arrays[1] if len(arrays) == 2 else None,
        classes=classes,
        worker_id=slot.index,
        compute_ms=float(header.get("ms", 0.0)),
        batch_size=pending.rows,
    )


def _fail_all(slot: _Slot, error: type[InferenceError], detail: str) -> None:
    pending, slot.pending = slot.pending, {}
    for request in pending.values():
        request.timer.cancel()
        if not request.future.done():
            request.future.set_exception(error(detail))


def _note_cache(slot: _Slot, cache: Any) -> None:
    if isinstance(cache, list) and len(cache) == 2 and all(type(v) is int for v in cache):
        slot.models, slot.bytes = cache


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "unknown status"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit code {code}"


def _watch_exit(
    loop: asyncio.AbstractEventLoop, proc: subprocess.Popen[bytes]
) -> asyncio.Future[int]:
    """A future resolved with ``proc``'s exit status once it has exited and been reaped."""
    future: asyncio.Future[int] = loop.create_future()

    def check() -> bool:
        code = proc.poll()
        if code is not None and not future.done():
            future.set_result(code)
        return code is not None

    if check():
        return future
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        _poll_exit(loop, check)
        return future

    def readable() -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)
        if not check():
            _poll_exit(loop, check)

    loop.add_reader(pidfd, readable)
    return future


def _poll_exit(loop: asyncio.AbstractEventLoop, check: Callable[[], bool]) -> None:
    def tick() -> None:
        if not check():
            loop.call_later(0.02, tick)

    loop.call_later(0.02, tick)
