"""An open-loop HTTP/1.1 load generator on raw asyncio streams.

Requests are issued on a fixed schedule whether or not earlier ones have answered, and latency counts
from when a request was *due*, so a stall shows up in the percentiles instead of silently lowering
the rate (coordinated omission). Raw streams rather than an HTTP client library keep the generator's
own cost per request at a few microseconds, so it is never the bottleneck being measured.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

KEEPALIVE_SECONDS = 3.0


@dataclass
class LoadResult:
    latencies_ms: list[float] = field(default_factory=list)
    # Per request, what the client waited beyond the upstream time the gateway reported in
    # `Server-Timing: upstream;dur=…` (only for answers that carry it).
    beyond_upstream_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    elapsed_s: float = 0.0

    @property
    def throughput(self) -> float:
        return len(self.latencies_ms) / self.elapsed_s if self.elapsed_s else 0.0


def build_request(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items() if v]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _upstream_ms(server_timing: bytes | None) -> float | None:
    for metric in (server_timing or b"").split(b","):
        name, _, params = metric.strip().partition(b";")
        if name == b"upstream" and params.startswith(b"dur="):
            return float(params[4:].split(b";")[0])
    return None


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, float | None]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, _, header_block = head.partition(b"\r\n")
    status = int(status_line.split(b" ", 2)[1])
    headers = {}
    for line in header_block.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name:
            headers[name.strip().lower()] = value.strip()
    if b"content-length" in headers:
        await reader.readexactly(int(headers[b"content-length"]))
    elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status, _upstream_ms(headers.get(b"server-timing"))


async def open_loop(
    host: str,
    port: int,
    request_for: Callable[[int], bytes],
    rate_per_second: float,
    seconds: float,
    max_connections: int = 256,
) -> LoadResult:
    result = LoadResult()
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
    open_count = 0
    interval = 1.0 / rate_per_second
    total = int(rate_per_second * seconds)
    gate = asyncio.Semaphore(max_connections)

    async def one(i: int, due: float) -> None:
        nonlocal open_count
        async with gate:
            reader = writer = None
            while idle and reader is None:
                reader, writer, last_used = idle.pop()
                # Servers close keep-alive connections idle for a while (uvicorn: 5 s); a request written
                # to one is lost in flight, so such connections are dropped, as HTTP clients do.
                if time.perf_counter() - last_used > KEEPALIVE_SECONDS:
                    writer.close()
                    reader = writer = None
            if reader is None or writer is None:
                reader, writer = await asyncio.open_connection(host, port)
                open_count += 1
            try:
                writer.write(request_for(i))
                status, upstream_ms = await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                result.errors += 1
                writer.close()
                return
            latency_ms = (time.perf_counter() - due) * 1000
            result.latencies_ms.append(latency_ms)
            if upstream_ms is not None:
                result.beyond_upstream_ms.append(latency_ms - upstream_ms)
            result.statuses[status] += 1
            idle.append((reader, writer, time.perf_counter()))

    start = time.perf_counter()
    tasks = []
    for i in range(total):
        due = start + i * interval
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    result.elapsed_s = time.perf_counter() - start
    for _, writer, _ in idle:
        writer.close()
    return result


@dataclass
class Answer:
    status: int
    latency_ms: float


async def closed_loop(
    host: str, port: int, requests: list[bytes], concurrency: int
) -> tuple[list[Answer], Counter[str], float]:
    """Send `requests` from `concurrency` clients, each with one keep-alive connection, each sending its
    next request when the previous one has answered. The answers (in no particular order), the errors
    by kind, and the seconds it took."""
    answers: list[Answer] = []
    errors: Counter[str] = Counter()
    queue = list(reversed(requests))

    async def client() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while queue:
                request = queue.pop()
                started = time.perf_counter()
                try:
                    writer.write(request)
                    status, _ = await _read_response(reader)
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    errors[type(exc).__name__] += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    continue
                answers.append(Answer(status, (time.perf_counter() - started) * 1000))
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return answers, errors, time.perf_counter() - started
