"""Calls made during one event-loop tick, sent on together: one Redis round trip for many.

Under concurrency many requests reach the same Redis step at about the same moment; each
round trip through redis-py costs far more CPU than the command itself, so the calls are
gathered until the loop comes back around and then handled by one ``run`` (a pipeline, an
MGET). A lone caller waits one loop tick more than calling directly, nothing else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Run = Callable[[list[T]], Awaitable[Sequence[R | BaseException]]]


class Coalescer(Generic[T, R]):
    """``await coalescer(item)``: ``run`` gets every item submitted in the same tick (at most
    ``max_items`` at once) and returns one result or exception per item, in order."""

    def __init__(self, run: Run[T, R], *, max_items: int = 256) -> None:
        self._run = run
        self._max = max_items
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def __call__(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, future))
        if len(self._pending) == 1:
            loop.call_soon(self._send)
        elif len(self._pending) >= self._max:
            self._send()
        return await future

    def _send(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        task = asyncio.get_running_loop().create_task(self._deliver(batch))
        self._tasks.add(task)  # a reference until done: the loop only keeps weak ones
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._run([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"{len(results)} results for {len(batch)} calls")
        except BaseException as exc:  # every caller sees the failure; nobody waits forever
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():  # the caller gave up (its timeout)
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
