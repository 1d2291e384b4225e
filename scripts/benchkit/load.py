"""The HTTP load generator: `clients` concurrent keep-alive connections (asyncio + httpx, one thread), each sending
its next request as soon as the previous one answered, until the bodies run out."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx

from benchkit.engines import Run


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
    return asyncio.run(_load(url, path, bodies, clients, headers or {}, stream, usage, timeout))


async def _load(
    url: str,
    path: str,
    bodies: list[dict[str, Any]],
    clients: int,
    headers: dict[str, str],
    stream: bool,
    usage: str,
    timeout: float,
) -> Run:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    run = Run(len(bodies), 0.0)
    pending: Iterator[dict[str, Any]] = iter(bodies)  # shared by the clients: asyncio never interleaves a next()
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout, limits=limits) as client:

        async def one_client() -> None:
            for body in pending:
                t0 = time.perf_counter()
                try:
                    if stream:
                        first, tokens = await _streamed(client, path, body, usage, t0)
                        run.firsts.append(first)
                    else:
                        response = await client.post(path, json=body)
                        if response.status_code != 200:
                            raise _Failed(f"{response.status_code} {response.text[:200]}")
                        tokens = int(response.json().get("usage", {}).get(usage, 0))
                except (httpx.HTTPError, _Failed, ValueError) as exc:
                    run.errors += 1
                    run.first_error = run.first_error or f"{type(exc).__name__}: {exc}"
                    continue
                run.latencies.append(time.perf_counter() - t0)
                run.tokens += tokens

        start = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        run.seconds = time.perf_counter() - start
    return run


class _Failed(Exception):
    pass


async def _streamed(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], usage: str, t0: float
) -> tuple[float, int]:
    """Seconds to the first content chunk, and the usage the final chunk reports."""
    first: float | None = None
    tokens = 0
    async with client.stream("POST", path, json=body) as response:
        if response.status_code != 200:
            raise _Failed(f"{response.status_code} {(await response.aread())[:200]!r}")
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[len("data: ") :])
            if "error" in chunk:
                raise _Failed(f"stream error: {chunk['error']}")
            if first is None and any(c.get("delta", {}).get("content") for c in chunk.get("choices", [])):
                first = time.perf_counter() - t0
            if chunk.get("usage"):
                tokens = int(chunk["usage"].get(usage, 0))
    return (float("nan") if first is None else first), tokens
