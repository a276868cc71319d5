"""The event bus: the same tests in-process and on Redis, then what only Redis adds (replicas,
outages). Redis tests run when INFERX_TEST_REDIS_URL is set, on a key prefix of their own."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from structlog.testing import capture_logs

from inferx.events import EventBus, LocalEventBus, RedisEventBus, create_event_bus

REDIS_URL = os.environ.get("INFERX_TEST_REDIS_URL")
NO_REDIS = "INFERX_TEST_REDIS_URL is not set: Redis event bus tests need a real Redis"

Seen = list[tuple[str, dict[str, Any]]]
RedisFactory = Callable[..., Redis]


def recorder(seen: Seen, tag: str = "") -> Any:
    async def handler(event: str, payload: dict[str, Any]) -> None:
        seen.append((tag + event, payload))

    return handler


async def eventually(check: Callable[[], bool], timeout_s: float = 3.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def prefix() -> str:
    return f"inferxtest:{uuid.uuid4().hex[:12]}:"


class RedisClients:
    """Redis clients shaped like the app's (short timeouts), closed and cleaned up after."""

    def __init__(self, prefix: str) -> None:
        if not REDIS_URL:
            pytest.skip(NO_REDIS)
        self.url = REDIS_URL
        self.prefix = prefix
        self.clients: list[Redis] = []

    def __call__(self, **options: Any) -> Redis:
        client = Redis.from_url(
            self.url,
            socket_timeout=0.25,
            socket_connect_timeout=0.25,
            health_check_interval=10,
            **options,
        )
        self.clients.append(client)
        return client

    async def aclose(self) -> None:
        # Pub/sub writes no keys; this only guards against a future change that would.
        cleaner = self()
        keys = [k async for k in cleaner.scan_iter(match=self.prefix + "*", count=1000)]
        if keys:
            await cleaner.delete(*keys)
        for client in self.clients:
            await client.aclose()


@pytest.fixture
async def redis_factory(prefix: str) -> AsyncIterator[RedisFactory]:
    clients = RedisClients(prefix)
    yield clients
    await clients.aclose()


@pytest.fixture
async def make_bus(
    request: pytest.FixtureRequest, prefix: str
) -> AsyncIterator[Callable[[], EventBus]]:
    """Started buses of the kind under test; all stopped after the test."""
    buses: list[EventBus] = []
    clients = RedisClients(prefix) if request.param == "redis" else None

    def make() -> EventBus:
        bus = create_event_bus(clients() if clients else None, prefix)
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        await bus.stop()
    if clients:
        await clients.aclose()


both = pytest.mark.parametrize("make_bus", ["local", "redis"], indirect=True)


@both
async def test_delivers_to_subscribers_of_the_event_in_order(
    make_bus: Callable[[], EventBus],
) -> None:
    bus = make_bus()
    seen: Seen = []
    bus.subscribe("model.deleted", recorder(seen, "first:"))
    bus.subscribe("model.updated", recorder(seen, "other:"))
    bus.subscribe("model.deleted", recorder(seen, "second:"))
    await bus.start()

    await bus.publish("model.deleted", {"model_id": "m1", "versions": [1, 2]})

    payload = {"model_id": "m1", "versions": [1, 2]}
    assert seen == [("first:model.deleted", payload), ("second:model.deleted", payload)]


@both
async def test_star_subscribes_to_every_event(make_bus: Callable[[], EventBus]) -> None:
    bus = make_bus()
    seen: Seen = []
    bus.subscribe("*", recorder(seen))
    await bus.start()

    await bus.publish("a", {"n": 1})
    await bus.publish("b", {"n": 2})

    assert seen == [("a", {"n": 1}), ("b", {"n": 2})]


@both
async def test_failing_handler_is_logged_and_isolated(make_bus: Callable[[], EventBus]) -> None:
    bus = make_bus()
    seen: Seen = []

    async def broken(event: str, payload: dict[str, Any]) -> None:
        raise RuntimeError("handler bug")

    bus.subscribe("job.done", broken)
    bus.subscribe("job.done", recorder(seen))
    await bus.start()

    with capture_logs() as logs:
        await bus.publish("job.done", {"job_id": "j1"})  # does not raise

    assert seen == [("job.done", {"job_id": "j1"})]
    failures = [e for e in logs if e["event"] == "events.handler_failed"]
    assert len(failures) == 1
    assert failures[0]["error"] == "RuntimeError"
    assert failures[0]["event_name"] == "job.done"


