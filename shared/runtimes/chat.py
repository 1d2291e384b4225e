"""Chat and text completions: request checks (at the edge and again in the worker), the estimate, the job's
execution on a generation runtime (writing stream chunks as it goes), and the OpenAI stream chunks the HTTP side
relays."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from shared.domain.config import Deployment, RunnerKind
from shared.domain.content_safety import FilterResult, TextScreen, prompt_filter_results
from shared.domain.errors import InvalidInput, ModelError
from shared.domain.jobs import Job, JobError, JobStatus
from shared.domain.ports import BlobStore
from shared.runtimes.base import (
    Edge,
    ExtraMode,
    Fetch,
    TaskOutput,
    Work,
    check_unicode,
    extras_allowed,
    parse_payload,
    token_bound,
)
from shared.runtimes.engines.genai import Generation, GenerationOptions, GenerationRunner
from shared.runtimes.streams import Cadence, StreamWriter, read_chunks
from shared.schemas.chat import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionsRequest,
    ChoiceLogprobs,
    CompletionsRequest,
    FinishReason,
    FunctionCall,
    TextChoice,
    TextCompletion,
    TokenLogprob,
    ToolCall,
    ToolDefinition,
    TopLogprob,
    Usage,
)
from shared.schemas.usage import Meter
from shared.settings import Settings

Request = ChatCompletionsRequest | CompletionsRequest
MAX_STOPS = 16
MAX_TOOLS = 128  # OpenAI's bound
# Structured output as one line of JSON (llguidance would allow any whitespace between tokens): fewer tokens, and a
# random-weight or small model can't wander off into whitespace until max_tokens.
COMPACT = {"x-guidance": {"whitespace_flexible": False}}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# Extra parameters the generation runner honours when they are passed through (genai search options).
PASS_THROUGH: dict[str, tuple[Callable[[Any], bool], str]] = {
    "top_k": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "an integer ≥ 1"),
    "repetition_penalty": (lambda v: _is_number(v) and v > 0, "a number > 0"),
}


class PromptTokens(Protocol):
    """Counts prompt tokens at the edge (`shared.runtimes.engines.prompts.PromptCounter`)."""

    context_length: int
    max_token_chars: int  # the longest token's characters: a text of n characters takes ≥ n / this tokens

    def count_chat(self, messages: Sequence[dict[str, str]]) -> int | None: ...
    def count_text(self, text: str) -> int: ...


class Runner(Protocol):
    """What a job needs of `shared.runtimes.engines.genai.GenerationRunner`."""

    @property
    def context_length(self) -> int: ...
    def encode_chat(self, messages: Sequence[dict[str, str]], tools: Sequence[dict[str, Any]] = ()) -> np.ndarray: ...
    def encode_text(self, text: str) -> np.ndarray: ...
    def generate(self, input_ids: np.ndarray, options: GenerationOptions) -> Generation: ...


def check(request: Request, deployment: Deployment, extra: ExtraMode, counter: PromptTokens | None) -> dict[str, Any]:
    """The payload to queue, or InvalidInput naming the parameter the model can't honour."""
    extras = extras_allowed(request, extra)
    if extra == "pass-through":
        _pass_through_options(extras, deployment)
    payload = request.model_dump(exclude_none=True, exclude=set(extras) if extra != "pass-through" else set())
    check_unicode(payload)  # before any tokenizer sees the text
    if request.n not in (None, 1):
        raise _unsupported(deployment, "n", request.n, "returns one choice per request")
    if isinstance(request, ChatCompletionsRequest):
        _check_structure(request)
        _check_logprobs(request)
    else:
        if len(request.prompts) != 1:
            raise InvalidInput(
                "Send exactly one prompt per request.", loc=("body", "prompt"), input=len(request.prompts)
            )
        if not request.prompts[0]:
            raise InvalidInput("prompt must not be empty", loc=("body", "prompt"), input=request.prompt)
    if len(request.stops) > MAX_STOPS or not all(request.stops):
        raise InvalidInput(f"stop takes 1 to {MAX_STOPS} non-empty strings.", loc=("body", "stop"), input=request.stop)
    limit = request.token_limit
    if limit is not None and limit > deployment.max_tokens:
        name = "max_completion_tokens" if getattr(request, "max_completion_tokens", None) else "max_tokens"
        raise InvalidInput(
            f"Model '{deployment.name}' generates at most {deployment.max_tokens} tokens per request; "
            f"got {name}={limit}.",
            loc=("body", name),
            input=limit,
        )
    if counter is not None:
        chat = isinstance(request, ChatCompletionsRequest)
        messages = _template_messages(request) if isinstance(request, ChatCompletionsRequest) else []
        prompt = "" if isinstance(request, ChatCompletionsRequest) else request.prompts[0]
        # Refused by its length before any tokenizing when even the fewest tokens it can take don't fit: the
        # tokenizer's cost (time and memory) is then bounded by the context, not by the body.
        chars = sum(len(m["content"]) for m in messages) + len(prompt)
        least = -(-chars // max(1, counter.max_token_chars))
        if least >= counter.context_length:
            check_context(least, counter.context_length, request, f"at least {least} tokens ({chars} characters)")
        tokens = counter.count_chat(messages) if chat else counter.count_text(prompt)
        if tokens is not None:
            check_context(tokens, counter.context_length, request)
    return payload


def _check_logprobs(request: ChatCompletionsRequest) -> None:
    if request.top_logprobs is not None and not request.logprobs:
        raise InvalidInput(
            "top_logprobs needs logprobs: true.", loc=("body", "top_logprobs"), input=request.top_logprobs
        )
    if request.logprobs and request.stream:  # stream chunks carry text only
        raise InvalidInput("logprobs are returned without stream only.", loc=("body", "logprobs"), input=True)


def _check_structure(request: ChatCompletionsRequest) -> None:
    """response_format, tools and tool_choice: each names what constrained decoding will enforce."""
    fmt = request.response_format
    if fmt is not None and fmt.type == "json_schema":
        if fmt.json_schema is None or not isinstance(fmt.json_schema.schema_object, dict):
            raise InvalidInput(
                "response_format type 'json_schema' takes json_schema: {name, schema: a JSON Schema object}.",
                loc=("body", "response_format", "json_schema"),
                input=fmt.model_dump(),
            )
    tools = request.tools or []
    names = [t.function.name for t in tools]
    if len(tools) > MAX_TOOLS or len(set(names)) != len(names):
        raise InvalidInput(
            f"tools takes at most {MAX_TOOLS} functions with distinct names.", loc=("body", "tools"), input=names
        )
    for i, tool in enumerate(tools):
        if tool.function.parameters is not None and tool.function.parameters.get("type", "object") != "object":
            raise InvalidInput(
                "a function's parameters are a JSON Schema of type 'object'.",
                loc=("body", "tools", i, "function", "parameters"),
                input=tool.function.parameters,
            )
    choice = request.tool_choice
    if choice in (None, "none", "auto"):
        return
    if not tools:
        raise InvalidInput("tool_choice asks for a tool call, but no tools are given.", loc=("body", "tool_choice"))
    if isinstance(choice, dict):
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if choice.get("type") != "function" or name not in names:
            raise InvalidInput(
                f"tool_choice is 'none', 'auto', 'required' or a function of tools by name: one of {names}.",
                loc=("body", "tool_choice"),
                input=choice,
            )


def check_context(prompt_tokens: int, context_length: int, request: Request, taken: str | None = None) -> None:
    """The prompt must leave room for at least one generated token."""
    if prompt_tokens < context_length:
        return
    chat = isinstance(request, ChatCompletionsRequest)
    name = "messages" if chat else "prompt"
    raise InvalidInput(
        f"This model's context is {context_length} tokens, and the {name} take {taken or f'{prompt_tokens} tokens'}"
        f"{' with the chat template' if chat else ''}: at most {context_length - 1} leave room for a completion.",
        loc=("body", name),
        input={"prompt_tokens": prompt_tokens, "context_length": context_length},
    )


def parse(payload: dict[str, Any]) -> Request:
    model: type[Request] = ChatCompletionsRequest if "messages" in payload else CompletionsRequest
    request: Request = parse_payload(model, payload)
    return request


def prompt_texts(payload: dict[str, Any]) -> list[str]:
    """The texts of a checked payload that content safety screens: each message's, or the prompt."""
    request = parse(payload)
    if isinstance(request, ChatCompletionsRequest):
        return [m.text for m in request.messages]
    return request.prompts


def prompt_tokens(payload: dict[str, Any], counter: PromptTokens) -> int:
    """A checked payload's prompt tokens as the edge counts them (a prompt refused there bills these)."""
    request = parse(payload)
    if isinstance(request, ChatCompletionsRequest):
        counted = counter.count_chat(_template_messages(request))
        return counted if counted is not None else counter.count_text("\n".join(prompt_texts(payload)))
    return counter.count_text(request.prompts[0])


def execute(
    job: Job,
    payload: dict[str, Any],
    deployment: Deployment,
    runner: Runner,
    blobs: BlobStore,
    stopped: Callable[[], bool],
    progress: Callable[[], None] = lambda: None,
    screen: TextScreen | None = None,
) -> TaskOutput:
    """Generate; with `stream`, write chunks as they come. `stopped()` says the job was cancelled meanwhile.
    With a content `screen`, the prompt is screened first, and the text so far at every check (the cadence's, before
    any chunk is written): a hit drops the text since the last check and ends the generation with finish_reason
    "content_filter"."""
    request = parse(payload)
    check(request, deployment, "pass-through", None)
    if request.stream and job.attempts > 1 and (interrupted := _interrupted(job, blobs)):
        return interrupted
    if isinstance(request, ChatCompletionsRequest):
        input_ids = runner.encode_chat(_template_messages(request), _template_tools(request))
    else:
        input_ids = runner.encode_text(request.prompts[0])
    check_context(len(input_ids), runner.context_length, request)
    prompt_filter = screen.screen(prompt_texts(payload)) if screen is not None else None
    if prompt_filter is not None and prompt_filter.filtered:  # queued directly: the edge did not screen it
        refused = JobError(code="content_filter", message=f"The prompt was filtered: {prompt_filter.describe()}.")
        return TaskOutput(None, _usage(len(input_ids), 0), JobStatus.FAILED, refused)
    max_new = min(request.token_limit or deployment.max_tokens, runner.context_length - len(input_ids))
    generation = runner.generate(input_ids, _options(request, max_new))
    writer = StreamWriter(blobs, job.id, progress) if request.stream else None
    held = _may_call_tools(request)  # a tool call is known at the end: stream empty chunks (usage) until then
    cadence = Cadence()
    pieces: list[str] = []
    status: JobStatus = JobStatus.SUCCEEDED
    error: JobError | None = None
    guard = _Guard(screen)
    try:
        for piece in generation:
            pieces.append(piece)
            if writer is not None:
                writer.add("" if held else piece)
            if cadence.tick(bool(piece) and not held):
                if not guard.passes(pieces):
                    break
                if writer is not None and cadence.flush:
                    writer.flush(generation.prompt_tokens, generation.completion_tokens)
                if stopped():
                    status = JobStatus.CANCELLED
                    break
        else:
            guard.passes(pieces)  # the rest, before it is written
    except ModelError as exc:
        status, error = JobStatus.FAILED, JobError(code=exc.code, message=exc.message)
    finally:
        generation.close()
    if guard.cut:
        del pieces[guard.clean :]  # what was not shown yet, and won't be
        if writer is not None:
            writer.drop_pending()
    usage = _usage(generation.prompt_tokens, generation.completion_tokens)
    if status is JobStatus.CANCELLED:
        if writer is not None:
            writer.discard()
        return TaskOutput(None, usage, status)
    if writer is not None:
        writer.flush(generation.prompt_tokens, generation.completion_tokens)  # the rest, before the job ends
    if status is JobStatus.FAILED:
        return TaskOutput(None, usage, status, error)
    text = "".join(pieces)
    return TaskOutput(_response(job, deployment, request, generation, text, prompt_filter, guard.result), usage)


class _Guard:
    """Screens the completion so far at each check; `clean` pieces passed the last screening."""

    def __init__(self, screen: TextScreen | None) -> None:
        self.screen = screen
        self.clean = 0
        self.cut = False
        self.result: FilterResult | None = FilterResult() if screen is not None else None

    def passes(self, pieces: list[str]) -> bool:
        if self.screen is None or self.cut:
            return not self.cut
        self.result = self.screen.screen(["".join(pieces)])
        self.cut = self.result.filtered
        if not self.cut:
            self.clean = len(pieces)
        return not self.cut


def _response(
    job: Job,
    deployment: Deployment,
    request: Request,
    generation: Generation,
    text: str,
    prompt_filter: FilterResult | None = None,
    completion_filter: FilterResult | None = None,
) -> ChatCompletion | TextCompletion:
    counts = Usage(
        prompt_tokens=generation.prompt_tokens,
        completion_tokens=generation.completion_tokens,
        total_tokens=generation.prompt_tokens + generation.completion_tokens,
    )
    finish: FinishReason = generation.finish_reason or "length"
    if completion_filter is not None and completion_filter.filtered:
        finish = "content_filter"
    created, model = int(job.created_at.timestamp()), deployment.model_name
    prompt_results = prompt_filter_results(prompt_filter) if prompt_filter is not None else None
    results = completion_filter.annotation() if completion_filter is not None else None
    if isinstance(request, ChatCompletionsRequest):
        calls = _tool_calls(request, text, job.id) if finish == "stop" else None
        if calls:
            message, finish = AssistantMessage(content=None, tool_calls=calls), "tool_calls"
        else:
            message = AssistantMessage(content=text)
        choice = ChatChoice(
            message=message,
            finish_reason=finish,
            logprobs=_logprobs(request, generation),
            content_filter_results=results,
        )
        return ChatCompletion(
            id=job.id,
            created=created,
            model=model,
            prompt_filter_results=prompt_results,
            choices=[choice],
            usage=counts,
        )
    choices = [TextChoice(text=text, finish_reason=finish, content_filter_results=results)]
    return TextCompletion(
        id=job.id, created=created, model=model, prompt_filter_results=prompt_results, choices=choices, usage=counts
    )


def _logprobs(request: ChatCompletionsRequest, generation: Generation) -> ChoiceLogprobs | None:
    if not request.logprobs:
        return None

    def top(token: str, logprob: float) -> TopLogprob:
        return TopLogprob(token=token, logprob=logprob, bytes=list(token.encode("utf-8")))

    content = [
        TokenLogprob(**top(t.token, t.logprob).model_dump(), top_logprobs=[top(*alt) for alt in t.top])
        for t in generation.logprobs
    ]
    return ChoiceLogprobs(content=content)


def _interrupted(job: Job, blobs: BlobStore) -> TaskOutput | None:
    """A redelivered stream whose first worker died after writing chunks: the client has part of a text that
    can't be continued, so the job fails, billing what the client got."""
    written = read_chunks(blobs, job.id, 0)
    if not written:
        return None  # nothing reached the client: generate from the start
    last = written[-1]
    error = JobError(code="StreamInterrupted", message="the worker stopped mid-stream; send the request again")
    return TaskOutput(None, _usage(last.prompt_tokens, last.completion_tokens), JobStatus.FAILED, error)


@dataclass(frozen=True)
class ChunkRenderer:
    """The OpenAI stream chunks of one job: an opening (the role), content deltas, a closing (finish_reason,
    then usage when asked), or an error event when the job did not succeed."""

    chat: bool
    id: str
    created: int
    model: str
    include_usage: bool
    held: bool = False  # the worker held the text back (it may be a tool call): the closing carries it
    prompt_filter: list[dict[str, Any]] | None = None  # content safety's prompt annotation, where it is on

    @classmethod
    def of(
        cls, request: Request, job: Job, deployment: Deployment, prompt_filter: list[dict[str, Any]] | None = None
    ) -> ChunkRenderer:
        chat = isinstance(request, ChatCompletionsRequest)
        created, model = int(job.created_at.timestamp()), deployment.model_name
        return cls(chat, job.id, created, model, request.include_usage, _may_call_tools(request), prompt_filter)

    def opening(self) -> list[dict[str, Any]]:
        # As Azure OpenAI streams it: the prompt's annotation first, in a chunk of its own with no choices.
        annotated = [{**self._chunk({}, None), "choices": [], "prompt_filter_results": self.prompt_filter}]
        role = [self._chunk({"role": "assistant", "content": ""}, None)] if self.chat else []
        return (annotated if self.prompt_filter is not None else []) + role

    def content(self, text: str) -> dict[str, Any]:
        return self._chunk({"content": text} if self.chat else text, None)

    def closing(self, job: Job) -> list[dict[str, Any]]:
        if job.status is not JobStatus.SUCCEEDED or job.result is None:
            error = job.error or JobError(code="Cancelled", message=f"the job is {job.status}")
            return [{"error": {"code": error.code, "message": error.message}}]
        result = _result(job.result)
        chunks = self._held(result)
        last = self._chunk({} if self.chat else "", result.choices[0].finish_reason)
        if (annotation := result.choices[0].content_filter_results) is not None:
            last["choices"][0]["content_filter_results"] = annotation
        chunks.append(last)
        if self.include_usage:
            chunks.append({**self._chunk({}, None), "choices": [], "usage": result.usage.model_dump()})
        return chunks

    def replay(self, job: Job) -> list[dict[str, Any]]:
        """The whole stream of a finished job at once, from its result."""
        assert job.result is not None
        result = _result(job.result)
        choice = result.choices[0]
        text = (choice.message.content if isinstance(choice, ChatChoice) else choice.text) or ""
        content = [] if self.held else [self.content(text)]
        return [*self.opening(), *content, *self.closing(job)]

    def _held(self, result: ChatCompletion | TextCompletion) -> list[dict[str, Any]]:
        choice = result.choices[0]
        if not self.held or not isinstance(choice, ChatChoice):
            return []
        if choice.message.tool_calls:
            calls = [{"index": i, **c.model_dump()} for i, c in enumerate(choice.message.tool_calls)]
            return [self._chunk({"tool_calls": calls}, None)]
        return [self.content(choice.message.content)] if choice.message.content else []

    def _chunk(self, delta: dict[str, Any] | str, finish: str | None) -> dict[str, Any]:
        if self.chat:
            choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": delta, "finish_reason": finish, "logprobs": None}
        chunk = {
            "id": self.id,
            "object": "chat.completion.chunk" if self.chat else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        }
        return {**chunk, "usage": None} if self.include_usage else chunk


def _template_messages(request: ChatCompletionsRequest) -> list[dict[str, str]]:
    return [m.for_template() for m in request.messages]


def _template_tools(request: ChatCompletionsRequest) -> list[dict[str, Any]]:
    return [t.model_dump(exclude_none=True) for t in request.tools or []] if request.tool_choice != "none" else []


def _may_call_tools(request: Request) -> bool:
    return isinstance(request, ChatCompletionsRequest) and bool(request.tools) and request.tool_choice != "none"


def _called_tools(request: ChatCompletionsRequest) -> list[ToolDefinition]:
    """The tools of which one must be called: all of them with "required", the named one; none otherwise."""
    choice = request.tool_choice
    if not request.tools or choice in (None, "none", "auto"):
        return []
    if choice == "required":
        return list(request.tools)
    assert isinstance(choice, dict)
    return [t for t in request.tools if t.function.name == choice["function"]["name"]]


def _guidance(request: Request) -> tuple[str, str, str] | None:
    """(guidance type, data, the parameter it enforces) for constrained decoding, or None for free text."""
    if not isinstance(request, ChatCompletionsRequest):
        return None
    if called := _called_tools(request):
        # A tool call is one JSON object {"name", "arguments"}: the format of Hermes/Llama-style templates.
        calls: list[dict[str, Any]] = [
            {
                "type": "object",
                "properties": {
                    "name": {"const": t.function.name},
                    "arguments": t.function.parameters or {"type": "object"},
                },
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
            for t in called
        ]
        schema: dict[str, Any] = calls[0] if len(calls) == 1 else {"anyOf": calls}
        return "json_schema", json.dumps({**COMPACT, **schema}), "tools"
    fmt = request.response_format
    if fmt is None or fmt.type == "text":
        return None
    schema = fmt.json_schema.schema_object if fmt.json_schema is not None else {"type": "object"}
    return "json_schema", json.dumps({**COMPACT, **schema}), "response_format"


def _tool_calls(request: ChatCompletionsRequest, text: str, job_id: str) -> list[ToolCall] | None:
    """The generated text as a tool call, when it is one: {"name": a given tool, "arguments": an object}."""
    if not _may_call_tools(request):
        return None
    try:
        call = json.loads(text)
    except ValueError:
        return None
    names = {t.function.name for t in request.tools or []}
    if not isinstance(call, dict) or call.get("name") not in names or not isinstance(call.get("arguments"), dict):
        return None
    arguments = json.dumps(call["arguments"], ensure_ascii=False)
    return [ToolCall(id=f"call_{job_id}", function=FunctionCall(name=call["name"], arguments=arguments))]


def _logprob_count(request: Request) -> int | None:
    """How many alternatives each token's logprobs list, or None for no logprobs."""
    if isinstance(request, ChatCompletionsRequest) and request.logprobs:
        return request.top_logprobs or 0
    return None


def _options(request: Request, max_new_tokens: int) -> GenerationOptions:
    extras = request.model_extra or {}
    guidance = _guidance(request)
    return GenerationOptions(
        max_new_tokens=max_new_tokens,
        temperature=request.temperature,
        top_p=request.top_p,
        top_k=extras.get("top_k"),
        seed=request.seed,
        repetition_penalty=extras.get("repetition_penalty"),
        presence_penalty=request.presence_penalty or 0.0,
        frequency_penalty=request.frequency_penalty or 0.0,
        stop=tuple(request.stops),
        guidance=guidance[:2] if guidance else None,
        guided_by=guidance[2] if guidance else "response_format",
        logprobs=_logprob_count(request),
    )


def _pass_through_options(extras: dict[str, Any], deployment: Deployment) -> None:
    for name, value in extras.items():
        if name not in PASS_THROUGH:
            raise InvalidInput(
                f"Parameter '{name}' is not supported by model '{deployment.name}' "
                f"(it takes {', '.join(PASS_THROUGH)} passed through).",
                loc=("body", name),
                input=value,
            )
        valid, what = PASS_THROUGH[name]
        if not valid(value):
            raise InvalidInput(f"{name} must be {what}.", loc=("body", name), input=value)


def _unsupported(deployment: Deployment, name: str, value: Any, why: str) -> InvalidInput:
    return InvalidInput(
        f"Model '{deployment.name}' {why}: '{name}' can't be honoured.", loc=("body", name), input=value
    )


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[Meter, int]:
    return {Meter.INPUT_TOKENS: prompt_tokens, Meter.OUTPUT_TOKENS: completion_tokens}


def _result(result: dict[str, Any]) -> ChatCompletion | TextCompletion:
    if result.get("object") == "chat.completion":
        return ChatCompletion.model_validate(result)
    return TextCompletion.model_validate(result)


TEMPLATE_TOKENS = 16  # what the estimate allows for the chat template's tokens around each message


def estimate(deployment: Deployment, payload: dict[str, Any]) -> int:
    """The prompt's token bound (its UTF-8 bytes, and the template's allowance per message), plus the most the
    generation may produce."""
    if "prompt" in payload:
        prompts = payload["prompt"]
        prompt = sum(token_bound(p) for p in (prompts if isinstance(prompts, list) else [prompts]))
    else:
        messages = payload.get("messages") or []
        prompt = sum(
            token_bound(_text(m.get("content")) + (json.dumps(m["tool_calls"]) if m.get("tool_calls") else ""))
            + TEMPLATE_TOKENS
            for m in messages
            if isinstance(m, dict)
        )
    limit = payload.get("max_completion_tokens") or payload.get("max_tokens") or deployment.max_tokens
    return prompt + min(int(limit), deployment.max_tokens)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(_text(part.get("text", "") if isinstance(part, dict) else part) for part in content)
    return ""


class ChatRuntime(GenerationRunner):
    """The deployment's onnxruntime-genai model: one generator per request, no batching."""


class ChatKind:
    kind = RunnerKind.CHAT
    gen_ai_operation = "chat"  # the OpenTelemetry GenAI semantic conventions' name for what it runs
    cancellable = True  # a generation checks its job's status as it goes
    deterministic_usage = False
    light_check = False  # it counts the prompt's tokens, and content safety may rate the prompt

    def runtime(self, deployment: Deployment, fetch: Fetch, settings: Settings) -> ChatRuntime:
        return ChatRuntime(fetch(deployment.model.files), deployment.intra_op_threads or settings.intra_op_threads)

    def edge_tool(self, deployment: Deployment, fetch: Fetch) -> PromptTokens:
        """Prompt token counts from the tokenizer files alone: the edge never loads the model."""
        from shared.runtimes.engines.prompts import EDGE_FILES, PromptCounter

        return PromptCounter(fetch({k: v for k, v in deployment.model.files.items() if k in EDGE_FILES}))

    def check(self, request: Request, deployment: Deployment, edge: Edge) -> dict[str, Any]:
        return check(request, deployment, edge.extra, edge.tool())

    def estimate(self, deployment: Deployment, payload: dict[str, Any]) -> int:
        return estimate(deployment, payload)

    def execute(self, work: Work, payload: dict[str, Any], runtime: ChatRuntime) -> TaskOutput:
        return execute(
            work.job, payload, work.deployment, runtime, work.blobs, work.stopped, work.progress, work.screen
        )

    def render(self, result: dict[str, Any]) -> Any:
        return result


KIND = ChatKind()
