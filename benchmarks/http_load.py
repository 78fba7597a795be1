"""A bounded closed-loop HTTP load generator: at each concurrency level, that many clients send one request at a time.

Each client holds one keep-alive HTTP/1.1 connection and sends pre-encoded requests over asyncio streams: a general
HTTP client costs far more CPU per request and, sharing the machine with the server, would be measured instead of it.
A level ends when its request budget or its time budget is spent; every request has a timeout, so a level lasts at
most its time budget plus one timeout, whatever the server does.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import numpy as np

from benchmarks.process_cpu import CpuSeconds, cpu_seconds, spent

T = TypeVar("T")
Protocol = Literal["v1", "v2"]
Input = str | Mapping[str, str]  # one request input: a text, or an object of texts (question answering)


@dataclass(frozen=True)
class Level:
    """What one concurrency level measured."""

    concurrency: int
    seconds: float
    latencies: list[float]  # of the successful requests
    statuses: Counter[str]  # HTTP status, or the name of the error that left none
    cpu: CpuSeconds = field(default_factory=dict)  # CPU seconds by thread group (benchmarks/process_cpu.py)

    def summary(self, inputs_per_request: int) -> dict[str, Any]:
        """Requests, throughput, latency percentiles, errors by status and CPU milliseconds per request."""
        ok = len(self.latencies)
        percentiles = np.percentile(self.latencies, [50, 95, 99]) * 1000 if ok else [float("nan")] * 3
        requests = sum(self.statuses.values())
        return {
            "concurrency": self.concurrency,
            "requests": requests,
            "ok": ok,
            "seconds": self.seconds,
            "requests_per_second": ok / self.seconds,
            "items_per_second": ok * inputs_per_request / self.seconds,
            "p50_ms": float(percentiles[0]),
            "p95_ms": float(percentiles[1]),
            "p99_ms": float(percentiles[2]),
            "errors": {status: count for status, count in sorted(self.statuses.items()) if status != "200"},
            "cpu_ms_per_request": {key: 1000 * seconds / requests for key, seconds in self.cpu.items()} if requests
            else {},
        }


def request_bodies(inputs: Sequence[Input], inputs_per_request: int, protocol: Protocol) -> list[bytes]:
    """Encoded request bodies cycling through `inputs`, `inputs_per_request` each: texts, or objects such as
    {"question", "context"} (in v2, one BYTES tensor per key)."""
    bodies = []
    for start in range(0, len(inputs), inputs_per_request):
        chunk = [inputs[(start + offset) % len(inputs)] for offset in range(inputs_per_request)]
        if protocol == "v1":
            body: dict[str, Any] = {"inputs": chunk}
        else:
            columns = {"text": chunk} if isinstance(chunk[0], str) else {
                key: [value[key] for value in chunk if not isinstance(value, str)] for key in chunk[0]
            }
            body = {"inputs": [{"name": name, "shape": [len(data)], "datatype": "BYTES", "data": data}
                               for name, data in columns.items()]}
        bodies.append(json.dumps(body).encode())
    return bodies


def inference_path(model: str, protocol: Protocol) -> str:
    """The model's inference route in `protocol`."""
    return f"/v1/models/{model}/predict" if protocol == "v1" else f"/v2/models/{model}/infer"


def post_requests(url: str, path: str, bodies: Sequence[bytes], headers: dict[str, str]) -> list[bytes]:
    """Complete HTTP/1.1 POST requests of each body, ready to write to a connection."""
    host = urlsplit(url).netloc
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return [
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"{extra}\r\n".encode("latin-1") + body
        for body in bodies
    ]


def run_load(load: Coroutine[Any, Any, T]) -> T:
    """Run the load generator's coroutine on uvloop when installed (the serve extra has it), whose socket work is in
    C: the generator shares the cores with the server it measures."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(load)
    return uvloop.run(load)


class Connection:
    """One keep-alive HTTP/1.1 connection, opened on first use and again after the server closes it."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def send(self, request: bytes) -> int:
        """Send one request and read its whole response; returns the status."""
        if self._streams is None:
            self._streams = await asyncio.open_connection(self._host, self._port)
        reader, writer = self._streams
        writer.write(request)
        await writer.drain()
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split(" ", 2)[1])
        fields = dict(line.split(":", 1) for line in head[1:] if ":" in line)
        headers = {name.strip().lower(): value.strip().lower() for name, value in fields.items()}
        await reader.readexactly(int(headers["content-length"]))
        if headers.get("connection") == "close":
            self.close()
        return status

    def close(self) -> None:
        """Drop the connection (the next request opens a new one)."""
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


async def run_level(
    url: str, requests: Sequence[bytes], concurrency: int, max_requests: int, seconds: float, timeout_s: float,
    server_pid: int | None = None,
) -> Level:
    """Run `concurrency` clients until `max_requests` are sent or `seconds` have passed; with `server_pid`, the
    level's CPU time includes the server's."""
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    sent = 0
    cpu_before = cpu_seconds(server_pid)
    start = time.perf_counter()
    deadline = start + seconds

    async def client() -> None:
        nonlocal sent
        connection = Connection(url)
        while sent < max_requests and time.perf_counter() < deadline:
            request = requests[sent % len(requests)]
            sent += 1
            began = time.perf_counter()
            try:
                async with asyncio.timeout(timeout_s):
                    status = str(await connection.send(request))
            except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, KeyError,
                    ValueError) as exc:
                status = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
                connection.close()
            statuses[status] += 1
            if status == "200":
                latencies.append(time.perf_counter() - began)
        connection.close()

    await asyncio.gather(*(client() for _ in range(concurrency)))
    cpu = spent(cpu_before, cpu_seconds(server_pid))
    return Level(concurrency, time.perf_counter() - start, latencies, statuses, cpu)


def merged(levels: Sequence[Level]) -> Level:
    """Rounds of one level as one level: their seconds, latencies and statuses added up, and the CPU time of the
    thread groups that every round measured."""
    statuses: Counter[str] = Counter()
    for level in levels:
        statuses.update(level.statuses)
    common = set.intersection(*(set(level.cpu) for level in levels))
    cpu = {key: sum(level.cpu[key] for level in levels) for key in sorted(common)}
    return Level(levels[0].concurrency, sum(level.seconds for level in levels),
                 [latency for level in levels for latency in level.latencies], statuses, cpu)
