"""Chat and text completions: the edge checks, the job's execution on a scripted runner (streaming, cancel,
failure, redelivery) and the stream chunks, with no model and no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from shared.adapters.memory import MemoryBlobStore
from shared.domain.config import Deployment, ModelSpec, RunnerKind
from shared.domain.errors import InvalidInput
from shared.domain.jobs import Job, JobError, JobStatus
from shared.runtimes import chat
from shared.runtimes.engines.genai import Generation, GenerationOptions
from shared.runtimes.streams import Cadence, StreamChunk, StreamWriter, chunk_key, read_chunks
from shared.schemas.chat import ChatCompletionsRequest, CompletionsRequest
from shared.schemas.usage import Meter
from tests.unit.test_generation import EOS, LIMITS, Pieces, ScriptedGenerator

DEPLOYMENT = Deployment(
    name="tiny", kind=RunnerKind.CHAT, model_name="tiny-model", model=ModelSpec(source="x", files={}), max_tokens=40
)
WORDS = {t: f"w{t} " for t in range(5, 16)}


class Counter:
    context_length = 100
    max_token_chars = 4

    def __init__(self, tokens: int | None) -> None:
        self.tokens = tokens
        self.counted = 0  # texts tokenized

    def count_chat(self, messages: Sequence[dict[str, str]]) -> int | None:
        self.counted += 1
        return self.tokens

    def count_text(self, text: str) -> int:
        self.counted += 1
        return self.tokens or 0


class ScriptedRunner:
    """A generation runner whose prompt has `prompt_tokens` tokens and whose model says `tokens`."""

    def __init__(self, tokens: list[int], prompt_tokens: int = 7, context_length: int = 64, fail_at: int | None = None):
        self.tokens, self.prompt_tokens, self.fail_at = tokens, prompt_tokens, fail_at
        self._context_length = context_length
        self.options: GenerationOptions | None = None
        self.messages: Sequence[dict[str, str]] = ()
        self.words = WORDS  # what each token decodes to

    @property
    def context_length(self) -> int:
        return self._context_length

    def encode_chat(self, messages: Sequence[dict[str, str]], tools: Sequence[dict[str, Any]] = ()) -> np.ndarray:
        self.messages = messages
        return np.zeros(self.prompt_tokens, dtype=np.int32)

    def encode_text(self, text: str) -> np.ndarray:
        return np.zeros(self.prompt_tokens, dtype=np.int32)

    def generate(self, input_ids: np.ndarray, options: GenerationOptions) -> Generation:
        self.options = options
        generator = ScriptedGenerator(self.tokens, options.max_new_tokens, vocab=16, fail_at=self.fail_at)
        return Generation(generator, Pieces(self.words), len(input_ids), options, LIMITS)


def chat_request(**fields: Any) -> ChatCompletionsRequest:
    return ChatCompletionsRequest.model_validate({"messages": [{"role": "user", "content": "hi"}], **fields})


def loc_of(call: Any) -> list[Any]:
    with pytest.raises(InvalidInput) as caught:
        call()
    return list(caught.value.loc)


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"n": 2}, ["body", "n"]),
        ({"tools": [{"type": "function", "function": {"name": "f"}}] * 2}, ["body", "tools"]),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}]},
            ["body", "tools", 0, "function", "parameters"],
        ),
        ({"tool_choice": "required"}, ["body", "tool_choice"]),
        (
            {
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": {"type": "function", "function": {"name": "g"}},
            },
            ["body", "tool_choice"],
        ),
        ({"response_format": {"type": "json_schema"}}, ["body", "response_format", "json_schema"]),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": []}}},
            ["body", "response_format", "json_schema"],
        ),
        ({"max_tokens": 41}, ["body", "max_tokens"]),
        ({"max_completion_tokens": 41}, ["body", "max_completion_tokens"]),
        ({"stop": ["a", ""]}, ["body", "stop"]),
        ({"logit_bias": {"1": 2}}, ["body", "logit_bias"]),
    ],
)
def test_what_the_model_cant_honour_is_rejected_naming_the_parameter(fields: dict[str, Any], loc: list[Any]) -> None:
    assert loc_of(lambda: chat.check(chat_request(**fields), DEPLOYMENT, "error", None)) == loc


def test_what_it_can_honour_is_queued() -> None:
    request = chat_request(n=1, response_format={"type": "text"}, tool_choice="none", stop="x", max_tokens=40)
    payload = chat.check(request, DEPLOYMENT, "error", Counter(99))
    assert payload["messages"] == [{"role": "user", "content": "hi"}] and payload["stop"] == "x"


def test_a_prompt_that_fills_the_context_is_rejected_with_the_numbers() -> None:
    with pytest.raises(InvalidInput) as caught:
        chat.check(chat_request(), DEPLOYMENT, "error", Counter(100))
    assert caught.value.loc == ("body", "messages")
    assert "100 tokens" in caught.value.message and "context is 100" in caught.value.message
    text = CompletionsRequest(prompt="long")
    assert loc_of(lambda: chat.check(text, DEPLOYMENT, "error", Counter(150))) == ["body", "prompt"]
    chat.check(
        chat_request(), DEPLOYMENT, "error", Counter(None)
    )  # template not renderable at the edge: worker decides


def test_a_prompt_too_long_for_the_context_by_its_characters_alone_is_refused_without_tokenizing() -> None:
    # 100 tokens of context, at most 4 characters a token: 400 characters can't fit, whatever the tokenizer says.
    counter = Counter(1)
    two = [{"role": "system", "content": "s" * 200}, {"role": "user", "content": "u" * 200}]
    for request, least in (
        (chat_request(messages=two), "at least 100 tokens (400 characters)"),
        (CompletionsRequest(prompt="p" * 8_000_000), "at least 2000000 tokens (8000000 characters)"),
    ):
        with pytest.raises(InvalidInput) as caught:
            chat.check(request, DEPLOYMENT, "error", counter)
        assert least in caught.value.message
    assert counter.counted == 0  # never tokenized
    chat.check(chat_request(messages=[{"role": "user", "content": "u" * 396}]), DEPLOYMENT, "error", counter)
    assert counter.counted == 1  # 396 characters may fit: the tokenizer decides


def test_extra_parameters_follow_the_header() -> None:
    request = chat_request(top_k=5, mystery=1)
    assert "mystery" not in chat.check(request, DEPLOYMENT, "drop", None)
    assert loc_of(lambda: chat.check(request, DEPLOYMENT, "pass-through", None)) == ["body", "mystery"]
    assert chat.check(chat_request(top_k=5), DEPLOYMENT, "pass-through", None)["top_k"] == 5
    assert loc_of(lambda: chat.check(chat_request(top_k=0), DEPLOYMENT, "pass-through", None)) == ["body", "top_k"]


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_a_non_finite_repetition_penalty_is_refused_at_the_edge(value: float) -> None:
    # Queued, it would reach the worker as null (pydantic writes non-finite floats so) and fail there instead.
    request = chat_request(repetition_penalty=value)
    assert loc_of(lambda: chat.check(request, DEPLOYMENT, "pass-through", None)) == ["body", "repetition_penalty"]


def test_text_completion_takes_one_non_empty_prompt() -> None:
    assert loc_of(lambda: chat.check(CompletionsRequest(prompt=["a", "b"]), DEPLOYMENT, "error", None)) == [
        "body",
        "prompt",
    ]
    assert loc_of(lambda: chat.check(CompletionsRequest(prompt=""), DEPLOYMENT, "error", None)) == ["body", "prompt"]


def job(attempts: int = 1) -> Job:
    return Job.new("job_1", "acme", "tiny").to(JobStatus.RUNNING, attempts=attempts)


@dataclass
class Output:
    """The task's output with its typed result as the JSON the job keeps."""

    status: JobStatus
    result: dict[str, Any] | None
    usage: dict[Meter, int]
    error: JobError | None


