"""Token streams between a worker and the HTTP function relaying them, through the BlobStore port: chunk i of a
job is the blob `streams/{job_id}/{i:06d}`, written in order before the job reaches its terminal state.

Chunks are deleted by whoever is last to need them: the HTTP side after relaying them, the worker when the
stream was cancelled. Chunks of a relay that died with its HTTP instance remain: on Azure, a lifecycle rule on
the `streams/` prefix (delete after a day) sweeps them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from shared.domain.errors import NotFound
from shared.domain.ports import BlobStore

# A generation checks whether it was stopped (and screens its text so far) at its first text, then every
# CHECK_TOKENS tokens or FLUSH_INTERVAL_S, whichever comes first; it writes a chunk at its first text (time to
# first token), then at most once every FLUSH_INTERVAL_S. A model on CPU makes a few tokens in 50 ms. A fast one
# makes hundreds: a chunk per 64 of them cost more than the tokens, because onnxruntime-genai holds the interpreter
# lock while it generates, so every chunk written and relayed took its time from the generation itself.
CHECK_TOKENS = 64
FLUSH_INTERVAL_S = 0.05


def chunk_key(job_id: str, index: int) -> str:
    return f"streams/{job_id}/{index:06d}"


@dataclass(frozen=True)
class StreamChunk:
    text: str
    prompt_tokens: int
    completion_tokens: int  # generated so far, this chunk's tokens included

    def dumps(self) -> bytes:
        return json.dumps({"text": self.text, "p": self.prompt_tokens, "c": self.completion_tokens}).encode("utf-8")

    @classmethod
    def loads(cls, data: bytes) -> StreamChunk:
        raw = json.loads(data)
        return cls(text=raw["text"], prompt_tokens=raw["p"], completion_tokens=raw["c"])


class Cadence:
    """Per token, `tick(text)` says when to check again: at the first token with text, then every `tokens` tokens
    or `interval_s` seconds after the last chunk. After a check, `flush` says whether a chunk is due too: at the
    first, then once `interval_s` has passed since the last one (a check on the token count alone writes nothing).
    A first token without text (a piece the detokenizer holds back) does not count as the first chunk's."""

    def __init__(
        self,
        tokens: int = CHECK_TOKENS,
        interval_s: float = FLUSH_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tokens, self._interval_s, self._clock = tokens, interval_s, clock
        self._count, self._flushed = 0, clock()
        self._first = True
        self.flush = False

    def tick(self, text: bool = True) -> bool:
        self._count += 1
        now = self._clock()
        due = (self._first and text) or now - self._flushed >= self._interval_s
        if not due and self._count < self._tokens:
            return False
        self._count, self.flush = 0, due
        if due:
            self._flushed, self._first = now, False
        return True


class StreamWriter:
    """The worker side: buffers text pieces and writes them as the next chunk on `flush`."""

    def __init__(self, blobs: BlobStore, job_id: str, written: Callable[[], None] = lambda: None) -> None:
        self._blobs, self._job_id, self._written = blobs, job_id, written
        self._pending: list[str] = []
        self._unflushed_tokens = 0
        self.written = 0

    def add(self, text: str) -> None:
        self._pending.append(text)
        self._unflushed_tokens += 1

    def flush(self, prompt_tokens: int, completion_tokens: int) -> None:
        if not self._unflushed_tokens:
            return
        chunk = StreamChunk("".join(self._pending), prompt_tokens, completion_tokens)
        self._blobs.put(chunk_key(self._job_id, self.written), chunk.dumps())
        self.written += 1
        self._pending.clear()
        self._unflushed_tokens = 0
        self._written()

    def drop_pending(self) -> None:
        """Forget the text added since the last flush: it is never written."""
        self._pending.clear()
        self._unflushed_tokens = 0

    def discard(self) -> None:
        """Nobody will relay the rest (the stream was cancelled): delete what was written."""
        delete_chunks(self._blobs, self._job_id, 0, self.written)


def read_chunks(blobs: BlobStore, job_id: str, start: int) -> list[StreamChunk]:
    """Chunks `start`, `start + 1`, ... up to the first one not written yet."""
    chunks: list[StreamChunk] = []
    while True:
        try:
            chunks.append(StreamChunk.loads(blobs.get(chunk_key(job_id, start + len(chunks)))))
        except NotFound:
            return chunks


def delete_chunks(blobs: BlobStore, job_id: str, start: int, stop: int) -> None:
    for index in range(start, stop):
        blobs.delete(chunk_key(job_id, index))
