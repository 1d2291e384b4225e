"""The Azure AI Model Inference / OpenAI embeddings request and response bodies."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr


class EmbeddingsRequest(BaseModel):
    # Unknown parameters are kept in `model_extra`; the `extra-parameters` header decides their fate.
    model_config = ConfigDict(extra="allow")

    # Text, or token ids of the model's tokenizer (the reference's "array of tokens"): one list, or one per input.
    input: StrictStr | list[StrictStr] | list[StrictInt] | list[list[StrictInt]]
    model: str | None = None
    dimensions: int | None = Field(default=None, gt=0)
    encoding_format: Literal["float", "base64", "int8", "uint8", "binary", "ubinary"] = "float"
    input_type: Literal["text", "query", "document"] | None = None
    user: str | None = None

    @property
    def inputs(self) -> list[str | list[int]]:
        """One item per input: a text or a token array."""
        x = self.input
        if isinstance(x, str):
            return [x]
        return [x] if x and isinstance(x[0], int) else [*x]  # one token array, or several


class EmbeddingItem(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[int] | list[float] | str  # int8/uint8/binary/ubinary are lists of ints


class EmbeddingsUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    id: str
    object: Literal["list"] = "list"
    data: list[EmbeddingItem]
    model: str
    usage: EmbeddingsUsage