def execute(payload: dict[str, Any], runner: ScriptedRunner, blobs: MemoryBlobStore | None = None, **kw: Any) -> Output:
    stopped = kw.pop("stopped", lambda: False)
    out = chat.execute(kw.pop("job", job()), payload, DEPLOYMENT, runner, blobs or MemoryBlobStore(), stopped)
    result = out.result.model_dump() if out.result is not None else None
    return Output(out.status, result, out.usage, out.error)


def test_a_chat_job_returns_a_chat_completion_and_bills_both_meters() -> None:
    runner = ScriptedRunner([5, 6, EOS])
    payload = {"messages": [{"role": "developer", "content": [{"type": "text", "text": "be brief"}]}]}
    out = execute(payload, runner)
    assert out.status is JobStatus.SUCCEEDED
    assert runner.messages == [{"role": "system", "content": "be brief"}]
    assert out.result["object"] == "chat.completion" and out.result["model"] == "tiny-model"
    assert out.result["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": "w5 w6 "}, "finish_reason": "stop", "logprobs": None}
    ]
    assert out.result["usage"] == {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}
    assert out.usage == {Meter.INPUT_TOKENS: 7, Meter.OUTPUT_TOKENS: 2}


def test_a_text_job_honours_max_tokens_and_the_context() -> None:
    out = execute({"prompt": "go", "max_tokens": 3}, ScriptedRunner([5] * 20))
    assert out.result["object"] == "text_completion"
    assert out.result["choices"][0] | {"text": None} == {
        "index": 0,
        "text": None,
        "finish_reason": "length",
        "logprobs": None,
    }
    assert out.result["usage"]["completion_tokens"] == 3
    runner = ScriptedRunner([5] * 40, prompt_tokens=60)
    assert execute({"prompt": "go"}, runner).usage[Meter.OUTPUT_TOKENS] == 4  # the context had room for 4


