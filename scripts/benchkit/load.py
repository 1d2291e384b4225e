"""The HTTP load generator: `clients` concurrent keep-alive connections in one thread, each sending its next request
as soon as the previous one answered, until the bodies run out.

It shares the machine with the server it measures, so it is built to cost little: requests are serialised before
the clock starts, responses are parsed by httptools (the C parser uvicorn uses) on raw asyncio connections, under
uvloop where installed, and only the usage figure is read from a response body. That is about a tenth of a
millisecond of CPU a request, where an httpx client took 1.3–1.6 ms: CPU the servers would otherwise lose to the
instrument."""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httptools

from benchkit.engines import Run


def grouped(bodies: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """Embeddings bodies k texts to a request, in order: each group's first body with the group's inputs as a list.
    Whole groups only, so every request carries k texts."""
    return [{**bodies[i], "input": [b["input"] for b in bodies[i : i + k]]} for i in range(0, len(bodies) - k + 1, k)]


def load(
    url: str,
    path: str,
    bodies: list[dict[str, Any]],
    clients: int,
    headers: dict[str, str] | None = None,
    stream: bool = False,
    usage: str = "prompt_tokens",
    timeout: float = 120,
) -> Run:
    """Send every body once; count each non-200 or transport failure as an error. `usage` names the usage field
    summed into `Run.tokens` (`prompt_tokens` for embeddings, `completion_tokens` for generations)."""
    split = urlsplit(url)
    host, port = split.hostname or "127.0.0.1", split.port or 80
    head = f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    requests = []
    for body in bodies:
        data = json.dumps(body).encode()
        requests.append(f"{head}Content-Length: {len(data)}\r\n\r\n".encode() + data)
    main = _load(host, port, requests, clients, stream, usage, timeout)
    try:
        import uvloop
    except ImportError:  # no uvloop build (Windows): the standard loop
        return asyncio.run(main)
    return uvloop.run(main)


async def _load(
    host: str, port: int, requests: list[bytes], clients: int, stream: bool, usage: str, timeout: float
) -> Run:
    run = Run(len(requests), 0.0)
    pending: Iterator[bytes] = iter(requests)  # shared by the clients: asyncio never interleaves a next()
    pattern = re.compile(rb'"' + re.escape(usage.encode()) + rb'"\s*:\s*(\d+)')

    async def one_client() -> None:
        connection: _Connection | None = None
        for request in pending:
            t0 = time.perf_counter()
            try:
                if connection is None or connection.closed:
                    connection = await _connect(host, port)
                events = _Events(usage, t0) if stream else None
                status, body = await asyncio.wait_for(connection.send(request, events), timeout)
                if status != 200:
                    raise _Failed(f"{status} {body[:200].decode(errors='replace')}")
                tokens = events.tokens if events else _usage(pattern, body)
            except (OSError, TimeoutError, _Failed, ValueError) as exc:
                run.errors += 1
                run.first_error = run.first_error or f"{type(exc).__name__}: {exc}"
                if connection is not None:
                    connection.close()  # a half-read response must not become the next request's answer
                continue
            run.latencies.append(time.perf_counter() - t0)
            run.tokens += tokens
            if events is not None:
                run.firsts.append(events.first)
        if connection is not None:
            connection.close()

    start = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(clients)))
    run.seconds = time.perf_counter() - start
    return run


class _Failed(Exception):
    pass


def _usage(pattern: re.Pattern[bytes], body: bytes) -> int:
    """The usage figure of a JSON response: the last match, since a response ends with its usage."""
    found = pattern.findall(body)
    return int(found[-1]) if found else 0


class _Events:
    """An SSE stream's lines as they arrive: when the first content came (seconds after `t0`), and the usage the
    final chunk reports. A chunk carrying an error fails the request."""

    def __init__(self, usage: str, t0: float) -> None:
        self.usage = usage
        self.t0 = t0
        self.first = float("nan")
        self.tokens = 0
        self._partial = b""

    def feed(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise _Failed(f"stream error: {chunk['error']}")
            if math.isnan(self.first) and any(c.get("delta", {}).get("content") for c in chunk.get("choices", [])):
                self.first = time.perf_counter() - self.t0
            if chunk.get("usage"):
                self.tokens = int(chunk["usage"].get(self.usage, 0))


async def _connect(host: str, port: int) -> _Connection:
    _, connection = await asyncio.get_running_loop().create_connection(_Connection, host, port)
    return connection


class _Connection(asyncio.Protocol):
    """One keep-alive connection: `send` writes a request and resolves with the status and body of its response."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self._on_body: Callable[[bytes], None] | None = None
        self._status = 0
        self._body = bytearray()

    def send(self, request: bytes, events: _Events | None) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None and self._waiter is None
        self._waiter = asyncio.get_running_loop().create_future()
        self._on_body = events.feed if events else None
        self._body = bytearray()
        self.transport.write(request)
        return self._waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            # a callback's own failure (a stream's error chunk, a bad JSON line) arrives wrapped by the parser
            cause = exc.__context__
            self._fail(cause if isinstance(cause, _Failed | ValueError) else ValueError(f"bad response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionError(f"connection closed: {exc}" if exc else "connection closed by the server"))

    def _fail(self, exc: Exception) -> None:
        self.close()
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    # httptools callbacks
    def on_headers_complete(self) -> None:
        self._status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        if self._on_body is not None and self._status == 200:
            self._on_body(body)
        else:
            self._body += body

    def on_message_complete(self) -> None:
        if not self.parser.should_keep_alive():
            self.closed = True
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result((self._status, bytes(self._body)))
