"""The gateway's connections to the services: httpx (httpx2) over plain asyncio transports.

httpcore, under httpx, reaches the network through a pluggable *network backend*; its default goes
through anyio, which wraps every read and write in a cancel scope (`fail_after`) and answers "has the
service closed this idle connection?" with a `select()` on the socket through anyio's typed attributes.
Profiled in the gateway (docs/performance.md, the 12-07 box), that layer was ~16 % of the gateway's CPU
for a proxied request. This backend is asyncio's own protocol and transport: a read waits on one
future with one timer, a write is `transport.write`, and the idle check is a flag the event loop
already set. Everything above it (pooling, HTTP/1.1 parsing, timeouts' meaning, errors) stays httpx's.

Only plain `http://` service addresses use it; an `https://` one keeps httpx's default backend, which
does TLS.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import deque
from collections.abc import Iterable
from typing import Any, cast

import httpcore2
import httpx2 as httpx
from httpcore2 import (
    SOCKET_OPTION,
    AsyncNetworkBackend,
    AsyncNetworkStream,
    ConnectError,
    ConnectTimeout,
    ReadError,
    ReadTimeout,
    WriteError,
    WriteTimeout,
)

# A service answering faster than the gateway's client reads (a large export) is paused past this many
# buffered bytes and resumed below half of it, so the gateway never holds more of one answer than this.
HIGH_WATER = 256 * 1024
LOW_WATER = HIGH_WATER // 2


class _Connection(asyncio.Protocol):
    """What the event loop knows of one connection: bytes received and not yet read, end of stream,
    and whether writes must wait."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.eof = False
        self.error: Exception | None = None
        self.reading_paused = False
        self.waiter: asyncio.Future[None] | None = None  # a read waiting for bytes
        self.writable: asyncio.Future[None] | None = None  # a write waiting for the buffer to drain

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered > HIGH_WATER and not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # close our side too: HTTP/1.1 has nothing to send after the service closed

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self._wake()
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)

    def pause_writing(self) -> None:
        self.writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)
        self.writable = None

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def take(self, max_bytes: int) -> bytes:
        chunk = self.chunks.popleft()
        if len(chunk) > max_bytes:
            self.chunks.appendleft(chunk[max_bytes:])
            chunk = chunk[:max_bytes]
        self.buffered -= len(chunk)
        if self.reading_paused and self.buffered < LOW_WATER and self.transport is not None:
            self.reading_paused = False
            self.transport.resume_reading()
        return chunk


async def _within(future: asyncio.Future[None], seconds: float | None, expired: type[Exception]) -> None:
    """Wait for `future`, raising `expired` after `seconds` (one timer, no task cancellation)."""
    if seconds is None:
        await future
        return
    timer = asyncio.get_running_loop().call_later(seconds, _expire, future, expired)
    try:
        await future
    finally:
        timer.cancel()


def _expire(future: asyncio.Future[None], expired: type[Exception]) -> None:
    if not future.done():
        future.set_exception(expired("timed out"))


class AsyncioStream(AsyncNetworkStream):
    def __init__(self, transport: asyncio.Transport, connection: _Connection) -> None:
        self._transport = transport
        self._connection = connection

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109 - httpcore's
        connection = self._connection
        if not connection.chunks and not connection.eof:
            connection.waiter = asyncio.get_running_loop().create_future()
            try:
                await _within(connection.waiter, timeout, ReadTimeout)
            finally:
                connection.waiter = None
        if connection.chunks:
            return connection.take(max_bytes)
        if connection.error is not None:
            raise ReadError(str(connection.error) or type(connection.error).__name__)
        return b""  # the service closed the connection

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109 - httpcore's
        if not buffer:
            return
        if self._transport.is_closing():
            raise WriteError("the connection is closed")
        self._transport.write(buffer)
        writable = self._connection.writable
        if writable is not None:
            await _within(writable, timeout, WriteTimeout)
        if self._connection.error is not None:
            raise WriteError(str(self._connection.error))

    async def aclose(self) -> None:
        self._transport.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
    ) -> AsyncNetworkStream:
        raise ConnectError("TLS to a service goes through httpx's default backend (an https:// address)")

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # Asked of an idle pooled connection: anything received (or the end) means the service
            # closed it or broke the protocol, and the pool must not reuse it.
            return bool(self._connection.chunks) or self._connection.eof
        if info == "socket":
            return self._transport.get_extra_info("socket")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        return None


class AsyncioBackend(AsyncNetworkBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[SOCKET_OPTION] | None = None,
    ) -> AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport, connection = await loop.create_connection(
                    _Connection, host, port, local_addr=(local_address, 0) if local_address else None
                )
        except TimeoutError as exc:
            raise ConnectTimeout(f"connecting to {host}:{port} timed out") from exc
        except OSError as exc:
            raise ConnectError(str(exc)) from exc
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for option in socket_options or ():
                sock.setsockopt(*option)
        return AsyncioStream(cast(asyncio.Transport, transport), connection)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[SOCKET_OPTION] | None = None,
    ) -> AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport, connection = await loop.create_unix_connection(_Connection, path)
        except TimeoutError as exc:
            raise ConnectTimeout(f"connecting to {path} timed out") from exc
        except OSError as exc:
            raise ConnectError(str(exc)) from exc
        return AsyncioStream(cast(asyncio.Transport, transport), connection)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class _Transport(httpx.AsyncHTTPTransport):
    def __init__(self, limits: httpx.Limits) -> None:
        super().__init__(limits=limits)
        # httpx's transport builds its httpcore pool without a way to name the backend; the pool it
        # built is replaced before first use by the same pool on this backend (versions pinned).
        self._pool = httpcore2.AsyncConnectionPool(
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=AsyncioBackend(),
        )


def service_client(base_url: str, timeout: httpx.Timeout, limits: httpx.Limits) -> httpx.AsyncClient:
    """The pooled client the gateway talks to one service with. (With a transport of its own, httpx
    no longer routes it through an `HTTP_PROXY` of the environment: calls inside the deployment go
    straight to the service.)"""
    if httpx.URL(base_url).scheme != "http":
        return httpx.AsyncClient(base_url=base_url, timeout=timeout, limits=limits)
    return httpx.AsyncClient(base_url=base_url, timeout=timeout, transport=_Transport(limits))