def test_the_worker_rechecks_the_prompt_length_with_the_real_tokenizer() -> None:
    with pytest.raises(InvalidInput) as caught:
        execute({"messages": [{"role": "user", "content": "hi"}]}, ScriptedRunner([5], prompt_tokens=64))
    assert caught.value.loc == ("body", "messages")


def test_sampling_parameters_reach_the_runner() -> None:
    runner = ScriptedRunner([EOS])
    payload = {"prompt": "go", "temperature": 0, "seed": 3, "stop": "x", "presence_penalty": 1, "top_k": 4}
    execute(payload, runner)
    assert runner.options == GenerationOptions(
        max_new_tokens=40, temperature=0, seed=3, stop=("x",), presence_penalty=1.0, top_k=4
    )


def test_a_stream_writes_chunks_that_add_up_to_the_result() -> None:
    blobs = MemoryBlobStore()
    out = execute({"prompt": "go", "stream": True, "max_tokens": 35}, ScriptedRunner([5, 6, 7] * 20), blobs)
    chunks = read_chunks(blobs, "job_1", 0)
    assert len(chunks) >= 2  # coalesced: at most 16 tokens a chunk
    assert "".join(c.text for c in chunks) == out.result["choices"][0]["text"]
    assert chunks[-1].completion_tokens == out.usage[Meter.OUTPUT_TOKENS] == 35


def test_a_cancelled_stream_stops_bills_what_was_generated_and_drops_its_chunks() -> None:
    blobs = MemoryBlobStore()
    written: list[list[str]] = []

    def stopped() -> bool:  # checked after each chunk: the client left once the first one was written
        written.append(blobs.list_keys("", 100))
        return True

    out = execute({"prompt": "go", "stream": True}, ScriptedRunner([5] * 40), blobs, stopped=stopped)
    assert written == [["streams/job_1/000000"]]
    assert out.status is JobStatus.CANCELLED and out.result is None
    assert out.usage == {Meter.INPUT_TOKENS: 7, Meter.OUTPUT_TOKENS: 1}  # the first token goes out at once
    assert blobs.list_keys("", 100) == []


def test_a_generation_failing_mid_way_fails_the_job_billing_the_tokens_generated() -> None:
    out = execute({"prompt": "go"}, ScriptedRunner([5] * 10, fail_at=4))
    assert out.status is JobStatus.FAILED and out.error is not None and out.error.code == "ModelError"
    assert out.usage == {Meter.INPUT_TOKENS: 7, Meter.OUTPUT_TOKENS: 4}


def test_a_redelivered_stream_that_reached_its_client_fails_billing_what_the_client_got() -> None:
    blobs = MemoryBlobStore()
    blobs.put(chunk_key("job_1", 0), StreamChunk("w5 ", 7, 16).dumps())
    runner = ScriptedRunner([5] * 10)
    out = execute({"prompt": "go", "stream": True}, runner, blobs, job=job(attempts=2))
    assert out.status is JobStatus.FAILED and out.error is not None and out.error.code == "StreamInterrupted"
    assert out.usage == {Meter.INPUT_TOKENS: 7, Meter.OUTPUT_TOKENS: 16} and runner.options is None
    fresh = execute({"prompt": "go", "stream": True}, ScriptedRunner([5, EOS]), MemoryBlobStore(), job=job(attempts=2))
    assert fresh.status is JobStatus.SUCCEEDED  # nothing reached a client: it simply runs


