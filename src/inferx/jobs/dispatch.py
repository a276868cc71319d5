"""Who runs background work, behind one small interface chosen by settings.

The database tables are the ledger either way (chunks and deliveries with leases); a
dispatcher only decides *who* claims the next item and *when* it looks:

- ``EmbeddedDispatcher``: loops inside this process claim items from the ledger, woken at
  once by ``dispatch`` and otherwise every ``jobs_poll_s``. Works on SQLite.
- ``ProcrastinateDispatcher`` (``inferx.jobs.queue``): ``dispatch`` defers a Procrastinate
  task on PostgreSQL; ``inferx worker`` processes on any number of machines run them.

Both run the same ``WorkKind.run_one`` (claim one due item with a lease and do it) and the same
maintenance (expired leases back to pending or failed, items nobody picked up dispatched again,
expired results purged), so "at least once" never depends on a message broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

import structlog

from inferx.kit.time import utcnow

if TYPE_CHECKING:
    from inferx.context import AppContext

log = structlog.get_logger("inferx.jobs")

Item = tuple[uuid.UUID, datetime | None]  # what to run, and not before when (None: now)


@dataclass(frozen=True, slots=True)
class WorkKind:
    """One kind of background work, e.g. ``jobs.chunk`` or ``webhooks.deliver``."""

    name: str
    run_one: Callable[[AppContext, str], Awaitable[bool]]  # (ctx, worker id) -> did work
    concurrency: Callable[[AppContext], int]


Maintain = Callable[["AppContext"], Awaitable[dict[str, list[Item]]]]


class Dispatcher(Protocol):
    async def start(self) -> None:
        """In every process with a context; runs workers here when the settings say so."""

    async def stop(self) -> None:
        """Stop claiming; give running items a grace period, then hand them back."""

    async def dispatch(self, kind: str, items: Sequence[Item]) -> None:
        """Items were committed to the ledger: get them run (called after commit)."""

    async def work(self, stop: asyncio.Event) -> None:
        """Run workers in the foreground until ``stop`` is set (``inferx worker``)."""


def worker_name(kind: str, index: int) -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{kind}:{index}:{uuid.uuid4().hex[:6]}"


def maintenance_interval(ctx: AppContext) -> float:
    return max(0.2, min(ctx.settings.jobs_lease_s / 3, 5.0))


class EmbeddedDispatcher:
    def __init__(
        self, ctx: AppContext, kinds: Sequence[WorkKind], maintain: Maintain, *, in_process: bool
    ) -> None:
        self.ctx = ctx
        self.kinds = {k.name: k for k in kinds}
        self.maintain = maintain
        self.in_process = in_process
        self._wake = {name: asyncio.Event() for name in self.kinds}
        self._tasks: list[asyncio.Task[None]] = []
        self._timers: set[asyncio.TimerHandle] = set()
        self._stopping = False
        self._stopped = asyncio.Event()

    async def start(self) -> None:
        if self.in_process:
            self._spawn()

    async def work(self, stop: asyncio.Event) -> None:
        self._spawn()
        await stop.wait()
        await self.stop()

    def _spawn(self) -> None:
        if self._tasks:
            return
        self._stopping = False
        self._stopped.clear()
        for kind in self.kinds.values():
            for i in range(kind.concurrency(self.ctx)):
                self._tasks.append(
                    asyncio.create_task(self._loop(kind, i), name=f"inferx-{kind.name}-{i}")
                )
        self._tasks.append(asyncio.create_task(self._maintain(), name="inferx-jobs-maintain"))

    async def dispatch(self, kind: str, items: Sequence[Item]) -> None:
        event = self._wake.get(kind)
        if event is None:
            return
        loop = asyncio.get_running_loop()
        now = utcnow()
        for _, at in items:
            delay = 0.0 if at is None else (at - now).total_seconds()
            if delay <= 0:
                event.set()
            else:
                handle = loop.call_later(delay, event.set)
                self._timers.add(handle)

    async def _loop(self, kind: WorkKind, index: int) -> None:
        # Each loop sleeps until woken (dispatch, or the maintenance pass finding due work) or
        # until the poll interval passes, then drains what it can claim. Starting asleep keeps
        # a server that just started (or a short-lived one) off the database.
        name = worker_name(kind.name, index)
        event = self._wake[kind.name]
        failures = 0
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), self.ctx.settings.jobs_poll_s)
            event.clear()
            while not self._stopping:
                try:
                    did = await kind.run_one(self.ctx, name)
                    failures = 0
                except Exception as exc:  # a database outage: back off, never die
                    failures += 1
                    log.warning("jobs.worker_error", kind=kind.name, error=type(exc).__name__)
                    with contextlib.suppress(TimeoutError):
                        delay = min(30.0, 0.5 * 2**failures) * random.uniform(0.5, 1.0)
                        await asyncio.wait_for(self._stopped.wait(), delay)
                    did = False
                if not did:
                    break

    async def _maintain(self) -> None:
        interval = maintenance_interval(self.ctx)
        while not self._stopping:
            try:
                due = await self.maintain(self.ctx)
                for kind, items in due.items():
                    if items:
                        await self.dispatch(kind, items)
            except Exception as exc:
                log.warning("jobs.maintenance_failed", error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), interval * random.uniform(0.8, 1.2))

    async def stop(self) -> None:
        self._stopping = True
        self._stopped.set()
        for event in self._wake.values():
            event.set()
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        tasks, self._tasks = self._tasks, []
        if not tasks:
            return
        # Warm shutdown: the item in hand may finish within the grace period; after it, the
        # task is cancelled and hands its lease back (see the kinds' run_one).
        _, pending = await asyncio.wait(tasks, timeout=self.ctx.settings.graceful_timeout_s)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def create_dispatcher(ctx: AppContext, kinds: Sequence[WorkKind], maintain: Maintain) -> Dispatcher:
    settings = ctx.settings
    if settings.jobs_dispatcher == "procrastinate":
        try:
            import procrastinate  # noqa: F401
        except ImportError as exc:
            raise RuntimeError(
                "INFERX_JOBS_DISPATCHER=procrastinate needs: pip install 'inferx[postgres-queue]'"
            ) from exc
        from inferx.jobs.queue import ProcrastinateDispatcher

        return ProcrastinateDispatcher(
            ctx, kinds, maintain, in_process=settings.jobs_worker_in_server
        )
    return EmbeddedDispatcher(ctx, kinds, maintain, in_process=settings.jobs_worker_in_server)
