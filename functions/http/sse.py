"""Streaming a generation job as Server-Sent Events: queue it, wait for its first chunk, then relay the chunks
the worker writes until the job ends. A client that leaves cancels the job. Works the same on both hosts."""

import json
from collections.abc import AsyncGenerator
from typing import Any

import anyio
from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from functions.http.errors import job_status
from functions.http.jobs import job_headers, job_response, submit
from shared.application.gateway import Gateway, Submitted
from shared.domain.auth import Caller
from shared.domain.errors import TransientError
from shared.domain.jobs import Job, JobStatus
from shared.domain.routing import Route
from shared.runtimes import chat
from shared.runtimes.base import ExtraMode
from shared.runtimes.streams import StreamChunk

Read = tuple[list[StreamChunk], Job]


async def stream_job(
    gw: Gateway,
    who: Caller,
    route: Route,
    body: chat.Request,
    extra: ExtraMode,
    request: Request,
) -> Response:
    deployment = route.deployment
    submitted = await submit(gw, who, route, body, extra, request)
    job = submitted.job
    timeout_s = gw.settings.sync_timeout_s
    if not submitted.created:  # a repeat (Idempotency-Key): the first request relays; this one replays the result
        job = await gw.wait(job, timeout_s)
        if job.status is not JobStatus.SUCCEEDED:
            return job_response(job, job_status(job) if job.status.terminal else 409)
        renderer = chat.ChunkRenderer.of(body, job, deployment)
        return _stream(_replayed(renderer.replay(job)), job)
    first = await gw.next_chunks(who, job, 0, timeout_s)
    if first is None:  # not even started: free the slot instead of holding a silent stream open
        await run_in_threadpool(gw.end_stream, who, job.id, 0, False)
        raise TransientError(f"The job did not start within {timeout_s:g} s; try again.")
    chunks, job = first
    if not chunks and job.status.terminal and job.status is not JobStatus.SUCCEEDED:
        await run_in_threadpool(gw.end_stream, who, job.id, 0, True)
        gw.settle(submitted, job)
        return job_response(job, job_status(job))  # failed before the first token: a plain error status
    renderer = chat.ChunkRenderer.of(body, job, deployment, submitted.prompt_filter)
    return _stream(_events(gw, who, renderer, first, submitted), job)


class _EventStream(StreamingResponse):
    """Closes its event generator however the response ends: a client that leaves while a chunk is being sent
    leaves the generator suspended at `yield`, and its cleanup must not wait for the garbage collector."""

    def __init__(self, events: AsyncGenerator[str, None], headers: dict[str, str]) -> None:
        super().__init__(events, media_type="text/event-stream", headers=headers)
        self._events = events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._events.aclose()


def _stream(events: AsyncGenerator[str, None], job: Job) -> StreamingResponse:
    headers = {**job_headers(job), "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return _EventStream(events, headers)


async def _events(
    gw: Gateway, who: Caller, renderer: chat.ChunkRenderer, first: Read, submitted: Submitted
) -> AsyncGenerator[str, None]:
    chunks, job = first
    relayed, complete = 0, False
    try:
        opening = "".join(_sse(data) for data in renderer.opening())
        while True:
            # The chunks of one read go out as one write: a send per token would cost more than the token.
            events = "".join(_sse(renderer.content(chunk.text)) for chunk in chunks if chunk.text)
            relayed += len(chunks)
            if opening or events:
                yield opening + events
                opening = ""
            if job.status.terminal:  # read after the job ended: nothing more will come
                break
            nxt = await gw.next_chunks(who, job, relayed, gw.settings.sync_timeout_s)
            if nxt is None:
                yield _sse({"error": {"code": "Timeout", "message": "the generation stalled"}})
                break
            chunks, job = nxt
        for data in renderer.closing(job):
            yield _sse(data)
        yield "data: [DONE]\n\n"
        complete = job.status.terminal
    finally:
        # Also when the client left (the response task is cancelled): the job is cancelled, chunks deleted.
        with anyio.CancelScope(shield=True):
            await run_in_threadpool(gw.end_stream, who, job.id, relayed, complete)
        gw.settle(submitted, job)


async def _replayed(events: list[dict[str, Any]]) -> AsyncGenerator[str, None]:
    for data in events:
        yield _sse(data)
    yield "data: [DONE]\n\n"


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, separators=(',', ':'))}\n\n"