def test_stream_chunks_open_with_the_role_and_close_with_the_reason_then_usage() -> None:
    done = Job.new("job_1", "acme", "tiny").to(JobStatus.RUNNING)
    result = execute({"messages": [{"role": "user", "content": "hi"}]}, ScriptedRunner([5, EOS])).result
    done = done.to(JobStatus.SUCCEEDED, result=result)
    renderer = chat.ChunkRenderer.of(
        chat_request(stream=True, stream_options={"include_usage": True}), done, DEPLOYMENT
    )
    (opening,) = renderer.opening()
    assert opening["object"] == "chat.completion.chunk" and opening["choices"][0]["delta"]["role"] == "assistant"
    assert renderer.content("w5 ")["choices"][0]["delta"] == {"content": "w5 "}
    final, usage = renderer.closing(done)
    assert final["choices"][0]["finish_reason"] == "stop" and final["usage"] is None
    assert usage["choices"] == [] and usage["usage"] == result["usage"]
    text = chat.ChunkRenderer.of(CompletionsRequest(prompt="x", stream=True), done, DEPLOYMENT)
    assert text.opening() == [] and text.content("a")["choices"][0]["text"] == "a"
    assert len(text.closing(done)) == 1  # no usage chunk unless asked
    failed = Job.new("j", "acme", "tiny").to(JobStatus.FAILED, error=JobError(code="ModelError", message="m"))
    assert renderer.closing(failed) == [{"error": {"code": "ModelError", "message": "m"}}]


def test_the_cadence_checks_at_the_first_token_then_every_64_tokens_or_50_ms_and_flushes_every_50_ms() -> None:
    now = [0.0]
    cadence = Cadence(clock=lambda: now[0])
    assert cadence.tick() and cadence.flush  # the first token goes out at once
    assert [cadence.tick() for _ in range(64)] == [False] * 63 + [True]
    assert not cadence.flush  # checked after 64 tokens, but a chunk is not due before 50 ms
    now[0] += 0.06
    assert cadence.tick() and cadence.flush
    assert [cadence.tick() for _ in range(63)] == [False] * 63
    now[0] += 0.06  # 50 ms after the last chunk: checked and written, whatever the token count
    assert cadence.tick() and cadence.flush


def test_the_first_chunk_waits_for_the_first_token_with_text() -> None:
    now = [0.0]
    cadence = Cadence(clock=lambda: now[0])
    assert not cadence.tick(text=False)  # a piece the detokenizer holds back: nothing to show yet
    assert cadence.tick(text=True) and cadence.flush


def test_a_stream_whose_first_token_has_no_text_sends_the_second_at_once() -> None:
    blobs = MemoryBlobStore()
    runner = ScriptedRunner([12, 5, 6, 7] * 10)  # token 12 decodes to nothing
    runner.words = {**WORDS, 12: ""}
    execute({"prompt": "go", "stream": True, "max_tokens": 40}, runner, blobs)
    assert read_chunks(blobs, "job_1", 0)[0] == StreamChunk("w5 ", 7, 2)


def test_a_fast_stream_writes_a_chunk_per_50_ms_not_per_64_tokens() -> None:
    # onnxruntime-genai holds the interpreter lock while it generates: every chunk written and relayed takes its
    # time from the generation. 200 scripted tokens take far less than 50 ms: the first token, then the rest (a
    # chunk per 64 tokens wrote five).
    blobs = MemoryBlobStore()
    runner = ScriptedRunner([5, 6, 7] * 100, context_length=300)
    long = DEPLOYMENT.model_copy(update={"max_tokens": 200})
    out = chat.execute(job(), {"prompt": "go", "stream": True, "max_tokens": 200}, long, runner, blobs, lambda: False)
    chunks = read_chunks(blobs, "job_1", 0)
    assert 2 <= len(chunks) <= 3  # 3 only if the machine stalled 50 ms meanwhile
    assert chunks[0].completion_tokens == 1
    assert out.result is not None and "".join(c.text for c in chunks) == out.result.model_dump()["choices"][0]["text"]
    assert chunks[-1].completion_tokens == out.usage[Meter.OUTPUT_TOKENS] == 200


def test_a_stream_writer_numbers_chunks_and_skips_empty_flushes() -> None:
    blobs = MemoryBlobStore()
    writer = StreamWriter(blobs, "j")
    writer.flush(1, 0)
    writer.add("a")
    writer.add("")
    writer.flush(1, 2)
    writer.add("b")
    writer.flush(1, 3)
    assert blobs.list_keys("", 100) == ["streams/j/000000", "streams/j/000001"]
    assert read_chunks(blobs, "j", 1) == [StreamChunk("b", 1, 3)]
    writer.discard()
    assert blobs.list_keys("", 100) == []


def test_the_estimate_counts_tool_calls_sent_back() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"city": "' + "x" * 500 + '"}'}}
    bare = [{"role": "assistant", "content": "ok"}]
    with_call = [{"role": "assistant", "content": "ok", "tool_calls": [call]}]
    assert chat.estimate(DEPLOYMENT, {"messages": with_call}) > chat.estimate(DEPLOYMENT, {"messages": bare}) + 500
