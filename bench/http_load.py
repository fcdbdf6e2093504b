"""A small HTTP/1.1 keep-alive load generator on raw asyncio streams.

httpx costs more CPU per request than the server under test; on a 2-core machine the
client must stay light, so requests are pre-encoded bytes and responses are read by
content-length.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def request_bytes(
    method: str, path: str, key: str | None = None, body: dict[str, Any] | None = None
) -> bytes:
    payload = json.dumps(body).encode() if body is not None else b""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    if key:
        lines.append(f"Authorization: Bearer {key}")
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def call(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


@dataclass
class Result:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def p(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else 0.0

    def line(self, name: str) -> str:
        return (
            f"{name:34} {self.rate:9,.0f} req/s   p50 {self.p50:6.2f} ms   "
            f"p99 {self.p(0.99):7.2f} ms   errors {self.errors}"
        )


async def closed_loop(
    port: int, make: Callable[[int], bytes], connections: int, seconds: float, ok: int = 200
) -> Result:
    """Each connection sends its next request as soon as the last one is answered."""
    latencies: list[float] = []
    errors = 0
    counter = 0
    deadline = time.perf_counter() + seconds

    async def one(conn: Connection) -> None:
        nonlocal errors, counter
        while time.perf_counter() < deadline:
            counter += 1
            started = time.perf_counter()
            status, _ = await conn.call(make(counter))
            latencies.append((time.perf_counter() - started) * 1000)
            errors += status != ok

    conns = [await Connection.open(port) for _ in range(connections)]
    started = time.perf_counter()
    await asyncio.gather(*(one(conn) for conn in conns))
    elapsed = time.perf_counter() - started
    for conn in conns:
        conn.close()
    return Result(len(latencies), errors, elapsed, latencies)


async def open_loop(
    port: int, make: Callable[[int], bytes], rate: float, seconds: float, ok: int = 200,
    connections: int = 64,
) -> Result:  # fmt: skip
    """Requests start on a fixed schedule (``rate`` a second) whatever the answers do;
    latency counts from the scheduled start, so a server that falls behind shows it."""
    total = int(rate * seconds)
    free: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        free.put_nowait(await Connection.open(port))
    latencies: list[float] = []
    errors = 0

    async def one(n: int, scheduled: float) -> None:
        nonlocal errors
        conn = await free.get()
        status, _ = await conn.call(make(n))
        latencies.append((time.perf_counter() - scheduled) * 1000)
        errors += status != ok
        free.put_nowait(conn)

    started = time.perf_counter()
    tasks = []
    for n in range(total):
        scheduled = started + n / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(n, scheduled)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    while not free.empty():
        free.get_nowait().close()
    return Result(total, errors, elapsed, latencies)


async def sequential(port: int, raw: bytes, count: int, ok: int = 200) -> Result:
    """One request at a time: the latency a single caller sees."""
    conn = await Connection.open(port)
    latencies: list[float] = []
    errors = 0
    started = time.perf_counter()
    for _ in range(count):
        t0 = time.perf_counter()
        status, _ = await conn.call(raw)
        latencies.append((time.perf_counter() - t0) * 1000)
        errors += status != ok
    elapsed = time.perf_counter() - started
    conn.close()
    return Result(count, errors, elapsed, latencies)
