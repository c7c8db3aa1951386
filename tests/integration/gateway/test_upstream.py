"""The gateway's client to the services (gateway/upstream.py: httpx over asyncio's own transports),
against real HTTP servers on loopback that behave well and badly: what the proxy turns into 502, 503
and 504 must still come out as the httpx errors it maps, and pooled connections must survive a service
that closes them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx2 as httpx
import pytest

from gateway.upstream import HIGH_WATER, AsyncioStream, service_client
from laoke.testing.infra import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
LIMITS = httpx.Limits(max_connections=4, max_keepalive_connections=4)


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[tuple[str, list[int]]]:
    """A real TCP server on loopback; yields its base URL and a list that counts its connections."""
    connections: list[int] = []

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", connections
    finally:
        server.close()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return await reader.readexactly(length) if length else b""


def answer(body: bytes, *extra: bytes) -> bytes:
    head = [b"HTTP/1.1 200 OK", b"Content-Type: text/plain", b"Content-Length: %d" % len(body), *extra]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def client(url: str, read_timeout: float = 5.0) -> httpx.AsyncClient:
    return service_client(url, httpx.Timeout(read_timeout, connect=2.0), LIMITS)


async def test_answers_come_back_whole_over_one_kept_connection() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            body = await read_request(reader)
            writer.write(answer(b"got " + body))
            await writer.drain()

    async with serving(echo) as (url, connections), client(url) as upstream:
        for n in range(20):
            response = await upstream.post("/orders", content=b"order %d" % n)
            assert (response.status_code, response.content) == (200, b"got order %d" % n)
    assert len(connections) == 1  # kept alive and reused, not one connection per request


async def test_a_connection_the_service_closed_while_idle_is_not_reused() -> None:
    """A service restarting (or its keep-alive timeout) closes idle connections: the next request
    must open a new one instead of failing on the dead one."""

    async def once_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer(b"ok"))
        await writer.drain()
        # closed by `serving` without a `Connection: close`, as a server's idle timeout does

    async with serving(once_then_close) as (url, connections), client(url) as upstream:
        for _ in range(3):
            assert (await upstream.get("/x")).content == b"ok"
            await asyncio.sleep(0.05)  # the close reaches the gateway while the connection is idle
    assert len(connections) == 3


async def test_a_service_that_does_not_answer_in_time_is_a_read_timeout() -> None:
    """The proxy answers 504 for it (gateway/proxy.py)."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()  # until the gateway gives up and closes

    async with serving(silent) as (url, _), client(url, read_timeout=0.2) as upstream:
        with pytest.raises(httpx.ReadTimeout):
            await upstream.get("/slow")


async def test_a_service_that_is_down_is_a_connect_error() -> None:
    """The proxy answers 503 for it."""
    async with client(f"http://127.0.0.1:{free_port()}") as upstream:
        with pytest.raises(httpx.ConnectError):
            await upstream.get("/anything")


async def test_a_service_that_breaks_off_mid_answer_is_an_error_not_a_short_body() -> None:
    """The proxy answers 502 for it: a truncated answer must never pass as a whole one."""

    async def truncated(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 100)
        await writer.drain()

    async with serving(truncated) as (url, _), client(url) as upstream:
        with pytest.raises(httpx.RemoteProtocolError):
            await upstream.get("/export")


async def test_a_large_answer_read_slowly_arrives_intact_and_is_not_buffered_whole() -> None:
    """A streamed export to a slow client: the service is paused rather than the gateway holding it."""
    body = bytes(range(256)) * (16 * 1024)  # 4 MiB
    written = asyncio.Event()

    async def large(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer(body))
        await writer.drain()
        written.set()

    async with serving(large) as (url, _), client(url) as upstream:
        received = bytearray()
        async with upstream.stream("GET", "/export") as response:
            stream = response.extensions["network_stream"]
            assert isinstance(stream, AsyncioStream)
            async for chunk in response.aiter_raw():
                received += chunk
                assert stream._connection.buffered <= HIGH_WATER + 256 * 1024  # a socket read past the mark
                if len(received) < 1024 * 1024:
                    await asyncio.sleep(0.01)
        assert bytes(received) == body
        assert written.is_set()


async def test_a_large_request_body_to_a_slow_reader_arrives_intact() -> None:
    body = b"0123456789abcdef" * (256 * 1024)  # 4 MiB

    async def slow_reader(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        received = bytearray()
        while len(received) < length:
            received += await reader.read(64 * 1024)
            await asyncio.sleep(0.001)
        writer.write(answer(b"%d %d" % (len(received), hash(bytes(received)) & 0xFFFF)))
        await writer.drain()

    async with serving(slow_reader) as (url, _), client(url) as upstream:
        response = await upstream.post("/imports", content=body)
        assert response.content == b"%d %d" % (len(body), hash(body) & 0xFFFF)
