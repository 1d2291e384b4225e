"""The bench's load generator (`scripts/benchkit/load.py`) against a real socket server whose answers are written
by hand: plain and chunked bodies, a server error, a stream's first chunk and usage, and a connection the server
drops mid-response. Its figures are what every HTTP row of `make bench` reports."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Iterator

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
from benchkit.load import grouped, load  # noqa: E402


def _response(status: int, body: bytes, chunked: bool = False) -> bytes:
    reason = {200: "OK", 500: "Internal Server Error"}[status]
    if not chunked:
        return f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
    head = f"HTTP/1.1 {status} {reason}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    return head + b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in body.split(b"|")) + b"0\r\n\r\n"


def _sse(*chunks: dict) -> bytes:
    """An SSE body whose events arrive as separate HTTP chunks ('|' cuts them), the last one being [DONE]."""
    return b"|".join(f"data: {json.dumps(c)}\n\n".encode() for c in chunks) + b"|data: [DONE]\n\n"


ANSWERS = {
    "ok": _response(200, b'{"data": [{"embedding": [0.1]}], "usage": {"prompt_tokens": 7, "total_tokens": 7}}'),
    "chunked": _response(200, b'{"data": []|, "usage": {"prompt_tokens": 5}}', chunked=True),
    "fail": _response(500, b'{"error": {"code": "boom"}}'),
    "stream": _response(
        200,
        _sse(
            {"choices": [{"delta": {"role": "assistant"}}]},
            {"choices": [{"delta": {"content": "Hi"}}]},
            {"choices": [], "usage": {"completion_tokens": 3}},
        ),
        chunked=True,
    ),
    "stream-error": _response(200, _sse({"error": {"code": "model_error"}}), chunked=True),
}


@pytest.fixture
def server() -> Iterator[str]:
    """Answers each request by the `input` of its JSON body; `drop` gets half a response and a closed socket."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    port: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                kind = json.loads(await reader.readexactly(length))["input"]
                if kind == "drop":
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{")
                    await writer.drain()
                    break
                writer.write(ANSWERS[kind])
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    async def serve() -> asyncio.Server:
        srv = await asyncio.start_server(handle, "127.0.0.1", 0)
        port.append(srv.sockets[0].getsockname()[1])
        started.set()
        return srv

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    srv = asyncio.run_coroutine_threadsafe(serve(), loop).result(5)
    started.wait(5)
    yield f"http://127.0.0.1:{port[0]}"

    async def stop() -> None:
        srv.close()
        await srv.wait_closed()

    asyncio.run_coroutine_threadsafe(stop(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def test_plain_and_chunked_answers_count_their_usage(server: str) -> None:
    bodies = [{"input": "ok"}] * 5 + [{"input": "chunked"}] * 3
    run = load(server, "/embeddings", bodies, clients=3)
    assert (run.errors, run.first_error) == (0, "")
    assert len(run.latencies) == 8 and all(t > 0 for t in run.latencies)
    assert run.tokens == 5 * 7 + 3 * 5
    assert run.count == 8 and run.seconds > 0


def test_a_server_error_is_an_error_with_its_status_and_the_others_still_count(server: str) -> None:
    run = load(server, "/embeddings", [{"input": "ok"}, {"input": "fail"}, {"input": "ok"}], clients=1)
    assert run.errors == 1 and run.first_error.startswith("_Failed: 500"), run.first_error
    assert "boom" in run.first_error
    assert (len(run.latencies), run.tokens) == (2, 14)


def test_a_dropped_connection_is_an_error_and_the_next_request_reconnects(server: str) -> None:
    run = load(server, "/embeddings", [{"input": "drop"}, {"input": "ok"}, {"input": "ok"}], clients=1)
    assert run.errors == 1 and "connection closed" in run.first_error, run.first_error
    assert (len(run.latencies), run.tokens) == (2, 14)


def test_a_stream_reports_its_first_content_chunk_and_final_usage(server: str) -> None:
    run = load(
        server, "/chat/completions", [{"input": "stream"}] * 4, clients=2, stream=True, usage="completion_tokens"
    )
    assert (run.errors, run.first_error) == (0, "")
    assert run.tokens == 4 * 3
    assert len(run.firsts) == 4 and all(0 < f <= t for f, t in zip(run.firsts, run.latencies, strict=True))


def test_an_error_chunk_fails_the_stream(server: str) -> None:
    run = load(server, "/chat/completions", [{"input": "stream-error"}, {"input": "stream"}], clients=1, stream=True)
    assert run.errors == 1 and "model_error" in run.first_error, run.first_error
    assert len(run.latencies) == 1


def test_grouped_sends_the_same_texts_k_to_a_request_in_order_and_whole_groups_only() -> None:
    bodies = [{"input": f"text {i}", "model": "m"} for i in range(7)]
    assert grouped(bodies, 3) == [
        {"input": ["text 0", "text 1", "text 2"], "model": "m"},
        {"input": ["text 3", "text 4", "text 5"], "model": "m"},
    ]
    assert bodies[0] == {"input": "text 0", "model": "m"}  # the one-text bodies are left as they were