@both
async def test_payload_is_json(make_bus: Callable[[], EventBus]) -> None:
    bus = make_bus()
    seen: Seen = []
    bus.subscribe("e", recorder(seen))
    await bus.start()

    with pytest.raises(TypeError):
        await bus.publish("e", {"not json": {1, 2}})
    await bus.publish("e", {"pair": (1, 2)})

    assert seen == [("e", {"pair": [1, 2]})]  # what a remote replica would see, here too


async def test_local_bus_start_stop_are_harmless() -> None:
    bus = LocalEventBus()
    await bus.start()
    await bus.stop()
    seen: Seen = []
    bus.subscribe("e", recorder(seen))
    await bus.publish("e", {})
    assert seen == [("e", {})]


async def test_two_replicas_each_hear_every_event_once(
    redis_factory: RedisFactory, prefix: str
) -> None:
    a = RedisEventBus(redis_factory(), prefix)
    b = RedisEventBus(redis_factory(), prefix)
    elsewhere = RedisEventBus(redis_factory(), prefix + "other:")
    seen_a: Seen = []
    seen_b: Seen = []
    seen_elsewhere: Seen = []
    a.subscribe("*", recorder(seen_a))
    b.subscribe("*", recorder(seen_b))
    elsewhere.subscribe("*", recorder(seen_elsewhere))
    try:
        for bus in (a, b, elsewhere):
            await bus.start()

        await a.publish("model.deleted", {"id": 1})
        await a.publish("model.updated", {"id": 2})
        assert len(seen_a) == 2  # the publisher heard itself at once, without Redis
        await eventually(lambda: len(seen_b) == 2)
        await b.publish("from.b", {"id": 3})
        # A receives its own two events before B's on the same connection, so once B's event
        # has arrived, A has already seen (and skipped) its echoes.
        await eventually(lambda: len(seen_a) == 3)
        await asyncio.sleep(0.05)
    finally:
        for bus in (a, b, elsewhere):
            await bus.stop()

    expected = [("model.deleted", {"id": 1}), ("model.updated", {"id": 2}), ("from.b", {"id": 3})]
    assert seen_a == expected
    assert seen_b == expected
    assert seen_elsewhere == []


async def test_listener_reconnects_after_its_connection_is_killed(
    redis_factory: RedisFactory, prefix: str
) -> None:
    name = f"inferxtest-{uuid.uuid4().hex[:12]}"
    admin = redis_factory()
    a = RedisEventBus(redis_factory(), prefix)
    b = RedisEventBus(redis_factory(client_name=name), prefix, reconnect_min_s=0.05)
    seen_b: Seen = []
    b.subscribe("ping", recorder(seen_b))
    try:
        await a.start()
        await b.start()
        killed = [c for c in await admin.client_list() if c.get("name") == name]
        assert killed
        for client in killed:
            await admin.client_kill_filter(_id=client["id"])

        # Events sent while B is cut off are lost (by design); B must come back by itself.
        for i in range(100):
            await a.publish("ping", {"i": i})
            if seen_b:
                break
            await asyncio.sleep(0.05)
    finally:
        await a.stop()
        await b.stop()
    assert seen_b


async def test_redis_down_publish_still_delivers_locally_without_hanging() -> None:
    redis = Redis.from_url(
        f"redis://127.0.0.1:{closed_port()}/0", socket_timeout=0.2, socket_connect_timeout=0.2
    )
    bus = RedisEventBus(redis, "inferxtest:down:", reconnect_min_s=0.05, reconnect_max_s=0.2)
    attempts = 0
    real_pubsub = redis.pubsub

    def counting_pubsub(**kwargs: Any) -> Any:
        nonlocal attempts
        attempts += 1
        return real_pubsub(**kwargs)

    redis.pubsub = counting_pubsub  # type: ignore[method-assign]
    seen: Seen = []
    bus.subscribe("model.deleted", recorder(seen))
    try:
        with capture_logs() as logs:
            await bus.start()
            start = time.monotonic()
            await bus.publish("model.deleted", {"id": 1})
            await bus.publish("model.deleted", {"id": 2})
            assert time.monotonic() - start < 1.0
            await asyncio.sleep(0.6)  # the listener keeps retrying in the background
    finally:
        await bus.stop()
        await redis.aclose()

    assert seen == [("model.deleted", {"id": 1}), ("model.deleted", {"id": 2})]
    outages = [e for e in logs if e["event"] == "events.redis_unavailable"]
    assert len(outages) == 1  # one line per outage, not one per event or retry
    assert 2 <= attempts <= 12  # retried with backoff, not in a busy loop


async def test_stop_is_clean_and_idempotent(redis_factory: RedisFactory, prefix: str) -> None:
    bus = RedisEventBus(redis_factory(), prefix)
    await bus.stop()  # never started
    await bus.start()
    await bus.start()  # already running: no second listener
    await bus.stop()
    await bus.stop()
