"""The Azure AI Model Inference / OpenAI embeddings request and response bodies."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr


class EmbeddingsRequest(BaseModel):
    # Unknown parameters are kept in `model_extra`; the `extra-parameters` header decides their fate.
    model_config = ConfigDict(extra="allow")

    input: StrictStr | list[StrictStr]
    model: str | None = None
    dimensions: int | None = Field(default=None, gt=0)
    encoding_format: Literal["float", "base64"] = "float"
    input_type: Literal["text", "query", "document"] | None = None
    user: str | None = None

    @property
    def inputs(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class EmbeddingItem(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingsUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    id: str
    object: Literal["list"] = "list"
    data: list[EmbeddingItem]
    model: str
    usage: EmbeddingsUsage
