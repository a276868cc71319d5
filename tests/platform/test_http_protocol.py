"""The connection protocol of ``inferx serve``: one write per response, streams not held back."""

from __future__ import annotations

import asyncio
from typing import Any

from inferx.http_protocol import MAX_HELD, CoalescingTransport


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5)}.get(name, default)

    def get_write_buffer_size(self) -> int:
        return 0


async def test_writes_in_one_callback_go_out_as_one():
    inner = FakeTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    transport.write(b"body")
    assert inner.writes == []
    assert transport.get_write_buffer_size() == 23
    transport.flush()
    assert inner.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
    transport.flush()
    assert inner.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]


async def test_held_writes_go_out_when_the_loop_comes_around():
    inner = FakeTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"first")
    await asyncio.sleep(0)
    assert inner.writes == [b"first"]
    transport.write(b"second")
    transport.write(b"third")
    await asyncio.sleep(0)
    assert inner.writes == [b"first", b"secondthird"]


async def test_large_writes_are_not_held():
    inner = FakeTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"head")
    transport.write(b"x" * MAX_HELD)
    assert inner.writes == [b"head" + b"x" * MAX_HELD]


async def test_close_sends_what_is_held_first_and_a_closed_peer_gets_nothing():
    inner = FakeTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"last words")
    transport.close()
    assert inner.writes == [b"last words"] and inner.closed
    transport.write(b"too late")
    await asyncio.sleep(0)
    assert inner.writes == [b"last words"]
    assert transport.get_extra_info("peername") == ("127.0.0.1", 5)


async def _request(address: str, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = address.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    return reader, writer


async def test_over_http_a_response_arrives_whole_and_a_stream_is_not_held(live_server):
    release = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/stream":
            headers = [(b"content-type", b"text/plain")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b"one;", "more_body": True})
            await asyncio.wait_for(release.wait(), 5)  # the client must see "one;" first
            await send({"type": "http.response.body", "body": b"two"})
            return
        body = b'{"prediction":[0]}'
        headers = [(b"content-type", b"application/json"), (b"content-length", b"18")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async with live_server(app) as address:
        reader, writer = await _request(address, "/")
        # Status line, headers and body were one write: the first read holds all of it.
        first = await asyncio.wait_for(reader.read(65536), 5)
        assert first.startswith(b"HTTP/1.1 200 OK\r\n")
        assert first.endswith(b'\r\n\r\n{"prediction":[0]}')
        # The connection stays usable (keep-alive).
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(65536), 5)).endswith(b"[0]}")
        writer.close()

        reader, writer = await _request(address, "/stream")
        received = b""
        while b"one;" not in received:
            received += await asyncio.wait_for(reader.read(65536), 5)
        assert b"two" not in received
        release.set()
        while not received.endswith(b"0\r\n\r\n"):
            received += await asyncio.wait_for(reader.read(65536), 5)
        assert b"3\r\ntwo\r\n" in received
        writer.close()
