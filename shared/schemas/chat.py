"""The Azure AI Model Inference / OpenAI chat and text completion bodies: requests, responses, stream chunks."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictStr,
    model_serializer,
    model_validator,
)

FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]
ANNOTATIONS = ("prompt_filter_results", "content_filter_results")  # content safety's, only where it is on


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: StrictStr


class FunctionCall(BaseModel):
    name: str
    arguments: str  # JSON text, as OpenAI sends it


class ToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # "developer" is what newer OpenAI SDKs call the system role; "tool" answers an assistant's tool call.
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: StrictStr | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None  # an assistant's earlier calls, sent back with their results
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _content_or_calls(self) -> ChatMessage:
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise ValueError("content is required (only an assistant message with tool_calls may omit it)")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only an assistant message has tool_calls")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message answers a call: tool_call_id is required")
        return self

    @property
    def text(self) -> str:
        if self.content is None:
            return ""
        return self.content if isinstance(self.content, str) else "\n".join(p.text for p in self.content)

    def for_template(self) -> dict[str, str]:
        """The message as chat templates take it: text content; tool calls in the form the model writes them."""
        made = self.tool_calls or []
        calls = [{"name": c.function.name, "arguments": _arguments(c.function.arguments)} for c in made]
        written = "\n".join(json.dumps(c, ensure_ascii=False) for c in calls)
        text = "\n".join(t for t in (self.text, written) if t)
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


def _arguments(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    strict: bool | None = None
    # "schema" (a JSON Schema object) is kept as an extra: the name shadows a BaseModel attribute.

    @property
    def schema_object(self) -> Any:
        return (self.model_extra or {}).get("schema", {})


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class FunctionDefinition(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDefinition(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["function"]
    function: FunctionDefinition


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class GenerationRequest(BaseModel):
    """What chat and text completions share. Unknown parameters are kept in `model_extra`; the
    `extra-parameters` header decides their fate."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None
    stop: StrictStr | list[StrictStr] | None = None
    n: int | None = Field(default=None, ge=1)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None

    @property
    def stops(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    @property
    def token_limit(self) -> int | None:
        return self.max_tokens


class ChatCompletionsRequest(GenerationRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)  # the newer OpenAI name for max_tokens
    response_format: ResponseFormat | None = None
    tools: list[ToolDefinition] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None  # an answer has at most one call, which either value allows
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionsRequest(GenerationRequest):
    prompt: StrictStr | list[StrictStr]

    @property
    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCall] | None = None

    @model_serializer(mode="wrap")
    def _without_absent_tool_calls(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if data.get("tool_calls") is None:
            data.pop("tool_calls", None)
        return data


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int]


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprob]


class _Annotated(BaseModel):
    """A response part that carries content safety annotations when its deployment screens content."""

    @model_serializer(mode="wrap")
    def _without_absent_annotations(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for name in ANNOTATIONS:
            if data.get(name) is None:
                data.pop(name, None)
        return data


class ChatChoice(_Annotated):
    index: int = 0
    message: AssistantMessage
    finish_reason: FinishReason
    logprobs: ChoiceLogprobs | None = None
    content_filter_results: dict[str, Any] | None = None


class ChatCompletion(_Annotated):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    prompt_filter_results: list[dict[str, Any]] | None = None
    choices: list[ChatChoice]
    usage: Usage


class TextChoice(_Annotated):
    index: int = 0
    text: str
    finish_reason: FinishReason
    logprobs: None = None
    content_filter_results: dict[str, Any] | None = None


class TextCompletion(_Annotated):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    prompt_filter_results: list[dict[str, Any]] | None = None
    choices: list[TextChoice]
    usage: Usage
