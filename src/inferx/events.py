"""Internal event bus: in-process, or fanned out to every replica through Redis pub/sub.

Events are notifications ("model.deleted: drop your cached copy"), not durable work: an event
published while a replica is cut off from Redis never reaches it. Work that must happen goes
through the jobs table. Handlers run once per replica, in subscription order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import structlog
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

log = structlog.get_logger("inferx.events")

Handler = Callable[[str, dict[str, Any]], Awaitable[None]]
ALL = "*"


class EventBus(Protocol):
    def subscribe(self, event: str, handler: Handler) -> None: ...
    async def publish(self, event: str, payload: dict[str, Any]) -> None: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


def _encode(event: str, payload: dict[str, Any], origin: str) -> str:
    return json.dumps({"event": event, "payload": payload, "origin": origin})


class LocalEventBus:
    def __init__(self) -> None:
        self._handlers: list[tuple[str, Handler]] = []

    def subscribe(self, event: str, handler: Handler) -> None:
        self._handlers.append((event, handler))

    async def publish(self, event: str, payload: dict[str, Any]) -> None:
        # Round-trip through JSON so handlers see here exactly what other replicas would see,
        # and a payload that could not cross Redis fails in the embedded mode too.
        await self.deliver(event, json.loads(json.dumps(payload)))

    async def deliver(self, event: str, payload: dict[str, Any]) -> None:
        for name, handler in list(self._handlers):
            if name != event and name != ALL:
                continue
            try:
                await handler(event, payload)
            except Exception as exc:
                log.error(
                    "events.handler_failed",
                    event_name=event,
                    handler=getattr(handler, "__qualname__", repr(handler)),
                    error=type(exc).__name__,
                    exc_info=exc,
                )

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


_REDIS_ERRORS = (RedisError, OSError, TimeoutError)


class RedisEventBus:
    def __init__(
        self,
        redis: Redis,
        prefix: str,
        *,
        timeout_s: float = 0.5,
        reconnect_min_s: float = 0.2,
        reconnect_max_s: float = 10.0,
        poll_s: float = 1.0,
    ) -> None:
        self._redis = redis
        self._channel = f"{prefix}events"
        self._origin = uuid.uuid4().hex
        self._local = LocalEventBus()
        self._timeout_s = timeout_s
        self._reconnect = (reconnect_min_s, reconnect_max_s)
        self._poll_s = poll_s
        self._listener: asyncio.Task[None] | None = None
        self._stopping = False
        self._first_attempt = asyncio.Event()
        self._degraded = False
        self._publish_paused_until = self._publish_pause_s = 0.0
        self._not_sent = 0

    def subscribe(self, event: str, handler: Handler) -> None:
        self._local.subscribe(event, handler)

    async def publish(self, event: str, payload: dict[str, Any]) -> None:
        message = _encode(event, payload, self._origin)
        await self._local.deliver(event, json.loads(message)["payload"])
        await self._send(message)

    async def _send(self, message: str) -> None:
        loop = asyncio.get_running_loop()
        # After a failure, skip Redis for a moment so an outage costs requests no time.
        if loop.time() < self._publish_paused_until:
            self._not_sent += 1
            return
        try:
            await asyncio.wait_for(self._redis.publish(self._channel, message), self._timeout_s)
        except _REDIS_ERRORS as exc:
            self._not_sent += 1
            low, high = self._reconnect
            self._publish_pause_s = min(max(self._publish_pause_s * 2, low), high)
            self._publish_paused_until = loop.time() + self._publish_pause_s
            self._mark_down(exc)
            return
        self._mark_up()

    async def start(self) -> None:
        if self._listener is not None:
            return
        self._first_attempt.clear()
        self._stopping = False
        self._listener = asyncio.create_task(self._listen(), name="inferx-events-listener")
        # Wait for the subscription so events published right after start are heard,
        # but never hold up start-up on an unreachable Redis.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_attempt.wait(), self._timeout_s * 2)

    async def stop(self) -> None:
        task, self._listener = self._listener, None
        if task is None:
            return
        self._stopping = True
        # redis-py may turn a cancellation that lands inside a connect into a ConnectionError;
        # the flag ends the loop then, and the cancel is repeated until the task is done.
        for _ in range(10):
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=0.5)
            if done:
                break
        if task.done() and not task.cancelled():
            with contextlib.suppress(Exception):
                task.result()

    async def _listen(self) -> None:
        delay = self._reconnect[0]
        while not self._stopping:
            try:
                async with self._redis.pubsub() as pubsub:
                    await self._subscribe(pubsub)
                    self._mark_up()
                    self._first_attempt.set()
                    delay = self._reconnect[0]
                    await self._receive(pubsub)
            except _REDIS_ERRORS as exc:
                self._mark_down(exc)
            except Exception as exc:
                log.error("events.listener_failed", error=type(exc).__name__, exc_info=exc)
            self._first_attempt.set()
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self._reconnect[1])

    async def _subscribe(self, pubsub: PubSub) -> None:
        await asyncio.wait_for(pubsub.subscribe(self._channel), self._timeout_s)
        # Redis confirms the subscription with a message; until then a publish can be missed.
        confirmed = await pubsub.get_message(timeout=self._timeout_s)
        if not confirmed or confirmed.get("type") != "subscribe":
            raise TimeoutError("no subscription confirmation from Redis")

    async def _receive(self, pubsub: PubSub) -> None:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=self._poll_s)
            if message is not None and message.get("type") == "message":
                await self._on_message(message["data"])

    async def _on_message(self, data: bytes | str) -> None:
        try:
            envelope = json.loads(data)
            event, payload, origin = envelope["event"], envelope["payload"], envelope["origin"]
        except (ValueError, KeyError, TypeError):
            event, payload, origin = None, None, None
        if not isinstance(event, str) or not isinstance(payload, dict):
            log.warning("events.malformed_message", channel=self._channel)
            return
        if origin != self._origin:  # our own events were delivered when published
            await self._local.deliver(event, payload)

    def _mark_down(self, error: Exception) -> None:
        # Log transitions only: an outage is one line, not one line per event.
        if not self._degraded:
            log.warning("events.redis_unavailable", error=type(error).__name__)
        self._degraded = True

    def _mark_up(self) -> None:
        if self._degraded:
            log.info("events.redis_recovered", events_not_sent=self._not_sent)
            self._not_sent = 0
        self._degraded = False
        self._publish_paused_until = self._publish_pause_s = 0.0


def create_event_bus(redis: Redis | None, prefix: str) -> EventBus:
    if redis is None:
        return LocalEventBus()
    return RedisEventBus(redis, prefix)
